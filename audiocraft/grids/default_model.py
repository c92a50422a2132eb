"""The experiments behind the bundled default model: ``dora -P audiocraft grid default_model``.

Each stage starts from the weights of the one before, so the grid is run once per stage: run it,
read the new experiment's signature from ``dora grid`` (or ``dora info``), export it in the
variable named below, run the grid again.

1. codec, phase 1 (solver=compression/default_model_16khz): waveform and mel losses, 12 epochs.
2. codec, phase 2 (``AUDIOCRAFT_DEFAULT_CODEC_SIG1`` = phase 1): + multi-resolution STFT loss, 5 epochs.
3. codec, phase 3 (``AUDIOCRAFT_DEFAULT_CODEC_SIG2`` = phase 2): magnitude losses lead (SI-SNR off,
   L1 0.1), which brings back the upper harmonics that the waveform losses average away.
4. codec, phase 4 (``AUDIOCRAFT_DEFAULT_CODEC_SIG3`` = phase 3): the decoder alone, with a small
   MS-STFT discriminator added to the phase-3 losses, 9 epochs.
5. codec, phase 5 (``AUDIOCRAFT_DEFAULT_CODEC_SIG4`` = phase 4): a new quantizer of 4 codebooks of
   2048 entries fitted by k-means on 750 batches of the encoder's latents, then the decoder alone
   with the phase-4 losses for ``PHASE5["optim.epochs"]`` epochs.
6. codec, phase 6 (``AUDIOCRAFT_DEFAULT_CODEC_SIG5`` = phase 5): the decoder alone again, on the
   family-balanced dataset, starting with phase 5's trained discriminator (``+adversaries_from``),
   10 epochs. The codes are phase 5's: the LM of stages 7 and 8 renders through this decoder.
7. the MusicGen LM (solver=musicgen/default_model_16khz) from scratch on the codes of phase 5
   (``AUDIOCRAFT_DEFAULT_CODEC_SIG`` = phase 5), 24 epochs.
8. the LM fine-tuned on the family-balanced dataset (``AUDIOCRAFT_DEFAULT_LM_SIG`` = stage 7):
   learning rate 5e-4, 12 epochs.

Phases 1-3 read the 7 h dataset (``scripts/make_music_dataset.py --hours 7 --seed 0``), phases 4-5
and stage 7 the 20 h one (``--hours 20 --seed 0``: the same clips in the same splits, and more),
phase 6 and stage 8 the balanced one (``--hours 30 --seed 0 --balance-families``). Point
$AUDIOCRAFT_MUSIC21_GM (default data/music21_gm) at the right one for each stage; the data folder
is not part of a signature. The compression solver has no learning-rate schedule, so
``optim.epochs`` only says where each phase stopped. The shipped files are written by
``python -m audiocraft.solvers.musicgen export <stage 8 signature> audiocraft/assets/default_model
--compression-model //sig/<phase 6 signature> --compression-float16``. See docs/DEFAULT_MODEL.md for
what each stage measured.
"""
import os

from ._base_explorers import BaseExplorer

CODEC = "compression/default_model_16khz"
PHASE2 = {"optim.epochs": 5, "+losses.mrstft": 2}
PHASE3 = {"optim.epochs": 8, "+losses.mrstft": 2, "losses.sisnr": 0, "losses.l1": 0.1}
ADVERSARIAL_DECODER = {"+freeze": ["encoder", "quantizer"], "adversarial.adversaries": ["msstftd"],
                       "losses.adv": 3, "losses.feat": 3, "+losses.mrstft": 2, "losses.sisnr": 0, "losses.l1": 0.1,
                       "msstftd.filters": 16, "msstftd.n_ffts": [1024, 512, 256],
                       "msstftd.hop_lengths": [256, 128, 64], "msstftd.win_lengths": [1024, 512, 256]}
PHASE4 = {**ADVERSARIAL_DECODER, "optim.epochs": 9}
QUANTIZER = {"rvq.n_q": 4, "rvq.bins": 2048, "rvq.kmeans_iters": 25}
PHASE5 = {**ADVERSARIAL_DECODER, **QUANTIZER, "+reinit": ["quantizer"], "+quantizer_init_batches": 750,
          "optim.epochs": 8}
PHASE6 = {**ADVERSARIAL_DECODER, **QUANTIZER, "optim.epochs": 10}
LM = "musicgen/default_model_16khz"
LM_FINE_TUNE = {"optim.lr": 5e-4, "optim.epochs": 12}


@BaseExplorer
def explorer(launcher):
    launcher.slurm_(gpus=0)
    launcher(solver=CODEC, **{"optim.epochs": 12})
    for variable, phase in (("AUDIOCRAFT_DEFAULT_CODEC_SIG1", PHASE2), ("AUDIOCRAFT_DEFAULT_CODEC_SIG2", PHASE3),
                            ("AUDIOCRAFT_DEFAULT_CODEC_SIG3", PHASE4), ("AUDIOCRAFT_DEFAULT_CODEC_SIG4", PHASE5)):
        previous = os.environ.get(variable)
        if previous:
            launcher(solver=CODEC, continue_from=f"//sig/{previous}", **phase)
    phase5 = os.environ.get("AUDIOCRAFT_DEFAULT_CODEC_SIG5")
    if phase5:
        source = f"//sig/{phase5}"  # its weights and its trained discriminator
        launcher(solver=CODEC, continue_from=source, **PHASE6, **{"+adversaries_from": source})
    codec_sig = os.environ.get("AUDIOCRAFT_DEFAULT_CODEC_SIG")
    if codec_sig:
        launcher(solver=LM, compression_model_checkpoint=f"//sig/{codec_sig}")
        lm_sig = os.environ.get("AUDIOCRAFT_DEFAULT_LM_SIG")
        if lm_sig:
            launcher(solver=LM, compression_model_checkpoint=f"//sig/{codec_sig}", continue_from=f"//sig/{lm_sig}",
                     **LM_FINE_TUNE)
