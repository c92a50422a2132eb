"""Loading AudioCraft checkpoints from a local file, a local folder or the Hugging Face Hub.

Released checkpoints are ``torch.save``-d dicts:

- ``{'best_state': <state dict>, 'xp.cfg': <OmegaConf YAML string>, 'version': ..., 'exported': True}``
  (the model is rebuilt from ``xp.cfg`` with :mod:`audiocraft.models.builders`), or
- a pointer ``{'pretrained': <name>}`` for a compression model published elsewhere
  (e.g. ``'facebook/encodec_32khz'``, a ``transformers`` EnCodec).

Generic part: :func:`resolve_checkpoint_file`, :func:`load_checkpoint`, :func:`load_state_dict_checked`.
Compression part: :func:`load_compression_model_ckpt`, :func:`load_compression_model`.
Language-model part: :func:`load_lm_model_ckpt`, :func:`load_lm_model`.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..utils.checkpoint import load_checkpoint as load_checkpoint_file

#: File name of the compression model inside a model folder / hub repository.
COMPRESSION_CHECKPOINT = "compression_state_dict.bin"
_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".th", ".ckpt", ".safetensors")


def get_audiocraft_cache_dir() -> str | None:
    """Hub download cache set by the ``AUDIOCRAFT_CACHE_DIR`` environment variable, if any."""
    return os.environ.get("AUDIOCRAFT_CACHE_DIR") or None


def looks_like_local_path(name: str) -> bool:
    """True if ``name`` can only be a local path (not a Hub ``owner/name`` repository id)."""
    return (name.startswith(("/", "~", ".", "\\")) or "\\" in name or name.count("/") > 1
            or (len(name) > 1 and name[1] == ":")  # Windows drive
            or name.lower().endswith(_CHECKPOINT_SUFFIXES))


# ============================================================================ generic checkpoint files

def resolve_checkpoint_file(name_or_path: str | Path, filename: str, cache_dir: str | Path | None = None) -> Path:
    """Find the checkpoint file named by ``name_or_path``.

    Args:
        name_or_path: a local file (returned as is), a local folder (``<folder>/<filename>``),
            or a Hugging Face Hub repository id such as ``'facebook/musicgen-small'``.
        filename: file to take from a folder or repository, e.g. ``'state_dict.bin'``.
        cache_dir: Hub download cache; default ``$AUDIOCRAFT_CACHE_DIR`` or the Hugging Face default.
    Returns:
        Path of an existing local file.
    Raises:
        FileNotFoundError: missing local path, or the Hub file cannot be found or fetched
            (e.g. offline); the message says how to use a local copy instead.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / filename
        if not candidate.is_file():
            present = sorted(p.name for p in path.iterdir())[:10]
            raise FileNotFoundError(f"Folder {str(path)!r} (`name_or_path`) has no {filename!r}; it contains "
                                    f"{present}. Pass the checkpoint file itself or a folder holding {filename!r}.")
        return candidate
    if looks_like_local_path(name):
        raise FileNotFoundError(f"`name_or_path` {name!r} does not exist (resolved to {str(path.absolute())!r}). "
                                f"Pass an existing file or folder, or a Hub repository id like 'facebook/musicgen-small'.")
    return _download_from_hub(name, filename, cache_dir)


def _download_from_hub(repo_id: str, filename: str, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError

    cache_dir = cache_dir if cache_dir is not None else get_audiocraft_cache_dir()
    local_copy_hint = (f"To use a local copy, download it where you have a connection (e.g. "
                       f"`hf download {repo_id} {filename} --local-dir <folder>`) and pass the folder "
                       f"path (the folder must contain {filename!r}).")
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir,
                                    library_name="audiocraft"))
    except HFValidationError as exc:
        raise FileNotFoundError(f"`name_or_path` {repo_id!r} is neither an existing local path nor a valid Hugging "
                                f"Face repository id ({exc}).") from exc
    except (LocalEntryNotFoundError, ConnectionError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
        reason = "HF_HUB_OFFLINE is set" if offline else "no connection to the Hub"
        raise FileNotFoundError(f"Cannot get {filename!r} of Hub repository {repo_id!r}: it is not in the local "
                                f"cache and {reason}. No local folder {repo_id!r} exists either. "
                                f"{local_copy_hint}") from exc
    except (EntryNotFoundError, OSError) as exc:
        raise FileNotFoundError(f"Cannot get {filename!r} from Hub repository {repo_id!r} ({type(exc).__name__}: "
                                f"{exc}). Check the name, or {local_copy_hint[0].lower()}{local_copy_hint[1:]}") from exc


def load_checkpoint(name_or_path: str | Path, filename: str, cache_dir: str | Path | None = None,
                    *, trust_pickle: bool = False) -> dict:
    """Load a checkpoint dict (on CPU) from a file, a folder or a Hub repository (see :func:`resolve_checkpoint_file`).

    The file is read with ``torch.load(weights_only=True)``, which handles released
    AudioCraft files (tensors, dicts, strings). Files holding arbitrary pickled objects
    are refused unless ``trust_pickle=True`` (only for files you trust: unpickling can run code).
    """
    return load_checkpoint_file(resolve_checkpoint_file(name_or_path, filename, cache_dir), trust_pickle=trust_pickle)


def load_state_dict_checked(model: nn.Module, state_dict: dict, source: str) -> None:
    """``model.load_state_dict(state_dict)`` with a readable ``ValueError`` when names or shapes differ.

    Tensors are converted to the model's dtypes (e.g. float16 checkpoints into float32 models).
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [f"{key}: file {list(state_dict[key].shape)} vs model {list(value.shape)}"
                for key, value in expected.items()
                if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)]
    if missing or unexpected or reshaped:
        problems = []
        for label, items in (("missing from the file", missing), ("unexpected in the file", unexpected),
                             ("with a different shape", reshaped)):
            if items:
                problems.append(f"{len(items)} {label} (first: {items[:5]})")
        raise ValueError(f"The weights in {source} do not match the model built from its config: "
                         f"{'; '.join(problems)}. The file's config (xp.cfg) does not describe these weights: "
                         "it was edited, comes from another model or AudioCraft version, or the file is not a "
                         "checkpoint of this kind of model.")
    model.load_state_dict(state_dict)


# ============================================================================ compression model

def load_compression_model_ckpt(name_or_path: str | Path, cache_dir: str | Path | None = None) -> dict:
    """The raw compression checkpoint dict (``compression_state_dict.bin`` of a folder or Hub repository)."""
    return load_checkpoint(name_or_path, COMPRESSION_CHECKPOINT, cache_dir)


def load_compression_model(name_or_path: str | Path, device: torch.device | str = "cpu",
                           cache_dir: str | Path | None = None):
    """Load a compression model released in AudioCraft's format, in eval mode, on ``device``.

    Args:
        name_or_path: a ``compression_state_dict.bin`` file, a folder holding one, or a Hub
            repository id (e.g. ``'facebook/musicgen-small'``).
        device: where to put the model.
        cache_dir: Hub download cache.
    Returns:
        A :class:`~audiocraft.models.encodec.CompressionModel`. A pointer checkpoint
        ``{'pretrained': name}`` is followed with ``CompressionModel.get_pretrained(name)``.
    """
    from . import builders
    from .encodec import CompressionModel
    from omegaconf import OmegaConf

    package = load_compression_model_ckpt(name_or_path, cache_dir)
    if "pretrained" in package:
        return CompressionModel.get_pretrained(package["pretrained"], device=device)
    missing = [key for key in ("xp.cfg", "best_state") if key not in package]
    if missing:
        raise ValueError(f"Compression checkpoint {str(name_or_path)!r} lacks {missing} (keys: {sorted(package)[:10]}); "
                         "expected an exported AudioCraft checkpoint {'best_state', 'xp.cfg'} or a pointer "
                         "{'pretrained': name}.")
    cfg = OmegaConf.create(package["xp.cfg"])
    model = builders.get_compression_model(cfg)
    load_state_dict_checked(model, package["best_state"], f"compression checkpoint {str(name_or_path)!r}")
    return model.to(device).eval()


# ============================================================================ language model

#: File name of the language model inside a model folder / hub repository.
LM_CHECKPOINT = "state_dict.bin"

# Config entries of older releases that today's builders no longer take.
_STALE_LM_KEYS = ("conditioners.self_wav.chroma_stem.cache_path", "conditioners.args.merge_text_conditions_p",
                  "conditioners.args.drop_desc_p")


def load_lm_model_ckpt(name_or_path: str | Path, cache_dir: str | Path | None = None) -> dict:
    """The raw LM checkpoint dict (``state_dict.bin`` of a folder or Hub repository)."""
    return load_checkpoint(name_or_path, LM_CHECKPOINT, cache_dir)


def _delete_key(cfg, dotted: str) -> None:
    from omegaconf import OmegaConf
    *parents, leaf = dotted.split(".")
    node = cfg
    for part in parents:
        if part not in node:
            return
        node = node[part]
    if leaf in node:
        OmegaConf.set_struct(node, False)
        del node[leaf]


def load_lm_model(name_or_path: str | Path, device: torch.device | str = "cpu",
                  cache_dir: str | Path | None = None):
    """Load a language model released in AudioCraft's format, in eval mode, on ``device``.

    Float16 weights (as released) are copied into a float32 model on CPU and a float16
    model on GPU, as AudioCraft does. The training config is kept as ``model.cfg``.

    Args:
        name_or_path: a ``state_dict.bin`` file, a folder holding one, or a Hub repository id.
        device: where to put the model.
        cache_dir: Hub download cache.
    """
    from omegaconf import OmegaConf

    from . import builders

    package = load_lm_model_ckpt(name_or_path, cache_dir)
    missing = [key for key in ("xp.cfg", "best_state") if key not in package]
    if missing:
        raise ValueError(f"LM checkpoint {str(name_or_path)!r} lacks {missing} (keys: {sorted(package)[:10]}); "
                         "expected an exported AudioCraft checkpoint {'best_state', 'xp.cfg'}.")
    cfg = OmegaConf.create(package["xp.cfg"])
    cfg.device = str(device)
    cfg.dtype = "float32" if torch.device(device).type == "cpu" else "float16"
    for key in _STALE_LM_KEYS:
        _delete_key(cfg, key)
    model = builders.get_lm_model(cfg)
    load_state_dict_checked(model, package["best_state"], f"LM checkpoint {str(name_or_path)!r}")
    model.cfg = cfg
    return model.eval()
