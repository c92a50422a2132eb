"""Conditioners: what a generation is conditioned on, and how it reaches the language model.

One file per family: ``base`` (attributes, dropouts), ``text`` (T5, sentence encoder,
lookup table), ``wav`` (melody chroma), ``provider`` (collation and fusion).
"""
from .base import (AttributeDropout, BaseConditioner, ClassifierFreeGuidanceDropout, ConditioningAttributes,
                   ConditionType, WavCondition, drop_all_conditions, drop_text_conditions, nullify_wav)
from .provider import ConditionFuser, ConditioningProvider
from .text import LUTConditioner, SentenceEmbeddingConditioner, T5Conditioner, TextConditioner
from .wav import ChromaStemConditioner, WaveformConditioner

__all__ = [
    "AttributeDropout", "BaseConditioner", "ClassifierFreeGuidanceDropout", "ConditioningAttributes",
    "ConditionType", "WavCondition", "drop_all_conditions", "drop_text_conditions", "nullify_wav",
    "ConditionFuser", "ConditioningProvider", "LUTConditioner", "SentenceEmbeddingConditioner",
    "T5Conditioner", "TextConditioner", "ChromaStemConditioner", "WaveformConditioner",
]
