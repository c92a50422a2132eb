"""Adam with D-Adaptation (Defazio & Mishchenko, 2023): the step size is estimated, not tuned.

MusicGen's released recipes train with ``optim.optimizer=dadam`` and ``optim.lr=1``: ``lr`` is a
multiplier of the adapted step size ``d`` (keep it at 1 unless training is unstable; a learning
-rate schedule such as cosine still applies on top of it).

Per parameter, with ``dlr = d * lr`` at the current update and ``g`` the gradient::

    m <- beta1 * m + (1 - beta1) * dlr * g          (first moment, already scaled by the step size)
    v <- beta2 * v + (1 - beta2) * g^2              (second moment)
    s <- beta2 * s + (1 - beta2) * dlr * g          (accumulated steps, for the estimate of d)
    p <- p - decay * dlr * p                        (decoupled weight decay, AdamW style)
    p <- p - m / (sqrt(v) + eps)

and over all parameters, with ``denom = sqrt(v) + eps``::

    r     <- beta2 * r + (1 - beta2) * dlr^2 * sum(g^2 / denom)
    d_hat  = (sum(s^2 / denom) / (1 - beta2) - r) / sum(|s|)
    d     <- max(d, min(d_hat, d * growth_rate))

These follow AudioCraft's variant (``s`` decays with ``beta2``). Gradients are the same on every
process in data-parallel training (the loop averages them first), so no communication is needed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class DAdaptAdam(torch.optim.Optimizer):
    """Adam whose step size ``d`` is adapted during training (see the module docstring).

    Args:
        params: parameters or parameter groups. Groups may set ``lr`` only to the common value or 0
            (frozen group), since ``d`` is shared.
        lr: multiplier of the adapted step size (1 for the released recipes).
        betas: decay rates of the first and second moments.
        eps: added to ``sqrt(v)`` in the denominator.
        weight_decay: decay rate of the weights, scaled by the step size ``d * lr``.
        decouple: AdamW-style decoupled weight decay (True) or an L2 penalty added to the gradient.
        d0: initial estimate of ``d``.
        growth_rate: largest factor by which ``d`` may grow per update (inf: unbounded; e.g. 1.02
            behaves like a warm-up).
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 decouple: bool = True, d0: float = 1e-6, growth_rate: float = math.inf) -> None:
        betas = tuple(float(b) for b in betas)
        checks = [("lr", lr, lr > 0, "> 0"), ("eps", eps, eps > 0, "> 0"), ("d0", d0, d0 > 0, "> 0"),
                  ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
                  ("growth_rate", growth_rate, growth_rate >= 1, ">= 1"),
                  ("betas", betas, len(betas) == 2 and all(0 <= b < 1 for b in betas), "two values in [0, 1)")]
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"DAdaptAdam: `{name}` must be {expected}, got {value!r} "
                                 f"(config `optim.lr` / `optim.adam.{name}`).")
        defaults = dict(lr=float(lr), betas=betas, eps=float(eps), weight_decay=float(weight_decay),
                        decouple=bool(decouple), d=float(d0), growth_rate=float(growth_rate), k=0,
                        gsq_weighted=0.0)
        super().__init__(params, defaults)

    def _active(self):
        """(group, parameter, state) for every parameter with a gradient, states created on first use."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["s"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                yield group, param, state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lr = max(group["lr"] for group in self.param_groups)
        wrong = sorted({group["lr"] for group in self.param_groups} - {lr, 0.0})
        if wrong:
            raise RuntimeError(f"DAdaptAdam: parameter groups must share one learning rate (or use 0), got {wrong} "
                               f"besides {lr}; remove per-group learning rates (e.g. transformer_lm.emb_lr=null).")
        first = self.param_groups[0]
        beta1, beta2 = first["betas"]
        d, growth_rate = first["d"], first["growth_rate"]
        dlr = d * lr

        # Pass 1: moments, and the sums that estimate d.
        weighted_grad_sq = 0.0
        weighted_step_sq = 0.0
        step_l1 = 0.0
        for group, param, state in self._active():
            if group["lr"] == 0:
                continue
            grad = param.grad
            if group["weight_decay"] and not group["decouple"]:
                grad = grad.add(param, alpha=group["weight_decay"])
            grad_sq = grad * grad
            state["exp_avg"].mul_(beta1).add_(grad, alpha=dlr * (1 - beta1))
            state["exp_avg_sq"].mul_(beta2).add_(grad_sq, alpha=1 - beta2)
            denom = state["exp_avg_sq"].sqrt().add_(group["eps"])
            weighted_grad_sq += float((grad_sq / denom).sum())
            s = state["s"]
            s.mul_(beta2).add_(grad, alpha=dlr * (1 - beta2))
            weighted_step_sq += float((s * s / denom).sum())
            step_l1 += float(s.abs().sum())

        gsq_weighted = beta2 * first["gsq_weighted"] + (1 - beta2) * dlr ** 2 * weighted_grad_sq
        if step_l1 == 0:  # no gradient yet: nothing to adapt nor to apply
            return loss
        d_hat = (weighted_step_sq / (1 - beta2) - gsq_weighted) / step_l1
        new_d = max(d, min(d_hat, d * growth_rate))

        # Pass 2: decoupled weight decay and the step itself (with the step size of this update).
        for group, param, state in self._active():
            if group["lr"] == 0:
                continue
            state["step"] += 1
            denom = state["exp_avg_sq"].sqrt().add_(group["eps"])
            if group["weight_decay"] and group["decouple"]:
                param.add_(param, alpha=-group["weight_decay"] * dlr)
            param.addcdiv_(state["exp_avg"], denom, value=-1)
        for group in self.param_groups:
            group["d"] = new_d
            group["gsq_weighted"] = gsq_weighted
            group["k"] += 1
        return loss
