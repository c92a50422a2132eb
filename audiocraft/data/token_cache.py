"""A cache of the compression model's codes for LM training: encode once, train many epochs.

Training MusicGen runs the frozen codec on every training segment. With a cache, the codes of
every segment of an epoch (and the segment's text attributes) are written to disk the first
time; later epochs read them back and skip the audio decoding, resampling and the codec.

Layout of ``<cache path>``::

    cache.json                 what the codes depend on (codec, sample rate, segment length, data)
    epoch_00001/
        0000000000.pt          one file per written batch: {'codes': int16/int32 [B, K, T],
        0000000004.pt           'text': [attribute dicts], 'n_frames': [...], 'sample_rate': int,
        ...                     'path': [...], 'seek_time': [...]}, named by the global position
        done.json              of its first item; done.json marks a complete epoch ({'num_items': N})

Positions are global over processes: update ``u`` of process ``r`` among ``W`` processes with
``b`` items each covers positions ``[(u * W + r) * b, (u * W + r + 1) * b)``, so the cache is read
back in the same order by any number of processes (the same batches when W and b are unchanged).

Only text attributes are kept: models conditioned on audio (e.g. melody chroma) cannot train
from the cache. Training epoch ``e`` reads cached epoch ``e`` if it is complete, otherwise
cycles over the complete ones (:meth:`TokenCache.source_epoch`).
"""
from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..modules.conditioners import ConditioningAttributes

__all__ = ["TokenBatch", "TokenCache", "TokenCacheDataset", "CACHE_VERSION", "identity_collate"]

CACHE_VERSION = 1
_INFO_FILE = "cache.json"
_DONE_FILE = "done.json"


@dataclass
class TokenBatch:
    """A training batch read from the cache.

    Attributes:
        codes: [B, K, T] long codes of the segments.
        attributes: B conditioning attributes (text only).
        n_frames: B numbers of real (not padded) audio samples per segment, at ``sample_rate``.
        sample_rate: sample rate of the segments, in Hz.
    """
    codes: torch.Tensor
    attributes: list[ConditioningAttributes]
    n_frames: list[int]
    sample_rate: int

    def __len__(self) -> int:
        return self.codes.shape[0]


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class TokenCache:
    """The cache folder ``path`` for the codes described by ``signature``.

    Args:
        path: cache folder (created when writing).
        signature: JSON-able description of what the codes depend on (codec, sample rate, frame
            rate, number of codebooks, segment duration, data...). A folder written with another
            signature is refused, so a stale cache is never read by mistake.
        codebook_prefix: the codes of ``signature['num_codebooks']`` codebooks are the first ones of
            a residual quantizer with more (the codec's ``set_num_codebooks``). A cache written with
            more codebooks, and otherwise the same signature, is then read, keeping the first ones;
            it cannot be written to (:attr:`read_only`).
    Raises:
        ValueError: the folder holds a cache written with another signature or format version.
    """

    def __init__(self, path: str | os.PathLike, signature: Mapping[str, Any], codebook_prefix: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.signature = {"version": CACHE_VERSION, **json.loads(json.dumps(dict(signature)))}
        self.num_codebooks: int | None = None  # codebooks kept when reading; None: all of them
        info = self.path / _INFO_FILE
        if info.is_file():
            stored = json.loads(info.read_text(encoding="utf-8"))
            different = {key: (stored.get(key), value) for key, value in self.signature.items()
                         if stored.get(key) != value}
            wanted, written = self.signature.get("num_codebooks"), stored.get("num_codebooks")
            if (codebook_prefix and set(different) == {"num_codebooks"} and isinstance(wanted, int)
                    and isinstance(written, int) and 0 < wanted < written):
                self.num_codebooks, different = wanted, {}
            if different:
                details = "; ".join(f"{key}: cache {a!r} vs this run {b!r}" for key, (a, b) in different.items())
                raise ValueError(f"The token cache {str(self.path)!r} (config `cache.path`) was written for other "
                                 f"settings ({details}). Use another cache.path, or delete that folder to rebuild it.")

    @property
    def read_only(self) -> bool:
        """The cache holds more codebooks than this run uses: it is read, never written."""
        return self.num_codebooks is not None

    # ------------------------------------------------------------------ epochs
    def epoch_folder(self, epoch: int) -> Path:
        return self.path / f"epoch_{int(epoch):05d}"

    def complete_epochs(self) -> list[int]:
        """Epochs whose codes are completely written, in increasing order."""
        if not self.path.is_dir():
            return []
        epochs = []
        for folder in self.path.glob("epoch_*"):
            if (folder / _DONE_FILE).is_file() and folder.name[6:].isdigit():
                epochs.append(int(folder.name[6:]))
        return sorted(epochs)

    def is_complete(self, epoch: int) -> bool:
        return (self.epoch_folder(epoch) / _DONE_FILE).is_file()

    def source_epoch(self, epoch: int) -> int:
        """The cached epoch that training epoch ``epoch`` reads: itself if complete, else the complete
        epochs in turn (``complete[(epoch - 1) % len(complete)]``).

        Raises:
            FileNotFoundError: the cache has no complete epoch.
        """
        complete = self.complete_epochs()
        if not complete:
            raise FileNotFoundError(f"The token cache {str(self.path)!r} (config `cache.path`) holds no complete "
                                    "epoch. Write it first by training with cache.write=true, or point cache.path to "
                                    "a written cache.")
        return epoch if epoch in complete else complete[(epoch - 1) % len(complete)]

    # ------------------------------------------------------------------ writing
    def write_batch(self, epoch: int, position: int, codes: torch.Tensor,
                    attributes: Sequence[ConditioningAttributes], n_frames: Sequence[int], sample_rate: int,
                    paths: Sequence[str | None] = (), seek_times: Sequence[float | None] = ()) -> Path:
        """Write the codes [B, K, T] of B segments starting at global ``position`` of ``epoch``.

        ``attributes`` are the segments' conditioning attributes (their text part is kept);
        ``n_frames`` the real audio samples of each segment; ``paths``/``seek_times`` are informative.
        """
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.is_floating_point():
            got = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"TokenCache.write_batch: `codes` must be an integer tensor [B, K, T], got {got}.")
        if self.read_only:
            raise ValueError(f"The token cache {str(self.path)!r} holds more codebooks than this run's "
                             f"{self.num_codebooks}: it can be read, not written. Lower cache.num_epochs to its "
                             f"complete epochs {self.complete_epochs()}, or use another cache.path.")
        batch = codes.shape[0]
        if len(attributes) != batch or len(n_frames) != batch:
            raise ValueError(f"TokenCache.write_batch: {batch} segments but {len(attributes)} attributes and "
                             f"{len(n_frames)} n_frames; give one of each per segment.")
        self.path.mkdir(parents=True, exist_ok=True)
        info = self.path / _INFO_FILE
        if not info.is_file():
            _atomic_write_text(info, json.dumps(self.signature, indent=2))
        folder = self.epoch_folder(epoch)
        folder.mkdir(exist_ok=True)
        small = codes.numel() == 0 or int(codes.max()) < 2 ** 15
        package = {
            "codes": codes.detach().to("cpu", torch.int16 if small else torch.int32),
            "text": [dict(attr.text) for attr in attributes],
            "n_frames": [int(n) for n in n_frames],
            "sample_rate": int(sample_rate),
            "path": [None if p is None else str(p) for p in paths] or [None] * batch,
            "seek_time": [None if s is None else float(s) for s in seek_times] or [None] * batch,
        }
        path = folder / f"{int(position):010d}.pt"
        _atomic_torch_save(package, path)
        return path

    def finish_epoch(self, epoch: int, num_items: int) -> None:
        """Mark ``epoch`` complete with ``num_items`` segments (call once, after every process wrote)."""
        folder = self.epoch_folder(epoch)
        found = sum(1 for _ in folder.glob("*.pt")) if folder.is_dir() else 0
        if found == 0:
            raise RuntimeError(f"TokenCache.finish_epoch: nothing was written for epoch {epoch} in {str(folder)!r}.")
        _atomic_write_text(folder / _DONE_FILE, json.dumps({"num_items": int(num_items)}))

    # ------------------------------------------------------------------ reading
    def num_items(self, epoch: int) -> int:
        return int(json.loads((self.epoch_folder(epoch) / _DONE_FILE).read_text(encoding="utf-8"))["num_items"])


class TokenCacheDataset(torch.utils.data.Dataset):
    """The batches of one process over a cached epoch: item ``u`` is the :class:`TokenBatch` of update ``u``.

    Use it with ``DataLoader(dataset, batch_size=None)``; call :meth:`set_epoch` before each epoch
    (the training loop does, through ``builders.set_loader_epoch``).

    Args:
        cache: the cache to read.
        batch_size: segments per batch for this process.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, cache: TokenCache, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"TokenCacheDataset: `batch_size` must be a positive int, got {batch_size!r}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"TokenCacheDataset: `rank` must be in [0, {world_size}), got {rank}.")
        self.cache = cache
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.epoch: int | None = None
        self._starts: list[int] = []
        self._files: list[Path] = []
        self._num_items = 0
        self._loaded: tuple[int, dict] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Read the cached epoch that training epoch ``epoch`` maps to (see :meth:`TokenCache.source_epoch`)."""
        source = self.cache.source_epoch(epoch)
        folder = self.cache.epoch_folder(source)
        files = sorted(folder.glob("*.pt"), key=lambda p: int(p.stem))
        self.epoch = source
        self._files = files
        self._starts = [int(p.stem) for p in files]
        self._num_items = self.cache.num_items(source)
        self._loaded = None
        if len(self) == 0:
            raise ValueError(f"The cached epoch {str(folder)!r} has {self._num_items} segments, fewer than one batch "
                             f"of {self.batch_size} per process x {self.world_size} processes; lower "
                             "dataset.batch_size or rewrite the cache.")

    def __len__(self) -> int:
        return self._num_items // (self.batch_size * self.world_size)

    def _file(self, index: int) -> dict:
        if self._loaded is None or self._loaded[0] != index:
            self._loaded = (index, torch.load(self._files[index], map_location="cpu", weights_only=True))
        return self._loaded[1]

    def _item(self, position: int) -> tuple[torch.Tensor, dict, int, int]:
        index = bisect.bisect_right(self._starts, position) - 1
        if index < 0:
            raise RuntimeError(f"Token cache epoch {self.epoch}: no file holds segment {position}; the cache is "
                               "incomplete, delete the epoch folder to rewrite it.")
        package = self._file(index)
        offset = position - self._starts[index]
        if offset >= package["codes"].shape[0]:
            raise RuntimeError(f"Token cache epoch {self.epoch}: segment {position} is missing (file "
                               f"{self._files[index].name} holds {package['codes'].shape[0]}); delete the epoch "
                               "folder to rewrite it.")
        codes = package["codes"][offset]
        if self.cache.num_codebooks is not None:
            codes = codes[:self.cache.num_codebooks]
        return codes, package["text"][offset], package["n_frames"][offset], package["sample_rate"]

    def __getitem__(self, update: int) -> TokenBatch:
        if self.epoch is None:
            raise RuntimeError("TokenCacheDataset: call set_epoch(epoch) before reading batches.")
        if not 0 <= update < len(self):
            raise IndexError(f"TokenCacheDataset: batch {update} out of range for {len(self)} batches.")
        first = (update * self.world_size + self.rank) * self.batch_size
        items = [self._item(position) for position in range(first, first + self.batch_size)]
        rates = {rate for *_, rate in items}
        if len(rates) != 1:
            raise RuntimeError(f"Token cache epoch {self.epoch}: segments at several sample rates {sorted(rates)}.")
        return TokenBatch(codes=torch.stack([codes for codes, *_ in items]).long(),
                          attributes=[ConditioningAttributes(text=dict(text)) for _, text, _, _ in items],
                          n_frames=[int(n) for _, _, n, _ in items], sample_rate=rates.pop())


def identity_collate(batch: Any) -> Any:
    """``collate_fn`` for ``DataLoader(TokenCacheDataset, batch_size=None)``: batches are already built."""
    return batch
