"""The evaluation classifier (MusicTagger and its metric views) and the default-model evaluation script."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from audiocraft.metrics import (AudioClassifier, AudioEmbedder, ClassifierTextConsistency, FrechetAudioDistance,
                                KLDivergence)
from audiocraft.metrics.classifier import (CONFIG_FILE, WEIGHTS_FILE, MusicTagger, TaggerClassifier, TaggerEmbedder,
                                           load_tagger, read_tagger_notes, save_tagger, spec_augment)

SR = 16000
HEADS = {"instrument_family": ["keyboard", "strings", "woodwind", "brass"], "style": ["solo", "ensemble", "pop"]}
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def tagger():
    torch.manual_seed(0)
    model = MusicTagger(HEADS, conv_channels=(4, 8, 8, 16), embedding_dim=12, window_seconds=1.0)
    # Non-trivial batch-norm statistics, so eval mode differs from a fresh model.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, model.n_mels, model.window_frames))
    return model.eval()


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def eval_script():
    return _load_script("eval_default_model")


@pytest.fixture(scope="module")
def train_script():
    return _load_script("train_eval_classifier")


def test_noise_augmentation_mixes_at_the_asked_ratio(train_script):
    """add_noise: untouched crops keep their values; the mixed ones gain energy as the SNR asks."""
    tagger = MusicTagger({"instrument_family": ["a", "b"]}, conv_channels=(4, 8, 8, 16), embedding_dim=12)
    generator = torch.Generator().manual_seed(0)
    bank = train_script.noise_log_mels(tagger, 4, generator)
    assert bank.shape == (4, tagger.n_mels, tagger.window_frames)
    batch = tagger.log_mel(noise(6, tagger.window_seconds))[..., :tagger.window_frames]
    assert torch.equal(train_script.add_noise(batch, bank, 0.0, (0.0, 0.0), generator), batch)
    energy = batch.exp().mean(dim=(1, 2))
    for snr_db in (0.0, 10.0, 30.0):
        mixed = train_script.add_noise(batch, bank, 1.0, (snr_db, snr_db), generator)
        assert mixed.shape == batch.shape and bool((mixed >= batch).all())
        added = mixed.exp().mean(dim=(1, 2)) / energy - 1  # noise energy / signal energy
        torch.testing.assert_close(added, torch.full_like(added, 10 ** (-snr_db / 10)), rtol=1e-3, atol=1e-6)


def noise(batch, seconds, channels=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, channels, int(seconds * SR), generator=generator)


# --------------------------------------------------------------------------- the tagger


def test_forward_shapes(tagger):
    wav = noise(3, 0.9)
    log_mel = tagger.log_mel(wav)
    assert log_mel.shape == (3, 64, 1 + wav.shape[-1] // tagger.hop_length)
    logits = tagger(log_mel)
    assert set(logits) == set(HEADS)
    assert logits["instrument_family"].shape == (3, 4) and logits["style"].shape == (3, 3)
    embedding, probabilities = tagger.clip_outputs(noise(2, 2.5, channels=2))
    assert embedding.shape == (2, 12)
    assert (embedding >= 0).all()  # ReLU embedding
    for head, labels in HEADS.items():
        assert probabilities[head].shape == (2, len(labels))
        torch.testing.assert_close(probabilities[head].sum(-1), torch.ones(2))
    assert 100_000 < sum(p.numel() for p in MusicTagger(HEADS).parameters()) < 1_000_000


def test_views_follow_the_metric_protocols(tagger):
    embedder = TaggerEmbedder(tagger)
    classifier = TaggerClassifier(tagger, head="style")
    assert isinstance(embedder, AudioEmbedder) and isinstance(classifier, AudioClassifier)
    assert embedder.sample_rate == classifier.sample_rate == SR
    assert classifier.labels == HEADS["style"]
    wav = noise(3, 1.7)
    assert embedder.embed(wav).shape == (3, embedder.dimension)
    probabilities = classifier.predict_proba(wav)
    assert probabilities.shape == (3, 3)
    assert (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3))
    # The metrics accept them (resampling 32 kHz input to the tagger's rate on the way).
    fad = FrechetAudioDistance(embedder)
    fad.update(noise(3, 2.0, seed=1), noise(3, 2.0, seed=2), sample_rates=32000)
    assert fad.compute() >= 0
    kld = KLDivergence(TaggerClassifier(tagger))
    kld.update(noise(2, 1.0, seed=3), noise(2, 1.0, seed=3))
    assert kld.compute()["kld"] == pytest.approx(0.0, abs=1e-4)  # epsilon inside the log
    with pytest.raises(ValueError, match="head"):
        TaggerClassifier(tagger, head="genre")
    with pytest.raises(TypeError, match="MusicTagger"):
        TaggerEmbedder(object())


def test_long_clips_average_their_windows(tagger):
    window = int(tagger.window_seconds * SR)
    first, second = noise(1, 1.0, seed=4), 3 * noise(1, 1.0, seed=5).sin()
    # Exactly two windows (2 * window_frames frames): the clip's outputs are the means of each window's outputs.
    wav = torch.cat([first, second], dim=-1)[..., :2 * window - tagger.hop_length]
    log_mel = tagger.log_mel(wav)
    assert log_mel.shape[-1] == 2 * tagger.window_frames
    windows = tagger.windows(log_mel)
    assert windows.shape[:2] == (1, 2)
    torch.testing.assert_close(windows[0, 1], log_mel[0, :, tagger.window_frames:])
    embedding, probabilities = tagger.clip_outputs_from_log_mel(log_mel)
    with torch.no_grad():
        each = tagger.embed_windows(windows[0])
        each_probs = tagger.classify(each)["style"].softmax(-1)
    torch.testing.assert_close(embedding[0], each.mean(0))
    torch.testing.assert_close(probabilities["style"][0], each_probs.mean(0))
    # Uneven lengths: the last window ends with the clip; a short clip is one window; gain does not matter.
    assert tagger.windows(tagger.log_mel(noise(1, 2.3))).shape[1] == 3
    assert tagger.windows(tagger.log_mel(noise(1, 0.5))).shape[1] == 1
    assert tagger.windows(tagger.log_mel(noise(1, 0.01))).shape[-1] == 8
    wav = noise(2, 1.5, seed=6)
    torch.testing.assert_close(TaggerEmbedder(tagger).embed(wav), TaggerEmbedder(tagger).embed(4 * wav),
                               atol=1e-4, rtol=1e-4)


def test_spec_augment_masks_bands_and_spans():
    log_mel = torch.arange(2 * 16 * 40, dtype=torch.float32).view(2, 16, 40)
    generator = torch.Generator().manual_seed(0)
    masked = spec_augment(log_mel, freq_masks=1, freq_width=4, time_masks=1, time_width=10, generator=generator)
    assert masked.shape == log_mel.shape
    changed = masked != log_mel
    assert changed.any()
    for item in range(2):  # masked cells hold the crop's mean; whole rows or columns are masked
        assert torch.allclose(masked[item][changed[item]], log_mel[item].mean())
        rows, cols = changed[item].all(dim=1), changed[item].all(dim=0)
        assert torch.equal(changed[item], rows[:, None] | cols[None, :])
    untouched = spec_augment(log_mel, freq_masks=0, time_masks=0)
    assert torch.equal(untouched, log_mel)


def test_save_load_round_trip(tagger, tmp_path):
    folder = save_tagger(tagger, tmp_path / "tagger", notes={"test": {"instrument_family_accuracy": 0.5}})
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    loaded = load_tagger(folder)
    assert not loaded.training and loaded.heads == HEADS and loaded.config() == tagger.config()
    wav = noise(2, 1.3, seed=7)
    for a, b in zip(tagger.clip_outputs(wav), loaded.clip_outputs(wav)):
        if isinstance(a, dict):
            for head in a:
                torch.testing.assert_close(a[head], b[head])
        else:
            torch.testing.assert_close(a, b)
    assert read_tagger_notes(folder)["test"]["instrument_family_accuracy"] == 0.5
    saved = json.loads((folder / CONFIG_FILE).read_text())
    assert saved["config"]["heads"] == HEADS


def test_load_errors_say_what_to_do(tmp_path, tagger):
    with pytest.raises(FileNotFoundError, match=r"config\.json and model\.safetensors.*train_eval_classifier"):
        load_tagger(tmp_path / "nowhere")
    folder = save_tagger(tagger, tmp_path / "partial")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="lacks model.safetensors"):
        load_tagger(folder)
    other = save_tagger(MusicTagger({"instrument_family": ["a", "b"]}, conv_channels=(4, 8, 8, 16),
                                    embedding_dim=12), tmp_path / "other")
    (folder / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ValueError, match="does not match its config"):
        load_tagger(folder)
    with pytest.raises(TypeError, match="heads"):
        MusicTagger({})
    with pytest.raises(ValueError, match="unique"):
        MusicTagger({"style": ["pop", "pop"]})


# --------------------------------------------------------------------------- the evaluation script


class FakeFamilyClassifier:
    """Hears the family given by the first sample of each clip (an index into its labels)."""
    sample_rate = SR
    labels = ["keyboard", "strings", "woodwind", "brass"]

    def predict_proba(self, wav):
        return torch.nn.functional.one_hot(wav[:, 0, 0].long(), len(self.labels)).double()


def test_adherence_and_shuffled_rate(eval_script):
    classifier = FakeFamilyClassifier()
    heard = torch.tensor([0, 1, 2, 3, 1])
    wav = heard.float()[:, None, None].expand(-1, 1, 50)
    scores = classifier.predict_proba(wav)
    wanted = ["keyboard", "strings", "woodwind", "keyboard", None]
    order = eval_script.derangement(5, seed=0)
    assert sorted(order) == list(range(5)) and all(i != j for i, j in enumerate(order))
    result = eval_script.adherence(classifier, scores, wanted, order)
    assert result["evaluated"] == 4
    assert result["rate"] == pytest.approx(3 / 4)
    shuffled = [wanted[j] for j in order]
    expected = [classifier.labels[int(h)] == w for h, w in zip(heard, shuffled) if w is not None]
    assert result["shuffled_rate"] == pytest.approx(sum(expected) / len(expected))
    # The same number as the metric computed from audio and prompts.
    metric = ClassifierTextConsistency(classifier, dict(zip("abcde", wanted)).get)
    metric.update(wav, list("abcde"))
    assert metric.compute() == result["rate"]
    assert eval_script.accuracy(scores, classifier.labels, wanted) == pytest.approx(3 / 4)
    assert eval_script.derangement(1) == [0]
    # Per family: keyboard asked twice (heard once), strings and woodwind once each (heard).
    families = eval_script.per_label(scores, classifier.labels, wanted)
    assert families["by_label"] == {"keyboard": [1, 2], "strings": [1, 1], "woodwind": [1, 1]}
    assert families["heard"] == {"keyboard": 1, "strings": 2, "woodwind": 1, "brass": 1}
    assert families["balanced"] == pytest.approx((0.5 + 1 + 1) / 3)
    # Everything heard as the most common family: a good plain rate, a poor balanced one.
    biased = eval_script.per_label(torch.eye(4)[[2] * 5], classifier.labels, ["woodwind"] * 3 + ["brass", "strings"])
    assert biased["balanced"] == pytest.approx(1 / 3) and biased["heard"] == {"woodwind": 5}
    assert eval_script.per_label(scores, classifier.labels, [None] * 5)["balanced"] is None


class FakeMusicGen:
    """The parts of MusicGen the evaluation uses: the tiny reference codec and a noise "generator"."""

    def __init__(self, compression_model):
        self.compression_model = compression_model
        self.sample_rate = compression_model.sample_rate
        self.generation_params = {}
        self.duration = None

    def set_generation_params(self, duration, **params):
        self.duration = duration
        self.generation_params = {"duration": duration, **params}

    def generate(self, descriptions):
        return noise(len(descriptions), self.duration * self.sample_rate / SR, seed=len(descriptions))


@pytest.fixture
def heldout_root(tmp_path):
    """A held-out split of two 1.2 s noise clips with sidecars, as made by scripts/make_music_dataset.py."""
    from audiocraft.data.audio import audio_write

    root = tmp_path / "data"
    lines = []
    for index, (family, style) in enumerate([("strings", "solo"), ("brass", "pop")]):
        stem = root / "audio" / f"clip{index}"
        path = audio_write(stem, noise(1, 1.2, seed=index)[0], SR)
        info = {"description": f"a {style} piece on {family}", "instrument_family": family, "style": style,
                "name": f"clip{index}"}
        stem.with_suffix(".json").write_text(json.dumps(info))
        lines.append(json.dumps({"path": str(path), "duration": 1.2, "sample_rate": SR,
                                 "info_path": str(stem.with_suffix(".json"))}))
    (root / "test").mkdir()
    (root / "test" / "data.jsonl").write_text("\n".join(lines) + "\n")
    return root


def check_results(eval_script, results, out):
    assert set(results) == {"codec", "lm", "fad", "examples", "settings"}
    assert {"si_snr_db", "mel_distance", "classifier_accuracy", "sample_rate"} <= set(results["codec"])
    assert set(results["codec"]["classifier_accuracy"]["reconstructed"]) == set(HEADS)
    assert {"instrument_adherence", "instrument_adherence_shuffled", "style_adherence",
            "kld_instrument_family"} <= set(results["lm"])
    assert 0 <= results["lm"]["instrument_adherence"] <= 1
    assert set(results["fad"]) == {"generated_vs_heldout", "reconstructed_vs_heldout", "heldout_half_vs_half"}
    assert results["fad"]["generated_vs_heldout"] >= 0 and results["fad"]["reconstructed_vs_heldout"] >= 0
    assert results["fad"]["heldout_half_vs_half"] is None  # two clips: halves of one clip have no covariance
    assert results["settings"]["shuffle_order"] == [1, 0]
    example = results["examples"][0]
    assert (out / example["audio"]).is_file() and (out / example["spectrogram"]).is_file()
    json.dumps(results)  # serialisable
    families = results["lm"]["instrument_by_family"]
    assert sum(count for _, count in families["by_label"].values()) == results["lm"]["instrument_adherence_evaluated"]
    assert sum(families["heard"].values()) == results["settings"]["num_clips"] * results["lm"].get("rounds", 1)
    assert set(results["codec"]["family_by_label"]) == {"original", "reconstructed"}
    table = eval_script.format_table(results)
    assert "instrument adherence" in table and "mean over families" in table and "heard as:" in table


def test_evaluate_model_with_the_tiny_codec(eval_script, tagger, tiny_model_dir, heldout_root, tmp_path):
    from audiocraft.models.loaders import load_compression_model

    clips = eval_script.load_heldout_clips(heldout_root, "test", num_samples=5, duration=1.0)
    assert [clip.labels["instrument_family"] for clip in clips] == ["strings", "brass"]
    assert clips[0].wav.shape == (1, SR)
    model = FakeMusicGen(load_compression_model(tiny_model_dir, device="cpu"))
    results = eval_script.evaluate_model(model, clips, tagger, duration=0.5, batch_size=2, out=tmp_path / "out",
                                         num_examples=1, log=lambda line: None)
    check_results(eval_script, results, tmp_path / "out")
    assert model.duration == 0.5
    results = eval_script.evaluate_model(model, clips, tagger, duration=0.5, batch_size=2,
                                         log=lambda line: None, generation_params={"cfg_coef": 5.0})
    assert results["settings"]["generation_params"] == {"duration": 0.5, "cfg_coef": 5.0}
    with pytest.raises(ValueError, match="empty"):
        eval_script.evaluate_model(model, [], tagger)


def test_evaluate_model_pools_several_rounds(eval_script, tagger, tiny_model_dir, heldout_root):
    from audiocraft.models.loaders import load_compression_model

    clips = eval_script.load_heldout_clips(heldout_root, "test", num_samples=5, duration=1.0)
    model = FakeMusicGen(load_compression_model(tiny_model_dir, device="cpu"))
    calls = []
    generate = model.generate
    model.generate = lambda descriptions: calls.append(list(descriptions)) or generate(descriptions)
    results = eval_script.evaluate_model(model, clips, tagger, duration=0.5, batch_size=2, log=lambda line: None,
                                         rounds=3)
    captions = [clip.description for clip in clips]
    assert calls == [captions] * 3  # every caption once per round
    lm = results["lm"]
    assert lm["rounds"] == 3 and lm["instrument_adherence_evaluated"] == 3 * len(clips)
    assert len(lm["instrument_adherence_rounds"]) == 3
    assert lm["instrument_adherence"] == pytest.approx(sum(lm["instrument_adherence_rounds"]) / 3)
    lines = eval_script.format_table(results).splitlines()
    names = [line.split("  ")[0] for line in lines]
    assert names.index("instrument adherence, each round") == names.index("instrument adherence, shuffled prompts") + 1
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="rounds"):
            eval_script.evaluate_model(model, clips, tagger, rounds=bad)


def test_codec_only_mode(eval_script, tiny_model_dir, heldout_root, tmp_path, capsys):
    """``--codec`` scores one compression checkpoint with the shipped tagger and writes codec_eval.json."""
    out = tmp_path / "out"
    results = eval_script.main(["--codec", f"//pretrained/{tiny_model_dir}", "--data", str(heldout_root),
                                "--num-samples", "2", "--duration", "1", "--out", str(out), "--threads", "1"])
    codec = results["codec"]
    assert results["num_clips"] == 2 and codec["sample_rate"] == 32000
    assert -100 < codec["si_snr_db"] < 100 and codec["mel_distance"] > 0
    for kind in ("original", "reconstructed"):
        assert set(codec["classifier_accuracy"][kind]) == {"instrument_family", "style"}
    assert json.loads((out / "codec_eval.json").read_text())["codec"] == codec
    printed = capsys.readouterr().out
    assert "codec SI-SNR (dB)" in printed and "instrument_family accuracy, reconstructed" in printed
    assert "reconstructed, mean over families" in printed
    assert not (out / "eval.json").exists()


@pytest.mark.slow
def test_evaluate_tiny_musicgen(eval_script, tagger, tiny_model_dir, heldout_root, tmp_path):
    """The whole evaluation on the reference tiny MusicGen (T5 included): keys and shapes only."""
    from audiocraft.models import MusicGen

    clips = eval_script.load_heldout_clips(heldout_root, "test", num_samples=2, duration=1.0)
    model = MusicGen.get_pretrained(str(tiny_model_dir), device="cpu")
    results = eval_script.evaluate_model(model, clips, tagger, duration=0.5, batch_size=2, out=tmp_path / "out",
                                         num_examples=1, log=lambda line: None)
    check_results(eval_script, results, tmp_path / "out")
