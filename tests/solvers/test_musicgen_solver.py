"""The MusicGen solver on a tiny music dataset: training, samples, export, token cache, LoRA, fine-tuning."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from audiocraft.models import MusicGen
from audiocraft.solvers import get_solver
from audiocraft.solvers.musicgen import MusicGenSolver, export_lora, export_musicgen, main, resolve_pretrained_name
from audiocraft.utils import checkpoint
from solver_helpers import REPO, assert_states_equal, compose_config, seed_all, single_thread

SAMPLE_RATE = 32000  # the debug compression model's


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Four 1.5 s mono tones at 32 kHz; two with a full JSON sidecar, two with a .txt description."""
    from audiocraft.data.audio import audio_write
    from audiocraft.data.audio_dataset import find_audio_files, save_audio_meta

    root = tmp_path_factory.mktemp("music")
    generator = torch.Generator().manual_seed(0)
    time_axis = torch.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    for index in range(4):
        wav = 0.3 * torch.sin(2 * math.pi * (220 + 110 * index) * time_axis) \
            + 0.02 * torch.randn(time_axis.shape, generator=generator)
        audio_write(root / "audio" / f"track{index}", wav[None], SAMPLE_RATE, strategy="clip")
        if index % 2:
            (root / "audio" / f"track{index}.txt").write_text(f"a bright synth tone number {index}")
        else:
            sidecar = {"title": f"track {index}", "artist": "a1", "key": "C major", "bpm": 120, "genre": "Ambient",
                       "moods": ["calm"], "description": f"a calm sine tone {index}", "name": f"track{index}",
                       "instrument": "Synth"}
            (root / "audio" / f"track{index}.json").write_text(json.dumps(sidecar))
    manifest = root / "manifest"
    save_audio_meta(manifest / "data.jsonl", find_audio_files(root / "audio", minimal=True))
    return manifest


def _overrides(manifest: Path, epochs: int = 2, updates: int = 3, solver: str = "musicgen/debug",
               generate: bool = True) -> list[str]:
    """``solver=musicgen/debug`` shrunk to a few 1 s updates on ``manifest``, on CPU, with the offline tiny T5."""
    splits = {"train": manifest, "valid": manifest, "evaluate": manifest if generate else None,
              "generate": manifest if generate else None}
    return [f"solver={solver}", "dset=audio/default", "device=cpu", "num_threads=1",
            f"datasource.max_sample_rate={SAMPLE_RATE}", "datasource.max_channels=1",
            *[f"datasource.{split}={'null' if path is None else path}" for split, path in splits.items()],
            "dataset.num_workers=0", "dataset.batch_size=2", "dataset.segment_duration=1.0",
            "dataset.train.num_samples=16", "dataset.valid.num_samples=2", "dataset.evaluate.num_samples=2",
            "dataset.generate.num_samples=2", f"optim.epochs={epochs}", f"optim.updates_per_epoch={updates}",
            "conditioners.description.t5.name=t5-base", "generate.audio.format=wav"]


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def _solver(overrides: list[str], folder: Path) -> MusicGenSolver:
    cfg = compose_config(overrides)
    seed_all(int(cfg.seed))
    return get_solver(cfg, folder=folder)


def _count_encodes(solver: MusicGenSolver) -> dict[int, int]:
    """Wrap the codec's encode to count its calls in the train stage, per epoch."""
    solver.build()
    calls: dict[int, int] = {}
    original = solver.compression_model.encode

    def encode(wav):
        if solver.current_stage == "train":
            calls[solver.epoch] = calls.get(solver.epoch, 0) + 1
        return original(wav)

    solver.compression_model.encode = encode
    return calls


def test_train_generate_and_export_from_the_command_line(manifest, tmp_path, monkeypatch, tiny_model_dir, capsys):
    """python -m audiocraft.train solver=musicgen/debug, then the export command; the export loads and generates."""
    overrides = _overrides(manifest) + ["evaluate.metrics.base=true", "evaluate.metrics.fad=true"]
    env = {**os.environ, "AUDIOCRAFT_DORA_DIR": str(tmp_path / "dora"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "audiocraft.train", *overrides], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (xp,) = (tmp_path / "dora" / "xps").iterdir()
    history = json.loads((xp / "history.json").read_text())
    assert len(history) == 2
    train = history[-1]["train"]
    assert {"ce", "ppl", "lr", "grad_norm"} | {f"{m}_q{k}" for m in ("ce", "ppl") for k in range(1, 5)} <= set(train)
    assert math.isclose(train["ppl"], math.exp(train["ce"]), rel_tol=0.05)
    assert {"ce", "ppl", "fad"} <= set(history[-1]["evaluate"])
    samples = xp / "samples" / "epoch_2"
    for kind in ("text", "unconditional", "continuation", "reference"):
        assert sorted(p.name for p in (samples / kind).iterdir()) == ["00000.wav", "00001.wav"], kind
    prompts = [json.loads(line) for line in (samples / "prompts.0.jsonl").read_text().splitlines()]
    assert all(entry["description"] for entry in prompts)

    monkeypatch.setenv("AUDIOCRAFT_DORA_DIR", str(tmp_path / "dora"))
    assert main(["export", xp.name, str(tmp_path / "exported")]) == 0  # a bare signature means //sig/<sig>
    assert main(["export", xp.name, str(tmp_path / "exported")]) == 1  # no silent overwrite
    best = checkpoint.load_checkpoint(xp / "checkpoint.th")["best_state"]["model"]
    model = MusicGen.get_pretrained(str(tmp_path / "exported"), device="cpu")
    for key, value in model.lm.state_dict().items():  # stored as float16, like the released files
        torch.testing.assert_close(value, best[key].half().float(), atol=0, rtol=0)
    assert model.max_duration == 1.0 and model.sample_rate == SAMPLE_RATE
    model.set_generation_params(duration=0.5, use_sampling=False)
    assert model.generate(["a calm sine tone"]).shape == (1, 1, int(0.5 * 25) * 1280)

    # Bundling another codec than the run's: one that cannot make the LM's codes is refused (and writes
    # nothing); one that makes them (here the run's own, named by its checkpoint file) is recorded.
    other_codec = str(tiny_model_dir / "compression_state_dict.bin")
    capsys.readouterr()
    assert main(["export", xp.name, str(tmp_path / "refused"), "--compression-model", "//pretrained/" + other_codec]) == 1
    assert "does not make the codes the LM was trained on" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    same = "//pretrained/" + str(tmp_path / "exported" / "compression_state_dict.bin")
    assert main(["export", xp.name, str(tmp_path / "swapped"), "--compression-model", same]) == 0
    swapped = torch.load(tmp_path / "swapped" / "state_dict.bin", map_location="cpu", weights_only=False)
    assert OmegaConf.create(swapped["xp.cfg"]).compression_model_checkpoint == same

    # A codec in float16 needs weights: the debug codec, its copy and a Hub EnCodec are pointers (weights: test_export).
    capsys.readouterr()
    for pointer in ([], ["--compression-model", same], ["--compression-name", "facebook/encodec_32khz"]):
        assert main(["export", xp.name, str(tmp_path / "pointer"), *pointer, "--compression-float16"]) == 1
        assert "no weights to store in float16" in capsys.readouterr().err
    assert not (tmp_path / "pointer").exists() or not any((tmp_path / "pointer").iterdir())


def test_token_cache_is_written_once_then_replaces_the_codec(manifest, tmp_path):
    # no draws from Python's global generator (word dropout, text augmentation), whose stream depends on
    # whether the audio is read: then the cached epoch gives exactly the losses of the audio epoch
    fast = ["evaluate.every=0", "generate.every=0", "conditioners.description.t5.word_dropout=0.0",
            "dataset.train.merge_text_p=0.0"]
    plain = _solver(_overrides(manifest, generate=False) + fast, tmp_path / "plain")
    plain.run()
    cache = [f"cache.path={tmp_path / 'cache'}"]
    writer = _solver(_overrides(manifest, generate=False) + fast + cache + ["cache.write=true"], tmp_path / "writer")
    calls = _count_encodes(writer)
    writer.run()
    assert calls.get(1, 0) == 3 and calls.get(2, 0) == 0  # epoch 2 reads the codes written at epoch 1
    assert (tmp_path / "cache" / "epoch_00001" / "done.json").is_file()
    assert writer.history[0]["train"]["ce"] == plain.history[0]["train"]["ce"]  # the same batches

    reader = _solver(_overrides(manifest, generate=False) + fast + cache, tmp_path / "reader")
    calls = _count_encodes(reader)
    reader.run()
    assert calls == {}  # never in training (valid still encodes its audio)
    assert reader.history[0]["train"]["ce"] == plain.history[0]["train"]["ce"]
    assert reader.history[1]["train"]["ce"] == writer.history[1]["train"]["ce"]

    stale = _solver(_overrides(manifest, generate=False) + cache + ["dataset.segment_duration=0.5"], tmp_path / "x")
    with pytest.raises(ValueError, match="segment_duration.*cache.path"):
        stale.build()

    # An LM over the first 2 of the codec's 4 codebooks reads the 4-codebook cache, and never writes it.
    fewer = _overrides(manifest, epochs=1, generate=False) + fast + cache + ["compression_model_n_q=2",
                                                                            "transformer_lm.n_q=2"]
    prefix = _solver(fewer, tmp_path / "prefix")
    calls = _count_encodes(prefix)
    prefix.run()
    assert calls == {} and prefix.token_cache.num_codebooks == 2
    assert {"ce_q1", "ce_q2"} <= set(prefix.history[0]["train"]) and "ce_q3" not in prefix.history[0]["train"]
    writing = _solver(fewer + ["cache.write=true", "cache.num_epochs=2"], tmp_path / "prefix_writer")
    with pytest.raises(ValueError, match="can be read, not written.*cache.num_epochs=1"):
        writing.build()


def _window_solver(manifest, folder, options: list[str]):
    """A built solver with the window options given, and codes [2, 4, 25] numbered 0.. / 100.. per segment."""
    solver = _solver(_overrides(manifest, epochs=1, updates=2, generate=False) + options
                     + ["evaluate.every=0", "generate.every=0"], folder)
    solver.build()
    return solver, torch.arange(2 * 4 * 25).view(2, 4, 25), torch.rand(2, 4, 25) > 0.5


def _assert_refused(manifest, folder, cases) -> None:
    for bad, match in cases:
        solver = _solver(_overrides(manifest, generate=False) + bad, folder)
        with pytest.raises(ValueError, match=match):
            solver.build()


def test_random_token_crop_takes_one_window_of_the_batch(manifest, tmp_path):
    crop = ["+tokens.random_crop_p=1.0", "+tokens.random_crop_min_duration=0.4"]
    solver, codes, mask = _window_solver(manifest, tmp_path / "xp", crop)
    lengths, starts = set(), set()
    for seed in range(60):
        solver.rng.manual_seed(seed)
        cropped, cropped_mask = solver._random_token_crop(codes, mask)
        length, start = cropped.shape[-1], int(cropped[0, 0, 0])
        assert 10 <= length <= 25  # 0.4 s at 25 frames/s
        torch.testing.assert_close(cropped, codes[..., start:start + length])
        torch.testing.assert_close(cropped_mask, mask[..., start:start + length])
        lengths.add(length)
        starts.add(start)
        # a window never goes past the frames made from real audio
        short, _ = solver._random_token_crop(codes, mask, real_frames=12)
        assert int(short[0, 0, -1]) < 12 and short.shape[-1] >= 10
    assert min(lengths) == 10 and max(lengths) == 25 and len(starts) > 5  # every length and start can come

    solver.cfg.tokens.random_crop_p = 0.5
    solver.rng.manual_seed(0)
    kept = sum(solver._random_token_crop(codes, mask)[0] is codes for _ in range(200))
    assert 70 < kept < 130  # about half of the batches stay whole
    solver.cfg.tokens.random_crop_p = 1.0

    seen = []
    original = solver.model.compute_predictions

    def record(codes, conditions, *args, **kwargs):
        seen.append((solver.current_stage, codes.shape[-1]))
        return original(codes, conditions, *args, **kwargs)

    solver.model.compute_predictions = record
    solver.run()  # trains on the cropped batches; valid sees whole segments
    assert math.isfinite(solver.history[-1]["train"]["ce"])
    assert {frames for stage, frames in seen if stage == "valid"} == {25}
    assert any(frames < 25 for stage, frames in seen if stage == "train")

    plain = _solver(_overrides(manifest, epochs=1, updates=2, generate=False), tmp_path / "plain")
    plain.build()
    assert plain._random_token_crop(codes, mask)[0] is codes  # off unless asked for
    _assert_refused(manifest, tmp_path / "bad", (
        (["+tokens.random_crop_p=1.5"], "random_crop"),
        (["+tokens.random_crop_p=0.5", "+tokens.random_crop_min_duration=0"], "random_crop"),
        (["+tokens.random_crop_p=0.5", "+tokens.random_crop_min_duration=null"], "random_crop"),
        (["+tokens.random_crop_p=0.5", "interleave_stereo_codebooks.use=true",
          "interleave_stereo_codebooks.per_timestep=true"], "per_timestep")))


def test_token_split_trains_windows_that_share_their_segment_conditions(manifest, tmp_path):
    solver, codes, mask = _window_solver(manifest, tmp_path / "xp", ["+tokens.split_p=1.0", "+tokens.split_duration=0.2"])
    offsets = set()
    for seed in range(40):
        solver.rng.manual_seed(seed)
        windows, window_mask, index = solver._token_split(codes, mask)
        offset, count = int(windows[0, 0, 0]), windows.shape[0] // 2
        assert windows.shape[1:] == (4, 5) and count >= 2  # 0.2 s at 25 frames/s
        assert index.tolist() == [0] * count + [1] * count
        for n in range(windows.shape[0]):  # window n is the (n % count)-th of segment index[n], in order
            start = offset + (n % count) * 5
            torch.testing.assert_close(windows[n], codes[int(index[n]), :, start:start + 5])
            torch.testing.assert_close(window_mask[n], mask[int(index[n]), :, start:start + 5])
        offsets.add(offset)
        short, _, _ = solver._token_split(codes, mask, real_frames=12)
        assert int((short[:, 0] % 100).max()) < 12  # never a window past the frames made from real audio
    assert offsets == set(range(5))
    assert solver._token_split(codes[..., :9], mask[..., :9]) is None  # room for one window only: left whole

    seen, encoded = [], []
    original, provider = solver.model.compute_predictions, solver.model.condition_provider
    original_provider_forward = provider.forward

    def record(codes, conditions, *args, **kwargs):
        seen.append((solver.current_stage, tuple(codes.shape)))
        return original(codes, conditions, *args, **kwargs)

    def record_provider(tokenized):
        tensors = original_provider_forward(tokenized)
        encoded.append({name: embedding.shape[0] for name, (embedding, _) in tensors.items()})
        return tensors

    solver.model.compute_predictions, provider.forward = record, record_provider
    solver.run()
    assert math.isfinite(solver.history[-1]["train"]["ce"])
    batch = int(solver.cfg.dataset.batch_size)
    train = [shape for stage, shape in seen if stage == "train"]
    assert train and all(shape[0] > batch and shape[-1] == 5 for shape in train)  # windows, not segments
    assert all(size == batch for sizes in encoded for size in sizes.values())  # text encoded once per segment
    assert {shape[-1] for stage, shape in seen if stage == "valid"} == {25}

    _assert_refused(manifest, tmp_path / "bad", (
        (["+tokens.split_p=2"], "split_p"), (["+tokens.split_p=0.5", "+tokens.split_duration=0"], "split"),
        (["+tokens.split_p=0.5", "interleave_stereo_codebooks.use=true",
          "interleave_stereo_codebooks.per_timestep=true"], "split_p > 0 .*per_timestep"),
        (["+tokens.split_p=0.5", "conditioner=chroma2music", "cache.path=null"], "split_p > 0 .*audio"),
        (["+tokens.random_crop_p=0.5", "conditioner=chroma2music", "cache.path=null"], "random_crop_p > 0 .*audio")))


def test_lora_run_trains_only_adapters_and_exports(manifest, tmp_path):
    solver = _solver(_overrides(manifest, epochs=1, updates=2, generate=False) + ["lora.use=true"], tmp_path / "xp")
    solver.build()
    initial = {key: value.clone() for key, value in solver.model.state_dict().items()}
    solver.run()
    final = solver.model.state_dict()
    changed = {key for key in initial if not torch.equal(initial[key], final[key])}
    assert changed and all(".lora_" in key for key in changed)
    assert all(p.requires_grad == (".lora_" in name) for name, p in solver.model.named_parameters())

    adapters = export_lora(tmp_path / "xp", tmp_path / "adapters.pt")
    assert adapters.stat().st_size < 200_000
    export_musicgen(tmp_path / "xp", tmp_path / "merged")
    model = MusicGen.get_pretrained(str(tmp_path / "merged"), device="cpu")
    assert not any(".lora_" in key for key in model.lm.state_dict())
    from audiocraft.models.lora import merge_lora
    codes = torch.randint(0, 400, (1, 4, 10), generator=torch.Generator().manual_seed(0))
    attributes = solver.dataloaders["valid"].dataset[0][1].to_condition_attributes()
    merge_lora(solver.model.eval())
    with torch.no_grad():
        expected = solver.model.compute_predictions(codes, [attributes])
        actual = model.lm.compute_predictions(codes, [attributes])
    torch.testing.assert_close(actual.logits[expected.mask], expected.logits[expected.mask], atol=2e-2, rtol=0)


def test_finetune_starts_from_a_pretrained_folder(manifest, tmp_path, tiny_model_dir, monkeypatch):
    from audiocraft.models import loaders, pretrained

    monkeypatch.setattr(pretrained, "DEFAULT_MODEL_DIR", tiny_model_dir)
    assert resolve_pretrained_name("default") == str(tiny_model_dir)
    overrides = _overrides(manifest, epochs=1, updates=2, solver="musicgen/finetune", generate=False)
    solver = _solver(overrides, tmp_path / "xp")  # continue_from=//pretrained/default: the bundled model
    assert solver.restore() is True and solver.epoch == 1
    reference = loaders.load_lm_model(tiny_model_dir)
    assert_states_equal(solver.model.state_dict(), reference.state_dict(), "pretrained")
    assert (solver.cfg.transformer_lm.card, solver.cfg.sample_rate) == (64, SAMPLE_RATE)
    assert solver.cfg.compression_model_checkpoint == f"//pretrained/{tiny_model_dir}"
    solver.run()
    assert solver.history[0]["train"]["ce"] > 0
    export_musicgen(tmp_path / "xp", tmp_path / "exported")
    codec_files = [torch.load(folder / "compression_state_dict.bin", weights_only=True)
                   for folder in (tmp_path / "exported", tiny_model_dir)]
    assert codec_files[0]["xp.cfg"] == codec_files[1]["xp.cfg"]  # the pretrained model's codec, copied
    assert_states_equal(codec_files[0]["best_state"], codec_files[1]["best_state"], "codec")
    model = MusicGen.get_pretrained(str(tmp_path / "exported"), device="cpu")
    assert model.lm.card == 64 and model.sample_rate == SAMPLE_RATE


def _save_tiny_transformers_musicgen(folder: Path) -> None:
    """A random transformers MusicGen (D=32, 2 layers, 4 codebooks of 64, 32 kHz) with the offline tiny 't5-base'."""
    import transformers

    decoder = transformers.MusicgenDecoderConfig(vocab_size=64, max_position_embeddings=128, num_hidden_layers=2,
                                                 ffn_dim=64, num_attention_heads=2, hidden_size=32, num_codebooks=4,
                                                 pad_token_id=64, bos_token_id=64, dropout=0.0)
    codec = transformers.EncodecConfig(target_bandwidths=[1.2], sampling_rate=SAMPLE_RATE, audio_channels=1,
                                       num_filters=4, codebook_size=64, codebook_dim=16, hidden_size=16,
                                       upsampling_ratios=[8, 5, 4, 4], num_lstm_layers=1, normalize=False,
                                       chunk_length_s=None, overlap=None, num_residual_layers=1)
    text_encoder = transformers.T5EncoderModel.from_pretrained("t5-base")
    config = transformers.MusicgenConfig(text_encoder=text_encoder.config, audio_encoder=codec, decoder=decoder)
    torch.manual_seed(0)
    transformers.MusicgenForConditionalGeneration(config, text_encoder=text_encoder).save_pretrained(folder)


def test_finetune_starts_from_a_transformers_folder(manifest, tmp_path):
    from audiocraft.models import loaders

    _save_tiny_transformers_musicgen(tmp_path / "hf")
    overrides = _overrides(manifest, epochs=1, updates=1, solver="musicgen/finetune", generate=False)
    solver = _solver(overrides + [f"continue_from=//pretrained/{tmp_path / 'hf'}"], tmp_path / "xp")
    solver.run()
    assert solver.cfg.transformer_lm.dim == 32 and solver.history[0]["train"]["ce"] > 0
    with pytest.raises(NotImplementedError, match="Hub"):  # a local transformers EnCodec has no Hub name to point to
        export_musicgen(tmp_path / "xp", tmp_path / "exported")
    export_musicgen(tmp_path / "xp", tmp_path / "exported", compression_name="facebook/encodec_32khz")
    assert torch.load(tmp_path / "exported" / "compression_state_dict.bin")["pretrained"] == "facebook/encodec_32khz"
    lm = loaders.load_lm_model(tmp_path / "exported")
    best = solver.best_state["model"]
    assert all(torch.equal(value, best[key].half().float()) for key, value in lm.state_dict().items())


class ToyClassifier:
    """An AudioClassifier for the metric tests: 'loud' vs 'quiet' from the RMS level."""
    sample_rate = 16000
    labels = ["loud", "quiet"]

    def predict_proba(self, wav: torch.Tensor) -> torch.Tensor:
        loud = (wav.pow(2).mean(dim=(1, 2)).sqrt() * 10).clamp(0, 1)
        return torch.stack([loud, 1 - loud], dim=-1)


def test_lm_grows_to_more_codebooks_keeping_what_it_learned(manifest, tmp_path):
    """+grow_codebooks=true: an LM over the codec's first 2 codebooks continues as one over all 4; its weights are
    kept, the new codebooks' embeddings start at zero (the first codebooks' predictions do not move) and it trains."""
    small = ["compression_model_n_q=2", "transformer_lm.n_q=2"]
    first = _solver(_overrides(manifest, epochs=1, updates=1, generate=False) + small, tmp_path / "first")
    first.run()
    kept = checkpoint.load_checkpoint(tmp_path / "first" / "checkpoint.th", trust_pickle=True)["best_state"]["model"]
    grown = _solver(_overrides(manifest, epochs=1, updates=1, generate=False)
                    + [f"continue_from={tmp_path / 'first'}", "+grow_codebooks=true"], tmp_path / "grown")
    grown.restore()
    state = grown.model.state_dict()
    assert [key for key, value in kept.items() if not torch.equal(state[key], value)] == []
    assert not state["emb.2.weight"].any() and not state["emb.3.weight"].any()
    assert state["linears.3.weight"].abs().sum() > 0
    grown.run()
    assert len(grown.history) == 1
    same = _solver(_overrides(manifest, epochs=1, updates=1, generate=False) + small
                   + [f"continue_from={tmp_path / 'first'}", "+grow_codebooks=true"], tmp_path / "same")
    with pytest.raises(ValueError, match="set transformer_lm.n_q larger than 2"):
        same.restore()


def test_evaluation_metrics_follow_the_config(manifest, caplog):
    from audiocraft.metrics import ClassifierTextConsistency, FrechetAudioDistance, KLDivergence, MelStatisticsEmbedder
    from audiocraft.solvers.musicgen import get_generation_metrics

    on = ["evaluate.metrics.fad=true", "evaluate.metrics.kld=true", "evaluate.metrics.text_consistency=true"]
    defaults = get_generation_metrics(compose_config(_overrides(manifest) + on))
    assert set(defaults) == {"fad"}  # AudioCraft's PaSST and CLAP are not available: skipped with a warning
    assert isinstance(defaults["fad"].embedder, MelStatisticsEmbedder)
    assert "metrics.kld.model=passt" in caplog.text
    toy = f"{__name__}.ToyClassifier"
    configured = get_generation_metrics(compose_config(
        _overrides(manifest) + on + [f"metrics.kld.model={toy}", f"metrics.text_consistency.model={toy}"]))
    assert isinstance(configured["fad"], FrechetAudioDistance) and isinstance(configured["kld"], KLDivergence)
    consistency = configured["text_consistency"]
    assert isinstance(consistency, ClassifierTextConsistency)
    loud = torch.ones(2, 1, 16000) * 0.5
    consistency.update(loud, ["a loud synth", "a quiet synth"], sample_rates=16000)
    assert consistency.compute() == 0.5


def test_configuration_errors_are_actionable(manifest, tmp_path):
    wrong_card = _solver(_overrides(manifest, generate=False) + ["transformer_lm.card=64"], tmp_path / "a")
    with pytest.raises(ValueError, match="codebook size.*transformer_lm"):
        wrong_card.build()
    shards = _solver(_overrides(manifest, generate=False) + [f"cache.path={tmp_path}/c", "cache.write_num_shards=2"],
                     tmp_path / "b")
    with pytest.raises(ValueError, match="write_num_shards"):
        shards.build()
    with pytest.raises(FileNotFoundError):
        export_musicgen(tmp_path / "nowhere", tmp_path / "out")


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_exactly(manifest, tmp_path):
    overrides = _overrides(manifest, epochs=2, updates=12, generate=False) + ["optim.ema.use=true",
                                                                              "optim.ema.updates=2"]
    straight = _solver(overrides, tmp_path / "straight")
    straight.run()
    env = {**os.environ, "AUDIOCRAFT_DORA_DIR": str(tmp_path / "dora"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "audiocraft.train", *overrides]
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300
            while not list((tmp_path / "dora").glob("xps/*/checkpoint.th")):
                assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.time() < deadline, "no checkpoint after 300 s"
                time.sleep(0.02)
            process.kill()  # SIGKILL during epoch 2
        finally:
            process.kill()
            process.wait()
    (path,) = (tmp_path / "dora").glob("xps/*/checkpoint.th")
    assert len(checkpoint.load_checkpoint(path)["history"]) == 1, "not interrupted during epoch 2; raise updates"
    resumed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr
    final = checkpoint.load_checkpoint(path)
    expected = checkpoint.load_checkpoint(tmp_path / "straight" / "checkpoint.th")
    for name in ("model", "optimizer", "ema", "best_state"):
        assert_states_equal(expected[name], final[name], name)
    assert [h["train"]["ce"] for h in final["history"]] == [h["train"]["ce"] for h in expected["history"]]


def test_export_refuses_a_codec_that_makes_other_codes(tiny_model_dir, monkeypatch):
    """--compression-model compares the two codecs' codes of a test signal, not only their shapes."""
    import copy

    from audiocraft.models import loaders
    from audiocraft.solvers import musicgen, musicgen_export

    trained = loaders.load_compression_model(tiny_model_dir).eval()
    decoder_tuned = copy.deepcopy(trained)  # same encoder and quantizer: same codes
    with torch.no_grad():
        for param in decoder_tuned.decoder.parameters():
            param.add_(0.1 * torch.randn_like(param))
    reencoded = copy.deepcopy(trained)  # another encoder: other codes
    with torch.no_grad():
        for param in reencoded.encoder.parameters():
            param.mul_(-1.0)
    codecs = {"trained": trained, "decoder_tuned": decoder_tuned, "reencoded": reencoded}
    monkeypatch.setattr(musicgen, "load_codec", lambda cfg, source, device="cpu": codecs[source])
    musicgen_export._check_same_codes(None, "trained", "decoder_tuned")
    with pytest.raises(ValueError, match="makes other codes"):
        musicgen_export._check_same_codes(None, "trained", "reencoded")
