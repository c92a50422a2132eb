"""Mel filterbanks and spectrograms: analytic properties and torchaudio's conventions."""
import math
import warnings

import numpy as np
import pytest
import torch

from audiocraft.modules.spectrogram import (MelScale, MelSpectrogram, Spectrogram, hz_to_mel, mel_filterbank,
                                            mel_to_hz)


def _centres(sample_rate, n_mels, f_min, f_max, mel_scale):
    """Centre frequencies (Hz) of the mel filters, from the definition."""
    mels = np.linspace(hz_to_mel(f_min, mel_scale), hz_to_mel(f_max, mel_scale), n_mels + 2)
    return mel_to_hz(torch.tensor(mels, dtype=torch.float64), mel_scale).numpy()


def test_mel_scales_known_points_and_round_trip():
    assert hz_to_mel(1000.0, "htk") == pytest.approx(1000.0, abs=0.02)  # the HTK scale is anchored at 1 kHz
    assert hz_to_mel(0.0, "htk") == 0.0
    assert hz_to_mel(1000.0, "slaney") == pytest.approx(15.0)  # 3 mel per 200 Hz up to 1 kHz
    assert hz_to_mel(500.0, "slaney") == pytest.approx(7.5)
    assert hz_to_mel(6400.0, "slaney") == pytest.approx(15.0 + 27.0)  # 27 mel per factor 6.4 above 1 kHz
    freqs = torch.tensor([0.0, 20.0, 440.0, 999.0, 1000.0, 4000.0, 15000.0], dtype=torch.float64)
    for scale in ("htk", "slaney"):
        mels = torch.tensor([hz_to_mel(float(f), scale) for f in freqs], dtype=torch.float64)
        torch.testing.assert_close(mel_to_hz(mels, scale), freqs, atol=1e-6, rtol=1e-9)


def test_triangles_peak_at_centres_and_partition_unity():
    sample_rate, n_fft, n_mels, f_min, f_max = 16000, 2 ** 15, 12, 100.0, 7000.0
    fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max).double()  # [F, n_mels]
    assert fb.shape == (n_fft // 2 + 1, n_mels)
    bins = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    spacing = bins[1]
    points = _centres(sample_rate, n_mels, f_min, f_max, "htk")
    for m in range(n_mels):
        column = fb[:, m].numpy()
        assert abs(bins[column.argmax()] - points[m + 1]) <= spacing
        assert column.max() == pytest.approx(1.0, abs=5e-3)  # the peak falls between bins
        support = bins[column > 0]
        assert support.min() >= points[m] - spacing and support.max() <= points[m + 2] + spacing
    # Between the first and last centre, neighbouring triangles add up to 1.
    inside = (bins > points[1]) & (bins < points[-2])
    torch.testing.assert_close(fb[inside].sum(1), torch.ones(int(inside.sum()), dtype=torch.float64), atol=1e-4,
                               rtol=0)


def test_slaney_norm_gives_unit_area():
    sample_rate, n_fft = 16000, 2 ** 15
    fb = mel_filterbank(sample_rate, n_fft, 10, 0.0, None, norm="slaney", mel_scale="slaney").double()
    spacing = (sample_rate // 2) / (n_fft // 2)
    area = fb.sum(0) * spacing  # integral over Hz of each triangle (height 2 / width)
    torch.testing.assert_close(area, torch.ones(10, dtype=torch.float64), atol=2e-3, rtol=0)


def test_filterbank_matches_torchaudio_conventions():
    """transformers' ``mel_filter_bank`` (float64) is documented to reproduce torchaudio's melscale_fbanks."""
    audio_utils = pytest.importorskip("transformers.audio_utils")
    cases = [(16000, 400, 40, 0.0, None, None, "htk"), (32000, 1024, 64, 64.0, None, None, "htk"),
             (22050, 2048, 80, 20.0, 8000.0, "slaney", "slaney"), (24000, 512, 32, 0.0, 9000.0, None, "slaney")]
    for sample_rate, n_fft, n_mels, f_min, f_max, norm, scale in cases:
        ours = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, norm, scale)
        theirs = audio_utils.mel_filter_bank(n_fft // 2 + 1, n_mels, f_min, f_max or sample_rate // 2, sample_rate,
                                             norm, scale)
        assert ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5 * float(np.abs(theirs).max()))


def test_filterbank_errors_and_empty_filter_warning():
    with pytest.raises(ValueError, match="norm"):
        mel_filterbank(16000, 400, 40, norm="area")
    with pytest.raises(ValueError, match="mel_scale"):
        mel_filterbank(16000, 400, 40, mel_scale="bark")
    with pytest.raises(ValueError, match="f_min"):
        mel_filterbank(16000, 400, 40, f_min=5000.0, f_max=4000.0)
    with pytest.warns(UserWarning, match="empty"):
        mel_filterbank(32000, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mel_filterbank(16000, 400, 40)


def test_spectrogram_matches_stft_and_normalisations():
    wav = torch.randn(2, 3, 1000)
    raw = Spectrogram(n_fft=256, hop_length=64, power=None)(wav)
    assert raw.shape == (2, 3, 129, 1 + 1000 // 64) and raw.is_complex()
    window = torch.hann_window(256)
    expected = torch.stft(wav.reshape(6, 1000), 256, 64, 256, window, center=True, pad_mode="reflect",
                          return_complex=True).reshape(2, 3, 129, -1)
    torch.testing.assert_close(raw, expected)
    power = Spectrogram(n_fft=256, hop_length=64)(wav)
    torch.testing.assert_close(power, raw.abs() ** 2)
    by_window = Spectrogram(n_fft=256, hop_length=64, power=1.0, normalized=True)(wav)
    torch.testing.assert_close(by_window, raw.abs() / window.pow(2).sum().sqrt())
    by_length = Spectrogram(n_fft=256, hop_length=64, power=1.0, normalized="frame_length")(wav)
    torch.testing.assert_close(by_length, raw.abs() / math.sqrt(256))
    not_centred = Spectrogram(n_fft=256, win_length=200, hop_length=100, center=False)(wav)
    assert not_centred.shape[-1] == 1 + (1000 - 256) // 100
    with pytest.raises(ValueError, match="samples"):
        Spectrogram(n_fft=256, center=False)(torch.randn(1, 100))
    with pytest.raises(ValueError, match="win_length"):
        Spectrogram(n_fft=256, win_length=512)


def test_mel_spectrogram_of_sine_peaks_at_right_band():
    sample_rate, n_fft, n_mels = 16000, 1024, 64
    transform = MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=256, n_mels=n_mels)
    assert set(transform.state_dict()) == {"spectrogram.window", "mel_scale.fb"}
    t = torch.arange(sample_rate) / sample_rate
    centres = _centres(sample_rate, n_mels, 0.0, sample_rate / 2, "htk")[1:-1]
    for freq in (300.0, 1000.0, 4321.0):
        mel = transform(torch.sin(2 * math.pi * freq * t)[None, None])  # [1, 1, n_mels, frames]
        assert mel.shape == (1, 1, n_mels, 1 + sample_rate // 256)
        band = int(mel[0, 0].mean(-1).argmax())
        assert band == int(np.abs(centres - freq).argmin())
    # Each item is transformed independently.
    wav = torch.randn(3, 2, 4000)
    batched = transform(wav)
    torch.testing.assert_close(batched[1, 1], transform(wav[1, 1]), rtol=1e-5, atol=1e-5)


def test_mel_scale_rejects_wrong_frequency_axis():
    scale = MelScale(n_mels=10, sample_rate=16000, n_stft=201)
    with pytest.raises(ValueError, match="n_fft"):
        scale(torch.rand(1, 100, 5))
