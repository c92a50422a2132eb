"""MusicGen / BaseGenModel: reference reproduction, long and streaming generation, input errors."""
import warnings

import pytest
import torch

from audiocraft.models import AudioGen, MusicGen, builders
from audiocraft.models import musicgen as musicgen_module
from conftest import REFERENCE_DIR, load_reference

GREEDY = dict(use_sampling=False, top_k=250, top_p=0.0, temperature=1.0, duration=1.0, cfg_coef=3.0,
              two_step_cfg=False, extend_stride=18)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return MusicGen.get_pretrained(str(REFERENCE_DIR / "musicgen_tiny"), device="cpu")


@pytest.fixture(autouse=True)
def _greedy(model):
    model.max_duration = 30.0
    model.set_generation_params(**GREEDY)
    model.set_custom_progress_callback(None)


# ----------------------------------------------------------------------------- reference outputs
def test_properties(model):
    assert model.sample_rate == 32000 and model.frame_rate == 50 and model.audio_channels == 1
    assert model.max_duration == 30


def test_generate_matches_reference(model):
    ref = load_reference("c_greedy")
    audio, tokens = model.generate(ref["prompts"], return_tokens=True)
    assert torch.equal(tokens, ref["tokens"])
    assert (audio - ref["audio"]).abs().max() < 1e-4


def test_generate_continuation_matches_reference(model):
    ref = load_reference("d_continuation")
    audio, tokens = model.generate_continuation(ref["prompt_wav"], ref["prompt_sample_rate"], ref["descriptions"],
                                                return_tokens=True)
    assert torch.equal(tokens, ref["tokens"])
    assert (audio - ref["audio"]).abs().max() < 1e-4


def test_generate_unconditional_matches_reference(model):
    ref = load_reference("f_unconditional")
    audio, tokens = model.generate_unconditional(ref["num_samples"], return_tokens=True)
    assert torch.equal(tokens, ref["tokens"])
    assert (audio - ref["audio"]).abs().max() < 1e-4


def test_generate_audio_decodes_tokens(model):
    ref = load_reference("c_greedy")
    assert (model.generate_audio(ref["tokens"]) - ref["audio"]).abs().max() < 1e-4


# ----------------------------------------------------------------------------- sampling and streaming
def test_seeded_sampling_is_reproducible(model):
    model.set_generation_params(duration=0.5, top_k=16)
    torch.manual_seed(3)
    first = model.generate(["lofi"])
    torch.manual_seed(3)
    second = model.generate(["lofi"])
    torch.manual_seed(4)
    third = model.generate(["lofi"])
    assert torch.equal(first, second) and not torch.equal(first, third)


@pytest.mark.parametrize("sampling", [False, True])
def test_stream_equals_generate(model, sampling):
    model.set_generation_params(duration=1.0, use_sampling=sampling, top_k=16)
    torch.manual_seed(5)
    batch = model.generate(["epic brass", "calm piano"])
    torch.manual_seed(5)
    chunks = list(model.stream(["epic brass", "calm piano"], min_chunk_duration=0.2))
    assert len(chunks) >= 3  # audio arrives before the end
    streamed = torch.cat(chunks, dim=-1)
    assert streamed.shape == batch.shape
    assert (streamed - batch).abs().max() < 1e-5


def test_stream_with_prompt_starts_with_the_prompt_audio(model):
    ref = load_reference("d_continuation")
    streamed = torch.cat(list(model.stream(ref["descriptions"], prompt=ref["prompt_wav"],
                                           prompt_sample_rate=ref["prompt_sample_rate"])), dim=-1)
    assert (streamed - ref["audio"]).abs().max() < 1e-4


def test_progress_callback(model):
    calls = []
    model.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
    model.generate(["x"])
    assert calls[-1] == (50, 50) and all(b >= a for (a, _), (b, _) in zip(calls, calls[1:]))


# ----------------------------------------------------------------------------- long generation
def test_long_generation_windows_and_prompt_hand_over(model, monkeypatch):
    model.max_duration = 1.0
    model.set_generation_params(duration=2.5, extend_stride=0.5, use_sampling=False)
    calls = []
    real = model.lm.stream_generate

    def spy(prompt, conditions, **kwargs):
        calls.append((None if prompt is None else prompt.clone(), kwargs["max_gen_len"]))
        return real(prompt, conditions, **kwargs)

    monkeypatch.setattr(model.lm, "stream_generate", spy)
    audio, tokens = model.generate(["a long piece"], return_tokens=True)
    assert tokens.shape == (1, 4, 125) and audio.shape[-1] == 125 * 640
    # windows start every 25 frames; each is 50 frames long and keeps 25 frames of context
    assert [length for _, length in calls] == [50, 50, 50, 50]
    assert calls[0][0] is None
    for index, (context, _) in enumerate(calls[1:], start=1):
        start = 25 * index
        assert torch.equal(context, tokens[..., start:start + 25])  # hand-over: last frames of the output


def test_long_generation_continuation_and_stream(model):
    ref = load_reference("d_continuation")
    model.max_duration = 1.0
    model.set_generation_params(duration=1.6, extend_stride=0.6, use_sampling=False)
    audio, tokens = model.generate_continuation(ref["prompt_wav"][:1], 32000, ["folk"], return_tokens=True)
    assert tokens.shape[-1] == 80
    assert torch.equal(tokens[..., :25], ref["prompt_tokens"][:1])  # the prompt is encoded once and kept
    streamed = torch.cat(list(model.stream(["folk"], prompt=ref["prompt_wav"][:1], prompt_sample_rate=32000)), -1)
    assert (streamed - audio).abs().max() < 1e-5


def test_continuing_a_continuation(model):
    ref = load_reference("d_continuation")
    first = model.generate_continuation(ref["prompt_wav"][:1], 32000, ["folk"])
    model.set_generation_params(duration=1.5, use_sampling=False)
    second, tokens = model.generate_continuation(first, 32000, ["folk"], return_tokens=True)
    assert second.shape[-1] == 75 * 640
    encoded, _ = model.compression_model.encode(first)
    assert torch.equal(tokens[..., :encoded.shape[-1]], encoded)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("descriptions, error", [
    ([], ValueError), ("just a string", TypeError), ([3], TypeError), (["ok", ""], ValueError), ([None], TypeError),
])
def test_bad_descriptions(model, descriptions, error):
    with pytest.raises(error, match="descriptions"):
        model.generate(descriptions)


@pytest.mark.parametrize("params, match", [
    (dict(duration=0), "duration"), (dict(duration=-3), "duration"), (dict(duration=float("nan")), "duration"),
    (dict(extend_stride=30), "extend_stride"), (dict(extend_stride=0), "extend_stride"),
    (dict(top_k=-1), "top_k"), (dict(top_p=1.5), "top_p"), (dict(temperature=-1), "temperature"),
])
def test_bad_generation_params(model, params, match):
    with pytest.raises(ValueError, match=match):
        model.set_generation_params(**params)


def test_absurd_duration_is_refused_before_generating(model):
    model.set_generation_params(duration=1e9)
    with pytest.raises(ValueError, match="memory|GiB"):
        model.generate(["x"])


def test_bad_prompts(model):
    good = torch.randn(1, 1, 16000) * 0.1
    with pytest.raises(ValueError, match="not shorter than the requested duration"):
        model.generate_continuation(torch.randn(1, 1, 40000) * 0.1, 32000)
    with pytest.raises(ValueError, match="sample rate"):
        model.generate_continuation(good, 0)
    with pytest.raises(ValueError, match="channels"):
        model.generate_continuation(torch.randn(1, 16000, 1), 32000)
    with pytest.raises(ValueError, match="silent"):
        model.generate_continuation(torch.zeros(1, 1, 16000), 32000)
    with pytest.raises(ValueError, match="NaN"):
        model.generate_continuation(torch.full((1, 1, 16000), float("nan")), 32000)
    with pytest.raises(ValueError, match="shape"):
        model.generate_continuation(torch.randn(16000), 32000)
    with pytest.raises(ValueError, match="description"):
        model.generate_continuation(good, 32000, ["a", "b"])
    with pytest.raises(ValueError, match="melody"):
        model.generate_with_chroma(["x"], good, 32000)


def test_mismatched_codebooks_are_refused():
    compression = builders.get_debug_compression_model()
    compression.set_num_codebooks(2)
    lm = builders.get_debug_lm_model()
    with pytest.raises(ValueError, match="codebooks"):
        MusicGen("mismatch", compression, lm, max_duration=5)


def test_resampled_stereo_prompt_is_accepted(model):
    prompt = torch.randn(1, 2, 8000) * 0.1  # 0.5 s of stereo at 16 kHz
    audio = model.generate_continuation(prompt, 16000, ["x"])
    assert audio.shape == (1, 1, 32000)


# ----------------------------------------------------------------------------- loading
def test_legacy_names_warn(monkeypatch):
    seen = []

    def fake_load(name, device, dtype):
        seen.append(name)
        return name, builders.get_debug_compression_model(), builders.get_debug_lm_model(), 5.0

    monkeypatch.setattr(musicgen_module, "load_pretrained_parts", fake_load)
    with pytest.warns(DeprecationWarning, match="facebook/musicgen-small"):
        model = MusicGen.get_pretrained("small", device="cpu")
    assert seen == ["facebook/musicgen-small"] and model.name == "facebook/musicgen-small"


def test_hub_name_offline_gives_actionable_error():
    with pytest.raises(FileNotFoundError, match="local"):
        MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")


def test_debug_model_generates():
    model = MusicGen.get_pretrained("debug", device="cpu")
    model.set_generation_params(duration=0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio = model.generate(["x", "y"])
    assert audio.shape == (2, 1, int(0.4 * model.frame_rate) * 1280)


def test_audiogen_api():
    model = AudioGen.get_pretrained(str(REFERENCE_DIR / "musicgen_tiny"), device="cpu")
    assert model.duration == 5 and model.extend_stride == 2
    model.set_generation_params(duration=0.2, use_sampling=False)
    assert model.generate(["dog barking"]).shape == (1, 1, 10 * 640)
