"""Building compression models from AudioCraft configs and loading released checkpoint files."""
import pathlib

import pytest
import torch
from omegaconf import OmegaConf

from audiocraft.models import builders, loaders
from audiocraft.models.encodec import (
    CompressionModel,
    EncodecModel,
    HFEncodecCompressionModel,
    InterleaveStereoCompressionModel,
)


@pytest.fixture(scope="module")
def tiny_package(tiny_model_dir) -> dict:
    return torch.load(tiny_model_dir / loaders.COMPRESSION_CHECKPOINT, weights_only=True)


def _tiny_cfg(tiny_package) -> dict:
    return OmegaConf.to_container(OmegaConf.create(tiny_package["xp.cfg"]), resolve=True)


# ----------------------------------------------------------------------------- builders

def test_full_size_encodec32_names_and_shapes(reference_dir):
    cfg = OmegaConf.load(reference_dir / "encodec32_xp_cfg.yaml")
    model = builders.get_compression_model(cfg)
    expected = [line.split("\t") for line in (reference_dir / "encodec32_keys.txt").read_text().splitlines()]
    actual = [[name, str(list(value.shape)), str(value.dtype).removeprefix("torch.")]
              for name, value in model.state_dict().items()]
    assert actual == expected
    assert isinstance(model, EncodecModel)
    assert model.frame_rate == 50.0 and model.sample_rate == 32000
    assert model.cardinality == 2048 and model.total_codebooks == 4


def test_builder_accepts_plain_dicts_and_rejects_unknown_things(tiny_package):
    cfg = _tiny_cfg(tiny_package)
    model = builders.get_compression_model(cfg)
    assert model.encoder.dimension == 32 and model.cardinality == 64
    with pytest.raises(ValueError, match=r"known compression models: \['encodec'\]"):
        builders.get_compression_model({**cfg, "compression_model": "dac"})
    with pytest.raises(ValueError, match="n_filterz"):
        builders.get_compression_model({**cfg, "seanet": {**cfg["seanet"], "n_filterz": 3}})
    with pytest.raises(ValueError, match=r"known quantizers"):
        builders.get_compression_model({**cfg, "encodec": {**cfg["encodec"], "quantizer": "fsq"}})
    with pytest.raises(ValueError, match="trim_right_ratio"):  # decoder-only key on the encoder side
        builders.get_compression_model({**cfg, "seanet": {**cfg["seanet"], "encoder": {"trim_right_ratio": 1.0}}})
    with pytest.raises(ValueError, match="channels"):
        builders.get_compression_model({**cfg, "encodec": {**cfg["encodec"], "channels": 2}})
    with pytest.raises(TypeError, match="mapping"):
        builders.get_compression_model("encodec")


def test_wrapped_compression_model_stereo_and_num_codebooks(tiny_package):
    model = builders.get_compression_model(_tiny_cfg(tiny_package))
    same = builders.get_wrapped_compression_model(model, {"interleave_stereo_codebooks": {"use": False}})
    assert same is model
    stereo = builders.get_wrapped_compression_model(
        model, {"interleave_stereo_codebooks": {"use": True, "per_timestep": False}, "compression_model_n_q": 2})
    assert isinstance(stereo, InterleaveStereoCompressionModel)
    assert stereo.num_codebooks == 4 and model.num_codebooks == 2


def test_debug_compression_model():
    model = CompressionModel.get_pretrained("debug_compression_model")
    assert model.frame_rate == 25.0 and model.cardinality == 400 and model.num_codebooks == 4
    codes, _ = model.encode(torch.randn(1, 1, 32000))
    assert codes.shape == (1, 4, 25)


# ----------------------------------------------------------------------------- loading released files

def test_load_from_folder_and_from_file(tiny_model_dir, tiny_package):
    from_folder = loaders.load_compression_model(tiny_model_dir)
    from_file = loaders.load_compression_model(tiny_model_dir / loaders.COMPRESSION_CHECKPOINT)
    via_get_pretrained = CompressionModel.get_pretrained(str(tiny_model_dir))
    for model in (from_folder, from_file, via_get_pretrained):
        assert isinstance(model, EncodecModel) and not model.training
        state = model.state_dict()
        assert state.keys() == tiny_package["best_state"].keys()
        assert all(torch.equal(state[k], v) for k, v in tiny_package["best_state"].items())


def test_pointer_checkpoint_is_followed(tmp_path, tiny_model_dir):
    torch.save({"pretrained": str(tiny_model_dir), "exported": True}, tmp_path / loaders.COMPRESSION_CHECKPOINT)
    model = loaders.load_compression_model(tmp_path)
    assert isinstance(model, EncodecModel) and model.cardinality == 64


def test_pointer_to_local_transformers_encodec(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.EncodecConfig(target_bandwidths=[3.0], sampling_rate=8000, hidden_size=16, num_filters=4,
                                        num_residual_layers=1, upsampling_ratios=[4, 4], codebook_size=64,
                                        num_lstm_layers=1)
    hf_dir = tmp_path / "encodec_hf"
    transformers.EncodecModel(config).save_pretrained(hf_dir)
    pointer_dir = tmp_path / "pointer"
    pointer_dir.mkdir()
    torch.save({"pretrained": str(hf_dir)}, pointer_dir / loaders.COMPRESSION_CHECKPOINT)
    model = loaders.load_compression_model(pointer_dir)
    assert isinstance(model, HFEncodecCompressionModel)
    assert model.frame_rate == 500.0 and model.num_codebooks == 1


def test_missing_local_paths_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loaders.load_compression_model(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loaders.load_compression_model("./no/such/model.bin")
    with pytest.raises(FileNotFoundError, match="has no 'compression_state_dict.bin'"):
        loaders.load_compression_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CompressionModel.get_pretrained(str(tmp_path / "nowhere"))


def test_hub_name_offline_says_how_to_use_a_local_copy(tmp_path):
    with pytest.raises(FileNotFoundError, match="local") as info:
        loaders.load_compression_model("facebook/musicgen-small", cache_dir=tmp_path)
    assert "folder" in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)
    with pytest.raises(FileNotFoundError, match="folder path"):
        CompressionModel.get_pretrained("facebook/encodec_32khz")


def test_mismatched_weights_raise_value_error(tmp_path, tiny_package):
    state = dict(tiny_package["best_state"])
    state.pop("encoder.model.0.conv.conv.bias")
    state["encoder.extra.weight"] = torch.zeros(1)
    torch.save({**tiny_package, "best_state": state}, tmp_path / "bad_keys.bin")
    with pytest.raises(ValueError, match="missing from the file") as info:
        loaders.load_compression_model(tmp_path / "bad_keys.bin")
    message = str(info.value)
    assert "encoder.model.0.conv.conv.bias" in message and "encoder.extra.weight" in message
    assert "xp.cfg" in message

    cfg = OmegaConf.create(tiny_package["xp.cfg"])
    cfg.rvq.bins = 32
    torch.save({**tiny_package, "xp.cfg": OmegaConf.to_yaml(cfg)}, tmp_path / "bad_shapes.bin")
    with pytest.raises(ValueError, match="different shape"):
        loaders.load_compression_model(tmp_path / "bad_shapes.bin")

    torch.save({"best_state": state}, tmp_path / "no_cfg.bin")
    with pytest.raises(ValueError, match="xp.cfg"):
        loaders.load_compression_model(tmp_path / "no_cfg.bin")


# ----------------------------------------------------------------------------- generic resolver

def test_resolve_and_load_checkpoint(tmp_path, tiny_model_dir):
    path = loaders.resolve_checkpoint_file(tiny_model_dir, "state_dict.bin")
    assert path == tiny_model_dir / "state_dict.bin"
    assert loaders.resolve_checkpoint_file(path, "ignored.bin") == path
    package = loaders.load_checkpoint(tiny_model_dir, "state_dict.bin")
    assert {"best_state", "xp.cfg"} <= set(package)

    torch.save([1, 2, 3], tmp_path / "list.bin")
    with pytest.raises(ValueError, match="not a checkpoint dict"):
        loaders.load_checkpoint(tmp_path / "list.bin", "unused")

    torch.save({"path": pathlib.PurePosixPath("a/b")}, tmp_path / "pickled.bin")
    with pytest.raises(ValueError, match="trust_pickle=True"):
        loaders.load_checkpoint(tmp_path / "pickled.bin", "unused")
    loaded = loaders.load_checkpoint(tmp_path / "pickled.bin", "unused", trust_pickle=True)
    assert loaded["path"] == pathlib.PurePosixPath("a/b")


def test_looks_like_local_path():
    assert loaders.looks_like_local_path("/abs/dir")
    assert loaders.looks_like_local_path("./rel")
    assert loaders.looks_like_local_path("a/b/c")
    assert loaders.looks_like_local_path("weights.bin")
    assert not loaders.looks_like_local_path("facebook/musicgen-small")
    assert not loaders.looks_like_local_path("t5-base")
