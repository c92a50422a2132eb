"""Conditioning attributes, the conditioner base class and conditioning dropouts.

A generation request is described per sample by :class:`ConditioningAttributes`:
text attributes (``{'description': 'lofi piano'}``) and waveform attributes
(``{'self_wav': WavCondition(...)}`` for melody conditioning). Conditioners turn a
batch of one attribute into a tensor ``[B, T, D]`` and a mask ``[B, T]``.
"""
from __future__ import annotations

import random
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

ConditionType = Tuple[torch.Tensor, torch.Tensor]  # (embedding [B, T, D], mask [B, T])


class WavCondition(NamedTuple):
    """A batch of conditioning waveforms.

    Attributes:
        wav: [B, C, T] audio.
        length: [B] number of valid samples of each item (0 means "no condition").
        sample_rate: per-item sample rate in Hz.
        path: per-item source path, when known.
        seek_time: per-item offset in the source, in seconds.
    """
    wav: torch.Tensor
    length: torch.Tensor
    sample_rate: Sequence[int]
    path: Sequence[Optional[str]] = ()
    seek_time: Sequence[Optional[float]] = ()


@dataclass
class ConditioningAttributes:
    """Everything a sample is conditioned on."""
    text: Dict[str, Optional[str]] = field(default_factory=dict)
    wav: Dict[str, WavCondition] = field(default_factory=dict)

    def __getitem__(self, item: str) -> Dict[str, Any]:
        return getattr(self, item)

    @property
    def text_attributes(self):
        return self.text.keys()

    @property
    def wav_attributes(self):
        return self.wav.keys()

    @property
    def attributes(self) -> Dict[str, Any]:
        return {"text": self.text_attributes, "wav": self.wav_attributes}

    def to_flat_dict(self) -> Dict[str, Any]:
        return {**{f"text.{k}": v for k, v in self.text.items()},
                **{f"wav.{k}": v for k, v in self.wav.items()}}

    @classmethod
    def from_flat_dict(cls, flat: Dict[str, Any]) -> "ConditioningAttributes":
        out = cls()
        for key, value in flat.items():
            kind, name = key.split(".", 1)
            getattr(out, kind)[name] = value
        return out


def nullify_wav(cond: WavCondition) -> WavCondition:
    """The "no melody" condition: one zero sample per item and length 0.

    Args:
        cond: a batch with wav [B, C, T].
    Returns:
        a WavCondition with wav [B, C, 1] of zeros and length [B] of zeros.
    """
    B = cond.wav.shape[0]
    return WavCondition(
        wav=torch.zeros_like(cond.wav[..., :1]),
        length=torch.zeros(B, dtype=torch.long, device=cond.wav.device),
        sample_rate=list(cond.sample_rate),
        path=[None] * B,
        seek_time=[None] * B,
    )


def _drop_attribute(sample: ConditioningAttributes, kind: str, name: str) -> None:
    if kind == "text":
        sample.text[name] = None
    elif kind == "wav":
        sample.wav[name] = nullify_wav(sample.wav[name])
    else:
        raise ValueError(f"unknown condition kind {kind!r}: expected 'text' or 'wav'")


class ClassifierFreeGuidanceDropout(nn.Module):
    """During training, replace every attribute of a sample by its null value with probability ``p``.

    The decision is made per sample. At generation time the unconditional half of
    classifier-free guidance is built with :func:`drop_all_conditions` instead.
    """

    def __init__(self, p: float, seed: int = 1234):
        super().__init__()
        self.p = p
        self.rng = random.Random(seed)

    def forward(self, samples: List[ConditioningAttributes]) -> List[ConditioningAttributes]:
        if not self.training or self.p == 0:
            return samples
        samples = deepcopy(samples)
        for sample in samples:
            if self.rng.random() < self.p:
                _drop_everything(sample)
        return samples


def _drop_everything(sample: ConditioningAttributes) -> None:
    for kind, names in sample.attributes.items():
        for name in list(names):
            _drop_attribute(sample, kind, name)


def drop_all_conditions(samples: List[ConditioningAttributes]) -> List[ConditioningAttributes]:
    """Copies of ``samples`` with every attribute replaced by its null value."""
    samples = deepcopy(samples)
    for sample in samples:
        _drop_everything(sample)
    return samples


def drop_text_conditions(samples: List[ConditioningAttributes]) -> List[ConditioningAttributes]:
    """Copies of ``samples`` with the text attributes dropped (waveform attributes kept)."""
    samples = deepcopy(samples)
    for sample in samples:
        for name in list(sample.text):
            sample.text[name] = None
    return samples


class AttributeDropout(nn.Module):
    """Drops individual attributes during training, each with its own probability.

    Args:
        p: ``{'text': {'genre': 0.5}, 'wav': {'self_wav': 0.3}}``.
        active_on_eval: also drop at evaluation time.
    """

    def __init__(self, p: Dict[str, Dict[str, float]], active_on_eval: bool = False, seed: int = 1234):
        super().__init__()
        self.p = {kind: dict(values) for kind, values in p.items()}
        self.active_on_eval = active_on_eval
        self.rng = random.Random(seed)

    def forward(self, samples: List[ConditioningAttributes]) -> List[ConditioningAttributes]:
        if (not self.training and not self.active_on_eval) or not self.p:
            return samples
        samples = deepcopy(samples)
        for kind, probabilities in self.p.items():
            for name, p in probabilities.items():
                for sample in samples:
                    if name in sample[kind] and self.rng.random() < p:
                        _drop_attribute(sample, kind, name)
        return samples


class BaseConditioner(nn.Module):
    """Turns a batch of one attribute into (embedding [B, T, output_dim], mask [B, T]).

    ``tokenize`` runs on the CPU side (strings, audio loading); ``forward`` runs the model.

    Args:
        dim: width of the features the conditioner computes.
        output_dim: width expected by the language model.
        project_output: add ``output_proj`` (a Linear dim -> output_dim); otherwise identity.
    """

    def __init__(self, dim: int, output_dim: int, project_output: bool = True):
        super().__init__()
        self.dim = dim
        self.output_dim = output_dim
        self.output_proj: nn.Module = nn.Linear(dim, output_dim) if project_output else nn.Identity()

    def tokenize(self, *args, **kwargs) -> Any:
        raise NotImplementedError

    def forward(self, inputs: Any) -> ConditionType:
        raise NotImplementedError


def length_to_mask(lengths: torch.Tensor, max_len: Optional[int] = None) -> torch.Tensor:
    """[B] lengths -> [B, max_len] boolean mask of the valid positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
