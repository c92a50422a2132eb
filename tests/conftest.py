"""Shared test set-up: no network, seeded RNGs, sane thread counts, reference fixtures.

The reference material (a tiny MusicGen in AudioCraft's released format and the
outputs the real AudioCraft 1.3.0 computed from it) is shipped in
``tests/assets/reference``; its README says how each output was made.
"""
import os
import random
import socket
from pathlib import Path

REFERENCE_DIR = Path(__file__).parent / "assets" / "reference"

# Must be set before transformers / huggingface_hub are imported anywhere.
os.environ["HF_HOME"] = str(REFERENCE_DIR / "hf_cache")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


class NetworkAccessInTest(RuntimeError):
    pass


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) else address
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def _guarded_connect(self, address):
    if not _is_local(address):
        raise NetworkAccessInTest(f"a test tried to reach the network ({address!r}); tests must run offline")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise NetworkAccessInTest(f"a test tried to reach the network ({address!r}); tests must run offline")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return REFERENCE_DIR / "musicgen_tiny"


def load_reference(name: str) -> dict:
    """Load one of the reference outputs, e.g. ``load_reference('c_greedy')``."""
    return torch.load(REFERENCE_DIR / "musicgen_tiny_refs" / f"{name}.pt", weights_only=True)
