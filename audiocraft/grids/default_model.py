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
   10 epochs.
7. codec, phase 7 (``AUDIOCRAFT_DEFAULT_CODEC_SIG6`` = phase 6): a wider decoder (48 base filters
   instead of 32) from scratch on the frozen encoder and quantizer (``+reinit=[decoder]``), with
   phase 1's losses, 8 epochs. The codes stay phase 5's.
8. codec, phase 8 (``AUDIOCRAFT_DEFAULT_CODEC_SIG7`` = phase 7): the wide decoder with phase 3's
   losses, 4 epochs.
9. codec, phase 9 (``AUDIOCRAFT_DEFAULT_CODEC_SIG8`` = phase 8): every part frozen, so that only
   the discriminator trains against the wide decoder (a warm-up), 2 epochs.
10. codec, phase 10 (``AUDIOCRAFT_DEFAULT_CODEC_SIG9`` = phase 9): the wide decoder against the
    warmed-up discriminator, phase 6's losses, 12 epochs.
11. codec, phase 11 (``AUDIOCRAFT_DEFAULT_CODEC_SIG10`` = phase 10): the same, continued with
    phase 10's discriminator for ``PHASE11["optim.epochs"]`` more epochs (a new run, because
    ``optim.epochs`` is part of the signature). This is the shipped decoder.
12. the MusicGen LM (solver=musicgen/default_model_16khz) from scratch on the codes of phase 5
    (``AUDIOCRAFT_DEFAULT_CODEC_SIG`` = phase 5), 24 epochs.
13. the LM fine-tuned on the family-balanced dataset (``AUDIOCRAFT_DEFAULT_LM_SIG`` = stage 12):
    learning rate 5e-4, 12 epochs. The LM renders through phase 11's decoder: phases 6-11 do
    not change the codes.

Phases 1-3 read the 7 h dataset (``scripts/make_music_dataset.py --hours 7 --seed 0``), phases 4-5
and stage 12 the 20 h one (``--hours 20 --seed 0``: the same clips in the same splits, and more),
phases 6-11 and stage 13 the balanced one (``--hours 30 --seed 0 --balance-families``). Point
$AUDIOCRAFT_MUSIC21_GM (default data/music21_gm) at the right one for each stage; the data folder
is not part of a signature. The compression solver has no learning-rate schedule, so
``optim.epochs`` only says where each phase stopped. The shipped files are written by
``python -m audiocraft.solvers.musicgen export <stage 13 signature> audiocraft/assets/default_model
--compression-model //sig/<phase 11 signature> --compression-float16``. See docs/DEFAULT_MODEL.md for
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
WIDE_DECODER = {"+seanet.decoder.n_filters": 48, "+freeze": ["encoder", "quantizer"], **QUANTIZER}
PHASE7 = {**WIDE_DECODER, "+reinit": ["decoder"], "optim.epochs": 8}
PHASE8 = {**WIDE_DECODER, **PHASE3, "optim.epochs": 4}
PHASE9 = {**ADVERSARIAL_DECODER, **WIDE_DECODER, "+freeze": ["encoder", "quantizer", "decoder"], "optim.epochs": 2}
PHASE10 = {**ADVERSARIAL_DECODER, **WIDE_DECODER, "optim.epochs": 12}
PHASE11 = {**PHASE10, "optim.epochs": 12}
LM = "musicgen/default_model_16khz"
LM_FINE_TUNE = {"optim.lr": 5e-4, "optim.epochs": 12}


@BaseExplorer
def explorer(launcher):
    launcher.slurm_(gpus=0)
    launcher(solver=CODEC, **{"optim.epochs": 12})
    # phase n + 1 starts from phase n (AUDIOCRAFT_DEFAULT_CODEC_SIG<n>); True: also from its trained discriminator
    later_phases = [(PHASE2, False), (PHASE3, False), (PHASE4, False), (PHASE5, False), (PHASE6, True),
                    (PHASE7, False), (PHASE8, False), (PHASE9, False), (PHASE10, True), (PHASE11, True)]
    for number, (phase, previous_discriminator) in enumerate(later_phases, start=1):
        previous = os.environ.get(f"AUDIOCRAFT_DEFAULT_CODEC_SIG{number}")
        if previous:
            source = f"//sig/{previous}"
            extra = {"+adversaries_from": source} if previous_discriminator else {}
            launcher(solver=CODEC, continue_from=source, **phase, **extra)
    codec_sig = os.environ.get("AUDIOCRAFT_DEFAULT_CODEC_SIG")
    if codec_sig:
        launcher(solver=LM, compression_model_checkpoint=f"//sig/{codec_sig}")
        lm_sig = os.environ.get("AUDIOCRAFT_DEFAULT_LM_SIG")
        if lm_sig:
            launcher(solver=LM, compression_model_checkpoint=f"//sig/{codec_sig}", continue_from=f"//sig/{lm_sig}",
                     **LM_FINE_TUNE)
