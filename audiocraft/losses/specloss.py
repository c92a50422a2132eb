"""Reconstruction losses on waveforms and mel spectrograms (EnCodec training).

* :func:`l1_loss`: mean absolute error between two waveforms.
* :class:`MelSpectrogramL1Loss`: L1 distance between (log) mel spectrograms at one scale.
* :class:`MRSTFTLoss` ("mrstft"): multi-resolution STFT loss (spectral convergence + log magnitude).
* :class:`MultiScaleMelSpectrogramLoss` ("msspec"): over windows ``2 ** i`` for ``i`` in
  ``[range_start, range_end)``, L1 between linear mel spectrograms plus ``alpha_i`` times the
  MSE between log mel spectrograms, ``alpha_i = sqrt(2 ** i - 1)`` (or 1).

Same definitions, defaults and padding as AudioCraft's ``audiocraft/losses/specloss.py``:
each scale reflect-pads ``(n_fft - hop) // 2`` samples on both sides, then zero-pads on the
right so that the last frame is complete, giving ``ceil(T / hop)`` frames per signal.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from ..modules.conv import get_extra_padding_for_conv1d, pad1d
from ..modules.spectrogram import MelSpectrogram, Spectrogram


def _check_pair(x: torch.Tensor, y: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{who}: expected two tensors [B, C, T], got {type(x).__name__} and {type(y).__name__}.")
    if x.shape != y.shape:
        raise ValueError(f"{who}: the estimate and the reference must have the same shape [B, C, T], got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}; trim or pad them to the same length.")


def l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between two signals of the same shape (e.g. ``[B, C, T]``).

    Returns:
        Scalar tensor, ``mean(|x - y|)``.
    """
    _check_pair(x, y, "l1_loss")
    return F.l1_loss(x, y)


class FramedMelSpectrogram(nn.Module):
    """Mel spectrogram with "one frame per hop" padding, optionally in log10 scale.

    Args:
        n_fft: FFT size in samples.
        hop_length: hop in samples (floats such as ``n_fft / 4`` are truncated to int).
        win_length: Hann window length in samples (``None``: ``n_fft``).
        n_mels: number of mel bands.
        sample_rate: sample rate in Hz.
        f_min, f_max: frequency range of the mel filters, in Hz (``f_max=None``: Nyquist).
        log: return ``log10(floor_level + mel)`` instead of the power mel spectrogram.
        normalized: divide the STFT by the window energy (torchaudio ``normalized=True``).
        floor_level: floor added before the log (1e-5 ~ hearing threshold for signals in [-1, 1]).
    Input ``[B, C, T]`` (or ``[B, T]``) -> output ``[B, C * n_mels, ceil(T / hop)]``.
    """

    def __init__(self, n_fft: int = 1024, hop_length: int | float = 256, win_length: int | None = None,
                 n_mels: int = 80, sample_rate: float = 22050, f_min: float = 0.0, f_max: float | None = None,
                 log: bool = True, normalized: bool = False, floor_level: float = 1e-5) -> None:
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        if self.hop_length < 1 or self.hop_length > self.n_fft:
            raise ValueError(f"`hop_length` must be in [1, n_fft={self.n_fft}] samples, got {hop_length!r}.")
        self.log = log
        self.floor_level = floor_level
        self.mel_transform = MelSpectrogram(sample_rate=int(sample_rate), n_fft=self.n_fft, win_length=win_length,
                                            hop_length=self.hop_length, f_min=f_min, f_max=f_max, n_mels=n_mels,
                                            normalized=normalized, center=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveform ``[B, C, T]`` -> mel spectrogram ``[B, C * n_mels, frames]``."""
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        if wav.dim() != 3:
            raise ValueError(f"Expected a waveform [B, C, T] or [B, T], got shape {tuple(wav.shape)}.")
        side = (self.n_fft - self.hop_length) // 2
        wav = pad1d(wav, (side, side), mode="reflect")
        wav = F.pad(wav, (0, get_extra_padding_for_conv1d(wav, self.n_fft, self.hop_length)))
        mel = self.mel_transform(wav)  # [B, C, n_mels, frames]
        if self.log:
            mel = torch.log10(self.floor_level + mel)
        batch, channels, n_mels, frames = mel.shape
        return mel.reshape(batch, channels * n_mels, frames)


class MelSpectrogramL1Loss(nn.Module):
    """L1 distance between the log mel spectrograms of two signals ("mel" loss).

    Args:
        sample_rate: sample rate in Hz.
        n_fft, hop_length, win_length: STFT sizes in samples.
        n_mels: number of mel bands.
        f_min, f_max: mel frequency range in Hz (``f_max=None``: Nyquist).
        log: compare ``log10(floor_level + mel)`` (True) or the power mel spectrograms.
        normalized: window-normalised STFT.
        floor_level: floor added before the log.
    ``forward(x [B, C, T], y [B, C, T])`` -> scalar.
    """

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024,
                 n_mels: int = 80, f_min: float = 0.0, f_max: float | None = None, log: bool = True,
                 normalized: bool = False, floor_level: float = 1e-5) -> None:
        super().__init__()
        self.melspec = FramedMelSpectrogram(n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                            n_mels=n_mels, sample_rate=sample_rate, f_min=f_min, f_max=f_max,
                                            log=log, normalized=normalized, floor_level=floor_level)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar L1 loss between the mel spectrograms of ``x`` and ``y`` (both ``[B, C, T]``)."""
        _check_pair(x, y, "MelSpectrogramL1Loss")
        return F.l1_loss(self.melspec(x), self.melspec(y))


class MultiScaleMelSpectrogramLoss(nn.Module):
    """Multi-scale mel spectrogram loss ("msspec").

    For each ``i`` in ``[range_start, range_end)`` (window and FFT of ``2 ** i`` samples, hop
    ``2 ** i / 4``), adds ``L1(mel(x), mel(y)) + alpha_i * MSE(log mel(x), log mel(y))``.

    Args:
        sample_rate: sample rate in Hz.
        range_start, range_end: first (included) and last (excluded) power of two.
        n_mels: mel bands at every scale (small scales then have empty filters, as in AudioCraft).
        f_min, f_max: mel frequency range in Hz.
        normalized: window-normalised STFTs, and the sum divided by ``sum_i (alpha_i + 1)``.
        alphas: ``alpha_i = sqrt(2 ** i - 1)`` if True, else 1.
        floor_level: floor added before the log.
    ``forward(x [B, C, T], y [B, C, T])`` -> scalar.
    """

    def __init__(self, sample_rate: int, range_start: int = 6, range_end: int = 11, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None, normalized: bool = False, alphas: bool = True,
                 floor_level: float = 1e-5) -> None:
        super().__init__()
        if not range_start < range_end:
            raise ValueError(f"Need `range_start` < `range_end` (powers of two of the window sizes), got "
                             f"{range_start} and {range_end}.")
        self.normalized = normalized
        self.alphas: list[float] = []
        linear, logs = [], []
        with warnings.catch_warnings():
            # Small FFTs have fewer bins than mel bands: empty filters are expected here.
            warnings.filterwarnings("ignore", message="mel_filterbank: some of the")
            for i in range(range_start, range_end):
                n_fft = 2 ** i
                common = dict(n_fft=n_fft, hop_length=n_fft / 4, win_length=n_fft, n_mels=n_mels,
                              sample_rate=sample_rate, f_min=f_min, f_max=f_max, normalized=normalized,
                              floor_level=floor_level)
                linear.append(FramedMelSpectrogram(log=False, **common))
                logs.append(FramedMelSpectrogram(log=True, **common))
                self.alphas.append(math.sqrt(n_fft - 1) if alphas else 1.0)
        self.total = sum(alpha + 1 for alpha in self.alphas)
        # Names as in AudioCraft: l1s hold the linear mel transforms, l2s the log ones.
        self.l1s = nn.ModuleList(linear)
        self.l2s = nn.ModuleList(logs)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar multi-scale mel loss between ``x`` and ``y`` (both ``[B, C, T]``)."""
        _check_pair(x, y, "MultiScaleMelSpectrogramLoss")
        loss = x.new_zeros(())
        for alpha, linear, log in zip(self.alphas, self.l1s, self.l2s):
            loss = loss + F.l1_loss(linear(x), linear(y)) + alpha * F.mse_loss(log(x), log(y))
        if self.normalized:
            loss = loss / self.total
        return loss


class MRSTFTLoss(nn.Module):
    """Multi-resolution STFT loss ("mrstft"): Parallel WaveGAN's two terms, averaged over resolutions.

    At each resolution, with ``X = |STFT(x)|`` and ``Y = |STFT(y)|`` (``sqrt(max(re^2 + im^2, 1e-7))``):
    spectral convergence ``||Y - X||_F / (eps + ||Y||_F)`` and log-magnitude distance
    ``mean|log(eps + Y) - log(eps + X)|``. Both are averaged over the resolutions; the loss is
    ``factor_sc * sc + factor_mag * mag``.

    Unlike the mel losses it compares linear-frequency bins in log scale: half of the bins lie above
    a quarter of the sample rate, and quiet upper harmonics weigh as much as loud fundamentals.
    The waveform losses (L1, SI-SNR) cannot predict the phase of those harmonics and pull them
    towards zero; this loss, blind to phase, pulls them back.

    Args:
        n_ffts, hop_lengths, win_lengths: one entry per resolution, in samples (AudioCraft's defaults).
        window: ``'hann_window'`` (AudioCraft's argument; the only window supported).
        factor_sc, factor_mag: weights of the two terms.
        normalized: STFTs scaled by ``1 / sqrt(n_fft)`` (``torch.stft(normalized=True)``).
        epsilon: added to the norms' denominator and inside the logs.
    ``forward(x [B, C, T], y [B, C, T])`` -> scalar; ``x`` is the estimate, ``y`` the reference, and
    ``T`` must exceed half of the largest ``n_fft``.
    """

    def __init__(self, n_ffts: tuple = (1024, 2048, 512), hop_lengths: tuple = (120, 240, 50),
                 win_lengths: tuple = (600, 1200, 240), window: str = "hann_window", factor_sc: float = 0.1,
                 factor_mag: float = 0.1, normalized: bool = False,
                 epsilon: float = float(torch.finfo(torch.float32).eps)) -> None:
        super().__init__()
        n_ffts, hop_lengths, win_lengths = list(n_ffts), list(hop_lengths), list(win_lengths)
        if not n_ffts or not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError(f"MRSTFTLoss: n_ffts, hop_lengths and win_lengths need one entry per resolution, got "
                             f"{n_ffts}, {hop_lengths}, {win_lengths}.")
        for n_fft, hop, win in zip(n_ffts, hop_lengths, win_lengths):
            if not 0 < win <= n_fft:
                raise ValueError(f"MRSTFTLoss: each window length must be within (0, n_fft], got {win} for n_fft={n_fft}.")
            if hop <= 0:
                raise ValueError(f"MRSTFTLoss: hop lengths must be > 0 samples, got {hop}.")
        if window != "hann_window":
            raise ValueError(f"MRSTFTLoss: unknown window {window!r}; only 'hann_window' is supported.")
        if epsilon < 0:
            raise ValueError(f"MRSTFTLoss: epsilon must be >= 0, got {epsilon}.")
        self.resolutions = list(zip(n_ffts, hop_lengths, win_lengths))
        self.factor_sc, self.factor_mag, self.normalized = float(factor_sc), float(factor_mag), bool(normalized)
        self.epsilon = float(epsilon)
        # Complex STFTs; ``normalized`` is torch.stft's 1/sqrt(n_fft) scaling ('frame_length' here).
        self.stfts = nn.ModuleList(
            Spectrogram(n_fft=int(n_fft), win_length=int(win), hop_length=int(hop), power=None,
                        normalized="frame_length" if self.normalized else False)
            for n_fft, hop, win in self.resolutions)

    def _magnitude(self, x: torch.Tensor, index: int) -> torch.Tensor:
        spec = self.stfts[index](x.reshape(-1, x.shape[-1]))
        return (spec.real ** 2 + spec.imag ** 2).clamp(min=1e-7).sqrt()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar multi-resolution STFT loss between the estimate ``x`` and the reference ``y`` ``[B, C, T]``."""
        _check_pair(x, y, "MRSTFTLoss")
        longest = max(n_fft for n_fft, _, _ in self.resolutions)
        if x.shape[-1] <= longest // 2:
            raise ValueError(f"MRSTFTLoss: signals of {x.shape[-1]} samples are too short for an FFT of {longest}; "
                             f"use segments longer than {longest // 2} samples or smaller `n_ffts`.")
        sc = mag = x.new_zeros(())
        eps = self.epsilon
        for index in range(len(self.resolutions)):
            x_mag, y_mag = self._magnitude(x, index), self._magnitude(y, index)
            sc = sc + torch.linalg.norm(y_mag - x_mag) / (eps + torch.linalg.norm(y_mag))
            mag = mag + F.l1_loss(torch.log(eps + y_mag), torch.log(eps + x_mag))
        count = len(self.resolutions)
        return self.factor_sc * sc / count + self.factor_mag * mag / count
