"""Loss balancer: weights express each loss's share of the gradient, not a multiplier.

With ``y`` the model output and losses ``l_i(y)`` that depend on the model only through
``y``, the balancer computes the partial gradients ``g_i = d l_i / d y`` separately and sends
back into the model

    G = sum_i  total_norm * (w_i / sum_j w_j) * g_i / ema(||g_i||)

so that, on average, loss ``i`` contributes a fraction ``w_i / sum_j w_j`` of the gradient
whatever its intrinsic scale (EnCodec, Défossez et al. 2022; same semantics as AudioCraft's
``audiocraft/losses/balancer.py``). With ``balance_grads=False`` it is the plain weighted sum
``G = sum_i w_i g_i``.

``ema`` is a bias-corrected exponential moving average across calls:
``ema_n = sum_k decay^(n-k) v_k / sum_k decay^(n-k)``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import autograd

#: ``(norms, count) -> averaged norms``: hook to average the per-loss gradient norms across
#: workers (``count`` is the weight of this worker, its batch size when ``per_batch_item``).
NormAverager = Callable[[dict[str, float], int], dict[str, float]]


class Balancer:
    """Combine several losses of one tensor by rescaling their gradients.

    Args:
        weights: weight of each loss, by name; ``backward`` must receive losses with these names.
        balance_grads: rescale each partial gradient by its average norm (see module docstring);
            if False, gradients are simply summed with the weights as multipliers.
        total_norm: reference norm of the balanced gradient (ignored if ``balance_grads`` is False).
        ema_decay: decay of the moving average of the gradient norms (``None``/0: plain average).
        per_batch_item: measure the norm of each batch item's gradient and average them, instead
            of the norm of the whole batch gradient.
        epsilon: added to the average norm before dividing.
        monitor: if True, ``metrics`` holds ``ratio_<name>``: each loss's share of the sum of
            average gradient norms, after each ``backward``.
        average_norms: optional :data:`NormAverager` to average the norms across workers in
            distributed training (AudioCraft does this with ``flashy.distrib``); ``None`` keeps
            them local.

    Example::

        balancer = Balancer({'msspec': 2.0, 'adv': 4.0, 'feat': 4.0})
        y = model(x)
        losses = {'msspec': msspec(y, x), 'adv': adv, 'feat': feat}
        effective_loss = balancer.backward(losses, y)  # fills the model's .grad
    """

    def __init__(self, weights: dict[str, float], balance_grads: bool = True, total_norm: float = 1.0,
                 ema_decay: float = 0.999, per_batch_item: bool = True, epsilon: float = 1e-12,
                 monitor: bool = False, average_norms: NormAverager | None = None) -> None:
        if not isinstance(weights, dict) or not weights:
            raise ValueError(f"`weights` must be a non-empty dict {{loss name: weight}}, got {weights!r}.")
        negative = {name: w for name, w in weights.items() if w < 0}
        if negative:
            raise ValueError(f"Loss weights must be >= 0, got {negative}; drop a loss by giving it weight 0.")
        self.weights = dict(weights)
        self.balance_grads = balance_grads
        self.total_norm = total_norm or 1.0
        self.ema_decay = ema_decay or 1.0
        self.per_batch_item = per_batch_item
        self.epsilon = epsilon
        self.monitor = monitor
        self.average_norms = average_norms
        self._ema_sums: dict[str, float] = {}
        self._ema_weights: dict[str, float] = {}
        self._metrics: dict[str, float] = {}

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics of the last ``backward``: ``ratio_<name>`` for each loss when ``monitor`` is on."""
        return self._metrics

    def state_dict(self) -> dict[str, dict[str, float]]:
        """Running averages of the gradient norms (checkpointed so that a resumed run is exact)."""
        return {"ema_sums": dict(self._ema_sums), "ema_weights": dict(self._ema_weights)}

    def load_state_dict(self, state: dict[str, dict[str, float]]) -> None:
        self._ema_sums = dict(state["ema_sums"])
        self._ema_weights = dict(state["ema_weights"])

    def _update_average(self, norms: dict[str, float]) -> dict[str, float]:
        averaged = {}
        for name, value in norms.items():
            self._ema_sums[name] = self._ema_sums.get(name, 0.0) * self.ema_decay + value
            self._ema_weights[name] = self._ema_weights.get(name, 0.0) * self.ema_decay + 1.0
            averaged[name] = self._ema_sums[name] / self._ema_weights[name]
        return averaged

    def _grad_norm(self, grad: torch.Tensor) -> float:
        if self.per_batch_item and grad.dim() > 1:
            return float(grad.flatten(1).norm(p=2, dim=1).mean())
        return float(grad.norm(p=2))

    def backward(self, losses: dict[str, torch.Tensor], input: torch.Tensor) -> torch.Tensor:
        """Backpropagate the balanced gradient of ``losses`` through ``input``.

        Args:
            losses: scalar losses by name (names must be keys of ``weights``), each a function
                of ``input`` (and of nothing else that requires grad from the model).
            input: the tensor the losses are computed from, typically the model output
                ``[B, C, T]``; it must require grad.
        Returns:
            The effective loss, a detached scalar ``sum_i scale_i * l_i`` for logging, where
            ``scale_i`` is the factor applied to the gradient of loss ``i``.
        """
        if not losses:
            raise ValueError("Balancer.backward: `losses` is empty; pass at least one {name: scalar loss}.")
        unknown = sorted(set(losses) - set(self.weights))
        if unknown:
            raise ValueError(f"Balancer.backward: no weight for loss(es) {unknown}; known names are "
                             f"{sorted(self.weights)}. Add them to the balancer weights.")
        if not isinstance(input, torch.Tensor) or not input.requires_grad:
            raise ValueError("Balancer.backward: `input` must be the tensor (requiring grad) that the losses "
                             "were computed from, e.g. the model output.")
        grads: dict[str, torch.Tensor] = {}
        norms: dict[str, float] = {}
        for name, loss in losses.items():
            if loss.numel() != 1:
                raise ValueError(f"Balancer.backward: loss {name!r} must be a scalar, got shape {tuple(loss.shape)}.")
            (grad,) = autograd.grad(loss, [input], retain_graph=True, allow_unused=True)
            if grad is None:
                raise ValueError(f"Balancer.backward: loss {name!r} does not depend on `input`; compute it from "
                                 "`input` or leave it out of the balancer.")
            grads[name] = grad
            norms[name] = self._grad_norm(grad)

        avg_norms = self._update_average(norms)
        if self.average_norms is not None:
            count = input.shape[0] if self.per_batch_item else 1
            avg_norms = self.average_norms(avg_norms, count)
        total_avg_norm = sum(avg_norms.values())

        self._metrics = {}
        if self.monitor:
            for name, norm in avg_norms.items():
                self._metrics[f"ratio_{name}"] = norm / total_avg_norm if total_avg_norm > 0 else 0.0

        total_weight = sum(self.weights[name] for name in losses)
        if self.balance_grads and total_weight <= 0:
            raise ValueError(f"Balancer.backward: the weights of the given losses {sorted(losses)} sum to "
                             f"{total_weight}; give at least one of them a positive weight.")
        out_grad = torch.zeros_like(input)
        effective_loss = torch.zeros((), device=input.device, dtype=input.dtype)
        for name, grad in grads.items():
            if self.balance_grads:
                share = self.weights[name] / total_weight
                scale = share * self.total_norm / (self.epsilon + avg_norms[name])
            else:
                scale = self.weights[name]
            out_grad.add_(grad, alpha=scale)
            effective_loss = effective_loss + scale * losses[name].detach().reshape(())
        input.backward(out_grad)
        return effective_loss
