"""Shared set-up of the solver tests: a tiny audio dataset and tiny debug configs."""
from __future__ import annotations

import contextlib
import math
import random
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"


def write_tiny_dataset(root: Path, num_files: int = 4, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """Write ``num_files`` mono wav files (tones + noise) and their manifest; returns the manifest folder."""
    from audiocraft.data.audio import audio_write
    from audiocraft.data.audio_dataset import find_audio_files, save_audio_meta

    generator = torch.Generator().manual_seed(1234)
    time = torch.arange(int(seconds * sample_rate)) / sample_rate
    for index in range(num_files):
        wav = 0.3 * torch.sin(2 * math.pi * (150 + 110 * index) * time) \
            + 0.05 * torch.randn(time.shape, generator=generator)
        audio_write(root / "audio" / f"file{index}", wav[None], sample_rate, strategy="clip")
    manifest = root / "manifest"
    save_audio_meta(manifest / "data.jsonl", find_audio_files(root / "audio", minimal=True))
    return manifest


def debug_overrides(manifest: Path, epochs: int = 2, updates: int = 3) -> list[str]:
    """``solver=compression/debug`` shrunk to a few tiny updates on ``manifest``, on CPU, single-threaded data."""
    data = [f"datasource.{split}={manifest}" for split in ("train", "valid", "evaluate", "generate")]
    return ["solver=compression/debug", "dset=audio/default", "device=cpu", "num_threads=1",
            "datasource.max_sample_rate=16000", "datasource.max_channels=1", *data,
            "dataset.num_workers=0", "dataset.batch_size=2", "dataset.segment_duration=0.5",
            "dataset.train.num_samples=16", "dataset.valid.num_samples=2", "dataset.evaluate.num_samples=2",
            "dataset.evaluate.batch_size=2", "dataset.generate.num_samples=2", "dataset.generate.batch_size=2",
            "dataset.generate.segment_duration=0.5", f"optim.epochs={epochs}", f"optim.updates_per_epoch={updates}",
            "rvq.n_q=4", "rvq.bins=32", "rvq.kmeans_iters=3", "generate.audio.format=wav"]


def compose_config(overrides: list[str]) -> DictConfig:
    """The config of ``config/`` composed with ``overrides`` (Hydra compose API)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread (as ``num_threads: 1`` does in training); 2 threads on a busy 2-core machine are
    several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_all(seed: int) -> None:
    """What ``audiocraft.train`` does before building a solver."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def assert_states_equal(first, second, where: str = "state") -> None:
    """Nested dicts / lists of tensors and numbers are exactly equal."""
    if isinstance(first, dict):
        assert isinstance(second, dict) and set(first) == set(second), \
            f"{where}: keys differ: {set(first) ^ set(second) if isinstance(second, dict) else type(second)}"
        for key, value in first.items():
            assert_states_equal(value, second[key], f"{where}.{key}")
    elif isinstance(first, (list, tuple)):
        assert isinstance(second, (list, tuple)) and len(first) == len(second), f"{where}: lengths differ"
        for index, (value, other) in enumerate(zip(first, second)):
            assert_states_equal(value, other, f"{where}[{index}]")
    elif isinstance(first, torch.Tensor):
        assert torch.equal(first, second), \
            f"{where} differs (max abs diff {(first.float() - second.float()).abs().max().item():.3g})"
    else:
        assert first == second, f"{where}: {first!r} != {second!r}"
