"""LMModel: compatibility with AudioCraft 1.3.0 (reference tiny MusicGen) and behaviour tests."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from audiocraft.models import builders, loaders
from audiocraft.modules.conditioners import ConditioningAttributes
from conftest import REFERENCE_DIR, load_reference


def attributes(texts):
    return [ConditioningAttributes(text={"description": t}) for t in texts]


@pytest.fixture(scope="module")
def tiny_lm():
    torch.set_num_threads(1)  # the references were computed single-threaded
    return loaders.load_lm_model(REFERENCE_DIR / "musicgen_tiny")


GREEDY = dict(use_sampling=False, temp=1.0, top_k=250, top_p=0.0, cfg_coef=3.0, two_step_cfg=False)


# ----------------------------------------------------------------------------- compatibility
def test_reference_lm_loads_unchanged(tiny_lm):
    package = torch.load(REFERENCE_DIR / "musicgen_tiny" / "state_dict.bin", weights_only=True)
    state = tiny_lm.state_dict()
    assert set(state) == set(package["best_state"])
    for name, value in package["best_state"].items():
        assert state[name].dtype == torch.float32  # float16 file, float32 model on CPU
        assert torch.equal(state[name], value.float()), name


def test_compute_predictions_matches_reference(tiny_lm):
    ref = load_reference("a_lm_logits")
    conditions = attributes(ref["prompts"])
    tokens = tiny_lm.condition_provider.tokenize(conditions)
    assert torch.equal(tokens["description"]["input_ids"], ref["t5_input_ids"])
    assert torch.equal(tokens["description"]["attention_mask"], ref["t5_attention_mask"])
    with torch.no_grad():
        emb, mask = tiny_lm.condition_provider(tokens)["description"]
        out = tiny_lm.compute_predictions(ref["codes"], conditions)
    torch.testing.assert_close(emb, ref["cond_emb"], atol=1e-5, rtol=0)
    assert torch.equal(out.mask, ref["mask"])
    valid = out.mask
    assert torch.isnan(out.logits[~valid]).all()
    assert (out.logits[valid] - ref["logits"][valid]).abs().max() < 1e-4


@pytest.mark.parametrize("name", ["c_greedy", "f_unconditional", "d_continuation"])
def test_greedy_generation_matches_reference(tiny_lm, name):
    ref = load_reference(name)
    if name == "f_unconditional":
        conditions = attributes([None] * ref["num_samples"])
    else:
        conditions = attributes(ref.get("prompts", ref.get("descriptions")))
    prompt = ref.get("prompt_tokens")
    tokens = tiny_lm.generate(prompt, conditions, max_gen_len=ref["tokens"].shape[-1], **GREEDY)
    assert torch.equal(tokens, ref["tokens"])


@pytest.mark.skipif(not torch.__version__.startswith("2.13"), reason="sampled tokens depend on torch's RNG stream")
def test_seeded_top_k_sampling_matches_reference(tiny_lm):
    ref = load_reference("e_topk_sampling")
    torch.manual_seed(ref["torch_manual_seed"])
    tokens = tiny_lm.generate(None, attributes(ref["prompts"]), max_gen_len=50,
                              **{**GREEDY, "use_sampling": True, "top_k": 16})
    assert torch.equal(tokens, ref["tokens"])


def test_full_size_musicgen_small_names_and_shapes():
    cfg = OmegaConf.load(REFERENCE_DIR / "musicgen_small_xp_cfg.yaml")
    cfg.device = "meta"  # shapes only, no memory
    lm = builders.get_lm_model(cfg)
    expected = {}
    for line in (REFERENCE_DIR / "musicgen_small_keys.txt").read_text().splitlines():
        name, shape, _ = line.split("\t")
        expected[name] = [int(s) for s in shape.strip("[]").split(",") if s.strip()]
    actual = {name: list(t.shape) for name, t in lm.state_dict().items()}
    assert actual == expected


# ----------------------------------------------------------------------------- behaviour
def test_kv_cache_decoding_equals_full_forward(tiny_lm):
    ref = load_reference("a_lm_logits")
    conditions = attributes(ref["prompts"])
    pattern = tiny_lm.pattern_provider.get_pattern(ref["codes"].shape[-1])
    sequence, _, _ = pattern.build_pattern_sequence(ref["codes"], tiny_lm.special_token_id)
    tensors = tiny_lm.condition_provider(tiny_lm.condition_provider.tokenize(conditions))
    with torch.no_grad():
        full = tiny_lm(sequence, [], condition_tensors=tensors)
        steps = []
        with tiny_lm.streaming():
            steps.append(tiny_lm(sequence[..., :3], [], condition_tensors=tensors))
            for s in range(3, sequence.shape[-1]):
                steps.append(tiny_lm(sequence[..., s:s + 1], [], condition_tensors=tensors))
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=1e-5, rtol=0)


def test_cfg_coefficient_one_equals_conditional(tiny_lm):
    conditions = attributes(["calm piano", "loud drums"])
    sequence = torch.randint(0, 64, (2, 4, 6))
    provider = tiny_lm.condition_provider
    with torch.no_grad():
        batched = provider(provider.tokenize(conditions + [ConditioningAttributes(text={"description": None})] * 2))
        cond_only = {k: (e[:2], m[:2]) for k, (e, m) in batched.items()}
        guided = tiny_lm._guided_logits(sequence, batched, 1.0, None, {})
        conditional = tiny_lm(sequence, [], condition_tensors=cond_only)[:, :, -1]
    torch.testing.assert_close(guided, conditional, atol=1e-5, rtol=0)


def test_two_step_cfg_honours_cfg_coef(tiny_lm):
    conditions = attributes(["calm piano"])
    a = tiny_lm.generate(None, conditions, max_gen_len=8, **{**GREEDY, "two_step_cfg": True, "cfg_coef": 1.0})
    b = tiny_lm.generate(None, conditions, max_gen_len=8, **{**GREEDY, "two_step_cfg": True, "cfg_coef": 8.0})
    plain = tiny_lm.generate(None, conditions, max_gen_len=8, **{**GREEDY, "cfg_coef": 1.0})
    assert not torch.equal(a, b)
    assert torch.equal(a, plain)  # coefficient 1: only the conditional branch counts


def test_greedy_is_deterministic_and_stream_equals_generate(tiny_lm):
    conditions = attributes(["lofi beat"])
    first = tiny_lm.generate(None, conditions, max_gen_len=12, **GREEDY)
    second = tiny_lm.generate(None, conditions, max_gen_len=12, **GREEDY)
    assert torch.equal(first, second)
    chunks = list(tiny_lm.stream_generate(None, conditions, max_gen_len=12, **GREEDY))
    assert len(chunks) > 1
    assert torch.equal(torch.cat(chunks, dim=-1), first)


def test_progress_callback_reaches_total(tiny_lm):
    calls = []
    tiny_lm.generate(None, attributes(["x"]), max_gen_len=10, callback=lambda i, n: calls.append((i, n)), **GREEDY)
    assert calls[-1][0] == calls[-1][1] and [c[0] for c in calls] == list(range(1, len(calls) + 1))


def test_generate_input_errors(tiny_lm):
    with pytest.raises(ValueError, match="codebooks"):
        tiny_lm.generate(torch.zeros(1, 3, 4, dtype=torch.long), attributes(["x"]), max_gen_len=8)
    with pytest.raises(ValueError, match="shorter than max_gen_len"):
        tiny_lm.generate(torch.zeros(1, 4, 8, dtype=torch.long), attributes(["x"]), max_gen_len=8)
    with pytest.raises(ValueError, match="conditions for"):
        tiny_lm.generate(None, attributes(["x", "y"]), num_samples=3, max_gen_len=8)
    with pytest.raises(ValueError, match=r"values must lie in"):
        tiny_lm.generate(torch.full((1, 4, 2), 64), attributes(["x"]), max_gen_len=8)
    with pytest.raises(ValueError, match="max_gen_len"):
        tiny_lm.generate(None, attributes(["x"]), max_gen_len=0)


def test_tiny_lm_loss_falls_on_fixed_batch():
    torch.manual_seed(0)
    lm = builders.get_debug_lm_model("cpu", card=32, n_q=2).train()
    codes = torch.randint(0, 32, (4, 2, 16))
    conditions = attributes(["a", "b", "c", "d"])
    optimizer = torch.optim.Adam(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = lm.compute_predictions(codes, conditions)
        logits = out.logits[out.mask]
        loss = torch.nn.functional.cross_entropy(logits, codes[out.mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
