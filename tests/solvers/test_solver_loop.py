"""The generic loop and its helpers on a toy task: registries, schedules, sampler, checkpoints, EMA, best state."""
from __future__ import annotations

import contextlib
import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from audiocraft.solvers import ModuleEMA, builders, get_solver
from audiocraft.solvers.builders import get_autocast
from audiocraft.utils import checkpoint
from audiocraft.utils.distributed import ShardedSampler
from ddp_worker import TOY_OVERRIDES, ToySolver
from solver_helpers import compose_config, debug_overrides, seed_all, single_thread


def _toy(tmp_path: Path, *extra: str) -> ToySolver:
    cfg = compose_config(debug_overrides(tmp_path / "unused") + TOY_OVERRIDES + list(extra))
    seed_all(int(cfg.seed))
    return ToySolver(cfg, folder=tmp_path / "xp")


# ------------------------------------------------------------------ registries and errors

def test_unknown_or_missing_solver_is_a_clear_error(tmp_path, monkeypatch):
    cfg = compose_config(debug_overrides(tmp_path))
    cfg.solver = "nosuchsolver"
    with pytest.raises(ValueError, match="Unknown solver 'nosuchsolver'.*compression"):
        get_solver(cfg, folder=tmp_path)
    monkeypatch.setitem(builders.SOLVERS, "nosuchsolver", "audiocraft.solvers.nosuchmodule.NoSuchSolver")
    with pytest.raises(ImportError, match="audiocraft.solvers.nosuchmodule.NoSuchSolver"):
        get_solver(cfg, folder=tmp_path)


def test_optimizer_and_schedule_names_are_checked():
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="optim.optimizer"):
        builders.get_optimizer(params, {"optimizer": "nosuchoptimizer", "lr": 1.0, "adam": {}})
    optimizer = builders.get_optimizer(params, {"optimizer": "adamw", "lr": 1.0, "adam": {"betas": [0.9, 0.95]}})
    assert isinstance(optimizer, torch.optim.AdamW)
    with pytest.raises(ValueError, match="schedule.lr_scheduler"):
        builders.get_lr_scheduler(optimizer, {"lr_scheduler": "nosuch"}, 100)


def test_batch_size_must_split_over_processes():
    assert builders.per_process_batch_size(8, "dataset.batch_size") == 8
    with pytest.raises(ValueError, match="dataset.batch_size"):
        builders.per_process_batch_size(0, "dataset.batch_size")


# ------------------------------------------------------------------ learning-rate schedules

def _lrs(kind: str, options: dict, total: int = 100, lr: float = 2.0) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = builders.get_lr_scheduler(optimizer, {"lr_scheduler": kind, kind: options}, total)
    values = []
    for _ in range(total + 5):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    lrs = _lrs("cosine", {"warmup": 10, "lr_min_ratio": 0.1, "cycle_length": 1.0})
    assert lrs[0] == 0 and lrs[5] == pytest.approx(1.0) and lrs[10] == pytest.approx(2.0)
    assert lrs[55] == pytest.approx(2.0 * (0.1 + 0.45 * (1 + math.cos(math.pi * 0.5))))
    assert lrs[100] == pytest.approx(0.2) and lrs[104] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101]))


def test_other_schedules():
    poly = _lrs("polynomial_decay", {"warmup": 10, "zero_lr_warmup_steps": 0, "end_lr": 0.0, "power": 1})
    assert poly[5] == pytest.approx(1.0) and poly[55] == pytest.approx(1.0) and poly[100] == 0.0
    inverse = _lrs("inverse_sqrt", {"warmup": 4, "warmup_init_lr": 0.0})
    assert inverse[2] == pytest.approx(1.0) and inverse[16] == pytest.approx(1.0)
    linear = _lrs("linear_warmup", {"warmup": 4, "warmup_init_lr": 0.0})
    assert linear[1] == pytest.approx(0.5) and linear[50] == pytest.approx(2.0)
    assert _lrs("step", {"step_size": 10, "gamma": 0.5})[25] == pytest.approx(0.5)


def test_schedule_state_survives_a_weights_only_checkpoint(tmp_path):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = builders.get_lr_scheduler(optimizer, {"lr_scheduler": "cosine", "cosine": {
        "warmup": 3, "lr_min_ratio": 0.0, "cycle_length": 1.0}}, 10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    checkpoint.save_checkpoint({"sched": scheduler.state_dict()}, tmp_path / "c.th")
    fresh_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    fresh = builders.get_lr_scheduler(fresh_optimizer, {"lr_scheduler": "cosine", "cosine": {
        "warmup": 3, "lr_min_ratio": 0.0, "cycle_length": 1.0}}, 10)
    fresh.load_state_dict(checkpoint.load_checkpoint(tmp_path / "c.th")["sched"])
    assert fresh.last_epoch == 4 and fresh.get_last_lr() == scheduler.get_last_lr()


# ------------------------------------------------------------------ data order

def test_sampler_order_depends_on_seed_and_epoch_only_and_shards_partition_it():
    full = ShardedSampler(10, shuffle=True, seed=3, num_replicas=1, rank=0)
    full.set_epoch(2)
    order = list(full)
    assert sorted(order) == list(range(10)) and order == list(full)
    full.set_epoch(3)
    assert list(full) != order
    shards = []
    for rank in range(2):
        shard = ShardedSampler(10, shuffle=True, seed=3, num_replicas=2, rank=rank)
        shard.set_epoch(2)
        shards.append(list(shard))
    assert shards[0] == order[0::2] and shards[1] == order[1::2]
    assert len(ShardedSampler(7, num_replicas=2, rank=1, drop_last=True)) == 3
    assert len(list(ShardedSampler(7, shuffle=False, num_replicas=2, rank=1))) == 4  # padded by wrapping
    with pytest.raises(ValueError, match="rank"):
        ShardedSampler(4, num_replicas=2, rank=2)


# ------------------------------------------------------------------ checkpoint files and RNG

def test_checkpoint_files(tmp_path):
    state = {"w": torch.arange(3.0), "meta": {"epoch": 2, "name": "x"}, "cfg": "a: 1\n"}
    path = checkpoint.save_checkpoint(state, tmp_path / "xps" / "abc" / checkpoint.checkpoint_name())
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.th"]  # no temporary file left
    loaded = checkpoint.load_checkpoint(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["meta"] == state["meta"]
    assert checkpoint.resolve_checkpoint_path("//sig/abc", dora_dir=tmp_path) == path
    assert checkpoint.resolve_checkpoint_path(path.parent) == path
    with pytest.raises(FileNotFoundError, match="signature 'nope'"):
        checkpoint.resolve_checkpoint_path("//sig/nope", dora_dir=tmp_path)
    for epoch in (1, 2, 10):
        checkpoint.save_checkpoint({}, path.parent / checkpoint.checkpoint_name(epoch))
    removed = checkpoint.flush_stale_checkpoints(path.parent, keep_last=2)
    assert [p.name for p in removed] == ["checkpoint_1.th"]
    assert (path.parent / "checkpoint.th").exists()


def test_rng_state_round_trip(tmp_path):
    import numpy as np

    state = checkpoint.capture_rng_state()
    checkpoint.save_checkpoint({"rng": state}, tmp_path / "rng.th")
    first = (random.random(), np.random.rand(), torch.rand(3))
    checkpoint.restore_rng_state(checkpoint.load_checkpoint(tmp_path / "rng.th")["rng"])
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


# ------------------------------------------------------------------ EMA, best state, mixed precision, logging

def test_module_ema_is_bias_corrected():
    layer = nn.Linear(2, 1)
    ema = ModuleEMA({"model": layer}, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.step()  # the first step copies the weights
    assert torch.equal(ema.state["model"]["weight"], torch.ones(1, 2))
    with torch.no_grad():
        layer.weight.fill_(4.0)
    ema.step()  # weights 1/(1 + 0.5) for the newest value
    assert torch.allclose(ema.state["model"]["weight"], torch.full((1, 2), 1 + 3 / 1.5))
    with pytest.raises(ValueError, match="decay"):
        ModuleEMA({"model": layer}, decay=1.0)


def test_best_state_follows_the_configured_metric(tmp_path):
    solver = _toy(tmp_path, "+checkpoint.best_metric=loss")
    solver.build()
    with torch.no_grad():
        solver.model[0].weight.fill_(1.0)
    solver.history = [{"valid": {"loss": 0.5}}]
    solver._pending = {"valid": {"loss": 0.7}}  # worse: the best state is kept
    solver.update_best_state("valid")
    assert not torch.equal(solver.best_state["model"]["0.weight"], solver.model[0].weight)
    solver._pending = {"valid": {"loss": 0.4}}  # better: copied
    solver.update_best_state("valid")
    assert torch.equal(solver.best_state["model"]["0.weight"], solver.model[0].weight)
    solver._pending = {"valid": {"other": 0.4}}
    with pytest.raises(ValueError, match="checkpoint.best_metric"):
        solver.update_best_state("valid")


def test_swap_states_restore_the_training_weights(tmp_path):
    with single_thread():
        solver = _toy(tmp_path)
        solver.run()
    current = {k: v.clone() for k, v in solver.model.state_dict().items()}
    with solver.swap_ema_state():
        assert torch.equal(solver.model[0].weight, solver.ema.state["model"]["0.weight"])
    assert all(torch.equal(current[k], v) for k, v in solver.model.state_dict().items())
    assert "grad_norm" in solver.history[0]["train"] and solver.history[-1]["valid"]["loss"] > 0


def test_cpu_autocast_is_opt_in_bf16(tmp_path):
    cfg = compose_config(debug_overrides(tmp_path) + ["autocast=true", "autocast_dtype=float16"])
    assert get_autocast(cfg, torch.device("cpu")) == (False, torch.float16)  # fp16 on CPU: off, warned
    cfg = compose_config(debug_overrides(tmp_path) + ["autocast=true", "autocast_dtype=bfloat16"])
    assert get_autocast(cfg, torch.device("cpu")) == (True, torch.bfloat16)

    seen = []

    class Recorder(ToySolver):
        def run_step(self, batch):
            seen.append(self.model(batch[0]).dtype)
            return super().run_step(batch)

    with single_thread():
        solver = Recorder(compose_config(debug_overrides(tmp_path) + TOY_OVERRIDES + [
            "autocast=true", "autocast_dtype=bfloat16", "optim.epochs=1"]), folder=tmp_path / "bf16")
        solver.run()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    assert solver.model[0].weight.dtype == torch.float32 and math.isfinite(solver.history[0]["train"]["loss"])


def test_tensorboard_logs_are_written(tmp_path):
    with single_thread():
        solver = _toy(tmp_path, "logging.log_tensorboard=true", "optim.epochs=1")
        solver.run()
    assert list((tmp_path / "xp" / "tensorboard").glob("events.out.tfevents.*"))


# ------------------------------------------------------------------ Dora entry point and grids

def test_dora_entry_point_signatures(monkeypatch, tmp_path):
    from audiocraft import train
    from audiocraft.environment import get_dora_dir

    assert train.main.dora.dir == get_dora_dir()
    base = train.main.get_xp(["solver=compression/debug"])
    same = train.main.get_xp(["solver=compression/debug", "logging.log_updates=5", "dataset.num_workers=0"])
    assert base.sig == same.sig  # excluded keys do not change the experiment
    assert train.main.get_xp(["solver=compression/debug", "optim.lr=1e-3"]).sig != base.sig
    # a dataset group whose values are given on the command line (plain Dora cannot compare `???` values)
    data = ["solver=compression/debug", "dset=audio/default", "datasource.max_sample_rate=16000",
            "datasource.max_channels=1"] + [f"datasource.{split}=/data/{split}" for split in
                                            ("train", "valid", "evaluate", "generate")]
    xp = train.main.get_xp(data)
    assert xp.sig != base.sig and xp.cfg.datasource.train == "/data/train"


class FakeLauncher:
    """Records what a grid's explorer schedules, as Dora's launcher would receive it."""
    def __init__(self):
        self.bound, self.calls = [], []

    def slurm_(self, **kwargs):
        return self

    def bind_(self, *args, **kwargs):
        self.bound += [*args, kwargs]
        return self

    def job_array(self):
        return contextlib.nullcontext()

    def __call__(self, *args, **kwargs):
        self.calls.append([*self.bound, *args, kwargs])

    def overrides(self, call: list) -> list[str]:
        """One scheduled call as Hydra overrides, formatted the way Dora formats them."""
        from dora.hydra import _hydra_value_as_override
        return [f"{k}={_hydra_value_as_override(v)}" for part in call if isinstance(part, dict) for k, v in part.items()]


def test_compression_debug_grid_schedules_composable_experiments():
    from audiocraft.grids.compression import debug

    launcher = FakeLauncher()
    debug.explorer(launcher)
    assert len(launcher.calls) == 2
    for call in launcher.calls:
        assert compose_config(launcher.overrides(call)).solver == "compression"


def test_default_model_grid_stages_follow_the_signatures_given(monkeypatch):
    from audiocraft.grids import default_model

    names = [f"AUDIOCRAFT_DEFAULT_CODEC_SIG{i}" for i in range(1, 11)] + ["AUDIOCRAFT_DEFAULT_CODEC_SIG",
                                                                        "AUDIOCRAFT_DEFAULT_LM_SIG"]
    for name in names:
        monkeypatch.delenv(name, raising=False)
    launcher = FakeLauncher()
    default_model.explorer(launcher)
    assert len(launcher.calls) == 1  # only phase 1 until its signature is known

    signatures = {f"AUDIOCRAFT_DEFAULT_CODEC_SIG{i}": f"aaaa{i:04d}" for i in range(1, 11)}
    signatures.update(AUDIOCRAFT_DEFAULT_CODEC_SIG="aaaa0005",  # the LMs are trained on phase 5's codes
                      AUDIOCRAFT_DEFAULT_LM_SIG="aaaa0012")
    for name, signature in signatures.items():
        monkeypatch.setenv(name, signature)
    launcher = FakeLauncher()
    default_model.explorer(launcher)
    cfgs = [compose_config(launcher.overrides(call)) for call in launcher.calls]
    assert [cfg.solver for cfg in cfgs] == ["compression"] * 11 + ["musicgen"] * 2
    assert [cfg.continue_from for cfg in cfgs] == [None] + [f"//sig/aaaa{i:04d}" for i in range(1, 11)] + [
        None, "//sig/aaaa0012"]
    assert all(cfg.losses.mrstft == 2 for cfg in cfgs[1:6]) and "mrstft" not in cfgs[0].losses
    assert all(cfg.losses.sisnr == 0 and cfg.losses.l1 == 0.1 for cfg in cfgs[2:6])
    for adversarial in cfgs[3:6]:  # phases 4 to 6 train the decoder alone against a discriminator
        assert list(adversarial.freeze) == ["encoder", "quantizer"] and list(adversarial.adversarial.adversaries)
    assert list(cfgs[4].reinit) == ["quantizer"] and (cfgs[4].rvq.n_q, cfgs[4].rvq.bins) == (4, 2048)
    phase6 = cfgs[5]  # phase 5's codes, quantizer and discriminator; nothing refitted
    assert phase6.adversaries_from == "//sig/aaaa0005" and "reinit" not in phase6
    assert phase6.msstftd == cfgs[4].msstftd and phase6.adversarial == cfgs[4].adversarial  # the discriminator fits
    assert (phase6.rvq.n_q, phase6.rvq.bins) == (4, 2048)
    # phases 7 to 11: a wider decoder on the same frozen encoder and quantizer (the same codes)
    wide = cfgs[6:11]
    assert all(cfg.seanet.decoder.n_filters == 48 and "n_filters" not in (cfg.seanet.get("encoder") or {})
               for cfg in wide)
    assert all((cfg.rvq.n_q, cfg.rvq.bins) == (4, 2048) and "reinit" not in cfg for cfg in wide[1:])
    assert list(wide[0].reinit) == ["decoder"] and list(wide[0].freeze) == ["encoder", "quantizer"]
    assert "mrstft" not in wide[0].losses and not list(wide[0].adversarial.adversaries)  # phase 1's losses
    assert wide[1].losses.mrstft == 2 and wide[1].losses.sisnr == 0 and not list(wide[1].adversarial.adversaries)
    assert list(wide[2].freeze) == ["encoder", "quantizer", "decoder"]  # the discriminator's warm-up
    for cfg in wide[2:]:
        assert cfg.msstftd == phase6.msstftd and cfg.adversarial == phase6.adversarial
    assert "adversaries_from" not in wide[2]  # its discriminator starts afresh against the new decoder
    assert [cfg.adversaries_from for cfg in wide[3:]] == ["//sig/aaaa0009", "//sig/aaaa0010"]
    assert all(list(cfg.freeze) == ["encoder", "quantizer"] for cfg in wide[3:])
    for lm in cfgs[11:]:
        assert lm.compression_model_checkpoint == "//sig/aaaa0005"
        assert (lm.transformer_lm.n_q, lm.transformer_lm.card) == (cfgs[4].rvq.n_q, cfgs[4].rvq.bins)
        assert list(lm.codebooks_pattern.delay.delays) == list(range(lm.transformer_lm.n_q))
    assert cfgs[12].optim.lr == 5e-4 and cfgs[12].optim.epochs == 12 and cfgs[11].optim.epochs == 24
