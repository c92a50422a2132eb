"""Transformer behaviour: causality, streaming equals the full pass, state handling."""
import pytest
import torch

from audiocraft.modules.transformer import StreamingTransformer, create_sin_embedding


def make_transformer(**kwargs):
    options = dict(d_model=16, num_heads=2, num_layers=2, dim_feedforward=32, causal=True, norm_first=True,
                   activation="gelu", bias_ff=False, bias_attn=False, dropout=0.0)
    options.update(kwargs)
    return StreamingTransformer(**options).eval()


def test_sin_embedding_matches_formula():
    positions = torch.arange(5).view(1, -1, 1)
    emb = create_sin_embedding(positions, 8, max_period=100)
    half = 4
    freqs = 100 ** (torch.arange(half) / (half - 1))
    expected = torch.cat([torch.cos(positions / freqs), torch.sin(positions / freqs)], dim=-1)
    torch.testing.assert_close(emb, expected)
    with pytest.raises(ValueError):
        create_sin_embedding(positions, 7)


def test_causality_through_gradients():
    model = make_transformer()
    x = torch.randn(1, 10, 16, requires_grad=True)
    out = model(x)
    t = 6
    out[0, t].sum().backward()
    grad = x.grad[0].abs().sum(-1)
    assert (grad[t + 1:] == 0).all(), "future steps influenced the output"
    assert (grad[:t + 1] > 0).all(), "past steps should influence the output"


def test_non_causal_sees_the_future():
    model = make_transformer(causal=False)
    x = torch.randn(1, 6, 16, requires_grad=True)
    model(x)[0, 2].sum().backward()
    assert x.grad[0, 5].abs().sum() > 0


@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 1, 5], [12]])
@pytest.mark.parametrize("cross", [False, True])
def test_streaming_equals_full_pass(chunks, cross):
    model = make_transformer(cross_attention=cross)
    x = torch.randn(2, 12, 16)
    source = torch.randn(2, 3, 16) if cross else None
    full = model(x, cross_attention_src=source)
    outs = []
    with model.streaming():
        start = 0
        for size in chunks:
            outs.append(model(x[:, start:start + size], cross_attention_src=source))
            start += size
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)


def test_kv_cache_grows_past_initial_capacity():
    model = make_transformer(num_layers=1)
    x = torch.randn(1, 150, 16)
    full = model(x)
    with model.streaming():
        outs = [model(x[:, t:t + 1]) for t in range(150)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)


def test_past_context_limits_attention():
    model = make_transformer(past_context=2)
    x = torch.randn(1, 8, 16, requires_grad=True)
    model(x)[0, 7].sum().backward()
    # two layers of a 2-step window: step 7 sees back to step 3 at most
    assert (x.grad[0, :3] == 0).all()
    assert x.grad[0, 3:].abs().sum() > 0
    full = model(x.detach())
    with model.streaming():
        outs = [model(x.detach()[:, t:t + 1]) for t in range(8)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)


def test_streaming_state_save_and_restore():
    model = make_transformer()
    x = torch.randn(1, 6, 16)
    with model.streaming():
        model(x[:, :3])
        state = model.get_streaming_state()
        a = model(x[:, 3:4])
        model.set_streaming_state(state)
        b = model(x[:, 3:4])
    torch.testing.assert_close(a, b)
    assert model.get_streaming_state() == {}


def test_invalid_configuration_errors():
    with pytest.raises(ValueError, match="divisible"):
        make_transformer(num_heads=3)
    with pytest.raises(ValueError, match="positional_embedding"):
        make_transformer(positional_embedding="rope")
