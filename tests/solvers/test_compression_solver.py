"""The compression solver on a tiny dataset: training, exact resumption, samples, export."""
from __future__ import annotations

import json
import logging

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
    # float16 weights (the bundled default model's codec), from the run or from its released file
    from audiocraft.solvers.musicgen_export import _export_codec

    halves = [export_compression(tmp_path / "xp", tmp_path / "half.bin", half=True),
              _export_codec(f"//pretrained/{out}", tmp_path / "copied_half.bin", overwrite=False, half=True)]
    rounded = {name: value.half().to(value.dtype) if value.is_floating_point() else value
               for name, value in solver.best_state["model"].items()}
    for path in halves:
        stored = torch.load(path, map_location="cpu", weights_only=True)["best_state"]
        assert {value.dtype for value in stored.values() if value.is_floating_point()} == {torch.float16}
        assert_states_equal(CompressionModel.get_pretrained(path).state_dict(), rounded, path.name)
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


def _decoder_only_solver(manifest, tmp_path, epochs: int, updates: int, options: list[str]) -> CompressionSolver:
    """A short run in ``first``, then a restored solver continuing from it with the encoder and quantizer
    frozen (and ``options``), not yet run."""
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=2)), tmp_path / "first")
    follow = compose_config(debug_overrides(manifest, epochs=epochs, updates=updates)
                            + [f"continue_from={tmp_path / 'first'}", "+freeze=[encoder,quantizer]",
                               "optim.ema.use=false", *options])
    seed_all(0)
    solver = get_solver(follow, folder=tmp_path / "second")
    solver.restore()
    return solver


def test_frozen_encoder_and_quantizer_keep_the_codes(manifest, tmp_path):
    """freeze=[encoder,quantizer]: only the decoder trains, and the codes of any input stay the same."""
    solver = _decoder_only_solver(manifest, tmp_path, epochs=2, updates=3, options=["optim.lr=3e-3"])
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


def test_frozen_quantizer_keeps_its_codebooks_while_the_encoder_learns_through_it(manifest, tmp_path):
    """freeze=[quantizer] alone: the codebooks stay as they were, and the encoder still gets the straight-through
    gradient and the commitment loss (a frozen quantizer in eval mode would pass no gradient at all)."""
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=2)), tmp_path / "first")
    follow = compose_config(debug_overrides(manifest, epochs=1, updates=3)
                            + [f"continue_from={tmp_path / 'first'}", "+freeze=[quantizer]", "optim.ema.use=false",
                               "optim.lr=3e-3"])
    seed_all(0)
    solver = get_solver(follow, folder=tmp_path / "second")
    solver.restore()
    before = {key: value.clone() for key, value in solver.model.state_dict().items()}
    solver.run()
    after = solver.model.state_dict()
    assert all(torch.equal(value, before[key]) for key, value in after.items() if key.startswith("quantizer."))
    for part in ("encoder.", "decoder."):
        assert any(not torch.equal(value, before[key]) for key, value in after.items() if key.startswith(part)), part
    assert solver.history[-1]["train"]["penalty"] > 0  # the commitment loss reached the encoder
    optimized = {id(p) for group in solver.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in solver.model.quantizer.parameters()}


def test_grown_quantizer_keeps_the_first_codebooks_and_fits_the_new_ones_on_the_residual(manifest, tmp_path):
    """+grow_quantizer=true with rvq.n_q 4 -> 6 and every part frozen: the 4 codebooks of continue_from are kept (the
    first 4 codes of any input stay the same), the 2 new ones are fitted on the residual and lower the error."""
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=2)), tmp_path / "first")
    first = CompressionSolver.model_from_checkpoint(tmp_path / "first").eval()
    grown = compose_config(debug_overrides(manifest, epochs=1, updates=1)
                           + [f"continue_from={tmp_path / 'first'}", "+grow_quantizer=true", "rvq.n_q=6",
                              "+freeze=[encoder,quantizer,decoder]", "+quantizer_init_batches=4"])
    solver = _run(grown, tmp_path / "grown")
    model = solver.model.eval()
    kept, new = first.state_dict(), model.state_dict()
    for key, value in kept.items():
        assert torch.equal(new[key], value), key  # every part frozen: the run only fits the new codebooks
    assert all(bool(layer.inited.item()) for layer in model.quantizer.vq.layers)
    wav = torch.randn(2, 1, 8000)
    with torch.no_grad():
        codes = model.encode(wav)[0]
        assert codes.shape[1] == 6 and torch.equal(codes[:, :4], first.encode(wav)[0])
        latent = model.encoder(wav)
        error = [(latent - model.quantizer.decode(codes[:, :k])).pow(2).mean().item() for k in (4, 6)]
    assert error[1] < error[0]
    too_few = compose_config(debug_overrides(manifest, epochs=1, updates=1)
                             + [f"continue_from={tmp_path / 'first'}", "+grow_quantizer=true", "rvq.n_q=4"])
    with pytest.raises(ValueError, match="set rvq.n_q larger than 4"):
        get_solver(too_few, folder=tmp_path / "same").restore()
    other_bins = compose_config(debug_overrides(manifest, epochs=1, updates=1)
                                + [f"continue_from={tmp_path / 'first'}", "+grow_quantizer=true", "rvq.n_q=6",
                                   "rvq.bins=16"])
    with pytest.raises(ValueError, match="rvq.bins"):
        get_solver(other_bins, folder=tmp_path / "bins").restore()
    with pytest.raises(ValueError, match="drop \\+reinit"):
        get_solver(compose_config(debug_overrides(manifest, epochs=1, updates=1)
                                  + [f"continue_from={tmp_path / 'first'}", "+grow_quantizer=true", "rvq.n_q=6",
                                     "+reinit=[quantizer]"]), folder=tmp_path / "both").build()


def test_decoder_trains_for_the_first_codebooks_only(manifest, tmp_path):
    """+active_codebooks=2 with the encoder and quantizer frozen: the model encodes and decodes with the first
    2 codebooks (the prefix of its full codes), and only the decoder learns."""
    solver = _decoder_only_solver(manifest, tmp_path, epochs=1, updates=2, options=["+active_codebooks=2"])
    first = CompressionSolver.model_from_checkpoint(tmp_path / "first")  # its best state, all codebooks
    wav = torch.randn(2, 1, 8000)
    with torch.no_grad():
        full = first.encode(wav)[0]
        assert full.shape[1] > 2
        assert torch.equal(solver.model.eval().encode(wav)[0], full[:, :2])
    solver.run()
    train = solver.history[-1]["train"]
    rate = first.frame_rate * 2 * torch.log2(torch.tensor(float(first.cardinality))).item() / 1000
    assert train["bandwidth"] == pytest.approx(rate)  # kbit/s of 2 codebooks
    with torch.no_grad():
        assert torch.equal(solver.model.eval().encode(wav)[0], full[:, :2])
    with pytest.raises(ValueError, match="active_codebooks=9.*from 1 to"):
        get_solver(compose_config(debug_overrides(manifest, epochs=1, updates=1) + ["+active_codebooks=9"]),
                   folder=tmp_path / "bad").build()


def test_new_quantizer_on_a_trained_codec(manifest, tmp_path):
    """+reinit=[quantizer] with other codebooks: encoder and decoder come from continue_from, the new codebooks
    are fitted by k-means on quantizer_init_batches batches before the first update, then stay frozen."""
    solver = _decoder_only_solver(manifest, tmp_path, epochs=1, updates=2,
                                  options=["rvq.n_q=2", "rvq.bins=8", "+reinit=[quantizer]",
                                           "+quantizer_init_batches=3"])
    first = CompressionSolver.model_from_checkpoint(tmp_path / "first")
    state = solver.model.state_dict()
    for key, value in first.state_dict().items():
        if key.startswith(("encoder.", "decoder.")):
            assert torch.equal(state[key], value), key
    layers = solver.model.quantizer.vq.layers
    assert len(layers) == 2 and all(layer.inited.item() == 1 for layer in layers)
    # fitted on the latents of 3 batches: every entry is the mean of a cluster of them, so quantizing those
    # latents is closer than with entries drawn from them at random
    frames = []
    for batch in solver._batches(solver.dataloaders["train"], 3):
        with torch.no_grad():
            frames.append(solver.model.encoder(batch[0] if isinstance(batch, (tuple, list)) else batch))
    latent = torch.cat(frames, dim=-1)
    codebook = layers[0].codebook
    assert torch.unique(codebook, dim=0).shape[0] == 8
    flat = latent.transpose(1, 2).reshape(-1, latent.shape[1])
    fitted_error = torch.cdist(flat, codebook).min(dim=1).values.pow(2).mean()
    drawn_error = torch.cdist(flat, flat[torch.randperm(len(flat))[:8]]).min(dim=1).values.pow(2).mean()
    assert fitted_error < drawn_error
    wav = torch.randn(2, 1, 8000)
    with torch.no_grad():
        codes = solver.model.eval().encode(wav)[0]
    assert codes.shape[1] == 2 and int(codes.max()) < 8
    solver.run()
    with torch.no_grad():
        assert torch.equal(solver.model.eval().encode(wav)[0], codes)
    assert torch.equal(CompressionSolver.model_from_checkpoint(tmp_path / "second").encode(wav)[0], codes)


def test_runs_that_only_fit_a_quantizer_or_put_parts_together(manifest, tmp_path):
    """With every part frozen nothing trains: a run fits a new quantizer (the same fit for the same seed) or
    takes parts from other codecs, and saves the result."""
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=2)), tmp_path / "a")
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=2) + ["seed=7"]), tmp_path / "b")
    a, b = (CompressionSolver.model_from_checkpoint(tmp_path / name).state_dict() for name in ("a", "b"))
    everything = ["+freeze=[encoder,quantizer,decoder]", "optim.epochs=1", "optim.updates_per_epoch=1"]
    fits = []
    for name in ("fit1", "fit2"):
        cfg = compose_config(debug_overrides(manifest) + everything + [
            f"continue_from={tmp_path / 'a'}", "+reinit=[quantizer]", "+quantizer_init_batches=2", "rvq.bins=8"])
        solver = _run(cfg, tmp_path / name)
        assert solver.optimizer is None and "optimizer" not in solver.state_dict()
        fits.append(CompressionSolver.model_from_checkpoint(tmp_path / name).state_dict())
    for key, value in fits[0].items():
        assert torch.equal(value, fits[1][key]), key
        if not key.startswith("quantizer."):
            assert torch.equal(value, a[key]), key
    assert fits[0]["quantizer.vq.layers.0._codebook.embed"].shape[0] == 8
    cfg = compose_config(debug_overrides(manifest) + everything + [
        f"continue_from={tmp_path / 'a'}", f"+parts_from.decoder={tmp_path / 'b'}"])
    _run(cfg, tmp_path / "joined")
    joined = CompressionSolver.model_from_checkpoint(tmp_path / "joined").state_dict()
    for key, value in joined.items():
        assert torch.equal(value, (b if key.startswith("decoder.") else a)[key]), key
    assert any(not torch.equal(a[key], b[key]) for key in a if key.startswith("decoder."))


def test_new_quantizer_options_are_checked(manifest, tmp_path):
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=1)), tmp_path / "first")
    base = debug_overrides(manifest, epochs=1, updates=1)
    cases = [(["rvq.bins=8"], r"its quantizer does not have this config's shapes.*\+reinit=\[quantizer\]"),
             (["rvq.bins=8", "+reinit=[quantizer]", "+freeze=[encoder,quantizer]"], r"\+quantizer_init_batches"),
             (["+reinit=[quantizer]", "+quantizer_init_batches=0"], "quantizer_init_batches=0"),
             (["+reinit=[quantiser]"], "unknown part"),
             ([f"+parts_from.decoder={tmp_path / 'first'}", "rvq.bins=8"], r"its quantizer does not have"),
             (["+freeze=[encoder,quantizer,decoder]"], "nothing would be trained")]
    for options, message in cases:
        solver = get_solver(compose_config(base + [f"continue_from={tmp_path / 'first'}", *options]),
                            folder=tmp_path / "bad")
        with pytest.raises(ValueError, match=message):
            solver.restore()
    for option in ("+reinit=[quantizer]", f"+parts_from.decoder={tmp_path / 'first'}"):
        with pytest.raises(ValueError, match="continue_from is not set"):
            get_solver(compose_config(base + [option]), folder=tmp_path / "bad2").build()


def test_adversaries_from_starts_the_discriminators_of_another_run(manifest, tmp_path):
    """+adversaries_from=<run>: a fresh run starts with that run's discriminator weights (its optimizer
    afresh); a resumed run keeps its own; other discriminator shapes are refused with the option to fix."""
    adversary = WITH_ADVERSARY + ["adversarial.every=1"]  # a discriminator step on every update, whatever the seed
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=2) + adversary), tmp_path / "first")
    theirs = checkpoint.load_checkpoint(tmp_path / "first" / "checkpoint.th", trust_pickle=True)["adv_losses"]
    options = debug_overrides(manifest, epochs=1, updates=1) + adversary + [
        f"continue_from={tmp_path / 'first'}", f"+adversaries_from={tmp_path / 'first'}"]
    solver = get_solver(compose_config(options), folder=tmp_path / "second")
    solver.restore()
    weights = {key: value for key, value in solver.adv_losses.state_dict().items() if not key.endswith("optimizer")}
    assert weights and all(torch.equal(value, theirs[key]) for key, value in weights.items())
    assert solver.adv_losses["msstftd"].optimizer.state_dict()["state"] == {}
    fresh = get_solver(compose_config(options[:-1]), folder=tmp_path / "third")
    fresh.restore()
    assert any(not torch.equal(value, fresh.adv_losses.state_dict()[key]) for key, value in weights.items())
    solver.run()  # trains one epoch: its checkpoint now holds its own discriminator
    own = {key: value.clone() for key, value in solver.adv_losses.state_dict().items() if key in weights}
    resumed = get_solver(compose_config(options), folder=tmp_path / "second")
    resumed.restore()
    assert all(torch.equal(value, own[key]) for key, value in resumed.adv_losses.state_dict().items() if key in own)
    assert any(not torch.equal(own[key], theirs[key]) for key in own)
    wider = get_solver(compose_config(options + ["msstftd.filters=4"]), folder=tmp_path / "bad")
    with pytest.raises(ValueError, match="msstftd.filters"):
        wider.restore()
    exported = export_compression(tmp_path / "first", tmp_path / "exported" / "compression_state_dict.bin")
    plain = get_solver(compose_config(options[:-1] + [f"+adversaries_from={exported}"]), folder=tmp_path / "bad3")
    with pytest.raises(ValueError, match="holds no discriminator"):
        plain.restore()
    with pytest.raises(ValueError, match="trains no discriminator"):
        get_solver(compose_config(debug_overrides(manifest) + [f"+adversaries_from={tmp_path / 'first'}"]),
                   folder=tmp_path / "bad2").build()


def test_every_part_frozen_with_adversaries_trains_the_discriminators_alone(manifest, tmp_path):
    """A discriminator warm-up: the codec's weights stay those of continue_from, the discriminators learn."""
    adversary = WITH_ADVERSARY + ["adversarial.every=1"]
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=1) + adversary), tmp_path / "first")
    codec = CompressionSolver.model_from_checkpoint(tmp_path / "first").state_dict()
    start = checkpoint.load_checkpoint(tmp_path / "first" / "checkpoint.th", trust_pickle=True)["adv_losses"]
    solver = _run(compose_config(debug_overrides(manifest, epochs=1, updates=2) + adversary + [
        f"continue_from={tmp_path / 'first'}", f"+adversaries_from={tmp_path / 'first'}",
        "+freeze=[encoder,quantizer,decoder]"]), tmp_path / "warm-up")
    assert solver.optimizer is None
    warmed = CompressionSolver.model_from_checkpoint(tmp_path / "warm-up").state_dict()
    assert all(torch.equal(value, codec[key]) for key, value in warmed.items())
    trained = checkpoint.load_checkpoint(tmp_path / "warm-up" / "checkpoint.th", trust_pickle=True)["adv_losses"]
    weights = [key for key in start if not key.endswith("optimizer")]
    assert weights and any(not torch.equal(trained[key], start[key]) for key in weights)


def test_a_dead_code_threshold_that_would_churn_the_codebooks_is_warned(manifest, tmp_path, caplog):
    base = debug_overrides(manifest, epochs=1, updates=1)
    solver = get_solver(compose_config(base), folder=tmp_path / "probe")
    solver.build()
    usage = 2 * 0.5 * solver.model.frame_rate / 32  # batch 2 x 0.5 s of latent frames over 32 entries
    cases = [([f"rvq.threshold_ema_dead_code={usage}"], True), ([f"rvq.threshold_ema_dead_code={usage / 4}"], False),
             ([f"rvq.threshold_ema_dead_code={usage}", "+freeze=[quantizer]"], False),
             (["rvq.threshold_ema_dead_code=0"], False)]
    for options, warned in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="audiocraft"):
            get_solver(compose_config(base + options), folder=tmp_path / "xp").build()
        churn = [r.getMessage() for r in caplog.records if "codebooks churn" in r.getMessage()]
        assert bool(churn) == warned, options
        if warned:
            assert "32 entries" in churn[0] and "+freeze=[quantizer]" in churn[0]


@pytest.mark.parametrize("freeze, message", [(["encoder", "bottleneck"], "unknown part"),
                                             (["encoder", "quantizer", "decoder"], "nothing would be trained")])
def test_bad_freeze_option_is_an_actionable_error(manifest, tmp_path, freeze, message):
    cfg = compose_config(debug_overrides(manifest, epochs=1, updates=1) + [f"+freeze=[{','.join(freeze)}]"])
    with pytest.raises(ValueError, match=message):
        get_solver(cfg, folder=tmp_path / "xp").build()


# ---------------------------------------------------------------------------- decoder training on LM codes

@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    from audiocraft.models.loaders import load_lm_model
    return load_lm_model(tiny_model_dir)  # 4 codebooks of 64 codes, delay pattern


def _random_codes(lm, batch: int = 3, frames: int = 12) -> torch.Tensor:
    return torch.randint(0, lm.card, (batch, lm.n_q, frames), generator=torch.Generator().manual_seed(1))


def test_lm_resampler_with_top_k_1_takes_the_lm_prediction_of_each_position(tiny_lm):
    """Greedy resampling gives exactly the argmax of the teacher-forced, unconditioned predictions at every
    position from `first_codebook` on (the last frames of delayed codebooks included); earlier codebooks
    keep their codes."""
    from audiocraft.modules.conditioners import ConditioningAttributes
    from audiocraft.solvers.compression import LMResampler

    codes = _random_codes(tiny_lm)
    resampler = LMResampler(tiny_lm, p=1.0, first_codebook=1, top_k=1)
    out = resampler.resample(codes, torch.Generator().manual_seed(0))
    null = [ConditioningAttributes(text={"description": None}) for _ in range(codes.shape[0])]
    with torch.no_grad():
        predicted = tiny_lm.compute_predictions(codes, null, keep_only_valid_steps=False)
    assert predicted.mask.all()
    assert torch.equal(out[:, 1:], predicted.logits.argmax(-1)[:, 1:])
    assert torch.equal(out[:, 0], codes[:, 0])
    assert (out[:, 1:] != codes[:, 1:]).float().mean() > 0.5  # random codes: the LM disagrees


def test_lm_resampler_acts_on_a_share_of_items_and_positions(tiny_lm):
    from audiocraft.solvers.compression import LMResampler

    codes = _random_codes(tiny_lm, batch=64)
    out = LMResampler(tiny_lm, p=0.5, rate=0.5).resample(codes, torch.Generator().manual_seed(0))
    changed_items = (out != codes).flatten(1).any(-1)
    assert 16 < int(changed_items.sum()) < 48  # about half of the 64 items
    changed = (out != codes)[changed_items].float().mean()
    assert 0.25 < changed < 0.55  # about half of the positions, minus samples equal to the real code
    again = LMResampler(tiny_lm, p=0.5, rate=0.5).resample(codes, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the solver's generator makes it reproducible


@pytest.mark.parametrize("kwargs, message", [({"p": 0.0}, r"p=0.0 must lie in"),
                                             ({"p": 1.0, "rate": 1.5}, r"rate=1.5 must lie in"),
                                             ({"p": 1.0, "first_codebook": 4}, "0 to 3"),
                                             ({"p": 1.0, "top_k": 0}, "top_k"),
                                             ({"p": 1.0, "temperature": 0.0}, "temperature")])
def test_lm_resampler_bad_options_are_actionable_errors(tiny_lm, kwargs, message):
    from audiocraft.solvers.compression import LMResampler
    with pytest.raises(ValueError, match=message):
        LMResampler(tiny_lm, **kwargs)


def test_reconstruct_decodes_the_resampled_codes(tiny_lm, tiny_model_dir):
    """reconstruct is the codec's forward with the codes replaced before decoding: the same output when the
    codes are kept, the decoding of the new codes otherwise; it refuses a quantizer in training mode."""
    from audiocraft.models.loaders import load_compression_model
    from audiocraft.solvers.compression import LMResampler

    codec = load_compression_model(tiny_model_dir).eval()  # the tiny LM's codec
    resampler = LMResampler(tiny_lm, p=1.0)
    x = torch.randn(2, 1, 3200)
    with torch.no_grad():
        reference = codec(x)
        resampler.resample = lambda codes, generator=None: codes
        kept = resampler.reconstruct(codec, x)
        assert torch.equal(kept.x, reference.x) and torch.equal(kept.codes, reference.codes)
        other = torch.randint(0, tiny_lm.card, reference.codes.shape, generator=torch.Generator().manual_seed(2))
        resampler.resample = lambda codes, generator=None: other
        changed = resampler.reconstruct(codec, x)
        assert torch.equal(changed.codes, other)
        assert torch.allclose(changed.x, codec.decode(other)[..., :x.shape[-1]], atol=1e-6)
        resampler.resample = lambda codes, generator=None: codes[:, :2]
        with pytest.raises(ValueError, match="must keep it"):
            resampler.reconstruct(codec, x)
    codec.quantizer.train()
    with pytest.raises(ValueError, match="eval mode"):
        resampler.reconstruct(codec, x)


def test_decoder_trains_on_lm_resampled_codes(manifest, tmp_path, tiny_model_dir):
    """+lm_resample: the decoder trains on the LM's codes, the encoder and quantizer stay frozen; the option
    is refused without the freeze and with an LM of other codebooks."""
    codec = ["rvq.bins=64"]  # the tiny LM's 4 codebooks of 64 codes
    _run(compose_config(debug_overrides(manifest, epochs=1, updates=2) + codec), tmp_path / "first")
    resample = [f"+lm_resample.lm={tiny_model_dir}", "+lm_resample.p=1.0", "+lm_resample.first_codebook=1"]
    follow = compose_config(debug_overrides(manifest, epochs=1, updates=2) + codec + resample
                            + [f"continue_from={tmp_path / 'first'}", "+freeze=[encoder,quantizer]",
                               "optim.ema.use=false", "optim.lr=3e-3"])
    seed_all(0)
    solver = get_solver(follow, folder=tmp_path / "second")
    solver.restore()
    assert solver.lm_resampler is not None and solver.lm_resampler.first_codebook == 1
    calls = []
    original = solver.lm_resampler.resample
    solver.lm_resampler.resample = lambda codes, generator=None: calls.append(codes.shape) or original(codes, generator)
    before = {key: value.clone() for key, value in solver.model.state_dict().items()}
    solver.run()
    assert len(calls) == 2  # one per training update, none in valid / evaluate
    after = solver.model.state_dict()
    assert all(torch.equal(after[key], before[key]) for key in after if key.startswith(("encoder.", "quantizer.")))
    assert any(not torch.equal(after[key], before[key]) for key in after if key.startswith("decoder."))

    unfrozen = compose_config(debug_overrides(manifest, epochs=1, updates=1) + codec + resample)
    with pytest.raises(ValueError, match=r"\+freeze=\[encoder,quantizer\]"):
        get_solver(unfrozen, folder=tmp_path / "third").build()
    other_codec = compose_config(debug_overrides(manifest, epochs=1, updates=1) + resample
                                 + ["+freeze=[encoder,quantizer]"])  # 32 codes per codebook
    with pytest.raises(ValueError, match="use an LM trained on this codec"):
        get_solver(other_codec, folder=tmp_path / "fourth").build()
    typo = compose_config(debug_overrides(manifest, epochs=1, updates=1) + codec + resample
                          + ["+freeze=[encoder,quantizer]", "+lm_resample.prob=0.5"])
    with pytest.raises(ValueError, match="unknown option"):
        get_solver(typo, folder=tmp_path / "fifth").build()
    half = compose_config(debug_overrides(manifest, epochs=1, updates=1) + codec
                          + ["+freeze=[encoder,quantizer]", f"+lm_resample.lm={tiny_model_dir}"])
    with pytest.raises(ValueError, match="needs both `lm`"):
        get_solver(half, folder=tmp_path / "sixth").build()
