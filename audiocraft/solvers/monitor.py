"""What a training run reports: running averages, progress lines, TensorBoard / W&B, history.

Only the process of rank 0 prints progress and writes TensorBoard, W&B and ``history.json``.
``history.json`` (a list with one ``{stage: {metric: value}}`` dict per epoch) is the file
``dora info`` and ``dora grid`` read.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..utils import distributed

logger = logging.getLogger("audiocraft.solver")


def to_float(value: Any) -> float:
    """A metric as a Python float (tensors are moved to CPU)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean().item())
    return float(value)


class Averager:
    """Running mean of metric dicts (each ``update`` counts once)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def update(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Add one step of ``metrics``; returns the current means."""
        for key, value in metrics.items():
            self.totals[key] = self.totals.get(key, 0.0) + to_float(value)
            self.counts[key] = self.counts.get(key, 0) + 1
        return self.value()

    def value(self) -> dict[str, float]:
        return {key: self.totals[key] / self.counts[key] for key in self.totals}


def format_metrics(metrics: Mapping[str, float], max_items: int = 8) -> str:
    """``'loss=1.234 l1=0.567'`` with 4 significant digits."""
    parts = []
    for key, value in list(metrics.items())[:max_items]:
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) and math.isfinite(value) else f"{key}={value}")
    return " ".join(parts)


class Progress:
    """Iterate over ``iterable`` showing stage, epoch, step, speed and running metrics.

    A tqdm bar on a terminal; plain log lines every ``updates`` steps otherwise (e.g. Slurm logs).
    Call :meth:`update` with the running metrics after each step.
    """

    def __init__(self, iterable: Iterable, stage: str, epoch: int, total: int, updates: int = 10) -> None:
        self.iterable = iterable
        self.stage = stage
        self.epoch = epoch
        self.total = total
        self.updates = max(1, int(updates))
        self.step = 0
        self.begin = time.time()
        self._bar = None
        if distributed.is_rank_zero() and sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=f"{stage.capitalize()} | epoch {epoch}", leave=False,
                             dynamic_ncols=True, mininterval=0.5)

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
        finally:
            if self._bar is not None:
                self._bar.close()

    def update(self, metrics: Mapping[str, float]) -> None:
        self.step += 1
        if self._bar is not None:
            self._bar.update(1)
            if self.step % self.updates == 0 or self.step == self.total:
                self._bar.set_postfix_str(format_metrics(metrics), refresh=False)
        elif distributed.is_rank_zero() and (self.step % self.updates == 0 or self.step == self.total):
            speed = self.step / max(time.time() - self.begin, 1e-9)
            logger.info("%s | epoch %d | %d/%d | %.2f it/s | %s", self.stage.capitalize(), self.epoch,
                        self.step, self.total, speed, format_metrics(metrics))


class ResultLogger:
    """Per-stage summaries to the log, TensorBoard and Weights & Biases (rank 0 only).

    Args:
        folder: the experiment folder (TensorBoard files go to ``<folder>/tensorboard[/<sub_dir>]``).
        tensorboard: write TensorBoard event files.
        wandb: log to Weights & Biases (needs ``pip install wandb``).
        tensorboard_sub_dir: optional sub-folder of the TensorBoard files.
        wandb_kwargs: ``project``, ``name``, ``group`` of the W&B run.
        run_id: stable id of the run (the Dora signature), so a resumed run appends to the same W&B run.
        config: hyper-parameters to record.
    """

    def __init__(self, folder: Path, tensorboard: bool = False, wandb: bool = False,
                 tensorboard_sub_dir: str | None = None, wandb_kwargs: Mapping[str, Any] | None = None,
                 run_id: str | None = None, config: Mapping[str, Any] | None = None) -> None:
        self.writer = None
        self.wandb_run = None
        if not distributed.is_rank_zero():
            return
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError("logging.log_tensorboard=true needs TensorBoard: pip install tensorboard "
                                  "(or audiocraft[train]), or set logging.log_tensorboard=false.") from exc
            log_dir = folder / "tensorboard"
            if tensorboard_sub_dir:
                log_dir = log_dir / tensorboard_sub_dir
            self.writer = SummaryWriter(log_dir=str(log_dir))
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError as exc:
                raise ImportError("logging.log_wandb=true needs Weights & Biases: pip install wandb, "
                                  "or set logging.log_wandb=false.") from exc
            kwargs = {key: value for key, value in dict(wandb_kwargs or {}).items()
                      if key in ("project", "name", "group") and value is not None}
            self.wandb_run = wandb_module.init(dir=str(folder), id=run_id, resume="allow", config=dict(config or {}),
                                               **kwargs)

    def log_stage(self, stage: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """Summary of one stage of one epoch."""
        if not distributed.is_rank_zero():
            return
        logger.info("%s summary | epoch %d | %s", stage.capitalize(), epoch, format_metrics(metrics, max_items=64))
        for key, value in metrics.items():
            if self.writer is not None:
                self.writer.add_scalar(f"{stage}/{key}", value, epoch)
        if self.wandb_run is not None:
            self.wandb_run.log({f"{stage}/{key}": value for key, value in metrics.items()}, step=epoch)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def write_history(folder: Path, history: list[dict]) -> None:
    """Write ``<folder>/history.json`` atomically (rank 0 only)."""
    if not distributed.is_rank_zero():
        return
    path = folder / "history.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as file:
        json.dump(history, file, indent=2)
    os.replace(tmp, path)
