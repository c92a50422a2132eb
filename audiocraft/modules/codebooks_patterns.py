"""Codebook interleaving patterns: how K parallel code streams become one LM sequence.

A *pattern* decides which original code ``(t, q)`` (timestep, codebook) sits at which of the
S sequence steps the language model sees. Its layout is a list with one entry per sequence
step, listing the :data:`LayoutCoord` placed there; step 0 is always empty (the special
start token). MusicGen's default delay pattern shifts codebook ``q`` by ``delays[q]`` steps.

* :class:`Pattern`: a layout validated once, plus the gathers turning codes ``[B, K, T]`` into
  a sequence ``[B, K, S]`` and back, and model logits ``[B, card, K, S]`` into ``[B, card, K, T]``.
* One small provider per strategy builds the layout for a number of timesteps:
  :class:`DelayedPatternProvider`, :class:`ParallelPatternProvider`,
  :class:`UnrolledPatternProvider`, :class:`CoarseFirstPattern`, :class:`MusicLMPattern`.

Layouts, masks and special-token filling match Meta's AudioCraft exactly, so released
MusicGen checkpoints see the sequences they were trained on.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import OrderedDict, namedtuple
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, Sequence, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

LayoutCoord = namedtuple("LayoutCoord", ["t", "q"])
LayoutCoord.__doc__ = "Position of one code: ``t`` its timestep (frame), ``q`` its codebook index."
PatternLayout = list  # list (one item per sequence step) of lists of LayoutCoord

_CACHE_SIZE = 100


class _LRUCache:
    """A tiny bounded memo: ``get_or_build(key, build)`` keeps the last ``size`` results."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()

    def get_or_build(self, key: Hashable, build: Callable[[], object]):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = build()
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


def _check_positive_int(name: str, value: object, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).{hint}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}.{hint}")
    return int(value)


def _check_tensor(name: str, x: object, dims: int, layout: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != dims:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a {dims}-D tensor {layout}, got {got}.")


def _check_int_list(name: str, values: Sequence[int], length: int, length_hint: str) -> list[int]:
    """Validate a per-codebook list of non-negative, non-decreasing ints."""
    values = list(values)
    if len(values) != length:
        raise ValueError(f"{name} must have {length} entries ({length_hint}), got {len(values)}: {values}. "
                         f"Give one value per codebook.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must contain non-negative ints, got {values}.")
    values = [int(v) for v in values]
    if sorted(values) != values:
        raise ValueError(f"{name} must be non-decreasing (codebook q+1 may not come before codebook q), "
                         f"got {values}. Sort them, e.g. {sorted(values)}.")
    return values


@dataclass
class Pattern:
    """A validated interleaving layout over ``n_q`` codebooks and ``timesteps`` frames.

    Args:
        layout (list of list of LayoutCoord): one entry per sequence step; entry ``s`` holds
            the ``(t, q)`` codes placed at step ``s``. ``layout[0]`` must be empty (it is the
            position of the initial special token). A codebook may appear at most once per
            step, and its timesteps may never go backwards as ``s`` grows. Coordinates with
            ``t >= timesteps`` are allowed (the delay pattern has them); they are masked out.
        timesteps (int): T, number of frames of the original codes.
        n_q (int): K, number of codebooks.

    Raises:
        ValueError: if the layout breaks one of the rules above.
    """

    layout: PatternLayout
    timesteps: int
    n_q: int
    _cache: _LRUCache = field(default_factory=_LRUCache, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.timesteps = _check_positive_int("timesteps", self.timesteps)
        self.n_q = _check_positive_int("n_q", self.n_q)
        self.layout = self._validated_layout(self.layout)
        # Flattened view of the layout: arrays of (step, codebook, timestep), ordered by step.
        flat = np.asarray([(s, c.q, c.t) for s, coords in enumerate(self.layout) for c in coords],
                          dtype=np.int64).reshape(-1, 3)
        self._steps, self._qs, self._ts = flat[:, 0], flat[:, 1], flat[:, 2]
        logger.debug("New pattern: %d timesteps, %d sequence steps", self.timesteps, len(self.layout))

    def _validated_layout(self, layout: PatternLayout) -> list:
        if not isinstance(layout, (list, tuple)) or len(layout) == 0:
            raise ValueError(f"layout must be a non-empty list of lists of LayoutCoord(t, q), got {layout!r}.")
        if len(layout[0]) != 0:
            raise ValueError(f"layout[0] must be empty (it is the slot of the initial special token), "
                             f"got {list(layout[0])}. Prepend [] to your layout.")
        last_t = [0] * self.n_q
        checked = []
        for s, coords in enumerate(layout):
            step = []
            seen_q = set()
            for coord in coords:
                if len(coord) != 2:
                    raise ValueError(f"layout[{s}] holds {coord!r}; expected LayoutCoord(t, q).")
                t, q = int(coord[0]), int(coord[1])
                if not 0 <= q < self.n_q:
                    raise ValueError(f"layout[{s}] refers to codebook q={q}, but the pattern has n_q={self.n_q} "
                                     f"codebooks (valid q: 0..{self.n_q - 1}).")
                if t < 0:
                    raise ValueError(f"layout[{s}] has a negative timestep t={t} for codebook {q}.")
                if q in seen_q:
                    raise ValueError(f"layout[{s}] has several entries for codebook {q}; "
                                     f"a sequence step holds at most one code per codebook.")
                if t < last_t[q]:
                    raise ValueError(f"layout[{s}] goes back in time for codebook {q} (t={t} after t={last_t[q]}); "
                                     f"each codebook's timesteps must be non-decreasing along the sequence.")
                seen_q.add(q)
                last_t[q] = t
                step.append(LayoutCoord(t, q))
            checked.append(step)
        return checked

    # ------------------------------------------------------------------ layout facts
    @property
    def num_sequence_steps(self) -> int:
        """Number of sequence steps after the initial special-token step: ``len(layout) - 1``."""
        return len(self.layout) - 1

    @property
    def max_delay(self) -> int:
        """How many steps the layout runs past ``timesteps``: ``max(t + 1) - timesteps``.

        For the delay pattern this is ``max(delays)``.
        """
        end = int(self._ts.max()) + 1 if self._ts.size else 0
        return end - self.timesteps

    @property
    def valid_layout(self) -> list:
        """The layout cut after its last fully defined step: ``layout[:len(layout) - max_delay]``."""
        return self.layout[:len(self.layout) - self.max_delay]

    def _check_query(self, t: int, q: Optional[int]) -> None:
        if t > self.timesteps:
            raise ValueError(f"t={t} is beyond the pattern's {self.timesteps} timesteps; "
                             f"build a pattern with more timesteps.")
        if q is not None and q > self.n_q:
            raise ValueError(f"q={q} is beyond the pattern's {self.n_q} codebooks.")

    def get_sequence_coords_with_timestep(self, t: int, q: Optional[int] = None) -> list:
        """All ``(step, LayoutCoord)`` pairs whose coordinate has timestep ``t`` (and codebook ``q`` if given).

        Raises:
            ValueError: if ``t > timesteps`` or ``q > n_q``.
        """
        self._check_query(t, q)
        return [(s, coord) for s, coords in enumerate(self.layout) for coord in coords
                if coord.t == t and (q is None or coord.q == q)]

    def get_steps_with_timestep(self, t: int, q: Optional[int] = None) -> list[int]:
        """Sequence steps holding timestep ``t`` (and codebook ``q`` if given), in increasing order."""
        return [s for s, _ in self.get_sequence_coords_with_timestep(t, q)]

    def get_first_step_with_timesteps(self, t: int, q: Optional[int] = None) -> Optional[int]:
        """First sequence step holding timestep ``t`` (and codebook ``q`` if given), or None."""
        steps = self.get_steps_with_timestep(t, q)
        return steps[0] if steps else None

    # ------------------------------------------------------------------ index building
    def _layout_length(self, keep_only_valid_steps: bool) -> int:
        return len(self.valid_layout) if keep_only_valid_steps else len(self.layout)

    def _check_codebooks(self, n_q: int) -> None:
        if n_q != self.n_q:
            raise ValueError(f"the input has {n_q} codebooks but the pattern was built for n_q={self.n_q}; "
                             f"use a pattern provider with n_q={n_q}.")

    def _sequence_indexes(self, timesteps: int, n_q: int, keep_only_valid_steps: bool,
                          device: Union[torch.device, str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather indexes (into flattened codes ``[K * T + 1]``) building the pattern sequence.

        Returns:
            indexes (torch.Tensor): long ``[K, S]``; ``K * T`` (the appended special token) where empty.
            mask (torch.Tensor): bool ``[K, S]``, True where a real code is placed.
        """
        self._check_codebooks(n_q)
        if timesteps > self.timesteps:
            raise ValueError(f"the input has {timesteps} timesteps but the pattern only covers {self.timesteps}; "
                             f"get a pattern for at least {timesteps} timesteps.")
        key = ("build", timesteps, n_q, bool(keep_only_valid_steps), str(device))

        def build():
            num_steps = self._layout_length(keep_only_valid_steps)
            indexes = np.full((n_q, num_steps), n_q * timesteps, dtype=np.int64)
            mask = np.zeros((n_q, num_steps), dtype=bool)
            keep = (self._steps < num_steps) & (self._ts < timesteps)
            qs, steps, ts = self._qs[keep], self._steps[keep], self._ts[keep]
            indexes[qs, steps] = qs * timesteps + ts
            mask[qs, steps] = True
            return torch.from_numpy(indexes).to(device), torch.from_numpy(mask).to(device)

        return self._cache.get_or_build(key, build)

    def _reverted_indexes(self, sequence_steps: int, n_q: int, keep_only_valid_steps: bool,
                          is_model_output: bool, device: Union[torch.device, str]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather indexes (into a flattened sequence ``[K * S + 1]``) restoring codes ``[K, T]``.

        With ``is_model_output`` the sequence is read as model outputs: the output at step
        ``s`` predicts the codes of layout step ``s + 1``.

        Returns:
            indexes (torch.Tensor): long ``[K, timesteps]``; ``K * S`` (the special token) where missing.
            mask (torch.Tensor): bool ``[K, timesteps]``, True where a value was found.
        """
        self._check_codebooks(n_q)
        num_steps = self._layout_length(keep_only_valid_steps)
        if sequence_steps > num_steps:
            raise ValueError(f"the sequence has {sequence_steps} steps but the pattern defines only {num_steps}"
                             f"{' valid' if keep_only_valid_steps else ''} steps; "
                             f"get a pattern for more timesteps.")
        key = ("revert", sequence_steps, n_q, bool(keep_only_valid_steps), bool(is_model_output), str(device))

        def build():
            timesteps = self.timesteps
            offset = 1 if is_model_output else 0
            positions = self._steps - offset
            keep = ((self._steps < num_steps) & (positions >= 0) & (positions < sequence_steps)
                    & (self._ts < timesteps))
            qs, ts, positions_kept = self._qs[keep], self._ts[keep], positions[keep]
            # If a (q, t) code appears at several steps, the last step wins.
            flat = qs * timesteps + ts
            _, last = np.unique(flat[::-1], return_index=True)
            last = flat.size - 1 - last
            qs, ts, positions_kept = qs[last], ts[last], positions_kept[last]
            indexes = np.full((n_q, timesteps), n_q * sequence_steps, dtype=np.int64)
            mask = np.zeros((n_q, timesteps), dtype=bool)
            indexes[qs, ts] = positions_kept + qs * sequence_steps
            mask[qs, ts] = True
            return torch.from_numpy(indexes).to(device), torch.from_numpy(mask).to(device)

        return self._cache.get_or_build(key, build)

    @staticmethod
    def _gather(x: torch.Tensor, indexes: torch.Tensor, special_token: Union[int, float]) -> torch.Tensor:
        """Gather along the flattened last dim of ``x [..., N]`` after appending ``special_token``."""
        filler = torch.zeros_like(x[..., :1]) + special_token
        return torch.cat([x, filler], dim=-1)[..., indexes.reshape(-1)]

    # ------------------------------------------------------------------ public transforms
    def build_pattern_sequence(self, z: torch.Tensor, special_token: int, keep_only_valid_steps: bool = False
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Interleave codes ``z [B, K, T]`` into the pattern sequence ``[B, K, S]``.

        Args:
            z (torch.Tensor): codes ``[B, K, T]`` with ``K == n_q`` and ``T <= timesteps``.
            special_token (int): value written where the layout places no code.
            keep_only_valid_steps (bool): stop at the last fully defined step (``S = len(valid_layout)``)
                instead of covering the whole layout (``S = len(layout)``).
        Returns:
            values (torch.Tensor): ``[B, K, S]``, ``special_token`` wherever ``mask`` is False.
            indexes (torch.Tensor): long ``[K, S]``, where each value was read in ``z`` flattened to ``[B, K * T]``
                (``K * T`` for the special token).
            mask (torch.Tensor): bool ``[K, S]``, True where a real code was placed.
        """
        _check_tensor("z", z, 3, "of codes [B, K, T]")
        B, K, T = z.shape
        indexes, mask = self._sequence_indexes(T, K, keep_only_valid_steps, z.device)
        values = self._gather(z.reshape(B, K * T), indexes, special_token)
        return values.view(B, K, indexes.shape[-1]), indexes, mask

    def revert_pattern_sequence(self, s: torch.Tensor, special_token: Union[int, float],
                                keep_only_valid_steps: bool = False
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Undo :meth:`build_pattern_sequence`: ``s [B, K, S]`` back to codes ``[B, K, timesteps]``.

        Args:
            s (torch.Tensor): pattern sequence ``[B, K, S]`` with ``S`` at most the layout length.
            special_token (int or float): value written for codes absent from the first ``S`` steps.
            keep_only_valid_steps (bool): whether ``s`` was built with ``keep_only_valid_steps``.
        Returns:
            values (torch.Tensor): ``[B, K, T]`` with ``T = timesteps``.
            indexes (torch.Tensor): long ``[K, T]``, positions in ``s`` flattened to ``[B, K * S]``.
            mask (torch.Tensor): bool ``[K, T]``, True where a value came from ``s``.
        """
        _check_tensor("s", s, 3, "(pattern sequence [B, K, S])")
        B, K, S = s.shape
        indexes, mask = self._reverted_indexes(S, K, keep_only_valid_steps, False, s.device)
        values = self._gather(s.reshape(B, K * S), indexes, special_token)
        return values.view(B, K, indexes.shape[-1]), indexes, mask

    def revert_pattern_logits(self, logits: torch.Tensor, special_token: float, keep_only_valid_steps: bool = False
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Map model outputs over the pattern sequence back onto the codes' timeline.

        The output at sequence step ``s`` predicts the codes placed at step ``s + 1``, so the
        output for code ``(t, q)`` is read one step before that code's step; outputs with no
        matching code (e.g. the last step) are dropped.

        Args:
            logits (torch.Tensor): ``[B, card, K, S]`` (vocabulary dim before the codebook dim).
            special_token (float): filler for codes with no prediction, typically ``float('nan')``.
            keep_only_valid_steps (bool): whether the input sequence was built with ``keep_only_valid_steps``.
        Returns:
            values (torch.Tensor): ``[B, card, K, T]`` with ``T = timesteps``.
            indexes (torch.Tensor): long ``[K, T]``, positions in ``logits`` flattened to ``[B, card, K * S]``.
            mask (torch.Tensor): bool ``[K, T]``, True where a prediction exists.
        """
        _check_tensor("logits", logits, 4, "[B, card, K, S] (permute [B, K, S, card] logits first)")
        B, card, K, S = logits.shape
        indexes, mask = self._reverted_indexes(S, K, keep_only_valid_steps, True, logits.device)
        values = self._gather(logits.reshape(B, card, K * S), indexes, special_token)
        return values.view(B, card, K, indexes.shape[-1]), indexes, mask


# ---------------------------------------------------------------------------- providers
class CodebooksPatternProvider(ABC):
    """Builds the :class:`Pattern` of one interleaving strategy for any number of timesteps.

    Subclasses implement :meth:`_build_layout`; :meth:`get_pattern` validates ``timesteps``,
    wraps the layout in a :class:`Pattern` and (with ``cached``) memoises it per ``timesteps``,
    which keeps the per-pattern index caches warm across calls.

    Args:
        n_q (int): K, number of codebooks.
        cached (bool): keep the last 100 patterns, keyed by ``timesteps``.
    """

    def __init__(self, n_q: int, cached: bool = True) -> None:
        self.n_q = _check_positive_int("n_q", n_q)
        self.cached = bool(cached)
        self._patterns = _LRUCache()

    def get_pattern(self, timesteps: int) -> Pattern:
        """The pattern laying out ``timesteps`` frames of ``n_q`` codebooks.

        Raises:
            ValueError: if ``timesteps`` is not a positive int.
        """
        timesteps = _check_positive_int("timesteps", timesteps, " Ask for a pattern of at least one frame.")

        def build() -> Pattern:
            return Pattern(self._build_layout(timesteps), timesteps=timesteps, n_q=self.n_q)

        return self._patterns.get_or_build(timesteps, build) if self.cached else build()

    @abstractmethod
    def _build_layout(self, timesteps: int) -> list:
        """The layout (list of lists of LayoutCoord, first item empty) for ``timesteps`` frames."""


class DelayedPatternProvider(CodebooksPatternProvider):
    """Codebook ``q`` is shifted right by ``delays[q]`` steps (MusicGen's default pattern).

    For ``n_q=3``, default delays ``[0, 1, 2]`` and 4 frames (``S`` = special token)::

        [[S, 1, 2, 3, 4, S, S],
         [S, S, 1, 2, 3, 4, S],
         [S, S, S, 1, 2, 3, 4]]

    Args:
        n_q (int): K, number of codebooks.
        delays (list of int, optional): non-decreasing delay of each codebook, in steps.
            Defaults to ``[0, 1, ..., n_q - 1]``.
        flatten_first (int): the first ``flatten_first`` frames are fully flattened (one code
            per step, codebook by codebook) before the delayed layout starts.
        empty_initial (int): number of extra empty steps after the initial special-token step.
    """

    def __init__(self, n_q: int, delays: Optional[Sequence[int]] = None,
                 flatten_first: int = 0, empty_initial: int = 0) -> None:
        super().__init__(n_q)
        if delays is None:
            delays = list(range(self.n_q))
        self.delays = _check_int_list("delays", delays, self.n_q, "one delay per codebook")
        for name, value in (("flatten_first", flatten_first), ("empty_initial", empty_initial)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
        self.flatten_first = int(flatten_first)
        self.empty_initial = int(empty_initial)

    def _build_layout(self, timesteps: int) -> list:
        layout: list = [[] for _ in range(1 + self.empty_initial)]
        for t in range(min(timesteps, self.flatten_first)):
            layout.extend([LayoutCoord(t, q)] for q in range(self.n_q))
        for step in range(self.flatten_first, timesteps + max(self.delays)):
            layout.append([LayoutCoord(step - delay, q) for q, delay in enumerate(self.delays)
                           if step - delay >= self.flatten_first])
        return layout


class ParallelPatternProvider(DelayedPatternProvider):
    """All codebooks of a frame at the same step: the delay pattern with zero delays.

    Args:
        n_q (int): K, number of codebooks.
    """

    def __init__(self, n_q: int) -> None:
        super().__init__(n_q, [0] * _check_positive_int("n_q", n_q))


class UnrolledPatternProvider(CodebooksPatternProvider):
    """Each frame is unrolled over several inner steps, optionally with per-codebook delays.

    ``flattening[q]`` is the inner step of codebook ``q``: codebooks sharing an inner step
    are emitted together, so ``flattening=range(n_q)`` flattens completely (``n_q`` steps per
    frame) and ``[0, 1, 1]`` emits codebook 0 alone, then codebooks 1 and 2 together.
    ``delays[q]`` moves codebook ``q``'s inner step that many frames later; codebooks sharing
    an inner step must share their delay.

    Args:
        n_q (int): K, number of codebooks.
        flattening (list of int, optional): non-decreasing inner step of each codebook.
            Defaults to ``[0, 1, ..., n_q - 1]``.
        delays (list of int, optional): non-decreasing delay of each codebook, in frames.
            Defaults to zeros.
    """

    def __init__(self, n_q: int, flattening: Optional[Sequence[int]] = None,
                 delays: Optional[Sequence[int]] = None) -> None:
        super().__init__(n_q)
        flattening = list(range(self.n_q)) if flattening is None else flattening
        delays = [0] * self.n_q if delays is None else delays
        flattening = _check_int_list("flattening", flattening, self.n_q, "one inner step per codebook")
        delays = _check_int_list("delays", delays, self.n_q, "one delay per codebook")
        # inner step -> (codebooks emitted at that step, their common delay)
        self._inner_steps: dict[int, tuple[list[int], int]] = {}
        for q, (inner, delay) in enumerate(zip(flattening, delays)):
            codebooks, group_delay = self._inner_steps.setdefault(inner, ([], delay))
            if group_delay != delay:
                raise ValueError(f"codebooks {codebooks} and {q} share inner step {inner} (flattening={flattening}) "
                                 f"but have different delays ({group_delay} vs {delay}, delays={delays}); "
                                 f"give codebooks flattened together the same delay.")
            codebooks.append(q)
        self.max_delay = max(delays)

    @property
    def _num_inner_steps(self) -> int:
        return max(self._inner_steps) + 1

    def num_virtual_steps(self, timesteps: int) -> int:
        """Length of the unrolled sequence without delays: ``timesteps * inner_steps + 1``."""
        return timesteps * self._num_inner_steps + 1

    def _build_layout(self, timesteps: int) -> list:
        # Every emitted step gets a sort position (its delayed frame); the layout is the
        # steps sorted by (position, coordinates), after the initial empty step.
        total = timesteps + self.max_delay
        positioned: list = [(-1, [])]
        for t in range(total):
            for inner in range(self._num_inner_steps):
                if inner not in self._inner_steps:
                    positioned.append((t, []))
                    continue
                codebooks, delay = self._inner_steps[inner]
                if t + delay < total:
                    positioned.append((t + delay, [LayoutCoord(t, q) for q in codebooks]))
        positioned.sort(key=lambda item: (item[0], [tuple(c) for c in item[1]]))
        return [coords for _, coords in positioned]


class CoarseFirstPattern(CodebooksPatternProvider):
    """All frames of codebook 0 first, then the other codebooks with optional delays.

    The finer codebooks are not causal with respect to the coarse one, so generation must
    always cover the full training duration.

    Args:
        n_q (int): K, number of codebooks (at least 2).
        delays (list of int, optional): non-decreasing delays of codebooks ``1..n_q-1``, in steps.
            Defaults to zeros.
    """

    def __init__(self, n_q: int, delays: Optional[Sequence[int]] = None) -> None:
        super().__init__(n_q)
        if self.n_q < 2:
            raise ValueError(f"CoarseFirstPattern needs n_q >= 2 (a coarse codebook and finer ones), got n_q={n_q}; "
                             f"use ParallelPatternProvider for a single codebook.")
        delays = [0] * (self.n_q - 1) if delays is None else delays
        self.delays = _check_int_list("delays", delays, self.n_q - 1, "one delay per codebook after the first")

    def _build_layout(self, timesteps: int) -> list:
        layout: list = [[]]
        layout.extend([LayoutCoord(t, 0)] for t in range(timesteps))
        for step in range(timesteps + max(self.delays)):
            layout.append([LayoutCoord(step - delay, q + 1) for q, delay in enumerate(self.delays)
                           if step - delay >= 0])
        return layout


class MusicLMPattern(CodebooksPatternProvider):
    """Full flattening by groups of codebooks, MusicLM style.

    Codebooks ``0..group_by-1`` are flattened over all frames first, then the next group, etc.

    Args:
        n_q (int): K, number of codebooks (a multiple of ``group_by``).
        group_by (int): number of codebooks per group.
    """

    def __init__(self, n_q: int, group_by: int = 2) -> None:
        super().__init__(n_q)
        self.group_by = _check_positive_int("group_by", group_by)
        if self.n_q % self.group_by != 0:
            raise ValueError(f"n_q={self.n_q} must be a multiple of group_by={self.group_by}; "
                             f"pick a group_by that divides n_q.")

    def _build_layout(self, timesteps: int) -> list:
        layout: list = [[]]
        for first in range(0, self.n_q, self.group_by):
            for t in range(timesteps):
                layout.extend([LayoutCoord(t, q)] for q in range(first, first + self.group_by))
        return layout
