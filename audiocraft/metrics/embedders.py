"""The models behind the metrics, as small protocols, and a built-in weight-free embedder.

The metrics never depend on one particular network. They talk to:

- an :class:`AudioEmbedder` (Fréchet audio distance): ``embed(wav [B, C, T]) -> [B, D]``;
- an :class:`AudioClassifier` (KL divergence, classifier text consistency):
  ``predict_proba(wav [B, C, T]) -> [B, L]`` over ``labels``;
- a :class:`TextAudioEmbedder` (text consistency, CLAP-like):
  ``embed_text(texts) -> [B, D]`` and ``embed_audio(wav [B, C, T]) -> [B, D]`` in one space.

Each has a ``sample_rate`` (Hz) and may have ``channels`` (default 1): the metric cuts every
clip to its valid length and converts it to that rate and channel count with
:func:`audiocraft.data.audio_utils.convert_audio` before calling the model, so a model only
ever sees audio in the format it was built for. Models are called under ``torch.no_grad()``.

:class:`MelStatisticsEmbedder` works out of the box (no weights, deterministic): the mean and
standard deviation over time of a log-mel spectrogram. It is a sanity-check and fallback
embedder, not a perceptual model.
"""
from __future__ import annotations

import typing as tp

import torch
from torch import nn
from torch.nn import functional as F

from ..modules.spectrogram import MelSpectrogram

__all__ = ["AudioEmbedder", "AudioClassifier", "TextAudioEmbedder", "MelStatisticsEmbedder",
           "check_audio_embedder", "check_audio_classifier", "check_text_audio_embedder"]


@tp.runtime_checkable
class AudioEmbedder(tp.Protocol):
    """Clip-level audio embeddings.

    Attributes:
        sample_rate: rate of the audio ``embed`` expects, in Hz.
    Optional attribute ``channels`` (int, default 1): channel count ``embed`` expects.
    """

    sample_rate: int

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, T]`` at ``sample_rate`` -> one embedding per clip ``[B, D]``."""
        ...


@tp.runtime_checkable
class AudioClassifier(tp.Protocol):
    """Clip-level audio classifier.

    Attributes:
        sample_rate: rate of the audio ``predict_proba`` expects, in Hz.
        labels: the ``L`` class names, in the order of the output columns.
    Optional attribute ``channels`` (int, default 1).
    """

    sample_rate: int
    labels: list[str]

    def predict_proba(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, T]`` at ``sample_rate`` -> class probabilities ``[B, L]`` (rows sum to 1).

        A classifier that returns logits instead can be used with ``from_logits=True`` in the
        metric, which then applies a softmax.
        """
        ...


@tp.runtime_checkable
class TextAudioEmbedder(tp.Protocol):
    """Joint text/audio embedding space (CLAP-like): matching pairs have similar embeddings.

    Attributes:
        sample_rate: rate of the audio ``embed_audio`` expects, in Hz.
    Optional attribute ``channels`` (int, default 1).
    """

    sample_rate: int

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """``B`` texts -> embeddings ``[B, D]``."""
        ...

    def embed_audio(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, T]`` at ``sample_rate`` -> embeddings ``[B, D]`` (same ``D`` as the texts)."""
        ...


def _check_common(model: object, kind: str, methods: tuple[str, ...], caller: str) -> None:
    missing = [name for name in ("sample_rate", *methods) if not hasattr(model, name)]
    missing += [name for name in methods if hasattr(model, name) and not callable(getattr(model, name))]
    if missing:
        raise TypeError(f"{caller}: the model must follow the {kind} protocol (attribute `sample_rate` and "
                        f"method(s) {', '.join(f'`{m}`' for m in methods)}); {type(model).__name__} lacks "
                        f"{', '.join(f'`{m}`' for m in missing)}. See audiocraft.metrics.embedders.")
    rate = getattr(model, "sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"{caller}: `{type(model).__name__}.sample_rate` must be a positive int (Hz), got {rate!r}.")
    channels = getattr(model, "channels", 1)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
        raise ValueError(f"{caller}: `{type(model).__name__}.channels` must be a positive int, got {channels!r}.")


def check_audio_embedder(model: object, caller: str = "metric") -> AudioEmbedder:
    """Raise TypeError/ValueError unless ``model`` follows :class:`AudioEmbedder`; return it."""
    _check_common(model, "AudioEmbedder", ("embed",), caller)
    return tp.cast(AudioEmbedder, model)


def check_audio_classifier(model: object, caller: str = "metric") -> AudioClassifier:
    """Raise TypeError/ValueError unless ``model`` follows :class:`AudioClassifier`; return it."""
    _check_common(model, "AudioClassifier", ("predict_proba",), caller)
    labels = getattr(model, "labels", None)
    if isinstance(labels, str) or not isinstance(labels, tp.Sequence) or not labels \
            or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"{caller}: `{type(model).__name__}.labels` must be a non-empty list of str (one name per "
                        f"output column), got {labels!r}.")
    if len(set(labels)) != len(labels):
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        raise ValueError(f"{caller}: `{type(model).__name__}.labels` must be unique, got duplicates {duplicates}.")
    return tp.cast(AudioClassifier, model)


def check_text_audio_embedder(model: object, caller: str = "metric") -> TextAudioEmbedder:
    """Raise TypeError/ValueError unless ``model`` follows :class:`TextAudioEmbedder`; return it."""
    _check_common(model, "TextAudioEmbedder", ("embed_text", "embed_audio"), caller)
    return tp.cast(TextAudioEmbedder, model)


class MelStatisticsEmbedder(nn.Module):
    """Mean and standard deviation over time of a log-mel spectrogram: a weight-free embedder.

    Each clip is downmixed to mono, turned into a power mel spectrogram (Hann window,
    HTK mel scale, :class:`audiocraft.modules.spectrogram.MelSpectrogram`), floored at
    ``log_floor`` and log-compressed (natural log); the embedding is
    ``[mean over frames (n_mels), std over frames (n_mels)]``, so ``D = 2 * n_mels``.
    Clips shorter than ``n_fft`` samples are zero-padded to ``n_fft``.

    Args:
        sample_rate: expected sample rate of the audio, in Hz.
        n_mels: number of mel bands.
        n_fft: FFT and window size, in samples.
        hop_length: hop between frames, in samples.
        f_min: lowest mel frequency, in Hz.
        f_max: highest mel frequency, in Hz (None: ``sample_rate / 2``).
        log_floor: power floor before the log (avoids ``log(0)`` on silence).
    """

    channels: int = 1

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, n_fft: int = 1024, hop_length: int = 256,
                 f_min: float = 0.0, f_max: float | None = None, log_floor: float = 1e-5) -> None:
        super().__init__()
        for name, value in (("sample_rate", sample_rate), ("n_mels", n_mels), ("n_fft", n_fft),
                            ("hop_length", hop_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MelStatisticsEmbedder: `{name}` must be a positive int, got {value!r}.")
        if not log_floor > 0:
            raise ValueError(f"MelStatisticsEmbedder: `log_floor` must be > 0, got {log_floor!r}.")
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.log_floor = float(log_floor)
        self.mel = MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, f_min=f_min,
                                  f_max=f_max, n_mels=n_mels, power=2.0)

    @property
    def dimension(self) -> int:
        """Size ``D`` of the embeddings (``2 * n_mels``)."""
        return 2 * self.n_mels

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, T]`` at ``sample_rate`` Hz -> embeddings ``[B, 2 * n_mels]`` (float32)."""
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3:
            got = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise ValueError(f"MelStatisticsEmbedder.embed: `wav` must be a tensor [B, C, T], got {got}.")
        mono = wav.float().mean(dim=1)
        if mono.shape[-1] < self.n_fft:
            mono = F.pad(mono, (0, self.n_fft - mono.shape[-1]))
        log_mel = self.mel(mono).clamp(min=self.log_floor).log()  # [B, n_mels, frames]
        mean = log_mel.mean(dim=-1)
        std = log_mel.std(dim=-1, unbiased=False)
        return torch.cat([mean, std], dim=-1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(wav)
