"""Token cache: batches written by any number of processes read back in the same order, stale caches refused."""
from __future__ import annotations

import pytest
import torch

from audiocraft.data.token_cache import TokenBatch, TokenCache, TokenCacheDataset
from audiocraft.modules.conditioners import ConditioningAttributes

SIGNATURE = {"compression_model": "//pretrained/debug_compression_model", "frame_rate": 25.0, "num_codebooks": 4}


def _write_epoch(cache: TokenCache, epoch: int, updates: int = 3, world: int = 2, batch: int = 2) -> torch.Tensor:
    """Write ``updates`` batches for each of ``world`` processes; returns all codes [N, K, T] in global order."""
    codes = torch.randint(0, 400, (updates * world * batch, 4, 5), generator=torch.Generator().manual_seed(epoch))
    for update in range(updates):
        for rank in range(world):
            start = (update * world + rank) * batch
            part = codes[start:start + batch]
            attributes = [ConditioningAttributes(text={"description": f"item {start + i}", "genre": None})
                          for i in range(batch)]
            cache.write_batch(epoch, start, part, attributes, n_frames=[1000 + start + i for i in range(batch)],
                              sample_rate=32000, paths=[f"/a/{start + i}.wav" for i in range(batch)],
                              seek_times=[0.5] * batch)
    cache.finish_epoch(epoch, len(codes))
    return codes


def test_read_back_in_the_written_order_for_any_number_of_processes(tmp_path):
    cache = TokenCache(tmp_path / "cache", SIGNATURE)
    codes = _write_epoch(cache, epoch=1)
    stored = torch.load(next((tmp_path / "cache" / "epoch_00001").glob("*.pt")), weights_only=True)
    assert stored["codes"].dtype == torch.int16
    same_layout = [TokenCacheDataset(cache, batch_size=2, rank=rank, world_size=2) for rank in range(2)]
    for dataset in same_layout:
        dataset.set_epoch(1)
        assert len(dataset) == 3
    batch = same_layout[1][2]  # update 2 of process 1: positions 10, 11
    assert isinstance(batch, TokenBatch) and batch.codes.dtype == torch.long
    assert torch.equal(batch.codes, codes[10:12])
    assert [a.text for a in batch.attributes] == [{"description": "item 10", "genre": None},
                                                  {"description": "item 11", "genre": None}]
    assert batch.n_frames == [1010, 1011] and batch.sample_rate == 32000
    single = TokenCacheDataset(cache, batch_size=4, rank=0, world_size=1)
    single.set_epoch(1)
    assert len(single) == 3
    assert torch.equal(torch.cat([single[u].codes for u in range(3)]), codes)
    with pytest.raises(IndexError):
        single[3]


def test_epochs_cycle_over_the_complete_ones(tmp_path):
    cache = TokenCache(tmp_path / "cache", SIGNATURE)
    with pytest.raises(FileNotFoundError, match="cache.write=true"):
        cache.source_epoch(1)
    first = _write_epoch(cache, epoch=1)
    second = _write_epoch(cache, epoch=2)
    cache.write_batch(3, 0, first[:2], [ConditioningAttributes()] * 2, [1, 1], 32000)  # epoch 3 unfinished
    assert cache.complete_epochs() == [1, 2]
    assert [cache.source_epoch(epoch) for epoch in (1, 2, 3, 4, 5)] == [1, 2, 1, 2, 1]
    dataset = TokenCacheDataset(cache, batch_size=4)
    dataset.set_epoch(4)
    assert torch.equal(dataset[0].codes, second[:4])


def test_a_cache_written_for_other_settings_is_refused(tmp_path):
    cache = TokenCache(tmp_path / "cache", SIGNATURE)
    _write_epoch(cache, epoch=1)
    TokenCache(tmp_path / "cache", SIGNATURE)  # same settings: fine
    with pytest.raises(ValueError, match="frame_rate.*cache.path"):
        TokenCache(tmp_path / "cache", {**SIGNATURE, "frame_rate": 50.0})


def test_bad_arguments(tmp_path):
    cache = TokenCache(tmp_path / "cache", SIGNATURE)
    with pytest.raises(ValueError, match="codes"):
        cache.write_batch(1, 0, torch.zeros(2, 4), [ConditioningAttributes()] * 2, [1, 1], 32000)
    with pytest.raises(ValueError, match="one of each"):
        cache.write_batch(1, 0, torch.zeros(2, 4, 3, dtype=torch.long), [ConditioningAttributes()], [1, 1], 32000)
    with pytest.raises(ValueError, match="batch_size"):
        TokenCacheDataset(cache, batch_size=0)
    _write_epoch(cache, epoch=1, updates=1, world=1, batch=2)
    dataset = TokenCacheDataset(cache, batch_size=4)
    with pytest.raises(ValueError, match="fewer than one batch"):
        dataset.set_epoch(1)


def test_an_lm_over_fewer_codebooks_reads_their_prefix_and_never_writes(tmp_path):
    codes = _write_epoch(TokenCache(tmp_path / "cache", SIGNATURE), epoch=1)
    fewer = {**SIGNATURE, "num_codebooks": 2}
    with pytest.raises(ValueError, match="num_codebooks"):  # only for a residual quantizer's first codebooks
        TokenCache(tmp_path / "cache", fewer)
    with pytest.raises(ValueError, match="frame_rate"):  # any other difference is still refused
        TokenCache(tmp_path / "cache", {**fewer, "frame_rate": 50.0}, codebook_prefix=True)
    with pytest.raises(ValueError, match="num_codebooks"):  # more codebooks than written cannot be read
        TokenCache(tmp_path / "cache", {**SIGNATURE, "num_codebooks": 8}, codebook_prefix=True)
    cache = TokenCache(tmp_path / "cache", fewer, codebook_prefix=True)
    assert cache.read_only and cache.num_codebooks == 2
    dataset = TokenCacheDataset(cache, batch_size=4)
    dataset.set_epoch(1)
    assert torch.equal(torch.cat([dataset[u].codes for u in range(len(dataset))]), codes[:, :2])
    with pytest.raises(ValueError, match="can be read, not written"):
        cache.write_batch(2, 0, codes[:2, :2], [ConditioningAttributes()] * 2, [1, 1], 32000)
    assert cache.complete_epochs() == [1]
    assert not TokenCache(tmp_path / "cache", SIGNATURE, codebook_prefix=True).read_only  # same codebooks
