"""Assembled models: compression models, the language model and the generation API.

    from audiocraft.models import MusicGen, AudioGen, CompressionModel, EncodecModel, LMModel
"""
from . import builders, loaders
from .audiogen import AudioGen
from .encodec import (CompressionModel, EncodecModel, HFEncodecCompressionModel,
                      InterleaveStereoCompressionModel)
from .genmodel import BaseGenModel
from .lm import LMModel
from .musicgen import MusicGen

__all__ = [
    "builders", "loaders", "AudioGen", "CompressionModel", "EncodecModel", "HFEncodecCompressionModel",
    "InterleaveStereoCompressionModel", "BaseGenModel", "LMModel", "MusicGen",
]
