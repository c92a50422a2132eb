"""ITU-R BS.1770 integrated loudness (audiocraft.data.loudness)."""
import cmath
import math

import pytest
import torch

from audiocraft.data.loudness import _biquad, _high_pass, _high_shelf, integrated_loudness


def sine(freq: float, sample_rate: int, seconds: float = 3.0, amplitude: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def response_db(b, a, freq: float, sample_rate: float) -> float:
    z = cmath.exp(-1j * 2 * math.pi * freq / sample_rate)
    return 20 * math.log10(abs((b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)))


# Published BS.1770-4 K-weighting coefficients at 48 kHz (Tables 1 and 2 of the recommendation).
STANDARD_SHELF = ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585])
STANDARD_HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


@pytest.mark.parametrize("freq", [20, 50, 100, 500, 997, 2000, 5000, 10000, 20000])
def test_k_weighting_matches_the_standard_response_at_48k(freq):
    ours = (response_db(*_high_shelf(48000, 4.0, 1500.0, 1 / math.sqrt(2)), freq, 48000)
            + response_db(*_high_pass(48000, 38.0, 0.5), freq, 48000))
    standard = response_db(*STANDARD_SHELF, freq, 48000) + response_db(*STANDARD_HIGHPASS, freq, 48000)
    # torchaudio's (rounded) design parameters, which AudioCraft uses, are within 0.06 dB of the table.
    assert ours == pytest.approx(standard, abs=0.06)


def test_biquad_equals_the_difference_equation():
    x = torch.randn(2, 3000, dtype=torch.float64)
    b, a = _high_pass(16000, 38.0, 0.5)
    y = _biquad(x, b, a)
    xs, ys = x.tolist(), [[0.0] * 3000 for _ in range(2)]
    for c in range(2):
        for n in range(3000):
            acc = b[0] * xs[c][n]
            if n >= 1:
                acc += b[1] * xs[c][n - 1] - a[1] * ys[c][n - 1]
            if n >= 2:
                acc += b[2] * xs[c][n - 2] - a[2] * ys[c][n - 2]
            ys[c][n] = acc
    ref = torch.tensor(ys, dtype=torch.float64)
    assert torch.allclose(y, ref, atol=1e-9)


@pytest.mark.parametrize("sample_rate", [16000, 32000, 48000])
def test_full_scale_997hz_sine_is_about_minus_3_lufs(sample_rate):
    assert integrated_loudness(sine(997, sample_rate), sample_rate) == pytest.approx(-3.01, abs=0.1)


def test_gain_shifts_loudness_by_the_same_number_of_db():
    wav = 0.1 * torch.randn(2, 48000 * 2)
    base = integrated_loudness(wav, 48000)
    louder = integrated_loudness(wav * 10 ** (6 / 20), 48000)
    assert louder - base == pytest.approx(6.0, abs=1e-3)


def test_two_identical_channels_add_3_db_and_mono_1d_equals_one_channel():
    s = sine(997, 32000, amplitude=0.5)
    mono = integrated_loudness(s, 32000)
    assert integrated_loudness(s[None], 32000) == pytest.approx(mono)
    assert integrated_loudness(torch.stack([s, s]), 32000) - mono == pytest.approx(10 * math.log10(2), abs=1e-3)


def test_gating_ignores_silence_and_quiet_parts():
    # Ungated, tripling the length with silence would cost 10 * log10(3) = 4.8 dB; gated, only the
    # few 400 ms blocks straddling the edge (partly silent, still above both gates) count.
    loud = sine(997, 16000, seconds=4, amplitude=0.5)
    with_silence = torch.cat([loud, torch.zeros(16000 * 8)])  # absolute gate (-70 LUFS)
    with_quiet = torch.cat([loud, loud * 0.01, loud * 0.01])  # -40 dB: relative gate (-10 LU)
    reference = integrated_loudness(loud, 16000)
    assert integrated_loudness(with_silence, 16000) == pytest.approx(reference, abs=0.5)
    assert integrated_loudness(with_quiet, 16000) == pytest.approx(reference, abs=0.5)


def test_silence_is_minus_infinity_and_short_signals_are_one_block():
    assert integrated_loudness(torch.zeros(1, 16000), 16000) == float("-inf")
    short = sine(997, 16000, seconds=0.2, amplitude=0.5)  # shorter than a 400 ms block
    assert integrated_loudness(short, 16000) == pytest.approx(integrated_loudness(sine(997, 16000, amplitude=0.5), 16000), abs=0.1)


def test_clamp_filtered_only_matters_for_loud_signals():
    quiet = sine(997, 16000, amplitude=0.3)
    assert integrated_loudness(quiet, 16000, clamp_filtered=True) == pytest.approx(integrated_loudness(quiet, 16000))
    loud = sine(8000 * 0.9, 16000)  # treble is boosted by ~4 dB, so the filtered signal exceeds 1
    assert integrated_loudness(loud, 16000, clamp_filtered=True) < integrated_loudness(loud, 16000) - 0.5


def test_bad_inputs_raise_actionable_errors():
    with pytest.raises(TypeError, match="floating-point"):
        integrated_loudness(torch.zeros(1, 100, dtype=torch.int16), 16000)
    with pytest.raises(ValueError, match=r"\[C, T\]"):
        integrated_loudness(torch.zeros(2, 1, 100), 16000)
    with pytest.raises(ValueError, match="6 channels"):
        integrated_loudness(torch.zeros(6, 100), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        integrated_loudness(torch.zeros(1, 100), 0)
