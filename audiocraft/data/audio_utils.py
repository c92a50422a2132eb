"""Small waveform utilities: channel/sample-rate conversion, normalisation, PCM conversion.

Semantics and defaults follow AudioCraft's ``audiocraft/data/audio_utils.py``; errors are
``ValueError``/``TypeError`` with actionable messages instead of asserts. Loudness is
measured with our own ITU-R BS.1770 implementation (:mod:`audiocraft.data.loudness`).
"""
from __future__ import annotations

import math
import sys

import julius
import torch

from .loudness import integrated_loudness

__all__ = [
    "convert_audio_channels", "convert_audio", "normalize_loudness", "normalize_audio",
    "f32_pcm", "i16_pcm", "NORMALIZE_STRATEGIES",
]

#: Accepted values of ``normalize_audio(strategy=...)``; None, '' and 'none' disable it.
NORMALIZE_STRATEGIES = ("peak", "clip", "rms", "loudness", "none")


def _check_wav(wav: object, func: str, min_dim: int = 1) -> torch.Tensor:
    if not isinstance(wav, torch.Tensor):
        raise TypeError(f"{func}: `wav` must be a torch.Tensor, got {type(wav).__name__}.")
    if wav.dim() < min_dim:
        expected = "[..., C, T]" if min_dim == 2 else "[..., T]"
        raise ValueError(f"{func}: `wav` must have shape {expected}, got {tuple(wav.shape)}; "
                         f"add a channel dimension with wav[None] for mono audio.")
    return wav


def convert_audio_channels(wav: torch.Tensor, channels: int = 2) -> torch.Tensor:
    """Convert audio to the given number of channels.

    Rules (as in AudioCraft): same count -> unchanged; 1 requested -> mean over channels;
    mono input -> broadcast (a view, not a copy) to ``channels``; more input channels than
    requested -> the first ``channels``. Any other case (e.g. stereo -> 5) is ambiguous
    and raises.

    Args:
        wav: audio [..., C, T].
        channels: wanted number of channels (>= 1).
    Returns:
        Audio [..., channels, T].
    """
    wav = _check_wav(wav, "convert_audio_channels", min_dim=2)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"convert_audio_channels: `channels` must be a positive int, got {channels!r}.")
    *batch, src_channels, length = wav.shape
    if src_channels == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=-2, keepdim=True)
    if src_channels == 1:
        return wav.expand(*batch, channels, length)
    if src_channels > channels:
        return wav[..., :channels, :]
    raise ValueError(f"convert_audio_channels: cannot turn {src_channels}-channel audio into {channels} channels "
                     f"(only mono can be upmixed); pass channels <= {src_channels} or a mono signal.")


def _check_rate(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0 or float(value) != int(value):
        raise ValueError(f"convert_audio: `{name}` must be a positive whole number of Hz "
                         f"(int, or a float such as 44100.0), got {value!r}.")
    return int(value)


def convert_audio(wav: torch.Tensor, from_rate: float, to_rate: float, to_channels: int) -> torch.Tensor:
    """Resample (julius ``resample_frac``) then convert the channel count.

    Args:
        wav: audio [..., C, T] at ``from_rate``.
        from_rate: current sample rate in Hz (int, or a float with an integer value).
        to_rate: wanted sample rate in Hz.
        to_channels: wanted number of channels (see :func:`convert_audio_channels`).
    Returns:
        Audio [..., to_channels, floor(T * to_rate / from_rate)].
    """
    wav = _check_wav(wav, "convert_audio", min_dim=2)
    src, dst = _check_rate(from_rate, "from_rate"), _check_rate(to_rate, "to_rate")
    wav = julius.resample_frac(wav, src, dst)
    return convert_audio_channels(wav, to_channels)


def normalize_loudness(wav: torch.Tensor, sample_rate: int, loudness_headroom_db: float = 14,
                       loudness_compressor: bool = False, energy_floor: float = 2e-3) -> torch.Tensor:
    """Scale audio so that its BS.1770 integrated loudness is ``-loudness_headroom_db`` LUFS.

    The loudness is measured like AudioCraft does (torchaudio-compatible K-weighting,
    including its clamping of the filtered signal, see :func:`integrated_loudness`).

    Args:
        wav: audio [C, T] or [T], float.
        sample_rate: sample rate in Hz.
        loudness_headroom_db: target loudness is ``-loudness_headroom_db`` LUFS.
        loudness_compressor: apply ``tanh`` soft clipping after the gain.
        energy_floor: audio whose overall RMS is below this (linear) is returned unchanged,
            as is audio too quiet to pass the -70 LUFS gate.
    Returns:
        Audio with the same shape.
    """
    wav = _check_wav(wav, "normalize_loudness")
    energy = wav.detach().double().pow(2).mean().sqrt().item()
    if energy < energy_floor:
        return wav
    input_loudness = integrated_loudness(wav, sample_rate, clamp_filtered=True)
    if not math.isfinite(input_loudness):
        return wav
    gain = 10.0 ** ((-loudness_headroom_db - input_loudness) / 20.0)
    output = gain * wav
    if loudness_compressor:
        output = torch.tanh(output)
    return output


def _clip_wav(wav: torch.Tensor, log_clipping: bool = False, stem_name: str | None = None) -> torch.Tensor:
    """Clamp to [-1, 1], optionally reporting on stderr how much was clipped."""
    peak = wav.abs().max().item() if wav.numel() else 0.0
    if log_clipping and peak > 1:
        fraction = (wav.abs() > 1).float().mean().item()
        print(f"CLIPPING {stem_name or ''} happening with proba (a bit of clipping is okay): "
              f"{fraction} maximum scale: {peak}", file=sys.stderr)
    return wav.clamp(-1, 1)


def normalize_audio(wav: torch.Tensor, normalize: bool = True,
                    strategy: str | None = "peak", peak_clip_headroom_db: float = 1,
                    rms_headroom_db: float = 18, loudness_headroom_db: float = 14,
                    loudness_compressor: bool = False, log_clipping: bool = False,
                    sample_rate: int | None = None,
                    stem_name: str | None = None) -> torch.Tensor:
    """Normalise audio with one of AudioCraft's strategies.

    - ``'peak'``: scale so that the largest absolute sample is ``-peak_clip_headroom_db`` dBFS.
      With ``normalize=False`` only scale down, when the peak is above that level.
    - ``'clip'``: clamp to +-``-peak_clip_headroom_db`` dBFS (``normalize`` is ignored).
    - ``'rms'``: scale so that the RMS of the channel average is ``-rms_headroom_db`` dBFS
      (with ``normalize=False`` only scale down), then clamp to [-1, 1].
    - ``'loudness'``: :func:`normalize_loudness` to ``-loudness_headroom_db`` LUFS, then clamp
      to [-1, 1] (``normalize`` is ignored); needs ``sample_rate``.
    - ``None``, ``''`` or ``'none'``: unchanged; the audio must already be within (-1, 1).

    Silent input is returned unchanged by 'peak' and 'rms' (AudioCraft would produce NaN).

    Args:
        wav: audio [C, T] or [T], float.
        normalize: see the strategies above.
        strategy: one of :data:`NORMALIZE_STRATEGIES` or None.
        peak_clip_headroom_db: headroom in dB for 'peak' and 'clip'.
        rms_headroom_db: headroom in dB for 'rms' (much larger than the peak one, to avoid clipping).
        loudness_headroom_db: target loudness in -LUFS for 'loudness'.
        loudness_compressor: tanh soft clipping for 'loudness'.
        log_clipping: report on stderr when 'rms' or 'loudness' still clips.
        sample_rate: sample rate in Hz, required for 'loudness'.
        stem_name: name used in clipping reports.
    Returns:
        Normalised audio, same shape.
    """
    wav = _check_wav(wav, "normalize_audio")
    if strategy is not None and not isinstance(strategy, str):
        raise TypeError(f"normalize_audio: `strategy` must be a str or None, got {type(strategy).__name__}.")
    mode = (strategy or "none").lower()
    scale_peak = 10 ** (-peak_clip_headroom_db / 20)
    scale_rms = 10 ** (-rms_headroom_db / 20)
    if mode == "clip":
        return wav.clamp(-scale_peak, scale_peak)
    if mode == "loudness":
        if sample_rate is None:
            raise ValueError("normalize_audio: strategy='loudness' needs `sample_rate` (Hz); pass sample_rate=...")
        wav = normalize_loudness(wav, sample_rate, loudness_headroom_db, loudness_compressor)
        return _clip_wav(wav, log_clipping=log_clipping, stem_name=stem_name)
    if mode == "peak":
        peak = wav.abs().max() if wav.numel() else wav.new_zeros(())
        if peak == 0:
            return wav
        rescaling = scale_peak / peak
        if normalize or rescaling < 1:
            wav = wav * rescaling
        return wav
    if mode == "rms":
        mono = wav.mean(dim=-2) if wav.dim() >= 2 else wav
        rms = mono.pow(2).mean().sqrt() if wav.numel() else wav.new_zeros(())
        if rms == 0:
            return wav
        rescaling = scale_rms / rms
        if normalize or rescaling < 1:
            wav = wav * rescaling
        return _clip_wav(wav, log_clipping=log_clipping, stem_name=stem_name)
    if mode == "none":
        if wav.numel() and wav.abs().max() >= 1:
            raise ValueError(f"normalize_audio: with strategy={strategy!r} the audio{f' {stem_name!r}' if stem_name else ''} "
                             f"must lie within (-1, 1), but its peak is {wav.abs().max().item():.4g}; "
                             f"use strategy='peak' or 'clip', or scale it yourself.")
        return wav
    raise ValueError(f"normalize_audio: unknown `strategy` {strategy!r}; expected one of "
                     f"{', '.join(repr(s) for s in NORMALIZE_STRATEGIES)} or None.")


def f32_pcm(wav: torch.Tensor) -> torch.Tensor:
    """Convert int16 PCM to float32 in [-1, 1) (divide by 2**15); float input is returned as is."""
    wav = _check_wav(wav, "f32_pcm")
    if wav.dtype.is_floating_point:
        return wav
    if wav.dtype != torch.int16:
        raise TypeError(f"f32_pcm: `wav` must be floating point or int16 PCM, got {wav.dtype}.")
    return wav.float() / 2 ** 15


def i16_pcm(wav: torch.Tensor) -> torch.Tensor:
    """Convert float audio in [-1, 1] to int16 PCM; int16 input is returned as is.

    Samples are scaled by 2**15 and rounded; if that would overflow (a sample at +1.0),
    the whole signal is scaled by 2**15 - 1 instead (AudioCraft's rule), so
    ``i16_pcm(f32_pcm(x))`` is not always the identity.
    """
    wav = _check_wav(wav, "i16_pcm")
    if not wav.dtype.is_floating_point:
        if wav.dtype != torch.int16:
            raise TypeError(f"i16_pcm: `wav` must be floating point or int16 PCM, got {wav.dtype}.")
        return wav
    if wav.numel() and wav.abs().max() > 1:
        raise ValueError(f"i16_pcm: float audio must lie within [-1, 1], got a peak of {wav.abs().max().item():.4g}; "
                         f"normalise it first (normalize_audio) or clamp it.")
    candidate = (wav * 2 ** 15).round()
    if candidate.numel() and candidate.max() >= 2 ** 15:
        candidate = (wav * (2 ** 15 - 1)).round()
    return candidate.short()
