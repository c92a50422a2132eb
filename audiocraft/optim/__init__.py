"""Optimizers that torch does not provide: :class:`DAdaptAdam` (``optim.optimizer=dadam``)."""
from .dadam import DAdaptAdam

__all__ = ["DAdaptAdam"]
