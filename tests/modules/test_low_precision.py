"""Weight-only bfloat16 / int8 decoding: close to float32, and unchanged float32 results."""
import pytest
import torch

from audiocraft.models import MusicGen
from audiocraft.modules.low_precision import LowPrecisionLinear, lower_precision_
from conftest import REFERENCE_DIR, load_reference


@pytest.mark.parametrize("mode, tolerance", [("bfloat16", 0.02), ("int8", 0.03)])
def test_low_precision_linear_close_to_float(mode, tolerance):
    layer = torch.nn.Linear(64, 96)
    x = torch.randn(3, 5, 64)
    low = LowPrecisionLinear(layer.weight, layer.bias, mode)
    reference = layer(x)
    error = (low(x) - reference).abs().max() / reference.abs().max()
    assert error < tolerance and low(x).dtype == torch.float32
    torch.testing.assert_close(low(x, 10, 20), low(x)[..., 10:20])


@pytest.mark.parametrize("dtype", [torch.bfloat16, "int8"])
def test_low_precision_generation_mostly_agrees_with_float32(dtype):
    ref = load_reference("c_greedy")
    exact = MusicGen.get_pretrained(str(REFERENCE_DIR / "musicgen_tiny"), device="cpu")
    fast = MusicGen.get_pretrained(str(REFERENCE_DIR / "musicgen_tiny"), device="cpu", dtype=dtype)
    for model in (exact, fast):
        model.set_generation_params(use_sampling=False, duration=1.0)
    _, exact_tokens = exact.generate(ref["prompts"], return_tokens=True)
    _, fast_tokens = fast.generate(ref["prompts"], return_tokens=True)
    assert torch.equal(exact_tokens, ref["tokens"])  # float32 stays exact
    # the first frame of every codebook depends only on the condition: it must agree
    agreement = (fast_tokens == exact_tokens).float().mean().item()
    assert agreement > 0.3, agreement
    assert torch.equal(fast_tokens[:, 0, :1], exact_tokens[:, 0, :1])


def test_lowered_model_refuses_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        lower_precision_(torch.nn.Linear(2, 2), "float8")
    with pytest.raises(ValueError, match="dtype"):
        MusicGen.get_pretrained(str(REFERENCE_DIR / "musicgen_tiny"), device="cpu", dtype=torch.float16)
