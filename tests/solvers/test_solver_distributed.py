"""Data-parallel training with two CPU processes (gloo on 127.0.0.1), started like torchrun does."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from solver_helpers import single_thread, write_tiny_dataset

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    manifest = write_tiny_dataset(work / "data")
    port = str(_free_port())
    processes = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        log = open(work / f"worker_{rank}.log", "w")
        processes.append((subprocess.Popen([sys.executable, str(HERE / "ddp_worker.py"), str(manifest), str(work)],
                                           env=env, cwd=HERE, stdout=log, stderr=subprocess.STDOUT), log))
    for process, log in processes:
        try:
            process.wait(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    for rank, (process, _) in enumerate(processes):
        assert process.returncode == 0, (work / f"worker_{rank}.log").read_text()[-3000:]
    results = [torch.load(work / f"result_{rank}.pt", weights_only=False) for rank in range(2)]
    return manifest, work, results


def test_every_process_ends_with_the_same_weights(two_process_results):
    _, _, results = two_process_results
    assert [r["world_size"] for r in results] == [2, 2]
    for part in ("toy", "compression"):
        first, second = results[0][part]["model"], results[1][part]["model"]
        for key in first:
            assert torch.equal(first[key], second[key]), f"{part}: {key} differs between processes"
        histories = [[{stage: {k: v for k, v in metrics.items() if k != "duration"} for stage, metrics in epoch.items()}
                      for epoch in result[part]["history"]] for result in results]
        assert histories[0] == histories[1]  # metrics are averaged over processes


def test_two_processes_match_one_process_with_the_whole_batch(two_process_results, tmp_path):
    import ddp_worker

    manifest, _, results = two_process_results
    with single_thread():
        single = ddp_worker.run_toy(manifest, tmp_path / "single")
    for key, value in single["model"].items():
        torch.testing.assert_close(results[0]["toy"]["model"][key], value, atol=1e-6, rtol=1e-5)
    for key, value in single["ema"]["state"]["model"].items():
        torch.testing.assert_close(results[0]["toy"]["ema"]["state"]["model"][key], value, atol=1e-6, rtol=1e-5)
    assert results[0]["toy"]["history"][-1]["valid"]["loss"] == pytest.approx(single["history"][-1]["valid"]["loss"],
                                                                              rel=1e-5)
