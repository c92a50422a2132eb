"""Adversarial training for compression models: the MS-STFT discriminator and its losses.

Typical use in a compression solver::

    disc = MultiScaleSTFTDiscriminator(filters=32)
    adv = AdversarialLoss(disc, torch.optim.Adam(disc.parameters(), 3e-4),
                          loss=get_adv_criterion('hinge'), loss_real=get_real_criterion('hinge'),
                          loss_fake=get_fake_criterion('hinge'), loss_feat=FeatureMatchingLoss())
"""
from .discriminators import DiscriminatorSTFT, MultiScaleSTFTDiscriminator
from .losses import (
    ADVERSARIAL_LOSSES,
    AdversarialLoss,
    FeatureMatchingLoss,
    get_adv_criterion,
    get_fake_criterion,
    get_real_criterion,
    hinge2_loss,
    hinge_fake_loss,
    hinge_loss,
    hinge_real_loss,
    mse_fake_loss,
    mse_loss,
    mse_real_loss,
)

__all__ = [
    "ADVERSARIAL_LOSSES",
    "AdversarialLoss",
    "DiscriminatorSTFT",
    "FeatureMatchingLoss",
    "MultiScaleSTFTDiscriminator",
    "get_adv_criterion",
    "get_fake_criterion",
    "get_real_criterion",
    "hinge2_loss",
    "hinge_fake_loss",
    "hinge_loss",
    "hinge_real_loss",
    "mse_fake_loss",
    "mse_loss",
    "mse_real_loss",
]
