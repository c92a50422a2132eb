"""The quantizer interface used by compression models, and a pass-through quantizer."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class QuantizedResult:
    """What a quantizer's (or a compression model's) ``forward`` returns.

    Attributes:
        x: quantized latent ``[B, D, T]`` (or, from a compression model, the decoded waveform ``[B, C, T]``).
        codes: codes ``[B, K, T]``, int64.
        bandwidth: bandwidth used, in kbit/s (0-dim tensor).
        penalty: auxiliary loss to add to the training loss (commitment loss for RVQ), or None.
        metrics: extra scalars for logging.
    """

    x: torch.Tensor
    codes: torch.Tensor
    bandwidth: torch.Tensor
    penalty: torch.Tensor | None = None
    metrics: dict = field(default_factory=dict)


class BaseQuantizer(nn.Module):
    """Interface of the quantizers a :class:`~audiocraft.models.EncodecModel` can use."""

    def forward(self, x: torch.Tensor, frame_rate: float) -> QuantizedResult:
        """Quantize latent ``x`` ``[B, D, T]``; ``frame_rate`` (Hz) is used to report the bandwidth."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, D, T]`` -> codes ``[B, K, T]`` with the active number of codebooks K."""
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T]`` -> quantized latent ``[B, D, T]``."""
        raise NotImplementedError

    @property
    def codebook_size(self) -> int:
        """Number of entries V of each codebook."""
        raise NotImplementedError

    @property
    def total_codebooks(self) -> int:
        """Number of codebooks the quantizer owns."""
        raise NotImplementedError

    @property
    def num_codebooks(self) -> int:
        """Number of codebooks currently used by ``encode`` / ``forward``."""
        raise NotImplementedError

    def set_num_codebooks(self, n: int) -> None:
        """Use only the first ``n`` codebooks from now on."""
        raise NotImplementedError


class DummyQuantizer(BaseQuantizer):
    """No quantization: the "codes" are the latent itself, ``[B, 1, D, T]`` floats.

    Only useful to train or test a plain auto-encoder (AudioCraft's ``no_quant`` quantizer).
    The reported bandwidth is that of float32 latents: ``D * 32 * frame_rate / 1000`` kbit/s.
    """

    def forward(self, x: torch.Tensor, frame_rate: float) -> QuantizedResult:
        kbps = x.shape[1] * 32 * frame_rate / 1000
        return QuantizedResult(x, x.unsqueeze(1), torch.tensor(kbps).to(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.squeeze(1)

    @property
    def codebook_size(self) -> int:
        raise AttributeError("DummyQuantizer has no codebooks: its codes are float latents.")

    @property
    def total_codebooks(self) -> int:
        return 1

    @property
    def num_codebooks(self) -> int:
        return 1

    def set_num_codebooks(self, n: int) -> None:
        raise ValueError("DummyQuantizer always uses a single pass-through 'codebook'; "
                         "set_num_codebooks is not available.")
