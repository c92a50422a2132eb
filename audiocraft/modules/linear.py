"""Linear layers that decode fast on CPU.

One decoding step multiplies a handful of rows (batch x 2 with classifier-free guidance) by
every weight matrix of the language model, so its cost is reading the weights from memory.
For 2 to 4 rows, ``F.linear`` (``x @ W.T``, a GEMM with a small M) goes through a BLAS path
that reaches about half the memory bandwidth that ``W @ x.T`` (the same product as a GEMM with
a small N, streamed like a matrix-vector product) reaches: measured on 2 cores with the
musicgen-small shapes, 8.4 against 17.7 GB/s for 2 rows (``scripts/bench_generate.py``).

From 5 rows on (batch 4 with guidance, prompts), oneDNN's linear kernel (the one PyTorch's own
compiler uses on CPU, taking the weight as it is, with no copy) reads the weights about twice as
fast as ``F.linear`` (MKL): 23.9 against 12.4 GB/s at 8 rows, 4.8 against 2.2 at 128, measured
on 2 cores with 4096 x 1024 weights. Where PyTorch is built without oneDNN, ``F.linear`` is used.

Only the product's summation order changes; weights, checkpoints and training are untouched
(training and anything that needs gradients takes ``F.linear``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# Up to this many rows the transposed product is faster on CPU (measured with 1 and 2 threads).
MAX_STREAMED_ROWS = 4


def _onednn_linear_available() -> bool:
    """True if this PyTorch has oneDNN's dense-weight linear op and it runs here in float32."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return False
        out = op(torch.ones(2, 3), torch.ones(4, 3), None, "none", [], "")
    except (AttributeError, RuntimeError):
        return False
    return out.shape == (2, 4) and bool((out == 3).all())


_ONEDNN_LINEAR = _onednn_linear_available()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; on CPU in float32 inference with 2 to ``MAX_STREAMED_ROWS`` rows,
    computed as ``weight @ x.T``, and with more rows by oneDNN (same result up to float rounding,
    read at up to twice the speed)."""
    if (x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
            or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return F.linear(x, weight, bias)
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if rows > MAX_STREAMED_ROWS and _ONEDNN_LINEAR:
        flat = x.reshape(rows, x.shape[-1]).contiguous()
        out = torch.ops.mkldnn._linear_pointwise(flat, weight, bias, "none", [], "")
        return out.reshape(*x.shape[:-1], weight.shape[0])
    if not 1 < rows <= MAX_STREAMED_ROWS:
        return F.linear(x, weight, bias)
    # x must be row-major: with a column-major x (x.t() contiguous) the BLAS takes a path ~5x slower.
    flat = x.reshape(rows, x.shape[-1]).contiguous()
    if bias is None:
        out = torch.mm(weight, flat.t())
    else:  # the bias is added inside the GEMM (one pass over the output, no extra allocation)
        out = torch.addmm(bias.unsqueeze(1), weight, flat.t())
    out = out.t().contiguous()
    return out.reshape(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
