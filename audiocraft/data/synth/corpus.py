"""Source works from the music21 corpus, their ordering, and their parsed (cached) notes.

A *work* is one score: a MusicXML/Humdrum file, or one tune (``X:`` number) of an ABC
collection. :func:`list_works` lists the works of the collections we use in a seeded,
collection-balanced order; :func:`load_work` turns one into a :class:`ParsedWork` (notes of
each part in quarter lengths, bar lines, meter, tempo) with a gzipped JSON cache on disk, so
music21 parses each work once across runs.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import signal
import string
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = ["Collection", "COLLECTIONS", "WorkRef", "ParsedWork", "WorkParseError", "list_works", "parse_work",
           "load_work", "work_hash", "CACHE_VERSION"]

#: Bumped when the cached ParsedWork format or the parsing changes (old caches are then ignored).
CACHE_VERSION = 1
_SCORE_EXTS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")
_PARSE_TIMEOUT_S = 180
_EXPAND_REPEATS_MAX_QL = 400.0


@dataclass(frozen=True)
class Collection:
    """A music21 corpus folder and what we know about all its works.

    Attributes:
        genre: the source genre used in captions ('baroque', 'folk', ...).
        composer: artist when the score names none ('Traditional' for folk collections).
        form: what a work is called when its title says nothing ('chorale', 'folk tune', ...).
        weight: relative share of this collection among the first works of :func:`list_works`.
        tunes_are_works: each tune of an ABC file is a separate work (folk collections);
            otherwise a file is one work and split groups follow files/folders.
    """
    genre: str
    composer: str
    form: str
    weight: float
    tunes_are_works: bool = False


#: The collections we render, by music21 corpus folder name. Atonal works (Schoenberg, Webern),
#: demos and theory exercises are left out: their key and genre captions would be wrong.
COLLECTIONS: dict[str, Collection] = {
    "bach": Collection("baroque", "Johann Sebastian Bach", "chorale", 2.5),
    "handel": Collection("baroque", "George Frideric Handel", "aria", 0.1),
    "corelli": Collection("baroque", "Arcangelo Corelli", "trio sonata movement", 0.1),
    "cpebach": Collection("classical", "Carl Philipp Emanuel Bach", "keyboard piece", 0.1),
    "palestrina": Collection("renaissance", "Giovanni Pierluigi da Palestrina", "mass movement", 1.2),
    "monteverdi": Collection("renaissance", "Claudio Monteverdi", "madrigal", 0.5),
    "josquin": Collection("renaissance", "Josquin des Prez", "motet", 0.2),
    "lusitano": Collection("renaissance", "Vicente Lusitano", "madrigal", 0.1),
    "luca": Collection("medieval", "D. Luca", "gloria", 0.1),
    "trecento": Collection("medieval", "Anonymous", "medieval song", 0.3),
    "ciconia": Collection("medieval", "Johannes Ciconia", "medieval song", 0.1),
    "mozart": Collection("classical", "Wolfgang Amadeus Mozart", "string quartet movement", 0.3),
    "haydn": Collection("classical", "Joseph Haydn", "string quartet movement", 0.2),
    "beethoven": Collection("classical", "Ludwig van Beethoven", "string quartet movement", 0.4),
    "schubert": Collection("romantic", "Franz Schubert", "song", 0.1),
    "schumann_robert": Collection("romantic", "Robert Schumann", "string quartet movement", 0.2),
    "schumann_clara": Collection("romantic", "Clara Schumann", "piano piece", 0.15),
    "chopin": Collection("romantic", "Frederic Chopin", "mazurka", 0.1),
    "weber": Collection("romantic", "Carl Maria von Weber", "concertino", 0.1),
    "verdi": Collection("romantic", "Giuseppe Verdi", "aria", 0.1),
    "beach": Collection("romantic", "Amy Beach", "song", 0.1),
    "joplin": Collection("ragtime", "Scott Joplin", "rag", 0.1),
    "leadSheet": Collection("popular", "Traditional", "song", 0.1),
    "johnson_j_r": Collection("hymn", "J. Rosamond Johnson", "hymn", 0.1),
    "liliuokalani": Collection("folk", "Liliuokalani", "song", 0.1),
    "essenFolksong": Collection("folk", "Traditional", "folk song", 3.0, tunes_are_works=True),
    "oneills1850": Collection("folk", "Traditional", "irish dance tune", 1.5, tunes_are_works=True),
    "ryansMammoth": Collection("folk", "Traditional", "fiddle tune", 1.5, tunes_are_works=True),
    "airdsAirs": Collection("folk", "Traditional", "scottish air", 1.0, tunes_are_works=True),
    "miscFolk": Collection("folk", "Traditional", "folk tune", 0.3, tunes_are_works=True),
    "nottingham-dataset": Collection("folk", "Traditional", "folk tune", 0.3, tunes_are_works=True),
}

# Words of a title that name the form of a piece, most specific first.
_FORMS = ("slip jig", "set dance", "hornpipe", "strathspey", "schottische", "quadrille", "mazurka", "polonaise",
          "minuet", "gavotte", "lament", "reel", "jig", "waltz", "march", "polka", "air", "rag", "aria",
          "lullaby", "ballad", "hymn", "song")


@dataclass(frozen=True)
class WorkRef:
    """One work of the corpus.

    Attributes:
        work_id: stable id, ``'<corpus path>'`` or ``'<corpus path>#<tune number>'``.
        collection: the corpus folder (a key of :data:`COLLECTIONS`).
        path: path relative to the music21 corpus root.
        number: ABC tune number (``X:``), None for single-work files.
        group: split key: works of one group always land in the same split (one opus, one file).
    """
    work_id: str
    collection: str
    path: str
    number: int | None
    group: str


@dataclass
class ParsedWork:
    """The notes of a work in score time (quarter lengths, ql), ready to arrange.

    Attributes:
        work_id, collection: see :class:`WorkRef`; ``group`` is its split key.
        title, composer, genre, form: metadata used in captions.
        time_signature: first meter, e.g. '6/8'.
        beat_ql: duration of one beat of that meter in quarter lengths (1.5 in 6/8, 2 in 2/2).
        beats_per_bar: beats in a full bar of that meter.
        compound: the beat divides in three (6/8, 9/8, 12/8).
        bars: ``[start_ql, length_ql]`` of each bar in playing order (repeats expanded when
            music21 could expand them); a pickup bar is shorter than a full bar.
        parts: per part, top voice first as in the score, ``[start_ql, duration_ql, midi_pitch]`` notes.
        tempo_qpm: the score's own metronome mark in quarter notes per minute, None if absent.
        key: music21's key analysis of the whole work, e.g. 'G minor'.
    """
    work_id: str
    collection: str
    group: str
    title: str
    composer: str
    genre: str
    form: str
    time_signature: str
    beat_ql: float
    beats_per_bar: int
    compound: bool
    bars: list[list[float]]
    parts: list[list[list[float]]]
    tempo_qpm: float | None = None
    key: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def bar_ql(self) -> float:
        """Length of a full bar in quarter lengths."""
        return self.beat_ql * self.beats_per_bar

    @property
    def num_notes(self) -> int:
        return sum(len(part) for part in self.parts)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ParsedWork":
        return cls(**data)


class WorkParseError(RuntimeError):
    """music21 could not turn a work into usable notes (the work is skipped)."""


def work_hash(text: str, length: int = 16) -> str:
    """Stable hexadecimal digest of ``text`` (sha1), for ids, file names and split assignment."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


# --------------------------------------------------------------------------- listing


def _corpus_root() -> Path:
    from music21 import common
    return Path(common.getCorpusFilePath())


def _abc_numbers(path: Path) -> list[int]:
    text = path.read_text(encoding="latin-1")
    return [int(number) for number in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE)]


def _group_of(collection: str, relative: str, info: Collection, number: int | None) -> str:
    parts = relative.split("/")
    if info.tunes_are_works and number is not None:
        return f"{relative}#{number}"
    if len(parts) > 2:  # beethoven/opus18no1/movement3.mxl -> one opus, one split
        return "/".join(parts[:-1])
    return relative


def list_works(collections: Sequence[str] | None = None, seed: int = 0) -> list[WorkRef]:
    """Works of the music21 corpus in a seeded, collection-balanced order.

    Each collection's works are shuffled, then the collections are interleaved in proportion
    to their :attr:`Collection.weight`, so the first N works mix genres instead of being all
    Palestrina; taking a prefix of this list is how ``--max-works`` and ``--hours`` pick works.

    Args:
        collections: corpus folders to use (keys of :data:`COLLECTIONS`); None for all of them.
        seed: shuffling seed.
    Returns:
        The works, best first. ABC collections are expanded to one work per tune.
    Raises:
        ValueError: an unknown collection name.
    """
    names = list(COLLECTIONS) if collections is None else list(collections)
    unknown = [name for name in names if name not in COLLECTIONS]
    if unknown:
        raise ValueError(f"list_works: unknown collection(s) {unknown}; expected names among "
                         f"{sorted(COLLECTIONS)}.")
    root = _corpus_root()
    by_collection: dict[str, list[WorkRef]] = {name: [] for name in names}
    for name in names:
        folder = root / name
        if not folder.is_dir():
            continue
        info = COLLECTIONS[name]
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in _SCORE_EXTS or not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            numbers: list[int | None] = [None]
            if path.suffix.lower() == ".abc":
                found = sorted(set(_abc_numbers(path)))
                numbers = found if len(found) > 1 else [found[0] if found else None]
            for number in numbers:
                work_id = relative if number is None else f"{relative}#{number}"
                by_collection[name].append(WorkRef(work_id, name, relative, number,
                                                   _group_of(name, relative, info, number)))
    keyed = []
    for name, works in by_collection.items():
        rng = random.Random(f"{seed}:{name}")
        rng.shuffle(works)
        weight = COLLECTIONS[name].weight
        for position, work in enumerate(works):
            keyed.append(((position + rng.random()) / weight, work.work_id, work))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [work for _, _, work in keyed]


# --------------------------------------------------------------------------- parsing


def _clean_title(raw: str | None) -> str | None:
    if not raw:
        return None
    title = " ".join(str(raw).split()).strip(" .,;")
    if title.isupper():
        title = string.capwords(title.lower())
    return title or None


def _title_from_path(relative: str, form: str) -> str:
    stem = Path(relative).stem
    match = re.fullmatch(r"bwv(\d+[a-z]?)(\.\d+)?", stem)
    if match:
        return f"Chorale BWV {match.group(1)}{match.group(2) or ''}"
    parent = Path(relative).parent.name
    opus = re.fullmatch(r"opus(\d+)(?:no(\d+))?", parent) or re.fullmatch(r"k(\d+)", parent)
    movement = re.fullmatch(r"movement(\d+)", stem)
    if opus and movement:
        label = f"K. {opus.group(1)}" if parent.startswith("k") else f"Op. {opus.group(1)}"
        if opus.lastindex and opus.lastindex > 1 and opus.group(2):
            label += f" No. {opus.group(2)}"
        return f"{form.split(' movement')[0].title()} {label}, movement {movement.group(1)}"
    words = re.sub(r"[_\-]+", " ", re.sub(r"([a-z])([A-Z])", r"\1 \2", stem))
    return string.capwords(words)


def form_from_title(title: str, default: str) -> str:
    """The form named by a title ('Lads of the Village Reel' -> 'reel'), else ``default``."""
    lowered = title.lower()
    for form in _FORMS:
        if re.search(rf"\b{form}s?\b", lowered):
            return form
    return default


class _Timeout:
    """Raise TimeoutError after ``seconds`` (POSIX main thread only; otherwise no limit)."""

    def __init__(self, seconds: int):
        self.seconds = seconds
        self.active = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()

    def _raise(self, signum, frame):
        raise TimeoutError(f"parsing took more than {self.seconds} s")

    def __enter__(self):
        if self.active:
            self.previous = signal.signal(signal.SIGALRM, self._raise)
            signal.alarm(self.seconds)
        return self

    def __exit__(self, *exc):
        if self.active:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, self.previous)
        return False


def _round(value) -> float:
    return round(float(value), 4)


def _part_notes(part) -> list[list[float]]:
    try:
        part = part.stripTies()
    except Exception:  # music21 raises many kinds of errors on odd ties; keep the tied pieces
        pass
    notes = []
    for element in part.flatten().notes:
        length = float(element.quarterLength)
        if length <= 0 or element.duration.isGrace:
            continue
        for pitch in getattr(element, "pitches", ()):
            midi = int(round(pitch.ps))
            if 0 <= midi <= 127:
                notes.append([_round(element.offset), _round(length), midi])
    notes.sort()
    return notes


def parse_work(ref: WorkRef) -> ParsedWork:
    """Parse one work with music21 (slow: use :func:`load_work`, which caches).

    Raises:
        WorkParseError: the file does not parse, has no pitched notes, or takes too long.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with _Timeout(_PARSE_TIMEOUT_S):
                return _parse_work(ref)
        except WorkParseError:
            raise
        except Exception as err:  # music21 raises anything from KeyError to its own exceptions
            raise WorkParseError(f"{ref.work_id}: {type(err).__name__}: {err}") from err


def _parse_work(ref: WorkRef) -> ParsedWork:
    from music21 import corpus, meter, stream, tempo

    info = COLLECTIONS[ref.collection]
    score = corpus.parse(ref.path, number=ref.number) if ref.number is not None else corpus.parse(ref.path)
    if isinstance(score, stream.Opus):
        if not score.scores:
            raise WorkParseError(f"{ref.work_id}: empty opus")
        score = score.scores[0]
    metadata = score.metadata
    raw_title = metadata.title if metadata is not None else None
    if not raw_title and metadata is not None:
        raw_title = metadata.movementName
    title = _clean_title(raw_title)
    if title is None or title.lower().endswith(_SCORE_EXTS) or title == Path(ref.path).stem:
        title = _title_from_path(ref.path, info.form)  # music21 fills in the file name when there is no title
    score_composer = ((metadata.composer if metadata is not None else None) or "").split("\n")[0].strip()
    composer = info.composer
    if info.composer in ("Anonymous", "Traditional") and not info.tunes_are_works and score_composer:
        composer = score_composer  # trecento and lead sheets name their composers
    try:
        key = score.analyze("key")
        key_name = f"{key.tonic.name.replace('-', 'b')} {key.mode}"
    except Exception:
        key_name = None
    signatures = list(score.recurse().getElementsByClass(meter.TimeSignature))
    signature = signatures[0] if signatures else meter.TimeSignature("4/4")
    marks = [mark for mark in score.recurse().getElementsByClass(tempo.MetronomeMark)
             if mark.number is not None and not mark.numberImplicit]
    tempo_qpm = float(marks[0].getQuarterBPM()) if marks else None
    expanded = score
    if score.highestTime <= _EXPAND_REPEATS_MAX_QL:  # repeats matter for tunes; expanding long movements is slow
        try:
            expanded = score.expandRepeats()
            if not expanded.parts:
                expanded = score
        except Exception:
            expanded = score
    parts = list(expanded.parts) or [expanded]
    bars = []
    for measure in parts[0].getElementsByClass(stream.Measure):
        length = float(measure.quarterLength)
        if length > 0:
            bars.append([_round(measure.offset), _round(length)])
    part_notes = [notes for notes in (_part_notes(part) for part in parts) if notes]
    if not part_notes:
        raise WorkParseError(f"{ref.work_id}: no pitched notes")
    end = max(start + length for notes in part_notes for start, length, _ in notes)
    bar_ql = float(signature.barDuration.quarterLength)
    if not bars or bars[-1][0] + bars[-1][1] < end - 1e-3 - bar_ql:
        bars = [[_round(start), _round(bar_ql)] for start in _frange(0.0, end, bar_ql)]
    beat_ql = float(signature.beatDuration.quarterLength)
    return ParsedWork(
        work_id=ref.work_id, collection=ref.collection, group=ref.group, title=title, composer=composer,
        genre=info.genre, form=form_from_title(title, info.form), time_signature=signature.ratioString,
        beat_ql=beat_ql, beats_per_bar=max(1, int(round(bar_ql / beat_ql))),
        compound=signature.beatDivisionCount == 3, bars=bars, parts=part_notes,
        tempo_qpm=tempo_qpm, key=key_name)


def _frange(start: float, stop: float, step: float) -> list[float]:
    values, value = [], start
    while value < stop - 1e-6:
        values.append(value)
        value += step
    return values


# --------------------------------------------------------------------------- cache


def _cache_path(cache_dir: Path, work_id: str) -> Path:
    return cache_dir / "works" / f"{work_hash(work_id, 20)}.json.gz"


def _write_json_gz(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with gzip.open(tmp, "wt", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_work(ref: WorkRef, cache_dir: str | os.PathLike) -> ParsedWork:
    """The :class:`ParsedWork` of ``ref``, from the cache in ``cache_dir`` or parsed and cached.

    Failures are cached too, so a work that does not parse is not retried on every run.

    Raises:
        WorkParseError: the work does not parse (now or in a previous run).
    """
    path = _cache_path(Path(cache_dir), ref.work_id)
    if path.is_file():
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                cached = json.load(handle)
        except (OSError, EOFError, ValueError):
            cached = None  # a corrupt cache entry is rebuilt
        if cached and cached.get("version") == CACHE_VERSION and cached.get("work_id") == ref.work_id:
            if cached.get("error"):
                raise WorkParseError(cached["error"])
            work = ParsedWork.from_dict(cached["work"])
            work.genre = COLLECTIONS[work.collection].genre  # the table may have been edited since caching
            return work
    try:
        work = parse_work(ref)
    except WorkParseError as err:
        _write_json_gz(path, {"version": CACHE_VERSION, "work_id": ref.work_id, "error": str(err)})
        raise
    _write_json_gz(path, {"version": CACHE_VERSION, "work_id": ref.work_id, "work": work.to_dict()})
    return work
