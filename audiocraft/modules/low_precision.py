"""Weight-only low precision for fast CPU decoding (inference only).

Decoding one step reads every weight of the language model once, so its speed is bound
by memory traffic. Storing the weights of the linear layers in bfloat16 (2 bytes) or int8
with one scale per output channel (1 byte) cuts that traffic by 2x or 4x. Activations,
normalisations, softmax and the residual stream stay in the model's float32; only the
inputs of the matrix products are rounded to bfloat16.

    from audiocraft.modules.low_precision import lower_precision_
    lower_precision_(lm, "int8")     # or "bfloat16"; in place, returns lm

A converted model cannot be trained or saved in the released format: export first.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("bfloat16", "int8")


def _int8_kernel_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


class LowPrecisionLinear(nn.Module):
    """``y = x W^T + b`` with W stored in bfloat16 or int8 (+ per-row scale); x and y keep their dtype.

    Args:
        weight: [N, K] float weight.
        bias: [N] or None (kept in float32).
        mode: 'bfloat16' or 'int8'.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "int8" and not _int8_kernel_available():
            raise RuntimeError("this torch build has no weight-only int8 kernel (_weight_int8pack_mm): "
                               "use mode='bfloat16' or a newer torch")
        self.mode = mode
        weight = weight.detach().float()
        if mode == "int8":
            scales = weight.abs().amax(dim=1).clamp_min(1e-8) / 127.0
            self.register_buffer("weight", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
            self.register_buffer("scales", scales.to(torch.bfloat16))
        else:
            self.register_buffer("weight", weight.to(torch.bfloat16))
            self.scales = None
        self.register_buffer("bias", None if bias is None else bias.detach().float())
        self.out_features, self.in_features = weight.shape

    def forward(self, x: torch.Tensor, start: int = 0, stop: Optional[int] = None) -> torch.Tensor:
        """x: [..., K] -> [..., stop - start] using output rows ``start:stop`` of the weight."""
        stop = self.out_features if stop is None else stop
        weight = self.weight[start:stop]
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        if self.mode == "int8":
            out = torch.ops.aten._weight_int8pack_mm(flat, weight, self.scales[start:stop])
        else:
            out = F.linear(flat, weight)
        out = out.to(x.dtype).reshape(*x.shape[:-1], stop - start)
        if self.bias is not None:
            out = out + self.bias[start:stop].to(x.dtype)
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}"


def lower_precision_(model: nn.Module, mode: str) -> nn.Module:
    """Convert the linear layers and attention projections of ``model`` in place; returns it in eval mode.

    Conditioners are left alone (they run once per generation, not once per step).
    """
    from .conditioners import ConditioningProvider
    from .transformer import StreamingMultiheadAttention

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    model.eval()
    skipped = {id(m) for provider in model.modules() if isinstance(provider, ConditioningProvider)
               for m in provider.modules()}
    # Collect parents and names only: holding the float32 layers themselves in a list would keep
    # all their weights alive until the end, so that peak memory would be float32 + low precision.
    attentions = [m for m in model.modules() if isinstance(m, StreamingMultiheadAttention) and id(m) not in skipped]
    linears = [(parent, name) for parent in model.modules() if id(parent) not in skipped
               for name, child in parent.named_children() if isinstance(child, nn.Linear)]
    for attention in attentions:
        attention.use_low_precision(LowPrecisionLinear(attention.in_proj_weight, attention.in_proj_bias, mode))
    for parent, name in linears:
        child = getattr(parent, name)
        setattr(parent, name, LowPrecisionLinear(child.weight, child.bias, mode))
        del child
    model.requires_grad_(False)
    return model
