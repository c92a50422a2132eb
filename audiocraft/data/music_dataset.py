"""Music tracks with text metadata: :class:`MusicInfo` and :class:`MusicDataset`.

Each audio file may have a *sidecar* describing it. Looked up in this order:

1. the manifest's ``info_path`` (a ``.json`` file, or ``archive.zip:member.json`` as in AudioCraft);
2. the same path as the audio with a ``.json`` suffix (``song.wav`` -> ``song.json``), AudioCraft's rule;
3. the same path with a ``.txt`` suffix, whose whole content is the description (our addition).

A JSON sidecar holds any of the fields of :class:`MusicInfo`, e.g.::

    {"title": "Intro", "artist": "a1", "key": "C major", "bpm": "120", "genre": "Rock",
     "moods": ["energetic"], "keywords": "guitar, drums", "description": "an upbeat rock intro",
     "name": "intro", "instrument": "Mix"}

Values are cleaned as in AudioCraft (strings stripped, genre/key/name/instrument lower-cased,
keyword lists split on commas and spaces, bpm parsed as a float; empty values become None).
"""
from __future__ import annotations

import json
import logging
import random
import zipfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..modules.conditioners import ConditioningAttributes, WavCondition
from .audio_dataset import AudioMeta
from .info_audio_dataset import AudioInfo, InfoAudioDataset, get_keyword, get_keyword_list, get_string

__all__ = ["MusicInfo", "MusicDataset", "MUSIC_TEXT_FIELDS", "augment_music_info_description", "find_sidecar",
           "get_musical_key", "get_bpm"]

logger = logging.getLogger(__name__)

#: The text attributes of a music segment, in :class:`MusicInfo` order.
MUSIC_TEXT_FIELDS = ("title", "artist", "key", "bpm", "genre", "moods", "keywords", "description", "name",
                     "instrument")
# Fields a sidecar may leave out even with fields_required=True (as in AudioCraft).
_OPTIONAL_FIELDS = ("keywords",)
# Fields that augment_music_info_description may merge into the description.
_MERGEABLE_FIELDS = ("key", "bpm", "genre", "moods", "instrument", "keywords")


def get_musical_key(value: Any) -> str | None:
    """A musical key lower-cased ('C major' -> 'c major'); None if empty or several keys ('C, G')."""
    if not isinstance(value, str) or not value or value == "None" or "," in value:
        return None
    return value.strip().lower()


def get_bpm(value: Any) -> float | None:
    """Tempo in beats per minute as a float ('120' -> 120.0); None if missing or not a number."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class MusicInfo(AudioInfo):
    """A music segment: where it comes from (the :class:`SegmentInfo` fields) and what it is.

    Attributes:
        title, artist, key, bpm, genre, moods, keywords, description, name, instrument:
            cleaned metadata (see the module docstring); None when unknown.
        self_wav: the segment itself as a :class:`WavCondition` (wav [1, C, T]), for melody
            conditioning; set by :class:`MusicDataset`.
    """
    title: str | None = None
    artist: str | None = None  # anonymised artist id in AudioCraft's data: keeps splits disjoint
    key: str | None = None
    bpm: float | None = None
    genre: str | None = None
    moods: list | None = None
    keywords: list | None = None
    description: str | None = None
    name: str | None = None
    instrument: str | None = None
    self_wav: WavCondition | None = None

    @property
    def has_music_meta(self) -> bool:
        return self.name is not None

    def to_condition_attributes(self) -> ConditioningAttributes:
        """Text attributes for every field of :data:`MUSIC_TEXT_FIELDS` (lists joined with spaces,
        numbers as strings, None kept), plus ``wav['self_wav']`` when the segment is attached."""
        out = ConditioningAttributes()
        for name in MUSIC_TEXT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            elif value is not None and not isinstance(value, str):
                value = str(value)
            out.text[name] = value
        if self.self_wav is not None:
            out.wav["self_wav"] = self.self_wav
        return out

    @staticmethod
    def attribute_getter(attribute: str) -> Callable[[Any], Any] | None:
        """The cleaning function of a metadata field, None for the others."""
        if attribute == "bpm":
            return get_bpm
        if attribute == "key":
            return get_musical_key
        if attribute in ("moods", "keywords"):
            return get_keyword_list
        if attribute in ("genre", "name", "instrument"):
            return get_keyword
        if attribute in ("title", "artist", "description"):
            return get_string
        return None

    @classmethod
    def from_dict(cls, dictionary: dict, fields_required: bool = False) -> "MusicInfo":
        """Build from a sidecar dict merged with the segment fields (``SegmentInfo.to_dict()``).

        Args:
            dictionary: field values; unknown keys are ignored, metadata values are cleaned.
            fields_required: every metadata field except ``keywords`` must be present (None is fine).
        """
        if not isinstance(dictionary, dict):
            raise TypeError(f"MusicInfo.from_dict: expected a dict, got {type(dictionary).__name__}.")
        values: dict[str, Any] = {}
        missing = []
        for field in fields(cls):
            if field.name == "self_wav":
                continue  # attached later by the dataset
            if field.name not in dictionary:
                if fields_required and field.name in MUSIC_TEXT_FIELDS and field.name not in _OPTIONAL_FIELDS:
                    missing.append(field.name)
                continue
            clean = cls.attribute_getter(field.name)
            value = dictionary[field.name]
            values[field.name] = clean(value) if clean is not None else value
        if missing:
            raise ValueError(f"MusicInfo.from_dict: missing metadata field(s) {missing} (fields_required=True); "
                             f"add them to the sidecar (null is fine) or set info_fields_required=False.")
        segment_fields = [f.name for f in fields(AudioInfo) if f.name != "audio_tokens"]
        absent = [name for name in segment_fields if name not in values]
        if absent:
            raise ValueError(f"MusicInfo.from_dict: missing segment field(s) {absent}; merge the dict with "
                             f"SegmentInfo.to_dict() of the segment it describes.")
        return cls(**values)


def augment_music_info_description(music_info: MusicInfo, merge_text_p: float = 0., drop_desc_p: float = 0.,
                                   drop_other_p: float = 0., rng: random.Random | None = None) -> MusicInfo:
    """Text augmentation of AudioCraft's MusicGen training, on a copy of ``music_info``.

    With probability ``merge_text_p``, the fields key, bpm, genre, moods, instrument and keywords
    are appended to the description as ``"field: value"`` pairs in random order, joined with
    ``". "`` (lists joined with ``", "``); each such field is left out with probability
    ``drop_other_p``, and the original description is dropped with probability ``drop_desc_p``.
    As in AudioCraft, the result is ``"<description without trailing dots>. <pairs>"`` stripped,
    so a kept description always ends up with a trailing ``"."`` when there are no pairs.

    Note: AudioCraft *keeps* each other field with probability ``drop_other_p`` (its name is
    inverted); here it is the probability of dropping it. They agree at its default, 0.5.

    Args:
        music_info: the segment metadata.
        merge_text_p, drop_desc_p, drop_other_p: probabilities in [0, 1].
        rng: random source; defaults to the global ``random`` module, as in AudioCraft.
    Returns:
        A new MusicInfo with the augmented description (None if nothing is left).
    """
    for name, value in (("merge_text_p", merge_text_p), ("drop_desc_p", drop_desc_p), ("drop_other_p", drop_other_p)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"augment_music_info_description: `{name}` must be a probability in [0, 1], "
                             f"got {value!r}.")
    rng = rng if rng is not None else random  # the module's functions share the global generator

    def as_text(value: Any) -> str:
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)

    description = music_info.description
    metadata_text = ""
    if rng.uniform(0, 1) < merge_text_p:
        pairs = []
        for name in _MERGEABLE_FIELDS:
            value = getattr(music_info, name)
            keep = rng.uniform(0, 1) >= drop_other_p
            if keep and value is not None and isinstance(value, (int, float, str, list)):
                pairs.append(f"{name}: {as_text(value)}")
        rng.shuffle(pairs)
        metadata_text = ". ".join(pairs)
        if rng.uniform(0, 1) < drop_desc_p:
            description = None
    if description is None:
        description = metadata_text if len(metadata_text) > 1 else None
    else:
        description = ". ".join([description.rstrip("."), metadata_text])
    return replace(music_info, description=description.strip() if description else None)


def _read_sidecar_text(location: str) -> str:
    """Text of a sidecar at a path or at ``archive.zip:member``."""
    archive, sep, member = location.partition(":")
    if sep and archive.lower().endswith(".zip") and Path(archive).is_file():
        with zipfile.ZipFile(archive) as bundle, bundle.open(member.lstrip("/")) as handle:
            return handle.read().decode("utf-8")
    return Path(location).read_text(encoding="utf-8")


def find_sidecar(meta: AudioMeta) -> tuple[str, str] | None:
    """``(kind, location)`` of the metadata of an audio file, kind 'json' or 'txt'; None if there is none."""
    if meta.info_path is not None:
        location = str(meta.info_path)
        archive, sep, _ = location.partition(":")
        if not (Path(location).is_file() or (sep and archive.lower().endswith(".zip") and Path(archive).is_file())):
            raise FileNotFoundError(f"MusicDataset: the metadata file {location!r} listed in the manifest for "
                                    f"{meta.path!r} does not exist; restore it or rebuild the manifest.")
        return ("txt" if location.lower().endswith(".txt") else "json"), location
    audio = Path(meta.path)
    for kind in ("json", "txt"):
        candidate = audio.with_suffix("." + kind)
        if candidate.is_file():
            return kind, str(candidate)
    return None


class MusicDataset(InfoAudioDataset):
    """An :class:`AudioDataset` of music whose items are ``(wav [C, T], MusicInfo)``.

    The metadata of each item comes from its file's sidecar (see the module docstring);
    ``info.self_wav`` holds the segment for melody conditioning. ``return_info`` is forced to True.

    Args:
        meta: the manifest entries.
        info_fields_required: JSON sidecars must hold every metadata field but ``keywords``.
        merge_text_p, drop_desc_p, drop_other_p: text augmentation probabilities, see
            :func:`augment_music_info_description` (applied when ``merge_text_p > 0``).
        joint_embed_attributes: AudioCraft's CLAP joint-embedding attributes; not supported, must be empty.
        **kwargs: the other :class:`AudioDataset` arguments (segment_duration, sample_rate, ...).
    """

    def __init__(self, meta: Sequence[AudioMeta], *, info_fields_required: bool = True, merge_text_p: float = 0.,
                 drop_desc_p: float = 0., drop_other_p: float = 0., joint_embed_attributes: Sequence[str] = (),
                 **kwargs):
        if joint_embed_attributes:
            raise ValueError(f"MusicDataset: joint_embed_attributes={list(joint_embed_attributes)!r} needs CLAP "
                             f"joint-embedding conditioning, which this implementation does not provide; pass [].")
        for name, value in (("merge_text_p", merge_text_p), ("drop_desc_p", drop_desc_p),
                            ("drop_other_p", drop_other_p)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"MusicDataset: `{name}` must be a probability in [0, 1], got {value!r}.")
        kwargs["return_info"] = True
        super().__init__(meta, **kwargs)
        self.info_fields_required = bool(info_fields_required)
        self.merge_text_p = float(merge_text_p)
        self.drop_desc_p = float(drop_desc_p)
        self.drop_other_p = float(drop_other_p)
        self.joint_embed_attributes: list[str] = []

    def _music_info(self, info: AudioInfo) -> MusicInfo:
        segment = info.to_dict()
        sidecar = find_sidecar(info.meta)
        if sidecar is None:
            return MusicInfo.from_dict(segment, fields_required=False)
        kind, location = sidecar
        try:
            text = _read_sidecar_text(location)
        except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as err:
            raise RuntimeError(f"MusicDataset: cannot read the metadata {location!r} of {info.meta.path!r}: {err}"
                               ) from err
        if kind == "txt":
            music_info = MusicInfo.from_dict({**segment, "description": text}, fields_required=False)
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"MusicDataset: {location!r} is not valid JSON ({err}); fix it or delete it.") from err
            if not isinstance(data, dict):
                raise ValueError(f"MusicDataset: {location!r} must hold a JSON object of metadata fields, "
                                 f"got a {type(data).__name__}.")
            try:
                music_info = MusicInfo.from_dict({**data, **segment}, fields_required=self.info_fields_required)
            except ValueError as err:
                raise ValueError(f"MusicDataset: metadata {location!r}: {err}") from err
        if self.merge_text_p:
            music_info = augment_music_info_description(music_info, self.merge_text_p, self.drop_desc_p,
                                                        self.drop_other_p)
        return music_info

    def __getitem__(self, index: int) -> tuple[torch.Tensor, MusicInfo]:
        """``(wav [C, T], MusicInfo)`` of item ``index``."""
        wav, info = super().__getitem__(index)
        music_info = self._music_info(info)
        music_info.self_wav = WavCondition(
            wav=wav[None], length=torch.tensor([info.n_frames]), sample_rate=[info.sample_rate],
            path=[info.meta.path], seek_time=[info.seek_time])
        return wav, music_info
