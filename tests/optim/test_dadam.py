"""D-Adaptation Adam: it finds a step size by itself, resumes exactly, and is registered as optim.optimizer=dadam."""
from __future__ import annotations

import io

import pytest
import torch

from audiocraft.optim import DAdaptAdam
from audiocraft.solvers import builders


def _quadratic_run(steps: int, optimizer_state: dict | None = None, start: torch.Tensor | None = None):
    weight = torch.nn.Parameter(torch.full((8,), 3.0) if start is None else start.clone())
    target = torch.linspace(-1, 1, 8)
    optimizer = DAdaptAdam([weight], lr=1.0, betas=(0.9, 0.95), weight_decay=0.0)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    losses = []
    for _ in range(steps):
        loss = ((weight - target) ** 2).sum()
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return weight, optimizer, losses


def test_adapts_its_step_size_and_converges():
    weight, optimizer, losses = _quadratic_run(300)
    assert optimizer.param_groups[0]["d"] > 1e-3  # grew from d0 = 1e-6 by orders of magnitude
    assert losses[-1] < 1e-2 * losses[0]


def test_state_dict_round_trip_continues_exactly():
    straight, _, _ = _quadratic_run(20)
    first, optimizer, _ = _quadratic_run(10)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    resumed, _, _ = _quadratic_run(10, state, first.detach())
    assert torch.equal(straight, resumed)


def test_registered_in_builders_with_the_adam_options():
    model = torch.nn.Linear(3, 2)
    optimizer = builders.get_optimizer(model, {"optimizer": "dadam", "lr": 1.0,
                                               "adam": {"betas": [0.9, 0.95], "weight_decay": 0.1, "eps": 1e-8}})
    assert isinstance(optimizer, DAdaptAdam) and optimizer.param_groups[0]["weight_decay"] == 0.1


def test_bad_arguments_and_mixed_learning_rates_are_refused():
    param = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="lr"):
        DAdaptAdam([param], lr=0)
    with pytest.raises(ValueError, match="betas"):
        DAdaptAdam([param], betas=(0.9, 1.0))
    other = torch.nn.Parameter(torch.ones(2))
    optimizer = DAdaptAdam([{"params": [param]}, {"params": [other], "lr": 0.5}])
    (param.sum() + other.sum()).backward()
    with pytest.raises(RuntimeError, match="share one learning rate"):
        optimizer.step()
