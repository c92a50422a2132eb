"""Conditioners, dropouts and the fuser."""
import pytest
import torch

from audiocraft.modules.conditioners import (AttributeDropout, ClassifierFreeGuidanceDropout, ConditionFuser,
                                             ConditioningAttributes, ConditioningProvider, LUTConditioner,
                                             T5Conditioner, WavCondition, drop_all_conditions,
                                             drop_text_conditions)


def attrs(*texts):
    return [ConditioningAttributes(text={"description": t}) for t in texts]


def test_drop_all_conditions_nullifies_text_and_wav_without_touching_input():
    cond = WavCondition(torch.ones(1, 1, 100), torch.tensor([100]), [32000], [None], [0.0])
    samples = [ConditioningAttributes(text={"description": "piano"}, wav={"self_wav": cond})]
    dropped = drop_all_conditions(samples)
    assert dropped[0].text["description"] is None
    assert dropped[0].wav["self_wav"].wav.shape[-1] == 1 and dropped[0].wav["self_wav"].length.item() == 0
    assert samples[0].text["description"] == "piano"  # the caller's attributes are untouched
    kept = drop_text_conditions(samples)
    assert kept[0].text["description"] is None and kept[0].wav["self_wav"].length.item() == 100


def test_cfg_dropout_only_in_training():
    dropout = ClassifierFreeGuidanceDropout(p=1.0)
    samples = attrs("a", "b")
    assert dropout(samples)[0].text["description"] is None
    dropout.eval()
    assert dropout(samples)[0].text["description"] == "a"
    assert ClassifierFreeGuidanceDropout(p=0.0)(samples)[1].text["description"] == "b"


def test_attribute_dropout_targets_one_attribute():
    samples = [ConditioningAttributes(text={"genre": "rock", "description": "loud"})]
    out = AttributeDropout({"text": {"genre": 1.0}})(samples)
    assert out[0].text == {"genre": None, "description": "loud"}


def test_t5_conditioner_pads_and_zeroes(reference_dir):
    t5 = T5Conditioner("t5-base", output_dim=8)
    assert "t5" not in "".join(t5.state_dict())  # frozen encoder is not saved
    tokens = t5.tokenize(["a long prompt with several words", "short", None])
    assert tokens["attention_mask"][2].sum() == 0  # absent text conditions on nothing
    emb, mask = t5(tokens)
    assert emb.shape[:2] == mask.shape and emb.shape[-1] == 8
    assert (emb[mask == 0] == 0).all()
    with pytest.raises(TypeError):
        t5.tokenize([3])


def test_t5_word_dropout_only_in_training(reference_dir):
    t5 = T5Conditioner("t5-base", output_dim=8, word_dropout=1.0)
    t5.eval()
    assert t5.tokenize(["some words"])["attention_mask"].sum() > 0
    t5.train()
    assert t5.tokenize(["some words"])["attention_mask"].sum() == 0


def test_lut_conditioner():
    lut = LUTConditioner(n_bins=32, dim=4, output_dim=6)
    tokens = lut.tokenize(["Rock, Pop", None])
    emb, mask = lut(tokens)
    assert emb.shape == (2, 2, 6) and mask.tolist() == [[1, 1], [0, 0]]
    again = lut.tokenize(["rock pop"])
    assert torch.equal(again["tokens"][0], tokens["tokens"][0])  # case and punctuation insensitive


def test_provider_ignores_attributes_it_has_no_conditioner_for():
    provider = ConditioningProvider({"genre": LUTConditioner(16, 4, 4)})
    tokens = provider.tokenize([ConditioningAttributes(text={"mood": "sad", "genre": "rock"}),
                                ConditioningAttributes(text={"mood": "happy"})])
    assert set(tokens) == {"genre"}
    assert tokens["genre"]["mask"].tolist() == [[1], [0]]  # missing genre = no text


def test_fuser_methods():
    x = torch.zeros(2, 5, 4)
    ones = (torch.ones(2, 1, 4), torch.ones(2, 1))
    fused, cross = ConditionFuser({"sum": ["a"]})(x, {"a": ones})
    assert torch.equal(fused, torch.ones(2, 5, 4)) and cross is None

    prefix = (torch.full((2, 2, 4), 2.0), torch.ones(2, 2))
    fused, _ = ConditionFuser({"prepend": ["b"]})(x, {"b": prefix})
    assert fused.shape == (2, 7, 4) and torch.equal(fused[:, :2], prefix[0]) and (fused[:, 2:] == 0).all()

    first = (torch.full((2, 3, 4), 3.0), torch.ones(2, 3))
    second = (torch.full((2, 1, 4), 4.0), torch.ones(2, 1))
    fused, cross = ConditionFuser({"cross": ["c", "e"]})(x, {"c": first, "e": second})
    assert torch.equal(fused, x) and torch.equal(cross, torch.cat([first[0], second[0]], dim=1))

    ramp = torch.arange(2, dtype=torch.float).view(1, 2, 1).expand(2, 2, 4)
    fused, _ = ConditionFuser({"input_interpolate": ["d"]})(x, {"d": (ramp, torch.ones(2, 2))})
    assert fused.shape == (2, 5, 4)  # nearest-neighbour resampling of 2 steps onto 5
    assert fused[0, :, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]

    fuser = ConditionFuser({"prepend": ["b"]})
    with fuser.streaming():
        step1, _ = fuser(x, {"b": prefix})
        step2, _ = fuser(x[:, :1], {"b": prefix})
    assert step1.shape[1] == 7 and step2.shape[1] == 1  # prepend only on the first step

    with pytest.raises(ValueError, match="fused twice"):
        ConditionFuser({"sum": ["a"], "cross": ["a"]})
    with pytest.raises(ValueError, match="no fuse method"):
        ConditionFuser({"sum": ["a"]})(x, {"zz": ones})
