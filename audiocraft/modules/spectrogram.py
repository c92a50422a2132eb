"""STFT spectrograms and mel filterbanks, without torchaudio.

The numbers match ``torchaudio.transforms.Spectrogram`` / ``MelSpectrogram`` and
``torchaudio.functional.melscale_fbanks`` (same equations, same float32 order of
operations), so the spectral losses and the STFT discriminator behave exactly as
in AudioCraft:

* a Hann window (periodic) of ``win_length`` samples, zero-padded in the middle of
  an ``n_fft`` frame by ``torch.stft``;
* ``normalized=True`` (or ``'window'``) divides the STFT by ``sqrt(sum(window ** 2))``,
  ``'frame_length'`` by ``sqrt(n_fft)``;
* mel scales: HTK ``mel = 2595 * log10(1 + f / 700)`` or Slaney (linear below 1 kHz,
  logarithmic above); triangles are built in Hz between consecutive mel points,
  optionally area-normalised (``norm='slaney'``: each triangle is scaled by
  ``2 / (f_right - f_left)``).

Shapes: a waveform ``[..., T]`` (samples) gives a spectrogram ``[..., F, frames]`` with
``F = n_fft // 2 + 1`` frequency bins, or ``[..., n_mels, frames]`` after the mel scale.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

#: Mel scales understood by :func:`hz_to_mel` / :func:`mel_to_hz`.
MEL_SCALES = ("htk", "slaney")

# Slaney scale constants: linear part of 3 mel per 200 Hz, then logarithmic above 1 kHz.
_SLANEY_HZ_PER_MEL = 200.0 / 3
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def _check_mel_scale(mel_scale: str) -> None:
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"`mel_scale` must be one of {MEL_SCALES}, got {mel_scale!r}.")


def hz_to_mel(freq: float, mel_scale: str = "htk") -> float:
    """Convert one frequency from Hz to mel.

    Args:
        freq: frequency in Hz (>= 0).
        mel_scale: ``'htk'`` (``2595 * log10(1 + f / 700)``) or ``'slaney'``.
    Returns:
        The frequency in mel.
    """
    _check_mel_scale(mel_scale)
    if mel_scale == "htk":
        return 2595.0 * math.log10(1.0 + freq / 700.0)
    if freq < _SLANEY_BREAK_HZ:
        return freq / _SLANEY_HZ_PER_MEL
    return _SLANEY_BREAK_MEL + math.log(freq / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP


def mel_to_hz(mels: torch.Tensor, mel_scale: str = "htk") -> torch.Tensor:
    """Convert mel values back to Hz (inverse of :func:`hz_to_mel`), element-wise.

    Args:
        mels: tensor of mel values, any shape.
        mel_scale: ``'htk'`` or ``'slaney'``.
    Returns:
        Tensor of the same shape, in Hz.
    """
    _check_mel_scale(mel_scale)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    linear = mels * _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_BREAK_HZ * torch.exp(_SLANEY_LOG_STEP * (mels - _SLANEY_BREAK_MEL))
    return torch.where(mels >= _SLANEY_BREAK_MEL, logarithmic, linear)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None,
                   norm: str | None = None, mel_scale: str = "htk") -> torch.Tensor:
    """Triangular mel filterbank, as ``torchaudio.functional.melscale_fbanks``.

    ``n_mels + 2`` points are spread evenly on the mel scale between ``f_min`` and ``f_max``;
    filter ``m`` rises linearly (in Hz) from point ``m`` to 1 at point ``m + 1`` and falls
    back to 0 at point ``m + 2``. The STFT bins sit at ``linspace(0, sample_rate // 2, F)``.

    Args:
        sample_rate: sample rate of the audio, in Hz.
        n_fft: FFT size in samples; the filterbank has ``F = n_fft // 2 + 1`` rows.
        n_mels: number of mel filters.
        f_min: lowest edge of the first filter, in Hz.
        f_max: highest edge of the last filter, in Hz (``None``: ``sample_rate // 2``).
        norm: ``None`` (triangles of height 1) or ``'slaney'`` (triangles of unit area in Hz,
            up to the factor 2 / width convention of Slaney's Auditory Toolbox).
        mel_scale: ``'htk'`` or ``'slaney'``.
    Returns:
        Filterbank ``[F, n_mels]`` (float32): ``mel_spec = spec.transpose(-1, -2) @ fb``.
    """
    if not isinstance(n_fft, int) or n_fft < 1:
        raise ValueError(f"`n_fft` must be a positive int (FFT size in samples), got {n_fft!r}.")
    if not isinstance(n_mels, int) or n_mels < 1:
        raise ValueError(f"`n_mels` must be a positive int, got {n_mels!r}.")
    if sample_rate <= 0:
        raise ValueError(f"`sample_rate` must be positive (Hz), got {sample_rate!r}.")
    if norm not in (None, "slaney"):
        raise ValueError(f"`norm` must be None or 'slaney', got {norm!r}.")
    _check_mel_scale(mel_scale)
    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"Need 0 <= `f_min` < `f_max` (Hz), got f_min={f_min!r}, f_max={f_max!r}; "
                         "lower f_min or raise f_max.")
    n_freqs = n_fft // 2 + 1
    bin_freqs = torch.linspace(0, sample_rate // 2, n_freqs)  # [F], Hz
    mel_points = torch.linspace(hz_to_mel(f_min, mel_scale), hz_to_mel(f_max, mel_scale), n_mels + 2)
    hz_points = mel_to_hz(mel_points, mel_scale)  # [n_mels + 2], Hz
    widths = hz_points[1:] - hz_points[:-1]  # [n_mels + 1]
    # offsets[f, p]: distance in Hz from STFT bin f up to mel point p.
    offsets = hz_points.unsqueeze(0) - bin_freqs.unsqueeze(1)  # [F, n_mels + 2]
    rising = -offsets[:, :-2] / widths[:-1]  # 0 at the left point, 1 at the centre
    falling = offsets[:, 2:] / widths[1:]  # 1 at the centre, 0 at the right point
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)  # [F, n_mels]
    if norm == "slaney":
        fb = fb * (2.0 / (hz_points[2:] - hz_points[:-2])).unsqueeze(0)
    if (fb.max(dim=0).values == 0.0).any():
        warnings.warn(f"mel_filterbank: some of the {n_mels} mel filters are empty (all zeros): `n_mels` is too "
                      f"large for n_fft={n_fft} ({n_freqs} frequency bins) and this frequency range.")
    return fb


def _spectrogram_norms(normalized: bool | str) -> tuple[bool, bool]:
    """Translate torchaudio's ``normalized`` flag into (divide by window energy, torch.stft normalized)."""
    if normalized is True or normalized == "window":
        return True, False
    if normalized is False:
        return False, False
    if normalized == "frame_length":
        return False, True
    raise ValueError(f"`normalized` must be a bool, 'window' or 'frame_length', got {normalized!r}.")


class Spectrogram(nn.Module):
    """STFT of a waveform with a Hann window, as ``torchaudio.transforms.Spectrogram``.

    Args:
        n_fft: FFT size in samples; output has ``F = n_fft // 2 + 1`` frequency bins.
        win_length: Hann window length in samples (``None``: ``n_fft``), at most ``n_fft``.
        hop_length: hop between frames in samples (``None``: ``win_length // 2``).
        power: exponent of the magnitude (2: power, 1: magnitude, ``None``: complex STFT).
        normalized: ``True``/``'window'``: divide by ``sqrt(sum(window ** 2))``;
            ``'frame_length'``: divide by ``sqrt(n_fft)``; ``False``: raw STFT.
        center: pad ``n_fft // 2`` samples on both sides so frame ``t`` is centred on
            sample ``t * hop_length``.
        pad_mode: padding mode used when ``center`` is True (``'reflect'``, ``'constant'``, ...).
    Input ``[..., T]`` -> output ``[..., F, frames]`` with ``frames = 1 + T // hop_length``
    when centred, ``1 + (T - n_fft) // hop_length`` otherwise.
    The Hann window is the buffer ``window`` (as in torchaudio's state dicts).
    """

    def __init__(self, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None,
                 power: float | None = 2.0, normalized: bool | str = False, center: bool = True,
                 pad_mode: str = "reflect") -> None:
        super().__init__()
        if not isinstance(n_fft, int) or n_fft < 1:
            raise ValueError(f"`n_fft` must be a positive int (samples), got {n_fft!r}.")
        win_length = n_fft if win_length is None else int(win_length)
        if not 1 <= win_length <= n_fft:
            raise ValueError(f"`win_length` must be in [1, n_fft={n_fft}] samples, got {win_length}.")
        hop_length = win_length // 2 if hop_length is None else int(hop_length)
        if hop_length < 1:
            raise ValueError(f"`hop_length` must be >= 1 sample, got {hop_length}; pass a larger hop_length.")
        if power is not None and power <= 0:
            raise ValueError(f"`power` must be positive or None (complex output), got {power!r}.")
        self._window_norm, self._frame_norm = _spectrogram_norms(normalized)
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.power = power
        self.normalized = normalized
        self.center = center
        self.pad_mode = pad_mode
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveform ``[..., T]`` -> spectrogram ``[..., F, frames]`` (complex if ``power`` is None)."""
        if wav.dim() < 1:
            raise ValueError("Spectrogram expects a waveform [..., T], got a 0-d tensor.")
        length = wav.shape[-1]
        min_length = self.n_fft // 2 + 1 if self.center else self.n_fft
        if length < min_length:
            raise ValueError(f"Spectrogram: the waveform has {length} samples, fewer than the {min_length} needed "
                             f"for n_fft={self.n_fft} (center={self.center}); pass a longer signal or a smaller n_fft.")
        lead_shape = wav.shape[:-1]
        window = self.window.to(device=wav.device, dtype=wav.dtype if wav.is_floating_point() else torch.float32)
        spec = torch.stft(wav.reshape(-1, length), n_fft=self.n_fft, hop_length=self.hop_length,
                          win_length=self.win_length, window=window, center=self.center, pad_mode=self.pad_mode,
                          normalized=self._frame_norm, onesided=True, return_complex=True)
        spec = spec.reshape(*lead_shape, *spec.shape[-2:])
        if self._window_norm:
            spec = spec / window.pow(2.0).sum().sqrt()
        if self.power is None:
            return spec
        if self.power == 1.0:
            return spec.abs()
        return spec.abs().pow(self.power)


class MelScale(nn.Module):
    """Project a linear-frequency spectrogram onto mel bands (``torchaudio.transforms.MelScale``).

    Args:
        n_mels, sample_rate, f_min, f_max, norm, mel_scale: see :func:`mel_filterbank`.
        n_stft: number of STFT bins ``F`` of the input (``n_fft // 2 + 1``).
    Input ``[..., F, frames]`` -> output ``[..., n_mels, frames]``. The filterbank is the
    buffer ``fb`` ``[F, n_mels]``.
    """

    def __init__(self, n_mels: int = 128, sample_rate: int = 16000, f_min: float = 0.0, f_max: float | None = None,
                 n_stft: int = 201, norm: str | None = None, mel_scale: str = "htk") -> None:
        super().__init__()
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.f_min = f_min
        self.f_max = f_max
        fb = mel_filterbank(sample_rate, 2 * (n_stft - 1), n_mels, f_min, f_max, norm, mel_scale)
        self.register_buffer("fb", fb)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Spectrogram ``[..., F, frames]`` -> mel spectrogram ``[..., n_mels, frames]``."""
        if spec.dim() < 2 or spec.shape[-2] != self.fb.shape[0]:
            raise ValueError(f"MelScale expects a spectrogram [..., F={self.fb.shape[0]}, frames], "
                             f"got shape {tuple(spec.shape)}; check n_fft of the spectrogram.")
        fb = self.fb.to(device=spec.device, dtype=spec.dtype)
        return torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    """Mel spectrogram of a waveform, as ``torchaudio.transforms.MelSpectrogram`` (Hann window).

    Args:
        sample_rate: sample rate of the input, in Hz.
        n_fft, win_length, hop_length, power, normalized, center, pad_mode: see :class:`Spectrogram`.
        f_min, f_max, n_mels, norm, mel_scale: see :func:`mel_filterbank`.
    Input ``[..., T]`` -> output ``[..., n_mels, frames]``. Submodules ``spectrogram``
    (buffer ``window``) and ``mel_scale`` (buffer ``fb``) keep torchaudio's state-dict names.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: int | None = None,
                 hop_length: int | None = None, f_min: float = 0.0, f_max: float | None = None, n_mels: int = 128,
                 power: float = 2.0, normalized: bool | str = False, center: bool = True, pad_mode: str = "reflect",
                 norm: str | None = None, mel_scale: str = "htk") -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.n_mels = n_mels
        self.spectrogram = Spectrogram(n_fft=n_fft, win_length=win_length, hop_length=hop_length, power=power,
                                       normalized=normalized, center=center, pad_mode=pad_mode)
        self.win_length = self.spectrogram.win_length
        self.hop_length = self.spectrogram.hop_length
        self.mel_scale = MelScale(n_mels, sample_rate, f_min, f_max, n_fft // 2 + 1, norm, mel_scale)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveform ``[..., T]`` -> mel spectrogram ``[..., n_mels, frames]``."""
        return self.mel_scale(self.spectrogram(wav))
