"""Turn a :class:`~.plan.ClipPlan` and its work into timed MIDI note events.

The clip's bars are laid end to end (score time in quarter lengths, ql), pitches are
transposed, parts are given to instruments and moved by octaves into their range; for
'accompanied' and 'band' textures a chord track, a bass line and a drum loop are generated
from the estimated harmony. Times are then converted to seconds at the plan's tempo and
lightly humanised with the plan's seed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from statistics import median

from .corpus import ParsedWork
from .harmony import Chord, Key, estimate_chords, find_key, parse_key
from .instruments import DRUM_KITS, DRUM_PATTERNS, instrument
from .plan import DYNAMICS, ClipPlan

__all__ = ["Channel", "Performance", "arrange", "DRUM_CHANNEL"]

#: MIDI channel of the drums (channel 10 in 1-based MIDI numbering).
DRUM_CHANNEL = 9
_STEP_VELOCITY = {"X": 1.2, "x": 1.0, "o": 0.65}
_ROLE_VOLUME = {"part": 100, "lead": 110, "chords": 76, "bass": 98, "drums": 82}
_ROLE_VELOCITY = {"part": 0, "lead": 8, "chords": -14, "bass": -2, "drums": -4}


@dataclass
class Channel:
    """A MIDI channel set-up: GM ``program`` in ``bank`` (128 = drum kits), CC7 volume, CC91 reverb."""
    channel: int
    program: int
    bank: int
    volume: int
    reverb: int
    role: str
    name: str


@dataclass
class Performance:
    """What FluidSynth plays for one clip.

    Attributes:
        channels: channel set-ups.
        notes: ``(start_s, end_s, channel, pitch, velocity)`` sorted by start, in seconds.
        num_samples: clip length in samples at ``sample_rate`` Hz.
        key: the key of the transposed clip: Krumhansl-Schmuckler on its notes, replaced by the
            (transposed) key music21 found for the whole work when both share a key signature.
        instruments: instrument names heard, main first.
    """
    channels: list[Channel]
    notes: list[tuple[float, float, int, int, int]]
    num_samples: int
    sample_rate: int
    key: Key
    instruments: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- score material


def _clip_parts(work: ParsedWork, plan: ClipPlan) -> tuple[list[list[list[float]]], list[float]]:
    """Notes of each part laid on the clip timeline (ql from the clip start), and the bar start times."""
    parts: list[list[list[float]]] = [[] for _ in work.parts]
    bar_starts, position = [], 0.0
    content_end = sum(work.bars[i][1] for i in plan.bars)
    for j, bar in enumerate(plan.bars):
        src_start, src_len = work.bars[bar]
        contiguous = j + 1 < len(plan.bars) and plan.bars[j + 1] == bar + 1
        bar_starts.append(position)
        for part_index, notes in enumerate(work.parts):
            for start, length, pitch in notes:
                if src_start - 1e-6 <= start < src_start + src_len - 1e-6:
                    new_start = position + start - src_start
                    end = new_start + length
                    end = min(end, content_end) if contiguous else min(end, position + src_len)
                    if end - new_start > 1e-3:
                        parts[part_index].append([new_start, end - new_start, int(pitch) + plan.transpose])
        position += src_len
    return parts, bar_starts


def _fit_range(notes: list[list[float]], low: int, high: int) -> list[list[float]]:
    """Shift a part by octaves so its median sits inside [low, high], then fold stray notes in."""
    if not notes:
        return notes
    centre = median(n[2] for n in notes)
    shift = 0
    while centre + shift > high - 5 and centre + shift - 12 >= low:
        shift -= 12
    while centre + shift < low + 5 and centre + shift + 12 <= high:
        shift += 12
    fitted = []
    for start, length, pitch in notes:
        pitch = pitch + shift
        while pitch > high and pitch - 12 >= low:
            pitch -= 12
        while pitch < low and pitch + 12 <= high:
            pitch += 12
        fitted.append([start, length, pitch])
    return fitted


def _fold(pitch: int, low: int, high: int) -> int:
    while pitch > high and pitch - 12 >= low:
        pitch -= 12
    while pitch < low and pitch + 12 <= high:
        pitch += 12
    return pitch


def _order_by_height(parts: list[list[list[float]]]) -> list[int]:
    heights = [sum(n[2] for n in notes) / len(notes) if notes else -1 for notes in parts]
    return sorted(range(len(parts)), key=lambda i: -heights[i])


# ----------------------------------------------------------------------------- generated accompaniment


def _windows(bar_starts: list[float], bar_lengths: list[float], beat: float, beats_per_bar: int):
    windows = []
    for start, length in zip(bar_starts, bar_lengths):
        halves = beats_per_bar == 4 and abs(length - 4 * beat) < 1e-3
        if halves:
            windows += [(start, start + 2 * beat), (start + 2 * beat, start + length)]
        else:
            windows.append((start, start + length))
    return windows


def _voicing(chord: Chord, centre: float) -> list[int]:
    """Close-position triad (plus octave of its lowest note) whose mean pitch is nearest ``centre``."""
    best, best_distance = None, None
    tones = chord.pitch_classes
    for rotation in range(3):
        order = tones[rotation:] + tones[:rotation]
        for base_octave in (3, 4, 5):
            notes, previous = [], None
            for pc in order:
                pitch = 12 * base_octave + pc
                while previous is not None and pitch <= previous:
                    pitch += 12
                notes.append(pitch)
                previous = pitch
            distance = abs(sum(notes) / 3 - centre)
            if best_distance is None or distance < best_distance:
                best, best_distance = notes, distance
    return best


def _bass_pitch(pc: int) -> int:
    pitch = 36 + (pc - 36) % 12  # C2..B2
    return pitch - 12 if pitch > 43 else pitch


def _chord_at(chords: list[Chord], time: float) -> Chord:
    for chord in chords:
        if chord.start - 1e-6 <= time < chord.end - 1e-6:
            return chord
    return chords[-1]


_CHORD_FIGURES = {  # pattern -> (cycle in beats, [(onset beats, duration beats, accent)])
    "beats": (1, [(0, 0.9, 1.0)]),
    "offbeat": (1, [(0.5, 0.3, 0.9)]),
    "charleston": (2, [(0, 0.45, 1.0), (1.5, 0.4, 0.9)]),
    "bossa": (4, [(0, 0.5, 1.0), (0.75, 0.5, 0.8), (1.5, 0.5, 0.85), (2.5, 0.5, 0.8), (3, 0.5, 0.85)]),
    "oompah": (2, [(1, 0.5, 0.9)]),
    "waltz": (3, [(1, 0.8, 0.85), (2, 0.8, 0.8)]),
}


def _chord_track(chords: list[Chord], pattern: str, beat: float, compound: bool, total: float,
                 centre: float) -> list[tuple[float, float, int, float]]:
    """(start_ql, duration_ql, pitch, accent) of a chord accompaniment figure."""
    events = []
    if pattern == "block":
        for chord in chords:
            for pitch in _voicing(chord, centre):
                events.append((chord.start, (chord.end - chord.start) * 0.98, pitch, 0.9))
        return events
    if pattern in ("strum", "arpeggio", "power"):
        step = beat / 3 if compound else beat / 2
        steps = int(round(total / step))
        for k in range(steps):
            time = k * step
            chord = _chord_at(chords, time)
            voicing = _voicing(chord, centre)
            on_beat = abs((time / beat) - round(time / beat)) < 1e-6
            if pattern == "arpeggio":
                sequence = voicing + [voicing[0] + 12]
                cycle = [0, 1, 2, 1] if not compound else [0, 1, 2]
                events.append((time, step * 1.8, sequence[cycle[k % len(cycle)]], 1.0 if on_beat else 0.8))
            elif pattern == "power":
                root = _bass_pitch(chord.root) + 12
                for pitch in (root, root + 7, root + 12):
                    events.append((time, step * 0.9, pitch, 1.0 if on_beat else 0.85))
            else:
                if not compound and not on_beat and k % 4 == 1:
                    continue  # strum pattern down, (skip), down-up
                for offset, pitch in enumerate(voicing):
                    events.append((time + offset * 0.012 * beat, step * 0.95, pitch, 1.0 if on_beat else 0.75))
        return events
    cycle, figure = _CHORD_FIGURES[pattern]
    position = 0.0
    while position < total - 1e-6:
        for onset, length, accent in figure:
            time = position + onset * beat
            if time < total - 1e-6:
                for pitch in _voicing(_chord_at(chords, time), centre):
                    events.append((time, length * beat, pitch, accent))
        position += cycle * beat
    return events


def _bass_track(chords: list[Chord], pattern: str, beat: float, beats_per_bar: int, compound: bool,
                total: float) -> list[tuple[float, float, int, float]]:
    """(start_ql, duration_ql, pitch, accent) of a generated bass line."""
    events = []
    if pattern == "root":
        return [(c.start, (c.end - c.start) * 0.95, _bass_pitch(c.root), 1.0) for c in chords]
    if pattern in ("eighths", "offbeat"):
        step = beat / 2
        for k in range(int(round(total / step))):
            time = k * step
            if pattern == "offbeat" and k % 2 == 0:
                continue
            root = _bass_pitch(_chord_at(chords, time).root)
            events.append((time, step * 0.85, root + (12 if pattern == "offbeat" and k % 4 == 3 else 0),
                           1.0 if k % 2 == 0 else 0.85))
        return events
    if pattern == "bossa":
        position = 0.0
        while position < total - 1e-6:
            chord = _chord_at(chords, position)
            root = _bass_pitch(chord.root)
            events.append((position, 1.4 * beat, root, 1.0))
            if position + 1.5 * beat < total:
                fifth = root + 7 if root + 7 <= 50 else root - 5
                events.append((position + 1.5 * beat, 0.45 * beat, fifth, 0.85))
            position += 2 * beat
        return events
    if pattern == "walking":
        for k in range(int(round(total / beat))):
            time = k * beat
            chord = _chord_at(chords, time)
            root = _bass_pitch(chord.root)
            following = _chord_at(chords, time + beat) if time + beat < total else chord
            if following is not chord or abs(time + beat - chord.end) < 1e-6:
                pitch = _bass_pitch(following.root) + (1 if k % 2 else -1)
            else:
                steps = (0, chord.pitch_classes[1], chord.pitch_classes[2], 0)
                pitch = root + (steps[k % 4] - chord.root) % 12
            events.append((time, beat * 0.9, pitch, 1.0 if k % 2 == 0 else 0.85))
        return events
    # root_fifth: root on the first strong beat of each chord, fifth on the next ones.
    stride = 1 if (compound or beats_per_bar == 3) else 2
    if beats_per_bar == 3 and not compound:
        stride = 3
    for k in range(0, int(round(total / beat)), stride):
        time = k * beat
        chord = _chord_at(chords, time)
        root = _bass_pitch(chord.root)
        pitch = root if abs(time - chord.start) < 1e-6 else (root + 7 if root + 7 <= 50 else root - 5)
        events.append((time, stride * beat * 0.9, pitch, 1.0))
    return events


def _drum_track(pattern_name: str, beat: float, total: float, with_crash: bool):
    pattern = DRUM_PATTERNS[pattern_name]
    step = beat / pattern.steps_per_beat
    length = pattern.steps_per_beat * pattern.beats
    events = []
    for k in range(int(round(total / step))):
        for note, steps in pattern.lanes:
            symbol = steps[k % length]
            if symbol != ".":
                events.append((k * step, step, note, _STEP_VELOCITY[symbol]))
    if with_crash:
        events.append((0.0, beat, 49, 1.0))
    return events


# ----------------------------------------------------------------------------- assembly


def arrange(work: ParsedWork, plan: ClipPlan) -> Performance:
    """The note events of a clip (see the module docstring). Deterministic given ``plan.seed``."""
    rng = random.Random(plan.seed)
    beat = plan.beat_ql
    parts, bar_starts = _clip_parts(work, plan)
    bar_lengths = [work.bars[i][1] for i in plan.bars]
    total = sum(bar_lengths)
    all_notes = [n for notes in parts for n in notes]
    key = find_key(all_notes)
    whole_work = parse_key(work.key)
    if whole_work is not None and whole_work.transposed(plan.transpose).same_signature(key):
        key = whole_work.transposed(plan.transpose)  # the whole work settles major vs relative minor
    order = _order_by_height(parts)
    tracks: list[tuple[str, str, list[tuple[float, float, int, float]]]] = []  # (role, instrument, events)

    def add(role: str, name: str, events) -> None:
        spec = instrument(name)
        if events and isinstance(events[0], list):  # score material: the part moves by octaves as a whole
            events = [(s, d, p, 1.0) for s, d, p in _fit_range(events, spec.low, spec.high)]
        else:  # generated material: fold each note into range
            events = [(s, d, _fold(int(p), spec.low, spec.high), a) for s, d, p, a in events]
        tracks.append((role, name, events))

    if plan.texture in ("solo", "ensemble"):
        for rank, part_index in enumerate(order):
            add("part", plan.part_instruments[min(rank, len(plan.part_instruments) - 1)], parts[part_index])
        return _to_performance(plan, tracks, key, rng)
    lead_notes = parts[order[0]]
    others = [parts[i] for i in order[1:] if parts[i]]
    add("lead", plan.lead, lead_notes)
    lead_low = min((n[2] for n in lead_notes), default=72)
    centre = max(50.0, min(64.0, lead_low - 4.0))
    windows = _windows(bar_starts, bar_lengths, beat, plan.beats_per_bar)
    chords = estimate_chords(all_notes, windows, key) if windows else []
    bottom = others[-1] if (others and plan.bass is not None) else None
    inner = others[:-1] if bottom is not None else others
    if inner:  # the score has its own harmony: its inner voices go to the chord instrument
        add("chords", plan.chords, [list(n) for notes in inner for n in notes])
    elif chords:
        add("chords", plan.chords, _chord_track(chords, plan.chord_pattern, beat, work.compound, total, centre))
    if bottom is not None:
        spec = instrument(plan.bass)
        add("bass", plan.bass, _fit_range([list(n) for n in bottom], spec.low, min(spec.high, 55)))
    elif plan.bass is not None and chords:
        add("bass", plan.bass, _bass_track(chords, plan.bass_pattern, beat, plan.beats_per_bar, work.compound,
                                           total))
    if plan.drums is not None:
        tracks.append(("drums", plan.kit, _drum_track(plan.drums, beat, total,
                                                      plan.style in ("rock", "pop", "electronic"))))
    return _to_performance(plan, tracks, key, rng)


def _swing(time: float, beat: float) -> float:
    position = time / beat
    whole = int(position + 1e-6)
    if abs(position - whole - 0.5) < 1e-6:
        return (whole + 2 / 3) * beat
    return time


def _to_performance(plan: ClipPlan, tracks, key: Key, rng: random.Random) -> Performance:
    seconds_per_ql = 60.0 / (plan.bpm * plan.beat_ql)
    content_end = plan.content_seconds
    base = DYNAMICS[plan.dynamics]
    channels: dict[tuple[str, str], Channel] = {}
    notes = []
    free = [c for c in range(16) if c != DRUM_CHANNEL]
    for role, name, events in tracks:
        if not events:
            continue
        slot = (role if role in ("drums",) else "melodic", name)
        if slot not in channels:
            if role == "drums":
                channels[slot] = Channel(DRUM_CHANNEL, DRUM_KITS[name], 128, _ROLE_VOLUME[role], plan.reverb,
                                         role, f"{name} drum kit")
            else:
                if not free:
                    continue
                channels[slot] = Channel(free.pop(0), instrument(name).program, 0, _ROLE_VOLUME[role],
                                         plan.reverb, role, name)
        channel = channels[slot].channel
        jitter = 0.0 if role == "drums" else 0.006
        for start, length, pitch, accent in events:
            if plan.swing and role != "drums":
                end = _swing(start + length, plan.beat_ql)
                start = _swing(start, plan.beat_ql)
                length = max(end - start, 0.05)
            position = start / plan.beat_ql
            metric = 6 if abs(position - round(position)) < 1e-6 and round(position) % plan.beats_per_bar == 0 else \
                (2 if abs(position - round(position)) < 1e-6 else -3)
            velocity = base * accent + _ROLE_VELOCITY[role] + metric + rng.gauss(0, 4)
            velocity = int(min(127, max(1, round(velocity))))
            onset = max(0.0, start * seconds_per_ql + (rng.gauss(0, jitter) if jitter else 0.0))
            if onset >= content_end:
                continue
            offset = min(start * seconds_per_ql + max(length * seconds_per_ql, 0.05), content_end + 0.3)
            offset = max(offset, onset + 0.03)
            notes.append((round(onset, 6), round(offset, 6), channel, int(min(127, max(0, pitch))), velocity))
    notes.sort()
    heard = []
    for (_, name), setup in channels.items():
        label = setup.name
        if label not in heard:
            heard.append(label)
    return Performance(channels=list(channels.values()), notes=notes, num_samples=plan.num_samples,
                       sample_rate=plan.sample_rate, key=key, instruments=heard)
