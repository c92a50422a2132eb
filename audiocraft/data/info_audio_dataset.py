"""Datasets whose items carry metadata that can be turned into conditioning attributes.

:class:`SegmentWithAttributes` is a :class:`~audiocraft.data.audio_dataset.SegmentInfo` that
knows how to become :class:`~audiocraft.modules.conditioners.ConditioningAttributes`; the
generation solvers expect their datasets to return such infos. :class:`InfoAudioDataset`
is an :class:`~audiocraft.data.audio_dataset.AudioDataset` returning them. The small
``get_*`` helpers clean the text fields of metadata sidecars.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from ..modules.conditioners import ConditioningAttributes
from .audio_dataset import AudioDataset, SegmentInfo

__all__ = ["SegmentWithAttributes", "AudioInfo", "InfoAudioDataset", "get_string", "get_keyword",
           "get_keyword_list", "get_keyword_or_keyword_list"]

logger = logging.getLogger(__name__)


@dataclass
class SegmentWithAttributes(SegmentInfo):
    """A segment info that can describe itself as conditioning attributes."""

    def to_condition_attributes(self) -> ConditioningAttributes:
        raise NotImplementedError(f"{type(self).__name__} must implement to_condition_attributes().")


@dataclass
class AudioInfo(SegmentWithAttributes):
    """Segment info without any metadata: it conditions on nothing.

    Attributes:
        audio_tokens: codes [K, T] of the segment, when training a language model from cached tokens.
    """
    audio_tokens: torch.Tensor | None = None

    def to_condition_attributes(self) -> ConditioningAttributes:
        return ConditioningAttributes()


class InfoAudioDataset(AudioDataset):
    """An :class:`AudioDataset` whose infos are :class:`AudioInfo` (same constructor arguments)."""

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, AudioInfo]:
        item = super().__getitem__(index)
        if not self.return_info:
            return item
        wav, info = item
        return wav, AudioInfo(**info.to_dict())


def get_string(value: Any) -> str | None:
    """A stripped string, or None for missing / empty / non-string values and the string 'None'."""
    if not isinstance(value, str) or not value or value == "None":
        return None
    return value.strip()


def get_keyword(value: Any) -> str | None:
    """Like :func:`get_string`, lower-cased."""
    text = get_string(value)
    return None if text is None else text.lower()


def get_keyword_list(values: Any) -> list[str] | None:
    """Lower-cased keywords from a list, or from a string split on commas and whitespace; None if none."""
    if isinstance(values, str):
        values = [part.strip() for part in re.split(r"[,\s]", values)]
    elif isinstance(values, float) and math.isnan(values):  # an empty cell of a table
        values = []
    if not isinstance(values, list):
        logger.debug("unexpected keyword list %r", values)
        values = [str(values)]
    keywords = [kw for kw in (get_keyword(v) for v in values) if kw is not None]
    return keywords or None


def get_keyword_or_keyword_list(value: Any) -> str | list[str] | None:
    """:func:`get_keyword_list` for lists, :func:`get_keyword` otherwise."""
    return get_keyword_list(value) if isinstance(value, list) else get_keyword(value)
