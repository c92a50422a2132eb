"""Known-answer tests for the evaluation metrics (FAD, KL divergence, text consistency)."""
import math

import pytest
import torch

from audiocraft.data.audio import audio_write
from audiocraft.data.audio_utils import f32_pcm, i16_pcm
from audiocraft.metrics import (ClassifierTextConsistency, FrechetAudioDistance, KLDivergence, MelStatisticsEmbedder,
                                StreamingMetric, TextConsistencyMetric, frechet_audio_distance_from_folders,
                                frechet_distance, gaussian_parameters, keyword_label_matcher, kl_divergence)

SR = 16000


# --------------------------------------------------------------------------- fakes


def dc_batch(levels, channels=1, length=400):
    """Constant clips [B, C, T]: clip i holds the value levels[i] / 10 (an id the fakes read back)."""
    return torch.tensor(levels, dtype=torch.float32)[:, None, None].expand(-1, channels, length) / 10


def dc_ids(wav):
    return (wav.mean(dim=(1, 2)) * 10).round().long()


class TableClassifier:
    """Returns row `table[id]` for a constant clip whose value is id / 10."""
    sample_rate = SR

    def __init__(self, table, labels=None):
        self.table = torch.as_tensor(table, dtype=torch.float64)
        self.labels = labels or [f"label{i}" for i in range(self.table.shape[1])]

    def predict_proba(self, wav):
        return self.table[dc_ids(wav)]


class OneHotTextAudio:
    """Joint space of one-hot vectors: text 'k' and a constant clip of value k/10 both map to e_k."""
    sample_rate = SR

    def embed_text(self, texts):
        return torch.eye(4)[[int(t) for t in texts]]

    def embed_audio(self, wav):
        return torch.eye(4)[dc_ids(wav)]


def sines(batch, seconds=0.5, sample_rate=SR, base=220.0):
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    freqs = base * (1 + torch.arange(batch, dtype=torch.float32) * 0.25)
    return (0.5 * torch.sin(2 * math.pi * freqs[:, None] * t))[:, None, :]


@pytest.fixture(scope="module")
def embedder():
    return MelStatisticsEmbedder(sample_rate=SR, n_mels=16, n_fft=512, hop_length=256)


# --------------------------------------------------------------------------- frechet_distance


def test_frechet_distance_identical_gaussians_is_zero():
    a = torch.randn(6, 6, dtype=torch.float64)
    sigma = a @ a.T
    mu = torch.randn(6, dtype=torch.float64)
    assert frechet_distance(mu, sigma, mu, sigma) <= 1e-9 * sigma.trace().item()


def test_frechet_distance_diagonal_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = (mu1 - mu2).pow(2).sum() + (s1.sqrt() - s2.sqrt()).pow(2).sum()
    assert frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2)) == pytest.approx(expected.item(), rel=1e-12)


def test_frechet_distance_shared_eigenvectors_closed_form():
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    a, b = torch.rand(5, dtype=torch.float64) + 0.1, torch.rand(5, dtype=torch.float64) + 0.1
    mu1, mu2 = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    expected = (mu1 - mu2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum()
    got = frechet_distance(mu1, q @ torch.diag(a) @ q.T, mu2, q @ torch.diag(b) @ q.T)
    assert got == pytest.approx(expected.item(), rel=1e-10)


def test_frechet_distance_non_commuting_2d_closed_form():
    # For 2x2 PSD products: Tr sqrt(S1 S2) = sqrt(Tr(S1 S2) + 2 sqrt(det S1 det S2)).
    s1 = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    s2 = torch.tensor([[0.5, -0.3], [-0.3, 3.0]], dtype=torch.float64)
    mu1, mu2 = torch.tensor([0.3, -1.0], dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
    tr_sqrt = math.sqrt((s1 @ s2).trace().item() + 2 * math.sqrt(s1.det().item() * s2.det().item()))
    expected = (mu1 - mu2).pow(2).sum().item() + s1.trace().item() + s2.trace().item() - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_singular_covariances_and_bad_input():
    v = torch.randn(8, 2, dtype=torch.float64)
    singular = v @ v.T  # rank 2 in 8 dimensions
    assert frechet_distance(torch.zeros(8), singular, torch.zeros(8), singular) == pytest.approx(0.0, abs=1e-9)
    assert math.isfinite(frechet_distance(torch.zeros(8), singular, torch.ones(8), torch.eye(8)))
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(4))
    with pytest.raises(ValueError, match="mu1"):
        frechet_distance(torch.zeros(3, 1), torch.eye(3), torch.zeros(3), torch.eye(3))


# --------------------------------------------------------------------------- FrechetAudioDistance on embeddings


def test_fad_of_sampled_gaussians_matches_closed_form():
    n = 40000
    s1 = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    s2 = torch.tensor([[0.5, -0.3], [-0.3, 3.0]], dtype=torch.float64)
    mu1, mu2 = torch.tensor([0.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
    x = mu1 + torch.randn(n, 2, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    y = mu2 + torch.randn(n, 2, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    fad = FrechetAudioDistance(MelStatisticsEmbedder())
    fad.update_embeddings(generated=x, reference=y)
    assert fad.compute() == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=0.03)
    mean, cov = fad.generated_parameters()
    ref_mean, ref_cov = gaussian_parameters(x)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(cov, ref_cov)


def test_fad_identical_sets_zero_and_shift_adds_squared_norm():
    x = torch.randn(200, 6, dtype=torch.float64) * 3 + 5
    v = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.5], dtype=torch.float64)
    fad = FrechetAudioDistance(MelStatisticsEmbedder())
    fad.update_embeddings(generated=x, reference=x.clone())
    scale = gaussian_parameters(x)[1].trace().item()
    assert fad.compute() <= 1e-6 * scale
    fad.reset()
    fad.update_embeddings(generated=x, reference=x + v)
    assert fad.compute() == pytest.approx(v.pow(2).sum().item(), rel=1e-6)


def test_fad_streaming_merge_and_reset():
    x, y = torch.randn(60, 4), torch.randn(45, 4) + 1
    single = FrechetAudioDistance(MelStatisticsEmbedder())
    single.update_embeddings(generated=x, reference=y)
    streamed = FrechetAudioDistance(MelStatisticsEmbedder())
    for xs in x.split(7):
        streamed.update_embeddings(generated=xs)
    for ys in y.split(7):
        streamed.update_embeddings(reference=ys)
    assert streamed.compute() == pytest.approx(single.compute(), rel=1e-9)
    rank0, rank1 = FrechetAudioDistance(MelStatisticsEmbedder()), FrechetAudioDistance(MelStatisticsEmbedder())
    rank0.update_embeddings(generated=x[:20], reference=y[:30])
    rank1.update_embeddings(generated=x[20:], reference=y[30:])
    assert isinstance(rank0, StreamingMetric)
    state1 = rank1.state()
    assert rank0.merge(state1).compute() == pytest.approx(single.compute(), rel=1e-9)
    rank1.reset()
    with pytest.raises(ValueError, match="at least 2"):
        rank1.compute()
    with pytest.raises(TypeError, match="FrechetAudioDistance"):
        rank0.merge(KLDivergence(TableClassifier([[1.0]])))
    other = FrechetAudioDistance(MelStatisticsEmbedder())
    other.update_embeddings(generated=torch.randn(3, 5))
    with pytest.raises(ValueError, match="shape"):
        rank0.merge(other)


# --------------------------------------------------------------------------- FAD on audio


def test_mel_statistics_fad_same_audio_zero_different_audio_positive(embedder):
    tones = sines(6)
    noise = 0.3 * torch.randn(6, 1, tones.shape[-1])
    fad = FrechetAudioDistance(embedder)
    fad.update(tones, tones.clone(), sample_rates=SR)
    assert fad.compute() == pytest.approx(0.0, abs=1e-9)
    fad.reset()
    fad.update(tones, noise, sample_rates=SR)
    assert fad.compute() > 1.0
    assert embedder.embed(tones).shape == (6, embedder.dimension)


def test_fad_sizes_and_sample_rates_are_applied(embedder):
    clips = [sines(1, 0.5, 32000, 300.0)[0], sines(1, 0.3, 32000, 500.0)[0], sines(1, 0.4, 32000, 700.0)[0]]
    padded = torch.zeros(3, 2, clips[0].shape[-1])
    for i, clip in enumerate(clips):
        padded[i, :, :clip.shape[-1]] = clip  # stereo copies, zero padding after the valid part
    sizes = torch.tensor([c.shape[-1] for c in clips])
    batched = FrechetAudioDistance(embedder)
    batched.update_generated(padded, sizes, torch.full((3,), 32000))
    one_by_one = FrechetAudioDistance(embedder)
    for clip in clips:
        one_by_one.update_generated(clip[None], sample_rates=32000)
    for a, b in zip(batched.generated_parameters(), one_by_one.generated_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 resampling of 2 vs 1 channel
    with pytest.raises(ValueError, match="sizes"):
        batched.update_generated(padded, torch.tensor([1, 2]), 32000)
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        batched.update_generated(padded[0], sample_rates=32000)


def test_fad_from_folders(tmp_path, embedder):
    tones, noise = sines(4), 0.3 * torch.randn(4, 1, 8000)
    for i in range(4):
        audio_write(tmp_path / "gen" / f"tone{i}", tones[i], SR, strategy=None)
        audio_write(tmp_path / "ref" / "sub" / f"tone{i}", tones[i], SR, strategy=None)
        audio_write(tmp_path / "noise" / f"noise{i}", noise[i].clamp(-0.99, 0.99), SR, strategy=None)
    same = frechet_audio_distance_from_folders(tmp_path / "gen", tmp_path / "ref", embedder)
    assert same == pytest.approx(0, abs=1e-9)
    got = frechet_audio_distance_from_folders(tmp_path / "gen", tmp_path / "noise", embedder)
    expected = FrechetAudioDistance(embedder)  # what 16-bit wav files read back as
    expected.update(f32_pcm(i16_pcm(tones)), f32_pcm(i16_pcm(noise.clamp(-0.99, 0.99))), sample_rates=SR)
    assert got == pytest.approx(expected.compute(), rel=1e-6)
    with pytest.raises(FileNotFoundError, match="generated_dir"):
        frechet_audio_distance_from_folders(tmp_path / "missing", tmp_path / "ref", embedder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio file"):
        frechet_audio_distance_from_folders(tmp_path / "gen", tmp_path / "empty", embedder)


def test_embedder_protocol_is_checked():
    with pytest.raises(TypeError, match="embed"):
        FrechetAudioDistance(object())

    class BadRate:
        sample_rate = 0

        def embed(self, wav):
            return wav.mean(-1)
    with pytest.raises(ValueError, match="sample_rate"):
        FrechetAudioDistance(BadRate())


# --------------------------------------------------------------------------- KL divergence

P = [0.5, 0.3, 0.2]
Q = [0.2, 0.5, 0.3]


def test_kl_divergence_closed_form_and_identical():
    p, q = torch.tensor([P], dtype=torch.float64), torch.tensor([Q], dtype=torch.float64)
    expected = sum(a * math.log(a / b) for a, b in zip(P, Q))
    assert kl_divergence(q, p, epsilon=0.0).item() == pytest.approx(expected, rel=1e-12)
    assert kl_divergence(q, p).item() == pytest.approx(expected, rel=1e-4)
    assert kl_divergence(p, p, epsilon=0.0).item() == pytest.approx(0.0, abs=1e-12)
    zeros = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)  # 0 log 0 = 0; log(0 + eps) stays finite
    assert torch.isfinite(kl_divergence(zeros, p)).all()
    assert kl_divergence(zeros, zeros).item() == pytest.approx(0, abs=1e-5)


def test_kld_metric_on_audio_with_fake_classifier():
    table = [P, Q, [1 / 3] * 3]
    clf = TableClassifier(table)
    metric = KLDivergence(clf, epsilon=0.0)
    metric.update(dc_batch([0, 2]), dc_batch([0, 2]), sample_rates=SR)
    assert metric.compute() == {"kld": 0.0, "kld_pq": 0.0, "kld_qp": 0.0, "kld_both": 0.0}
    metric.reset()
    metric.update(dc_batch([1, 0]), dc_batch([0, 0]))  # pairs (gen Q, ref P) and (P, P)
    kl_pq = sum(a * math.log(a / b) for a, b in zip(P, Q))
    kl_qp = sum(b * math.log(b / a) for a, b in zip(P, Q))
    result = metric.compute()
    assert result["kld"] == result["kld_pq"] == pytest.approx(kl_pq / 2, rel=1e-12)
    assert result["kld_qp"] == pytest.approx(kl_qp / 2, rel=1e-12)
    assert result["kld_both"] == pytest.approx((kl_pq + kl_qp) / 2, rel=1e-12)
    # Streaming over batches, then merging two accumulators, equal one big batch.
    gen, ref = dc_batch([1, 0, 2, 1, 2]), dc_batch([0, 2, 1, 1, 0])
    single = KLDivergence(clf)
    single.update(gen, ref)
    part_a, part_b = KLDivergence(clf), KLDivergence(clf)
    part_a.update(gen[:2], ref[:2])
    part_b.update(gen[2:3], ref[2:3])
    part_b.update(gen[3:], ref[3:])
    merged = part_a.merge(part_b).compute()
    for key, value in single.compute().items():
        assert merged[key] == pytest.approx(value, rel=1e-12)


def test_kld_logits_and_validation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    from_logits = KLDivergence(TableClassifier(logits), from_logits=True, epsilon=0.0)
    from_logits.update(dc_batch([0]), dc_batch([1]))
    probs = KLDivergence(TableClassifier(logits.softmax(-1)), epsilon=0.0)
    probs.update_probabilities(logits[:1].softmax(-1), logits[1:].softmax(-1))
    assert from_logits.compute()["kld"] == pytest.approx(probs.compute()["kld"], rel=1e-9)
    with pytest.raises(ValueError, match="from_logits=True"):
        KLDivergence(TableClassifier(logits)).update(dc_batch([0]), dc_batch([1]))
    with pytest.raises(ValueError, match="same shape"):
        KLDivergence(TableClassifier(logits)).update(dc_batch([0]), dc_batch([1, 1]))
    with pytest.raises(ValueError, match="update"):
        KLDivergence(TableClassifier(logits)).compute()


# --------------------------------------------------------------------------- text consistency


def test_text_consistency_identical_orthogonal_and_streaming():
    metric = TextConsistencyMetric(OneHotTextAudio())
    metric.update(dc_batch([0, 1, 2]), ["0", "1", "2"], sample_rates=SR)
    assert metric.compute() == pytest.approx(1.0, abs=1e-12)
    metric.reset()
    metric.update(dc_batch([0, 1]), ["1", "3"])
    assert metric.compute() == pytest.approx(0.0, abs=1e-12)
    metric.update(dc_batch([2, 3]), ["2", "3"])  # streamed: 2 orthogonal + 2 identical pairs
    assert metric.compute() == pytest.approx(0.5, abs=1e-12)
    other = TextConsistencyMetric(OneHotTextAudio())
    other.update(dc_batch([1]), ["1"])
    assert metric.merge(other).compute() == pytest.approx(3 / 5, abs=1e-12)
    with pytest.raises(ValueError, match="one prompt per clip"):
        metric.update(dc_batch([0, 1]), ["0"])
    with pytest.raises(TypeError, match="list of str"):
        metric.update(dc_batch([0]), "0")


def test_classifier_text_consistency_exact_fraction():
    labels = ["piano", "guitar", "drums"]
    table = torch.eye(3)  # a clip of id k is classified as labels[k]
    matcher = keyword_label_matcher({"piano": ["piano", "keys"], "guitar": "guitar", "drums": ["drums", "drum kit"]})
    metric = ClassifierTextConsistency(TableClassifier(table, labels), matcher)
    prompts = ["calm PIANO piece", "rock guitar riff", "a drum kit groove", "ambient pads", "jazz keys",
               "piano and guitar duet"]
    audio = dc_batch([0, 0, 2, 1, 1, 0])  # hit, miss, hit, skip, miss, skip (ambiguous)
    metric.update(audio[:4], prompts[:4], sizes=torch.tensor([400, 300, 200, 100]), sample_rates=SR)
    metric.update(audio[4:], prompts[4:])
    assert metric.compute() == pytest.approx(2 / 4)
    assert (metric.num_evaluated, metric.num_skipped) == (4, 2)
    assert metric.compute_per_label() == {"piano": 0.5, "guitar": 0.0, "drums": 1.0}
    single = ClassifierTextConsistency(TableClassifier(table, labels), matcher)
    single.update(audio, prompts)
    assert single.state().keys() == metric.state().keys()
    assert all(torch.equal(single.state()[k], metric.state()[k]) for k in single.state())
    top2 = ClassifierTextConsistency(TableClassifier([[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]], labels), matcher, top_k=2)
    top2.update(dc_batch([0, 0, 1]), ["guitar", "drums", "piano"])
    assert top2.compute() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="not one of the classifier labels"):
        ClassifierTextConsistency(TableClassifier(table, labels), lambda text: "violin").update(dc_batch([0]), ["x"])
    skip_all = ClassifierTextConsistency(TableClassifier(table, labels), lambda text: None)
    skip_all.update(dc_batch([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="2 skipped"):
        skip_all.compute()


def test_keyword_label_matcher_whole_words():
    matcher = keyword_label_matcher({"bass": "bass", "bassoon": ["bassoon"], "synth": ["synth", "synthesizer"]})
    assert matcher("deep Bass line") == "bass"
    assert matcher("solo bassoon") == "bassoon"
    assert matcher("analog synthesizer pads") == "synth"
    assert matcher("bass and synth") is None
    assert matcher("birdsong") is None
