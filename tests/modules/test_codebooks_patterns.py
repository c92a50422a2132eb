"""Codebook interleaving patterns: layouts, build/revert round-trips, logits mapping, validation."""
import math

import pytest
import torch

from audiocraft.modules.codebooks_patterns import (
    CodebooksPatternProvider,
    CoarseFirstPattern,
    DelayedPatternProvider,
    LayoutCoord,
    MusicLMPattern,
    ParallelPatternProvider,
    Pattern,
    UnrolledPatternProvider,
)

SPECIAL = -1  # codes are drawn from [0, 64), so -1 marks special-token slots unambiguously

# (provider, fully_recoverable_with_valid_steps): with keep_only_valid_steps=True a pattern with
# max_delay > 0 drops its trailing steps, so only the codes they do not hold come back.
PROVIDERS = [
    pytest.param(lambda: DelayedPatternProvider(4), id="delay-default"),
    pytest.param(lambda: DelayedPatternProvider(4, delays=[0, 1, 2, 3]), id="delay-musicgen"),
    pytest.param(lambda: DelayedPatternProvider(3, delays=[0, 0, 2], flatten_first=2, empty_initial=1),
                 id="delay-flatten-first"),
    pytest.param(lambda: ParallelPatternProvider(4), id="parallel"),
    pytest.param(lambda: UnrolledPatternProvider(3), id="unrolled-full"),
    pytest.param(lambda: UnrolledPatternProvider(3, flattening=[0, 1, 1]), id="unrolled-partial"),
    pytest.param(lambda: UnrolledPatternProvider(3, flattening=[0, 1, 1], delays=[0, 3, 3]), id="unrolled-delay"),
    pytest.param(lambda: UnrolledPatternProvider(4, flattening=[0, 2, 2, 3], delays=[0, 1, 1, 2]),
                 id="unrolled-gap"),
    pytest.param(lambda: CoarseFirstPattern(4), id="coarse-first"),
    pytest.param(lambda: CoarseFirstPattern(3, delays=[0, 2]), id="coarse-first-delay"),
    pytest.param(lambda: MusicLMPattern(4), id="musiclm"),
    pytest.param(lambda: MusicLMPattern(3, group_by=1), id="musiclm-by1"),
]


def _codes(batch: int, n_q: int, timesteps: int) -> torch.Tensor:
    return torch.randint(0, 64, (batch, n_q, timesteps))


@pytest.mark.parametrize("make_provider", PROVIDERS)
@pytest.mark.parametrize("timesteps", [1, 5, 12])
def test_build_then_revert_round_trips(make_provider, timesteps):
    provider = make_provider()
    pattern = provider.get_pattern(timesteps)
    codes = _codes(2, provider.n_q, timesteps)
    seq, indexes, mask = pattern.build_pattern_sequence(codes, SPECIAL)
    assert seq.shape == (2, provider.n_q, len(pattern.layout)) == (2, *indexes.shape)
    assert mask.shape == indexes.shape and mask.dtype == torch.bool
    # Every code is placed somewhere, and the special token sits exactly where the mask is False.
    assert int(mask.sum()) == provider.n_q * timesteps
    assert bool((seq[:, ~mask] == SPECIAL).all()) and bool((seq[:, mask] != SPECIAL).all())
    restored, _, restored_mask = pattern.revert_pattern_sequence(seq, SPECIAL)
    assert bool(restored_mask.all())
    assert torch.equal(restored, codes)


@pytest.mark.parametrize("make_provider", PROVIDERS)
def test_round_trip_keeping_only_valid_steps(make_provider):
    provider = make_provider()
    timesteps = 7
    pattern = provider.get_pattern(timesteps)
    codes = _codes(3, provider.n_q, timesteps)
    seq, _, mask = pattern.build_pattern_sequence(codes, SPECIAL, keep_only_valid_steps=True)
    assert seq.shape[-1] == len(pattern.valid_layout) == len(pattern.layout) - max(pattern.max_delay, 0)
    assert bool((seq[:, ~mask] == SPECIAL).all())
    restored, _, restored_mask = pattern.revert_pattern_sequence(seq, SPECIAL, keep_only_valid_steps=True)
    assert restored.shape == codes.shape
    assert torch.equal(restored[:, restored_mask], codes[:, restored_mask])
    assert bool((restored[:, ~restored_mask] == SPECIAL).all())
    if pattern.max_delay <= 0:  # nothing is cut: the round trip is exact
        assert bool(restored_mask.all())


def test_delay_layout_matches_hand_written_sequence():
    pattern = DelayedPatternProvider(4, delays=[0, 1, 2, 3]).get_pattern(3)
    assert pattern.layout == [
        [],
        [(0, 0)],
        [(1, 0), (0, 1)],
        [(2, 0), (1, 1), (0, 2)],
        [(3, 0), (2, 1), (1, 2), (0, 3)],
        [(4, 0), (3, 1), (2, 2), (1, 3)],
        [(5, 0), (4, 1), (3, 2), (2, 3)],
    ]
    assert pattern.num_sequence_steps == 6 and pattern.max_delay == 3
    codes = torch.tensor([[[10, 11, 12], [20, 21, 22], [30, 31, 32], [40, 41, 42]]])
    S = SPECIAL
    expected = torch.tensor([[
        [S, 10, 11, 12, S, S, S],
        [S, S, 20, 21, 22, S, S],
        [S, S, S, 30, 31, 32, S],
        [S, S, S, S, 40, 41, 42],
    ]])
    seq, indexes, mask = pattern.build_pattern_sequence(codes, SPECIAL)
    assert torch.equal(seq, expected)
    assert torch.equal(mask, expected[0] != SPECIAL)
    # indexes point into codes flattened to [K * T], K * T standing for the special token.
    assert indexes[2].tolist() == [12, 12, 12, 6, 7, 8, 12]
    valid_seq, _, _ = pattern.build_pattern_sequence(codes, SPECIAL, keep_only_valid_steps=True)
    assert torch.equal(valid_seq, expected[..., :4])


def test_delay_pattern_with_shorter_input_masks_missing_timesteps():
    pattern = DelayedPatternProvider(2).get_pattern(4)
    codes = torch.tensor([[[1, 2], [3, 4]]])
    seq, _, mask = pattern.build_pattern_sequence(codes, SPECIAL)
    S = SPECIAL
    assert seq.tolist() == [[[S, 1, 2, S, S, S], [S, S, 3, 4, S, S]]]
    assert int(mask.sum()) == 4


def test_revert_logits_reads_each_code_one_step_early():
    provider = DelayedPatternProvider(4, delays=[0, 1, 2, 3])
    timesteps = 6
    pattern = provider.get_pattern(timesteps)
    B, card, K = 2, 5, 4
    S = len(pattern.valid_layout)
    # logits[b, c, q, s] = 1000 * b + 100 * c + 10 * q + s: the value tells where it was read.
    b, c, q, s = torch.meshgrid(torch.arange(B), torch.arange(card), torch.arange(K), torch.arange(S), indexing="ij")
    logits = (1000 * b + 100 * c + 10 * q + s).float()
    values, _, mask = pattern.revert_pattern_logits(logits, float("nan"), keep_only_valid_steps=True)
    assert values.shape == (B, card, K, timesteps)
    for qq in range(K):
        for t in range(timesteps):
            step = pattern.get_first_step_with_timesteps(t, qq)
            assert step == t + qq + 1  # the code (t, q) sits at step t + delay_q + 1
            if step <= S - 1:  # predicted by the output at step - 1, within the valid steps
                assert bool(mask[qq, t])
                expected = 1000 * b[..., qq, 0] + 100 * c[..., qq, 0] + 10 * qq + (step - 1)
                assert torch.equal(values[:, :, qq, t], expected.float())
            else:
                assert not bool(mask[qq, t])
                assert bool(values[:, :, qq, t].isnan().all())
    # Same NaN layout as AudioCraft's own LM output for T=20 (reference a_lm_logits).
    assert torch.equal(pattern.revert_pattern_logits(logits, math.nan, True)[2],
                       torch.tensor([[t <= timesteps - 1 - d for t in range(timesteps)] for d in range(4)]))


def test_revert_logits_mask_matches_audiocraft_reference():
    from conftest import load_reference

    ref = load_reference("a_lm_logits")
    B, K, T = ref["codes"].shape
    pattern = DelayedPatternProvider(K, delays=[0, 1, 2, 3]).get_pattern(T)
    seq, _, _ = pattern.build_pattern_sequence(ref["codes"], 64, keep_only_valid_steps=True)
    logits = torch.randn(B, 64, K, seq.shape[-1])
    values, _, mask = pattern.revert_pattern_logits(logits, float("nan"), keep_only_valid_steps=True)
    assert torch.equal(mask.expand(B, K, T), ref["mask"])
    assert torch.equal(values.isnan().any(dim=1), ~ref["mask"])


def test_unrolled_full_flattening_layout():
    pattern = UnrolledPatternProvider(3).get_pattern(2)
    assert pattern.layout == [[], [(0, 0)], [(0, 1)], [(0, 2)], [(1, 0)], [(1, 1)], [(1, 2)]]


def test_unrolled_with_delays_layout():
    pattern = UnrolledPatternProvider(3, flattening=[0, 1, 1], delays=[0, 3, 3]).get_pattern(4)
    codes = torch.tensor([[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]])
    seq, _, _ = pattern.build_pattern_sequence(codes, 0)
    # Codebooks 1 and 2 share an inner step and come 3 frames after codebook 0's first code;
    # at equal positions the step holding the smaller coordinate comes first.
    assert seq.tolist() == [[
        [0, 1, 2, 3, 0, 4, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 5, 0, 6, 0, 7, 0, 8, 0],
        [0, 0, 0, 0, 9, 0, 10, 0, 11, 0, 12, 0],
    ]]


def test_coarse_first_and_musiclm_layouts():
    assert CoarseFirstPattern(3, delays=[0, 1]).get_pattern(2).layout == [
        [], [(0, 0)], [(1, 0)], [(0, 1)], [(1, 1), (0, 2)], [(2, 1), (1, 2)]]
    assert MusicLMPattern(4, group_by=2).get_pattern(2).layout == [
        [], [(0, 0)], [(0, 1)], [(1, 0)], [(1, 1)], [(0, 2)], [(0, 3)], [(1, 2)], [(1, 3)]]


def test_step_queries():
    pattern = DelayedPatternProvider(3).get_pattern(4)
    assert pattern.get_sequence_coords_with_timestep(1, 2) == [(4, LayoutCoord(1, 2))]
    assert pattern.get_steps_with_timestep(0) == [1, 2, 3]
    assert pattern.get_first_step_with_timesteps(2) == 3
    assert pattern.get_first_step_with_timesteps(4) == 5  # delayed coordinates past T exist in the layout
    with pytest.raises(ValueError, match="timesteps"):
        pattern.get_steps_with_timestep(5)


def test_patterns_and_indexes_are_cached():
    provider = DelayedPatternProvider(4)
    assert provider.get_pattern(10) is provider.get_pattern(10)
    assert isinstance(provider, CodebooksPatternProvider)
    pattern = provider.get_pattern(10)
    codes = _codes(1, 4, 10)
    _, idx1, _ = pattern.build_pattern_sequence(codes, SPECIAL)
    _, idx2, _ = pattern.build_pattern_sequence(codes, SPECIAL)
    assert idx1 is idx2
    uncached = DelayedPatternProvider(4, delays=[0, 1, 2, 3])
    uncached.cached = False
    assert uncached.get_pattern(5) is not uncached.get_pattern(5)
    assert uncached.get_pattern(5) == uncached.get_pattern(5)


@pytest.mark.parametrize("layout, message", [
    ([], "non-empty"),
    ([[LayoutCoord(0, 0)]], r"layout\[0\] must be empty"),
    ([[], [LayoutCoord(0, 0), LayoutCoord(1, 0)]], "several entries for codebook 0"),
    ([[], [LayoutCoord(1, 0)], [LayoutCoord(0, 0)]], "back in time"),
    ([[], [LayoutCoord(0, 2)]], "codebook q=2"),
    ([[], [LayoutCoord(-1, 0)]], "negative timestep"),
])
def test_pattern_rejects_invalid_layouts(layout, message):
    with pytest.raises(ValueError, match=message):
        Pattern(layout, timesteps=2, n_q=2)


def test_pattern_rejects_mismatched_inputs():
    pattern = DelayedPatternProvider(2).get_pattern(3)
    with pytest.raises(ValueError, match="n_q=2"):
        pattern.build_pattern_sequence(_codes(1, 3, 3), SPECIAL)
    with pytest.raises(ValueError, match="only covers 3"):
        pattern.build_pattern_sequence(_codes(1, 2, 4), SPECIAL)
    with pytest.raises(ValueError, match=r"\[B, K, T\]"):
        pattern.build_pattern_sequence(_codes(1, 2, 3)[0], SPECIAL)
    with pytest.raises(ValueError, match="defines only"):
        pattern.revert_pattern_sequence(_codes(1, 2, 9), SPECIAL)
    with pytest.raises(ValueError, match=r"\[B, card, K, S\]"):
        pattern.revert_pattern_logits(torch.zeros(1, 2, 4), math.nan)


@pytest.mark.parametrize("make, message", [
    (lambda: DelayedPatternProvider(4, delays=[0, 1, 2]), "4 entries"),
    (lambda: DelayedPatternProvider(3, delays=[0, 2, 1]), "non-decreasing"),
    (lambda: DelayedPatternProvider(2, delays=[-1, 0]), "non-negative"),
    (lambda: DelayedPatternProvider(2, flatten_first=-1), "flatten_first"),
    (lambda: DelayedPatternProvider(0), "n_q"),
    (lambda: UnrolledPatternProvider(3, flattening=[0, 1]), "flattening"),
    (lambda: UnrolledPatternProvider(3, flattening=[1, 0, 2]), "non-decreasing"),
    (lambda: UnrolledPatternProvider(3, flattening=[0, 1, 1], delays=[0, 1, 2]), "same delay"),
    (lambda: CoarseFirstPattern(3, delays=[0, 1, 2]), "2 entries"),
    (lambda: CoarseFirstPattern(1), "n_q >= 2"),
    (lambda: MusicLMPattern(3, group_by=2), "multiple of group_by"),
])
def test_providers_reject_invalid_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("timesteps", [0, -3])
def test_get_pattern_rejects_non_positive_timesteps(timesteps):
    with pytest.raises(ValueError, match="timesteps"):
        DelayedPatternProvider(4).get_pattern(timesteps)
    with pytest.raises(TypeError, match="timesteps"):
        DelayedPatternProvider(4).get_pattern(2.5)
