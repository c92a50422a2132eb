"""Captions and MusicInfo sidecars describing what was actually rendered.

:func:`describe` builds the sidecar of a clip in AudioCraft's MusicInfo JSON format (title,
artist, key, bpm, genre, moods, keywords, description, name, instrument) plus labels for
classifiers (``instrument_family``, ``style``) and provenance (``source``, ``synth``). The
description always names the main instrument, the key and the bpm, with varied wording.
"""
from __future__ import annotations

import random

from .arrange import Performance
from .corpus import ParsedWork
from .instruments import STYLES
from .plan import ClipPlan

__all__ = ["describe", "tempo_category", "moods_for"]

_TEMPO_WORDS = {"slow": ("slow", "unhurried", "leisurely", "slow-paced"),
                "moderate": ("moderate", "mid-tempo", "steady", "easygoing"),
                "upbeat": ("upbeat", "lively", "brisk", "bouncy"),
                "fast": ("fast", "quick", "energetic", "rapid")}
_MOODS = {("major", "slow"): ("calm", "peaceful", "serene", "tender"),
          ("major", "moderate"): ("warm", "pleasant", "gentle", "hopeful"),
          ("major", "upbeat"): ("joyful", "cheerful", "bright", "playful"),
          ("major", "fast"): ("energetic", "exuberant", "joyful", "festive"),
          ("minor", "slow"): ("melancholic", "sad", "somber", "mournful"),
          ("minor", "moderate"): ("wistful", "pensive", "nostalgic", "bittersweet"),
          ("minor", "upbeat"): ("dramatic", "restless", "yearning", "dark"),
          ("minor", "fast"): ("intense", "dramatic", "urgent", "agitated")}
_SACRED_FORMS = ("chorale", "hymn", "mass movement", "motet", "gloria")


def tempo_category(bpm: float) -> str:
    """'slow' (< 72 bpm), 'moderate' (< 105), 'upbeat' (<= 132) or 'fast'."""
    if bpm < 72:
        return "slow"
    if bpm < 105:
        return "moderate"
    return "upbeat" if bpm <= 132 else "fast"


def moods_for(mode: str, bpm: float, dynamics: str, style: str, form: str, rng: random.Random) -> list[str]:
    """Two to four moods from the mode, tempo, dynamics, style and form of a clip."""
    moods = rng.sample(_MOODS[(mode, tempo_category(bpm))], 2)
    if dynamics in ("pp", "p"):
        moods.append(rng.choice(("soft", "delicate", "intimate")))
    elif dynamics in ("f", "ff"):
        moods.append(rng.choice(("bold", "powerful", "confident")))
    if style in STYLES and STYLES[style].moods:
        moods.append(rng.choice(STYLES[style].moods))
    if form in _SACRED_FORMS:
        moods.append(rng.choice(("solemn", "reverent", "spiritual")))
    unique = list(dict.fromkeys(moods))
    return unique[:4]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _players(plan: ClipPlan, rng: random.Random) -> str:
    """How the clip is played, always containing ``plan.instrument``."""
    if plan.texture == "solo":
        return rng.choice((f"on solo {plan.instrument}", f"played on {plan.instrument}",
                           f"performed on {plan.instrument} alone", f"for solo {plan.instrument}"))
    if plan.texture == "ensemble":
        return rng.choice((f"played by {_article(plan.instrument)} {plan.instrument}",
                           f"arranged for {plan.instrument}", f"performed by {_article(plan.instrument)} "
                                                              f"{plan.instrument}"))
    backing = [plan.chords] + ([plan.bass] if plan.bass else [])
    if plan.texture == "accompanied":
        return rng.choice((f"on {plan.instrument} accompanied by {_join(backing)}",
                           f"with {plan.instrument} melody over {_join(backing)}",
                           f"played on {plan.instrument} with {_join(backing)} accompaniment"))
    drums = plan.drums.replace("groove", "drum groove") if "groove" in plan.drums else plan.drums
    return rng.choice((f"with {plan.instrument} lead, {_join(backing)} and {_article(drums)} {drums}",
                       f"led by {plan.instrument} over {_article(drums)} {drums}, {_join(backing)}",
                       f"on {plan.instrument} backed by {_join(backing)} and drums playing {_article(drums)} {drums}"))


def describe(work: ParsedWork, plan: ClipPlan, performance: Performance) -> dict:
    """The JSON sidecar of a rendered clip (see the module docstring and docs/DATASET.md)."""
    rng = random.Random(f"caption|{plan.seed}")
    key = performance.key.name
    band = plan.texture == "band"
    genre = STYLES[plan.style].genre if band else work.genre
    category = tempo_category(plan.bpm)
    tempo = rng.choice(_TEMPO_WORDS[category])
    moods = moods_for(performance.key.mode, plan.bpm, plan.dynamics, plan.style, work.form, rng)
    if work.genre in work.form or (work.genre == "folk" and work.form not in ("song", "hymn")):
        source = work.form  # 'folk song', 'irish dance tune', 'jig' say enough
    else:
        source = f"{work.genre} {work.form}"
    if band:
        piece = rng.choice((f"{plan.style} arrangement of {_article(source)} {source}",
                            f"{plan.style} version of {_article(work.form)} {work.form}",
                            f"{plan.style} take on {_article(source)} {source}"))
    else:
        piece = source
    players = _players(plan, rng)
    mood = moods[0]
    templates = (
        f"{_article(tempo)} {tempo} {piece} in {key} {players}, {plan.bpm} bpm.",
        f"{_article(mood)} {mood} {piece} in {key}, {players}, at {plan.bpm} bpm.",
        f"{piece} in {key} {players}; {category} tempo of {plan.bpm} bpm, {_join(moods[:2])}.",
        f"{plan.bpm} bpm, {key}: {_article(tempo)} {tempo}, {mood} {piece} {players}.",
        f"{_article(tempo)} {tempo} {piece} {players}, in {key} at {plan.bpm} bpm with {_article(mood)} {mood} "
        f"feel.",
    )
    description = rng.choice(templates)
    description = description[0].upper() + description[1:]
    if plan.dynamics in ("pp", "p") and rng.random() < 0.5:
        description = description[:-1] + ", played softly."
    elif plan.dynamics in ("f", "ff") and rng.random() < 0.5:
        description = description[:-1] + ", played loudly."
    keywords = [genre, plan.style, work.form, plan.instrument, plan.family, *performance.instruments,
                performance.key.mode, category, work.time_signature + " time"]
    if plan.drums:
        keywords += ["drums", plan.drums]
    keywords = list(dict.fromkeys(k for k in keywords if k))
    return {
        "title": work.title,
        "artist": work.composer,
        "key": key,
        "bpm": plan.bpm,
        "genre": genre,
        "moods": moods,
        "keywords": keywords,
        "description": description,
        "name": plan.clip_id,
        "instrument": plan.instrument,
        "instrument_family": plan.family,
        "style": plan.style,
        "texture": plan.texture,
        "instruments": performance.instruments,
        "drums": plan.drums,
        "time_signature": work.time_signature,
        "dynamics": plan.dynamics,
        "split": plan.split,
        "source": {"work_id": work.work_id, "collection": work.collection, "form": work.form,
                   "genre": work.genre, "bars": plan.bars, "transpose": plan.transpose,
                   "original_key": work.key, "library": "music21 corpus"},
        "synth": {"plan_hash": plan.plan_hash, "seed": plan.seed, "sample_rate": plan.sample_rate,
                  "duration": plan.duration, "soundfont": "FluidR3_GM"},
    }
