"""Seeded clip plans: which bars of a work, at what tempo and pitch, played by whom.

A :class:`ClipPlan` holds every random choice of a clip, so rendering is a pure function of
``(ParsedWork, ClipPlan)`` and a plan's hash tells whether a clip on disk is up to date.
:func:`plan_clips` makes the plans of one work from ``(seed, work_id, clip index)`` only,
which keeps them stable when a run is extended with more hours or works.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import asdict, dataclass
from typing import Sequence

from .corpus import ParsedWork, work_hash
from .instruments import (ACCOMPANIMENT_BASS, ACCOMPANIMENT_CHORDS, ENSEMBLES, SOLO_MELODIC, SOLO_POLYPHONIC, STYLES,
                          Style, instrument)

__all__ = ["ClipPlan", "plan_clips", "assign_split", "pulse", "SPLITS", "DYNAMICS"]

#: Split names, in the order of the proportions given to :func:`assign_split`.
SPLITS = ("train", "valid", "test")
#: Dynamic levels and their base MIDI velocity.
DYNAMICS = {"pp": 42, "p": 56, "mp": 70, "mf": 84, "f": 98, "ff": 112}
_DYNAMICS_WEIGHTS = {"pp": 0.5, "p": 1.5, "mp": 2.0, "mf": 3.0, "f": 2.0, "ff": 0.7}
_MIN_BPM, _MAX_BPM = 50, 180
_MAX_CLIPS_PER_WORK = 4
_SECONDS_PER_EXTRA_CLIP = 60.0
# Usual tempo (beats per minute) of each source genre when the score has no metronome mark.
_GENRE_BPM = {"baroque": (66, 92), "renaissance": (84, 120), "medieval": (60, 96), "classical": (72, 132),
              "romantic": (60, 112), "ragtime": (80, 104), "hymn": (60, 84), "folk": (84, 132)}


@dataclass
class ClipPlan:
    """Every choice that defines one clip.

    Attributes:
        clip_id: file stem, unique in the dataset; split: 'train', 'valid' or 'test'.
        work_id: source work; index: clip number within the work.
        bars: source bar indices in playing order (may wrap to the start for short works).
        beat_ql: the beat in quarter lengths (1 = quarter note, 1.5 = dotted quarter in 6/8).
        beats_per_bar: beats in a full bar; bpm: tempo in beats per minute.
        transpose: semitones added to every pitch (-5..+6).
        texture: 'solo' (one instrument plays all parts), 'ensemble' (a named group splits the
            parts), 'accompanied' (melody + generated chords/bass, no drums) or 'band' (with drums).
        style: :data:`~.instruments.STYLES` key for bands, else equal to ``texture``.
        instrument, family: the main instrument (or ensemble) and its family label.
        part_instruments: instrument of each source part ordered from the highest part to the
            lowest (empty for band/accompanied, where roles decide).
        lead, chords, chord_pattern, bass, bass_pattern: band/accompaniment roles (None if unused).
        drums, kit: drum pattern and kit names (None without drums); swing: triplet feel.
        dynamics: a key of :data:`DYNAMICS`; reverb: MIDI CC91 send level (0-127).
        seed: seed of the performance details (velocity and timing humanisation).
        content_seconds: length of the bars; duration: clip length in seconds, bars plus a tail
            where the last notes ring out; num_samples: ``round(duration * sample_rate)``.
    """
    clip_id: str
    split: str
    work_id: str
    index: int
    bars: list[int]
    beat_ql: float
    beats_per_bar: int
    bpm: int
    transpose: int
    texture: str
    style: str
    instrument: str
    family: str
    part_instruments: list[str]
    lead: str | None
    chords: str | None
    chord_pattern: str | None
    bass: str | None
    bass_pattern: str | None
    drums: str | None
    kit: str | None
    swing: bool
    dynamics: str
    reverb: int
    seed: int
    content_seconds: float
    duration: float
    num_samples: int
    sample_rate: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClipPlan":
        return cls(**data)

    @property
    def plan_hash(self) -> str:
        """Digest of the plan: a clip on disk made from another plan must be rendered again."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def assign_split(group: str, proportions: Sequence[float] = (0.9, 0.05, 0.05)) -> str:
    """Split of a work group, from a hash of its name: deterministic and independent of the seed.

    Raises:
        ValueError: ``proportions`` is not three non-negative numbers with a positive sum.
    """
    if len(proportions) != len(SPLITS) or any(p < 0 for p in proportions) or sum(proportions) <= 0:
        raise ValueError(f"assign_split: `proportions` must be 3 non-negative numbers (train, valid, test) with a "
                         f"positive sum, got {list(proportions)!r}.")
    position = int(work_hash(group, 12), 16) / 16 ** 12 * sum(proportions)
    cumulative = 0.0
    for name, share in zip(SPLITS, proportions):
        cumulative += share
        if position < cumulative:
            return name
    return SPLITS[-1]


def pulse(work: ParsedWork) -> tuple[float, int]:
    """``(beat_ql, beats_per_bar)`` used for tempo: music21's beat, but quarter notes in x/2 meters.

    Half-note beats (2/2, 4/2, 3/2) are counted in quarter notes so that bpm stays comparable
    across notations; compound meters keep their dotted-quarter beat.
    """
    if not work.compound and work.beat_ql > 1.0:
        factor = work.beat_ql
        return 1.0, max(1, int(round(work.beats_per_bar * factor)))
    return work.beat_ql, work.beats_per_bar


def _slug(text: str, limit: int = 32) -> str:
    ascii_text = text.encode("ascii", "ignore").decode("ascii").lower()
    return "-".join(re.findall(r"[a-z0-9]+", ascii_text))[:limit].strip("-") or "untitled"


def _nominal_bpm(work: ParsedWork, beat_ql: float, rng: random.Random) -> float:
    if work.tempo_qpm:
        return work.tempo_qpm / beat_ql
    low, high = _GENRE_BPM.get(work.genre, (72, 120))
    if work.compound:  # dotted-quarter beats are slower
        low, high = low * 0.7, high * 0.75
    return rng.uniform(low, high)


def _fitting_styles(work: ParsedWork, beats_per_bar: int) -> list[Style]:
    meter = "compound" if work.compound else "simple"
    return [style for style in STYLES.values() if style.meter == meter and beats_per_bar in style.beats]


def _phrase_starts(work: ParsedWork, bar_ql: float) -> list[int]:
    full = [i for i, (_, length) in enumerate(work.bars) if abs(length - bar_ql) < 1e-3]
    if not full:
        return [0]
    first = full[0]
    phrases = [i for i in full if (i - first) % 4 == 0]
    return phrases or full


def _choose_bars(work: ParsedWork, start: int, seconds_per_ql: float, target: float, limit: float) -> list[int]:
    """Bars from ``start`` until ``target`` seconds (wrapping to the first full bar), never past ``limit``."""
    bars, total, index = [], 0.0, start
    restart = next((i for i, (_, length) in enumerate(work.bars) if length >= max(b[1] for b in work.bars) - 1e-3), 0)
    for _ in range(10_000):
        length = work.bars[index][1] * seconds_per_ql
        if bars and total + length > limit:
            break
        bars.append(index)
        total += length
        if total >= target:
            break
        index = index + 1 if index + 1 < len(work.bars) else restart
    return bars


def _pick_texture(work: ParsedWork, rng: random.Random, styles: list[Style]) -> str:
    monophonic = len(work.parts) == 1
    options = {"solo": 0.2, "accompanied": 0.35, "band": 0.45} if monophonic else \
        {"solo": 0.35, "ensemble": 0.3, "band": 0.35}
    if not styles:
        options.pop("band")
    names = sorted(options)
    return rng.choices(names, weights=[options[name] for name in names])[0]


def plan_clips(work: ParsedWork, seed: int, sample_rate: int, clip_seconds: tuple[float, float] = (10.0, 30.0),
               proportions: Sequence[float] = (0.9, 0.05, 0.05), balance_families: bool = False) -> list[ClipPlan]:
    """The clips of one work (1 to 4: longer works give more, from different sections).

    Args:
        work: the parsed work.
        seed: dataset seed; with the work id and clip index it seeds every choice.
        sample_rate: output sample rate in Hz (fixes ``num_samples``).
        clip_seconds: (shortest, longest) clip duration in seconds, tail included.
        proportions: train/valid/test shares for :func:`assign_split`.
        balance_families: draw the main instrument's family first, uniformly among the families the
            texture offers, then an instrument of that family. By default instruments are drawn
            uniformly, and as most melodic instruments are winds, a third of the clips are woodwind.
    Returns:
        The plans, in clip index order.
    """
    shortest, longest = clip_seconds
    if not 0 < shortest <= longest:
        raise ValueError(f"plan_clips: `clip_seconds` must be (shortest, longest) with 0 < shortest <= longest, "
                         f"got {clip_seconds!r}.")
    split = assign_split(work.group, proportions)
    beat_ql, beats_per_bar = pulse(work)
    bar_ql = beat_ql * beats_per_bar
    tail = 1.0 if shortest >= 5 else 0.5
    base_rng = random.Random(f"{seed}|{work.work_id}")
    nominal = _nominal_bpm(work, beat_ql, base_rng)
    total_ql = work.bars[-1][0] + work.bars[-1][1] - work.bars[0][0]
    work_seconds = total_ql / beat_ql * 60.0 / nominal
    count = min(_MAX_CLIPS_PER_WORK, 1 + int(work_seconds // _SECONDS_PER_EXTRA_CLIP))
    starts = _phrase_starts(work, work.bar_ql)
    styles = _fitting_styles(work, beats_per_bar)
    plans = []
    for index in range(count):
        rng = random.Random(f"{seed}|{work.work_id}|{index}")
        section = [s for s in starts if index * len(work.bars) / count <= s < (index + 1) * len(work.bars) / count]
        start = rng.choice(section) if section and index > 0 else (section[0] if section else starts[0])
        texture = _pick_texture(work, rng, styles)
        plan = _choose_players(work, texture, styles, rng, balance_families)
        if plan["style_obj"] is not None:
            bpm = rng.randint(*plan["style_obj"].bpm)
        else:
            bpm = nominal * math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
        bpm = int(round(min(_MAX_BPM, max(_MIN_BPM, bpm))))
        seconds_per_ql = 60.0 / (bpm * beat_ql)
        target = rng.uniform(shortest, longest) - tail
        bars = _choose_bars(work, start, seconds_per_ql, target, longest - tail)
        content = sum(work.bars[i][1] for i in bars) * seconds_per_ql
        duration = content + tail
        num_samples = int(round(duration * sample_rate))
        dynamics = rng.choices(sorted(_DYNAMICS_WEIGHTS), weights=[_DYNAMICS_WEIGHTS[k] for k in
                                                                   sorted(_DYNAMICS_WEIGHTS)])[0]
        clip_id = f"{_slug(work.collection, 12)}_{_slug(work.title)}_{work_hash(work.work_id, 8)}_{index}"
        plans.append(ClipPlan(
            clip_id=clip_id, split=split, work_id=work.work_id, index=index, bars=bars, beat_ql=beat_ql,
            beats_per_bar=beats_per_bar, bpm=bpm, transpose=rng.randint(-5, 6), texture=texture,
            style=plan["style"], instrument=plan["instrument"], family=plan["family"],
            part_instruments=plan["parts"], lead=plan["lead"], chords=plan["chords"],
            chord_pattern=plan["chord_pattern"], bass=plan["bass"], bass_pattern=plan["bass_pattern"],
            drums=plan["drums"], kit=plan["kit"], swing=plan["swing"], dynamics=dynamics,
            reverb=rng.randint(20, 80), seed=rng.randrange(2 ** 31), content_seconds=round(content, 6),
            duration=num_samples / sample_rate, num_samples=num_samples, sample_rate=sample_rate))
    return plans


def _pick(options: Sequence, rng: random.Random, balance: bool, family=lambda name: instrument(name).family):
    """One of ``options``; with ``balance``, a family first (uniformly among theirs), then an option of it."""
    if balance:
        chosen = rng.choice(sorted({family(option) for option in options}))
        options = [option for option in options if family(option) == chosen]
    return rng.choice(options)


def _choose_players(work: ParsedWork, texture: str, styles: list[Style], rng: random.Random,
                    balance: bool = False) -> dict:
    """Instrument roles for a texture: a dict of the ClipPlan role fields plus 'style_obj'.

    ``balance``: draw the main instrument by family first (see :func:`plan_clips`)."""
    roles = dict(style=texture, style_obj=None, parts=[], lead=None, chords=None, chord_pattern=None, bass=None,
                 bass_pattern=None, drums=None, kit=None, swing=False)
    num_parts = len(work.parts)
    if texture == "solo":
        name = _pick(SOLO_MELODIC if num_parts == 1 else SOLO_POLYPHONIC, rng, balance)
        roles.update(parts=[name] * num_parts, instrument=name, family=instrument(name).family)
    elif texture == "ensemble":
        ensemble = _pick(ENSEMBLES, rng, balance, family=lambda option: option.family)
        members = ensemble.members
        parts = [members[round(i * (len(members) - 1) / max(1, num_parts - 1))] for i in range(num_parts)]
        roles.update(parts=parts, instrument=ensemble.name, family=ensemble.family)
    elif texture == "accompanied":
        lead = _pick(SOLO_MELODIC, rng, balance)
        chords = rng.choice([name for name in ACCOMPANIMENT_CHORDS if name != lead])
        if work.compound:
            patterns = ("arpeggio", "block", "strum")
        elif pulse(work)[1] == 3:
            patterns = ("waltz", "arpeggio", "block")
        else:
            patterns = ("block", "arpeggio", "beats", "strum")
        with_bass = rng.random() < 0.6
        roles.update(lead=lead, chords=chords, chord_pattern=rng.choice(patterns),
                     bass=rng.choice(ACCOMPANIMENT_BASS) if with_bass else None,
                     bass_pattern="root" if with_bass else None, instrument=lead, family=instrument(lead).family)
    elif texture == "band":
        style = rng.choice(styles)
        lead = _pick(style.leads, rng, balance)
        chords = rng.choice([name for name in style.chords if name != lead] or style.chords)
        roles.update(style=style.name, style_obj=style, lead=lead, chords=chords,
                     chord_pattern=rng.choice(style.chord_patterns), bass=rng.choice(style.basses),
                     bass_pattern=rng.choice(style.bass_patterns), drums=rng.choice(style.drums),
                     kit=rng.choice(style.kits), swing=style.swing, instrument=lead,
                     family=instrument(lead).family)
    else:
        raise ValueError(f"_choose_players: unknown texture {texture!r}")
    return roles
