"""Training losses of the compression models (EnCodec): spectral, SI-SNR, and the loss balancer.

Each loss is a module or pure function of tensors ``x``/``y`` ``[B, C, T]`` returning a scalar.
The adversarial losses and the discriminator live in :mod:`audiocraft.adversarial`.
"""
from .balancer import Balancer
from .sisnr import SISNR, si_snr
from .specloss import FramedMelSpectrogram, MelSpectrogramL1Loss, MRSTFTLoss, MultiScaleMelSpectrogramLoss, l1_loss

__all__ = [
    "Balancer",
    "FramedMelSpectrogram",
    "MelSpectrogramL1Loss",
    "MRSTFTLoss",
    "MultiScaleMelSpectrogramLoss",
    "SISNR",
    "l1_loss",
    "si_snr",
]
