"""Loading what the verbs need: generation models, codecs, checkpoint files and token files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .common import CliError

#: Keys every tokens file written by ``encode`` holds.
TOKENS_KEYS = ("codes", "sample_rate", "frame_rate", "model", "channels", "num_samples")
DEBUG_NAMES = ("debug", "debug_compression_model")


def read_torch_file(path: Path) -> Any:
    """``torch.load`` a file on CPU, memory-mapped when possible (no tensor is read until used).

    Only what ``torch.load(weights_only=True)`` accepts is read (tensors, dicts, strings...).

    Raises:
        CliError: the file is not a torch file, or holds objects that are not safe to load.
    """
    import zipfile

    hint = "expected a checkpoint (.bin) or a tokens file written by `audiocraft encode`"
    with open(path, "rb") as handle:
        head = handle.read(2)
    if zipfile.is_zipfile(path):
        loaders = ({"mmap": True}, {})
    elif head[:1] == b"\x80":  # torch's legacy (pre-zip) pickle format: cannot be memory-mapped
        loaders = ({},)
    else:
        raise CliError(f"{str(path)!r} is not a torch file; {hint}")
    for index, options in enumerate(loaders):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, **options)
        except Exception as exc:  # corrupt or unsafe content: torch raises many different types
            if index == len(loaders) - 1:
                raise CliError(f"{str(path)!r} cannot be read as a torch file ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:300]}); {hint}") from None


def checkpoint_config(path: Path):
    """The ``xp.cfg`` of an AudioCraft checkpoint file as an OmegaConf object, or None."""
    from omegaconf import OmegaConf

    package = read_torch_file(path)
    if not isinstance(package, dict) or "xp.cfg" not in package:
        return None
    return OmegaConf.create(package["xp.cfg"])


def default_model_name() -> str:
    """The bundled default model folder (a CliError if this installation lacks it)."""
    from ..models.pretrained import default_model_dir

    try:
        return str(default_model_dir())
    except FileNotFoundError as exc:
        raise CliError(f"{exc}; or pass --model") from None


def describe_model_name(name: Optional[str]) -> str:
    """The name shown to users and stored in tokens files: absolute path for folders."""
    if name is None:
        return default_model_name()
    if name in DEBUG_NAMES:
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _is_audiogen(name: str) -> bool:
    if "audiogen" in name.lower():
        return True
    checkpoint = Path(name).expanduser() / "state_dict.bin"
    if checkpoint.is_file():
        cfg = checkpoint_config(checkpoint)
        return cfg is not None and str(cfg.get("solver", "")).startswith("audiogen")
    return False


def load_generation_model(name: Optional[str], device: str):
    """A MusicGen (or AudioGen, recognised by name or by its checkpoint's solver) in eval mode.

    Model construction runs under a fixed seed, so the random 'debug' model is the same in every run.
    """
    from ..models import AudioGen, MusicGen

    if name is None:
        name = default_model_name()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if name != "debug" and _is_audiogen(name):
            return AudioGen.get_pretrained(name, device=device)
        return MusicGen.get_pretrained(name, device=device)


def _cached_hub_lm_config(repo_id: str):
    """The LM config of a Hub model if its ``state_dict.bin`` is already in the local cache (no download)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        from ..models.loaders import get_audiocraft_cache_dir
        cached = try_to_load_from_cache(repo_id, "state_dict.bin", cache_dir=get_audiocraft_cache_dir())
    except Exception:  # invalid repo id and the like: simply no cached config
        return None
    return checkpoint_config(Path(cached)) if isinstance(cached, str) else None


def load_codec(name: Optional[str], device: str):
    """The compression model of ``name``, in eval mode on ``device``.

    ``name``: None (the bundled default model's codec), 'debug', a model folder (its
    ``compression_state_dict.bin``; a stereo LM next to it makes the codec stereo, as in
    generation), a checkpoint file, a transformers EnCodec folder, or a Hugging Face name
    (a MusicGen/AudioGen repository or a transformers EnCodec such as facebook/encodec_32khz).
    """
    from ..models import builders, loaders
    from ..models.encodec import CompressionModel

    if name is None:
        name = default_model_name()
    if name in DEBUG_NAMES:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return builders.get_debug_compression_model(device)
    path = Path(name).expanduser()
    lm_cfg = None
    if path.is_dir() and not (path / loaders.COMPRESSION_CHECKPOINT).is_file():
        from ..models.hf_convert import is_transformers_musicgen_folder
        if is_transformers_musicgen_folder(path):
            from ..models.pretrained import load_pretrained_parts
            _, codec, _, _ = load_pretrained_parts(str(path), device)
            return codec
    if path.exists():
        codec = CompressionModel.get_pretrained(path, device=device)
        if path.is_dir() and (path / loaders.LM_CHECKPOINT).is_file():
            lm_cfg = checkpoint_config(path / loaders.LM_CHECKPOINT)
    elif loaders.looks_like_local_path(name):
        raise FileNotFoundError(f"--model {name!r} does not exist (resolved to {str(path.absolute())!r}); "
                                "pass an existing folder or file, or a Hugging Face name")
    else:
        try:
            codec = loaders.load_compression_model(name, device=device)
        except FileNotFoundError as first:
            try:
                codec = CompressionModel.get_pretrained(name, device=device)
            except (OSError, ValueError):
                raise first from None
        lm_cfg = _cached_hub_lm_config(name)
    if lm_cfg is not None:
        codec = builders.get_wrapped_compression_model(codec, lm_cfg)
    return codec.to(device).eval()


# ============================================================================ tokens files

def save_atomically(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_tokens_file(package: Any) -> bool:
    return isinstance(package, dict) and "codes" in package and "frame_rate" in package


def read_tokens_file(path: Path) -> Dict[str, Any]:
    """Read and check a tokens file written by ``encode``; ``codes`` comes back as int64 [1, K, T]."""
    if not path.is_file():
        raise FileNotFoundError(f"tokens file not found: {str(path)!r} (relative paths start from {os.getcwd()!r})")
    package = read_torch_file(path)
    if not isinstance(package, dict):
        raise CliError(f"{str(path)!r} holds a {type(package).__name__}, not a tokens file: write one with "
                       "`python -m audiocraft encode AUDIO --out TOKENS.pt`")
    missing = [key for key in TOKENS_KEYS if key not in package]
    if missing:
        present = sorted(map(str, package))[:8]
        raise CliError(f"{str(path)!r} is not a tokens file: it lacks {missing} (it has {present}); "
                       "write one with `python -m audiocraft encode AUDIO --out TOKENS.pt`")
    codes = package["codes"]
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex():
        raise CliError(f"{str(path)!r}: 'codes' must be an integer tensor [1, K, T], got "
                       f"{codes.dtype if isinstance(codes, torch.Tensor) else type(codes).__name__}")
    if codes.dim() == 2:
        codes = codes[None]
    if codes.dim() != 3 or codes.shape[0] != 1 or codes.shape[-1] == 0:
        raise CliError(f"{str(path)!r}: 'codes' must have shape [1, K, T] with T > 0, got {tuple(codes.shape)}")
    if int(codes.min()) < 0:
        raise CliError(f"{str(path)!r}: 'codes' holds negative values; the file is damaged")
    result = dict(package)
    result["codes"] = codes.long()
    return result
