"""Finding the two halves of a pretrained generation model (compression model + LM) from a name.

A name is one of: None (the bundled default model), 'debug' (tiny random model), a local
folder in AudioCraft's format (``state_dict.bin`` + ``compression_state_dict.bin``), a local
folder saved by transformers (``config.json`` + safetensors), or a Hugging Face hub id
(AudioCraft's released files are fetched through huggingface_hub and its cache).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch

from . import builders, loaders
from .encodec import CompressionModel, InterleaveStereoCompressionModel
from ..modules.low_precision import lower_precision_
from .lm import LMModel

#: Folder of the model that ships inside the package (works offline).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_model"


def default_model_dir() -> Path:
    """The bundled default model folder; a clear error if this installation lacks it."""
    if not (DEFAULT_MODEL_DIR / loaders.LM_CHECKPOINT).is_file():
        raise FileNotFoundError(
            f"the bundled default model is missing from {DEFAULT_MODEL_DIR}: reinstall audiocraft from a full "
            "clone, or pass a model name or folder to get_pretrained()")
    return DEFAULT_MODEL_DIR


def resolve_pretrained_name(name: str) -> str:
    """``'default'`` -> the bundled default model folder (for ``continue_from=//pretrained/default``); other
    names unchanged."""
    return str(default_model_dir()) if name == "default" else name


def _is_transformers_folder(path: Path) -> bool:
    from .hf_convert import is_transformers_musicgen_folder
    return is_transformers_musicgen_folder(path)


def load_pretrained_parts(name: Optional[str], device, dtype=None
                          ) -> Tuple[str, CompressionModel, LMModel, Optional[float]]:
    """Resolve ``name`` and load ``(name, compression_model, lm, max_duration)``, in eval mode on ``device``.

    ``dtype``: None / torch.float32 (exact), torch.bfloat16 or 'int8' for weight-only low
    precision of the LM's linear layers (faster CPU decoding, see ``modules.low_precision``).
    ``max_duration`` is None when the LM's config gives it (``lm.cfg.dataset.segment_duration``).
    """
    if name == "debug":
        compression_model = builders.get_debug_compression_model(device)
        lm = builders.get_debug_lm_model(device)
        return name, compression_model, lm, 30.0
    if name is None:
        name = str(default_model_dir())
    if not isinstance(name, (str, Path)):
        raise TypeError(f"name must be a model name or folder path, got {type(name).__name__}")
    name = str(name)
    path = Path(name).expanduser()
    if path.is_dir() and not (path / loaders.LM_CHECKPOINT).is_file() and _is_transformers_folder(path):
        from .hf_convert import load_transformers_musicgen
        compression_model, lm, _ = load_transformers_musicgen(path, device=device)
    elif path.is_file():
        raise ValueError(f"{name!r} is a file: pass the folder that holds {loaders.LM_CHECKPOINT} and "
                         f"{loaders.COMPRESSION_CHECKPOINT}")
    else:
        lm = loaders.load_lm_model(name, device=device)
        compression_model = loaders.load_compression_model(name, device=device)
        compression_model = _match_stereo(compression_model, lm)
    if lm.num_codebooks != compression_model.num_codebooks:
        raise ValueError(
            f"checkpoint {name!r}: the LM predicts {lm.num_codebooks} codebooks but the compression model "
            f"produces {compression_model.num_codebooks}; state_dict.bin and compression_state_dict.bin do not "
            "belong to the same model")
    mode = _low_precision_mode(dtype)
    if mode is not None:
        lower_precision_(lm, mode)
    return name, compression_model.to(device).eval(), lm.to(device).eval(), None


def _low_precision_mode(dtype) -> Optional[str]:
    """None (float32) or the weight-only mode named by ``dtype``."""
    names = {None: None, torch.float32: None, "float32": None, torch.bfloat16: "bfloat16", "bfloat16": "bfloat16",
             torch.int8: "int8", "int8": "int8"}
    if dtype not in names:
        raise ValueError(f"dtype must be None/torch.float32, torch.bfloat16 or 'int8' (weight-only), got {dtype!r}")
    return names[dtype]


def _match_stereo(compression_model: CompressionModel, lm: LMModel) -> CompressionModel:
    """Stereo LMs predict interleaved left/right codebooks over a mono codec."""
    cfg = getattr(lm, "cfg", None)
    if cfg is None or isinstance(compression_model, InterleaveStereoCompressionModel):
        return compression_model
    return builders.get_wrapped_compression_model(compression_model, cfg)
