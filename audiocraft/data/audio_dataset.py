"""Audio manifests and the segment dataset used for training.

Manifests (the list of audio files, see :mod:`audiocraft.data.manifest`) are built with::

    python -m audiocraft.data.audio_dataset <root folder> <out>/data.jsonl[.gz] [--workers 8] [--resolve]

:class:`AudioDataset` turns a manifest into fixed-length training segments [C, T]: it samples
a file (weighted by duration and/or ``weight``), a random start, reads, resamples, converts the
channels and zero-pads. Same arguments, defaults and random streams as AudioCraft's
``AudioDataset``, so a given (index, epoch, seed) yields the same file and start time.
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import random
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.nn import functional as F

from .audio import audio_read
from .audio_utils import convert_audio
from .manifest import (_MANIFEST_NAMES, DEFAULT_EXTS, AudioMeta, BaseInfo, SegmentInfo, _failure_summary, _scan_audio_files,
                       find_audio_files, load_audio_meta, padding_mask, save_audio_meta)

__all__ = ["AudioMeta", "SegmentInfo", "BaseInfo", "DEFAULT_EXTS", "find_audio_files", "load_audio_meta",
           "save_audio_meta", "AudioDataset", "padding_mask", "main"]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- dataset


@lru_cache(16)
def _file_permutation(num_files: int, permutation_index: int, base_seed: int) -> torch.Tensor:
    generator = torch.Generator()
    generator.manual_seed(base_seed + permutation_index)
    return torch.randperm(num_files, generator=generator)


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"AudioDataset: `{name}` must be a positive int, got {value!r}.")
    return value


def _check_seconds(value: Any, name: str, allow_zero: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"AudioDataset: `{name}` must be None or a number of seconds {bound}, got {value!r}.")
    return float(value)


class AudioDataset:
    """Audio items [C, T] from a list of :class:`AudioMeta`.

    With ``segment_duration`` set, item ``index`` is a random segment: a file is drawn (with
    probability proportional to ``duration * weight`` by default), then a start time uniformly in
    ``[0, duration - min_segment_ratio * segment_duration]``; the audio is read, resampled to
    ``sample_rate``, converted to ``channels`` and zero-padded to ``int(segment_duration * sample_rate)``
    samples. The draw only depends on ``index``, the epoch (:meth:`set_epoch`) and ``shuffle_seed``
    when ``shuffle`` is True (without an epoch it is random), and only on ``index`` when
    ``shuffle`` is False (validation), so validation items are the same at every epoch.
    Without ``segment_duration``, item ``i`` is the whole of file ``i``.

    A file that cannot be read during training (``shuffle=True``) is logged, counted in
    :attr:`num_skipped_files` and replaced by another random draw, up to ``max_read_retry``
    attempts; with ``shuffle=False`` or without segments, it raises an error naming the file.
    ``num_skipped_files`` counts in the process that reads (each DataLoader worker has its own).

    Args:
        meta: the manifest entries.
        segment_duration: item length in seconds; None for whole files.
        shuffle: training mode: new segments each epoch, unreadable files skipped.
        num_samples: number of items (``len``) when ``segment_duration`` is set; otherwise the
            number of files.
        sample_rate: output sample rate in Hz.
        channels: output number of channels (mono is averaged down / broadcast up).
        pad: zero-pad segments to the full length (and whole files to the longest in
            :meth:`collater`).
        sample_on_duration: draw files proportionally to their duration.
        sample_on_weight: draw files proportionally to their ``weight`` (None counts as 1).
        min_segment_ratio: a segment holds at least this fraction of real audio; files shorter
            than ``min_segment_ratio * segment_duration`` are left out.
        max_read_retry: attempts per item before giving up (training mode).
        return_info: return ``(wav, SegmentInfo)`` instead of ``wav``.
        min_audio_duration, max_audio_duration: leave out files shorter / longer than this (seconds).
        shuffle_seed: added to the epoch to seed the draws.
        load_wav: False returns silence of the right shape without reading (needs ``segment_duration``).
        permutation_on_files: visit files as successive random permutations instead of independent
            draws (needs ``shuffle``, an epoch, and both ``sample_on_*`` False).
    """

    def __init__(self, meta: Sequence[AudioMeta], segment_duration: float | None = None, shuffle: bool = True,
                 num_samples: int = 10_000, sample_rate: int = 48_000, channels: int = 2, pad: bool = True,
                 sample_on_duration: bool = True, sample_on_weight: bool = True, min_segment_ratio: float = 0.5,
                 max_read_retry: int = 10, return_info: bool = False, min_audio_duration: float | None = None,
                 max_audio_duration: float | None = None, shuffle_seed: int = 0, load_wav: bool = True,
                 permutation_on_files: bool = False):
        if isinstance(meta, (str, os.PathLike)):
            raise TypeError(f"AudioDataset: `meta` must be a list of AudioMeta, got the path {str(meta)!r}; "
                            f"use AudioDataset.from_meta(path) or from_path(path).")
        meta = list(meta)
        if not meta:
            raise ValueError("AudioDataset: `meta` is empty; check that the manifest lists audio files "
                             "(rebuild it with `python -m audiocraft.data.audio_dataset`).")
        bad = next((m for m in meta if not isinstance(m, AudioMeta)), None)
        if bad is not None:
            raise TypeError(f"AudioDataset: `meta` must hold AudioMeta entries, got a {type(bad).__name__}; "
                            f"convert dicts with AudioMeta.from_dict or use load_audio_meta().")
        self.segment_duration = _check_seconds(segment_duration, "segment_duration")
        self.min_audio_duration = _check_seconds(min_audio_duration, "min_audio_duration", allow_zero=True)
        self.max_audio_duration = _check_seconds(max_audio_duration, "max_audio_duration", allow_zero=True)
        if self.min_audio_duration is not None and self.max_audio_duration is not None \
                and self.min_audio_duration > self.max_audio_duration:
            raise ValueError(f"AudioDataset: `min_audio_duration` ({min_audio_duration}) must be <= "
                             f"`max_audio_duration` ({max_audio_duration}).")
        if isinstance(min_segment_ratio, bool) or not isinstance(min_segment_ratio, (int, float)) \
                or not 0 <= min_segment_ratio <= 1:
            raise ValueError(f"AudioDataset: `min_segment_ratio` must be in [0, 1], got {min_segment_ratio!r}.")
        self.min_segment_ratio = float(min_segment_ratio)
        self.sample_rate = _check_positive_int(sample_rate, "sample_rate")
        self.channels = _check_positive_int(channels, "channels")
        self.max_read_retry = _check_positive_int(max_read_retry, "max_read_retry")
        if not load_wav and self.segment_duration is None:
            raise ValueError("AudioDataset: load_wav=False needs `segment_duration` (the length of the silent items).")
        if permutation_on_files and (sample_on_duration or sample_on_weight or not shuffle):
            raise ValueError("AudioDataset: permutation_on_files=True needs shuffle=True, sample_on_duration=False "
                             "and sample_on_weight=False.")
        self.shuffle = bool(shuffle)
        self.pad = bool(pad)
        self.sample_on_duration = bool(sample_on_duration)
        self.sample_on_weight = bool(sample_on_weight)
        self.return_info = bool(return_info)
        self.shuffle_seed = int(shuffle_seed)
        self.load_wav = bool(load_wav)
        self.permutation_on_files = bool(permutation_on_files)
        self.current_epoch: int | None = None
        #: Unreadable files met (and replaced) while drawing training segments, in this process.
        self.num_skipped_files = 0

        self.meta: list[AudioMeta] = self._filter_duration(meta)
        self.total_duration = sum(m.duration for m in self.meta)
        self.num_samples = len(self.meta) if self.segment_duration is None else \
            _check_positive_int(num_samples, "num_samples")
        self.sampling_probabilities = self._get_sampling_probabilities()

    # ----------------------------------------------------------------- set-up

    def _filter_duration(self, meta: list[AudioMeta]) -> list[AudioMeta]:
        """Leave out files outside [min_audio_duration, max_audio_duration] or too short for a segment."""
        kept = meta
        if self.min_audio_duration is not None:
            kept = [m for m in kept if m.duration >= self.min_audio_duration]
        if self.max_audio_duration is not None:
            kept = [m for m in kept if m.duration <= self.max_audio_duration]
        too_short = []
        if self.segment_duration is not None:
            shortest = self.min_segment_ratio * self.segment_duration
            too_short = [m for m in kept if m.duration < shortest]
            kept = [m for m in kept if m.duration >= shortest]
        removed = len(meta) - len(kept)
        if not kept:
            raise ValueError(f"AudioDataset: all {len(meta)} files were left out (min_audio_duration="
                             f"{self.min_audio_duration}, max_audio_duration={self.max_audio_duration}, shorter than "
                             f"min_segment_ratio * segment_duration = {self.min_segment_ratio} * "
                             f"{self.segment_duration}); relax these limits or add longer files.")
        if removed:
            log = logger.warning if removed >= 0.1 * len(meta) else logger.debug
            log("AudioDataset: left out %d of %d files (%.2f%%) because they are too short or too long%s.",
                removed, len(meta), 100 * removed / len(meta),
                f", e.g. {too_short[0].path!r} ({too_short[0].duration:.2f} s)" if too_short else "")
        return kept

    def _get_sampling_probabilities(self, normalized: bool = True) -> torch.Tensor:
        """Per-file draw probabilities [N]: duration and/or weight, as configured."""
        scores = []
        for entry in self.meta:
            score = 1.0
            if self.sample_on_weight and entry.weight is not None:
                if not entry.weight >= 0:
                    raise ValueError(f"AudioDataset: the weight of {entry.path!r} must be >= 0, got {entry.weight!r}; "
                                     f"fix the manifest.")
                score *= entry.weight
            if self.sample_on_duration:
                score *= entry.duration
            scores.append(score)
        probabilities = torch.tensor(scores)
        if normalized:
            total = probabilities.sum()
            if not total > 0:
                raise ValueError("AudioDataset: every file has a sampling weight of 0 (check the `weight` and "
                                 "`duration` fields of the manifest, or pass sample_on_weight=False).")
            probabilities /= total
        return probabilities

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch: with ``shuffle`` the segments become a function of (index, epoch, shuffle_seed)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"AudioDataset.set_epoch: `epoch` must be an int >= 0, got {epoch!r}.")
        self.current_epoch = epoch

    start_epoch = set_epoch  # AudioCraft's name

    def __len__(self) -> int:
        return self.num_samples

    # ----------------------------------------------------------------- items

    def sample_file(self, index: int, rng: torch.Generator) -> AudioMeta:
        """Draw the file of a segment with ``rng`` (only used when ``segment_duration`` is set)."""
        if self.permutation_on_files:
            if self.current_epoch is None:
                raise RuntimeError("AudioDataset: permutation_on_files=True needs the epoch; call set_epoch(epoch) "
                                   "before reading items.")
            position = self.current_epoch * len(self) + index
            permutation = _file_permutation(len(self.meta), position // len(self.meta), self.shuffle_seed)
            return self.meta[int(permutation[position % len(self.meta)])]
        if not self.sample_on_weight and not self.sample_on_duration:
            file_index = int(torch.randint(len(self.sampling_probabilities), (1,), generator=rng).item())
        else:
            file_index = int(torch.multinomial(self.sampling_probabilities, 1, generator=rng).item())
        return self.meta[file_index]

    def _audio_read(self, path: str, seek_time: float = 0.0, duration: float = -1.0) -> tuple[torch.Tensor, int]:
        """Read [C, T] audio and its sample rate; silence of the segment shape when ``load_wav`` is False."""
        if not self.load_wav:
            assert self.segment_duration is not None  # checked in __init__
            return torch.zeros(self.channels, int(self.sample_rate * self.segment_duration)), self.sample_rate
        wav, sample_rate = audio_read(path, seek_time, duration, pad=False)
        if wav.shape[-1] == 0:
            raise ValueError(f"no audio at {seek_time:.3f} s: the file is shorter than its manifest duration "
                             f"says; rebuild the manifest")
        return wav, sample_rate

    def _segment_generator(self, index: int) -> torch.Generator:
        rng = torch.Generator()
        if not self.shuffle:
            rng.manual_seed(index)
        elif self.current_epoch is None:
            rng.manual_seed(index + self.num_samples * random.randint(0, 2 ** 24))
        else:
            rng.manual_seed(index + self.num_samples * (self.current_epoch + self.shuffle_seed))
        return rng

    def _read_segment(self, index: int) -> tuple[torch.Tensor, int, AudioMeta, float]:
        assert self.segment_duration is not None
        rng = self._segment_generator(index)
        last_error: Exception | None = None
        for _ in range(self.max_read_retry):
            entry = self.sample_file(index, rng)
            max_seek = max(0.0, entry.duration - self.segment_duration * self.min_segment_ratio)
            seek_time = torch.rand(1, generator=rng).item() * max_seek
            try:
                wav, sample_rate = self._audio_read(entry.path, seek_time, self.segment_duration)
            except Exception as err:  # a corrupt, truncated or missing file
                if not self.shuffle:
                    raise RuntimeError(f"AudioDataset: cannot read {entry.path!r} (item {index}, validation mode): "
                                       f"{err}. Fix or remove the file and rebuild the manifest.") from err
                self.num_skipped_files += 1
                last_error = err
                logger.warning("AudioDataset: skipping unreadable file %r (%s); %d skipped so far.",
                               entry.path, err, self.num_skipped_files)
                continue
            return wav, sample_rate, entry, seek_time
        raise RuntimeError(f"AudioDataset: {self.max_read_retry} attempts to read a segment for item {index} failed; "
                           f"last file {entry.path!r}: {last_error}. Check the manifest (rebuild it with `python -m "
                           f"audiocraft.data.audio_dataset`) or raise `max_read_retry`.") from last_error

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, SegmentInfo]:
        """Item ``index``: wav [channels, T] (T = ``int(segment_duration * sample_rate)`` when padded),
        or ``(wav, SegmentInfo)`` with ``return_info``."""
        if isinstance(index, bool) or not isinstance(index, int):
            index = int(index)  # numpy / torch integers from samplers
        if not -len(self) <= index < len(self):
            raise IndexError(f"AudioDataset: index {index} out of range for {len(self)} items.")
        index %= len(self)
        if self.segment_duration is None:
            entry = self.meta[index]
            try:
                wav, sample_rate = self._audio_read(entry.path)
            except Exception as err:
                raise RuntimeError(f"AudioDataset: cannot read {entry.path!r} (item {index}): {err}. Fix or remove "
                                   f"the file and rebuild the manifest.") from err
            wav = convert_audio(wav, sample_rate, self.sample_rate, self.channels).contiguous()
            info = SegmentInfo(entry, 0.0, n_frames=wav.shape[-1], total_frames=wav.shape[-1],
                               sample_rate=self.sample_rate, channels=wav.shape[0])
        else:
            wav, sample_rate, entry, seek_time = self._read_segment(index)
            wav = convert_audio(wav, sample_rate, self.sample_rate, self.channels)
            target = int(self.segment_duration * self.sample_rate)
            n_frames = min(wav.shape[-1], target)
            if self.pad:
                wav = F.pad(wav, (0, target - wav.shape[-1]))
            wav = wav.contiguous()
            info = SegmentInfo(entry, seek_time, n_frames=n_frames, total_frames=target,
                               sample_rate=self.sample_rate, channels=wav.shape[0])
        return (wav, info) if self.return_info else wav

    def collater(self, samples: Sequence[Any]) -> torch.Tensor | tuple[torch.Tensor, list[SegmentInfo]]:
        """Stack items into a batch [B, C, T], zero-padding to the longest one when ``pad`` is set.

        Give it as ``collate_fn`` to a DataLoader. With ``return_info`` the items are
        ``(wav, info)`` pairs and the result is ``(wav, infos)``; the infos are copies whose
        ``total_frames`` is the batch length (use :func:`padding_mask` for the valid samples).
        """
        if not samples:
            raise ValueError("AudioDataset.collater: `samples` is empty.")
        if self.return_info:
            if not all(isinstance(s, (tuple, list)) and len(s) == 2 and isinstance(s[1], SegmentInfo)
                       for s in samples):
                raise TypeError("AudioDataset.collater: with return_info=True every sample must be a "
                                "(wav, SegmentInfo) pair, as returned by the dataset.")
            wavs = [wav for wav, _ in samples]
            infos = [copy.deepcopy(info) for _, info in samples]
        else:
            if not all(isinstance(s, torch.Tensor) for s in samples):
                raise TypeError("AudioDataset.collater: with return_info=False every sample must be a tensor "
                                "[C, T]; for (wav, info) pairs build the dataset with return_info=True.")
            wavs, infos = list(samples), None
        longest = max(wav.shape[-1] for wav in wavs)
        if any(wav.shape[-1] != longest for wav in wavs):
            if not self.pad:
                raise ValueError(f"AudioDataset.collater: items have different lengths "
                                 f"({sorted({w.shape[-1] for w in wavs})} samples) and pad=False; build the dataset "
                                 f"with pad=True or use batch_size=1.")
            wavs = [F.pad(wav, (0, longest - wav.shape[-1])) for wav in wavs]
        batch = torch.stack(wavs)
        if infos is None:
            return batch
        if self.segment_duration is None or self.pad:
            for info in infos:
                info.total_frames = longest
        return batch, infos

    # ----------------------------------------------------------------- constructors

    @classmethod
    def from_meta(cls, root: str | os.PathLike, **kwargs):
        """Build from a manifest file, or a folder holding ``data.jsonl`` / ``data.jsonl.gz``.

        ``kwargs`` are the constructor arguments (``segment_duration``, ``sample_rate``, ...).
        """
        root = Path(root)
        if root.is_dir():
            candidates = [root / name for name in _MANIFEST_NAMES if (root / name).is_file()]
            if not candidates:
                raise FileNotFoundError(f"AudioDataset.from_meta: no data.jsonl or data.jsonl.gz in {str(root)!r}; "
                                        f"build one with `python -m audiocraft.data.audio_dataset <audio folder> "
                                        f"{root / 'data.jsonl'}` or pass the manifest file itself.")
            root = candidates[0]
        return cls(load_audio_meta(root), **kwargs)

    @classmethod
    def from_path(cls, root: str | os.PathLike, minimal_meta: bool = True,
                  exts: Sequence[str] = tuple(DEFAULT_EXTS), **kwargs):
        """Build from a manifest file, or by scanning a folder of audio files (see :func:`find_audio_files`)."""
        root = Path(root)
        if root.is_file():
            meta = load_audio_meta(root, resolve=True)
        else:
            meta = find_audio_files(root, exts, minimal=minimal_meta, resolve=True)
        return cls(meta, **kwargs)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m audiocraft.data.audio_dataset <root> <out.jsonl[.gz]>``: build a manifest. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m audiocraft.data.audio_dataset",
        description="Scan a folder for audio files (" + " ".join(DEFAULT_EXTS) + ") and write a manifest, "
                    "one JSON per line (gzipped if the name ends in .gz).")
    parser.add_argument("root", help="folder to scan (recursively, following symlinks)")
    parser.add_argument("output_meta_file", help="manifest to write, e.g. egs/mydata/data.jsonl or data.jsonl.gz")
    parser.add_argument("--complete", action="store_false", dest="minimal",
                        help="also decode every file to store its peak amplitude (slow)")
    parser.add_argument("--resolve", action="store_true", help="store absolute paths with symlinks resolved")
    parser.add_argument("--workers", type=int, default=10, help="number of reader threads (default: 10)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    output = Path(args.output_meta_file)
    if output.exists() and not args.overwrite:
        parser.error(f"{str(output)!r} already exists; pass --overwrite to replace it or choose another name.")
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}.")
    try:
        meta, failures = _scan_audio_files(args.root, DEFAULT_EXTS, args.resolve, args.minimal,
                                           progress=True, workers=args.workers)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    if failures:
        print("WARNING: " + _failure_summary(failures), file=sys.stderr)
    if not meta:
        print(f"error: no readable audio file ({', '.join(DEFAULT_EXTS)}) under {args.root!r}; nothing written.",
              file=sys.stderr)
        return 1
    save_audio_meta(output, meta)
    print(f"wrote {len(meta)} entries ({sum(m.duration for m in meta) / 3600:.2f} h) to {str(output)!r}"
          f"{f', skipped {len(failures)} unreadable file(s)' if failures else ''}.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
