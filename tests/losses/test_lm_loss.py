"""The MusicGen cross-entropy: a hand computation, masked positions ignored, NaNs at masked positions do not leak."""
from __future__ import annotations

import math

import pytest
import torch

from audiocraft.losses.lm import compute_cross_entropy


def _hand_ce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Mean of -log softmax(logits)[target] over each codebook's valid positions, with plain Python loops."""
    B, K, T, V = logits.shape
    out = []
    for k in range(K):
        terms = []
        for b in range(B):
            for t in range(T):
                if mask[b, k, t]:
                    row = [float(x) for x in logits[b, k, t]]
                    log_norm = math.log(sum(math.exp(x) for x in row))
                    terms.append(log_norm - row[int(targets[b, k, t])])
        out.append(sum(terms) / len(terms))
    return out


def _example():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 5, 7, generator=generator)
    targets = torch.randint(0, 7, (2, 3, 5), generator=generator)
    mask = torch.rand(2, 3, 5, generator=generator) > 0.3
    mask[:, :, 0] = True  # every codebook has valid positions
    return logits, targets, mask


def test_matches_a_hand_computation():
    logits, targets, mask = _example()
    ce, per_codebook = compute_cross_entropy(logits, targets, mask)
    expected = _hand_ce(logits, targets, mask)
    assert len(per_codebook) == 3
    for value, hand in zip(per_codebook, expected):
        assert value.item() == pytest.approx(hand, rel=1e-5)
    assert ce.item() == pytest.approx(sum(expected) / 3, rel=1e-5)
    assert not any(value.requires_grad for value in per_codebook)


def test_masked_positions_are_ignored_and_nan_does_not_leak():
    logits, targets, mask = _example()
    ce, _ = compute_cross_entropy(logits, targets, mask)
    poisoned = logits.clone()
    poisoned[~mask] = float("nan")
    other_targets = targets.clone()
    other_targets[~mask] = 12345  # out of range, but masked: never read
    poisoned.requires_grad_(True)
    ce_poisoned, _ = compute_cross_entropy(poisoned, other_targets, mask)
    assert torch.isfinite(ce_poisoned) and ce_poisoned.item() == pytest.approx(ce.item(), rel=1e-6)
    ce_poisoned.backward()
    assert torch.isfinite(poisoned.grad).all()
    assert (poisoned.grad[~mask] == 0).all() and (poisoned.grad[mask] != 0).any()


def test_codebook_without_valid_positions_contributes_zero():
    logits, targets, mask = _example()
    mask[:, 2] = False
    ce, per_codebook = compute_cross_entropy(logits, targets, mask)
    expected = _hand_ce(logits[:, :2], targets[:, :2], mask[:, :2])
    assert per_codebook[2].item() == 0.0
    assert ce.item() == pytest.approx(sum(expected) / 3, rel=1e-5)


def test_perfect_predictions_have_zero_loss():
    targets = torch.randint(0, 4, (1, 2, 6))
    logits = torch.nn.functional.one_hot(targets, 4).float() * 100.0
    ce, _ = compute_cross_entropy(logits, targets, torch.ones_like(targets, dtype=torch.bool))
    assert ce.item() == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_give_actionable_errors():
    logits, targets, mask = _example()
    with pytest.raises(ValueError, match="logits"):
        compute_cross_entropy(logits[0], targets, mask)
    with pytest.raises(ValueError, match="targets"):
        compute_cross_entropy(logits, targets[:, :2], mask)
    with pytest.raises(ValueError, match="mask"):
        compute_cross_entropy(logits, targets, mask[..., :3])
    with pytest.raises(TypeError, match="integer codes"):
        compute_cross_entropy(logits, targets.float(), mask)
    with pytest.raises(TypeError, match="bool"):
        compute_cross_entropy(logits, targets, mask.long())
    bad = targets.clone()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        compute_cross_entropy(logits, bad, mask)
