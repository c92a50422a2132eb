"""The compression solver on a tiny dataset: training, exact resumption, samples, export."""
from __future__ import annotations

import json

import pytest
import torch

from audiocraft.solvers import CompressionSolver, export_compression, get_solver
from audiocraft.utils import checkpoint
from solver_helpers import (assert_states_equal, compose_config, debug_overrides, seed_all, single_thread,
                            write_tiny_dataset)

# A discriminator (with its own optimizer), the balancer's norm averages, EMA and quantizer dropout:
# every kind of state matters for an exact resume.
WITH_ADVERSARY = ["adversarial.adversaries=[msstftd]", "adversarial.every=2", "losses.adv=1.", "losses.feat=1.",
                  "msstftd.filters=2", "msstftd.n_ffts=[256,128]", "msstftd.hop_lengths=[64,32]",
                  "msstftd.win_lengths=[256,128]", "balancer.balance_grads=true", "balancer.ema_decay=0.9"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_audio"))


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def _run(cfg, folder, interrupt_at_step: int | None = None) -> CompressionSolver:
    seed_all(int(cfg.seed))
    solver = get_solver(cfg, folder=folder)
    if interrupt_at_step is not None:
        steps = {"count": 0}
        original = solver.run_step

        def run_step(batch):
            if solver.is_training:
                steps["count"] += 1
                if steps["count"] == interrupt_at_step:
                    raise KeyboardInterrupt("simulated kill")
            return original(batch)

        solver.run_step = run_step
        with pytest.raises(KeyboardInterrupt):
            solver.run()
    else:
        solver.run()
    return solver


def test_train_two_epochs_writes_history_checkpoint_and_samples(manifest, tmp_path):
    cfg = compose_config(debug_overrides(manifest, epochs=2, updates=3))
    solver = _run(cfg, tmp_path / "xp")
    assert solver.epoch == 3 and len(solver.history) == 2
    last = solver.history[-1]
    assert {"train", "valid", "evaluate", "generate"} <= set(last)
    assert {"l1", "g_loss", "bandwidth", "penalty", "lr"} <= set(last["train"])
    assert {"mel", "sisnr"} <= set(last["evaluate"])
    assert all(torch.isfinite(torch.tensor(v)) for v in last["train"].values())
    history = json.loads((tmp_path / "xp" / "history.json").read_text())
    assert history == solver.history
    state = checkpoint.load_checkpoint(tmp_path / "xp" / "checkpoint.th")  # weights_only load works
    assert {"model", "optimizer", "ema", "best_state", "history", "rng", "xp.cfg"} <= set(state)
    samples = sorted(p.name for p in (tmp_path / "xp" / "samples" / "epoch_2").iterdir())
    assert samples == ["00000.wav", "00000_reference.wav", "00001.wav", "00001_reference.wav"]


def test_loss_decreases_on_fixed_data(manifest, tmp_path):
    cfg = compose_config(debug_overrides(manifest, epochs=3, updates=6) + ["optim.lr=3e-3"])
    solver = _run(cfg, tmp_path / "xp")
    first, last = solver.history[0]["train"]["l1"], solver.history[-1]["train"]["l1"]
    assert last < first


def test_interrupted_run_resumes_exactly(manifest, tmp_path):
    """Kill in the middle of epoch 2 of 3, start the same run again: same final state as without the kill."""
    cfg = compose_config(debug_overrides(manifest, epochs=3, updates=2) + WITH_ADVERSARY)
    straight = _run(cfg, tmp_path / "straight")
    _run(cfg, tmp_path / "resumed", interrupt_at_step=4)  # updates 1-2: epoch 1; killed at update 2 of epoch 2
    assert len(checkpoint.load_checkpoint(tmp_path / "resumed" / "checkpoint.th")["history"]) == 1
    resumed = _run(cfg, tmp_path / "resumed")
    assert resumed.epoch == straight.epoch == 4
    for name in ("model", "optimizer", "ema", "adv_losses"):
        assert_states_equal(getattr(straight, name).state_dict(), getattr(resumed, name).state_dict(), name)
    assert_states_equal(straight.best_state, resumed.best_state, "best_state")
    for before, after in zip(straight.history, resumed.history):
        assert before["train"]["g_loss"] == after["train"]["g_loss"]
        assert before["valid"] == {**after["valid"], "duration": before["valid"]["duration"]}


def test_export_loads_with_get_pretrained_and_encodes(manifest, tmp_path):
    from audiocraft.models import CompressionModel
    from audiocraft.models.pretrained import default_model_dir

    cfg = compose_config(debug_overrides(manifest, epochs=1, updates=2))
    solver = _run(cfg, tmp_path / "xp")
    (tmp_path / "export").mkdir()
    out = export_compression(tmp_path / "xp", tmp_path / "export")
    assert out == tmp_path / "export" / "compression_state_dict.bin"
    package = torch.load(out, map_location="cpu", weights_only=True)
    assert package["exported"] is True and isinstance(package["xp.cfg"], str) and "version" in package
    assert_states_equal(package["best_state"], solver.best_state["model"], "best_state")
    with pytest.raises(FileExistsError):
        export_compression(tmp_path / "xp" / "checkpoint.th", out)
    model = CompressionModel.get_pretrained(tmp_path / "export")
    assert_states_equal(model.state_dict(), solver.best_state["model"], "loaded")
    codes, scale = model.encode(torch.randn(1, 1, 8000))
    assert codes.shape == (1, 4, 25) and scale is None
    assert model.decode(codes).shape == (1, 1, 8000)
    # the training-side loader gives the same model
    same = CompressionSolver.model_from_checkpoint(tmp_path / "xp")
    assert_states_equal(same.state_dict(), model.state_dict(), "model_from_checkpoint")
    bundled = CompressionSolver.model_from_checkpoint("//pretrained/default")  # the name the solvers accept
    assert_states_equal(bundled.state_dict(), CompressionModel.get_pretrained(default_model_dir()).state_dict(),
                        "//pretrained/default")


def test_continue_from_checkpoint_starts_from_its_best_state(manifest, tmp_path):
    cfg = compose_config(debug_overrides(manifest, epochs=1, updates=2))
    first = _run(cfg, tmp_path / "first")
    follow = compose_config(debug_overrides(manifest, epochs=1, updates=2)
                            + [f"continue_from={tmp_path / 'first'}", "optim.ema.use=false"])
    seed_all(0)
    solver = get_solver(follow, folder=tmp_path / "second")
    assert solver.restore() is True
    assert solver.epoch == 1 and solver.history == []
    assert_states_equal(solver.model.state_dict(), first.best_state["model"], "continued")


def test_continue_from_pretrained_model(manifest, tmp_path):
    cfg = compose_config(debug_overrides(manifest, epochs=1, updates=2))
    _run(cfg, tmp_path / "xp")
    export_compression(tmp_path / "xp", tmp_path / "released.bin")
    follow = compose_config(debug_overrides(manifest, epochs=1, updates=2)
                            + [f"continue_from=//pretrained/{tmp_path / 'released.bin'}"])
    solver = get_solver(follow, folder=tmp_path / "second")
    solver.restore()
    exported = torch.load(tmp_path / "released.bin", weights_only=True)["best_state"]
    assert_states_equal(solver.model.state_dict(), exported, "pretrained")


def test_missing_manifest_is_an_actionable_error(tmp_path):
    cfg = compose_config(debug_overrides(tmp_path / "nowhere"))
    solver = get_solver(cfg, folder=tmp_path / "xp")
    with pytest.raises(FileNotFoundError, match="datasource.train.*audiocraft.data.audio_dataset"):
        solver.build()


def test_frozen_encoder_and_quantizer_keep_the_codes(manifest, tmp_path):
    """freeze=[encoder,quantizer]: only the decoder trains, and the codes of any input stay the same."""
    cfg = compose_config(debug_overrides(manifest, epochs=1, updates=2))
    _run(cfg, tmp_path / "first")
    follow = compose_config(debug_overrides(manifest, epochs=2, updates=3)
                            + [f"continue_from={tmp_path / 'first'}", "+freeze=[encoder,quantizer]",
                               "optim.ema.use=false", "optim.lr=3e-3"])
    seed_all(0)
    solver = get_solver(follow, folder=tmp_path / "second")
    solver.restore()
    before = {key: value.clone() for key, value in solver.model.state_dict().items()}
    wav = torch.randn(2, 1, 8000)
    with torch.no_grad():
        codes_before = solver.model.eval().encode(wav)[0]
    solver.run()
    after = solver.model.state_dict()
    for key, value in after.items():
        if key.startswith(("encoder.", "quantizer.")):  # weights and codebook buffers alike
            assert torch.equal(value, before[key]), key
    assert any(not torch.equal(value, before[key]) for key, value in after.items() if key.startswith("decoder."))
    with torch.no_grad():
        assert torch.equal(solver.model.eval().encode(wav)[0], codes_before)
    optimized = {id(p) for group in solver.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in solver.model.decoder.parameters()}


@pytest.mark.parametrize("freeze, message", [(["encoder", "bottleneck"], "unknown part"),
                                             (["encoder", "quantizer", "decoder"], "nothing would be trained")])
def test_bad_freeze_option_is_an_actionable_error(manifest, tmp_path, freeze, message):
    cfg = compose_config(debug_overrides(manifest, epochs=1, updates=1) + [f"+freeze=[{','.join(freeze)}]"])
    with pytest.raises(ValueError, match=message):
        get_solver(cfg, folder=tmp_path / "xp").build()
