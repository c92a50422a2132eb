"""Spectral losses, L1 and SI-SNR."""
import math

import pytest
import torch

from audiocraft.losses import (SISNR, FramedMelSpectrogram, MelSpectrogramL1Loss, MRSTFTLoss,
                               MultiScaleMelSpectrogramLoss, l1_loss, si_snr)
from audiocraft.solvers.builders import get_loss

SAMPLE_RATE = 16000


def _signals(batch=2, channels=1, length=4000):
    t = torch.arange(length) / SAMPLE_RATE
    x = torch.sin(2 * math.pi * 440 * t).expand(batch, channels, length) + 0.1 * torch.randn(batch, channels, length)
    y = x + 0.05 * torch.randn(batch, channels, length)
    return x, y


@pytest.fixture(scope="module")
def spectral_losses():
    return {
        "mel": MelSpectrogramL1Loss(SAMPLE_RATE, n_fft=512, hop_length=128, win_length=512, n_mels=40),
        "msspec": MultiScaleMelSpectrogramLoss(SAMPLE_RATE, range_start=6, range_end=10, n_mels=40),
        "msspec_normalized": MultiScaleMelSpectrogramLoss(SAMPLE_RATE, n_mels=64, f_min=64, normalized=True,
                                                          alphas=False),
    }


@pytest.mark.parametrize("name", ["mel", "msspec", "msspec_normalized"])
def test_spectral_losses_zero_positive_symmetric_differentiable(spectral_losses, name):
    loss_fn = spectral_losses[name]
    x, y = _signals()
    assert loss_fn(x, x).item() == 0.0
    value = loss_fn(x, y)
    assert value.dim() == 0 and value.item() > 0
    torch.testing.assert_close(loss_fn(y, x), value)
    assert loss_fn(x, x + 0.5 * torch.randn_like(x)) > value  # more noise, larger loss
    estimate = y.clone().requires_grad_(True)
    loss_fn(estimate, x).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0


def test_msspec_weights_and_normalisation():
    with_alphas = MultiScaleMelSpectrogramLoss(SAMPLE_RATE, range_start=6, range_end=8, n_mels=16)
    assert with_alphas.alphas == pytest.approx([math.sqrt(63), math.sqrt(127)])
    plain = MultiScaleMelSpectrogramLoss(SAMPLE_RATE, range_start=6, range_end=8, n_mels=16, alphas=False)
    assert plain.alphas == [1.0, 1.0] and plain.total == 4.0
    x, y = _signals()
    manual = sum(torch.nn.functional.l1_loss(lin(x), lin(y)) + torch.nn.functional.mse_loss(log(x), log(y))
                 for lin, log in zip(plain.l1s, plain.l2s))
    torch.testing.assert_close(plain(x, y), manual)
    with pytest.raises(ValueError, match="range_start"):
        MultiScaleMelSpectrogramLoss(SAMPLE_RATE, range_start=8, range_end=8)


def test_mrstft_matches_its_definition_and_weighs_upper_harmonics():
    loss_fn = MRSTFTLoss(n_ffts=(256, 512), hop_lengths=(64, 128), win_lengths=(200, 512), factor_sc=0.3,
                         factor_mag=0.7)
    x, y = _signals()
    assert loss_fn(x, x).item() == 0.0
    expected = 0.0
    for n_fft, hop, win in ((256, 64, 200), (512, 128, 512)):
        def magnitude(signal):
            spec = torch.stft(signal.reshape(-1, signal.shape[-1]), n_fft, hop, win, torch.hann_window(win),
                              return_complex=True)
            return spec.abs().clamp(min=math.sqrt(1e-7))
        est, ref = magnitude(y), magnitude(x)
        eps = torch.finfo(torch.float32).eps
        expected += 0.3 * torch.linalg.norm(ref - est) / (eps + torch.linalg.norm(ref)) / 2
        expected += 0.7 * ((eps + ref).log() - (eps + est).log()).abs().mean() / 2
    torch.testing.assert_close(loss_fn(y, x), expected, rtol=1e-4, atol=1e-6)
    estimate = y.clone().requires_grad_(True)
    loss_fn(estimate, x).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0

    # Two damages of a harmonic tone: losing harmonics 4-19, or a weaker fundamental with the same L1 error.
    # L1 ranks them alike; the log-magnitude loss counts the lost upper harmonics far more.
    t = torch.arange(8000) / SAMPLE_RATE
    partials = [torch.sin(2 * math.pi * 220 * k * t) / k ** 2 for k in range(1, 20)]
    rich = sum(partials).view(1, 1, -1)
    dull = sum(partials[:3]).view(1, 1, -1)
    scale = 1 - float(l1_loss(dull, rich) / partials[0].abs().mean())
    weak = (rich - (1 - scale) * partials[0]).view(1, 1, -1)
    assert float(l1_loss(weak, rich)) == pytest.approx(float(l1_loss(dull, rich)), rel=1e-3)
    loss_fn = MRSTFTLoss()
    assert loss_fn(dull, rich) > 5 * loss_fn(weak, rich)
    # several channels are separate signals
    stereo_x, stereo_y = _signals(channels=2)
    halves = [loss_fn(stereo_x[:, c:c + 1], stereo_y[:, c:c + 1]) for c in range(2)]
    assert loss_fn(stereo_x, stereo_y) > 0 and min(halves) > 0


def test_mrstft_is_built_from_the_config_section_and_checks_arguments():
    from omegaconf import OmegaConf
    cfg = OmegaConf.create({"mrstft": {"factor_sc": 0.5, "factor_mag": 0.5, "normalized": False}})
    loss_fn = get_loss("mrstft", cfg)
    assert isinstance(loss_fn, MRSTFTLoss) and loss_fn.factor_sc == 0.5 and len(loss_fn.resolutions) == 3
    with pytest.raises(ValueError, match="one entry per resolution"):
        MRSTFTLoss(n_ffts=(512,), hop_lengths=(128, 64), win_lengths=(512,))
    with pytest.raises(ValueError, match="window length"):
        MRSTFTLoss(n_ffts=(256,), hop_lengths=(64,), win_lengths=(512,))
    with pytest.raises(ValueError, match="unknown window"):
        MRSTFTLoss(window="nope")
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(torch.randn(1, 1, 4000), torch.randn(1, 1, 3999))
    with pytest.raises(ValueError, match="too short"):
        loss_fn(torch.randn(1, 1, 1000), torch.randn(1, 1, 1000))
    with pytest.raises(ValueError, match="hop"):
        MRSTFTLoss(hop_lengths=(0, 240, 50))


@pytest.mark.parametrize("length", [1000, 1024, 1100, 3333])
def test_framed_mel_has_one_frame_per_hop(length):
    transform = FramedMelSpectrogram(n_fft=256, hop_length=64, n_mels=20, sample_rate=SAMPLE_RATE)
    out = transform(torch.randn(2, 3, length))
    assert out.shape == (2, 3 * 20, math.ceil(length / 64))
    floor = FramedMelSpectrogram(n_fft=256, hop_length=64, n_mels=20, sample_rate=SAMPLE_RATE, floor_level=1e-5)
    assert floor(torch.zeros(1, 1, length)).min().item() == pytest.approx(-5.0)  # log10 of the floor


def test_shape_mismatch_is_reported(spectral_losses):
    with pytest.raises(ValueError, match="same shape"):
        spectral_losses["mel"](torch.randn(1, 1, 4000), torch.randn(1, 1, 3999))
    with pytest.raises(ValueError, match="same shape"):
        l1_loss(torch.randn(2, 1, 10), torch.randn(2, 2, 10))


def test_l1_loss():
    x = torch.zeros(1, 1, 4)
    y = torch.tensor([[[1.0, -1.0, 2.0, 0.0]]])
    assert l1_loss(x, y).item() == pytest.approx(1.0)
    assert l1_loss(y, y).item() == 0.0


def _with_noise_at_snr(x: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``x + n`` with ``n`` zero-mean, orthogonal to the centred ``x``, and ``||x||^2 / ||n||^2 = 10^(snr/10)``."""
    xc = x - x.mean(-1, keepdim=True)
    noise = torch.randn_like(x, dtype=torch.float64)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * xc).sum(-1, keepdim=True) / xc.pow(2).sum(-1, keepdim=True) * xc
    scale = (xc.pow(2).sum(-1, keepdim=True) / noise.pow(2).sum(-1, keepdim=True) / 10 ** (snr_db / 10)).sqrt()
    return x + scale * noise


def test_si_snr_known_snr_and_scale_invariance():
    x = torch.randn(3, 1, 8000, dtype=torch.float64)
    for snr in (-5.0, 0.0, 12.0, 30.0):
        estimate = _with_noise_at_snr(x, snr)
        torch.testing.assert_close(si_snr(estimate.float(), x.float()), torch.full((3,), snr), atol=0.1, rtol=0)
    x = x.float()
    # A scaled (or shifted: signals are centred) copy is a perfect estimate; the residual is then
    # only float32 rounding, and the epsilon (eps * T) caps the ratio at about 60 dB here.
    assert (si_snr(0.3 * x, x) > 50).all()
    assert (si_snr(x + 0.7, x) > 50).all()
    assert (si_snr(0.3 * x, x) > si_snr(x + 1e-2 * torch.randn_like(x), x) + 15).all()
    noisy = x + 0.1 * torch.randn_like(x)
    torch.testing.assert_close(si_snr(5.0 * noisy, x), si_snr(noisy, x), atol=1e-3, rtol=0)
    stereo = torch.randn(2, 2, 1000)
    assert si_snr(stereo + 0.1 * torch.randn_like(stereo), stereo).shape == (2,)


def test_sisnr_loss_is_negative_si_snr_and_differentiable():
    x = torch.randn(2, 1, 4000)
    y = x + 0.2 * torch.randn_like(x)
    whole = SISNR(SAMPLE_RATE, segment=None)
    torch.testing.assert_close(whole(y, x), -si_snr(y, x).mean())
    assert whole(y, x) < whole(x + torch.randn_like(x), x)  # better estimate, lower loss
    estimate = y.clone().requires_grad_(True)
    SISNR(SAMPLE_RATE, segment=0.1)(estimate, x).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0


@pytest.mark.parametrize("length", [230, 250, 99])
def test_sisnr_segments_with_partial_last_frame(length):
    sample_rate, frame, stride = 100, 100, 50  # segment 1 s, 50 % overlap
    x = torch.randn(2, 2, length)
    y = x + 0.3 * torch.randn_like(x)
    loss = SISNR(sample_rate, segment=1.0, overlap=0.5)(y, x)
    n_frames = math.ceil(length / stride)
    pad = (n_frames - 1) * stride + frame - length
    xp = torch.nn.functional.pad(x, (0, pad))
    yp = torch.nn.functional.pad(y, (0, pad))
    eps = torch.finfo(torch.float32).eps * frame
    values = []
    for k in range(n_frames):
        ref = xp[..., k * stride:k * stride + frame]
        est = yp[..., k * stride:k * stride + frame]
        ref = ref - ref.mean(-1, keepdim=True)
        est = est - est.mean(-1, keepdim=True)
        target = (ref * est).sum(-1, keepdim=True) * ref / (eps + ref.pow(2).sum(-1, keepdim=True))
        values.append(10 * torch.log10((eps + target.pow(2).sum(-1)) / (eps + (est - target).pow(2).sum(-1))))
    torch.testing.assert_close(loss, -torch.stack(values).mean(), atol=1e-4, rtol=1e-5)


def test_sisnr_argument_errors():
    with pytest.raises(ValueError, match="overlap"):
        SISNR(overlap=1.0)
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        SISNR()(torch.randn(2, 100), torch.randn(2, 100))
    with pytest.raises(ValueError, match="same shape"):
        si_snr(torch.randn(2, 1, 100), torch.randn(2, 1, 101))
