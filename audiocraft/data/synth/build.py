"""The resumable, multi-process builder of the music21 + FluidSynth dataset.

Layout of an output folder::

    <out>/.music21_gm_dataset.json      marker: this folder is ours, with the settings that fix its content
    <out>/audio/<split>/<clip>.wav      16 kHz mono 16-bit clips (or .flac)
    <out>/audio/<split>/<clip>.json     MusicInfo sidecar (see captions.py)
    <out>/<split>/data.jsonl            AudioMeta manifests (absolute paths, info_path set)
    <out>/summary.json                  counts, hours and render speed of the last run
    <out>/cache/works/*.json.gz         parsed music21 works (reused by later runs)

Two phases: *planning* parses works in the order of :func:`~.corpus.list_works` (in
parallel, cached) and takes their clips until the requested hours are reached; *rendering*
renders the planned clips that are not on disk yet. Both are deterministic given the seed, so a
rerun with the same arguments renders nothing, and a rerun with more hours only adds clips.
"""
from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .corpus import COLLECTIONS, WorkParseError, WorkRef, list_works, load_work
from .plan import SPLITS, ClipPlan, plan_clips

__all__ = ["BuildConfig", "build_dataset", "MARKER_NAME", "check_output_dir"]

logger = logging.getLogger(__name__)

#: Name of the file that marks a folder as written by this builder.
MARKER_NAME = ".music21_gm_dataset.json"
_MARKER_TOOL = "audiocraft scripts/make_music_dataset.py"
_FORMATS = ("wav", "flac")


@dataclass
class BuildConfig:
    """Settings of a dataset build (the command-line options of ``scripts/make_music_dataset.py``).

    Attributes:
        out: output folder. hours: audio to plan, in hours (all splits together).
        workers: processes for parsing and rendering (1 runs everything in this process).
        seed: seed of every random choice. sample_rate: output rate in Hz.
        max_works: use at most the first N works of the ordering (None: as many as needed).
        clip_seconds: (shortest, longest) clip duration in seconds.
        audio_format: 'wav' or 'flac' (16-bit PCM either way).
        collections: music21 corpus folders to use (None: all of :data:`~.corpus.COLLECTIONS`).
        splits: train/valid/test shares of the works.
        soundfont: General MIDI .sf2 file (None: the installed FluidR3_GM).
        cache_dir: where parsed works are cached (None: ``<out>/cache``).
        force: write into a non-empty folder that is not a previous run of this builder.
        progress: show tqdm progress bars.
        balance_families: draw each clip's instrument family first, uniformly (see
            :func:`~.plan.plan_clips`); by default a third of the clips are woodwind.
    """
    out: Path
    hours: float = 10.0
    workers: int = 2
    seed: int = 0
    sample_rate: int = 16000
    max_works: int | None = None
    clip_seconds: tuple[float, float] = (10.0, 30.0)
    audio_format: str = "wav"
    collections: tuple[str, ...] | None = None
    splits: tuple[float, float, float] = (0.9, 0.05, 0.05)
    soundfont: str | None = None
    cache_dir: Path | None = None
    force: bool = False
    progress: bool = True
    balance_families: bool = False

    def __post_init__(self):
        self.out = Path(self.out)
        if not isinstance(self.hours, (int, float)) or isinstance(self.hours, bool) or not self.hours > 0:
            raise ValueError(f"BuildConfig: `hours` must be a positive number of hours, got {self.hours!r}.")
        for name in ("workers", "sample_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BuildConfig: `{name}` must be a positive int, got {value!r}.")
        if not 8000 <= self.sample_rate <= 96000:
            raise ValueError(f"BuildConfig: `sample_rate` must be in [8000, 96000] Hz (FluidSynth's range), got "
                             f"{self.sample_rate}.")
        if self.max_works is not None and (isinstance(self.max_works, bool) or not isinstance(self.max_works, int)
                                           or self.max_works < 1):
            raise ValueError(f"BuildConfig: `max_works` must be a positive int or None, got {self.max_works!r}.")
        shortest, longest = (float(v) for v in self.clip_seconds)
        if not 1.0 <= shortest <= longest:
            raise ValueError(f"BuildConfig: `clip_seconds` must be (shortest, longest) with 1 <= shortest <= longest "
                             f"seconds, got {tuple(self.clip_seconds)!r}.")
        self.clip_seconds = (shortest, longest)
        if self.audio_format not in _FORMATS:
            raise ValueError(f"BuildConfig: `audio_format` must be one of {_FORMATS}, got {self.audio_format!r}.")
        if self.collections is not None:
            unknown = [c for c in self.collections if c not in COLLECTIONS]
            if unknown or not self.collections:
                raise ValueError(f"BuildConfig: unknown or empty `collections` {unknown or []!r}; choose among "
                                 f"{sorted(COLLECTIONS)}.")
            self.collections = tuple(self.collections)
        splits = tuple(float(v) for v in self.splits)
        if len(splits) != 3 or any(v < 0 for v in splits) or sum(splits) <= 0:
            raise ValueError(f"BuildConfig: `splits` must be 3 non-negative shares (train valid test), got "
                             f"{self.splits!r}.")
        self.splits = splits
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else self.out / "cache"

    def content_settings(self) -> dict:
        """The settings that decide what a clip sounds like: a rerun must keep them."""
        settings = {"seed": self.seed, "sample_rate": self.sample_rate, "clip_seconds": list(self.clip_seconds),
                    "audio_format": self.audio_format, "splits": list(self.splits)}
        if self.balance_families:  # only when set: folders made before the option stay compatible
            settings["balance_families"] = True
        return settings


def check_output_dir(config: BuildConfig) -> None:
    """Create ``config.out`` or check that it is a compatible previous run; then (re)write the marker.

    Raises:
        FileExistsError: the folder is not empty and has no marker (and ``force`` is False).
        ValueError: it is a previous run made with other content settings.
        NotADirectoryError: ``out`` is a file.
    """
    out = config.out
    marker = out / MARKER_NAME
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} is a file; pass a folder path.")
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"the marker {str(marker)!r} is unreadable ({err}); restore it or use another --out.")
        settings = previous.get("settings", {})
        current = config.content_settings()
        changed = {k: (settings.get(k), current.get(k)) for k in sorted(set(settings) | set(current))
                   if settings.get(k) != current.get(k)}
        if changed:
            details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(f"{str(out)!r} was built with other settings ({details}); rerun with the original "
                             f"settings to resume or extend it, or choose a new --out.")
    elif out.is_dir() and any(out.iterdir()) and not config.force:
        raise FileExistsError(f"--out {str(out)!r} is not empty and is not a previous run of this script (no "
                              f"{MARKER_NAME}); choose an empty or new folder, or pass --force to add to it "
                              f"(nothing in it is deleted).")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(marker, {"tool": _MARKER_TOOL, "settings": config.content_settings()})


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _paths(out: Path, plan: ClipPlan, audio_format: str) -> tuple[Path, Path]:
    folder = out / "audio" / plan.split
    return folder / f"{plan.clip_id}.{audio_format}", folder / f"{plan.clip_id}.json"


def _is_done(out: Path, plan: ClipPlan, audio_format: str) -> bool:
    audio, sidecar = _paths(out, plan, audio_format)
    if not (audio.is_file() and sidecar.is_file()):
        return False
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("synth", {}).get("plan_hash") == plan.plan_hash


# ----------------------------------------------------------------------------- worker side

_STATE: dict[str, Any] = {}


def _init_worker(settings: dict) -> None:
    """Per-process state: the settings, a cache of parsed works, a lazily built renderer."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STATE.clear()
    _STATE.update(settings=settings, works={}, renderer=None)


def _work(ref: WorkRef):
    works = _STATE["works"]
    if ref.work_id not in works:
        if len(works) >= 8:
            works.pop(next(iter(works)))
        works[ref.work_id] = load_work(ref, _STATE["settings"]["cache_dir"])
    return works[ref.work_id]


def _prepare(ref: WorkRef) -> tuple[str, list[dict] | None, str | None]:
    """Parse (cached) and plan one work: ``(work_id, plans as dicts, error)``."""
    settings = _STATE["settings"]
    try:
        work = _work(ref)
        plans = plan_clips(work, settings["seed"], settings["sample_rate"], tuple(settings["clip_seconds"]),
                           tuple(settings["splits"]), settings.get("balance_families", False))
    except WorkParseError as err:
        return ref.work_id, None, str(err)
    except Exception as err:  # a work that breaks the planner is skipped, not fatal
        return ref.work_id, None, f"{ref.work_id}: planning failed: {type(err).__name__}: {err}"
    return ref.work_id, [plan.to_dict() for plan in plans], None


def _render(task: tuple[WorkRef, dict]) -> tuple[str, float, float, str | None]:
    """Render and write one clip: ``(clip_id, audio seconds, cpu seconds, error)``."""
    import soundfile

    from .arrange import arrange
    from .captions import describe
    from .render import FluidRenderer, peak_normalize

    ref, plan_dict = task
    plan = ClipPlan.from_dict(plan_dict)
    settings = _STATE["settings"]
    started = time.process_time()
    try:
        if _STATE["renderer"] is None:
            _STATE["renderer"] = FluidRenderer(settings["soundfont"], settings["sample_rate"])
        work = _work(ref)
        performance = arrange(work, plan)
        audio = _STATE["renderer"].render(performance)
        if not np.isfinite(audio).all() or float(np.max(np.abs(audio), initial=0.0)) < 1e-5:
            return plan.clip_id, 0.0, time.process_time() - started, f"{plan.clip_id}: rendered silence"
        audio = peak_normalize(audio, headroom_db=1.0)
        info = describe(work, plan, performance)
        out = Path(settings["out"])
        audio_path, sidecar_path = _paths(out, plan, settings["audio_format"])
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = audio_path.with_name(f".{audio_path.name}.{os.getpid()}.part")
        try:
            soundfile.write(str(tmp), audio, plan.sample_rate, subtype="PCM_16",
                            format=settings["audio_format"].upper())
            os.replace(tmp, audio_path)
        finally:
            tmp.unlink(missing_ok=True)
        _write_json(sidecar_path, info)  # written last: a clip counts as done once its sidecar exists
    except Exception as err:  # one bad clip must not stop a multi-hour run
        return plan.clip_id, 0.0, time.process_time() - started, f"{plan.clip_id}: {type(err).__name__}: {err}"
    return plan.clip_id, plan.duration, time.process_time() - started, None


# ----------------------------------------------------------------------------- driver


@dataclass
class _Pool:
    """``map``/``imap_unordered`` over worker processes, or in this process when workers == 1."""
    workers: int
    settings: dict
    pool: Any = field(default=None)

    def __enter__(self):
        _init_worker(self.settings)  # the in-process path, and harmless otherwise
        if self.workers > 1:
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(self.workers, initializer=_init_worker, initargs=(self.settings,))
        return self

    def map(self, function, items: Sequence) -> list:
        if self.pool is None:
            return [function(item) for item in items]
        return self.pool.map(function, items, chunksize=1)

    def imap_window(self, function, items: Iterable, window: int) -> Iterator:
        """Results in input order, with at most ``window`` tasks in flight (stopping early wastes little)."""
        if self.pool is None:
            yield from (function(item) for item in items)
            return
        pending: deque = deque()
        iterator = iter(items)
        for item in itertools.islice(iterator, window):
            pending.append(self.pool.apply_async(function, (item,)))
        while pending:
            result = pending.popleft().get()
            for item in itertools.islice(iterator, 1):
                pending.append(self.pool.apply_async(function, (item,)))
            yield result

    def imap_unordered(self, function, items: Sequence) -> Iterable:
        if self.pool is None:
            return (function(item) for item in items)
        return self.pool.imap_unordered(function, items, chunksize=2)

    def __exit__(self, *exc):
        if self.pool is not None:
            if exc[0] is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
        return False


def _progress(enabled: bool, **kwargs):
    from tqdm import tqdm
    return tqdm(disable=not enabled, dynamic_ncols=True, **kwargs)


def _plan_dataset(config: BuildConfig, pool: _Pool, refs: list[WorkRef]) -> tuple[list[tuple[WorkRef, ClipPlan]],
                                                                                   list[str]]:
    target = config.hours * 3600.0
    planned: list[tuple[WorkRef, ClipPlan]] = []
    errors: list[str] = []
    total = 0.0
    with _progress(config.progress, total=round(target), unit="s", desc="planning") as bar:
        for ref, (_, plans, error) in zip(refs, pool.imap_window(_prepare, refs, window=4 * config.workers)):
            if error is not None:
                errors.append(error)
                continue
            for plan_dict in plans:
                plan = ClipPlan.from_dict(plan_dict)
                planned.append((ref, plan))
                total += plan.duration
                bar.update(round(min(plan.duration, target - bar.n)))
            if total >= target:
                break
    return planned, errors


def _write_manifests(config: BuildConfig, planned: list[tuple[WorkRef, ClipPlan]]) -> dict[str, list[ClipPlan]]:
    from ..audio_dataset import AudioMeta, save_audio_meta

    done: dict[str, list[ClipPlan]] = {split: [] for split in SPLITS}
    for _, plan in planned:
        if _is_done(config.out, plan, config.audio_format):
            done[plan.split].append(plan)
    for split, plans in done.items():
        manifest = config.out / split / "data.jsonl"
        if not plans:
            continue
        metas = []
        for plan in plans:
            audio, sidecar = _paths(config.out, plan, config.audio_format)
            metas.append(AudioMeta(path=str(audio.resolve()), duration=plan.duration, sample_rate=plan.sample_rate,
                                   info_path=str(sidecar.resolve())))
        save_audio_meta(manifest, sorted(metas, key=lambda m: m.path))
    return done


def build_dataset(config: BuildConfig) -> dict:
    """Plan, render and index the dataset described by ``config``; returns the run summary.

    Raises:
        FileExistsError, ValueError, NotADirectoryError: see :func:`check_output_dir`.
        FileNotFoundError: no SoundFont.
    """
    from .render import find_soundfont

    soundfont = str(find_soundfont(config.soundfont))
    check_output_dir(config)
    started = time.time()
    refs = list_works(config.collections, config.seed)
    if config.max_works is not None:
        refs = refs[:config.max_works]
    settings = dict(config.content_settings(), out=str(config.out), cache_dir=str(config.cache_dir),
                    soundfont=soundfont)
    with _Pool(config.workers, settings) as pool:
        planned, parse_errors = _plan_dataset(config, pool, refs)
        planning_seconds = time.time() - started
        todo = [(ref, plan) for ref, plan in planned if not _is_done(config.out, plan, config.audio_format)]
        render_started = time.time()
        rendered_seconds, cpu_seconds, render_errors = 0.0, 0.0, []
        with _progress(config.progress, total=len(todo), unit="clip", desc="rendering") as bar:
            for clip_id, seconds, cpu, error in pool.imap_unordered(
                    _render, [(ref, plan.to_dict()) for ref, plan in todo]):
                rendered_seconds += seconds
                cpu_seconds += cpu
                if error is not None:
                    render_errors.append(error)
                    logger.warning("clip failed: %s", error)
                bar.update(1)
        render_wall = time.time() - render_started
    done = _write_manifests(config, planned)
    summary = {
        "out": str(config.out.resolve()),
        "settings": config.content_settings(),
        "works_considered": len(refs),
        "works_used": len({plan.work_id for _, plan in planned}),
        "works_failed_to_parse": len(parse_errors),
        "clips": {split: len(plans) for split, plans in done.items()},
        "hours": {split: round(sum(p.duration for p in plans) / 3600, 4) for split, plans in done.items()},
        "works_per_split": {split: len({p.work_id for p in plans}) for split, plans in done.items()},
        "clips_rendered_this_run": len(todo) - len(render_errors),
        "clips_failed": render_errors[:50],
        "num_clips_failed": len(render_errors),
        "planning_seconds": round(planning_seconds, 2),
        "render_wall_seconds": round(render_wall, 2),
        "render_speed_x_realtime": round(rendered_seconds / render_wall, 2) if render_wall > 0 and todo else None,
        "render_speed_per_process_x_realtime": round(rendered_seconds / cpu_seconds, 2) if cpu_seconds > 0 else None,
        "total_seconds": round(time.time() - started, 2),
    }
    _write_json(config.out / "summary.json", summary)
    return summary
