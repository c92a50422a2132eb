"""Integrated loudness (ITU-R BS.1770-4) in plain torch, without torchaudio.

The measurement has three stages:

1. K-weighting: a high-shelf biquad (+4 dB above ~1.5 kHz, modelling the head)
   followed by a high-pass biquad at 38 Hz (the "RLB" curve). Both are designed
   for the actual sample rate with the Audio EQ Cookbook formulas, using the same
   parameters as torchaudio's ``loudness`` (which AudioCraft relies on).
2. Mean square energy per channel over 400 ms blocks with 75 % overlap; channels
   are summed with the BS.1770 weights (1, 1, 1, 1.41, 1.41).
3. Gating: blocks under -70 LUFS are dropped (absolute gate), then blocks more than
   10 LU under the loudness of the remaining ones are dropped (relative gate).

A full-scale 997 Hz sine in one channel measures -3.01 LUFS.
"""
from __future__ import annotations

import math

import torch

__all__ = ["integrated_loudness"]

_BLOCK_SECONDS = 0.4
_BLOCK_OVERLAP = 0.75
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
_LOUDNESS_OFFSET_DB = -0.691
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs


def _high_shelf(sample_rate: float, gain_db: float, center_hz: float, q: float) -> tuple[list[float], list[float]]:
    """Cookbook high-shelf biquad; returns ``(b, a)`` normalised so that ``a[0] == 1``."""
    w0 = 2 * math.pi * center_hz / sample_rate
    amp = 10 ** (gain_db / 40)
    alpha = math.sin(w0) / (2 * q)
    cos_w0 = math.cos(w0)
    sq = 2 * math.sqrt(amp) * alpha
    b = [amp * ((amp + 1) + (amp - 1) * cos_w0 + sq),
         -2 * amp * ((amp - 1) + (amp + 1) * cos_w0),
         amp * ((amp + 1) + (amp - 1) * cos_w0 - sq)]
    a = [(amp + 1) - (amp - 1) * cos_w0 + sq,
         2 * ((amp - 1) - (amp + 1) * cos_w0),
         (amp + 1) - (amp - 1) * cos_w0 - sq]
    return [v / a[0] for v in b], [v / a[0] for v in a]


def _high_pass(sample_rate: float, cutoff_hz: float, q: float) -> tuple[list[float], list[float]]:
    """Cookbook second-order high-pass; returns ``(b, a)`` normalised so that ``a[0] == 1``."""
    w0 = 2 * math.pi * cutoff_hz / sample_rate
    alpha = math.sin(w0) / (2 * q)
    cos_w0 = math.cos(w0)
    b = [(1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2]
    a = [1 + alpha, -2 * cos_w0, 1 - alpha]
    return [v / a[0] for v in b], [v / a[0] for v in a]


def _biquad(x: torch.Tensor, b: list[float], a: list[float]) -> torch.Tensor:
    """Filter ``x`` [..., T] with ``y[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2] - a1 y[n-1] - a2 y[n-2]``.

    Exact (zero initial state), and fast without a per-sample Python loop: the signal is
    cut into chunks of L samples; inside a chunk the recursive part is a causal
    convolution with its impulse response (FFT), and the two-sample state is carried
    from chunk to chunk with a loop over chunks only. Computed in float64.
    """
    length = x.shape[-1]
    x = x.to(torch.float64)
    # Feed-forward part: causal FIR with taps b.
    padded = torch.nn.functional.pad(x, (2, 0))
    u = b[0] * padded[..., 2:] + b[1] * padded[..., 1:-1] + b[2] * padded[..., :-2]

    chunk = 1 << max(8, math.ceil(math.log2(max(1.0, math.sqrt(length)))))
    num_chunks = max(1, math.ceil(length / chunk))
    u = torch.nn.functional.pad(u, (0, num_chunks * chunk - length))
    u = u.reshape(*u.shape[:-1], num_chunks, chunk)

    # State s[n] = (y[n], y[n-1]) evolves as s[n] = M s[n-1] + (u[n], 0).
    trans = torch.tensor([[-a[1], -a[2]], [1.0, 0.0]], dtype=torch.float64)
    powers = [torch.eye(2, dtype=torch.float64)]
    for _ in range(chunk):
        powers.append(trans @ powers[-1])
    stacked = torch.stack(powers)  # [L + 1, 2, 2], stacked[k] = M^k
    impulse = stacked[:chunk, 0, 0]  # response of y to a unit u at lag k
    carry = stacked[1:, 0, :]  # [L, 2]: y[k] gets carry[k] @ s_before_chunk

    spec = torch.fft.rfft(u, n=2 * chunk) * torch.fft.rfft(impulse, n=2 * chunk)
    zero_state = torch.fft.irfft(spec, n=2 * chunk)[..., :chunk]  # [..., N, L]

    outputs = []
    state = torch.zeros(*u.shape[:-2], 2, dtype=torch.float64)
    for idx in range(num_chunks):
        y = zero_state[..., idx, :] + state @ carry.T
        outputs.append(y)
        state = torch.stack([y[..., -1], y[..., -2]], dim=-1)
    return torch.cat(outputs, dim=-1)[..., :length]


def _k_weighting(wav: torch.Tensor, sample_rate: float, clamp_filtered: bool) -> torch.Tensor:
    b, a = _high_shelf(sample_rate, gain_db=4.0, center_hz=1500.0, q=1 / math.sqrt(2))
    out = _biquad(wav, b, a)
    if clamp_filtered:
        out = out.clamp(-1, 1)
    b, a = _high_pass(sample_rate, cutoff_hz=38.0, q=0.5)
    out = _biquad(out, b, a)
    if clamp_filtered:
        out = out.clamp(-1, 1)
    return out


def integrated_loudness(wav: torch.Tensor, sample_rate: int, clamp_filtered: bool = False) -> float:
    """Gated integrated loudness of a signal, ITU-R BS.1770-4.

    Args:
        wav: audio [C, T] or [T] (mono), float, nominal range [-1, 1]; at most 5 channels,
            in the order L, R, C, Ls, Rs (surround channels weigh 1.41).
        sample_rate: sample rate of ``wav`` in Hz.
        clamp_filtered: clamp the output of each K-weighting filter to [-1, 1]. torchaudio's
            ``loudness`` (used by AudioCraft) does this implicitly; it only matters for loud
            signals with strong treble. Leave False for a standard measurement.
    Returns:
        Loudness in LUFS (dB LKFS). ``-inf`` if every block is below the -70 LUFS gate
        (e.g. silence). A signal shorter than one 400 ms block is measured as one block.
    Raises:
        TypeError: ``wav`` is not a floating-point tensor.
        ValueError: bad shape, more than 5 channels, or a non-positive sample rate.
    """
    if not isinstance(wav, torch.Tensor) or not wav.dtype.is_floating_point:
        raise TypeError(f"integrated_loudness: `wav` must be a floating-point torch.Tensor [C, T], "
                        f"got {type(wav).__name__}{'' if not isinstance(wav, torch.Tensor) else ' ' + str(wav.dtype)}; "
                        f"convert integer PCM with audiocraft.data.audio_utils.f32_pcm first.")
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2:
        raise ValueError(f"integrated_loudness: `wav` must have shape [C, T] or [T], got {tuple(wav.shape)}; "
                         f"measure each item of a batch separately.")
    channels, length = wav.shape
    if not 1 <= channels <= len(_CHANNEL_WEIGHTS):
        raise ValueError(f"integrated_loudness: BS.1770 defines weights for 1 to {len(_CHANNEL_WEIGHTS)} channels, "
                         f"got {channels} channels (shape {tuple(wav.shape)}); downmix first.")
    if not isinstance(sample_rate, (int, float)) or sample_rate <= 0:
        raise ValueError(f"integrated_loudness: `sample_rate` must be a positive number of Hz, got {sample_rate!r}.")
    if length == 0:
        return float("-inf")

    filtered = _k_weighting(wav.detach().cpu(), float(sample_rate), clamp_filtered)
    block = int(round(_BLOCK_SECONDS * sample_rate))
    step = int(round(block * (1 - _BLOCK_OVERLAP)))
    if length < block:
        energy = filtered.square().mean(dim=-1, keepdim=True)  # [C, 1]
    else:
        energy = filtered.square().unfold(-1, block, step).mean(dim=-1)  # [C, num_blocks]
    weights = torch.tensor(_CHANNEL_WEIGHTS[:channels], dtype=energy.dtype)[:, None]

    def loudness_of(per_channel_energy: torch.Tensor) -> torch.Tensor:
        return _LOUDNESS_OFFSET_DB + 10 * torch.log10((weights * per_channel_energy).sum(dim=0))

    block_loudness = loudness_of(energy)  # [num_blocks]
    keep = block_loudness > _ABSOLUTE_GATE_LUFS
    if not keep.any():
        return float("-inf")
    relative_gate = loudness_of(energy[:, keep].mean(dim=-1, keepdim=True))[0] + _RELATIVE_GATE_LU
    keep = keep & (block_loudness > relative_gate)
    return float(loudness_of(energy[:, keep].mean(dim=-1, keepdim=True))[0])
