"""EnCodec and the compression-model adapters: reference reproduction, behaviour, training, errors."""
import math

import pytest
import torch

from conftest import load_reference

from audiocraft.models import loaders
from audiocraft.models.encodec import (
    CompressionModel,
    EncodecModel,
    HFEncodecCompressionModel,
    InterleaveStereoCompressionModel,
)
from audiocraft.modules.seanet import SEANetDecoder, SEANetEncoder
from audiocraft.quantization import ResidualVectorQuantizer


@pytest.fixture(scope="module")
def tiny_codec(tiny_model_dir) -> EncodecModel:
    return loaders.load_compression_model(tiny_model_dir)


@pytest.fixture(scope="module")
def reference() -> dict:
    return load_reference("b_compression")


@pytest.fixture()
def codec(tiny_codec):
    tiny_codec.set_num_codebooks(tiny_codec.total_codebooks)
    yield tiny_codec
    tiny_codec.set_num_codebooks(tiny_codec.total_codebooks)


# ----------------------------------------------------------------------------- reference outputs

def test_reproduces_audiocraft_reference(codec, reference):
    wav = reference["wav"]
    with torch.no_grad():
        latent = codec.encoder(wav)
        codes, scale = codec.encode(wav)
        decoded = codec.decode(reference["codes"], None)
    torch.testing.assert_close(latent, reference["encoder_latent"], atol=1e-5, rtol=0)
    assert scale is None
    assert codes.dtype == torch.int64 and codes.shape == (2, 4, 50)
    assert torch.equal(codes, reference["codes"])
    assert decoded.shape == (2, 1, 32000)
    assert (decoded - reference["decoded"]).abs().max().item() <= 1e-4


def test_properties_of_reference_model(codec):
    assert isinstance(codec, CompressionModel)
    assert codec.sample_rate == 32000 and codec.channels == 1
    assert codec.frame_rate == 32000 / math.prod([8, 5, 4, 4]) == 50.0
    assert codec.cardinality == 64
    assert codec.num_codebooks == codec.total_codebooks == 4
    assert not codec.training


# ----------------------------------------------------------------------------- behaviour

def test_decode_of_encode_equals_forward_in_eval(codec, reference):
    wav = reference["wav"][:, :, :9000]
    with torch.no_grad():
        codes, _ = codec.encode(wav)
        latent = codec.quantizer(codec.encoder(wav), codec.frame_rate).x
        torch.testing.assert_close(codec.decode_latent(codes), latent)
        round_trip = codec.decode(codes)
        result = codec(wav)
    assert round_trip.shape[-1] == math.ceil(9000 / 640) * 640
    torch.testing.assert_close(round_trip[..., :9000], result.x)
    torch.testing.assert_close(result.x, codec.decoder(latent)[..., :9000])
    assert torch.equal(result.codes, codes)
    assert result.bandwidth.item() == pytest.approx(4 * math.log2(64) * 50 / 1000)


def test_first_codebooks_alone(codec, reference):
    wav = reference["wav"]
    errors = []
    with torch.no_grad():
        latent = codec.encoder(wav)
        for n in range(1, 5):
            codec.set_num_codebooks(n)
            codes, _ = codec.encode(wav)
            assert codes.shape == (2, n, 50)
            assert torch.equal(codes, reference["codes"][:, :n])  # RVQ prefix property
            assert codec.decode(codes).shape == (2, 1, 32000)
            errors.append((codec.decode_latent(codes) - latent).pow(2).mean().item())
    assert all(later <= earlier for earlier, later in zip(errors, errors[1:]))
    with pytest.raises(ValueError, match="number of codebooks"):
        codec.set_num_codebooks(5)


def test_renormalize_returns_and_applies_scale(codec):
    model = EncodecModel(codec.encoder, codec.decoder, codec.quantizer, frame_rate=50, sample_rate=32000,
                         channels=1, renormalize=True).eval()
    x = 0.3 * torch.randn(2, 1, 1280)
    with torch.no_grad():
        codes, scale = model.encode(x)
        assert scale.shape == (2, 1)
        torch.testing.assert_close(scale, x.pow(2).mean(dim=(1, 2)).sqrt().view(2, 1) + 1e-8)
        torch.testing.assert_close(model.decode(codes, scale), model.decode(codes) * scale.view(2, 1, 1))
    with pytest.raises(ValueError, match="causal"):
        EncodecModel(codec.encoder, codec.decoder, codec.quantizer, 50, 32000, 1, causal=True, renormalize=True)


def _tiny_trainable_codec() -> EncodecModel:
    seanet = dict(channels=1, dimension=16, num_filters=4, num_residual_layers=1, ratios=[4, 4],
                  norm="weight_norm", lstm_layers=1)
    quantizer = ResidualVectorQuantizer(dimension=16, num_codebooks=2, codebook_size=32, kmeans_iters=5)
    return EncodecModel(SEANetEncoder(**seanet), SEANetDecoder(**seanet), quantizer,
                        frame_rate=8000 / 16, sample_rate=8000, channels=1)


def test_tiny_codec_reconstruction_loss_falls():
    model = _tiny_trainable_codec()
    generator = torch.Generator().manual_seed(1)
    t = torch.arange(1024) / 8000
    freqs = torch.tensor([220.0, 440.0, 660.0, 880.0]).view(4, 1, 1)
    batch = 0.5 * torch.sin(2 * math.pi * freqs * t) + 0.05 * torch.randn(4, 1, 1024, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(40):
        result = model(batch)
        loss = (result.x - batch).abs().mean() + result.penalty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model.quantizer.vq.layers[0].inited.item() == 1.0
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses


def _stream(decoder, codes: torch.Tensor, cuts) -> list:
    bounds = [0, *cuts, codes.shape[-1]]
    chunks = [decoder.push(codes[..., a:b]) for a, b in zip(bounds, bounds[1:])]
    return chunks + [decoder.flush()]


def test_stream_decoder_equals_full_decode(codec, reference):
    codes = reference["codes"]
    with torch.no_grad():
        chunks = _stream(codec.stream_decoder(), codes, [1, 2, 13, 14, 30])
        full = codec.decode(codes)
    assert chunks[0].shape == (2, 1, 0)  # waits for the convolutions' look-ahead
    assert sum(c.shape[-1] for c in chunks[:-1]) > 0  # but releases audio before the end
    torch.testing.assert_close(torch.cat(chunks, dim=-1), full, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- stereo wrapper

@pytest.mark.parametrize("per_timestep", [False, True])
def test_interleave_stereo_round_trip_and_independence(codec, reference, per_timestep):
    stereo = InterleaveStereoCompressionModel(codec, per_timestep=per_timestep)
    left, right = reference["wav"][0:1], reference["wav"][1:2]
    x = torch.cat([left, right], dim=1)  # [1, 2, 32000]
    with torch.no_grad():
        codes, scale = stereo.encode(x)
        left_codes, _ = codec.encode(left)
        right_codes, _ = codec.encode(right)
        if per_timestep:
            assert codes.shape == (1, 4, 100) and stereo.frame_rate == 100.0 and stereo.num_codebooks == 4
            assert torch.equal(codes[:, :, 0::2], left_codes) and torch.equal(codes[:, :, 1::2], right_codes)
        else:
            assert codes.shape == (1, 8, 50) and stereo.frame_rate == 50.0 and stereo.num_codebooks == 8
            assert torch.equal(codes[:, 0::2], left_codes) and torch.equal(codes[:, 1::2], right_codes)
        assert scale is None
        audio = stereo.decode(codes)
        assert audio.shape == (1, 2, 32000)
        torch.testing.assert_close(audio[:, :1], codec.decode(left_codes))
        torch.testing.assert_close(audio[:, 1:], codec.decode(right_codes))
        # changing the right channel does not touch the left channel's codes or audio
        other_codes, _ = stereo.encode(torch.cat([left, -right], dim=1))
        other_left, _ = stereo.split_codes(other_codes)
        assert torch.equal(other_left, left_codes)
        assert stereo.decode_latent(codes).shape == (1, 64, 50)
        streamed = torch.cat(_stream(stereo.stream_decoder(), codes, [3, 17, 40]), dim=-1)
        torch.testing.assert_close(streamed, audio, atol=1e-5, rtol=0)
    assert stereo.channels == 2 and stereo.cardinality == 64


def test_interleave_stereo_errors(codec):
    stereo = InterleaveStereoCompressionModel(codec)
    with pytest.raises(ValueError, match="C=2"):
        stereo.encode(torch.randn(1, 1, 640))
    with pytest.raises(ValueError, match="even number"):
        stereo.decode(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="mono"):
        InterleaveStereoCompressionModel(stereo)
    with pytest.raises(NotImplementedError):
        stereo(torch.randn(1, 2, 640))


# ----------------------------------------------------------------------------- transformers adapter

def _tiny_transformers_encodec():
    transformers = pytest.importorskip("transformers")
    config = transformers.EncodecConfig(
        target_bandwidths=[3.0, 6.0], sampling_rate=8000, audio_channels=1, hidden_size=16, num_filters=4,
        num_residual_layers=1, upsampling_ratios=[4, 4], codebook_size=64, num_lstm_layers=1,
        use_causal_conv=False, pad_mode="constant")
    torch.manual_seed(0)
    return transformers.EncodecModel(config).eval()


def test_hf_encodec_wrapper_shapes_and_codebooks():
    hf = _tiny_transformers_encodec()
    model = HFEncodecCompressionModel(hf).eval()
    assert model.frame_rate == 500.0 and model.sample_rate == 8000 and model.channels == 1
    assert model.cardinality == 64
    assert model.possible_num_codebooks == [1, 2] and model.num_codebooks == model.total_codebooks == 2
    x = torch.randn(2, 1, 800)
    with torch.no_grad():
        codes, scale = model.encode(x)
        assert codes.shape == (2, 2, 50) and codes.dtype == torch.int64
        assert scale is None
        audio = model.decode(codes)
        assert audio.shape == (2, 1, 800)
        assert model.decode_latent(codes).shape == (2, 16, 50)
        streamed = torch.cat(_stream(model.stream_decoder(), codes, [10, 20]), dim=-1)  # decoded at flush
        torch.testing.assert_close(streamed, audio)
        model.set_num_codebooks(1)
        assert model.encode(x)[0].shape == (2, 1, 50)
    with pytest.raises(ValueError, match=r"one of \[1, 2\]"):
        model.set_num_codebooks(3)
    with pytest.raises(ValueError, match="codebooks"):
        model.decode(torch.zeros(2, 3, 5, dtype=torch.long))
    with pytest.raises(NotImplementedError):
        model(x)


# ----------------------------------------------------------------------------- input errors

def test_bad_inputs_give_clear_errors(codec):
    with pytest.raises(ValueError, match=r"unsqueeze\(1\)"):
        codec.encode(torch.randn(2, 640))
    with pytest.raises(ValueError, match="C=1"):
        codec.encode(torch.randn(2, 2, 640))
    with pytest.raises(ValueError, match=r"shape \[B, C, T\]"):
        codec(torch.randn(640))
    with pytest.raises(TypeError, match="float"):
        codec.encode(torch.zeros(1, 1, 640, dtype=torch.long))
    with pytest.raises(ValueError, match=r"in \[0, 64\)"):
        codec.decode(torch.full((1, 4, 5), 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"in \[0, 64\)"):
        codec.decode(torch.full((1, 4, 5), -1, dtype=torch.long))
    with pytest.raises(ValueError, match="K=5"):
        codec.decode(torch.zeros(1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, K, T\]"):
        codec.decode(torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        codec.decode(torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="scale"):
        codec.decode(torch.zeros(1, 4, 5, dtype=torch.long), scale=torch.ones(1, 1))
