"""The experiments behind the bundled default model: ``dora -P audiocraft grid default_model``.

Each stage starts from the weights of the one before, so the grid is run once per stage: run it,
read the new experiment's signature from ``dora grid`` (or ``dora info``), export it in the
variable named below, run the grid again.

1. codec, phase 1 (solver=compression/default_model_16khz): waveform and mel losses, 12 epochs.
2. codec, phase 2 (``AUDIOCRAFT_DEFAULT_CODEC_SIG1`` = phase 1): + multi-resolution STFT loss, 5 epochs.
3. codec, phase 3 (``AUDIOCRAFT_DEFAULT_CODEC_SIG2`` = phase 2): magnitude losses lead (SI-SNR off,
   L1 0.1), which brings back the upper harmonics that the waveform losses average away.
4. the MusicGen LM (solver=musicgen/default_model_16khz) on the codes of the phase-3 codec
   (``AUDIOCRAFT_DEFAULT_CODEC_SIG`` = phase 3).
5. the LM again (``AUDIOCRAFT_DEFAULT_LM_SIG1`` = stage 4), from its weights, at half the learning
   rate with a token cache of 3 epochs, on the dataset extended to 20 h (``--hours 20 --seed 0``;
   point $AUDIOCRAFT_MUSIC21_GM at it for this stage; make it a separate copy of the 7 h folder,
   whose token cache belongs to stage 4, and finish the earlier stages first: the data folder is
   not part of a signature).

All read the dataset of scripts/make_music_dataset.py from $AUDIOCRAFT_MUSIC21_GM (default
data/music21_gm). The compression solver has no learning-rate schedule, so ``optim.epochs``
only says where each phase stopped. The shipped files are written by
``python -m audiocraft.solvers.musicgen export <stage 5 signature> audiocraft/assets/default_model``.
See docs/DEFAULT_MODEL.md for what each stage measured.
"""
import os

from ._base_explorers import BaseExplorer

CODEC = "compression/default_model_16khz"
PHASE2 = {"optim.epochs": 5, "+losses.mrstft": 2}
PHASE3 = {"optim.epochs": 8, "+losses.mrstft": 2, "losses.sisnr": 0, "losses.l1": 0.1}
LM_STAGE2 = {"optim.lr": 5e-4, "optim.epochs": 14, "cache.num_epochs": 3}


@BaseExplorer
def explorer(launcher):
    launcher.slurm_(gpus=0)
    launcher(solver=CODEC, **{"optim.epochs": 12})
    phase1, phase2 = os.environ.get("AUDIOCRAFT_DEFAULT_CODEC_SIG1"), os.environ.get("AUDIOCRAFT_DEFAULT_CODEC_SIG2")
    if phase1:
        launcher(solver=CODEC, continue_from=f"//sig/{phase1}", **PHASE2)
    if phase2:
        launcher(solver=CODEC, continue_from=f"//sig/{phase2}", **PHASE3)
    codec_sig = os.environ.get("AUDIOCRAFT_DEFAULT_CODEC_SIG")
    if codec_sig:
        lm = {"solver": "musicgen/default_model_16khz", "compression_model_checkpoint": f"//sig/{codec_sig}"}
        launcher(**lm)
        lm_sig = os.environ.get("AUDIOCRAFT_DEFAULT_LM_SIG1")
        if lm_sig:
            launcher(**lm, continue_from=f"//sig/{lm_sig}", **LM_STAGE2)
