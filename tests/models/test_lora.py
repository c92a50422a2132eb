"""LoRA on the MusicGen LM: only adapters train, they save alone to a small file, reload and merge exactly."""
from __future__ import annotations

import pytest
import torch

from audiocraft.losses.lm import compute_cross_entropy
from audiocraft.models import MusicGen, builders
from audiocraft.models.lora import (DEFAULT_TARGET_MODULES, add_lora, has_lora, load_lora, lora_state_dict,
                                    lora_target_names, merge_lora, save_lora)
from audiocraft.modules.conditioners import ConditioningAttributes

CONDITIONS = [ConditioningAttributes(text={"description": "calm piano"}),
              ConditioningAttributes(text={"description": "loud drums"})]


def _codes(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 400, (2, 4, 12), generator=torch.Generator().manual_seed(seed))


def _logits(lm) -> tuple[torch.Tensor, torch.Tensor]:
    lm.eval()
    with torch.no_grad():
        out = lm.compute_predictions(_codes(), CONDITIONS)
    return out.logits, out.mask


def _train(lm, steps: int = 4) -> None:
    optimizer = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=1e-2)
    lm.train()
    for _ in range(steps):
        out = lm.compute_predictions(_codes(), CONDITIONS)
        loss, _ = compute_cross_entropy(out.logits, _codes(), out.mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.fixture
def trained():
    """A debug LM with adapters trained for a few steps, and a copy of its weights before training."""
    lm = builders.get_debug_lm_model()
    before = {key: value.clone() for key, value in lm.state_dict().items()}
    add_lora(lm, rank=4, alpha=8.0)
    _train(lm)
    return lm, before


def test_targets_are_the_feed_forward_attention_outputs_and_heads():
    lm = builders.get_debug_lm_model()
    names = lora_target_names(lm, DEFAULT_TARGET_MODULES)
    assert "linears.0" in names and "transformer.layers.1.linear2" in names
    assert "transformer.layers.0.self_attn.out_proj" in names
    assert "transformer.layers.0.cross_attention.out_proj" in names
    assert not any(name.startswith("condition_provider") for name in names)
    with pytest.raises(ValueError, match="in_proj"):
        lora_target_names(lm, ["in_proj_weight"])


def test_fresh_adapters_leave_the_model_unchanged_and_only_they_train():
    lm = builders.get_debug_lm_model()
    reference, mask = _logits(lm)
    add_lora(lm, rank=4, alpha=8.0)
    assert has_lora(lm)
    trainable = [name for name, p in lm.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    logits, _ = _logits(lm)
    assert torch.equal(logits[mask], reference[mask])
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(lm)


def test_a_few_steps_change_only_the_adapters(trained):
    lm, before = trained
    state = lm.state_dict()
    for key, value in before.items():
        wrapped = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        current = state[key] if key in state else state[wrapped]
        assert torch.equal(current, value), f"{key} changed"
    adapters = lora_state_dict(lm)
    assert any(value.abs().sum() > 0 for key, value in adapters.items() if ".lora_B." in key)


def test_save_is_small_and_reload_gives_identical_logits(trained, tmp_path):
    lm, before = trained
    path = save_lora(lm, tmp_path / "adapters.pt")
    full_size = sum(value.numel() * value.element_size() for value in before.values())
    adapters_size = sum(value.numel() * value.element_size() for value in lora_state_dict(lm).values())
    assert path.stat().st_size < adapters_size + 50_000 and adapters_size < full_size / 4
    with pytest.raises(FileExistsError):
        save_lora(lm, path)
    expected, mask = _logits(lm)
    fresh = builders.get_debug_lm_model()
    load_lora(fresh, path)
    logits, _ = _logits(fresh)
    assert torch.equal(logits[mask], expected[mask])


def test_merge_gives_the_same_logits_and_plain_names(trained):
    lm, before = trained
    expected, mask = _logits(lm)
    merge_lora(lm)
    assert not has_lora(lm) and set(lm.state_dict()) == set(before)
    logits, _ = _logits(lm)
    torch.testing.assert_close(logits[mask], expected[mask], atol=1e-4, rtol=1e-4)


def test_a_plain_state_loads_into_a_model_with_adapters(trained):
    lm, before = trained
    adapters = lora_state_dict(lm)
    lm.load_state_dict(before)  # e.g. the pretrained weights: base weights replaced, adapters kept
    assert all(torch.equal(value, lora_state_dict(lm)[key]) for key, value in adapters.items())


def test_musicgen_load_lora(trained, tmp_path):
    lm, _ = trained
    path = save_lora(lm, tmp_path / "adapters.pt")
    expected, mask = _logits(lm)
    model = MusicGen.get_pretrained("debug", device="cpu")
    assert model.load_lora(path) is model
    logits, _ = _logits(model.lm)
    assert torch.equal(logits[mask], expected[mask])


def test_adapters_of_another_model_are_refused(trained, tmp_path):
    lm, _ = trained
    path = save_lora(lm, tmp_path / "adapters.pt")
    other = builders.get_debug_lm_model(card=64)
    with pytest.raises(ValueError, match="another model"):
        load_lora(other, path)
    with pytest.raises(FileNotFoundError):
        load_lora(other, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="rank"):
        add_lora(builders.get_debug_lm_model(), rank=0)
