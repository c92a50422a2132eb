"""Training checkpoints: names, atomic saving, loading, locating, pruning, RNG state.

An experiment folder holds ``checkpoint.th`` (the latest state, rewritten after every
epoch) and optionally ``checkpoint_<epoch>.th`` copies. Files are written to a temporary
file in the same folder and renamed over the target (``os.replace``), so a process killed
at any moment leaves either the previous or the new checkpoint, never a truncated one.

Checkpoints written here only hold tensors, numbers, strings, lists and dicts (the config is
stored as YAML text), so they load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..environment import get_dora_dir, resolve_reference_path

logger = logging.getLogger(__name__)

SIG_PREFIX = "//sig/"
PRETRAINED_PREFIX = "//pretrained/"
_EPOCH_FILE = re.compile(r"^checkpoint_(\d+)\.th$")


def checkpoint_name(name: str | int | None = None) -> str:
    """File name of a checkpoint: ``checkpoint.th`` (latest), ``checkpoint_<name>.th`` otherwise (e.g. an epoch)."""
    return "checkpoint.th" if name is None else f"checkpoint_{name}.th"


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Save ``state`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.debug("Checkpoint saved to %s", path)
    return path


def load_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> dict:
    """Load a checkpoint dict on CPU.

    Args:
        path: checkpoint file.
        trust_pickle: also accept files holding arbitrary Python objects (e.g. checkpoints
            written by Meta's AudioCraft, whose config is a pickled ``DictConfig``). Only for
            files you trust: unpickling can run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise ValueError(f"Checkpoint {str(path)!r} holds Python objects that torch.load(weights_only=True) "
                             "refuses; load it with trust_pickle=True if you trust the file.") from exc
        logger.warning("Loading %s with full unpickling (trusted file).", path)
        state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict):
        raise ValueError(f"Checkpoint {str(path)!r} holds a {type(state).__name__}, not a checkpoint dict "
                         "(a training checkpoint, or a released file with 'best_state' and 'xp.cfg').")
    return state


def resolve_checkpoint_path(sig_or_path: str | os.PathLike, name: str | int | None = None,
                            dora_dir: str | os.PathLike | None = None) -> Path:
    """Find a training checkpoint file.

    Args:
        sig_or_path: ``//sig/<signature>`` (an experiment of ``dora_dir``), an experiment folder,
            a checkpoint file, or ``//reference/<path>``.
        name: which checkpoint of a folder (None: the latest, ``checkpoint.th``).
        dora_dir: experiments root; default ``$AUDIOCRAFT_DORA_DIR`` (see :mod:`audiocraft.environment`).
    Returns:
        The path of an existing file.
    Raises:
        FileNotFoundError: nothing found; the message says where it looked.
    """
    text = str(sig_or_path)
    if text.startswith(PRETRAINED_PREFIX):
        raise ValueError(f"{text!r} names a pretrained model, not a training checkpoint; load it with "
                         "CompressionModel.get_pretrained / MusicGen.get_pretrained instead.")
    if text.startswith(SIG_PREFIX):
        sig = text[len(SIG_PREFIX):].strip("/")
        root = Path(dora_dir).expanduser() if dora_dir is not None else get_dora_dir()
        path = root / "xps" / sig
        if not path.is_dir():
            raise FileNotFoundError(f"No experiment with signature {sig!r} in {str(root / 'xps')!r}. Check the "
                                    "signature, or set AUDIOCRAFT_DORA_DIR to the folder the run used.")
    else:
        path = resolve_reference_path(text)
    if path.is_dir():
        path = path / checkpoint_name(name)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {str(path)!r} (from {text!r}); pass an experiment folder holding "
                                f"{checkpoint_name(name)}, a checkpoint file, or //sig/<signature>.")
    return path


def flush_stale_checkpoints(folder: str | os.PathLike, keep_last: int | None) -> list[Path]:
    """Delete all but the ``keep_last`` most recent ``checkpoint_<epoch>.th`` of ``folder``; returns the deleted files.

    ``keep_last`` None or <= 0 keeps everything. ``checkpoint.th`` is never deleted.
    """
    if not keep_last or keep_last <= 0:
        return []
    epochs = []
    for path in Path(folder).iterdir():
        match = _EPOCH_FILE.match(path.name)
        if match:
            epochs.append((int(match.group(1)), path))
    stale = [path for _, path in sorted(epochs)[:-keep_last]]
    for path in stale:
        logger.debug("Removing old checkpoint %s", path)
        path.unlink(missing_ok=True)
    return stale


# ----------------------------------------------------------------------------- random number generators

def capture_rng_state() -> dict[str, Any]:
    """State of the Python, NumPy, torch CPU and CUDA generators (only plain types and tensors)."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            logger.warning("Saved CUDA generator states are for %d devices, this machine has %d; not restored.",
                           len(cuda_states), torch.cuda.device_count())


def load_run_checkpoint(source: str | os.PathLike) -> tuple[Path, dict, Any]:
    """``(path, package, cfg)`` of a training checkpoint or exported file that carries its config.

    ``source`` is ``//sig/<signature>``, an experiment folder or a file; ``cfg`` is the package's
    ``xp.cfg`` as an OmegaConf object.
    """
    from omegaconf import OmegaConf

    path = resolve_checkpoint_path(str(source))
    package = load_checkpoint(path, trust_pickle=True)
    if "xp.cfg" not in package:
        raise ValueError(f"{str(path)!r} has no 'xp.cfg'; it is not a checkpoint of an AudioCraft training run.")
    cfg = package["xp.cfg"]
    return path, package, OmegaConf.create(cfg) if isinstance(cfg, str) else cfg


def best_model_state(package: dict, path: str | os.PathLike) -> dict:
    """The model state of a checkpoint: its best state (EMA weights when EMA is on), else the last one."""
    best = package.get("best_state")
    if package.get("exported"):
        return best
    state = best.get("model") if isinstance(best, dict) and best else package.get("model")
    if state is None:
        raise ValueError(f"{str(path)!r} holds neither best_state['model'] nor 'model'; nothing to export.")
    return state
