"""Quantizers turning continuous latents ``[B, D, T]`` into discrete codes ``[B, K, T]``."""
from .base import BaseQuantizer, DummyQuantizer, QuantizedResult
from .rvq import ResidualVectorQuantization, ResidualVectorQuantizer
from .vq import EuclideanCodebook, VectorQuantization, kmeans

__all__ = [
    "BaseQuantizer",
    "DummyQuantizer",
    "EuclideanCodebook",
    "QuantizedResult",
    "ResidualVectorQuantization",
    "ResidualVectorQuantizer",
    "VectorQuantization",
    "kmeans",
]
