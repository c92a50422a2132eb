"""MS-STFT discriminator, adversarial criteria, feature matching and the training wrapper."""
import math

import pytest
import torch

from audiocraft.adversarial import (AdversarialLoss, FeatureMatchingLoss, MultiScaleSTFTDiscriminator,
                                    get_adv_criterion, get_fake_criterion, get_real_criterion)

SMALL = dict(n_ffts=[128, 256, 64], hop_lengths=[32, 64, 16], win_lengths=[128, 256, 64])


def _freq_after_strides(n_freqs: int, n_strided: int, kernel: int = 9, stride: int = 2) -> int:
    for _ in range(n_strided):
        n_freqs = (n_freqs + 2 * ((kernel - 1) // 2) - kernel) // stride + 1
    return n_freqs


@pytest.mark.parametrize("length", [256, 1000, 2049])
def test_discriminator_output_shapes(length):
    disc = MultiScaleSTFTDiscriminator(filters=4, out_channels=2, **SMALL)
    logits, fmaps = disc(torch.randn(3, 1, length))
    assert disc.num_discriminators == 3 and len(logits) == len(fmaps) == 3
    for logit, fmap, n_fft, hop in zip(logits, fmaps, SMALL["n_ffts"], SMALL["hop_lengths"]):
        frames = 1 + (length - n_fft) // hop
        assert logit.shape == (3, 2, frames, _freq_after_strides(n_fft // 2 + 1, 3))
        assert len(fmap) == 5  # first conv, three dilated strided convs, last conv
        assert fmap[0].shape == (3, 4, frames, n_fft // 2 + 1)
        assert fmap[-1].shape[-1] == logit.shape[-1]


def test_state_dict_names_follow_audiocraft():
    keys = set(MultiScaleSTFTDiscriminator(filters=4, **SMALL).state_dict())
    assert "discriminators.0.convs.0.conv.weight" in keys  # first conv has no weight norm
    assert {"discriminators.2.convs.1.conv.weight_g", "discriminators.2.convs.1.conv.weight_v",
            "discriminators.1.conv_post.conv.weight_g", "discriminators.0.spec_transform.window"} <= keys


def test_channels_and_length_checks():
    stereo = MultiScaleSTFTDiscriminator(filters=4, in_channels=2, **SMALL)
    logits, _ = stereo(torch.randn(2, 2, 512))
    assert logits[0].shape[0] == 2
    separate = MultiScaleSTFTDiscriminator(filters=4, sep_channels=True, **SMALL)
    logits, _ = separate(torch.randn(2, 2, 512))
    assert logits[0].shape[0] == 4  # each channel judged as its own item
    with pytest.raises(ValueError, match="in_channels"):
        stereo(torch.randn(2, 1, 512))
    with pytest.raises(ValueError, match="n_fft"):
        stereo(torch.randn(2, 2, 100))
    with pytest.raises(ValueError, match="one entry per"):
        MultiScaleSTFTDiscriminator(filters=4, n_ffts=[128], hop_lengths=[32, 16], win_lengths=[128])


def test_criteria_on_known_values():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    expected = {  # (generator, real, fake)
        "hinge": (-0.2, 1.2, 1.4),
        "hinge2": (1.2, 1.2, 1.4),
        "mse": (3.3, 3.3, 2.7),
    }
    for loss_type, (gen, real, fake) in expected.items():
        assert get_adv_criterion(loss_type)(x).item() == pytest.approx(gen)
        assert get_real_criterion(loss_type)(x).item() == pytest.approx(real)
        assert get_fake_criterion(loss_type)(x).item() == pytest.approx(fake)
    assert get_adv_criterion("hinge")(torch.empty(0)).item() == 0.0
    with pytest.raises(ValueError, match="loss_type"):
        get_adv_criterion("wasserstein")


def test_feature_matching():
    fmap = [torch.randn(2, 3, 4, 5), torch.randn(2, 6, 4, 3)]
    loss = FeatureMatchingLoss()
    assert loss(fmap, [f.clone() for f in fmap]).item() == 0.0
    shifted = [fmap[0] + 1.0, fmap[1] + 3.0]
    assert loss(shifted, fmap).item() == pytest.approx(2.0)  # mean of the per-map L1 distances 1 and 3
    assert FeatureMatchingLoss(normalize=False)(shifted, fmap).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="shape"):
        loss([fmap[0]], [fmap[1]])


def _wrapper(disc, lr=1e-3):
    return AdversarialLoss(disc, torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9)),
                           get_adv_criterion("hinge"), get_real_criterion("hinge"), get_fake_criterion("hinge"),
                           FeatureMatchingLoss())


def test_generator_losses_reach_fake_but_not_adversary():
    disc = MultiScaleSTFTDiscriminator(filters=4, **SMALL)
    adv = _wrapper(disc)
    real = torch.randn(2, 1, 512)
    fake = torch.randn(2, 1, 512, requires_grad=True)
    adv_loss, feat_loss = adv(fake, real)
    assert adv_loss.dim() == 0 and feat_loss.item() > 0
    (adv_loss + feat_loss).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters())  # restored after the forward
    _, same = adv(real, real)
    assert same.item() == 0.0


def _batch(n, length=1024, sample_rate=8000.0):
    t = torch.arange(length) / sample_rate
    freqs = 200 + 1500 * torch.rand(n, 1, 1)
    phases = 2 * math.pi * torch.rand(n, 1, 1)
    real = 0.5 * torch.sin(2 * math.pi * freqs * t + phases)
    fake = 0.5 / math.sqrt(2) * torch.randn(n, 1, length)  # same RMS as the sines
    return fake, real


def _accuracy(disc, fake, real):
    with torch.no_grad():
        logits_fake, _ = disc(fake)
        logits_real, _ = disc(real)
    score_fake = torch.stack([lg.mean(dim=(1, 2, 3)) for lg in logits_fake]).mean(0)
    score_real = torch.stack([lg.mean(dim=(1, 2, 3)) for lg in logits_real]).mean(0)
    return 0.5 * ((score_real > 0).float().mean() + (score_fake < 0).float().mean()).item()


def test_discriminator_learns_sines_versus_noise():
    torch.manual_seed(3)
    disc = MultiScaleSTFTDiscriminator(filters=4, n_ffts=[128, 64], hop_lengths=[32, 16], win_lengths=[128, 64])
    adv = _wrapper(disc, lr=2e-3)
    held_out = _batch(16)
    accuracy_before = _accuracy(disc, *held_out)
    calls = []

    def before_step(module):
        calls.append(module)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    losses = []
    for step in range(25):
        fake, real = _batch(8)
        losses.append(adv.train_adv(fake, real, before_step=before_step).item())
    assert len(calls) == 25 and calls[0] is disc
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:3]) / 3  # hinge loss starts at 2 (logits ~ 0)
    accuracy_after = _accuracy(disc, *held_out)
    assert accuracy_after >= 0.9 and accuracy_after > accuracy_before


def test_train_adv_needs_optimizer_and_state_round_trip():
    disc = MultiScaleSTFTDiscriminator(filters=2, n_ffts=[64], hop_lengths=[16], win_lengths=[64])
    no_opt = AdversarialLoss(disc, None, get_adv_criterion("mse"), get_real_criterion("mse"),
                             get_fake_criterion("mse"))
    fake, real = _batch(2, length=256)
    with pytest.raises(ValueError, match="optimizer"):
        no_opt.train_adv(fake, real)
    assert no_opt.discriminator_loss(fake, real).requires_grad
    adv = _wrapper(disc)
    adv.train_adv(fake, real)
    state = adv.state_dict()
    assert "optimizer" in state and "adversary.discriminators.0.convs.0.conv.weight" in state
    clone_disc = MultiScaleSTFTDiscriminator(filters=2, n_ffts=[64], hop_lengths=[16], win_lengths=[64])
    clone = _wrapper(clone_disc)
    clone.load_state_dict(state)
    assert clone.optimizer.state_dict()["state"].keys() == adv.optimizer.state_dict()["state"].keys()
    for a, b in zip(disc.parameters(), clone_disc.parameters()):
        torch.testing.assert_close(a, b)
