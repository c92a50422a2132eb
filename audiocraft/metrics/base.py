"""What every evaluation metric shares: summed state tensors, and turning a batch into model inputs.

A :class:`StreamingMetric` accumulates plain tensors that are all *sums* (counts, sums of
scores, sums of outer products...). That single rule makes the life cycle trivial:

- ``update(...)`` adds the contribution of one batch;
- ``compute()`` turns the sums into the final number(s);
- ``reset()`` puts every sum back to zero;
- ``merge(other)`` adds another accumulator's sums (another rank's, another shard's), so
  the solver can gather per-rank :meth:`StreamingMetric.state` dicts and merge them; the
  metric itself does no distributed communication.

The second half of this module prepares audio for a model: each item of a batch ``[B, C, T]``
is cut to its valid length (``sizes``), resampled and converted to the model's channel count
with :func:`audiocraft.data.audio_utils.convert_audio`, and items of equal length are sent to
the model together.
"""
from __future__ import annotations

import abc
import typing as tp
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..data.audio_utils import convert_audio

__all__ = ["StreamingMetric", "check_audio_batch", "run_audio_model"]


class StreamingMetric(abc.ABC):
    """Base class of the streaming metrics: named state tensors that are sums.

    Subclasses declare their states in ``__init__`` with :meth:`add_state`, add to them in
    ``update`` and read them in :meth:`compute`.
    """

    def __init__(self) -> None:
        self._state_defaults: dict[str, torch.Tensor] = {}

    def add_state(self, name: str, default: torch.Tensor) -> None:
        """Declare a summed state, available as ``self.<name>`` and reset to ``default``.

        A 0-d zero default broadcasts, so a state whose size is only known at the first
        update (e.g. an embedding dimension ``D``) can start as ``torch.zeros((), dtype=...)``.
        """
        if not isinstance(default, torch.Tensor):
            raise TypeError(f"add_state: `default` of state {name!r} must be a torch.Tensor, "
                            f"got {type(default).__name__}.")
        self._state_defaults[name] = default.detach().clone()
        setattr(self, name, default.detach().clone())

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the summed states, in declaration order."""
        return tuple(self._state_defaults)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        for name, default in self._state_defaults.items():
            setattr(self, name, default.clone())

    def state(self) -> dict[str, torch.Tensor]:
        """A copy of the accumulated sums (CPU tensors), e.g. to gather them across ranks."""
        return {name: getattr(self, name).detach().cpu().clone() for name in self._state_defaults}

    def merge(self, other: StreamingMetric | Mapping[str, torch.Tensor]) -> StreamingMetric:
        """Add the sums of ``other`` to this accumulator (in place) and return ``self``.

        Args:
            other: a metric of the same class, or a dict returned by its :meth:`state`.
        Afterwards this metric computes the same result as a single accumulator that had seen
        the updates of both.
        """
        if isinstance(other, StreamingMetric):
            if type(other) is not type(self):
                raise TypeError(f"{type(self).__name__}.merge: `other` must be a {type(self).__name__} or its "
                                f"state() dict, got a {type(other).__name__}.")
            other_state = other.state()
        elif isinstance(other, Mapping):
            other_state = dict(other)
        else:
            raise TypeError(f"{type(self).__name__}.merge: `other` must be a {type(self).__name__} or a dict from "
                            f"its state(), got {type(other).__name__}.")
        if set(other_state) != set(self._state_defaults):
            raise ValueError(f"{type(self).__name__}.merge: `other` has states {sorted(other_state)}, expected "
                             f"{sorted(self._state_defaults)}; merge only states of the same metric class.")
        merged = {}
        for name in self._state_defaults:
            mine, theirs = getattr(self, name), other_state[name]
            if not isinstance(theirs, torch.Tensor):
                raise TypeError(f"{type(self).__name__}.merge: state {name!r} must be a torch.Tensor, "
                                f"got {type(theirs).__name__}.")
            if mine.dim() and theirs.dim() and mine.shape != theirs.shape:
                raise ValueError(f"{type(self).__name__}.merge: state {name!r} has shape {tuple(theirs.shape)} in "
                                 f"`other` but {tuple(mine.shape)} here; were both metrics built with the same "
                                 f"model (same embedding size / labels)?")
            merged[name] = mine + theirs.to(device=mine.device, dtype=mine.dtype)
        for name, value in merged.items():
            setattr(self, name, value)
        return self

    @abc.abstractmethod
    def update(self, *args: tp.Any, **kwargs: tp.Any) -> None:
        """Accumulate one batch."""

    @abc.abstractmethod
    def compute(self) -> tp.Any:
        """The metric value over everything accumulated since the last reset."""


# --------------------------------------------------------------------------- input preparation


def check_audio_batch(wav: object, name: str, func: str) -> torch.Tensor:
    """Validate a float audio batch ``[B, C, T]`` with ``B >= 1``."""
    if not isinstance(wav, torch.Tensor):
        raise TypeError(f"{func}: `{name}` must be a torch.Tensor of audio [B, C, T], got {type(wav).__name__}.")
    if wav.dim() != 3:
        raise ValueError(f"{func}: `{name}` must have shape [B, C, T] (batch, channels, samples), got "
                         f"{tuple(wav.shape)}; for a single mono clip use wav[None, None].")
    if not wav.is_floating_point():
        raise TypeError(f"{func}: `{name}` must be floating point audio in [-1, 1], got {wav.dtype}; "
                        f"convert int16 PCM with audiocraft.data.audio_utils.f32_pcm.")
    if wav.shape[0] == 0 or wav.shape[-1] == 0:
        raise ValueError(f"{func}: `{name}` is empty (shape {tuple(wav.shape)}); pass at least one clip "
                         f"with at least one sample.")
    return wav


def per_clip_ints(value: object, batch: int, name: str, func: str) -> list[int]:
    """Validate a per-clip integer argument (one int, a sequence or a tensor ``[B]``) -> ``B`` ints."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = [value.item()] * batch
        elif value.dim() == 1:
            value = value.tolist()
        else:
            raise ValueError(f"{func}: `{name}` must be a 1-d tensor [B], got shape {tuple(value.shape)}.")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * batch
    elif not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{func}: `{name}` must be an int, a sequence or a tensor [B], got {type(value).__name__}.")
    values = list(value)
    if len(values) != batch:
        raise ValueError(f"{func}: `{name}` must have one entry per clip (B={batch}), got {len(values)}.")
    out = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or float(item) != int(item):
            raise ValueError(f"{func}: `{name}` must hold whole numbers, got {item!r}.")
        out.append(int(item))
    return out


def _model_device(model: object) -> torch.device | None:
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return None


def run_audio_model(func: tp.Callable[[torch.Tensor], torch.Tensor], model: object, wav: torch.Tensor,
                    sizes: torch.Tensor | Sequence[int] | None, sample_rates: torch.Tensor | Sequence[int] | int | None,
                    caller: str, name: str = "wav") -> torch.Tensor:
    """Run a clip-level audio model on a padded batch, one output row per clip.

    Each clip ``wav[i, :, :sizes[i]]`` is converted from ``sample_rates[i]`` to
    ``model.sample_rate`` Hz and to ``model.channels`` channels (1 if the model has no such
    attribute) with :func:`convert_audio`; clips that then have equal lengths are passed to
    ``func`` together, under ``torch.no_grad()``, on the model's device.

    Args:
        func: the model method, audio ``[b, C', T']`` -> ``[b, D]``.
        model: the object owning ``func`` (gives ``sample_rate`` and ``channels``).
        wav: padded audio ``[B, C, T]``.
        sizes: valid length of each clip in samples ``[B]``; None: all ``T``.
        sample_rates: sample rate of each clip in Hz ``[B]`` or one int; None: already at
            ``model.sample_rate``.
        caller: name used in error messages.
        name: name of the audio argument in error messages.
    Returns:
        float64 CPU tensor ``[B, D]``, rows in the order of ``wav``.
    """
    wav = check_audio_batch(wav, name, caller)
    batch, _, length = wav.shape
    model_rate = int(model.sample_rate)  # type: ignore[attr-defined]
    channels = int(getattr(model, "channels", 1))
    lengths = [length] * batch if sizes is None else per_clip_ints(sizes, batch, "sizes", caller)
    rates = [model_rate] * batch if sample_rates is None else per_clip_ints(sample_rates, batch, "sample_rates", caller)
    for index, (size, rate) in enumerate(zip(lengths, rates)):
        if not 1 <= size <= length:
            raise ValueError(f"{caller}: `sizes[{index}]` must be between 1 and T={length} samples, got {size}.")
        if rate <= 0:
            raise ValueError(f"{caller}: `sample_rates[{index}]` must be a positive number of Hz, got {rate}.")
    # Group clips that share (valid length, sample rate): they convert and run as one batch.
    groups: dict[tuple[int, int], list[int]] = {}
    for index, key in enumerate(zip(lengths, rates)):
        groups.setdefault(key, []).append(index)
    device = _model_device(model)
    rows: list[torch.Tensor | None] = [None] * batch
    with torch.no_grad():
        for (size, rate), indices in groups.items():
            clips = wav[indices, :, :size]
            clips = convert_audio(clips, from_rate=rate, to_rate=model_rate, to_channels=channels)
            if clips.shape[-1] == 0:
                raise ValueError(f"{caller}: clips {indices} of `{name}` have {size} samples at {rate} Hz, which is "
                                 f"nothing once resampled to {model_rate} Hz; pass longer clips.")
            if device is not None:
                clips = clips.to(device)
            out = func(clips)
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(indices):
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"{caller}: {type(model).__name__} must return a tensor [B, D] with B={len(indices)} "
                                 f"for an input {tuple(clips.shape)}, got {got}.")
            out = out.detach().to("cpu", torch.float64)
            if not torch.isfinite(out).all():
                raise ValueError(f"{caller}: {type(model).__name__} returned non-finite values (NaN/inf) for clips "
                                 f"{indices} of `{name}`; check the audio (silence, NaN samples) and the model.")
            for row, index in enumerate(indices):
                rows[index] = out[row]
    return torch.stack(tp.cast(list[torch.Tensor], rows))
