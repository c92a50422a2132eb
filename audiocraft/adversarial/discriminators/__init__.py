"""Discriminators for adversarial codec training."""
from .msstftd import DiscriminatorSTFT, MultiDiscriminatorOutput, MultiScaleSTFTDiscriminator, NormConv2d

__all__ = ["DiscriminatorSTFT", "MultiDiscriminatorOutput", "MultiScaleSTFTDiscriminator", "NormConv2d"]
