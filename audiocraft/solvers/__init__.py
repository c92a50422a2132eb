"""Training solvers: the generic loop (:mod:`.base`) and the tasks that plug into it.

Build one from a config with :func:`get_solver` (``cfg.solver`` picks the class from
``builders.SOLVERS``), or run training through Dora with ``audiocraft.train``.
"""
from .base import StandardSolver, StepOutput
from .state import ModuleEMA
from .builders import get_solver
from .compression import CompressionSolver, export_compression

__all__ = ["CompressionSolver", "ModuleEMA", "StandardSolver", "StepOutput", "export_compression", "get_solver"]
