"""Exporting to AudioCraft's released format: round trips, overwrite protection, CLI."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from audiocraft.models import loaders
from audiocraft.models.encodec import HFEncodecCompressionModel, InterleaveStereoCompressionModel
from audiocraft.models.export import (COMPRESSION_CHECKPOINT, LM_CHECKPOINT, export_compression,
                                      export_compression_pointer, export_lm, export_pretrained, main)
from audiocraft.modules.conditioners import ConditioningAttributes
from conftest import load_reference


def _load_lm(folder: Path):
    """The LM of an AudioCraft folder (float32, eval) and the config stored in its file."""
    package = torch.load(Path(folder) / LM_CHECKPOINT, map_location="cpu", weights_only=True)
    return loaders.load_lm_model(folder, device="cpu"), OmegaConf.create(package["xp.cfg"])


def _compression_cfg(folder: Path):
    package = torch.load(Path(folder) / COMPRESSION_CHECKPOINT, map_location="cpu", weights_only=True)
    return OmegaConf.create(package["xp.cfg"])


def _read(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    lm, cfg = _load_lm(tiny_model_dir)
    compression_model = loaders.load_compression_model(tiny_model_dir)
    return SimpleNamespace(lm=lm, cfg=cfg, compression_model=compression_model,
                           compression_cfg=_compression_cfg(tiny_model_dir),
                           compression_path=tiny_model_dir / COMPRESSION_CHECKPOINT)


def _assert_same_state(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, name
        assert torch.equal(actual[name], value), name


def test_reference_round_trip(reference, tiny_model_dir, tmp_path):
    lm_path = export_lm(reference.lm, reference.cfg, tmp_path / LM_CHECKPOINT)
    compression_path = export_compression(reference.compression_model, reference.compression_cfg,
                                          tmp_path / COMPRESSION_CHECKPOINT)
    exported, original = _read(lm_path), _read(tiny_model_dir / LM_CHECKPOINT)
    assert exported["exported"] is True and isinstance(exported["version"], str)
    _assert_same_state(exported["best_state"], original["best_state"])  # fp16, bit-identical
    _assert_same_state(_read(compression_path)["best_state"],
                       _read(tiny_model_dir / COMPRESSION_CHECKPOINT)["best_state"])
    assert OmegaConf.create(exported["xp.cfg"]) == OmegaConf.create(original["xp.cfg"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LM_CHECKPOINT, COMPRESSION_CHECKPOINT])  # no temp

    lm, _ = _load_lm(tmp_path)
    ref = load_reference("a_lm_logits")
    conditions = [ConditioningAttributes(text={"description": p}) for p in ref["prompts"]]
    with torch.no_grad():
        out = lm.compute_predictions(ref["codes"], conditions)
        before = reference.lm.compute_predictions(ref["codes"], conditions)
    assert torch.equal(out.mask, ref["mask"])
    torch.testing.assert_close(out.logits[out.mask], before.logits[before.mask], atol=0, rtol=0)
    torch.testing.assert_close(out.logits[out.mask], ref["logits"][ref["mask"]], atol=1e-4, rtol=0)

    compression_model = loaders.load_compression_model(tmp_path)
    wav = load_reference("b_compression")["wav"]
    codes, _ = compression_model.encode(wav)
    assert torch.equal(codes, load_reference("b_compression")["codes"])


def test_codec_in_float16_keeps_the_codes(reference, tmp_path):
    path = export_compression(reference.compression_model, reference.compression_cfg, tmp_path / COMPRESSION_CHECKPOINT,
                              half=True)
    stored = _read(path)["best_state"]
    original = _read(reference.compression_path)["best_state"]
    assert stored.keys() == original.keys()
    for name, value in original.items():
        assert stored[name].dtype == (torch.float16 if value.is_floating_point() else value.dtype), name
        torch.testing.assert_close(stored[name].to(value.dtype), value, atol=1e-3, rtol=1e-3)
    model = loaders.load_compression_model(tmp_path)
    assert next(model.parameters()).dtype == torch.float32
    expected = load_reference("b_compression")
    codes, _ = model.encode(expected["wav"])
    # rounding moves a few residual codes of this tiny random-weight codec (the default model's: 0.03-0.2%)
    assert torch.equal(codes[:, 0], expected["codes"][:, 0])
    assert (codes == expected["codes"]).float().mean() > 0.95


def test_refuses_to_overwrite(reference, tmp_path):
    path = export_lm(reference.lm, reference.cfg, tmp_path / "lm.bin")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_lm(reference.lm, reference.cfg, path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_compression(reference.compression_model, reference.compression_cfg, path)
    assert path.read_bytes() == before
    export_lm(reference.lm, reference.cfg, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["lm.bin"]


def test_export_pretrained_writes_both_files_or_nothing(reference, tmp_path):
    reference.lm.cfg = reference.cfg
    reference.compression_model.cfg = reference.compression_cfg
    model = SimpleNamespace(lm=reference.lm, compression_model=reference.compression_model)
    lm_path, compression_path = export_pretrained(model, tmp_path / "out")
    assert lm_path.name == LM_CHECKPOINT and compression_path.name == COMPRESSION_CHECKPOINT
    _load_lm(tmp_path / "out")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / COMPRESSION_CHECKPOINT).write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        export_pretrained(model, tmp_path / "other")
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == [COMPRESSION_CHECKPOINT]
    assert (tmp_path / "other" / COMPRESSION_CHECKPOINT).read_bytes() == b"mine"


def test_config_must_describe_the_model(reference, tmp_path):
    wrong = OmegaConf.create(OmegaConf.to_container(reference.cfg))
    wrong.transformer_lm.n_q = 8
    with pytest.raises(ValueError, match="n_q"):
        export_lm(reference.lm, wrong, tmp_path / LM_CHECKPOINT)
    wrong = OmegaConf.create(OmegaConf.to_container(reference.compression_cfg))
    wrong.rvq.n_q = 2
    with pytest.raises(ValueError, match="does not describe"):
        export_compression(reference.compression_model, wrong, tmp_path / COMPRESSION_CHECKPOINT)
    with pytest.raises(ValueError, match="stereo"):
        export_compression(InterleaveStereoCompressionModel(reference.compression_model), None, tmp_path / "x.bin")
    assert not any(tmp_path.iterdir())


def test_cli_copies_an_audiocraft_folder(tiny_model_dir, tmp_path, capsys):
    assert main([str(tiny_model_dir), str(tmp_path / "out")]) == 0
    for name in (LM_CHECKPOINT, COMPRESSION_CHECKPOINT):
        _assert_same_state(_read(tmp_path / "out" / name)["best_state"], _read(tiny_model_dir / name)["best_state"])
    assert main([str(tiny_model_dir), str(tmp_path / "out")]) == 1
    assert "overwrite" in capsys.readouterr().err
    assert main([str(tiny_model_dir), str(tmp_path / "out"), "--overwrite"]) == 0
    assert main([str(tmp_path / "missing"), str(tmp_path / "x")]) == 1


# ----------------------------------------------------------------------------- transformers checkpoints

@pytest.fixture(scope="module")
def transformers_folder(tmp_path_factory):
    pytest.importorskip("transformers")
    from test_hf_convert import make_tiny_transformers_musicgen

    folder = tmp_path_factory.mktemp("hf_musicgen_export")
    make_tiny_transformers_musicgen(folder)
    return folder


def test_transformers_model_exports_and_reloads(transformers_folder, tmp_path):
    from audiocraft.models.hf_convert import load_transformers_musicgen

    compression_model, lm, cfg = load_transformers_musicgen(transformers_folder)
    model = SimpleNamespace(lm=lm, compression_model=compression_model)
    with pytest.raises(NotImplementedError, match="Hub"):  # a codec built from a config has nothing to point to
        export_pretrained(model, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    export_pretrained(model, tmp_path / "out", compression_name="facebook/encodec_32khz")
    pointer = _read(tmp_path / "out" / COMPRESSION_CHECKPOINT)
    assert pointer["pretrained"] == "facebook/encodec_32khz" and pointer["exported"] is True
    reloaded, reloaded_cfg = _load_lm(tmp_path / "out")
    assert reloaded_cfg.transformer_lm == cfg.transformer_lm
    half = {name: value.half().float() for name, value in lm.state_dict().items()}
    _assert_same_state(reloaded.state_dict(), half)

    lm.load_state_dict(half)  # same fp16-rounded weights: the reloaded LM computes the same function
    codes = torch.randint(0, 64, (2, 4, 10), generator=torch.Generator().manual_seed(0))
    conditions = [ConditioningAttributes(text={"description": t}) for t in ["calm piano music", "lofi hip hop beat"]]
    with torch.no_grad():
        expected = lm.compute_predictions(codes, conditions)
        actual = reloaded.compute_predictions(codes, conditions)
    torch.testing.assert_close(actual.logits[actual.mask], expected.logits[expected.mask], atol=1e-5, rtol=0)


def test_cli_converts_a_transformers_folder(transformers_folder, tmp_path, capsys):
    assert main([str(transformers_folder), str(tmp_path / "a")]) == 1
    assert "Hub" in capsys.readouterr().err
    assert main([str(transformers_folder), str(tmp_path / "b"), "--compression-name", "facebook/encodec_32khz"]) == 0
    assert _read(tmp_path / "b" / COMPRESSION_CHECKPOINT)["pretrained"] == "facebook/encodec_32khz"
    _load_lm(tmp_path / "b")


def test_hub_encodec_is_exported_as_a_pointer(transformers_folder, tmp_path):
    from audiocraft.models.hf_convert import load_transformers_musicgen

    compression_model, _, _ = load_transformers_musicgen(transformers_folder)
    assert isinstance(compression_model, HFEncodecCompressionModel)
    compression_model.model.config._name_or_path = "facebook/encodec_32khz"
    path = export_compression(compression_model, None, tmp_path / COMPRESSION_CHECKPOINT)
    assert _read(path) == {"pretrained": "facebook/encodec_32khz", "exported": True, "version": _read(path)["version"]}
    with pytest.raises(ValueError, match="float16"):
        export_compression(compression_model, None, tmp_path / "half.bin", half=True)
    compression_model.model.config._name_or_path = str(tmp_path)  # a local folder is not a Hub name
    with pytest.raises(NotImplementedError, match="push_to_hub"):
        export_compression(compression_model, None, tmp_path / "other.bin")
    with pytest.raises(ValueError, match="name"):
        export_compression_pointer("", tmp_path / "empty.bin")


def test_unnamed_text_encoder_cannot_be_exported(tmp_path):
    pytest.importorskip("transformers")
    from test_hf_convert import make_tiny_transformers_musicgen
    from audiocraft.models.hf_convert import load_transformers_musicgen

    make_tiny_transformers_musicgen(tmp_path / "hf", small_text_encoder=True, save_tokenizer=True)
    _, lm, cfg = load_transformers_musicgen(tmp_path / "hf")
    assert cfg.conditioners.description.t5.name == ""
    with pytest.raises(ValueError, match=r"t5\.name"):
        export_lm(lm, cfg, tmp_path / LM_CHECKPOINT)
    assert not (tmp_path / LM_CHECKPOINT).exists()
