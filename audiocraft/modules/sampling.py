"""Choosing the next token from a distribution: greedy, multinomial, top-k, top-p.

All functions take probabilities or logits ``[..., V]`` and return indices ``[..., 1]``.
"""
from __future__ import annotations

from typing import Optional

import torch


def multinomial(probs: torch.Tensor, num_samples: int = 1, generator: Optional[torch.Generator] = None
                ) -> torch.Tensor:
    """``torch.multinomial`` over the last dimension of a tensor of any rank: [..., V] -> [..., num_samples]."""
    flat = probs.reshape(-1, probs.shape[-1])
    picked = torch.multinomial(flat, num_samples=num_samples, replacement=False, generator=generator)
    return picked.reshape(*probs.shape[:-1], num_samples)


def sample_top_k(probs: torch.Tensor, k: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample among the ``k`` most likely tokens (ties with the k-th value are kept; k is capped at V)."""
    kth_value = torch.topk(probs, min(k, probs.shape[-1]), dim=-1).values[..., -1:]
    kept = probs * (probs >= kth_value).to(probs.dtype)
    kept = kept / kept.sum(dim=-1, keepdim=True)
    return multinomial(kept, 1, generator=generator)


def sample_top_p(probs: torch.Tensor, p: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Nucleus sampling: the smallest set of most likely tokens whose mass reaches ``p``."""
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    sorted_probs = sorted_probs * (mass_before <= p).to(probs.dtype)
    sorted_probs = sorted_probs / sorted_probs.sum(dim=-1, keepdim=True)
    picked = multinomial(sorted_probs, 1, generator=generator)
    return torch.gather(order, -1, picked)


def sample_token(logits: torch.Tensor, use_sampling: bool, temp: float, top_k: int, top_p: float,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Pick one token per row of ``logits`` [..., V] -> [..., 1].

    Greedy (argmax) when ``use_sampling`` is False or ``temp`` is 0; otherwise sampling at
    temperature ``temp`` restricted by ``top_p`` (if > 0), else by ``top_k`` (if > 0).
    """
    if not use_sampling or temp <= 0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    probs = torch.softmax(logits / temp, dim=-1)
    if top_p > 0:
        return sample_top_p(probs, top_p, generator)
    if top_k > 0:
        return sample_top_k(probs, top_k, generator)
    return multinomial(probs, 1, generator=generator)
