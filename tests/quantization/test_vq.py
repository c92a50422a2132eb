"""Vector quantization: k-means init, EMA updates, dead codes, commitment loss, RVQ consistency."""
import math

import pytest
import torch

from audiocraft.quantization import (
    EuclideanCodebook,
    ResidualVectorQuantizer,
    VectorQuantization,
    kmeans,
)


def _clusters(num_points: int = 600, dim: int = 4, centres: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(centres, dim, generator=generator) * 10
    labels = torch.arange(num_points) % centres
    return means[labels] + 0.1 * torch.randn(num_points, dim, generator=generator), means


# ----------------------------------------------------------------------------- codebook

def test_kmeans_finds_well_separated_clusters():
    data, means = _clusters()
    centres, counts = kmeans(data, 3, num_iters=10)
    assert counts.sum() == len(data)
    # every true centre has a found centre next to it
    distance = torch.cdist(means, centres).min(dim=1).values
    assert torch.all(distance < 0.5)


def test_kmeans_init_sets_inited_and_codebook():
    codebook = EuclideanCodebook(dim=4, codebook_size=3, kmeans_init=True, kmeans_iters=10)
    assert not codebook.is_initialized and torch.all(codebook.embed == 0)
    data, means = _clusters()
    codebook.eval()  # initialisation happens in eval mode too, on the first batch
    quantized, codes = codebook(data)
    assert codebook.inited.item() == 1.0
    assert torch.equal(codebook.embed, codebook.embed_avg)
    assert torch.cdist(means, codebook.embed).min(dim=1).values.max() < 0.5
    assert codes.shape == (600,) and quantized.shape == data.shape
    # a second batch does not re-run k-means
    before = codebook.embed.clone()
    codebook(data + 5.0)
    assert torch.equal(before, codebook.embed)


def test_encode_is_nearest_neighbour():
    codebook = EuclideanCodebook(dim=5, codebook_size=16, kmeans_init=False)
    x = torch.randn(2, 7, 5)
    codes = codebook.encode(x)
    brute = torch.cdist(x.reshape(-1, 5), codebook.embed).argmin(dim=1).view(2, 7)
    assert torch.equal(codes, brute)
    torch.testing.assert_close(codebook.decode(codes), codebook.embed[codes])


def test_ema_update_moves_codebook_toward_data():
    codebook = EuclideanCodebook(dim=2, codebook_size=2, kmeans_init=False, decay=0.9,
                                 threshold_ema_dead_code=0)
    with torch.no_grad():
        codebook.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        codebook.embed_avg.copy_(codebook.embed)
        codebook.cluster_size.fill_(1.0)
    target = torch.tensor([[1.0, 1.0], [9.0, 8.0]])
    data = target.repeat_interleave(50, dim=0) + 0.01 * torch.randn(100, 2)
    codebook.train()
    distances = []
    for _ in range(30):
        codebook(data)
        distances.append((codebook.embed - target).norm(dim=1).max().item())
    assert distances[-1] < 0.1 * distances[0]
    # eval mode leaves the codebook alone
    codebook.eval()
    frozen = codebook.embed.clone()
    codebook(data + 3)
    assert torch.equal(frozen, codebook.embed)


def test_dead_codes_are_replaced_by_batch_vectors():
    codebook = EuclideanCodebook(dim=3, codebook_size=8, kmeans_init=False, threshold_ema_dead_code=2)
    with torch.no_grad():
        codebook.embed.fill_(100.0)   # far from all data: only entry 0 will be used
        codebook.embed[0] = 0.0
        codebook.embed_avg.copy_(codebook.embed)
        codebook.cluster_size.zero_()
    data = torch.randn(64, 3)
    codebook.train()
    codebook(data)
    # no entry is left far away: every dead code now sits near the data
    assert codebook.embed.abs().max() < 10
    assert torch.all(codebook.cluster_size >= 1.0)
    # and the new entries get used on the next batch
    codes = codebook.encode(data)
    assert len(torch.unique(codes)) > 1


# ----------------------------------------------------------------------------- one VQ layer

def test_vector_quantization_commitment_loss_and_straight_through():
    vq = VectorQuantization(dim=4, codebook_size=8, kmeans_init=False, commitment_weight=0.5)
    x = torch.randn(2, 4, 10, requires_grad=True)
    vq.train()
    codebook_before = vq.codebook.clone()  # training updates the codebook after the lookup
    quantized, codes, loss = vq(x)
    assert quantized.shape == x.shape and codes.shape == (2, 10)
    expected = ((codebook_before[codes].transpose(1, 2) - x.detach()) ** 2).mean() * 0.5
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)
    quantized.sum().backward()  # straight-through: d quantized / d x = identity
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    vq.eval()
    _, _, eval_loss = vq(x)
    assert eval_loss.item() == 0.0


def test_projection_when_codebook_dim_differs():
    vq = VectorQuantization(dim=6, codebook_size=8, codebook_dim=3, kmeans_init=False)
    assert {"project_in.weight", "project_out.weight"} <= set(vq.state_dict())
    x = torch.randn(2, 6, 5)
    vq.eval()
    quantized, codes, _ = vq(x)
    torch.testing.assert_close(vq.decode(vq.encode(x)), quantized)


# ----------------------------------------------------------------------------- residual VQ

def _trained_rvq(num_codebooks: int = 4, **kwargs) -> ResidualVectorQuantizer:
    rvq = ResidualVectorQuantizer(dimension=8, num_codebooks=num_codebooks, codebook_size=16, kmeans_iters=5,
                                  **kwargs)
    rvq.train()
    rvq(torch.randn(4, 8, 50), frame_rate=50.0)  # k-means init + one EMA step
    return rvq.eval()


def test_rvq_encode_decode_matches_forward():
    rvq = _trained_rvq()
    x = torch.randn(3, 8, 20)
    result = rvq(x, frame_rate=50.0)
    codes = rvq.encode(x)
    assert codes.shape == (3, 4, 20) and codes.dtype == torch.int64
    assert torch.equal(codes, result.codes)
    torch.testing.assert_close(rvq.decode(codes), result.x)
    assert result.penalty.item() == 0.0
    torch.testing.assert_close(result.bandwidth, torch.tensor(4 * math.log2(16) * 50 / 1000))


def test_rvq_more_codebooks_reduce_error_and_set_num_codebooks():
    rvq = _trained_rvq()
    x = torch.randn(3, 8, 40)
    errors = []
    for n in range(1, 5):
        rvq.set_num_codebooks(n)
        codes = rvq.encode(x)
        assert codes.shape[1] == n
        errors.append((rvq.decode(codes) - x).pow(2).mean().item())
    assert all(later <= earlier + 1e-6 for earlier, later in zip(errors, errors[1:]))
    with pytest.raises(ValueError, match=r"in \[1, 4\]"):
        rvq.set_num_codebooks(5)
    with pytest.raises(ValueError, match="number of codebooks"):
        rvq.set_num_codebooks(0)


def test_rvq_training_straight_through_and_penalty():
    rvq = _trained_rvq()
    rvq.train()
    x = torch.randn(2, 8, 10, requires_grad=True)
    result = rvq(x, frame_rate=25.0)
    assert result.penalty.item() > 0
    (result.x * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


def test_quantizer_dropout_varies_number_of_codebooks():
    rvq = _trained_rvq(num_codebooks=4, quantizer_dropout=True)
    rvq.train()
    seen = {rvq(torch.randn(1, 8, 5), frame_rate=50.0).codes.shape[1] for _ in range(40)}
    assert seen == {1, 2, 3, 4}
    rvq.eval()  # no dropout at inference
    assert rvq(torch.randn(1, 8, 5), frame_rate=50.0).codes.shape[1] == 4


def test_bandwidth_selection():
    rvq = ResidualVectorQuantizer(dimension=8, num_codebooks=8, codebook_size=1024)
    assert rvq.bandwidth_per_codebook(75.0) == pytest.approx(0.75)
    assert rvq.num_codebooks_for_bandwidth(1.5, 75.0) == 2
    assert rvq.num_codebooks_for_bandwidth(6.0, 75.0) == 8
    assert rvq.num_codebooks_for_bandwidth(24.0, 75.0) == 8  # capped at what exists
    with pytest.raises(ValueError, match="bandwidth"):
        rvq.num_codebooks_for_bandwidth(0.0, 75.0)
