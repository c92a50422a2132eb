"""The generic training loop shared by all solvers.

A solver is this loop plus a small *task* written in a subclass:

- :meth:`StandardSolver.build_model`: create ``self.model`` and ``self.optimizer`` and register them
  (``register_stateful('model', 'optimizer')``, ``register_best_state('model')``, ``register_ema('model')``);
- :meth:`StandardSolver.build_dataloaders`: fill ``self.dataloaders`` (``train``, ``valid``, ...);
- :meth:`StandardSolver.run_step`: turn a batch into a :class:`StepOutput` (loss to backpropagate + metrics);
- :meth:`StandardSolver.evaluate` and :meth:`StandardSolver.generate`: the evaluate / generate stages.

The loop owns everything else: stages and their schedule, backward, autocast and gradient
scaling, gradient clipping, averaging over processes, EMA weights, the best state, the
learning-rate schedule, logging, checkpoints and exact resumption.

An epoch runs ``train`` (``optim.updates_per_epoch`` updates), then ``valid`` with the EMA weights
(which also updates the best state), then ``evaluate`` and ``generate`` with the best weights every
``evaluate.every`` / ``generate.every`` epochs and at the last epoch. After each epoch the metrics are
appended to the history and ``checkpoint.th`` is rewritten atomically; it holds every state,
including the random generators, so killing a run at any moment and starting the same command
again continues exactly as if it had not been interrupted.
"""
from __future__ import annotations

import contextlib
import faulthandler
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .. import __version__
from ..utils import checkpoint, distributed
from . import builders
from .monitor import Averager, Progress, ResultLogger, to_float, write_history
from .state import ModuleEMA, copy_state, swapped_weights

logger = logging.getLogger("audiocraft.solver")


@dataclass
class StepOutput:
    """What :meth:`StandardSolver.run_step` returns.

    Attributes:
        metrics: scalars to log (tensors or floats), averaged over the stage.
        loss: scalar the loop backpropagates in training; None when the task already called
            ``backward`` itself (e.g. through a loss balancer) or outside training.
    """
    metrics: dict[str, Any] = field(default_factory=dict)
    loss: torch.Tensor | None = None


class StandardSolver(ABC):
    """Generic training loop; subclasses implement the task (see the module docstring).

    Args:
        cfg: the full training config (``config/`` tree).
        folder: experiment folder (checkpoints, logs, samples); default: the current Dora experiment's.
    """

    def __init__(self, cfg: DictConfig, folder: str | Path | None = None) -> None:
        self.cfg = cfg
        self.folder = Path(folder) if folder is not None else _dora_xp_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.device = builders.get_device(str(cfg.device))
        self.autocast_enabled, self.autocast_dtype = builders.get_autocast(cfg, self.device)
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.ema: ModuleEMA | None = None
        self.dataloaders: dict[str, torch.utils.data.DataLoader] = {}
        self.epoch = 1                       # the epoch to run next (1-based)
        self.history: list[dict[str, dict[str, float]]] = []
        self.best_state: dict[str, dict[str, torch.Tensor]] = {}
        self.current_stage: str | None = None
        self.rng = torch.Generator()         # reseeded at every epoch, for the task's own draws
        self.updates_per_epoch = 0
        self.total_updates = 0
        self._stateful: list[str] = []
        self._best_sources: list[str] = []
        self._ema_sources: list[str] = []
        self._pending: dict[str, dict[str, float]] = {}
        self._built = False
        self._fresh_start = True             # no state loaded: buffers come from rank 0 at the first update
        self._step_in_epoch = 0
        self.result_logger: ResultLogger | None = None

    # ------------------------------------------------------------------ the task (subclasses)
    @abstractmethod
    def build_model(self) -> None:
        """Create and register ``self.model`` (on ``self.device``) and ``self.optimizer``."""

    @abstractmethod
    def build_dataloaders(self) -> None:
        """Fill ``self.dataloaders`` with a DataLoader per split (``train`` and ``valid`` at least)."""

    @abstractmethod
    def run_step(self, batch: Any) -> StepOutput:
        """One batch -> :class:`StepOutput`. ``self.is_training`` tells the stage (no grad outside training)."""

    def evaluate(self) -> dict[str, float]:
        """Evaluate stage (with the best weights); returns metrics. Default: nothing."""
        return {}

    def generate(self) -> None:
        """Generate stage (with the best weights), e.g. write audio samples to ``self.folder``. Default: nothing."""

    def load_from_pretrained(self, name: str) -> dict:
        """``{'best_state': {'model': state_dict}}`` of a pretrained model (``continue_from=//pretrained/<name>``)."""
        raise ValueError(f"{type(self).__name__} cannot start from pretrained models (continue_from=//pretrained/...).")

    @property
    def best_metric_name(self) -> str | None:
        """Valid metric whose minimum selects the best state (None: the last state is the best).

        Set it with ``+checkpoint.best_metric=<metric>``; a task can change the default.
        """
        return OmegaConf.select(self.cfg, "checkpoint.best_metric", default=None)

    def show(self) -> None:
        """Log the model and its size (builds the model only: no data needed)."""
        if self.model is None:
            self.build_model()
        logger.info("Model:\n%s", self.model)
        logger.info("Size: %.2f M parameters", sum(p.numel() for p in self.model.parameters()) / 1e6)

    # ------------------------------------------------------------------ registration
    def register_stateful(self, *names: str) -> None:
        """Save and restore the attributes ``names`` (with ``state_dict``/``load_state_dict``) in checkpoints."""
        for name in names:
            if not hasattr(getattr(self, name, None), "state_dict"):
                raise TypeError(f"register_stateful({name!r}): self.{name} has no state_dict(); create it first.")
            if name not in self._stateful:
                self._stateful.append(name)

    def register_best_state(self, *names: str) -> None:
        """Keep a copy of the best weights of the modules ``names`` (used by evaluate/generate and export)."""
        self._best_sources += [name for name in names if name not in self._best_sources]

    def register_ema(self, *names: str) -> None:
        """Track an exponential moving average of the modules ``names`` (if ``optim.ema.use``)."""
        self._ema_sources += [name for name in names if name not in self._ema_sources]

    # ------------------------------------------------------------------ assembly
    def build(self) -> None:
        """Create data loaders, model, optimizer, schedule, EMA and loggers (once)."""
        if self._built:
            return
        self._built = True
        cfg = self.cfg
        self.build_dataloaders()
        if cfg.execute_only is None and "train" not in self.dataloaders:
            raise ValueError("Training needs a train split: set datasource.train (the solver found none).")
        self.updates_per_epoch = int(cfg.optim.updates_per_epoch or len(self.dataloaders.get("train", ())))
        self.total_updates = self.updates_per_epoch * int(cfg.optim.epochs)
        self.build_model()
        if "model" not in self._stateful:
            raise RuntimeError(f"{type(self).__name__}.build_model must create self.model and call "
                               "self.register_stateful('model', ...).")
        if self.optimizer is not None:
            self.lr_scheduler = builders.get_lr_scheduler(self.optimizer, cfg.schedule, self.total_updates)
            if self.lr_scheduler is not None:
                self.register_stateful("lr_scheduler")
        if self.autocast_enabled and self.autocast_dtype == torch.float16 and self.device.type == "cuda":
            self.scaler = torch.amp.GradScaler("cuda")
            self.register_stateful("scaler")
        self._init_ema()
        self.best_state = {name: copy_state(getattr(self, name).state_dict()) for name in self._best_sources}
        self.result_logger = ResultLogger(
            self.folder, tensorboard=bool(cfg.logging.log_tensorboard), wandb=bool(cfg.logging.log_wandb),
            tensorboard_sub_dir=cfg.tensorboard.sub_dir, wandb_kwargs=builders.as_dict(cfg.wandb, "wandb"),
            run_id=self.folder.name, config=OmegaConf.to_container(cfg, resolve=False))
        size = sum(p.numel() for p in self.model.parameters() if p.requires_grad) / 1e6
        logger.info("%s: model with %.2f M trainable parameters on %s, %d updates per epoch, folder %s",
                    type(self).__name__, size, self.device, self.updates_per_epoch, self.folder)

    def _init_ema(self) -> None:
        ema_cfg = self.cfg.optim.ema
        if not ema_cfg.use or not self._ema_sources:
            self.ema = None
            return
        if not ema_cfg.updates or int(ema_cfg.updates) < 1:
            raise ValueError(f"optim.ema.updates must be a positive number of updates, got {ema_cfg.updates}.")
        device = torch.device(str(ema_cfg.device)) if ema_cfg.device else self.device
        if device.type == "cuda" and not torch.cuda.is_available():
            device = self.device
        self.ema = ModuleEMA({name: getattr(self, name) for name in self._ema_sources}, float(ema_cfg.decay), device)
        self.register_stateful("ema")

    # ------------------------------------------------------------------ running
    @property
    def is_training(self) -> bool:
        return self.current_stage == "train"

    @property
    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes, as configured (``autocast``, ``autocast_dtype``)."""
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_enabled)

    def run(self) -> None:
        """Train from the last checkpoint of the experiment folder (or from scratch / ``continue_from``)."""
        self.build()
        self.restore()
        try:
            while self.epoch <= int(self.cfg.optim.epochs):
                self.run_epoch()
                self.commit()
        finally:
            self.result_logger.close()

    def run_epoch(self) -> None:
        """All the stages of one epoch; metrics go to the pending history entry."""
        self.rng.manual_seed(int(self.cfg.seed) + self.epoch)
        self.run_stage("train", self.train)
        with torch.no_grad():
            if "valid" in self.dataloaders:
                with self.swap_ema_state():
                    self.run_stage("valid", self.valid)
                    self.update_best_state("valid")
            else:
                self.update_best_state(None)
            with self.swap_best_state():
                for stage, function in (("evaluate", self.evaluate), ("generate", self.generate)):
                    if self.should_run_stage(stage):
                        self.run_stage(stage, function)

    def run_one_stage(self, stage: str) -> None:
        """Run only ``stage`` (valid, evaluate or generate) with the best weights, e.g. for ``execute_only``."""
        functions = {"valid": self.valid, "evaluate": self.evaluate, "generate": self.generate}
        if stage not in functions:
            raise ValueError(f"execute_only must be one of {sorted(functions)}, got {stage!r}.")
        self.build()
        with torch.no_grad(), self.swap_best_state():
            self.run_stage(stage, functions[stage])
        if not self.cfg.execute_inplace:
            self.commit(save_checkpoints=False)

    def should_run_stage(self, stage: str) -> bool:
        """True at the last epoch and every ``<stage>.every`` epochs."""
        every = self.cfg[stage].get("every")
        return self.epoch == int(self.cfg.optim.epochs) or bool(every and self.epoch % int(every) == 0)

    def run_stage(self, stage: str, function) -> dict[str, float]:
        """Run ``function`` as stage ``stage``, log its metrics and keep them for the history."""
        self.current_stage = stage
        start = time.time()
        metrics = {key: to_float(value) for key, value in (function() or {}).items()}
        metrics["duration"] = time.time() - start
        self._pending[stage] = metrics
        self.result_logger.log_stage(stage, self.epoch, metrics)
        self.current_stage = None
        return metrics

    def train(self) -> dict[str, float]:
        return self.common_train_valid("train")

    def valid(self) -> dict[str, float]:
        return self.common_train_valid("valid")

    def set_model_mode(self, training: bool) -> None:
        """Put the model in train or eval mode for a train/valid loop (subclasses may keep parts in eval)."""
        self.model.train(training)

    def common_train_valid(self, split: str) -> dict[str, float]:
        """Loop over ``updates_per_epoch`` train batches (or the whole valid loader); returns averaged metrics."""
        training = split == "train"
        loader = self.dataloaders[split]
        self.set_model_mode(training)
        builders.set_loader_epoch(loader, self.epoch)
        total = self.updates_per_epoch if training else len(loader)
        average = Averager()
        self._step_in_epoch = 0
        progress = Progress(self._batches(loader, total), split, self.epoch, total, int(self.cfg.logging.log_updates))
        with self._deadlock_guard() as step_done:
            for batch in progress:
                metrics = self._train_step(batch) if training else self._valid_step(batch)
                progress.update(average.update(metrics))
                step_done()
        return distributed.average_metrics(average.value(), total)

    def _batches(self, loader, total: int) -> Iterator:
        """``total`` batches of ``loader``, starting it again if it is shorter."""
        if self.cfg.benchmark_no_load:
            batch = next(iter(loader))
            yield from (batch for _ in range(total))
            return
        done = 0
        while done < total:
            empty = True
            for batch in loader:
                empty = False
                yield batch
                done += 1
                if done >= total:
                    return
            if empty:
                raise ValueError(f"The {self.current_stage} loader is empty; check the dataset and batch size.")

    def _valid_step(self, batch: Any) -> dict[str, Any]:
        with self.autocast:
            return self.run_step(batch).metrics

    def _train_step(self, batch: Any) -> dict[str, Any]:
        with self.autocast:
            output = self.run_step(batch)
        metrics = dict(output.metrics)
        if output.loss is not None:
            if self.scaler is None and not torch.isfinite(output.loss):
                raise FloatingPointError(f"Non-finite training loss ({output.loss.item()}) at epoch {self.epoch}; "
                                         "lower optim.lr, enable gradient clipping (optim.max_norm) or check the data.")
            (self.scaler.scale(output.loss) if self.scaler is not None else output.loss).backward()
        if self.optimizer is not None:  # None: nothing to train (e.g. every part of a codec frozen)
            metrics.update(self._optimizer_step())
        self._step_in_epoch += 1
        if self.ema is not None and self._step_in_epoch % int(self.cfg.optim.ema.updates) == 0:
            self.ema.step()
        return metrics

    def _optimizer_step(self) -> dict[str, float]:
        """Average gradients over processes, unscale, clip, step, schedule; sync buffers."""
        optimizer = self.optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        metrics = {"lr": optimizer.param_groups[0]["lr"]}
        distributed.average_gradients(params)
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if self.cfg.optim.get("max_norm"):
            metrics["grad_norm"] = to_float(torch.nn.utils.clip_grad_norm_(params, float(self.cfg.optim.max_norm)))
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        if self._fresh_start:  # first update of a new run: rank 0's buffers (e.g. k-means codebooks) win
            distributed.broadcast_module(self.model)
        else:
            distributed.average_buffers(self.model)
        self._fresh_start = False
        return metrics

    @contextlib.contextmanager
    def _deadlock_guard(self):
        """With ``deadlock.use``: dump every thread's stack and exit if one step takes over ``deadlock.timeout`` s."""
        if not self.cfg.deadlock.use:
            yield lambda: None
            return
        timeout = float(self.cfg.deadlock.timeout)
        faulthandler.dump_traceback_later(timeout, exit=True)
        try:
            yield lambda: faulthandler.dump_traceback_later(timeout, exit=True)
        finally:
            faulthandler.cancel_dump_traceback_later()

    # ------------------------------------------------------------------ best state and EMA
    def update_best_state(self, stage: str | None) -> None:
        """Copy the current weights of the best-state modules if the stage's best metric improved."""
        name = self.best_metric_name
        if name is not None and stage is not None:
            metrics = self._pending.get(stage, {})
            if name not in metrics:
                raise ValueError(f"Best metric {name!r} is not among the {stage} metrics {sorted(metrics)}; "
                                 "set checkpoint.best_metric to one of them.")
            previous = [past[stage][name] for past in self.history if name in past.get(stage, {})]
            if previous and metrics[name] > min(previous):
                return
            logger.info("New best state: %s %s=%.4g", stage, name, metrics[name])
        for source in self._best_sources:
            self.best_state[source] = copy_state(getattr(self, source).state_dict())

    @contextlib.contextmanager
    def swap_ema_state(self):
        """Temporarily put the EMA weights in the EMA modules (no-op without EMA)."""
        if self.ema is None:
            yield
            return
        with self._swapped(self.ema.state):
            yield

    @contextlib.contextmanager
    def swap_best_state(self):
        """Temporarily put the best weights in the best-state modules."""
        with self._swapped(self.best_state):
            yield

    @contextlib.contextmanager
    def _swapped(self, states: Mapping[str, Mapping[str, torch.Tensor]]):
        with swapped_weights({name: getattr(self, name) for name in states}, states):
            yield

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, name: str | int | None = None) -> Path:
        return self.folder / checkpoint.checkpoint_name(name)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: registered states, best state, history, RNG, config."""
        state = {name: getattr(self, name).state_dict() for name in self._stateful}
        state.update({"best_state": self.best_state, "history": self.history, "rng": checkpoint.capture_rng_state(),
                      "xp.cfg": OmegaConf.to_yaml(self.cfg, resolve=True), "xp.sig": self.folder.name,
                      "version": __version__})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in self._stateful:
            if name in state:
                getattr(self, name).load_state_dict(state[name])
        if "best_state" in state:
            self.best_state = {name: copy_state(value) for name, value in state["best_state"].items()}
        if "history" in state:
            self.history = list(state["history"])
            self.epoch = len(self.history) + 1
        if "rng" in state:
            checkpoint.restore_rng_state(state["rng"])
        self._fresh_start = False

    def save_checkpoints(self) -> None:
        """Write ``checkpoint.th`` (and ``checkpoint_<epoch>.th`` every ``checkpoint.save_every`` epochs), rank 0."""
        if not distributed.is_rank_zero():
            return
        ckpt_cfg = self.cfg.checkpoint
        state = self.state_dict()
        epoch = self.epoch - 1
        if ckpt_cfg.save_every and epoch % int(ckpt_cfg.save_every) == 0:
            keep = ckpt_cfg.keep_every_states
            minimal = {key: value for key, value in state.items() if key in keep} if keep else state
            checkpoint.save_checkpoint(minimal, self.checkpoint_path(epoch))
        if ckpt_cfg.save_last:
            checkpoint.save_checkpoint(state, self.checkpoint_path())
        checkpoint.flush_stale_checkpoints(self.folder, ckpt_cfg.keep_last)

    def commit(self, save_checkpoints: bool = True) -> None:
        """Close the epoch: append its metrics to the history, save checkpoints, update ``history.json``."""
        self.history.append(self._pending)
        self._pending = {}
        self.epoch += 1
        if save_checkpoints:
            self.save_checkpoints()
        write_history(self.folder, self.history)
        distributed.barrier()

    def restore(self, load_best: bool = False, ignore_state_keys: Sequence[str] = ()) -> bool:
        """Load the experiment's ``checkpoint.th``, or else the best weights of ``continue_from``.

        Args:
            load_best: also replace the current weights by the best ones (always done for ``continue_from``).
            ignore_state_keys: states not to load, e.g. ``['optimizer']``.
        Returns:
            True if a state was loaded.
        """
        self.build()
        state = None
        if self.checkpoint_path().exists():
            logger.info("Resuming from %s", self.checkpoint_path())
            state = checkpoint.load_checkpoint(self.checkpoint_path())
        elif self.cfg.continue_from:
            state = {"best_state": self._continue_from_best_state(str(self.cfg.continue_from))}
            load_best = True
        if state is not None:
            state = {key: value for key, value in state.items() if key not in set(ignore_state_keys)}
            self.load_state_dict(state)
            if load_best:
                missing = [name for name in self._best_sources if name not in self.best_state]
                if missing:
                    raise ValueError(f"The loaded best state has no {missing} (it has {sorted(self.best_state)}); "
                                     "was it written by another kind of solver?")
                for name in self._best_sources:
                    getattr(self, name).load_state_dict(self.best_state[name])
                self._init_ema()
        for name in self._stateful:
            if isinstance(getattr(self, name), nn.Module):
                distributed.broadcast_module(getattr(self, name))
        return state is not None

    def _continue_from_best_state(self, source: str) -> dict:
        if source.startswith(checkpoint.PRETRAINED_PREFIX):
            logger.info("Starting from pretrained model %s", source)
            return self.load_from_pretrained(source[len(checkpoint.PRETRAINED_PREFIX):])["best_state"]
        path = checkpoint.resolve_checkpoint_path(source)
        logger.info("Starting from the best state of %s", path)
        other = checkpoint.load_checkpoint(path, trust_pickle=True)
        if other.get("exported"):
            return {"model": other["best_state"]}
        if not other.get("best_state"):
            raise ValueError(f"continue_from={source!r}: {str(path)!r} has no best_state to start from.")
        return other["best_state"]


# ============================================================================ helpers

def _dora_xp_folder() -> Path:
    try:
        from dora import get_xp
        return Path(get_xp().folder)
    except (ImportError, RuntimeError) as exc:
        raise ValueError("The solver needs an experiment folder: run it through Dora (dora run / python -m "
                         "audiocraft.train) or pass folder=<path>.") from exc
