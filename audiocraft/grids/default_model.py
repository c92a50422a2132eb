"""The experiments behind the bundled default model: ``dora -P audiocraft grid default_model``.

1. the 16 kHz codec (solver=compression/default_model_16khz),
2. the MusicGen LM on its codes (solver=musicgen/default_model_16khz), which needs the codec's
   Dora signature: run the grid once, read the codec's signature from ``dora grid`` (or
   ``dora info``), then set ``AUDIOCRAFT_DEFAULT_CODEC_SIG`` and run the grid again.

Both read the dataset of scripts/make_music_dataset.py from $AUDIOCRAFT_MUSIC21_GM
(default data/music21_gm). The shipped files are written by
``python -m audiocraft.solvers.musicgen export <lm signature> audiocraft/assets/default_model``.
"""
import os

from ._base_explorers import BaseExplorer


@BaseExplorer
def explorer(launcher):
    launcher.slurm_(gpus=0)
    launcher(solver="compression/default_model_16khz")
    codec_sig = os.environ.get("AUDIOCRAFT_DEFAULT_CODEC_SIG")
    if codec_sig:
        launcher(solver="musicgen/default_model_16khz", compression_model_checkpoint=f"//sig/{codec_sig}")
