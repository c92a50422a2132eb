"""Residual vector quantization (RVQ): K codebooks, each quantizing what the previous ones missed.

Codes are ``[B, K, T]`` throughout. The module tree (``vq.layers.<k>._codebook``) matches
AudioCraft's EnCodec checkpoints.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import BaseQuantizer, QuantizedResult
from .vq import VectorQuantization


class ResidualVectorQuantization(nn.Module):
    """A stack of :class:`VectorQuantization` layers applied to successive residuals.

    Args:
        num_quantizers: number of layers (codebooks) K.
        dim, codebook_size, ...: given to every :class:`VectorQuantization` layer.
    """

    def __init__(self, num_quantizers: int, dim: int, codebook_size: int, decay: float = 0.99,
                 kmeans_init: bool = True, kmeans_iters: int = 10, threshold_ema_dead_code: float = 2,
                 orthogonal_reg_weight: float = 0.0, orthogonal_reg_active_codes_only: bool = False,
                 orthogonal_reg_max_codes: int | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            VectorQuantization(dim, codebook_size, decay=decay, kmeans_init=kmeans_init,
                               kmeans_iters=kmeans_iters, threshold_ema_dead_code=threshold_ema_dead_code,
                               orthogonal_reg_weight=orthogonal_reg_weight,
                               orthogonal_reg_active_codes_only=orthogonal_reg_active_codes_only,
                               orthogonal_reg_max_codes=orthogonal_reg_max_codes)
            for _ in range(num_quantizers)
        ])

    def forward(self, x: torch.Tensor, num_codebooks: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize ``x`` ``[B, D, T]`` with the first ``num_codebooks`` layers.

        Returns:
            ``(quantized [B, D, T], codes [B, K, T], losses [K])``. In training mode the
            output passes gradients straight through to ``x`` as a whole (not per layer).
        """
        quantized_sum = torch.zeros_like(x)
        residual = x
        codes, losses = [], []
        for layer in self.layers[:num_codebooks]:
            quantized, layer_codes, loss = layer(residual)
            quantized = quantized.detach()
            residual = residual - quantized
            quantized_sum = quantized_sum + quantized
            codes.append(layer_codes)
            losses.append(loss)
        if self.training:
            quantized_sum = x + (quantized_sum - x).detach()
        return quantized_sum, torch.stack(codes, dim=1), torch.stack(losses)

    def encode(self, x: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """Latent ``[B, D, T]`` -> codes ``[B, K, T]`` with K = ``num_codebooks``."""
        residual = x
        codes = []
        for layer in self.layers[:num_codebooks]:
            layer_codes = layer.encode(residual)
            residual = residual - layer.decode(layer_codes)
            codes.append(layer_codes)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T]`` -> sum of the first K layers' entries ``[B, D, T]``."""
        out = self.layers[0].decode(codes[:, 0])
        for k in range(1, codes.shape[1]):
            out = out + self.layers[k].decode(codes[:, k])
        return out


class ResidualVectorQuantizer(BaseQuantizer):
    """The RVQ quantizer of EnCodec, with quantizer dropout and bandwidth bookkeeping.

    Args:
        dimension: latent size D.
        num_codebooks: number of codebooks K owned (all used by default).
        quantizer_dropout: in training, use a random number of codebooks in [1, K] per batch
            so the model learns to work at every bandwidth.
        codebook_size: entries V per codebook.
        decay: EMA decay of the codebooks.
        kmeans_init: initialise codebooks with k-means on the first batch.
        kmeans_iters: k-means iterations.
        threshold_ema_dead_code: EMA cluster size under which a code is replaced (0 = never).
        orthogonal_reg_weight, orthogonal_reg_active_codes_only, orthogonal_reg_max_codes:
            optional orthogonal regularisation of the codebooks.
    """

    def __init__(self, dimension: int = 256, num_codebooks: int = 8, quantizer_dropout: bool = False,
                 codebook_size: int = 1024, decay: float = 0.99, kmeans_init: bool = True,
                 kmeans_iters: int = 10, threshold_ema_dead_code: float = 2,
                 orthogonal_reg_weight: float = 0.0, orthogonal_reg_active_codes_only: bool = False,
                 orthogonal_reg_max_codes: int | None = None) -> None:
        super().__init__()
        if num_codebooks < 1:
            raise ValueError(f"`num_codebooks` must be >= 1, got {num_codebooks}.")
        self.dimension = dimension
        self.quantizer_dropout = quantizer_dropout
        self._codebook_size = codebook_size
        self._total = num_codebooks
        self._active = num_codebooks
        self.vq = ResidualVectorQuantization(
            num_codebooks, dimension, codebook_size, decay=decay, kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters, threshold_ema_dead_code=threshold_ema_dead_code,
            orthogonal_reg_weight=orthogonal_reg_weight,
            orthogonal_reg_active_codes_only=orthogonal_reg_active_codes_only,
            orthogonal_reg_max_codes=orthogonal_reg_max_codes)

    # ------------------------------------------------------------------ codebook bookkeeping
    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    @property
    def total_codebooks(self) -> int:
        return self._total

    @property
    def num_codebooks(self) -> int:
        return self._active

    def set_num_codebooks(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self._total:
            raise ValueError(f"`n` (number of codebooks) must be an integer in [1, {self._total}], got {n!r}.")
        self._active = n

    def bandwidth_per_codebook(self, frame_rate: float) -> float:
        """Bit rate of one codebook in kbit/s: ``log2(V) * frame_rate / 1000``."""
        return math.log2(self._codebook_size) * frame_rate / 1000

    def num_codebooks_for_bandwidth(self, bandwidth: float, frame_rate: float) -> int:
        """Largest number of codebooks whose bit rate fits in ``bandwidth`` kbit/s (at least 1)."""
        if bandwidth <= 0:
            raise ValueError(f"`bandwidth` must be a positive bit rate in kbit/s, got {bandwidth}.")
        fitting = int(math.floor(bandwidth / self.bandwidth_per_codebook(frame_rate) + 1e-9))
        return max(1, min(self._total, fitting))

    # ------------------------------------------------------------------ main API
    def forward(self, x: torch.Tensor, frame_rate: float) -> QuantizedResult:
        """Quantize latent ``x`` ``[B, D, T]``; ``frame_rate`` in Hz (for the reported bandwidth).

        Returns a :class:`QuantizedResult` with ``x`` ``[B, D, T]``, ``codes`` ``[B, K, T]``,
        ``bandwidth`` (kbit/s) and ``penalty`` (mean commitment loss over codebooks).
        """
        count = self._active
        if self.training and self.quantizer_dropout:
            count = int(torch.randint(1, self._active + 1, (1,)).item())
        quantized, codes, losses = self.vq(x, count)
        bandwidth = torch.tensor(count * self.bandwidth_per_codebook(frame_rate)).to(x)
        return QuantizedResult(quantized, codes, bandwidth, penalty=losses.mean())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, D, T]`` -> codes ``[B, K, T]`` (int64) with the active K."""
        return self.vq.encode(x, self._active)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T]`` (any 1 <= K <= total) -> quantized latent ``[B, D, T]``."""
        return self.vq.decode(codes)
