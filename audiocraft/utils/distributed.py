"""Data-parallel training helpers over ``torch.distributed`` (NCCL on GPUs, gloo on CPU).

Models never call these: the training loop (:mod:`audiocraft.solvers.base`) averages
gradients after ``backward``, averages buffers after each step, averages metrics, and
shards the data with :class:`ShardedSampler`. Everything degrades to a no-op in a single
process, so the same code runs with and without ``torchrun`` / ``dora run -d``.

The process group is initialised by :func:`init` from the usual environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) that
``torchrun``, ``dora run -d`` and Dora's Slurm launcher set.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


_process_rank = rank  # for code where a local variable is named `rank`


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_rank_zero() -> bool:
    """True on the process that writes checkpoints, logs and history."""
    return rank() == 0


def init(device: str | torch.device = "cpu") -> None:
    """Start the process group if the environment asks for more than one process.

    The backend is NCCL when ``device`` is a CUDA device, gloo otherwise. Inside a Dora
    experiment Dora's own initialisation is used (it also knows Slurm's variables).
    Calling it again, or with ``WORLD_SIZE`` unset or 1, does nothing.
    """
    if not dist.is_available() or dist.is_initialized():
        return
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        from dora import distrib as dora_distrib, is_xp
    except ImportError:
        dora_distrib, in_xp = None, False
    else:
        in_xp = is_xp()
    if dora_distrib is not None and in_xp:
        spec = dora_distrib.get_distrib_spec()
        if spec.world_size > 1 and device.type == "cuda":
            torch.cuda.set_device(spec.local_rank)
        dora_distrib.init(backend=backend)
    else:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, init_method="env://")
    if dist.is_initialized():
        logger.info("Distributed training: rank %d of %d (%s backend).", rank(), world_size(), backend)


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def _flat_all_reduce(tensors: list[torch.Tensor], average: bool) -> None:
    """Sum (or average) ``tensors`` over all processes in place, one collective per dtype/device."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if average:
            flat /= world_size()
        offset = 0
        for tensor in group:
            tensor.copy_(flat[offset: offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the ``.grad`` of ``params`` over all processes (parameters without grad are skipped).

    Every process must hold gradients for the same parameters.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        _flat_all_reduce([g.data for g in grads], average=True)


def average_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers of ``module`` (e.g. codebook statistics) over all processes."""
    if not is_distributed():
        return
    buffers = [b.data for b in module.buffers() if b.is_floating_point()]
    if buffers:
        _flat_all_reduce(buffers, average=True)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy the parameters and buffers of process ``src`` to every process."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)


def average_metrics(metrics: Mapping[str, float], count: float = 1.0) -> dict[str, float]:
    """Average scalar ``metrics`` over processes, each weighted by its ``count`` (e.g. batches seen)."""
    metrics = {key: float(value) for key, value in metrics.items()}
    if not is_distributed():
        return metrics
    keys = sorted(metrics)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    values = torch.tensor([metrics[k] * count for k in keys] + [count], dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    total = values[-1].item()
    return {key: (values[i].item() / total if total else 0.0) for i, key in enumerate(keys)}


class ShardedSampler(torch.utils.data.Sampler[int]):
    """Deterministic, per-epoch order of ``length`` items, split between processes.

    The order of epoch ``e`` is ``randperm(length)`` seeded with ``seed + e`` when ``shuffle``
    (``range(length)`` otherwise); process ``r`` of ``n`` takes positions ``r, r + n, r + 2n, ...``.
    Each process gets ``length // n`` items (``drop_last``) or ``ceil(length / n)`` items,
    wrapping around, so that every process runs the same number of steps.

    Args:
        length: number of items of the dataset.
        shuffle: permute the items at every epoch.
        seed: base seed of the permutations.
        num_replicas, rank: process count and index; default: from the process group.
        drop_last: drop the tail that does not divide evenly instead of repeating items.
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None, drop_last: bool = False) -> None:
        if length < 1:
            raise ValueError(f"ShardedSampler: `length` must be >= 1, got {length}; the dataset is empty.")
        self.length = int(length)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_replicas = world_size() if num_replicas is None else int(num_replicas)
        self.rank = _process_rank() if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"ShardedSampler: `rank` must be in [0, {self.num_replicas}), got {self.rank}.")
        if drop_last and self.length < self.num_replicas:
            raise ValueError(f"ShardedSampler: {self.length} items cannot feed {self.num_replicas} processes "
                             "with drop_last=True; use more samples or fewer processes.")
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.length // self.num_replicas
        return -(-self.length // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        total = len(self) * self.num_replicas
        if total > len(order):
            order = (order * (total // len(order) + 1))[:total]
        return iter(order[self.rank:total:self.num_replicas])
