"""Dora entry point of the training solvers.

Run an experiment (the folder is ``$AUDIOCRAFT_DORA_DIR/xps/<signature>``, default
``~/.cache/audiocraft/dora``; running the same command again resumes it)::

    dora -P audiocraft run solver=compression/debug dset=audio/example
    python -m audiocraft.train solver=compression/debug        # the same, without the dora command
    dora -P audiocraft run -d --ddp_workers 2 solver=...         # several processes on this machine
    torchrun --nproc_per_node 8 -m audiocraft.train solver=...   # the same with torchrun
    dora -P audiocraft info solver=compression/debug             # signature, folder, last metrics
    dora -P audiocraft grid compression.debug                    # a grid of audiocraft/grids/

Needs the training extra: ``pip install -e '.[train]'`` (Dora, Hydra, TensorBoard).
See docs/TRAINING.md.
"""
from __future__ import annotations

import copy
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

try:
    import dora
    import hydra  # noqa: F401  (Dora's Hydra support needs it)
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("audiocraft.train needs Dora and Hydra: pip install -e '.[train]' "
                      "(or pip install dora-search hydra-core).") from exc
from dora.hydra import HydraMain
from omegaconf import DictConfig, OmegaConf

from .environment import get_dora_dir

logger = logging.getLogger(__name__)


def resolve_config_dset_paths(cfg: DictConfig) -> None:
    """Make the ``datasource`` paths absolute, relative to the folder the command was started from."""
    for key, value in cfg.datasource.items():
        if isinstance(value, str):
            cfg.datasource[key] = str(dora.to_absolute_path(value))


def get_solver(cfg: DictConfig, folder: str | Path | None = None):
    """The solver of ``cfg`` (datasource paths made absolute); ``folder`` defaults to the current Dora XP's."""
    from .solvers import builders
    cfg = copy.deepcopy(cfg)
    resolve_config_dset_paths(cfg)
    return builders.get_solver(cfg, folder=folder)


def get_solver_from_xp(xp: dora.XP, override_cfg: dict | DictConfig | None = None, restore: bool = True,
                       load_best: bool = True, ignore_state_keys: tuple[str, ...] = ()):
    """The solver of an existing experiment, e.g. to inspect it from a notebook.

    Args:
        xp: the Dora experiment (``main.get_xp_from_sig(sig)``).
        override_cfg: nested dict of config values to change (does not change the signature),
            e.g. ``{'device': 'cpu', 'dataset': {'batch_size': 4}}``.
        restore: load the experiment's checkpoint.
        load_best: replace the weights by the best state.
        ignore_state_keys: states not to load, e.g. ``('optimizer',)``.
    """
    cfg = xp.cfg
    if override_cfg is not None:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(override_cfg))
    with xp.enter():
        solver = get_solver(cfg, folder=xp.folder)
        if restore:
            solver.restore(load_best=load_best, ignore_state_keys=ignore_state_keys)
    return solver


def get_solver_from_sig(sig: str, **kwargs: Any):
    """The solver of the experiment with signature ``sig`` (see :func:`get_solver_from_xp` for ``kwargs``)."""
    return get_solver_from_xp(main.get_xp_from_sig(sig), **kwargs)


def init_seed_and_system(cfg: DictConfig) -> None:
    """Seed every generator with ``cfg.seed`` and set the number of CPU threads."""
    import numpy as np
    import torch

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(int(cfg.num_threads))
    os.environ["MKL_NUM_THREADS"] = str(cfg.num_threads)
    os.environ["OMP_NUM_THREADS"] = str(cfg.num_threads)
    if cfg.efficient_attention_backend != "torch":
        raise ValueError(f"efficient_attention_backend={cfg.efficient_attention_backend!r} is not supported: "
                         "attention always runs through torch's scaled_dot_product_attention; set it to 'torch'.")


def setup_logging(level: str, folder: Path, log_name: str) -> None:
    """Log to stderr and to ``<folder>/<log_name>.<rank>`` (one file per process)."""
    from .utils import distributed
    rank = distributed.rank() if distributed.is_distributed() else int(os.environ.get("RANK", "0"))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    stream.setLevel(level if rank == 0 else logging.WARNING)
    file = logging.FileHandler(folder / f"{log_name}.{rank}")
    file.setFormatter(formatter)
    root.addHandler(stream)
    root.addHandler(file)
    root.setLevel(level)


def _missing_as_none(cfg: DictConfig) -> DictConfig:
    """Copy of ``cfg`` where missing values (``???``) are None."""
    cfg = copy.deepcopy(cfg)
    nodes = [cfg]
    while nodes:
        node = nodes.pop()
        for key in list(node.keys()):
            if OmegaConf.is_missing(node, key):
                node[key] = None
            elif isinstance(node[key], DictConfig):
                nodes.append(node[key])
    return cfg


class AudioCraftHydraMain(HydraMain):
    """Dora's Hydra entry point; signatures also work when a config group leaves values to the command
    line (e.g. ``dset=audio/default datasource.train=...``), which plain Dora cannot compare."""

    def _get_delta(self, init: DictConfig, other: DictConfig):
        return super()._get_delta(_missing_as_none(init), _missing_as_none(other))


def hydra_main(config_path: str, config_name: str, **kwargs: Any):
    """``dora.hydra_main`` with :class:`AudioCraftHydraMain`."""
    def decorator(function):
        # Under `python -m audiocraft.train` this module is `__main__` (and `__mp_main__` in data-loading
        # workers); Dora derives the package from the function's module, so name it explicitly.
        function.__module__ = "audiocraft.train"
        return AudioCraftHydraMain(function, config_name=config_name, config_path=config_path, **kwargs)
    return decorator


@hydra_main(config_path="../config", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from .utils import distributed

    init_seed_and_system(cfg)
    xp = dora.get_xp()
    setup_logging(str(cfg.logging.level).upper(), xp.folder,
                  f"{cfg.execute_only}.log" if cfg.execute_only else "solver.log")
    logger.info("Experiment %s in %s", xp.sig, xp.folder)
    distributed.init(str(cfg.device))
    solver = get_solver(cfg)
    if cfg.show:
        solver.show()
        return
    if cfg.execute_only:
        if not (cfg.execute_inplace or cfg.continue_from):
            raise ValueError("execute_only needs the checkpoint to use: set continue_from=<//sig/... or path>, "
                             "or execute_inplace=true to run in this experiment's own folder.")
        if not solver.restore(load_best=True):
            raise FileNotFoundError(f"execute_only={cfg.execute_only}: no checkpoint in {xp.folder} to run with; "
                                    "set continue_from=//sig/<signature of the trained experiment>.")
        solver.run_one_stage(str(cfg.execute_only))
        return
    solver.run()


main.dora.dir = get_dora_dir()


if __name__ == "__main__":
    main()
