"""Where the training config meets constructors: solvers, optimizers, schedules, losses, data.

Each registry maps a config name to an import path, imported only when used, so adding a
solver, loss or discriminator is one line and a missing one gives an error naming it.
"""
from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..utils import distributed

if TYPE_CHECKING:
    from .base import StandardSolver

logger = logging.getLogger(__name__)

#: ``solver`` config value -> solver class.
SOLVERS: dict[str, str] = {
    "compression": "audiocraft.solvers.compression.CompressionSolver",
    "musicgen": "audiocraft.solvers.musicgen.MusicGenSolver",
    "lm": "audiocraft.solvers.musicgen.MusicGenSolver",  # AudioCraft's alias
}
#: ``losses`` / ``adversarial.feat_loss`` names -> loss class (constructor arguments from the section of that name).
LOSSES: dict[str, str] = {
    "l1": "torch.nn.L1Loss",
    "l2": "torch.nn.MSELoss",
    "mel": "audiocraft.losses.MelSpectrogramL1Loss",
    "msspec": "audiocraft.losses.MultiScaleMelSpectrogramLoss",
    "sisnr": "audiocraft.losses.SISNR",
    "mrstft": "audiocraft.losses.MRSTFTLoss",
}
#: ``adversarial.adversaries`` names -> discriminator class (arguments from the section of that name).
ADVERSARIES: dict[str, str] = {
    "msstftd": "audiocraft.adversarial.MultiScaleSTFTDiscriminator",
    "msd": "audiocraft.adversarial.MultiScaleDiscriminator",
    "mpd": "audiocraft.adversarial.MultiPeriodDiscriminator",
}
#: dataset kinds -> dataset class with a ``from_meta(path, **kwargs)`` constructor.
DATASETS: dict[str, str] = {
    "audio": "audiocraft.data.info_audio_dataset.InfoAudioDataset",
    "music": "audiocraft.data.music_dataset.MusicDataset",
    "sound": "audiocraft.data.sound_dataset.SoundDataset",
}
SPLITS = ("train", "valid", "evaluate", "generate")


def import_object(path: str, what: str) -> Any:
    """Import ``'package.module.Name'``; ``what`` names the thing in the error message."""
    module_name, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"{what} needs {path}, which cannot be imported ({exc}). It is not available in this "
                          "installation; pick another option or install the missing part.") from exc
    try:
        return getattr(module, name)
    except AttributeError as exc:
        raise ImportError(f"{what} needs {path}, but {module_name} has no {name!r}.") from exc


def as_dict(cfg: Any, what: str) -> dict:
    """A plain, resolved ``dict`` copy of a config section (``None`` -> ``{}``)."""
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(f"Config section `{what}` must be a mapping, got {type(cfg).__name__}.")


# ============================================================================ solvers

def grown_state(kept: Mapping[str, torch.Tensor], fresh: Mapping[str, torch.Tensor], index_of, option: str,
                 count_hint: str, shape_hint: str, added=lambda key, value: value) -> tuple[dict, int, int]:
    """A state of this config's model (``fresh``) that takes everything from ``kept`` (a model with fewer
    numbered parts: codebooks) and only the added parts from ``fresh``, through ``added(key, value)``.

    ``index_of(key)`` is the part number of a key, or None for the keys shared by all. Returns
    ``(state, kept count, new count)``; raises a ValueError naming ``option`` and the hints when ``kept`` has no
    fewer parts, or does not match ``fresh`` elsewhere.
    """
    have = len({index_of(key) for key in kept} - {None})
    want = len({index_of(key) for key in fresh} - {None})
    if not 0 < have < want:
        raise ValueError(f"{option}: the model to continue has {have} codebooks and this config {want}; "
                         f"{count_hint} larger than {have} (the kept codebooks come first, the new ones after).")
    state = {}
    for key in sorted(set(kept) | set(fresh)):
        index = index_of(key)
        if key in fresh and index is not None and index >= have:
            state[key] = added(key, fresh[key])
        elif key in fresh and key in kept and kept[key].shape == fresh[key].shape:
            state[key] = kept[key]
        else:
            raise ValueError(f"{option}: the model to continue does not match this config at {key}; {shape_hint}")
    return state, have, want


def get_solver(cfg: DictConfig, folder: str | Path | None = None) -> "StandardSolver":
    """Instantiate the solver named by ``cfg.solver`` (not built yet: ``run()`` / ``restore()`` build it).

    Args:
        cfg: the full training config.
        folder: experiment folder; default: the folder of the current Dora experiment.
    """
    kind = cfg.get("solver")
    if kind not in SOLVERS:
        raise ValueError(f"Unknown solver {kind!r} (config key `solver`); available solvers: {sorted(SOLVERS)}. "
                         "Pick a solver config with solver=<family>/<name>, e.g. solver=compression/debug.")
    klass = import_object(SOLVERS[kind], f"solver={kind!r}")
    return klass(cfg, folder=folder)


# ============================================================================ device and precision

def get_device(device: str) -> torch.device:
    """The torch device of config key ``device``; CUDA must be available when asked for."""
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"`device`={device!r} is not a torch device; use cpu or cuda.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device`='cuda' but CUDA is not available on this machine; run with device=cpu.")
    return resolved


def get_autocast(cfg: DictConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    """(enabled, dtype): bf16 or fp16 on CUDA; on CPU only bf16 (fp16 autocast is turned off with a warning)."""
    name = str(cfg.autocast_dtype)
    dtype = getattr(torch, name, None)
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"`autocast_dtype` must be float16 or bfloat16, got {name!r}.")
    enabled = bool(cfg.autocast)
    if enabled and device.type == "cpu" and dtype == torch.float16:
        logger.warning("autocast with float16 is not supported on CPU; running in float32 "
                       "(use autocast_dtype=bfloat16 for mixed precision on CPU).")
        enabled = False
    return enabled, dtype


# ============================================================================ optimization

def _adam(params, lr: float, **kwargs) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, **kwargs)


def _adamw(params, lr: float, **kwargs) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, **kwargs)


def _dadam(params, lr: float, **kwargs) -> torch.optim.Optimizer:
    from ..optim import DAdaptAdam
    return DAdaptAdam(params, lr=lr, **kwargs)


#: ``optim.optimizer`` names -> factory ``(params, lr, **optim.adam) -> Optimizer``.
OPTIMIZERS: dict[str, Any] = {"adam": _adam, "adamw": _adamw, "dadam": _dadam}


def get_optim_parameter_groups(model: nn.Module) -> list[dict]:
    """Parameter groups: one per submodule defining ``make_optim_group()`` (e.g. its own lr), plus the rest."""
    seen: set[int] = set()
    groups = []
    for module in model.modules():
        if hasattr(module, "make_optim_group"):
            group = module.make_optim_group()
            ids = {id(p) for p in group["params"]}
            if ids & seen:
                raise ValueError(f"{type(module).__name__}.make_optim_group() returns parameters already in "
                                 "another group; each parameter can be in one group only.")
            seen |= ids
            groups.append(group)
    rest = [p for p in model.parameters() if id(p) not in seen]
    return [{"params": rest}] + groups


def get_optimizer(params: nn.Module | Iterable[torch.Tensor], optim_cfg: Any) -> torch.optim.Optimizer:
    """Optimizer ``optim_cfg.optimizer`` with learning rate ``optim_cfg.lr`` and the options of ``optim_cfg.adam``."""
    optim_cfg = as_dict(optim_cfg, "optim")
    name = optim_cfg.get("optimizer")
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r} (config key `optim.optimizer`); available: {sorted(OPTIMIZERS)}. "
                         "Set e.g. optim.optimizer=adamw.")
    parameters = get_optim_parameter_groups(params) if isinstance(params, nn.Module) else list(params)
    return OPTIMIZERS[name](parameters, lr=float(optim_cfg["lr"]), **optim_cfg.get("adam", {}))


class _Schedule:
    """Learning rate as a function of the update index, for ``LambdaLR`` (saved with its attributes)."""

    def __init__(self, kind: str, base_lr: float, total: int, warmup: int = 0, **options: float) -> None:
        self.kind = kind
        self.base_lr = float(base_lr)
        self.total = int(total)
        self.warmup = int(warmup or 0)
        self.options = {key: float(value) for key, value in options.items()}

    def lr(self, step: int) -> float:
        base, warmup, total, opt = self.base_lr, self.warmup, self.total, self.options
        if self.kind == "cosine":
            if step < warmup:
                return base * step / warmup
            low = opt["lr_min_ratio"]
            if step > total or total <= warmup:
                return base * low
            progress = (step - warmup) / (total - warmup)
            return base * (low + 0.5 * (1 - low) * (1 + math.cos(math.pi * progress / opt["cycle_length"])))
        if self.kind == "polynomial_decay":
            zero, end = int(opt["zero_lr_warmup_steps"]), opt["end_lr"]
            if zero > 0 and step <= zero:
                return 0.0
            if warmup > 0 and step <= warmup + zero:
                return base * (step - zero) / warmup
            if step >= total:
                return end
            start = warmup + zero
            remaining = 1 - (step - start) / (total - start)
            return (base - end) * remaining ** opt["power"] + end
        initial = opt["warmup_init_lr"]
        if step < warmup:
            return initial + step * (base - initial) / warmup
        if self.kind == "inverse_sqrt":
            return base * math.sqrt(max(warmup, 1)) / math.sqrt(max(step, 1))
        return base  # linear_warmup, after the warm-up

    def __call__(self, step: int) -> float:
        return self.lr(step) / self.base_lr if self.base_lr else 0.0


def get_lr_scheduler(optimizer: torch.optim.Optimizer, schedule_cfg: Any,
                     total_updates: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Learning-rate schedule ``schedule_cfg.lr_scheduler`` (None: constant), stepped after every update.

    ``step`` and ``exponential`` are torch's StepLR / ExponentialLR; ``cosine`` (warm-up then cosine
    decay to ``lr_min_ratio * lr`` over ``total_updates``), ``polynomial_decay``, ``inverse_sqrt`` and
    ``linear_warmup`` follow AudioCraft's schedules.
    """
    schedule_cfg = as_dict(schedule_cfg, "schedule")
    kind = schedule_cfg.get("lr_scheduler")
    if kind is None:
        return None
    options = dict(schedule_cfg.get(kind) or {}) if kind in schedule_cfg else None
    if options is None:
        raise ValueError(f"Unknown learning-rate schedule {kind!r} (config key `schedule.lr_scheduler`); available: "
                         "step, exponential, cosine, polynomial_decay, inverse_sqrt, linear_warmup, or null.")
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=options["step_size"], gamma=options["gamma"])
    if kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=options["lr_decay"])
    warmup = options.pop("warmup", None) or 0
    if kind == "inverse_sqrt" and not warmup:
        raise ValueError("schedule.inverse_sqrt.warmup must be a positive number of updates.")
    schedules = [_Schedule(kind, group["lr"], total_updates, warmup, **options) for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedules)


# ============================================================================ losses

def get_loss(name: str, cfg: DictConfig) -> nn.Module:
    """Loss ``name`` built with the arguments of config section ``cfg[name]``."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r} (config `losses`); available: {sorted(LOSSES)}.")
    klass = import_object(LOSSES[name], f"loss {name!r}")
    kwargs = as_dict(cfg.get(name), name)
    try:
        return klass(**kwargs)
    except TypeError as exc:
        raise ValueError(f"Config section `{name}` does not match {LOSSES[name]}: {exc}.") from exc


def get_balancer(weights: Mapping[str, float], balancer_cfg: Any):
    """The loss :class:`~audiocraft.losses.Balancer` for ``weights`` with the options of ``balancer_cfg``.

    Its gradient-norm averages are averaged over processes in distributed training.
    """
    klass = import_object("audiocraft.losses.Balancer", "the loss balancer")
    return klass(dict(weights), **as_dict(balancer_cfg, "balancer"), average_norms=distributed.average_metrics)


def get_adversary(name: str, cfg: DictConfig) -> nn.Module:
    """Discriminator ``name`` built with the arguments of config section ``cfg[name]``."""
    if name not in ADVERSARIES:
        raise ValueError(f"Unknown adversary {name!r} (config `adversarial.adversaries`); "
                         f"available: {sorted(ADVERSARIES)}.")
    klass = import_object(ADVERSARIES[name], f"adversary {name!r}")
    return klass(**as_dict(cfg.get(name), name))


def get_adversarial_losses(cfg: DictConfig, device: torch.device) -> nn.ModuleDict:
    """The adversarial losses of ``cfg.adversarial``: name -> ``AdversarialLoss`` holding a discriminator
    (on ``device``) and its optimizer (built from ``cfg.optim``, like the generator's; its state is part
    of the module's state dict)."""
    adv_cfg = as_dict(cfg.adversarial, "adversarial")
    names = list(adv_cfg.get("adversaries") or [])
    losses = nn.ModuleDict()
    if not names:
        return losses
    adversarial = importlib.import_module("audiocraft.adversarial")
    loss_type = adv_cfg["adv_loss"]
    normalize = bool(adv_cfg.get("normalize", True))
    feat_name = adv_cfg.get("feat_loss")
    feat_loss = None
    if feat_name:
        if feat_name not in ("l1", "l2"):
            raise ValueError(f"adversarial.feat_loss must be 'l1', 'l2' or null, got {feat_name!r}.")
        feat_loss = adversarial.FeatureMatchingLoss(get_loss(feat_name, cfg), normalize)
    for name in names:
        adversary = get_adversary(name, cfg).to(device)
        optimizer = get_optimizer(adversary.parameters(), cfg.optim)
        losses[name] = adversarial.AdversarialLoss(
            adversary, optimizer, loss=adversarial.get_adv_criterion(loss_type),
            loss_real=adversarial.get_real_criterion(loss_type), loss_fake=adversarial.get_fake_criterion(loss_type),
            loss_feat=feat_loss, normalize=normalize)
    return losses


# ============================================================================ data

def per_process_batch_size(batch_size: int, key: str) -> int:
    """``batch_size`` (total over processes) divided by the world size; it must divide evenly."""
    world = distributed.world_size()
    if batch_size < 1 or batch_size % world:
        raise ValueError(f"`{key}`={batch_size} must be a positive multiple of the number of processes ({world}); "
                         f"it is the total batch size, split between processes.")
    return batch_size // world


def get_loader(dataset, batch_size: int, num_workers: int = 0, seed: int = 0, shuffle: bool = False,
               num_samples: int | None = None, collate_fn=None, drop_last: bool = False,
               mp_start_method: str | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader whose order is a function of (seed, epoch) and which is sharded over processes.

    Call ``loader.sampler.set_epoch(epoch)`` before each epoch. ``num_samples`` keeps a fixed random
    subset (seeded) when the dataset is larger. ``batch_size`` is per process.
    """
    if num_samples is not None and num_samples < len(dataset):
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_samples]
        dataset = torch.utils.data.Subset(dataset, keep.tolist())
    sampler = distributed.ShardedSampler(len(dataset), shuffle=shuffle, seed=seed, drop_last=drop_last)
    if drop_last and len(sampler) < batch_size:
        raise ValueError(f"Only {len(sampler)} training items per process for a batch size of {batch_size} per "
                         "process: raise `dataset.train.num_samples` (or the number of files) or lower "
                         "`dataset.batch_size`.")
    context = mp_start_method if num_workers > 0 else None
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                       collate_fn=collate_fn, drop_last=drop_last, multiprocessing_context=context)


def get_audio_datasets(cfg: DictConfig, dataset_type: str = "audio") -> dict[str, torch.utils.data.DataLoader]:
    """One DataLoader per split of ``cfg.datasource`` that names a manifest (splits set to null are skipped).

    Each split's options are ``cfg.dataset`` overridden by ``cfg.dataset[split]``; ``batch_size`` is the
    total over processes. With ``execute_only`` only that split is loaded.
    """
    if dataset_type not in DATASETS:
        raise ValueError(f"Unknown dataset type {dataset_type!r}; available: {sorted(DATASETS)}.")
    klass = import_object(DATASETS[dataset_type], f"{dataset_type} datasets")
    for split in SPLITS:
        if split in cfg.datasource and OmegaConf.is_missing(cfg.datasource, split):
            raise ValueError(f"datasource.{split} is not set (???): set it to a manifest folder with "
                             f"datasource.{split}=<folder>, or to null to skip that split, or pick a dataset "
                             "config with dset=audio/<name>.")
    dataset_cfg = as_dict(cfg.dataset, "dataset")
    split_cfgs = {split: dataset_cfg.pop(split, None) or {} for split in SPLITS}
    datasource = as_dict(cfg.datasource, "datasource")
    for key in ("max_sample_rate", "max_channels"):
        limit = datasource.get(key)
        value = cfg.sample_rate if key == "max_sample_rate" else cfg.channels
        if limit is not None and value > limit:
            raise ValueError(f"The solver works at {key[4:]}={value} but datasource.{key}={limit}: the data cannot "
                             f"provide it. Use a dataset with higher {key[4:]} or lower `{key[4:]}`.")
    only = cfg.get("execute_only")
    loaders = {}
    for split in SPLITS:
        path = datasource.get(split)
        if path is None or (only is not None and split != only):
            continue
        if not Path(path).exists():
            raise FileNotFoundError(
                f"datasource.{split}={path!r} does not exist (resolved to {str(Path(path).absolute())!r}). Make a "
                f"manifest with `python -m audiocraft.data.audio_dataset <audio folder> {path}/data.jsonl`, "
                "override datasource.<split>=<folder>, or pick another dataset with dset=audio/<name>.")
        kwargs = {**dataset_cfg, **split_cfgs[split]}
        batch_size = per_process_batch_size(int(kwargs.pop("batch_size")), f"dataset.{split}.batch_size"
                                            if "batch_size" in split_cfgs[split] else "dataset.batch_size")
        num_workers = int(kwargs.pop("num_workers"))
        return_info = bool(kwargs.pop("return_info"))
        if kwargs.get("permutation_on_files") and cfg.optim.updates_per_epoch:
            kwargs["num_samples"] = distributed.world_size() * batch_size * cfg.optim.updates_per_epoch
        kwargs.update(sample_rate=int(cfg.sample_rate), channels=int(cfg.channels), return_info=return_info)
        try:
            dataset = klass.from_meta(path, **kwargs)
        except TypeError as exc:
            raise ValueError(f"The options of dataset split {split!r} (config `dataset` and `dataset.{split}`) do not "
                             f"fit {DATASETS[dataset_type]}: {exc}.") from exc
        except ValueError as exc:
            raise ValueError(f"Dataset split {split!r} (datasource.{split}={path!r}, options from `dataset` and "
                             f"`dataset.{split}`): {exc}") from exc
        train = split == "train"
        loaders[split] = get_loader(dataset, batch_size, num_workers=num_workers, seed=int(cfg.seed),
                                    shuffle=bool(kwargs.get("shuffle", False)), num_samples=kwargs.get("num_samples"),
                                    collate_fn=dataset.collater, drop_last=train, mp_start_method=cfg.mp_start_method)
        logger.info("Split %s: %d items from %s, %d batches of %d per process.", split, len(dataset), path,
                    len(loaders[split]), batch_size)
    return loaders


def set_loader_epoch(loader, epoch: int) -> None:
    """Select the data of ``epoch``: sampler order and (for segment datasets) the segments drawn."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    dataset = loader.dataset
    dataset = getattr(dataset, "dataset", dataset)  # through a Subset
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
