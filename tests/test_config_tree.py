"""The Hydra config tree: every YAML composes, released configs are reproduced, typos fail at load time."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from audiocraft.models import builders

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
REFERENCE_DIR = Path(__file__).resolve().parent / "assets" / "reference"
ALL_YAMLS = sorted(p.relative_to(CONFIG_DIR).with_suffix("").as_posix() for p in CONFIG_DIR.rglob("*.yaml"))
# Shrinks compression models so that building them is instant (structure unchanged).
TINY_CODEC = ["seanet.n_filters=2", "seanet.dimension=8", "seanet.lstm=1", "rvq.bins=8", "rvq.kmeans_iters=1"]


@pytest.fixture(scope="module")
def hydra_compose():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        yield lambda overrides: compose("config", overrides=list(overrides))


def _composition_for(name: str) -> list[str]:
    """Overrides that load config file ``name`` (path under config/, without .yaml)."""
    group, _, option = name.rpartition("/")
    if name == "config":
        return []
    if group.startswith("solver/musicgen/evaluation"):
        return ["solver=musicgen/debug", f"solver/musicgen/evaluation={option}"]
    if group.startswith("solver"):
        return [f"solver={name[len('solver/'):]}"]
    if group.startswith("dset"):
        return ["solver=compression/debug", f"dset={name[len('dset/'):]}"]
    if group == "model/lm/model_scale":
        return ["solver=musicgen/debug", f"model/lm/model_scale={option}"]
    if group.startswith("model/lm"):
        return ["solver=musicgen/debug", f"model={name[len('model/'):]}"]
    if group == "model":
        return ["solver=compression/default", f"+model={option}"]
    if group.startswith("model/encodec"):
        return ["solver=compression/debug", f"model={name[len('model/'):]}"]
    if group == "conditioner":
        return ["solver=musicgen/debug", f"conditioner={option}"]
    raise AssertionError(f"no composition known for config/{name}.yaml: add one to this test")


def _with_dora_dir(cfg) -> dict:
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain["dora"]["dir"] = "outputs"  # the references pin it; ours comes from $AUDIOCRAFT_DORA_DIR
    return OmegaConf.to_container(OmegaConf.create(plain), resolve=True)


def _assert_same_tree(mine, reference, path="cfg"):
    if isinstance(reference, dict):
        assert isinstance(mine, dict), f"{path}: expected a section, got {mine!r}"
        assert list(mine) == list(reference), f"{path}: keys {list(mine)} != reference {list(reference)}"
        for key in reference:
            _assert_same_tree(mine[key], reference[key], f"{path}.{key}")
    else:
        assert mine == reference and type(mine) is type(reference), f"{path}: {mine!r} != reference {reference!r}"


@pytest.mark.parametrize("overrides, reference", [
    (["solver=musicgen/musicgen_base_32khz", "model/lm/model_scale=small"], "musicgen_small_xp_cfg.yaml"),
    (["solver=compression/encodec_musicgen_32khz"], "encodec32_xp_cfg.yaml"),
])
def test_composes_exactly_like_audiocraft(hydra_compose, overrides, reference):
    expected = yaml.safe_load((REFERENCE_DIR / reference).read_text())
    _assert_same_tree(_with_dora_dir(hydra_compose(overrides)), expected)


@pytest.mark.parametrize("name", ALL_YAMLS)
def test_every_yaml_composes(hydra_compose, name):
    cfg = hydra_compose(_composition_for(name))
    assert OmegaConf.is_struct(cfg)
    assert "dora" in cfg and "optim" in cfg


@pytest.mark.parametrize("name", [n for n in ALL_YAMLS if n.startswith("solver/compression/")])
def test_compression_solver_configs_build_their_model(hydra_compose, name):
    base = ["+model=encodec/default", "sample_rate=24000", "channels=1"] if name.endswith("/default") else []
    cfg = hydra_compose([f"solver={name[len('solver/'):]}", *base, *TINY_CODEC])
    model = builders.get_compression_model(cfg)
    assert model.sample_rate == cfg.sample_rate and model.channels == cfg.channels
    assert model.total_codebooks == cfg.rvq.n_q
    hop = 1
    for ratio in cfg.seanet.ratios:
        hop *= ratio
    assert model.frame_rate == pytest.approx(cfg.sample_rate / hop)


def test_released_encodec_config_builds_the_released_shapes(hydra_compose):
    cfg = hydra_compose(["solver=compression/encodec_musicgen_32khz"])
    model = builders.get_compression_model(cfg)
    lines = (REFERENCE_DIR / "encodec32_keys.txt").read_text().splitlines()
    expected = {name: shape for name, shape, _ in (line.split("\t") for line in lines if line.strip())}
    actual = {name: str(list(value.shape)) for name, value in model.state_dict().items()}
    assert set(actual) == set(expected)
    assert all(actual[name].replace(" ", "") == expected[name].replace(" ", "") for name in expected)


@pytest.mark.parametrize("name", [n for n in ALL_YAMLS if n.startswith("solver/musicgen/")
                                  and "/evaluation/" not in n and not n.endswith("/default")])
def test_musicgen_solver_configs_have_the_lm_structure(hydra_compose, name):
    cfg = hydra_compose([f"solver={name[len('solver/'):]}"])
    assert cfg.solver == "musicgen" and cfg.lm_model == "transformer_lm"
    assert {"dim", "num_heads", "num_layers", "n_q", "card"} <= set(cfg.transformer_lm)
    assert cfg.codebooks_pattern.modeling in cfg.codebooks_pattern or cfg.codebooks_pattern.modeling == "parallel"
    assert "description" in cfg.conditioners and "description" in list(cfg.fuser.cross) + list(cfg.fuser.prepend)
    assert cfg.compression_model_checkpoint.startswith("//pretrained/")


@pytest.mark.parametrize("name", [n for n in ALL_YAMLS if n.startswith("solver/musicgen/")
                                  and "/evaluation/" not in n and not n.endswith("/default")])
def test_musicgen_solver_configs_build_their_lm(hydra_compose, name):
    # tiny sizes; the T5 of the offline test cache is registered as 't5-base'
    tiny = ["device=cpu", "transformer_lm.dim=64", "transformer_lm.num_heads=2", "transformer_lm.num_layers=1",
            "transformer_lm.card=16", "conditioners.description.t5.name=t5-base"]
    cfg = hydra_compose([f"solver={name[len('solver/'):]}", *tiny])
    lm = builders.get_lm_model(cfg)
    assert lm.n_q == cfg.transformer_lm.n_q and lm.card == 16


def test_musicgen_debug_is_small(hydra_compose):
    cfg = hydra_compose(["solver=musicgen/debug"])
    assert (cfg.transformer_lm.dim, cfg.transformer_lm.num_layers, cfg.transformer_lm.n_q) == (64, 2, 4)
    assert cfg.transformer_lm.card == 400 and cfg.optim.epochs == 2
    assert cfg.compression_model_checkpoint == "//pretrained/debug_compression_model"


def test_typo_in_a_key_fails_at_load_time_with_its_name(hydra_compose):
    with pytest.raises(ConfigCompositionException, match="optim.lrr"):
        hydra_compose(["solver=compression/debug", "optim.lrr=1e-3"])
    cfg = hydra_compose(["solver=compression/debug"])
    with pytest.raises(Exception, match="lrr"):
        cfg.optim.lrr  # noqa: B018 (reading a key that does not exist also fails)


def test_dora_dir_follows_the_environment(hydra_compose, monkeypatch, tmp_path):
    from audiocraft.environment import get_dora_dir

    monkeypatch.setenv("AUDIOCRAFT_DORA_DIR", str(tmp_path))
    assert hydra_compose([]).dora.dir == str(tmp_path) and get_dora_dir() == tmp_path
    monkeypatch.delenv("AUDIOCRAFT_DORA_DIR")
    assert get_dora_dir() == Path.home() / ".cache" / "audiocraft" / "dora"
