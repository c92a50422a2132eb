"""Chromagram extraction, as used by MusicGen-melody's chroma conditioner.

A chromagram folds the spectrum onto the 12 pitch classes (C, C#, ..., B): a power
spectrogram ``[F, frames]`` is multiplied by a fixed chroma filterbank ``[n_chroma, F]``
and each frame is normalised over the chroma bins.

Two pieces, both written without librosa or torchaudio:

* :func:`chroma_filterbank` reproduces ``librosa.filters.chroma`` (Gaussian bumps around
  each pitch class in log-frequency, per-FFT-bin normalisation, an octave-dominance
  Gaussian centred on ``ctroct`` octaves above A0 = 27.5 Hz, rows rotated to start at C),
  computed in float64 and returned as float32 like librosa does.
* :class:`ChromaExtractor` reproduces AudioCraft's module: a centred, "window"-normalised
  Hann power spectrogram (torchaudio's ``Spectrogram(power=2, normalized=True)``) through
  the filterbank, normalised per frame, optionally quantised to a one-hot argmax.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def chroma_filterbank(sample_rate: float, n_fft: int, n_chroma: int = 12, tuning: float = 0.0,
                      ctroct: float = 5.0, octwidth: Optional[float] = 2.0, norm: float = 2.0,
                      base_c: bool = True) -> torch.Tensor:
    """Filterbank mapping STFT bins to chroma bins, equal to ``librosa.filters.chroma``.

    Args:
        sample_rate (float): sample rate of the analysed audio, in Hz.
        n_fft (int): FFT size; the filterbank covers its ``n_fft // 2 + 1`` one-sided bins.
        n_chroma (int): number of chroma bins per octave (12 for semitones).
        tuning (float): tuning offset from A440, in fractions of a chroma bin.
        ctroct (float): centre of the octave-dominance Gaussian, in octaves above A0 (27.5 Hz).
        octwidth (float, optional): half-width of that Gaussian, in octaves; None for flat weighting.
        norm (float): order of the norm each FFT bin's column is normalised to before the
            octave weighting (``math.inf`` for max-normalisation).
        base_c (bool): if True row 0 is C (then C#, ..., B); if False row 0 is A.
    Returns:
        torch.Tensor: float32 ``[n_chroma, n_fft // 2 + 1]``.
    """
    if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < 2:
        raise ValueError(f"n_fft must be an int >= 2, got {n_fft!r}.")
    if isinstance(n_chroma, bool) or not isinstance(n_chroma, int) or n_chroma < 1:
        raise ValueError(f"n_chroma must be a positive int, got {n_chroma!r}.")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive (Hz), got {sample_rate!r}.")
    if not norm > 0:
        raise ValueError(f"norm must be > 0 or math.inf, got {norm!r}.")

    # Frequencies of FFT bins 1..n_fft-1 (the two-sided grid, DC excluded), in chroma bins
    # above A0 (octave number times n_chroma).
    freqs = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    bins = n_chroma * np.log2(freqs / (a440 / 16))
    # The DC bin gets a made-up position 1.5 octaves below bin 1.
    bins = np.concatenate(([bins[0] - 1.5 * n_chroma], bins))
    widths = np.concatenate((np.maximum(np.diff(bins), 1.0), [1.0]))

    # Signed distance of each FFT bin to each chroma bin, wrapped into [-n_chroma/2, n_chroma/2).
    half = np.round(n_chroma / 2.0)
    dist = bins[np.newaxis, :] - np.arange(n_chroma, dtype=np.float64)[:, np.newaxis]
    dist = np.remainder(dist + half + 10 * n_chroma, n_chroma) - half

    weights = np.exp(-0.5 * (2 * dist / widths[np.newaxis, :]) ** 2)
    if math.isinf(norm):
        lengths = np.max(np.abs(weights), axis=0, keepdims=True)
    else:
        lengths = np.sum(np.abs(weights) ** norm, axis=0, keepdims=True) ** (1.0 / norm)
    lengths[lengths < np.finfo(weights.dtype).tiny] = 1.0
    weights = weights / lengths

    if octwidth is not None:
        weights = weights * np.exp(-0.5 * ((bins / n_chroma - ctroct) / octwidth) ** 2)[np.newaxis, :]
    if base_c:  # rows start at A; rotate so that row 0 is C (3 semitones above A)
        weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    return torch.from_numpy(np.ascontiguousarray(weights[:, :n_fft // 2 + 1], dtype=np.float32))


class ChromaExtractor(nn.Module):
    """Chromagram of a mono waveform, optionally quantised to the dominant pitch class.

    Args:
        sample_rate (int): sample rate of the input audio, in Hz.
        n_chroma (int): number of chroma bins.
        radix2_exp (int): the default window length is ``2 ** radix2_exp`` samples.
        nfft (int, optional): FFT size, defaults to the window length.
        winlen (int, optional): window length in samples, defaults to ``2 ** radix2_exp``.
        winhop (int, optional): hop between frames in samples, defaults to ``winlen // 4``.
        argmax (bool): replace each frame by a one-hot vector of its strongest chroma bin.
        norm (float): order of the norm each frame is normalised to over the chroma bins
            (default ``inf``: the strongest bin is 1).
        device (torch.device or str, optional): where to put the filterbank and window.
    """

    def __init__(self, sample_rate: int, n_chroma: int = 12, radix2_exp: int = 12, nfft: Optional[int] = None,
                 winlen: Optional[int] = None, winhop: Optional[int] = None, argmax: bool = False,
                 norm: float = math.inf, device: Optional[Union[torch.device, str]] = None) -> None:
        super().__init__()
        self.winlen = int(winlen or 2 ** radix2_exp)
        self.nfft = int(nfft or self.winlen)
        self.winhop = int(winhop or (self.winlen // 4))
        if self.winlen > self.nfft:
            raise ValueError(f"winlen={self.winlen} is longer than nfft={self.nfft}; "
                             f"use nfft >= winlen (or leave nfft=None to use the window length).")
        if self.winhop < 1:
            raise ValueError(f"winhop must be >= 1 sample, got {self.winhop} (winlen={self.winlen}); "
                             f"pass a larger winlen or an explicit winhop.")
        self.sample_rate = sample_rate
        self.n_chroma = n_chroma
        self.norm = norm
        self.argmax = argmax
        fbanks = chroma_filterbank(sample_rate, self.nfft, n_chroma=n_chroma)
        self.register_buffer("fbanks", fbanks.to(device), persistent=False)
        self.register_buffer("window", torch.hann_window(self.winlen, device=device), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Number of chroma frames for ``num_samples`` input samples: ``1 + max(num_samples, nfft) // winhop``."""
        return 1 + max(num_samples, self.nfft) // self.winhop

    def _power_spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """Power spectrogram ``[N, nfft // 2 + 1, frames]`` of ``wav [N, T]``, window-normalised."""
        spec = torch.stft(wav, n_fft=self.nfft, hop_length=self.winhop, win_length=self.winlen,
                          window=self.window, center=True, pad_mode="reflect", normalized=False,
                          onesided=True, return_complex=True)
        spec = spec / self.window.pow(2).sum().sqrt()
        return spec.abs().pow(2)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Chromagram of ``wav``.

        Args:
            wav (torch.Tensor): mono audio ``[B, 1, T]`` (or ``[B, T]``) at ``sample_rate``. Inputs
                shorter than ``nfft`` samples are zero-padded on both sides to ``nfft``.
        Returns:
            torch.Tensor: float32 chroma ``[B, frames, n_chroma]`` with
            ``frames = 1 + max(T, nfft) // winhop``; each frame has unit ``norm`` (or is one-hot with ``argmax``).
        """
        if not isinstance(wav, torch.Tensor) or wav.dim() not in (2, 3) or (wav.dim() == 3 and wav.shape[1] != 1):
            got = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise ValueError(f"wav must be mono audio [B, 1, T] or [B, T], got {got}; "
                             f"downmix first, e.g. wav.mean(dim=1, keepdim=True).")
        wav = wav.reshape(wav.shape[0], wav.shape[-1]).to(torch.float32)
        length = wav.shape[-1]
        if length < self.nfft:  # e.g. a nullified (dropped-out) condition
            missing = self.nfft - length
            wav = F.pad(wav, (missing // 2, missing - missing // 2))

        spec = self._power_spectrogram(wav)  # [B, F, frames]
        chroma = torch.einsum("cf,bft->btc", self.fbanks, spec)  # [B, frames, n_chroma]
        chroma = F.normalize(chroma, p=self.norm, dim=-1, eps=1e-6)
        if self.argmax:
            strongest = chroma.argmax(dim=-1, keepdim=True)
            chroma = torch.zeros_like(chroma).scatter_(-1, strongest, 1.0)
        return chroma
