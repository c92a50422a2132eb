"""Channel / rate conversion, normalisation strategies and PCM conversion (audiocraft.data.audio_utils)."""
import math

import pytest
import torch

from audiocraft.data.audio_utils import (convert_audio, convert_audio_channels, f32_pcm, i16_pcm,
                                         normalize_audio, normalize_loudness)
from audiocraft.data.loudness import integrated_loudness

PEAK_1DB = 10 ** (-1 / 20)


def sine(freq: float, sample_rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def dominant_freq(wav: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(wav.double()).abs()
    return spectrum.argmax().item() * sample_rate / wav.shape[-1]


# ----------------------------------------------------------------------------- channels


def test_channels_downmix_to_mono_is_the_mean():
    wav = torch.randn(3, 2, 100)
    out = convert_audio_channels(wav, 1)
    assert out.shape == (3, 1, 100)
    assert torch.allclose(out[:, 0], wav.mean(dim=1))


def test_channels_mono_is_broadcast_and_extra_channels_are_dropped():
    mono = torch.randn(1, 50)
    out = convert_audio_channels(mono, 3)
    assert out.shape == (3, 50) and all(torch.equal(out[c], mono[0]) for c in range(3))
    quad = torch.randn(4, 50)
    assert torch.equal(convert_audio_channels(quad, 2), quad[:2])
    assert convert_audio_channels(quad, 4) is quad


def test_channels_ambiguous_or_bad_requests_raise():
    with pytest.raises(ValueError, match="cannot turn 2-channel audio into 3"):
        convert_audio_channels(torch.randn(2, 10), 3)
    with pytest.raises(ValueError, match="channels"):
        convert_audio_channels(torch.randn(2, 10), 0)
    with pytest.raises(ValueError, match=r"\[\.\.\., C, T\]"):
        convert_audio_channels(torch.randn(10), 1)
    with pytest.raises(TypeError):
        convert_audio_channels([[0.0]], 1)


# ----------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("from_rate,to_rate", [(16000, 44100), (48000, 32000), (44100.0, 16000)])
def test_convert_audio_keeps_frequency_and_length_arithmetic(from_rate, to_rate):
    wav = sine(1000, int(from_rate), seconds=0.5)[None].repeat(2, 1)
    out = convert_audio(wav, from_rate, to_rate, 1)
    assert out.shape == (1, math.floor(wav.shape[-1] * to_rate / from_rate))
    assert dominant_freq(out[0], to_rate) == pytest.approx(1000, abs=4)
    # Away from the edges the resampled sine has the same amplitude.
    middle = out[0, out.shape[-1] // 4: -out.shape[-1] // 4]
    assert middle.abs().max().item() == pytest.approx(0.5, abs=0.01)


def test_convert_audio_same_rate_only_converts_channels():
    wav = torch.randn(2, 1000)
    assert torch.equal(convert_audio(wav, 32000, 32000, 2), wav)
    assert torch.allclose(convert_audio(wav, 32000, 32000, 1), wav.mean(0, keepdim=True))


@pytest.mark.parametrize("bad", [22050.5, 0, -16000, float("nan"), "16000"])
def test_convert_audio_rejects_bad_rates(bad):
    with pytest.raises(ValueError, match="from_rate"):
        convert_audio(torch.randn(1, 100), bad, 16000, 1)


# ----------------------------------------------------------------------------- normalisation


def test_peak_normalises_to_headroom_and_only_scales_down_without_normalize():
    quiet = 0.1 * torch.randn(2, 1000)
    assert normalize_audio(quiet).abs().max().item() == pytest.approx(PEAK_1DB, rel=1e-6)
    assert normalize_audio(quiet, peak_clip_headroom_db=6).abs().max().item() == pytest.approx(10 ** (-6 / 20), rel=1e-6)
    assert torch.equal(normalize_audio(quiet, normalize=False), quiet)
    loud = quiet / quiet.abs().max() * 2
    assert normalize_audio(loud, normalize=False).abs().max().item() == pytest.approx(PEAK_1DB, rel=1e-6)


def test_peak_and_rms_leave_silence_untouched():
    silence = torch.zeros(1, 100)
    for strategy in ("peak", "rms"):
        out = normalize_audio(silence, strategy=strategy)
        assert torch.equal(out, silence)


def test_clip_clamps_at_headroom_and_keeps_the_rest():
    wav = torch.tensor([[0.1, -0.5, 0.95, -2.0]])
    out = normalize_audio(wav, strategy="clip")
    assert torch.allclose(out, torch.tensor([[0.1, -0.5, PEAK_1DB, -PEAK_1DB]]))


def test_rms_targets_the_channel_average_and_clips(capsys):
    wav = 0.01 * torch.randn(2, 4000)
    out = normalize_audio(wav, strategy="rms")
    assert out.mean(0).pow(2).mean().sqrt().item() == pytest.approx(10 ** (-18 / 20), rel=1e-4)
    assert torch.equal(normalize_audio(wav, strategy="rms", normalize=False), wav)
    spiky = torch.zeros(1, 4000)
    spiky[0, ::400] = 0.01  # sparse clicks: the rms target pushes the peaks far above 1
    out = normalize_audio(spiky, strategy="rms", log_clipping=True, stem_name="clicks")
    assert out.abs().max().item() == 1.0
    assert "CLIPPING clicks" in capsys.readouterr().err


def test_loudness_hits_the_target():
    wav = sine(440, 32000, seconds=2, amplitude=0.05) + 0.01 * torch.randn(32000 * 2)
    out = normalize_audio(wav[None], strategy="loudness", sample_rate=32000)
    assert integrated_loudness(out, 32000) == pytest.approx(-14, abs=0.5)
    out = normalize_audio(wav[None], strategy="loudness", sample_rate=32000, loudness_headroom_db=23)
    assert integrated_loudness(out, 32000) == pytest.approx(-23, abs=0.5)


def test_loudness_compressor_soft_clips_and_floor_keeps_quiet_audio():
    wav = sine(440, 16000, amplitude=0.05)[None]
    plain = normalize_loudness(wav, 16000, loudness_headroom_db=-6)  # +6 LUFS target: peaks above 1
    out = normalize_loudness(wav, 16000, loudness_headroom_db=-6, loudness_compressor=True)
    assert plain.abs().max().item() > 1.0 and out.abs().max().item() < 1.0
    assert torch.allclose(out, torch.tanh(plain))
    whisper = 1e-4 * torch.randn(1, 16000)  # RMS under the 2e-3 energy floor
    assert torch.equal(normalize_loudness(whisper, 16000), whisper)


def test_loudness_without_sample_rate_and_unknown_strategies_raise():
    with pytest.raises(ValueError, match="sample_rate"):
        normalize_audio(torch.randn(1, 100), strategy="loudness")
    with pytest.raises(ValueError, match="'peak', 'clip', 'rms', 'loudness', 'none'"):
        normalize_audio(torch.randn(1, 100), strategy="lufs")


@pytest.mark.parametrize("strategy", [None, "", "none"])
def test_no_strategy_is_identity_but_refuses_out_of_range_audio(strategy):
    wav = 0.5 * torch.rand(1, 100)
    assert torch.equal(normalize_audio(wav, strategy=strategy), wav)
    with pytest.raises(ValueError, match="within"):
        normalize_audio(wav * 4, strategy=strategy)


# ----------------------------------------------------------------------------- pcm


def test_f32_pcm_divides_by_2_pow_15():
    pcm = torch.tensor([-32768, 0, 16384, 32767], dtype=torch.int16)
    assert torch.equal(f32_pcm(pcm), torch.tensor([-1.0, 0.0, 0.5, 32767 / 32768]))
    floats = torch.randn(3)
    assert f32_pcm(floats) is floats
    with pytest.raises(TypeError, match="int16"):
        f32_pcm(torch.zeros(3, dtype=torch.int32))


def test_i16_pcm_rounds_and_falls_back_to_32767_scale_at_full_scale():
    assert torch.equal(i16_pcm(torch.tensor([-1.0, 0.5, 0.25 / 32768])), torch.tensor([-32768, 16384, 0], dtype=torch.int16))
    assert torch.equal(i16_pcm(torch.tensor([1.0, -1.0])), torch.tensor([32767, -32767], dtype=torch.int16))
    pcm = torch.tensor([1, -2], dtype=torch.int16)
    assert i16_pcm(pcm) is pcm
    assert torch.equal(i16_pcm(f32_pcm(pcm)), pcm)
    with pytest.raises(ValueError, match="within"):
        i16_pcm(torch.tensor([1.5]))
