"""The language-model loss of MusicGen: cross-entropy per codebook on the valid positions.

The LM predicts ``logits`` [B, K, T, V] for codes ``targets`` [B, K, T]; the codebook pattern
(e.g. the delay pattern) leaves some positions without a prediction (``mask`` False, logits NaN
there), and padded audio can remove more. The loss of codebook k is the mean negative
log-likelihood over its valid positions; the training loss is the mean over the K codebooks.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def compute_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                          mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Cross-entropy of multi-codebook predictions, per codebook and averaged.

    Args:
        logits: [B, K, T, V] unnormalised scores (any float dtype; computed in float32).
            Values at masked positions are never read, so NaNs there do not reach the loss
            or its gradient.
        targets: [B, K, T] integer codes in ``[0, V)`` (only checked at valid positions).
        mask: [B, K, T] bool, True where the position counts.
    Returns:
        ``(ce, ce_per_codebook)``: ``ce`` is the scalar mean over the K codebooks of the mean
        cross-entropy (nats) over each codebook's valid positions (differentiable);
        ``ce_per_codebook`` holds the K detached per-codebook values. A codebook without any
        valid position contributes 0.
    Raises:
        ValueError / TypeError: shapes or dtypes that do not fit the description above.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"compute_cross_entropy: `logits` must be a tensor [B, K, T, V], got {got}.")
    if not isinstance(targets, torch.Tensor) or tuple(targets.shape) != tuple(logits.shape[:-1]):
        got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"compute_cross_entropy: `targets` must have shape [B, K, T] = {tuple(logits.shape[:-1])} "
                         f"(the logits without V), got {got}.")
    if not isinstance(mask, torch.Tensor) or mask.shape != targets.shape:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"compute_cross_entropy: `mask` must have shape [B, K, T] = {tuple(targets.shape)}, "
                         f"got {got}.")
    if targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"compute_cross_entropy: `targets` must hold integer codes, got dtype {targets.dtype}; "
                        "pass the codes as a long tensor.")
    if mask.dtype != torch.bool:
        raise TypeError(f"compute_cross_entropy: `mask` must be a bool tensor, got dtype {mask.dtype}.")
    num_codebooks, card = logits.shape[1], logits.shape[-1]
    valid_targets = targets[mask]
    if valid_targets.numel() and (valid_targets.min() < 0 or valid_targets.max() >= card):
        raise ValueError(f"compute_cross_entropy: `targets` must lie in [0, {card}) at valid positions, got "
                         f"[{int(valid_targets.min())}, {int(valid_targets.max())}]; the codes do not come from a "
                         f"codec with the LM's codebook size.")
    total = torch.zeros((), device=logits.device, dtype=torch.float32)
    per_codebook: list[torch.Tensor] = []
    for k in range(num_codebooks):
        mask_k = mask[:, k]
        if not bool(mask_k.any()):
            per_codebook.append(torch.zeros((), device=logits.device))
            continue
        # Boolean indexing keeps only valid rows: masked logits (possibly NaN) are not touched.
        ce_k = F.cross_entropy(logits[:, k][mask_k].float(), targets[:, k][mask_k].long())
        total = total + ce_k
        per_codebook.append(ce_k.detach())
    return total / num_codebooks, per_codebook
