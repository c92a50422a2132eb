"""The experiments behind the bundled default model: ``dora -P audiocraft grid default_model``.

Each stage starts from the weights of the one before, so the grid is run once per stage: run it,
read the new experiment's signature from ``dora grid`` (or ``dora info``), export it in the
variable named below, run the grid again.

1. codec, phase 1 (solver=compression/default_model_16khz): waveform and mel losses, 12 epochs.
2. codec, phase 2 (``AUDIOCRAFT_DEFAULT_CODEC_SIG1`` = phase 1): + multi-resolution STFT loss, 5 epochs.
3. codec, phase 3 (``AUDIOCRAFT_DEFAULT_CODEC_SIG2`` = phase 2): magnitude losses lead (SI-SNR off,
   L1 0.1), which brings back the upper harmonics that the waveform losses average away.
4. codec, phase 4 (``AUDIOCRAFT_DEFAULT_CODEC_SIG3`` = phase 3): adversarial, decoder only
   (encoder and quantizer frozen, so the codes do not change): a small MS-STFT discriminator
   (16 filters, 3 scales) gives back the timbre that the regression losses blur.
5. the MusicGen LM (solver=musicgen/default_model_16khz) on the codes of the last codec
   (``AUDIOCRAFT_DEFAULT_CODEC_SIG`` = phase 4; phases 3 and 4 make the same codes).
6. the LM again (``AUDIOCRAFT_DEFAULT_LM_SIG1`` = stage 5), from its weights, on the 20 h copy of
   the dataset at half the learning rate, with a token cache of 3 epochs.

All read the dataset of scripts/make_music_dataset.py from $AUDIOCRAFT_MUSIC21_GM (default
data/music21_gm): the shipped model used the 7 h dataset (``--hours 7 --seed 0``) for stages
1-3 and 5, and the same dataset extended to 20 h (``--hours 20 --seed 0``) for stages 4 and 6.
The compression solver has no learning-rate schedule, so ``optim.epochs`` only says where each
codec phase stopped. The shipped files are written by
``python -m audiocraft.solvers.musicgen export <lm signature> audiocraft/assets/default_model``.
See docs/DEFAULT_MODEL.md for what each stage measured.
"""
import os

from ._base_explorers import BaseExplorer

CODEC = "compression/default_model_16khz"
PHASE2 = {"optim.epochs": 5, "+losses.mrstft": 2}
PHASE3 = {"optim.epochs": 8, "+losses.mrstft": 2, "losses.sisnr": 0, "losses.l1": 0.1}
PHASE4 = {**PHASE3, "optim.epochs": 9, "+freeze": ["encoder", "quantizer"],
          "adversarial.adversaries": ["msstftd"], "losses.adv": 3, "losses.feat": 3,
          "msstftd.filters": 16, "msstftd.n_ffts": [1024, 512, 256], "msstftd.hop_lengths": [256, 128, 64],
          "msstftd.win_lengths": [1024, 512, 256]}
LM_STAGE2 = {"optim.lr": 5e-4, "optim.epochs": 14, "cache.num_epochs": 3}


@BaseExplorer
def explorer(launcher):
    launcher.slurm_(gpus=0)
    launcher(solver=CODEC, **{"optim.epochs": 12})
    phase1, phase2, phase3 = (os.environ.get(f"AUDIOCRAFT_DEFAULT_CODEC_SIG{i}") for i in (1, 2, 3))
    if phase1:
        launcher(solver=CODEC, continue_from=f"//sig/{phase1}", **PHASE2)
    if phase2:
        launcher(solver=CODEC, continue_from=f"//sig/{phase2}", **PHASE3)
    if phase3:
        launcher(solver=CODEC, continue_from=f"//sig/{phase3}", **PHASE4)
    codec_sig = os.environ.get("AUDIOCRAFT_DEFAULT_CODEC_SIG")
    if codec_sig:
        lm = {"solver": "musicgen/default_model_16khz", "compression_model_checkpoint": f"//sig/{codec_sig}"}
        launcher(**lm)
        lm_sig = os.environ.get("AUDIOCRAFT_DEFAULT_LM_SIG1")
        if lm_sig:
            launcher(**lm, continue_from=f"//sig/{lm_sig}", **LM_STAGE2)
