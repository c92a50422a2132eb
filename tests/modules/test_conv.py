"""Weight-normalised convolutions: the inference cache of the effective kernel never goes stale."""
import torch

from audiocraft.modules.conv import WeightNormConv1d, WeightNormConvTranspose1d


def _reference(conv):
    v, g = conv.weight_v.detach(), conv.weight_g.detach()
    norm = v.reshape(v.shape[0], -1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
    return v * g / norm


def test_cached_kernel_follows_every_change_of_the_parameters():
    torch.manual_seed(0)
    for conv in (WeightNormConv1d(3, 5, 4), WeightNormConvTranspose1d(3, 5, 4, stride=2)):
        x = torch.randn(2, 3, 16)
        with torch.no_grad():
            first = conv(x)
            assert conv.normalized_weight() is conv.normalized_weight()  # reused, not rebuilt
            torch.testing.assert_close(conv.normalized_weight(), _reference(conv))
            conv.weight_g.mul_(2.0)  # in place, as an optimizer step
            torch.testing.assert_close(conv(x) - conv.bias.view(1, -1, 1),
                                       2 * (first - conv.bias.view(1, -1, 1)))
            other = type(conv)(3, 5, 4, **({} if isinstance(conv, WeightNormConv1d) else {"stride": 2}))
            conv.load_state_dict(other.state_dict())
            torch.testing.assert_close(conv(x), other(x))
            conv.double()  # new storage and dtype
            assert conv.normalized_weight().dtype == torch.float64
            conv.float()
        out = conv(x)  # with autograd: rebuilt every call, gradients reach weight_g and weight_v
        out.sum().backward()
        assert conv.weight_g.grad is not None and conv.weight_v.grad is not None
