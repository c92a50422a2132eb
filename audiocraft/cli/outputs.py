"""Output files: deterministic names, the no-overwrite check, writing and the final summary."""
from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from .common import CliError

#: Longest slug kept from a prompt (characters), so names stay well under filesystem limits.
MAX_SLUG_LENGTH = 48


def slugify(text: Optional[str], max_length: int = MAX_SLUG_LENGTH, fallback: str = "untitled") -> str:
    """A filesystem-safe, lowercase ASCII name from free text.

    Accents are dropped (``café`` -> ``cafe``), every run of other characters becomes one
    ``_``, and the result is cut at a word boundary to at most ``max_length`` characters.
    Empty results give ``fallback``. The same text always gives the same slug.
    """
    if not text:
        return fallback
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if len(slug) > max_length:
        cut = slug[:max_length + 1]
        boundary = cut.rfind("_")
        slug = cut[:boundary] if boundary >= max_length // 2 else slug[:max_length]
        slug = slug.strip("_")
    return slug or fallback


def numbered_names(labels: Sequence[Optional[str]]) -> List[str]:
    """``000_<slug>``, ``001_<slug>``...: one unique output stem per label, in order."""
    width = max(3, len(str(len(labels) - 1)))
    return [f"{index:0{width}d}_{slugify(label)}" for index, label in enumerate(labels)]


def check_targets(paths: Sequence[Path], overwrite: bool, option: str = "--out") -> None:
    """Refuse (CliError) when a target exists and ``overwrite`` is False, naming the files; run before any work."""
    for path in paths:
        if path.is_dir():
            raise CliError(f"output {str(path)!r} is a folder: choose another {option}")
        if not path.parent.is_dir() and path.parent.exists():
            raise CliError(f"{option} {str(path.parent)!r} exists and is not a folder: choose another {option}")
    if overwrite:
        return
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise CliError(f"refusing to overwrite {len(existing)} existing file(s): {shown}; pass --overwrite to "
                       f"replace them, or choose another {option}")


@dataclass
class WriteOptions:
    """How audio files are written (see ``audiocraft.data.audio.audio_write``)."""
    format: str = "wav"
    strategy: str = "loudness"
    loudness_headroom_db: float = 14.0


def write_audio(path: Path, wav, sample_rate: int, options: WriteOptions) -> Path:
    """Write one waveform [C, T] to exactly ``path`` (format from ``options``)."""
    from ..data.audio import audio_write

    return audio_write(path, wav.detach().cpu().float(), sample_rate, format=options.format,
                       strategy=options.strategy, loudness_headroom_db=options.loudness_headroom_db,
                       loudness_compressor=options.strategy == "loudness", log_clipping=False,
                       add_suffix=False)


@dataclass
class RunSummary:
    """What a generation run produced, for the final report."""
    written: List[Path] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    load_seconds: float = 0.0
    seed: Optional[int] = None
    model: str = ""

    def report(self, stream=None) -> None:
        stream = stream or sys.stderr
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")
        folders = sorted({str(path.parent) for path in self.written})
        where = f" to {folders[0]}" if len(folders) == 1 else ""
        print(f"wrote {len(self.written)} file(s){where}: {self.audio_seconds:.1f} s of audio in "
              f"{self.wall_seconds:.1f} s ({speed:.2f}x real time); model {self.model} loaded in "
              f"{self.load_seconds:.1f} s" + (f"; seed {self.seed}" if self.seed is not None else ""),
              file=stream)
