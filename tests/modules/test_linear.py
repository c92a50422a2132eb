"""The streamed decoding product of modules.linear matches F.linear."""
import pytest
import torch
import torch.nn.functional as F

from audiocraft.modules import linear as linear_module
from audiocraft.modules.linear import MAX_STREAMED_ROWS, Linear, linear


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 3, MAX_STREAMED_ROWS, MAX_STREAMED_ROWS + 1, 9, 64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_f_linear(rows, with_bias, onednn, monkeypatch):
    if onednn and not linear_module._ONEDNN_LINEAR:
        pytest.skip("this PyTorch has no oneDNN linear")
    monkeypatch.setattr(linear_module, "_ONEDNN_LINEAR", onednn)
    generator = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 1, 48, generator=generator)
    weight = torch.randn(40, 48, generator=generator)
    bias = torch.randn(40, generator=generator) if with_bias else None
    with torch.no_grad():
        out = linear(x, weight, bias)
    assert out.shape == (rows, 1, 40) and out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)


def test_gradients_flow_and_module_keeps_nn_linear_state():
    layer = Linear(8, 6)
    assert set(layer.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 8, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    torch.testing.assert_close(layer.bias.grad, torch.full((6,), 2.0))


def test_non_contiguous_input_matches_f_linear():
    x = torch.randn(8, 48).t()[:, :8]  # [48, 8] view with strides (1, 48)
    weight, bias = torch.randn(5, 8), torch.randn(5)
    assert not x.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
