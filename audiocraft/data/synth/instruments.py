"""General MIDI instruments, ensembles, drum patterns and band styles used by the arranger.

All tables are plain data: an :class:`Instrument` is a GM program with the name used in
captions, a family label (for a classifier) and a comfortable MIDI range; a
:class:`DrumPattern` is a loop of step strings on GM drum notes (channel 10); a
:class:`Style` is a band recipe (groove, tempo range, instrument choices) for making pop,
rock, bossa nova, swing, ... versions of corpus works.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Instrument", "INSTRUMENTS", "FAMILIES", "SOLO_POLYPHONIC", "SOLO_MELODIC", "Ensemble", "ENSEMBLES",
           "ACCOMPANIMENT_CHORDS", "ACCOMPANIMENT_BASS", "DrumPattern", "DRUM_PATTERNS", "DRUM_KITS", "Style",
           "STYLES", "instrument"]

#: Instrument families, the ``instrument_family`` label of a clip.
FAMILIES = ("keyboard", "strings", "woodwind", "brass", "guitar", "mallet", "voice", "synth", "organ")


@dataclass(frozen=True)
class Instrument:
    """A General MIDI melodic instrument.

    Attributes:
        name: caption name ('acoustic guitar').
        program: GM program number, 0-based (0 = acoustic grand piano).
        family: one of :data:`FAMILIES`.
        low, high: playable MIDI pitch range; parts are moved by octaves to fit it.
        sustained: notes hold their level (bowed, blown, organ, pad) rather than decay.
    """
    name: str
    program: int
    family: str
    low: int
    high: int
    sustained: bool


_TABLE = (
    Instrument("piano", 0, "keyboard", 21, 108, False),
    Instrument("electric piano", 4, "keyboard", 28, 103, False),
    Instrument("harpsichord", 6, "keyboard", 29, 89, False),
    Instrument("celesta", 8, "mallet", 60, 108, False),
    Instrument("music box", 10, "mallet", 60, 103, False),
    Instrument("vibraphone", 11, "mallet", 53, 89, False),
    Instrument("marimba", 12, "mallet", 45, 96, False),
    Instrument("xylophone", 13, "mallet", 65, 108, False),
    Instrument("organ", 16, "organ", 36, 96, True),
    Instrument("rock organ", 18, "organ", 36, 96, True),
    Instrument("church organ", 19, "organ", 24, 96, True),
    Instrument("accordion", 21, "organ", 41, 89, True),
    Instrument("nylon guitar", 24, "guitar", 40, 83, False),
    Instrument("acoustic guitar", 25, "guitar", 40, 83, False),
    Instrument("jazz guitar", 26, "guitar", 40, 83, False),
    Instrument("electric guitar", 27, "guitar", 40, 86, False),
    Instrument("overdriven guitar", 29, "guitar", 40, 86, True),
    Instrument("acoustic bass", 32, "strings", 28, 55, False),
    Instrument("electric bass", 33, "guitar", 28, 60, False),
    Instrument("fretless bass", 35, "guitar", 28, 60, False),
    Instrument("synth bass", 38, "synth", 24, 60, False),
    Instrument("violin", 40, "strings", 55, 100, True),
    Instrument("viola", 41, "strings", 48, 88, True),
    Instrument("cello", 42, "strings", 36, 76, True),
    Instrument("contrabass", 43, "strings", 28, 60, True),
    Instrument("pizzicato strings", 45, "strings", 28, 96, False),
    Instrument("harp", 46, "strings", 24, 103, False),
    Instrument("string ensemble", 48, "strings", 28, 96, True),
    Instrument("synth strings", 50, "synth", 36, 96, True),
    Instrument("choir", 52, "voice", 43, 81, True),
    Instrument("trumpet", 56, "brass", 54, 84, True),
    Instrument("trombone", 57, "brass", 40, 72, True),
    Instrument("tuba", 58, "brass", 28, 58, True),
    Instrument("french horn", 60, "brass", 41, 77, True),
    Instrument("brass section", 61, "brass", 36, 84, True),
    Instrument("soprano saxophone", 64, "woodwind", 56, 88, True),
    Instrument("alto saxophone", 65, "woodwind", 49, 81, True),
    Instrument("tenor saxophone", 66, "woodwind", 44, 76, True),
    Instrument("baritone saxophone", 67, "woodwind", 36, 69, True),
    Instrument("oboe", 68, "woodwind", 58, 91, True),
    Instrument("bassoon", 70, "woodwind", 34, 75, True),
    Instrument("clarinet", 71, "woodwind", 50, 91, True),
    Instrument("piccolo", 72, "woodwind", 74, 108, True),
    Instrument("flute", 73, "woodwind", 60, 96, True),
    Instrument("recorder", 74, "woodwind", 60, 96, True),
    Instrument("pan flute", 75, "woodwind", 60, 96, True),
    Instrument("square lead synth", 80, "synth", 36, 96, True),
    Instrument("sawtooth synth", 81, "synth", 36, 96, True),
    Instrument("synth pad", 89, "synth", 36, 96, True),
    Instrument("polysynth", 90, "synth", 36, 96, True),
    Instrument("banjo", 105, "guitar", 48, 84, False),
    Instrument("fiddle", 110, "strings", 55, 100, True),
)

#: Every instrument by caption name.
INSTRUMENTS: dict[str, Instrument] = {entry.name: entry for entry in _TABLE}


def instrument(name: str) -> Instrument:
    """The :class:`Instrument` called ``name``; ValueError naming the known ones otherwise."""
    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise ValueError(f"unknown instrument {name!r}; expected one of {sorted(INSTRUMENTS)}.") from None


#: Instruments that plausibly play every part of a polyphonic score alone.
SOLO_POLYPHONIC = ("piano", "piano", "electric piano", "harpsichord", "church organ", "organ", "nylon guitar",
                   "acoustic guitar", "harp", "string ensemble", "string ensemble", "synth strings", "choir",
                   "marimba", "vibraphone", "synth pad", "polysynth", "accordion", "celesta", "pizzicato strings",
                   "brass section", "music box")
#: Instruments for a melody played alone (single-line works).
SOLO_MELODIC = ("flute", "violin", "fiddle", "clarinet", "oboe", "trumpet", "alto saxophone", "recorder",
                "pan flute", "piano", "harp", "marimba", "vibraphone", "acoustic guitar", "nylon guitar",
                "cello", "accordion", "electric piano", "xylophone", "french horn", "music box", "square lead synth")
#: Chord instruments for generated accompaniment without drums.
ACCOMPANIMENT_CHORDS = ("piano", "nylon guitar", "acoustic guitar", "harp", "string ensemble", "organ",
                        "accordion", "harpsichord", "electric piano", "synth pad")
#: Bass instruments for generated accompaniment without drums.
ACCOMPANIMENT_BASS = ("acoustic bass", "contrabass", "cello", "bassoon", "fretless bass")


@dataclass(frozen=True)
class Ensemble:
    """A named group that splits the parts of a polyphonic score, top part first.

    ``members`` is ordered from the highest to the lowest voice; the ensemble's name is the
    ``instrument`` label of its clips.
    """
    name: str
    family: str
    members: tuple[str, ...]


ENSEMBLES = (
    Ensemble("string quartet", "strings", ("violin", "violin", "viola", "cello")),
    Ensemble("woodwind quartet", "woodwind", ("flute", "oboe", "clarinet", "bassoon")),
    Ensemble("brass quartet", "brass", ("trumpet", "trumpet", "french horn", "tuba")),
    Ensemble("saxophone quartet", "woodwind", ("soprano saxophone", "alto saxophone", "tenor saxophone",
                                               "baritone saxophone")),
    Ensemble("recorder consort", "woodwind", ("recorder", "recorder", "bassoon")),
    Ensemble("string orchestra", "strings", ("violin", "viola", "cello", "contrabass")),
    Ensemble("brass and organ", "brass", ("trumpet", "church organ", "church organ", "trombone")),
    Ensemble("flute and strings", "woodwind", ("flute", "violin", "viola", "cello")),
)


@dataclass(frozen=True)
class DrumPattern:
    """A drum loop on GM percussion notes (played on MIDI channel 10).

    Attributes:
        name: caption name ('rock beat').
        steps_per_beat: grid resolution, 4 (sixteenths) or 3 (triplets / compound eighths).
        beats: loop length in beats; each lane string has ``steps_per_beat * beats`` steps.
        lanes: ``(gm_note, steps)`` with steps made of 'X' (accent), 'x' (normal), 'o' (soft), '.' (rest).
    """
    name: str
    steps_per_beat: int
    beats: int
    lanes: tuple[tuple[int, str], ...]

    def __post_init__(self):
        for note, steps in self.lanes:
            if len(steps) != self.steps_per_beat * self.beats:
                raise ValueError(f"DrumPattern {self.name!r}: lane {note} has {len(steps)} steps, expected "
                                 f"steps_per_beat * beats = {self.steps_per_beat * self.beats}.")


# GM percussion notes.
_KICK, _SIDE, _SNARE, _CLAP, _HAT, _PEDAL, _OPEN, _CRASH, _RIDE, _TOM, _TAMB = 36, 37, 38, 39, 42, 44, 46, 49, 51, 45, 54

DRUM_PATTERNS: dict[str, DrumPattern] = {pattern.name: pattern for pattern in (
    DrumPattern("rock beat", 4, 4, ((_KICK, "x.......x.x....."), (_SNARE, "....X.......X..."),
                                    (_HAT, "x.x.x.x.x.x.x.x."))),
    DrumPattern("pop beat", 4, 4, ((_KICK, "x.....x.x......."), (_SNARE, "....X.......X..."),
                                   (_HAT, "x.o.x.o.x.o.x..."), (_OPEN, "..............o."))),
    DrumPattern("ballad beat", 4, 4, ((_KICK, "x.........x....."), (_SIDE, "....x.......x..."),
                                      (_HAT, "o.o.o.o.o.o.o.o."))),
    DrumPattern("bossa nova groove", 4, 4, ((_KICK, "x..xx..xx..xx..x"), (_SIDE, "x..x..x...x..x.."),
                                            (_HAT, "oooooooooooooooo"))),
    DrumPattern("swing groove", 3, 4, ((_RIDE, "x..x.xx..x.x"), (_PEDAL, "...x.....x.."),
                                       (_KICK, "o..o..o..o.."))),
    DrumPattern("dance beat", 4, 4, ((_KICK, "X...x...X...x..."), (_CLAP, "....X.......X..."),
                                     (_HAT, "o...o...o...o..."), (_OPEN, "..x...x...x...x."))),
    DrumPattern("march beat", 4, 2, ((_KICK, "X...x..."), (_SNARE, "x.xxX.x."))),
    DrumPattern("polka beat", 4, 2, ((_KICK, "x...x..."), (_SNARE, "..x...x."), (_HAT, "..o...o."))),
    DrumPattern("waltz beat", 4, 3, ((_KICK, "x..........."), (_SIDE, "....o...o..."),
                                     (_PEDAL, "....x...x..."))),
    DrumPattern("jig groove", 3, 2, ((_KICK, "x....."), (_TOM, "X.ox.o"), (_TAMB, "..o..o"))),
    DrumPattern("6/8 ballad beat", 3, 2, ((_KICK, "x....."), (_SNARE, "...X.."), (_HAT, "xooxoo"))),
    DrumPattern("blues shuffle", 3, 4, ((_KICK, "x.....x....."), (_SNARE, "...X.....X.."),
                                        (_HAT, "x.ox.ox.ox.o"))),
)}

#: GM drum kits (bank 128 programs in FluidR3_GM) by name.
DRUM_KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "808": 25, "jazz": 32, "brush": 40,
             "orchestra": 48}


@dataclass(frozen=True)
class Style:
    """A band recipe: a groove, a tempo range and instrument choices.

    Attributes:
        name: the ``style`` label of the clip ('bossa nova').
        genre: the ``genre`` label of the clip.
        meter: 'simple' or 'compound'; ``beats`` the bar lengths (in beats) it fits.
        bpm: tempo range in beats per minute.
        drums: drum patterns (keys of :data:`DRUM_PATTERNS`); kits: keys of :data:`DRUM_KITS`.
        leads, chords, basses: instrument choices for melody, chords and bass line.
        chord_patterns, bass_patterns: accompaniment figures (see :mod:`.arrange`).
        swing: play off-beat eighths late (triplet feel).
        moods: moods the style adds to the caption.
    """
    name: str
    genre: str
    meter: str
    beats: tuple[int, ...]
    bpm: tuple[int, int]
    drums: tuple[str, ...]
    kits: tuple[str, ...]
    leads: tuple[str, ...]
    chords: tuple[str, ...]
    chord_patterns: tuple[str, ...]
    basses: tuple[str, ...]
    bass_patterns: tuple[str, ...]
    swing: bool = False
    moods: tuple[str, ...] = ()


STYLES: dict[str, Style] = {style.name: style for style in (
    Style("pop", "pop", "simple", (2, 4), (88, 128), ("pop beat",), ("standard", "room"),
          ("piano", "electric piano", "acoustic guitar", "flute", "alto saxophone", "violin", "electric guitar",
           "vibraphone", "square lead synth"),
          ("piano", "electric piano", "acoustic guitar", "synth pad", "string ensemble"),
          ("beats", "strum", "arpeggio"), ("electric bass", "fretless bass"), ("root_fifth", "eighths"),
          moods=("upbeat", "catchy")),
    Style("rock", "rock", "simple", (2, 4), (100, 160), ("rock beat",), ("power", "standard"),
          ("overdriven guitar", "electric guitar", "rock organ", "sawtooth synth", "piano"),
          ("overdriven guitar", "rock organ", "piano"), ("power", "beats"), ("electric bass",), ("eighths",),
          moods=("energetic", "driving")),
    Style("ballad", "pop", "simple", (2, 4), (56, 80), ("ballad beat",), ("brush", "standard"),
          ("piano", "violin", "cello", "flute", "electric piano", "nylon guitar", "alto saxophone", "clarinet"),
          ("piano", "string ensemble", "synth pad", "electric piano"), ("arpeggio", "block"),
          ("fretless bass", "acoustic bass"), ("root",), moods=("tender", "emotional")),
    Style("6/8 ballad", "pop", "compound", (2, 4), (50, 76), ("6/8 ballad beat",), ("brush", "standard"),
          ("piano", "violin", "flute", "nylon guitar", "cello", "clarinet"),
          ("piano", "acoustic guitar", "string ensemble", "synth pad"), ("arpeggio", "block"),
          ("fretless bass", "acoustic bass"), ("root",), moods=("tender", "swaying")),
    Style("bossa nova", "bossa nova", "simple", (2, 4), (100, 140), ("bossa nova groove",), ("brush", "jazz"),
          ("flute", "alto saxophone", "tenor saxophone", "vibraphone", "piano", "nylon guitar", "clarinet",
           "trumpet"),
          ("nylon guitar", "piano", "electric piano"), ("bossa",), ("acoustic bass",), ("bossa",),
          moods=("relaxed", "smooth")),
    Style("swing", "jazz", "simple", (2, 4), (100, 180), ("swing groove",), ("jazz", "brush"),
          ("tenor saxophone", "alto saxophone", "trumpet", "clarinet", "vibraphone", "piano", "jazz guitar",
           "trombone"),
          ("piano", "jazz guitar"), ("charleston",), ("acoustic bass",), ("walking",), swing=True,
          moods=("swinging", "lively")),
    Style("electronic", "electronic", "simple", (2, 4), (110, 132), ("dance beat",), ("808", "electronic"),
          ("sawtooth synth", "square lead synth", "polysynth", "electric piano", "marimba"),
          ("synth pad", "polysynth"), ("block", "offbeat"), ("synth bass",), ("offbeat",),
          moods=("energetic", "danceable")),
    Style("march", "march", "simple", (2, 4), (100, 128), ("march beat",), ("orchestra", "standard"),
          ("trumpet", "piccolo", "flute", "clarinet", "french horn", "brass section"),
          ("brass section", "accordion", "piano"), ("oompah",), ("tuba",), ("root_fifth",),
          moods=("festive", "proud")),
    Style("polka", "polka", "simple", (2, 4), (100, 140), ("polka beat",), ("standard",),
          ("accordion", "fiddle", "clarinet", "trumpet"), ("accordion", "piano"), ("oompah",),
          ("tuba", "acoustic bass"), ("root_fifth",), moods=("cheerful", "bouncy")),
    Style("waltz", "waltz", "simple", (3,), (84, 176), ("waltz beat",), ("brush", "standard"),
          ("violin", "accordion", "flute", "piano", "clarinet", "cello"),
          ("piano", "accordion", "string ensemble", "acoustic guitar"), ("waltz",), ("contrabass", "acoustic bass"),
          ("root",), moods=("graceful", "elegant")),
    Style("jig", "celtic folk", "compound", (2,), (90, 126), ("jig groove",), ("standard", "room"),
          ("fiddle", "flute", "accordion", "pan flute", "recorder", "banjo", "piccolo"),
          ("acoustic guitar", "accordion", "piano", "harp"), ("strum", "arpeggio"), ("acoustic bass",),
          ("root_fifth",), moods=("lively", "joyful")),
    Style("blues shuffle", "blues", "compound", (4,), (60, 100), ("blues shuffle",), ("standard", "room"),
          ("electric guitar", "overdriven guitar", "tenor saxophone", "piano", "organ"),
          ("piano", "organ", "electric guitar"), ("beats",), ("electric bass",), ("root_fifth",),
          moods=("gritty", "laid-back")),
)}
