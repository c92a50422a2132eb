"""Audio manifests: the list of audio files of a dataset, one JSON object per line.

A manifest (``data.jsonl``, optionally gzipped ``data.jsonl.gz``) holds :class:`AudioMeta`
records::

    {"path": "music/a.wav", "duration": 183.2, "sample_rate": 44100, "amplitude": null,
     "weight": null, "info_path": "music/a.json"}

Build one with ``python -m audiocraft.data.audio_dataset <root> <out>/data.jsonl[.gz]``.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .audio import audio_info, audio_read

logger = logging.getLogger(__name__)

#: Extensions (lower case) that :func:`find_audio_files` treats as audio.
DEFAULT_EXTS = [".wav", ".mp3", ".flac", ".ogg", ".m4a"]
_MANIFEST_NAMES = ("data.jsonl", "data.jsonl.gz")
_SUMMARY_PATHS = 10  # how many unreadable paths a warning lists


# --------------------------------------------------------------------------- records


@dataclass(order=True)
class BaseInfo:
    """A dataclass that converts to and from a plain dict (unknown keys are ignored)."""

    @classmethod
    def _known_fields(cls, dictionary: dict) -> dict:
        names = {f.name for f in fields(cls)}
        return {key: value for key, value in dictionary.items() if key in names}

    @classmethod
    def from_dict(cls, dictionary: dict):
        return cls(**cls._known_fields(dictionary))

    def to_dict(self) -> dict:
        """Shallow dict of the fields (nested dataclasses are kept as objects)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(order=True)
class AudioMeta(BaseInfo):
    """One manifest entry.

    Attributes:
        path: audio file path (absolute, or relative to the working directory).
        duration: length in seconds.
        sample_rate: file sample rate in Hz.
        amplitude: peak absolute sample value, only computed with ``--complete``.
        weight: relative sampling weight (None means 1); 0 means never sampled.
        info_path: metadata sidecar (``x.json`` next to ``x.wav``), or ``archive.zip:member``
            as in AudioCraft manifests; None if there is none.
    """
    path: str
    duration: float
    sample_rate: int
    amplitude: float | None = None
    weight: float | None = None
    info_path: str | None = None

    @classmethod
    def from_dict(cls, dictionary: dict) -> "AudioMeta":
        if not isinstance(dictionary, dict):
            raise TypeError(f"AudioMeta.from_dict: expected a dict, got {type(dictionary).__name__}.")
        missing = [key for key in ("path", "duration", "sample_rate") if key not in dictionary]
        if missing:
            raise ValueError(f"AudioMeta.from_dict: missing key(s) {missing} in {dictionary!r}; every manifest "
                             f"entry needs 'path', 'duration' (seconds) and 'sample_rate' (Hz). Rebuild the "
                             f"manifest with `python -m audiocraft.data.audio_dataset`.")
        values = cls._known_fields(dictionary)
        if values.get("info_path") is not None:
            values["info_path"] = str(values["info_path"])
        return cls(**values)

    def to_dict(self) -> dict:
        out = super().to_dict()
        if out["info_path"] is not None:
            out["info_path"] = str(out["info_path"])
        return out


@dataclass(order=True)
class SegmentInfo(BaseInfo):
    """Where a dataset item comes from, after resampling and channel conversion.

    Attributes:
        meta: the manifest entry of the source file.
        seek_time: start of the segment in the source file, in seconds.
        n_frames: number of real (not padded) samples in the item, at ``sample_rate``.
        total_frames: length of the item in samples, padding included.
        sample_rate: sample rate of the item in Hz (the dataset's, not the file's).
        channels: number of channels of the item.
    """
    meta: AudioMeta
    seek_time: float
    n_frames: int
    total_frames: int
    sample_rate: int
    channels: int


def padding_mask(infos: Sequence[SegmentInfo], length: int | None = None) -> torch.Tensor:
    """Boolean mask [B, T] of the real (not padded) samples of a collated batch.

    Args:
        infos: the infos of a batch, as returned by :meth:`AudioDataset.collater`.
        length: T, the batch length in samples; defaults to the largest ``total_frames``.
    Returns:
        ``mask[b, t]`` is True where ``t < infos[b].n_frames``.
    """
    if not infos:
        raise ValueError("padding_mask: `infos` is empty; pass the SegmentInfo list of a batch.")
    length = max(info.total_frames for info in infos) if length is None else length
    n_frames = torch.tensor([info.n_frames for info in infos])
    return torch.arange(length)[None, :] < n_frames[:, None]


# --------------------------------------------------------------------------- manifests


def _normalise_exts(exts: Iterable[str]) -> set[str]:
    if isinstance(exts, str):
        exts = [exts]
    return {("" if ext.startswith(".") else ".") + ext.lower() for ext in exts}


def _list_audio_files(root: Path, exts: Iterable[str]) -> list[Path]:
    wanted = _normalise_exts(exts)
    found = []
    for folder, _, files in os.walk(root, followlinks=True):
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                found.append(Path(folder) / name)
    return sorted(found)


def _read_file_meta(path: Path, minimal: bool) -> AudioMeta:
    info = audio_info(path)
    amplitude = None
    if not minimal:
        wav, _ = audio_read(path)
        amplitude = wav.abs().max().item()
    sidecar = path.with_suffix(".json")
    return AudioMeta(str(path), info.duration, info.sample_rate, amplitude, None,
                     str(sidecar) if sidecar.is_file() else None)


def _try_read_file_meta(path: Path, minimal: bool) -> tuple[AudioMeta | None, str | None]:
    try:
        return _read_file_meta(path, minimal), None
    except Exception as err:  # any decoder failure: the file is listed as unreadable, never fatal
        return None, f"{type(err).__name__}: {err}"


def _scan_audio_files(root: str | os.PathLike, exts: Iterable[str], resolve: bool, minimal: bool,
                      progress: bool, workers: int) -> tuple[list[AudioMeta], list[tuple[str, str]]]:
    """Manifest entries of the readable audio files under ``root``, and ``(path, problem)`` for the others."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"find_audio_files: folder {str(root)!r} does not exist; check the path.")
    if not root.is_dir():
        raise ValueError(f"find_audio_files: `root` must be a folder of audio files, got the file {str(root)!r}; "
                         f"to load a manifest use load_audio_meta().")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"find_audio_files: `workers` must be an int >= 0 (0: no threads), got {workers!r}.")
    paths = _list_audio_files(root, exts)
    if resolve:
        paths = [path.resolve() for path in paths]
    from tqdm import tqdm
    bar = tqdm(total=len(paths), desc="Reading audio metadata", unit="file", disable=not progress, file=sys.stderr)
    meta: list[AudioMeta] = []
    failures: list[tuple[str, str]] = []
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
    try:
        results = pool.map(_try_read_file_meta, paths, [minimal] * len(paths)) if pool else \
            (_try_read_file_meta(path, minimal) for path in paths)
        for path, (entry, problem) in zip(paths, results):
            if entry is None:
                failures.append((str(path), problem or "unknown error"))
            else:
                meta.append(entry)
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    meta.sort(key=lambda m: m.path)
    return meta, failures


def _failure_summary(failures: Sequence[tuple[str, str]]) -> str:
    lines = [f"skipped {len(failures)} unreadable audio file(s):"]
    lines += [f"  {path}  ({problem})" for path, problem in failures[:_SUMMARY_PATHS]]
    if len(failures) > _SUMMARY_PATHS:
        lines.append(f"  ... and {len(failures) - _SUMMARY_PATHS} more")
    return "\n".join(lines)


def find_audio_files(root: str | os.PathLike, exts: Sequence[str] = tuple(DEFAULT_EXTS), resolve: bool = True,
                     minimal: bool = True, progress: bool = False, workers: int = 0) -> list[AudioMeta]:
    """Scan a folder (recursively, following symlinks) and describe every readable audio file.

    Unreadable files are skipped and reported in one logged warning (count and first paths).

    Args:
        root: folder to scan.
        exts: file extensions to keep (case-insensitive, with or without the dot).
        resolve: store absolute paths with symlinks resolved; otherwise paths as found under ``root``.
        minimal: only read headers; False also decodes each file to fill ``amplitude`` (slow).
        progress: show a progress bar on stderr.
        workers: number of reader threads; 0 reads in the calling thread.
    Returns:
        The entries, sorted by path. ``info_path`` is set when a ``.json`` sidecar sits next to the file.
    """
    meta, failures = _scan_audio_files(root, exts, resolve, minimal, progress, workers)
    if failures:
        logger.warning("find_audio_files(%s): %s", root, _failure_summary(failures))
    return meta


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _open_manifest(path: Path, mode: str, gz: bool):
    return gzip.open(path, mode, encoding="utf-8") if gz else open(path, mode, encoding="utf-8")


def _to_absolute(path: str) -> str:
    """Resolve a relative manifest path like AudioCraft: against Dora's original folder if Dora is used."""
    if os.path.isabs(path):
        return path
    try:
        from dora.git_save import to_absolute_path
    except ImportError:
        return os.path.abspath(path)
    return str(to_absolute_path(path))


def _resolve_meta(entry: AudioMeta) -> AudioMeta:
    entry.path = _to_absolute(entry.path)
    if entry.info_path is not None:
        archive, sep, member = entry.info_path.partition(":")
        if sep and archive.lower().endswith(".zip"):
            entry.info_path = _to_absolute(archive) + sep + member
        else:
            entry.info_path = _to_absolute(entry.info_path)
    return entry


def load_audio_meta(path: str | os.PathLike, resolve: bool = True, fast: bool = True) -> list[AudioMeta]:
    """Read a manifest (``.jsonl`` or gzipped ``.jsonl.gz``).

    Args:
        path: manifest file.
        resolve: make relative paths absolute (against the working directory, or Dora's
            original folder when running under Dora).
        fast: accepted for AudioCraft compatibility; has no effect.
    Returns:
        The entries, in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_audio_meta: manifest {str(path)!r} not found"
                                f"{' (it is a folder; use AudioDataset.from_meta)' if path.is_dir() else ''}; "
                                f"build one with `python -m audiocraft.data.audio_dataset <root> {path}`.")
    meta = []
    with _open_manifest(path, "rt", _is_gzip(path)) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = AudioMeta.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, ValueError) as err:
                raise ValueError(f"load_audio_meta: line {number} of {str(path)!r} is not a valid manifest "
                                 f"entry: {err}. Fix the line or rebuild the manifest.") from err
            meta.append(_resolve_meta(entry) if resolve else entry)
    return meta


def save_audio_meta(path: str | os.PathLike, meta: Sequence[AudioMeta]) -> None:
    """Write a manifest, one JSON object per line, gzipped if ``path`` ends in ``.gz``.

    The parent folder is created; the file is written to a temporary file then renamed,
    so an interrupted write never leaves a truncated manifest. An existing file is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with _open_manifest(tmp, "wt", _is_gzip(path)) as handle:
            for entry in meta:
                handle.write(json.dumps(entry.to_dict()) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
