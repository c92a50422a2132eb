"""`python -m audiocraft.train` killed with SIGKILL mid-epoch, then started again, ends like an uninterrupted run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiocraft.solvers import get_solver
from audiocraft.utils import checkpoint
from solver_helpers import (REPO, assert_states_equal, compose_config, debug_overrides, seed_all, single_thread,
                            write_tiny_dataset)

EPOCHS, UPDATES = 2, 15  # an epoch lasts long enough (~1 s) to be killed in the middle of epoch 2


def _command(manifest: Path) -> list[str]:
    return [sys.executable, "-m", "audiocraft.train", *debug_overrides(manifest, epochs=EPOCHS, updates=UPDATES)]


def _env(dora_dir: Path) -> dict:
    return {**os.environ, "AUDIOCRAFT_DORA_DIR": str(dora_dir), "OMP_NUM_THREADS": "1"}


def _final_checkpoint(dora_dir: Path) -> dict:
    (path,) = dora_dir.glob("xps/*/checkpoint.th")
    return checkpoint.load_checkpoint(path)


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_exactly(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data")
    command = _command(manifest)

    # the uninterrupted run, in this process (same single-threaded float32 CPU arithmetic as the subprocesses)
    cfg = compose_config(debug_overrides(manifest, epochs=EPOCHS, updates=UPDATES))
    with single_thread():
        seed_all(int(cfg.seed))
        get_solver(cfg, folder=tmp_path / "straight").run()

    killed_dir = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(command, env=_env(killed_dir), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300
            while not list(killed_dir.glob("xps/*/checkpoint.th")):
                assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.time() < deadline, "no checkpoint after 300 s"
                time.sleep(0.02)
            process.kill()  # SIGKILL: no cleanup at all, in the middle of epoch 2
        finally:
            process.kill()
            process.wait()
    interrupted = _final_checkpoint(killed_dir)
    assert len(interrupted["history"]) == 1, "the run was not interrupted during epoch 2; raise UPDATES"

    resumed = subprocess.run(command, env=_env(killed_dir), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr

    expected = checkpoint.load_checkpoint(tmp_path / "straight" / "checkpoint.th")
    actual = _final_checkpoint(killed_dir)
    assert len(actual["history"]) == len(expected["history"]) == EPOCHS
    for name in ("model", "optimizer", "ema", "best_state", "rng"):
        assert_states_equal(expected[name], actual[name], name)
    for before, after in zip(expected["history"], actual["history"]):
        assert before["train"]["g_loss"] == after["train"]["g_loss"]
