"""Collating attributes for all conditioners, and fusing conditions into the LM input.

:class:`ConditioningProvider` owns one conditioner per attribute name. Its ``tokenize``
turns a list of :class:`ConditioningAttributes` into per-attribute inputs (CPU work:
tokenizing text, padding waveforms); ``forward`` runs the conditioners and returns
``{name: (embedding [B, T, D], mask [B, T])}``.

:class:`ConditionFuser` merges those conditions with the LM input embedding ``[B, S, D]``
by one of four methods per attribute: ``sum`` (added, broadcast over time), ``prepend``
(concatenated in front of the sequence, first step only when streaming), ``cross``
(returned as the cross-attention source) and ``input_interpolate`` (resampled in time
to the sequence length, then added).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..streaming import StreamingModule
from ..transformer import create_sin_embedding
from .base import ConditioningAttributes, ConditionType, WavCondition
from .text import TextConditioner
from .wav import WaveformConditioner


class ConditioningProvider(nn.Module):
    """One conditioner per attribute name.

    Args:
        conditioners: ``{attribute name: conditioner}``; text conditioners read
            ``attributes.text[name]``, waveform conditioners ``attributes.wav[name]``.
        device: accepted for config compatibility (modules follow ``.to()``).
    """

    def __init__(self, conditioners: Dict[str, nn.Module], device: Any = "cpu"):
        super().__init__()
        self.conditioners = nn.ModuleDict(conditioners)

    @property
    def text_conditions(self) -> List[str]:
        return [name for name, c in self.conditioners.items() if isinstance(c, TextConditioner)]

    @property
    def wav_conditions(self) -> List[str]:
        return [name for name, c in self.conditioners.items() if isinstance(c, WaveformConditioner)]

    def _collate_text(self, samples: Sequence[ConditioningAttributes]) -> Dict[str, List[Optional[str]]]:
        return {name: [sample.text.get(name) for sample in samples] for name in self.text_conditions}

    def _collate_wavs(self, samples: Sequence[ConditioningAttributes]) -> Dict[str, WavCondition]:
        """Down-mix each waveform attribute to mono and pad it to the longest item: wav [B, 1, T]."""
        out: Dict[str, WavCondition] = {}
        for name in self.wav_conditions:
            items = [sample.wav.get(name) for sample in samples]
            if any(item is None for item in items):
                missing = [i for i, item in enumerate(items) if item is None]
                raise ValueError(f"waveform condition {name!r} is missing for samples {missing}: give every "
                                 f"sample a WavCondition (use a zero-length one for 'no {name}')")
            longest = max(item.wav.shape[-1] for item in items)
            wavs, lengths, rates, paths, seeks = [], [], [], [], []
            for item in items:
                wav = item.wav
                if wav.dim() == 3:
                    if wav.shape[0] != 1:
                        raise ValueError(f"each sample's {name!r} WavCondition must hold one item, got {wav.shape[0]}")
                    wav = wav[0]
                wav = wav.mean(0, keepdim=True)  # conditioning waveforms are mono
                wavs.append(F.pad(wav, (0, longest - wav.shape[-1])))
                lengths.append(item.length.reshape(-1)[:1])
                rates.extend(list(item.sample_rate)[:1])
                paths.extend(list(item.path)[:1] or [None])
                seeks.extend(list(item.seek_time)[:1] or [None])
            out[name] = WavCondition(torch.stack(wavs), torch.cat(lengths), rates, paths, seeks)
        return out

    def tokenize(self, inputs: Sequence[ConditioningAttributes]) -> Dict[str, Any]:
        """Per-attribute inputs ready for :meth:`forward` (text tokenized, waveforms padded).

        Text attributes a sample lacks count as None (no text).
        """
        if not all(isinstance(x, ConditioningAttributes) for x in inputs):
            raise TypeError("ConditioningProvider.tokenize expects a list of ConditioningAttributes")
        # Attributes without a conditioner (e.g. a dataset's 'artist' for a text-only model) are ignored.
        tokenized: Dict[str, Any] = {}
        for name, texts in self._collate_text(inputs).items():
            tokenized[name] = self.conditioners[name].tokenize(texts)
        for name, wavs in self._collate_wavs(inputs).items():
            tokenized[name] = self.conditioners[name].tokenize(wavs)
        return tokenized

    def forward(self, tokenized: Dict[str, Any]) -> Dict[str, ConditionType]:
        """``{name: (embedding [B, T, D], mask [B, T])}`` in the order of ``tokenized``."""
        unknown = set(tokenized) - set(self.conditioners)
        if unknown:
            raise ValueError(f"no conditioner for {sorted(unknown)}; known: {sorted(self.conditioners)}")
        return {name: self.conditioners[name](inputs) for name, inputs in tokenized.items()}


FUSE_METHODS = ("sum", "prepend", "cross", "input_interpolate")


class ConditionFuser(StreamingModule):
    """Merges conditions into the LM input.

    Args:
        fuse2cond: ``{method: [attribute names]}`` with methods among
            'sum', 'prepend', 'cross', 'input_interpolate'.
        cross_attention_pos_emb: add sinusoidal positions to the cross-attention source.
        cross_attention_pos_emb_scale: scale of those positions.
    """

    def __init__(self, fuse2cond: Dict[str, List[str]], cross_attention_pos_emb: bool = False,
                 cross_attention_pos_emb_scale: float = 1.0):
        super().__init__()
        unknown = set(fuse2cond) - set(FUSE_METHODS)
        if unknown:
            raise ValueError(f"unknown fuse method(s) {sorted(unknown)}: expected {list(FUSE_METHODS)}")
        self.fuse2cond = {method: list(fuse2cond.get(method, [])) for method in FUSE_METHODS}
        self.cond2fuse: Dict[str, str] = {}
        for method, names in self.fuse2cond.items():
            for name in names:
                if name in self.cond2fuse:
                    raise ValueError(f"condition {name!r} is fused twice ({self.cond2fuse[name]} and {method})")
                self.cond2fuse[name] = method
        self.cross_attention_pos_emb = cross_attention_pos_emb
        self.cross_attention_pos_emb_scale = cross_attention_pos_emb_scale

    def forward(self, input_: torch.Tensor, conditions: Dict[str, ConditionType]
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """input_: [B, S, D] -> (fused input [B, S', D], cross-attention source [B, T, D] or None)."""
        B, S, _ = input_.shape
        first_step = "offsets" not in self._streaming_state
        offsets = self._streaming_state.get("offsets", torch.zeros(B, dtype=torch.long, device=input_.device))
        unknown = set(conditions) - set(self.cond2fuse)
        if unknown:
            raise ValueError(f"conditions {sorted(unknown)} have no fuse method; configured: {self.fuse2cond}")
        cross: Optional[torch.Tensor] = None
        for name, (cond, _mask) in conditions.items():
            method = self.cond2fuse[name]
            if method == "sum":
                input_ = input_ + cond
            elif method == "input_interpolate":
                resized = F.interpolate(cond.transpose(1, 2), size=input_.shape[1])
                input_ = input_ + resized.transpose(1, 2)
            elif method == "prepend":
                if first_step:
                    input_ = torch.cat([cond, input_], dim=1)
            else:  # cross
                cross = cond if cross is None else torch.cat([cross, cond], dim=1)
        if self.cross_attention_pos_emb and cross is not None:
            positions = torch.arange(cross.shape[1], device=cross.device).view(1, -1, 1)
            cross = cross + self.cross_attention_pos_emb_scale * create_sin_embedding(
                positions, cross.shape[-1], dtype=cross.dtype)
        if self._is_streaming:
            self._streaming_state["offsets"] = offsets + S
        return input_, cross
