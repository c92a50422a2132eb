"""What a training run keeps besides the live weights: EMA weights, copies of states, swaps.

:class:`ModuleEMA` averages the weights of named modules; :func:`copy_state` makes detached CPU
copies (the best state); :func:`swapped_weights` temporarily loads such states into modules (e.g.
to validate with the EMA weights) and always puts the training weights back.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn


class ModuleEMA:
    """Exponential moving average of the floating-point weights and buffers of named modules.

    Bias-corrected as in AudioCraft: after ``n`` steps with decay ``d`` the average weighs the
    latest weights by ``1 / (1 + d + ... + d^(n-1))``, so the first step copies the weights.
    """

    def __init__(self, modules: Mapping[str, nn.Module], decay: float, device: torch.device | None = None) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"`optim.ema.decay` must be in [0, 1), got {decay}.")
        self.modules = dict(modules)
        self.decay = float(decay)
        self.count = 0.0
        self.state = {name: {key: value.detach().to(device or value.device, copy=True)
                             for key, value in module.state_dict().items() if value.is_floating_point()}
                      for name, module in self.modules.items()}

    @torch.no_grad()
    def step(self) -> None:
        self.count = self.count * self.decay + 1
        weight = 1.0 / self.count
        for name, module in self.modules.items():
            averages = self.state[name]
            for key, value in module.state_dict().items():
                if key in averages:
                    averages[key].mul_(1 - weight).add_(value.detach().to(averages[key].device), alpha=weight)

    def state_dict(self) -> dict:
        return {"state": self.state, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = float(state["count"])
        for name, averages in state["state"].items():
            for key, value in averages.items():
                self.state[name][key].copy_(value)


def copy_state(state: Mapping[str, Any]) -> dict:
    """Detached CPU copy of a (nested) state dict."""
    return {key: (value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor)
                  else copy_state(value) if isinstance(value, Mapping) else value)
            for key, value in state.items()}


@contextlib.contextmanager
def swapped_weights(modules: Mapping[str, nn.Module],
                    states: Mapping[str, Mapping[str, torch.Tensor]]) -> Iterator[None]:
    """Copy ``states[name]`` (a subset of the module's state dict) into ``modules[name]`` for the duration
    of the block, then restore the previous values (also on errors)."""
    backups = {}
    with torch.no_grad():
        for name, state in states.items():
            current = modules[name].state_dict()
            backups[name] = {key: current[key].clone() for key in state}
            for key, value in state.items():
                current[key].copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, backup in backups.items():
                current = modules[name].state_dict()
                for key, value in backup.items():
                    current[key].copy_(value)
