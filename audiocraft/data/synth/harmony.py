"""Key finding and simple chord estimation on lists of notes.

Notes here are ``(start, duration, midi_pitch)`` tuples in any time unit. The key is found
with the Krumhansl-Schmuckler method (correlation of the duration-weighted pitch-class
histogram with the Krumhansl-Kessler major/minor profiles), as music21's default analysis does;
chords are the diatonic triads of that key that best cover the notes of each window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Key", "find_key", "parse_key", "Chord", "estimate_chords", "KEY_NAMES"]

_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# Tonic spellings as they appear in key signatures (flats for Db, Eb, Ab, Bb majors; sharps for C#, G# minors).
_MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
#: Names of the 24 keys, index ``tonic + 12 * (mode == 'minor')``.
KEY_NAMES = tuple(f"{t} major" for t in _MAJOR_TONICS) + tuple(f"{t} minor" for t in _MINOR_TONICS)


@dataclass(frozen=True)
class Key:
    """A key: ``tonic`` pitch class (0 = C) and ``mode`` ('major' or 'minor')."""
    tonic: int
    mode: str

    @property
    def name(self) -> str:
        """Conventional spelling, e.g. 'Bb major', 'F# minor'."""
        return KEY_NAMES[self.tonic % 12 + (12 if self.mode == "minor" else 0)]

    def transposed(self, semitones: int) -> "Key":
        return Key((self.tonic + semitones) % 12, self.mode)

    def same_signature(self, other: "Key") -> bool:
        """Same key or its relative (C major / A minor): the same notes, so a short clip can't tell them apart."""
        if self.mode == other.mode:
            return self.tonic == other.tonic
        major, minor = (self, other) if self.mode == "major" else (other, self)
        return major.tonic == (minor.tonic + 3) % 12


_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_key(name: str | None) -> Key | None:
    """A key from a name like 'F# minor', 'Bb major' or music21's 'B- major'; None if unreadable."""
    if not name:
        return None
    words = name.strip().split()
    if len(words) != 2 or words[1].lower() not in ("major", "minor") or words[0][:1].upper() not in _LETTERS:
        return None
    tonic = _LETTERS[words[0][0].upper()]
    for accidental in words[0][1:]:
        if accidental == "#":
            tonic += 1
        elif accidental in "b-":
            tonic -= 1
        else:
            return None
    return Key(tonic % 12, words[1].lower())


def _histogram(notes: Sequence[Sequence[float]]) -> np.ndarray:
    weights = np.zeros(12)
    for _, duration, pitch in notes:
        weights[int(pitch) % 12] += max(float(duration), 0.0)
    return weights


def find_key(notes: Sequence[Sequence[float]]) -> Key:
    """The most likely key of ``notes`` ((start, duration, pitch) tuples); C major if there are none."""
    weights = _histogram(notes)
    if weights.sum() <= 0:
        return Key(0, "major")
    best, best_score = Key(0, "major"), -np.inf
    centred = weights - weights.mean()
    for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        for tonic in range(12):
            rotated = np.roll(profile, tonic)
            rotated = rotated - rotated.mean()
            denominator = np.sqrt((centred ** 2).sum() * (rotated ** 2).sum())
            score = float((centred * rotated).sum() / denominator) if denominator > 0 else 0.0
            if score > best_score + 1e-12:
                best, best_score = Key(tonic, mode), score
    return best


@dataclass(frozen=True)
class Chord:
    """A triad over a time window: ``root`` pitch class, ``quality`` ('major'/'minor'/'diminished')."""
    start: float
    end: float
    root: int
    quality: str

    @property
    def pitch_classes(self) -> tuple[int, int, int]:
        third = {"major": 4, "minor": 3, "diminished": 3}[self.quality]
        fifth = 6 if self.quality == "diminished" else 7
        return self.root % 12, (self.root + third) % 12, (self.root + fifth) % 12


# Diatonic triads as (degree semitones above tonic, quality, prior weight).
_MAJOR_TRIADS = ((0, "major", 1.0), (7, "major", 0.8), (5, "major", 0.7), (9, "minor", 0.4), (2, "minor", 0.35),
                 (4, "minor", 0.15))
_MINOR_TRIADS = ((0, "minor", 1.0), (7, "major", 0.8), (5, "minor", 0.6), (3, "major", 0.45), (8, "major", 0.4),
                 (10, "major", 0.35), (7, "minor", 0.15))


def estimate_chords(notes: Sequence[Sequence[float]], windows: Sequence[tuple[float, float]], key: Key
                    ) -> list[Chord]:
    """One diatonic triad of ``key`` per window, the one that best explains the notes heard there.

    Each candidate scores the duration-weighted share of the window's notes that are chord
    tones, plus a bonus when the lowest note is the root and a prior favouring I, V and IV.
    A window without notes repeats the previous chord (the tonic at the start).

    Args:
        notes: (start, duration, pitch) tuples.
        windows: (start, end) of each chord window, in the notes' time unit, in order.
        key: the key whose triads are candidates.
    Returns:
        One :class:`Chord` per window.
    """
    triads = _MAJOR_TRIADS if key.mode == "major" else _MINOR_TRIADS
    candidates = [((key.tonic + degree) % 12, quality, prior) for degree, quality, prior in triads]
    ordered = sorted(notes, key=lambda note: note[0])
    chords: list[Chord] = []
    previous = (candidates[0][0], candidates[0][1])
    for start, end in windows:
        weights = np.zeros(12)
        lowest, lowest_pitch = None, 999
        for onset, duration, pitch in ordered:
            if onset >= end:
                break
            overlap = min(end, onset + duration) - max(start, onset)
            if overlap <= 0:
                continue
            accent = 1.5 if abs(onset - start) < 1e-6 else 1.0
            weights[int(pitch) % 12] += overlap * accent
            if pitch < lowest_pitch:
                lowest, lowest_pitch = int(pitch) % 12, pitch
        total = weights.sum()
        if total <= 0:
            chords.append(Chord(start, end, previous[0], previous[1]))
            continue
        best, best_score = previous, -np.inf
        for root, quality, prior in candidates:
            chord_tones = Chord(0, 0, root, quality).pitch_classes
            coverage = sum(weights[pc] for pc in chord_tones) / total
            score = coverage + 0.25 * prior + (0.15 if lowest == root else 0.0) + 0.1 * weights[root] / total
            if (root, quality) == previous:
                score += 0.05  # harmonic rhythm: prefer to keep the chord when it fits as well
            if score > best_score:
                best, best_score = (root, quality), score
        chords.append(Chord(start, end, best[0], best[1]))
        previous = best
    return chords
