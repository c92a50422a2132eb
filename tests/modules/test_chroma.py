"""Chroma filterbank (librosa.filters.chroma equivalent) and ChromaExtractor."""
import math

import numpy as np
import pytest
import torch

from audiocraft.modules.chroma import PITCH_CLASSES, ChromaExtractor, chroma_filterbank

SR = 32000


def _tones(freqs, seconds: float = 1.0, sample_rate: int = SR) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    wav = sum(torch.sin(2 * math.pi * f * t) for f in freqs) / len(freqs)
    return wav.float()[None, None]  # [1, 1, T]


def _note_hz(midi: int) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


# librosa's documented output of `librosa.filters.chroma(sr=22050, n_fft=4096)` (and with
# octwidth=None): first two and last two columns of rows 0, 1, -2, -1. These docstring values
# were produced before the base_c rotation became the default, i.e. they are the A-based rows.
LIBROSA_DOC = {
    "default": [[1.689e-05, 3.024e-04, 4.639e-17, 5.327e-17],
                [1.716e-05, 2.652e-04, 2.674e-25, 3.176e-25],
                [1.578e-05, 3.619e-04, 8.577e-06, 9.205e-06],
                [1.643e-05, 3.355e-04, 1.474e-10, 1.636e-10]],
    "flat": [[3.036e-01, 2.604e-01, 2.445e-16, 2.809e-16],
             [3.084e-01, 2.283e-01, 1.409e-24, 1.675e-24],
             [2.836e-01, 3.116e-01, 4.520e-05, 4.854e-05],
             [2.953e-01, 2.888e-01, 7.768e-10, 8.629e-10]],
}


@pytest.mark.parametrize("kind", ["default", "flat"])
def test_filterbank_matches_published_librosa_values(kind):
    octwidth = 2.0 if kind == "default" else None
    fb = chroma_filterbank(22050, 4096, octwidth=octwidth, base_c=False)
    got = fb[[0, 1, -2, -1]][:, [0, 1, -2, -1]].double()
    expected = torch.tensor(LIBROSA_DOC[kind], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=0.0)  # docstring keeps 4 digits
    # base_c=True only rotates the rows so that row 0 is C (3 semitones above A).
    assert torch.equal(chroma_filterbank(22050, 4096, octwidth=octwidth), torch.roll(fb, -3, dims=0))


@pytest.mark.parametrize("n_fft", [512, 1000, 4096])
def test_filterbank_shape_and_column_normalisation(n_fft):
    fb = chroma_filterbank(SR, n_fft)
    assert fb.shape == (12, n_fft // 2 + 1) and fb.dtype == torch.float32
    assert bool((fb >= 0).all())
    # Without octave weighting every FFT-bin column has unit L2 norm ...
    flat = chroma_filterbank(SR, n_fft, octwidth=None).double()
    torch.testing.assert_close(flat.norm(dim=0), torch.ones(n_fft // 2 + 1, dtype=torch.float64))
    # ... and the octave weighting scales column k by a Gaussian of its octave above A0 = 27.5 Hz
    # (centre 5 octaves, half-width 2 octaves).
    k = np.arange(1, n_fft // 2 + 1)
    octs = np.log2(k * SR / n_fft / 27.5)
    expected = torch.from_numpy(np.exp(-0.5 * ((octs - 5.0) / 2.0) ** 2))
    torch.testing.assert_close(fb[:, 1:].double().norm(dim=0), expected, rtol=1e-5, atol=1e-7)


def test_filterbank_bin_order_starts_at_c():
    fb = chroma_filterbank(SR, 8192, octwidth=None)
    for midi in range(57, 69):  # A3 .. G#4
        column = round(_note_hz(midi) * 8192 / SR)
        assert PITCH_CLASSES[int(fb[:, column].argmax())] == PITCH_CLASSES[midi % 12]


def test_a440_tone_peaks_at_a():
    extractor = ChromaExtractor(SR)
    chroma = extractor(_tones([440.0]))
    assert chroma.shape == (1, extractor.num_frames(SR), 12)
    assert bool((chroma.argmax(dim=-1) == PITCH_CLASSES.index("A")).all())
    # norm=inf: the strongest bin of every frame is exactly 1.
    torch.testing.assert_close(chroma.amax(dim=-1), torch.ones(1, chroma.shape[1]))


def test_c_major_triad_activates_c_e_g():
    chroma = ChromaExtractor(SR)(_tones([_note_hz(60), _note_hz(64), _note_hz(67)]))  # C4 E4 G4
    mean = chroma.mean(dim=1)[0]
    top3 = {PITCH_CLASSES[i] for i in mean.topk(3).indices.tolist()}
    assert top3 == {"C", "E", "G"}
    others = [i for i, name in enumerate(PITCH_CLASSES) if name not in top3]
    assert float(mean[others].max()) < 0.5 * float(mean[[0, 4, 7]].min())


@pytest.mark.parametrize("num_samples", [100, 4095, 4096, 4097, 16000, 32000])
def test_frame_count_formula(num_samples):
    extractor = ChromaExtractor(SR, radix2_exp=12)  # winlen = nfft = 4096, hop = 1024
    assert (extractor.winlen, extractor.nfft, extractor.winhop) == (4096, 4096, 1024)
    wav = torch.randn(2, 1, num_samples)
    chroma = extractor(wav)
    assert chroma.shape == (2, 1 + max(num_samples, 4096) // 1024, 12)
    assert chroma.shape[1] == extractor.num_frames(num_samples)
    assert torch.equal(extractor(wav[:, 0]), chroma)  # [B, T] is accepted too


def test_custom_window_and_hop():
    extractor = ChromaExtractor(16000, nfft=2048, winlen=1024, winhop=160)
    chroma = extractor(torch.randn(1, 1, 8000))
    assert chroma.shape == (1, 1 + 8000 // 160, 12)
    assert extractor.fbanks.shape == (12, 1025)


def test_argmax_gives_one_hot_rows():
    extractor = ChromaExtractor(SR, argmax=True)
    wav = torch.cat([_tones([440.0]), _tones([_note_hz(62)])])  # A4, D4
    chroma = extractor(wav)
    assert bool(((chroma == 0) | (chroma == 1)).all())
    assert torch.equal(chroma.sum(dim=-1), torch.ones(2, chroma.shape[1]))
    assert bool((chroma[0].argmax(-1) == PITCH_CLASSES.index("A")).all())
    assert bool((chroma[1].argmax(-1) == PITCH_CLASSES.index("D")).all())


def test_norm_option_normalises_each_frame():
    chroma = ChromaExtractor(SR, norm=2.0)(torch.randn(1, 1, 16000))
    torch.testing.assert_close(chroma.norm(dim=-1), torch.ones(1, chroma.shape[1]))


def test_spectrogram_is_window_normalised_power():
    """A sine on an exact FFT bin gives power (amp/2 * sum(w))^2 / sum(w^2) there (torchaudio normalized=True)."""
    nfft = 1024
    extractor = ChromaExtractor(SR, radix2_exp=10)  # winlen = nfft = 1024
    k, amp = 40, 0.5
    n = torch.arange(8 * nfft, dtype=torch.float64)
    wav = (amp * torch.cos(2 * math.pi * k * n / nfft)).float()[None]
    spec = extractor._power_spectrogram(wav)
    window = torch.hann_window(nfft, dtype=torch.float64)
    expected = (amp / 2 * window.sum()) ** 2 / window.pow(2).sum()
    middle = spec[0, k, 2:-2].double()
    torch.testing.assert_close(middle, torch.full_like(middle, float(expected)), rtol=1e-4, atol=0.0)


def test_silence_does_not_produce_nan():
    chroma = ChromaExtractor(SR)(torch.zeros(1, 1, 1000))
    assert bool(torch.isfinite(chroma).all()) and float(chroma.abs().max()) == 0.0


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mono"):
        ChromaExtractor(SR)(torch.randn(1, 2, 8000))
    with pytest.raises(ValueError, match="winlen"):
        ChromaExtractor(SR, nfft=1024, winlen=2048)
    with pytest.raises(ValueError, match="sample_rate"):
        chroma_filterbank(0, 1024)
    with pytest.raises(ValueError, match="n_chroma"):
        chroma_filterbank(SR, 1024, n_chroma=0)


def test_extractor_matches_a_plain_numpy_pipeline():
    """Centred reflect-padded frames, periodic Hann, |rfft|^2 / sum(w^2), filterbank, max-normalisation."""
    extractor = ChromaExtractor(SR, radix2_exp=9)  # nfft = winlen = 512, hop = 128
    wav = torch.randn(1, 1, 3000)
    x = np.pad(wav[0, 0].double().numpy(), 256, mode="reflect")
    n = np.arange(512)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 512)
    frames = np.stack([x[i * 128: i * 128 + 512] for i in range(1 + 3000 // 128)])
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2 / np.sum(window ** 2)
    raw = power @ extractor.fbanks.double().numpy().T  # [frames, 12]
    expected = raw / np.maximum(raw.max(axis=-1, keepdims=True), 1e-6)
    torch.testing.assert_close(extractor(wav)[0].double(), torch.from_numpy(expected), rtol=1e-4, atol=1e-5)
