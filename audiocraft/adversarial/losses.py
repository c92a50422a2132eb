"""Adversarial training of a generator against a (multi-)discriminator.

Criteria (``x`` are logits of one sub-discriminator, any shape):

=========  ======================  ==========================  ===========================
type       generator ``loss``      discriminator on real       discriminator on fake
=========  ======================  ==========================  ===========================
mse        ``mean((x - 1)^2)``     ``mean((x - 1)^2)``         ``mean(x^2)``
hinge      ``-mean(x)``            ``mean(relu(1 - x))``       ``mean(relu(1 + x))``
hinge2     ``mean(relu(1 - x))``   ``mean(relu(1 - x))``       ``mean(relu(1 + x))``
=========  ======================  ==========================  ===========================

Same definitions as AudioCraft's ``audiocraft/adversarial/losses.py``. The discriminator
must return ``(logits: list[Tensor], fmaps: list[list[Tensor]])``, one entry per
sub-discriminator (see :class:`~audiocraft.adversarial.MultiScaleSTFTDiscriminator`).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

#: Loss types understood by :func:`get_adv_criterion`, :func:`get_real_criterion`, :func:`get_fake_criterion`.
ADVERSARIAL_LOSSES = ("mse", "hinge", "hinge2")

#: ``logits -> scalar loss``.
AdvCriterion = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- criteria

def _empty_guard(x: torch.Tensor) -> torch.Tensor | None:
    return x.new_zeros(()) if x.numel() == 0 else None


def mse_loss(x: torch.Tensor) -> torch.Tensor:
    """Generator MSE criterion: ``mean((x - 1)^2)`` (0 for empty logits)."""
    empty = _empty_guard(x)
    return empty if empty is not None else F.mse_loss(x, torch.ones_like(x))


def hinge_loss(x: torch.Tensor) -> torch.Tensor:
    """Generator hinge criterion: ``-mean(x)`` (0 for empty logits)."""
    empty = _empty_guard(x)
    return empty if empty is not None else -x.mean()


def hinge2_loss(x: torch.Tensor) -> torch.Tensor:
    """Generator "hinge2" criterion: ``mean(relu(1 - x))`` (0 for empty logits)."""
    empty = _empty_guard(x)
    return empty if empty is not None else F.relu(1 - x).mean()


def mse_real_loss(x: torch.Tensor) -> torch.Tensor:
    """Discriminator MSE criterion on real samples: ``mean((x - 1)^2)``."""
    return F.mse_loss(x, torch.ones_like(x))


def mse_fake_loss(x: torch.Tensor) -> torch.Tensor:
    """Discriminator MSE criterion on generated samples: ``mean(x^2)``."""
    return F.mse_loss(x, torch.zeros_like(x))


def hinge_real_loss(x: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge criterion on real samples: ``mean(relu(1 - x))``."""
    return F.relu(1 - x).mean()


def hinge_fake_loss(x: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge criterion on generated samples: ``mean(relu(1 + x))``."""
    return F.relu(1 + x).mean()


def _check_loss_type(loss_type: str) -> None:
    if loss_type not in ADVERSARIAL_LOSSES:
        raise ValueError(f"`loss_type` must be one of {ADVERSARIAL_LOSSES}, got {loss_type!r}.")


def get_adv_criterion(loss_type: str) -> AdvCriterion:
    """Generator criterion for ``loss_type`` in :data:`ADVERSARIAL_LOSSES`."""
    _check_loss_type(loss_type)
    return {"mse": mse_loss, "hinge": hinge_loss, "hinge2": hinge2_loss}[loss_type]


def get_real_criterion(loss_type: str) -> AdvCriterion:
    """Discriminator criterion on real samples for ``loss_type``."""
    _check_loss_type(loss_type)
    return mse_real_loss if loss_type == "mse" else hinge_real_loss


def get_fake_criterion(loss_type: str) -> AdvCriterion:
    """Discriminator criterion on generated samples for ``loss_type``."""
    _check_loss_type(loss_type)
    return mse_fake_loss if loss_type == "mse" else hinge_fake_loss


# --------------------------------------------------------------------------- feature matching

class FeatureMatchingLoss(nn.Module):
    """Distance between the feature maps of a sub-discriminator on generated and real audio.

    Args:
        loss: distance between two feature maps (default ``nn.L1Loss()``).
        normalize: divide the sum over feature maps by their number.
    ``forward(fmap_fake: list[Tensor], fmap_real: list[Tensor])`` -> scalar.
    """

    def __init__(self, loss: nn.Module | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 normalize: bool = True) -> None:
        super().__init__()
        self.loss = nn.L1Loss() if loss is None else loss
        self.normalize = normalize

    def forward(self, fmap_fake: list[torch.Tensor], fmap_real: list[torch.Tensor]) -> torch.Tensor:
        """Sum (or mean if ``normalize``) of ``loss(fake_j, real_j)`` over feature maps ``j``."""
        if len(fmap_fake) != len(fmap_real) or not fmap_fake:
            raise ValueError(f"FeatureMatchingLoss: expected two non-empty lists with as many feature maps, got "
                             f"{len(fmap_fake)} and {len(fmap_real)}.")
        total = fmap_fake[0].new_zeros(())
        for j, (fake, real) in enumerate(zip(fmap_fake, fmap_real)):
            if fake.shape != real.shape:
                raise ValueError(f"FeatureMatchingLoss: feature map {j} differs in shape, {tuple(fake.shape)} vs "
                                 f"{tuple(real.shape)}; fake and real audio must have the same shape.")
            total = total + self.loss(fake, real)
        return total / len(fmap_fake) if self.normalize else total


# --------------------------------------------------------------------------- training wrapper

@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients from flowing into the parameters of ``module``."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


class AdversarialLoss(nn.Module):
    """Trains a discriminator and gives the generator its adversarial and feature losses.

    Args:
        adversary: discriminator, ``x [B, C, T] -> (logits: list[Tensor], fmaps: list[list[Tensor]])``.
        optimizer: optimizer of the adversary's parameters, used by :meth:`train_adv`; its state
            is saved in this module's state dict under ``<prefix>optimizer``. ``None`` if the
            caller steps the discriminator itself (use :meth:`discriminator_loss`).
        loss: generator criterion on the logits of generated audio.
        loss_real: discriminator criterion on the logits of real audio.
        loss_fake: discriminator criterion on the logits of generated audio.
        loss_feat: feature matching loss between generated and real feature maps, or ``None``.
        normalize: divide the losses by the number of sub-discriminators.

    Example::

        adv = AdversarialLoss(msstftd, torch.optim.Adam(msstftd.parameters(), 3e-4),
                              get_adv_criterion('hinge'), get_real_criterion('hinge'),
                              get_fake_criterion('hinge'), FeatureMatchingLoss())
        d_loss = adv.train_adv(fake, real)   # one discriminator step
        g_adv, g_feat = adv(fake, real)      # generator losses, differentiable w.r.t. fake
    """

    def __init__(self, adversary: nn.Module, optimizer: torch.optim.Optimizer | None, loss: AdvCriterion,
                 loss_real: AdvCriterion, loss_fake: AdvCriterion,
                 loss_feat: FeatureMatchingLoss | Callable | None = None, normalize: bool = True) -> None:
        super().__init__()
        self.adversary = adversary
        self.optimizer = optimizer
        self.loss = loss
        self.loss_real = loss_real
        self.loss_fake = loss_fake
        self.loss_feat = loss_feat
        self.normalize = normalize

    # The optimizer state travels with the module state, so checkpoints resume exactly.
    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: D401 (torch hook)
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.optimizer is not None:
            destination[prefix + "optimizer"] = self.optimizer.state_dict()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "optimizer"
        if key in state_dict:
            optimizer_state = state_dict.pop(key)
            if self.optimizer is not None:
                self.optimizer.load_state_dict(optimizer_state)
        elif self.optimizer is not None and strict:
            missing_keys.append(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _predict(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        output = self.adversary(x)
        if not (isinstance(output, tuple) and len(output) == 2):
            raise TypeError(f"The adversary must return (logits: list[Tensor], fmaps: list[list[Tensor]]), got "
                            f"{type(output).__name__}.")
        logits, fmaps = output
        if not (isinstance(logits, list) and all(isinstance(t, torch.Tensor) for t in logits)):
            raise TypeError(f"The adversary's logits must be a list of tensors, got {type(logits).__name__}.")
        if not (isinstance(fmaps, list) and all(isinstance(f, list) for f in fmaps)):
            raise TypeError("The adversary's feature maps must be a list (one per sub-discriminator) of lists "
                            "of tensors.")
        if not logits:
            raise ValueError("The adversary returned no logits; it needs at least one sub-discriminator.")
        return logits, fmaps

    def discriminator_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Discriminator loss on detached ``fake`` and ``real`` audio (both ``[B, C, T]``), no step.

        Returns:
            Scalar ``sum_k loss_fake(D_k(fake)) + loss_real(D_k(real))`` (divided by the number
            of sub-discriminators if ``normalize``), differentiable w.r.t. the adversary.
        """
        logits_fake, _ = self._predict(fake.detach())
        logits_real, _ = self._predict(real.detach())
        loss = logits_fake[0].new_zeros(())
        for logit_fake, logit_real in zip(logits_fake, logits_real):
            loss = loss + self.loss_fake(logit_fake) + self.loss_real(logit_real)
        return loss / len(logits_fake) if self.normalize else loss

    def train_adv(self, fake: torch.Tensor, real: torch.Tensor,
                  before_step: Callable[[nn.Module], None] | None = None) -> torch.Tensor:
        """One discriminator update: zero_grad, loss, backward, ``before_step``, optimizer step.

        Args:
            fake: generated audio ``[B, C, T]`` (detached here).
            real: real audio ``[B, C, T]``.
            before_step: called with the adversary after ``backward`` and before the optimizer
                step, e.g. to all-reduce its gradients in distributed training.
        Returns:
            The detached discriminator loss (scalar) before the step.
        """
        if self.optimizer is None:
            raise ValueError("AdversarialLoss.train_adv needs an optimizer: pass one to the constructor, or call "
                             "`discriminator_loss(fake, real)` and step the discriminator yourself.")
        self.optimizer.zero_grad()
        loss = self.discriminator_loss(fake, real)
        loss.backward()
        if before_step is not None:
            before_step(self.adversary)
        self.optimizer.step()
        return loss.detach()

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generator losses: ``(adversarial loss, feature matching loss)``, both scalars.

        Gradients flow into ``fake`` (``[B, C, T]``) but not into the adversary's parameters.
        The feature loss is 0 when ``loss_feat`` is None.
        """
        with _frozen(self.adversary):
            logits_fake, fmaps_fake = self._predict(fake)
            _, fmaps_real = self._predict(real)
        adv = logits_fake[0].new_zeros(())
        for logit_fake in logits_fake:
            adv = adv + self.loss(logit_fake)
        feat = logits_fake[0].new_zeros(())
        if self.loss_feat is not None:
            for fmap_fake, fmap_real in zip(fmaps_fake, fmaps_real):
                feat = feat + self.loss_feat(fmap_fake, fmap_real)
        if self.normalize:
            adv = adv / len(logits_fake)
            feat = feat / len(logits_fake)
        return adv, feat
