"""Loading MusicGen checkpoints saved by transformers, checked against transformers itself.

Tiny random ``MusicgenForConditionalGeneration`` models are built here and saved with
``save_pretrained``; the text encoder is the tiny offline T5 stored as 't5-base' in the
reference HF cache (conftest points HF_HOME at it), so no test touches the network.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from audiocraft.models.encodec import HFEncodecCompressionModel, InterleaveStereoCompressionModel  # noqa: E402
from audiocraft.models.hf_convert import (is_transformers_musicgen_folder, load_transformers_musicgen,  # noqa: E402
                                          transformers_config_to_xp_cfg)
from audiocraft.modules.conditioners import ConditioningAttributes  # noqa: E402

CARD = 64
# Two prompts with the same T5 token length (no padding), one that is shorter.
SAME_LENGTH = ["calm piano music", "lofi hip hop beat"]


# ----------------------------------------------------------------------------- tiny transformers models

def _randomize_(model, seed: int) -> None:
    """Weights far from transformers' small init, so logits are O(10) and greedy decoding is far from ties."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.decoder.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() >= 2:
                scale = 1.0 if "embed_tokens" in name else param.shape[-1] ** -0.5
                param.copy_(noise * scale * (4.0 if "lm_heads" in name else 1.0))
            elif name.endswith("weight"):
                param.copy_(1 + 0.2 * noise)
            else:
                param.copy_(0.2 * noise)
        if hasattr(model, "enc_to_dec_proj"):
            weight = model.enc_to_dec_proj.weight
            weight.copy_(torch.randn(weight.shape, generator=generator) * weight.shape[-1] ** -0.5)
            model.enc_to_dec_proj.bias.copy_(0.2 * torch.randn(weight.shape[0], generator=generator))
        # Codebooks drawn from the encoder's latents of random signals (residual after each layer),
        # so that many codes are used.
        t = torch.arange(16000) / 32000
        freqs = torch.rand(4, 1, 1, generator=generator) * 2000 + 50
        wav = 0.3 * torch.sin(2 * torch.pi * freqs * t) + 0.1 * torch.randn(4, 1, 16000, generator=generator)
        residual = model.audio_encoder.encoder(wav).transpose(1, 2).reshape(-1, model.config.audio_encoder.hidden_size)
        for layer in model.audio_encoder.quantizer.layers:
            picks = torch.randperm(residual.shape[0], generator=generator)[:CARD]
            layer.codebook.embed.copy_(residual[picks])
            residual = residual - layer.codebook.embed[layer.codebook.quantize(residual)]


def make_tiny_transformers_musicgen(folder: Path, *, stereo: bool = False, small_text_encoder: bool = False,
                                    save_tokenizer: bool = False, seed: int = 0, **save_kwargs):
    """Save a tiny random transformers MusicGen (D=32, 2 layers, V=64, 4 codebooks per channel) in ``folder``.

    ``small_text_encoder``: an unnamed T5 of width 32 (= decoder width, so no ``enc_to_dec_proj``)
    instead of the tiny 't5-base' (width 768) of the offline cache.
    """
    if small_text_encoder:
        text_config = transformers.T5Config(vocab_size=160, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                            feed_forward_proj="relu", pad_token_id=0, eos_token_id=1)
        torch.manual_seed(seed)
        text_encoder = transformers.T5EncoderModel(text_config)
    else:
        text_encoder = transformers.T5EncoderModel.from_pretrained("t5-base")
    num_codebooks = 8 if stereo else 4
    decoder_config = transformers.MusicgenDecoderConfig(
        vocab_size=CARD, max_position_embeddings=128, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4,
        hidden_size=32, num_codebooks=num_codebooks, audio_channels=2 if stereo else 1, pad_token_id=CARD,
        bos_token_id=CARD, dropout=0.0)
    audio_config = transformers.EncodecConfig(
        target_bandwidths=[1.2], sampling_rate=32000, audio_channels=1, num_filters=4, codebook_size=CARD,
        codebook_dim=16, hidden_size=16, upsampling_ratios=[8, 5, 4, 4], num_lstm_layers=1, normalize=False,
        use_causal_conv=False, norm_type="weight_norm", chunk_length_s=None, overlap=None, num_residual_layers=1)
    config = transformers.MusicgenConfig(text_encoder=text_encoder.config, audio_encoder=audio_config,
                                         decoder=decoder_config)
    torch.manual_seed(seed)
    model = transformers.MusicgenForConditionalGeneration(config, text_encoder=text_encoder).eval()
    _randomize_(model, seed)
    model.save_pretrained(folder, **save_kwargs)
    if save_tokenizer:
        transformers.AutoTokenizer.from_pretrained("t5-base").save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained("t5-base")


@pytest.fixture(scope="module")
def mono(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_musicgen")
    hf_model = make_tiny_transformers_musicgen(folder)
    compression_model, lm, cfg = load_transformers_musicgen(folder)
    return folder, hf_model, compression_model, lm, cfg


def _conditions(texts):
    return [ConditioningAttributes(text={"description": text}) for text in texts]


def _hf_logits(hf_model, tokenizer, texts, sequence: torch.Tensor) -> torch.Tensor:
    """transformers' logits for decoder_input_ids = the pattern sequence [B, K, S] -> [B, K, S, V]."""
    B, K, S = sequence.shape
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = hf_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       decoder_input_ids=sequence.reshape(B * K, S))
    return out.logits.reshape(B, K, S, -1)


def _hf_greedy(hf_model, tokenizer, texts, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes [B, K, frames], audio [B, 1, T])`` of transformers' greedy CFG generation.

    The codes are captured on their way to the audio decoder.
    """
    captured = {}
    decode = hf_model.audio_encoder.decode

    def spy(audio_codes, *args, **kwargs):
        captured["codes"] = audio_codes
        return decode(audio_codes, *args, **kwargs)

    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    hf_model.audio_encoder.decode = spy
    try:
        # max_length counts decoder steps: the start step, the frames and K - 1 delay steps.
        audio = hf_model.generate(**inputs, do_sample=False, guidance_scale=3.0,
                                  max_length=frames + hf_model.decoder.num_codebooks,
                                  decoder_start_token_id=CARD, pad_token_id=CARD, bos_token_id=CARD)
    finally:
        del hf_model.audio_encoder.decode
    return captured["codes"][0], audio  # codes [B, K, T] (EnCodec's chunk axis removed)


# ----------------------------------------------------------------------------- tests

def test_folder_detection(mono, tiny_model_dir, tmp_path):
    folder = mono[0]
    assert is_transformers_musicgen_folder(folder)
    assert not is_transformers_musicgen_folder(tiny_model_dir)  # AudioCraft format
    assert not is_transformers_musicgen_folder(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    assert not is_transformers_musicgen_folder(tmp_path)


def test_config_translation(mono):
    folder, _, _, lm, cfg = mono
    config = json.loads((folder / "config.json").read_text())
    assert cfg.transformer_lm.dim == 32 and cfg.transformer_lm.num_layers == 2 and cfg.transformer_lm.num_heads == 4
    assert cfg.transformer_lm.n_q == 4 and cfg.transformer_lm.card == CARD and cfg.transformer_lm.hidden_scale == 4
    assert list(cfg.codebooks_pattern.delay.delays) == [0, 1, 2, 3]
    assert list(cfg.fuser.cross) == ["description"]
    assert cfg.conditioners.description.t5.name == "t5-base"
    assert cfg.classifier_free_guidance.inference_coef == 3.0 and cfg.dataset.segment_duration == 30.0
    assert lm.cfg is cfg and not lm.training
    generation = {"guidance_scale": 4.5, "max_length": 100}
    other = transformers_config_to_xp_cfg(config, generation)
    assert other.classifier_free_guidance.inference_coef == 4.5
    assert other.dataset.segment_duration == pytest.approx(2.0)  # 100 steps at 50 Hz


def test_logits_equal_transformers(mono, tokenizer):
    """Same codes, same (unpadded) texts: the LM's logits are transformers' decoder logits.

    The decoder input of transformers is AudioCraft's delayed pattern sequence itself (special
    token ``card`` at step 0 and in the delay gaps); the prediction for code (k, t) sits at
    step ``t + delays[k]`` of the sequence in both.
    """
    _, hf_model, _, lm, _ = mono
    assert len({len(ids) for ids in tokenizer(SAME_LENGTH)["input_ids"]}) == 1
    codes = torch.randint(0, CARD, (2, 4, 12), generator=torch.Generator().manual_seed(3))
    sequence, _, _ = lm.pattern_provider.get_pattern(12).build_pattern_sequence(codes, lm.special_token_id)
    with torch.no_grad():
        ours = lm(sequence, _conditions(SAME_LENGTH))
    theirs = _hf_logits(hf_model, tokenizer, SAME_LENGTH, sequence)
    assert ours.abs().max() > 5  # far from trivially equal
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)

    with torch.no_grad():
        predictions = lm.compute_predictions(codes, _conditions(SAME_LENGTH))
    delays = lm.pattern_provider.delays
    for k, delay in enumerate(delays):
        valid = predictions.mask[0, k]
        steps = torch.arange(12)[valid] + delay
        torch.testing.assert_close(predictions.logits[:, k, valid], theirs[:, k, steps], atol=1e-4, rtol=0)


def test_padded_text_is_the_one_documented_difference(mono, tokenizer):
    """transformers masks padded T5 tokens in cross-attention, AudioCraft only zeroes them.

    The unpadded item matches exactly; the padded item matches transformers' decoder when it is
    fed AudioCraft's conditioning (zeroed padding, no cross-attention mask).
    """
    _, hf_model, _, lm, _ = mono
    texts = ["calm piano music with soft strings", "rock"]
    mask = tokenizer(texts, return_tensors="pt", padding=True)["attention_mask"]
    assert mask[0].all() and not mask[1].all()
    codes = torch.randint(0, CARD, (2, 4, 8), generator=torch.Generator().manual_seed(4))
    sequence, _, _ = lm.pattern_provider.get_pattern(8).build_pattern_sequence(codes, lm.special_token_id)
    provider = lm.condition_provider
    with torch.no_grad():
        condition_tensors = provider(provider.tokenize(_conditions(texts)))
        ours = lm(sequence, [], condition_tensors=condition_tensors)
        unmasked = hf_model.decoder(input_ids=sequence.reshape(8, -1),
                                    encoder_hidden_states=condition_tensors["description"][0]).logits
    theirs = _hf_logits(hf_model, tokenizer, texts, sequence)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-4, rtol=0)
    assert (ours[1] - theirs[1]).abs().max() > 1e-3
    torch.testing.assert_close(ours, unmasked.reshape(ours.shape), atol=1e-4, rtol=0)


def test_greedy_generation_equals_transformers(mono, tokenizer):
    folder, hf_model, _, lm, _ = mono
    frames = 6
    ours = lm.generate(conditions=_conditions(SAME_LENGTH), max_gen_len=frames, use_sampling=False, cfg_coef=3.0)
    theirs, their_audio = _hf_greedy(hf_model, tokenizer, SAME_LENGTH, frames)
    assert ours.shape == (2, 4, frames)
    assert torch.equal(ours, theirs)
    assert ours.unique().numel() > 4  # not a degenerate constant sequence

    # End to end through MusicGen.get_pretrained(<transformers folder>).
    from audiocraft.models import MusicGen
    model = MusicGen.get_pretrained(str(folder), device="cpu")
    model.set_generation_params(use_sampling=False, duration=frames / 50, cfg_coef=3.0)
    audio, tokens = model.generate(SAME_LENGTH, return_tokens=True)
    assert torch.equal(tokens, theirs)
    torch.testing.assert_close(audio, their_audio, atol=1e-5, rtol=0)


def test_codec_round_trip_equals_transformers(mono):
    _, hf_model, compression_model, lm, _ = mono
    assert isinstance(compression_model, HFEncodecCompressionModel)
    assert compression_model.num_codebooks == lm.n_q and compression_model.cardinality == lm.card
    t = torch.arange(16000) / 32000
    wav = (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(2, 16000)).view(2, 1, 16000)
    codes, scale = compression_model.encode(wav)
    with torch.no_grad():
        expected = hf_model.audio_encoder.encode(wav, bandwidth=1.2).audio_codes[0]
        expected_audio = hf_model.audio_encoder.decode(expected[None], [None]).audio_values
    assert scale is None and codes.shape == (2, 4, 25)
    assert torch.equal(codes, expected) and codes.unique().numel() > 8
    with torch.no_grad():
        torch.testing.assert_close(compression_model.decode(codes), expected_audio, atol=1e-5, rtol=0)


def test_stereo_checkpoint(tmp_path, tokenizer):
    hf_model = make_tiny_transformers_musicgen(tmp_path, stereo=True, seed=1)
    compression_model, lm, cfg = load_transformers_musicgen(tmp_path)
    assert list(cfg.codebooks_pattern.delay.delays) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert cfg.interleave_stereo_codebooks.use and cfg.channels == 2
    assert isinstance(compression_model, InterleaveStereoCompressionModel)
    assert compression_model.channels == 2 and compression_model.num_codebooks == 8 == lm.n_q
    codes = torch.randint(0, CARD, (2, 8, 6), generator=torch.Generator().manual_seed(5))
    sequence, _, _ = lm.pattern_provider.get_pattern(6).build_pattern_sequence(codes, lm.special_token_id)
    with torch.no_grad():
        ours = lm(sequence, _conditions(SAME_LENGTH))
    torch.testing.assert_close(ours, _hf_logits(hf_model, tokenizer, SAME_LENGTH, sequence), atol=1e-4, rtol=0)
    # Stereo codes interleave left/right codebooks like transformers does (L0, R0, L1, R1, ...).
    wav = 0.1 * torch.randn(1, 2, 3200)
    stereo_codes, _ = compression_model.encode(wav)
    with torch.no_grad():
        left = hf_model.audio_encoder.encode(wav[:, :1], bandwidth=1.2).audio_codes[0]
        right = hf_model.audio_encoder.encode(wav[:, 1:], bandwidth=1.2).audio_codes[0]
    assert torch.equal(stereo_codes[:, 0::2], left) and torch.equal(stereo_codes[:, 1::2], right)


def test_unnamed_text_encoder_identity_projection_and_folder_tokenizer(tmp_path, tokenizer):
    """A T5 as wide as the decoder (no enc_to_dec_proj), no hub name, tokenizer saved in the folder."""
    hf_model = make_tiny_transformers_musicgen(tmp_path, small_text_encoder=True, save_tokenizer=True, seed=2)
    assert not hasattr(hf_model, "enc_to_dec_proj")
    _, lm, _ = load_transformers_musicgen(tmp_path)
    proj = lm.condition_provider.conditioners["description"].output_proj
    assert torch.equal(proj.weight, torch.eye(32)) and not proj.bias.any()
    codes = torch.randint(0, CARD, (2, 4, 6), generator=torch.Generator().manual_seed(6))
    sequence, _, _ = lm.pattern_provider.get_pattern(6).build_pattern_sequence(codes, lm.special_token_id)
    with torch.no_grad():
        ours = lm(sequence, _conditions(SAME_LENGTH))
    torch.testing.assert_close(ours, _hf_logits(hf_model, tokenizer, SAME_LENGTH, sequence), atol=1e-4, rtol=0)


def test_sharded_checkpoint(tmp_path, mono):
    make_tiny_transformers_musicgen(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    _, lm, _ = load_transformers_musicgen(tmp_path)
    reference = mono[3].state_dict()
    assert all(torch.equal(value, reference[name]) for name, value in lm.state_dict().items())


def _rewrite_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file
    path = folder / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize("edit, name", [
    (lambda s: s.pop("decoder.model.decoder.layers.1.fc2.weight"), r"layers\.1\.fc2\.weight"),
    (lambda s: s.update({"decoder.model.decoder.layers.0.fc1.bias": torch.zeros(128)}), r"layers\.0\.fc1\.bias"),
    (lambda s: s.update({"audio_encoder.quantizer.layers.0.codebook.embed": torch.zeros(CARD, 8)}), "codebook.embed"),
    (lambda s: s.pop("text_encoder.encoder.final_layer_norm.weight"), "final_layer_norm"),
], ids=["missing", "unexpected", "reshaped", "text-encoder"])
def test_mismatched_weights_are_named(tmp_path, mono, edit, name):
    folder = tmp_path / "copy"
    shutil.copytree(mono[0], folder)
    _rewrite_weights(folder, edit)
    with pytest.raises(ValueError, match=name):
        load_transformers_musicgen(folder)


def test_legacy_checkpoint_names(tmp_path, mono):
    """Older checkpoints spell EnCodec's weight norm ``weight_g``/``weight_v`` and store the position table."""
    folder = tmp_path / "legacy"
    shutil.copytree(mono[0], folder)

    def legacy(state):
        for name in [n for n in state if ".parametrizations.weight.original" in n]:
            old = name.replace(".parametrizations.weight.original0", ".weight_g")
            old = old.replace(".parametrizations.weight.original1", ".weight_v")
            state[old] = state.pop(name)
        state["decoder.model.decoder.embed_positions.weights"] = torch.zeros(128, 32)

    _rewrite_weights(folder, legacy)
    compression_model, lm, _ = load_transformers_musicgen(folder)
    wav = 0.1 * torch.randn(1, 1, 3200)
    assert torch.equal(compression_model.encode(wav)[0], mono[2].encode(wav)[0])
    reference = mono[3].state_dict()
    assert all(torch.equal(value, reference[name]) for name, value in lm.state_dict().items())


def test_unsupported_and_missing_inputs(tmp_path, mono):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_transformers_musicgen(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_transformers_musicgen(tmp_path)
    config = json.loads((mono[0] / "config.json").read_text())
    melody = dict(config, model_type="musicgen_melody")
    with pytest.raises(NotImplementedError, match="Melody"):
        transformers_config_to_xp_cfg(melody)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_transformers_musicgen(tmp_path)
    bad = json.loads(json.dumps(config))
    bad["decoder"]["activation_function"] = "silu"
    with pytest.raises(NotImplementedError, match="silu"):
        transformers_config_to_xp_cfg(bad)


def test_unnamed_text_encoder_without_tokenizer_fails_clearly(tmp_path):
    make_tiny_transformers_musicgen(tmp_path, small_text_encoder=True, save_tokenizer=False)
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        load_transformers_musicgen(tmp_path)
