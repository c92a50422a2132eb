"""SEANet building blocks: padding arithmetic, weight norm, causality, LSTM, encoder/decoder shapes."""
import math

import pytest
import torch
from torch.nn import functional as F

from audiocraft.modules.conv import (
    NormConv1d,
    StreamableConv1d,
    StreamableConvTranspose1d,
    get_extra_padding_for_conv1d,
    pad1d,
    unpad1d,
)
from audiocraft.modules.lstm import StreamableLSTM
from audiocraft.modules.seanet import (
    NotStreamableError,
    SEANetDecoder,
    SEANetEncoder,
    SEANetResnetBlock,
    SEANetStreamDecoder,
)


# ----------------------------------------------------------------------------- padding helpers

def test_extra_padding_completes_last_window():
    x = torch.zeros(1, 1, 10)
    # kernel 4, stride 2, total padding 2: 10 + 2 = 12 -> frames at 0,2,..,8 cover 0..11 exactly
    assert get_extra_padding_for_conv1d(x, 4, 2, 2) == 0
    x = torch.zeros(1, 1, 11)
    assert get_extra_padding_for_conv1d(x, 4, 2, 2) == 1


def test_pad1d_reflect_on_short_input_matches_long_input_prefix():
    x = torch.arange(1.0, 4.0).view(1, 1, 3)  # [1, 2, 3]
    out = pad1d(x, (5, 5), mode="reflect")
    assert out.shape[-1] == 13
    # the original samples sit in the middle, untouched
    assert torch.equal(out[..., 5:8], x)
    # constant mode is plain F.pad
    assert torch.equal(pad1d(x, (2, 1), mode="constant"), F.pad(x, (2, 1)))


def test_unpad1d_and_errors():
    x = torch.arange(10.0).view(1, 1, 10)
    assert torch.equal(unpad1d(x, (2, 3)), x[..., 2:7])
    with pytest.raises(ValueError, match="cannot remove"):
        unpad1d(x, (6, 6))
    with pytest.raises(ValueError, match="non-negative"):
        pad1d(x, (-1, 0))


# ----------------------------------------------------------------------------- convolutions

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length", [1, 7, 64, 65])
def test_streamable_conv_output_length(causal, length):
    conv = StreamableConv1d(2, 3, kernel_size=8, stride=4, causal=causal, pad_mode="reflect")
    y = conv(torch.randn(2, 2, length))
    assert y.shape == (2, 3, math.ceil(length / 4))


@pytest.mark.parametrize("causal", [False, True])
def test_transposed_conv_output_length(causal):
    convtr = StreamableConvTranspose1d(3, 2, kernel_size=10, stride=5, causal=causal)
    assert convtr(torch.randn(2, 3, 9)).shape == (2, 2, 45)


def test_weight_norm_parameter_names_and_value():
    conv = NormConv1d(4, 6, kernel_size=3, norm="weight_norm")
    names = [name for name, _ in conv.named_parameters()]
    assert names == ["conv.bias", "conv.weight_g", "conv.weight_v"]
    assert conv.conv.weight_g.shape == (6, 1, 1) and conv.conv.weight_v.shape == (6, 4, 3)
    with torch.no_grad():
        conv.conv.weight_g.mul_(1.7)
    v, g = conv.conv.weight_v, conv.conv.weight_g
    expected_weight = v * g / v.flatten(1).norm(dim=1).view(-1, 1, 1)
    x = torch.randn(2, 4, 20)
    torch.testing.assert_close(conv(x), F.conv1d(x, expected_weight, conv.conv.bias))


def test_weight_norm_transposed_conv_normalises_first_axis():
    convtr = StreamableConvTranspose1d(8, 4, kernel_size=4, stride=2, norm="weight_norm")
    assert convtr.convtr.convtr.weight_g.shape == (8, 1, 1)
    assert convtr.convtr.convtr.weight_v.shape == (8, 4, 4)


def test_time_group_norm_and_bad_norm():
    conv = NormConv1d(2, 4, kernel_size=3, norm="time_group_norm")
    y = conv(torch.randn(3, 2, 50))
    torch.testing.assert_close(y.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="`norm` must be one of"):
        NormConv1d(2, 4, kernel_size=3, norm="batch_norm")
    with pytest.raises(ValueError, match="cannot be causal"):
        NormConv1d(2, 4, kernel_size=3, norm="time_group_norm", causal=True)
    with pytest.raises(ValueError, match="pad_mode"):
        StreamableConv1d(2, 4, kernel_size=3, pad_mode="mirror")
    with pytest.raises(ValueError, match="trim_right_ratio"):
        StreamableConvTranspose1d(2, 4, kernel_size=4, stride=2, trim_right_ratio=0.5)


def test_lstm_skip_and_layout():
    lstm = StreamableLSTM(6, num_layers=2, skip=True)
    x = torch.randn(2, 6, 11)
    y = lstm(x)
    assert y.shape == x.shape
    no_skip = StreamableLSTM(6, num_layers=2, skip=False)
    no_skip.load_state_dict(lstm.state_dict())
    torch.testing.assert_close(y - x, no_skip(x))
    assert sorted(k for k in lstm.state_dict())[0] == "lstm.bias_hh_l0"


# ----------------------------------------------------------------------------- encoder / decoder

SMALL = dict(channels=1, dimension=8, num_filters=2, num_residual_layers=1, ratios=[4, 2],
             norm="weight_norm", lstm_layers=1)


@pytest.mark.parametrize("causal", [False, True])
def test_encoder_decoder_shapes(causal):
    encoder = SEANetEncoder(**SMALL, causal=causal)
    decoder = SEANetDecoder(**SMALL, causal=causal)
    assert encoder.hop_length == decoder.hop_length == 8
    x = torch.randn(2, 1, 77)
    z = encoder(x)
    assert z.shape == (2, 8, math.ceil(77 / 8))
    assert decoder(z).shape == (2, 1, z.shape[-1] * 8)


def test_causal_encoder_does_not_see_the_future():
    encoder = SEANetEncoder(**SMALL, causal=True, pad_mode="constant")
    x = torch.randn(1, 1, 64, requires_grad=True)
    z = encoder(x)
    frame = 3  # covers samples [0, 32)
    z[0, :, frame].sum().backward()
    grad = x.grad[0, 0]
    assert grad[: (frame + 1) * 8].abs().sum() > 0
    assert torch.all(grad[(frame + 1) * 8:] == 0)


def test_residual_block_true_skip_vs_conv_shortcut():
    block = SEANetResnetBlock(4, true_skip=True)
    assert [n for n, _ in block.named_parameters()][0].startswith("block.1.conv.conv")
    conv_skip = SEANetResnetBlock(4, true_skip=False, norm="weight_norm")
    assert "shortcut.conv.conv.weight_g" in conv_skip.state_dict()
    x = torch.randn(2, 4, 9)
    assert block(x).shape == conv_skip(x).shape == x.shape


def test_disable_norm_outer_blocks():
    encoder = SEANetEncoder(**{**SMALL, "lstm_layers": 0}, disable_norm_outer_blocks=1)
    keys = encoder.state_dict().keys()
    assert "model.0.conv.conv.weight" in keys  # first block without weight norm
    assert "model.3.conv.conv.weight_g" in keys  # the rest keeps it
    decoder = SEANetDecoder(**{**SMALL, "lstm_layers": 0}, disable_norm_outer_blocks=1)
    last = len(decoder.model) - 1
    assert f"model.{last}.conv.conv.weight" in decoder.state_dict()


def test_seanet_argument_errors():
    with pytest.raises(ValueError, match="ratios"):
        SEANetEncoder(ratios=[])
    with pytest.raises(ValueError, match="disable_norm_outer_blocks"):
        SEANetDecoder(ratios=[2, 2], disable_norm_outer_blocks=9)
    with pytest.raises(ValueError, match="activation"):
        SEANetEncoder(ratios=[2], activation="NotAnActivation")
    with pytest.raises(ValueError, match="same length"):
        SEANetResnetBlock(4, kernel_sizes=[3, 1], dilations=[1])


@pytest.mark.parametrize("causal,pad_mode,lstm_layers", [(False, "constant", 1), (False, "reflect", 0),
                                                         (True, "constant", 2)])
def test_stream_decoder_matches_one_pass(causal, pad_mode, lstm_layers):
    decoder = SEANetDecoder(**{**SMALL, "lstm_layers": lstm_layers}, causal=causal, pad_mode=pad_mode)
    z = torch.randn(2, 8, 23)
    with torch.no_grad():
        full = decoder(z)
        stream = SEANetStreamDecoder(decoder)
        chunks = [stream.push(z[..., a:b]) for a, b in [(0, 1), (1, 9), (9, 10), (10, 23)]]
        chunks.append(stream.flush())
    assert all(c.shape[:2] == (2, 1) for c in chunks)
    torch.testing.assert_close(torch.cat(chunks, dim=-1), full, atol=1e-5, rtol=0)


def test_stream_decoder_refuses_time_group_norm():
    decoder = SEANetDecoder(**{**SMALL, "norm": "time_group_norm"})
    with pytest.raises(NotStreamableError):
        SEANetStreamDecoder(decoder)
