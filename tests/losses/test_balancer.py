"""Loss balancer: gradient shares follow the weights whatever the losses' scales."""
import pytest
import torch

from audiocraft.losses import Balancer


def _two_losses(y: torch.Tensor, target: torch.Tensor) -> dict:
    # Two losses with wildly different gradient scales (about 1e3 and 1e-5).
    return {"big": 1000.0 * (y - target).pow(2).sum(), "small": 1e-3 * (y + target).abs().mean()}


def _partial_grads(losses: dict, y: torch.Tensor) -> dict:
    return {name: torch.autograd.grad(loss, [y], retain_graph=True)[0] for name, loss in losses.items()}


def _recover_scales(total: torch.Tensor, grads: dict) -> dict:
    """Least-squares coefficients ``s`` such that ``total = sum_i s_i g_i``."""
    basis = torch.stack([g.flatten() for g in grads.values()], dim=1).double()
    coeffs = torch.linalg.lstsq(basis, total.flatten().double().unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(basis @ coeffs, total.flatten().double(), atol=1e-6, rtol=1e-5)
    return dict(zip(grads, coeffs.tolist()))


def test_gradient_shares_follow_weights():
    y = torch.randn(4, 1, 64, requires_grad=True)
    target = torch.randn(4, 1, 64)
    balancer = Balancer({"big": 1.0, "small": 3.0}, per_batch_item=False, total_norm=2.0, monitor=True)
    losses = _two_losses(y, target)
    grads = _partial_grads(losses, y)
    effective = balancer.backward(losses, y)
    scales = _recover_scales(y.grad, grads)
    contributions = {name: scales[name] * grads[name].norm().item() for name in grads}
    # Contribution of each loss to the gradient norm = total_norm * w_i / sum(w).
    assert contributions["big"] == pytest.approx(2.0 * 1 / 4, rel=1e-4)
    assert contributions["small"] == pytest.approx(2.0 * 3 / 4, rel=1e-4)
    # Effective loss: each loss times the factor its gradient received.
    expected = sum(scales[name] * losses[name].item() for name in losses)
    assert effective.item() == pytest.approx(expected, rel=1e-4)
    assert not effective.requires_grad and effective.dim() == 0
    # Monitor: each loss's share of the (average) gradient norm, before balancing.
    norms = {name: grads[name].norm().item() for name in grads}
    assert balancer.metrics["ratio_big"] == pytest.approx(norms["big"] / sum(norms.values()), rel=1e-5)
    assert balancer.metrics["ratio_big"] + balancer.metrics["ratio_small"] == pytest.approx(1.0)
    assert balancer.metrics["ratio_big"] > 0.99


def test_gradients_reach_the_model_through_input():
    torch.manual_seed(1)
    model = torch.nn.Conv1d(1, 1, 3, padding=1)
    x = torch.randn(2, 1, 32)
    target = torch.randn(2, 1, 32)
    y = model(x)
    losses = _two_losses(y, target)
    grads = _partial_grads(losses, y)
    Balancer({"big": 1.0, "small": 1.0}).backward(losses, y)
    per_item = {name: g.flatten(1).norm(dim=1).mean().item() for name, g in grads.items()}
    out_grad = sum(0.5 / per_item[name] * grads[name] for name in grads)
    reference = torch.autograd.grad(model(x), list(model.parameters()), out_grad)
    for param, expected in zip(model.parameters(), reference):
        torch.testing.assert_close(param.grad, expected)


def test_without_balancing_it_is_a_weighted_sum():
    y = torch.randn(2, 1, 16, requires_grad=True)
    target = torch.randn(2, 1, 16)
    losses = _two_losses(y, target)
    grads = _partial_grads(losses, y)
    balancer = Balancer({"big": 0.5, "small": 2.0}, balance_grads=False)
    effective = balancer.backward(losses, y)
    torch.testing.assert_close(y.grad, 0.5 * grads["big"] + 2.0 * grads["small"])
    assert effective.item() == pytest.approx(0.5 * losses["big"].item() + 2.0 * losses["small"].item(), rel=1e-6)
    assert balancer.metrics == {}  # monitor is off


def test_norms_are_averaged_over_calls():
    balancer = Balancer({"a": 1.0}, ema_decay=0.5, per_batch_item=False, epsilon=0.0)
    norms, scales = [], []
    for factor in (1.0, 10.0):
        y = torch.randn(3, 1, 8, requires_grad=True)
        loss = factor * y.pow(2).sum()
        norms.append(torch.autograd.grad(loss, [y], retain_graph=True)[0].norm().item())
        effective = balancer.backward({"a": loss}, y)
        scales.append(effective.item() / loss.item())
    assert scales[0] == pytest.approx(1.0 / norms[0], rel=1e-5)
    # Bias-corrected EMA with decay 0.5: (0.5 * n1 + n2) / 1.5.
    assert scales[1] == pytest.approx(1.5 / (0.5 * norms[0] + norms[1]), rel=1e-5)


def test_per_batch_item_norm_is_mean_of_item_norms():
    y = torch.randn(3, 2, 8, requires_grad=True)
    weights = torch.tensor([1.0, 5.0, 20.0]).view(3, 1, 1)
    loss = (weights * y).pow(2).sum()
    grad = torch.autograd.grad(loss, [y], retain_graph=True)[0]
    effective = Balancer({"a": 1.0}, epsilon=0.0).backward({"a": loss}, y)
    assert effective.item() / loss.item() == pytest.approx(1.0 / grad.flatten(1).norm(dim=1).mean().item(), rel=1e-5)


def test_distributed_average_hook_receives_norms_and_count():
    calls = []

    def average(norms, count):
        calls.append((dict(norms), count))
        return {name: 2 * value for name, value in norms.items()}

    y = torch.randn(5, 1, 8, requires_grad=True)
    Balancer({"a": 1.0}, average_norms=average).backward({"a": y.pow(2).sum()}, y)
    assert len(calls) == 1 and calls[0][1] == 5 and set(calls[0][0]) == {"a"}


def test_actionable_errors():
    y = torch.randn(2, 1, 8, requires_grad=True)
    with pytest.raises(ValueError, match="no weight"):
        Balancer({"a": 1.0}).backward({"b": y.sum()}, y)
    with pytest.raises(ValueError, match="does not depend"):
        Balancer({"a": 1.0}).backward({"a": torch.randn(3, requires_grad=True).sum()}, y)
    with pytest.raises(ValueError, match="requiring grad"):
        Balancer({"a": 1.0}).backward({"a": y.sum()}, y.detach())
    with pytest.raises(ValueError, match="positive weight"):
        Balancer({"a": 0.0}).backward({"a": y.sum()}, y)
    with pytest.raises(ValueError, match=">= 0"):
        Balancer({"a": -1.0})
