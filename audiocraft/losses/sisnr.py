"""Scale-invariant signal-to-noise ratio (SI-SNR), as a metric and as a loss.

For a zero-mean reference ``s`` and estimate ``e`` (both centred over time), the target is
the projection of the estimate on the reference, ``s_t = <e, s> s / ||s||^2``, the residual is
``e - s_t``, and ``SI-SNR = 10 log10(||s_t||^2 / ||e - s_t||^2)`` in dB. Scaling the estimate
does not change it. An ``epsilon`` proportional to the frame length keeps silent frames finite
(same convention as AudioCraft's ``audiocraft/losses/sisnr.py``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

_FLOAT32_EPS = torch.finfo(torch.float32).eps


def _frames(signal: torch.Tensor, frame: int, stride: int) -> torch.Tensor:
    """Cut ``[..., T]`` into ``ceil(T / stride)`` frames ``[..., N, frame]``, zero-padding the end."""
    length = signal.shape[-1]
    n_frames = math.ceil(length / stride)
    padded = F.pad(signal, (0, (n_frames - 1) * stride + frame - length))
    return padded.unfold(-1, frame, stride)


def _si_snr_last_axis(estimate: torch.Tensor, reference: torch.Tensor, epsilon: float) -> torch.Tensor:
    """SI-SNR in dB over the last axis ``[..., T]`` -> ``[...]``; ``epsilon`` is already length-scaled."""
    reference = reference - reference.mean(dim=-1, keepdim=True)
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    dot = (reference * estimate).sum(dim=-1, keepdim=True)
    ref_energy = reference.pow(2).sum(dim=-1, keepdim=True)
    target = dot * reference / (epsilon + ref_energy)
    residual = estimate - target
    return 10 * (torch.log10(epsilon + target.pow(2).sum(dim=-1))
                 - torch.log10(epsilon + residual.pow(2).sum(dim=-1)))


def _check_signals(estimate: torch.Tensor, reference: torch.Tensor, who: str) -> None:
    if not isinstance(estimate, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise TypeError(f"{who}: expected two tensors [B, C, T], got {type(estimate).__name__} "
                        f"and {type(reference).__name__}.")
    if estimate.dim() != 3 or estimate.shape != reference.shape:
        raise ValueError(f"{who}: the estimate and the reference must both be [B, C, T] with the same shape, "
                         f"got {tuple(estimate.shape)} and {tuple(reference.shape)}; add the channel axis with "
                         "`unsqueeze(1)` for mono [B, T] signals and trim both to the same length.")


def si_snr(estimate: torch.Tensor, reference: torch.Tensor, epsilon: float = _FLOAT32_EPS) -> torch.Tensor:
    """SI-SNR of each item over its whole length, in dB (higher is better).

    Args:
        estimate: estimated signal ``[B, C, T]``.
        reference: clean reference ``[B, C, T]``.
        epsilon: stabiliser, multiplied by ``T`` before use.
    Returns:
        ``[B]``: SI-SNR in dB of each item, averaged over its channels.
    """
    _check_signals(estimate, reference, "si_snr")
    length = reference.shape[-1]
    return _si_snr_last_axis(estimate, reference, epsilon * length).mean(dim=1)


class SISNR(nn.Module):
    """Negative SI-SNR loss, averaged over overlapping segments (lower is better).

    Args:
        sample_rate: sample rate in Hz.
        segment: segment length in seconds, or ``None`` to use each whole signal as one segment.
        overlap: fraction of overlap between consecutive segments, in ``[0, 1)``.
        epsilon: stabiliser, multiplied by the segment length in samples.
    ``forward(out_sig [B, C, T], ref_sig [B, C, T])`` -> scalar ``-mean(SI-SNR)`` in dB, the
    mean taken over items, channels and segments. Signals are cut into ``ceil(T / stride)``
    segments (``stride = segment * (1 - overlap)``); the last ones are zero-padded, and
    segments that are entirely padding count as 0 dB, as in AudioCraft.
    """

    def __init__(self, sample_rate: int = 16000, segment: float | None = 20, overlap: float = 0.5,
                 epsilon: float = _FLOAT32_EPS) -> None:
        super().__init__()
        if segment is not None and segment * sample_rate < 1:
            raise ValueError(f"`segment` must last at least one sample, got {segment!r} s at {sample_rate} Hz; "
                             "use a longer segment or segment=None for whole signals.")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"`overlap` must be in [0, 1) (fraction of a segment), got {overlap!r}.")
        self.sample_rate = sample_rate
        self.segment = segment
        self.overlap = overlap
        self.epsilon = epsilon

    def forward(self, out_sig: torch.Tensor, ref_sig: torch.Tensor) -> torch.Tensor:
        """Scalar loss ``-SI-SNR`` in dB between ``out_sig`` and ``ref_sig`` (both ``[B, C, T]``)."""
        _check_signals(out_sig, ref_sig, "SISNR")
        length = ref_sig.shape[-1]
        if self.segment is None:
            frame = stride = length
        else:
            frame = int(self.segment * self.sample_rate)
            stride = max(1, int(frame * (1 - self.overlap)))
        reference = _frames(ref_sig, frame, stride)  # [B, C, N, frame]
        estimate = _frames(out_sig, frame, stride)
        return -_si_snr_last_axis(estimate, reference, self.epsilon * frame).mean()
