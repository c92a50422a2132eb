"""Evaluation metrics for generated audio, computed in-process on a pluggable model.

- :class:`FrechetAudioDistance` (and :func:`frechet_distance`,
  :func:`frechet_audio_distance_from_folders`): distance between the embedding distributions
  of generated and reference audio, from an :class:`AudioEmbedder`.
- :class:`KLDivergence`: KL divergence of the label distributions an :class:`AudioClassifier`
  predicts for paired generated and reference clips.
- :class:`TextConsistencyMetric`: cosine similarity of clip and prompt in the joint space of a
  :class:`TextAudioEmbedder`; :class:`ClassifierTextConsistency`: fraction of clips classified
  as the label their prompt asked for.

Every metric is a :class:`StreamingMetric`: ``update(...)`` per batch, ``compute()``,
``reset()``, and ``merge(other)`` / ``state()`` to combine per-rank accumulators.
:class:`MelStatisticsEmbedder` is a weight-free embedder that works out of the box.
"""
from .base import StreamingMetric
from .embedders import (AudioClassifier, AudioEmbedder, MelStatisticsEmbedder, TextAudioEmbedder,
                        check_audio_classifier, check_audio_embedder, check_text_audio_embedder)
from .fad import (AUDIO_EXTENSIONS, FrechetAudioDistance, frechet_audio_distance_from_folders, frechet_distance,
                  gaussian_parameters)
from .kld import KLDivergence, kl_divergence
from .text_consistency import ClassifierTextConsistency, TextConsistencyMetric, keyword_label_matcher

__all__ = [
    "StreamingMetric",
    "AudioEmbedder", "AudioClassifier", "TextAudioEmbedder", "MelStatisticsEmbedder",
    "check_audio_embedder", "check_audio_classifier", "check_text_audio_embedder",
    "frechet_distance", "gaussian_parameters", "FrechetAudioDistance", "frechet_audio_distance_from_folders",
    "AUDIO_EXTENSIONS",
    "kl_divergence", "KLDivergence",
    "TextConsistencyMetric", "ClassifierTextConsistency", "keyword_label_matcher",
]
