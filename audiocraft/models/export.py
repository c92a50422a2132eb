"""Writing models in AudioCraft's released checkpoint format.

A released model folder holds two ``torch.save``-d dicts:

- ``state_dict.bin``: ``{'best_state': <LM state dict, floating tensors in float16>,
  'xp.cfg': <OmegaConf YAML of the config>, 'version': <package version>, 'exported': True}``;
- ``compression_state_dict.bin``: the same structure for the compression model (float32 as released,
  or float16 with ``half=True``), or
  a pointer ``{'pretrained': <Hugging Face name>, 'exported': True, 'version': ...}`` to an
  EnCodec published with ``transformers`` (e.g. ``'facebook/encodec_32khz'``).

Files are written atomically (temporary file in the same folder, then ``os.replace``) and
an existing file is never replaced unless ``overwrite=True``.

Command line (``src``: a local AudioCraft folder or a folder saved by transformers)::

    python -m audiocraft.models.export <src> <dst_folder> [--overwrite]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .loaders import COMPRESSION_CHECKPOINT, LM_CHECKPOINT

ConfigLike = DictConfig | Mapping[str, Any] | str


def _version() -> str:
    from .. import __version__
    return __version__


def _as_cfg(cfg: ConfigLike | None, owner: Any, argument: str) -> DictConfig:
    """``cfg`` as a DictConfig; ``None`` falls back to ``owner.cfg``."""
    if cfg is None:
        cfg = getattr(owner, "cfg", None)
        if cfg is None:
            raise ValueError(f"`{argument}` is None and the model has no `.cfg`: pass the AudioCraft-style config "
                             "(xp.cfg layout) the model was built from.")
    if isinstance(cfg, str):
        cfg = OmegaConf.create(cfg)
    elif isinstance(cfg, Mapping) and not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"`{argument}` must be an OmegaConf DictConfig, a mapping or a YAML string, "
                        f"got {type(cfg).__name__}.")
    return cfg


def _check_target(path: str | os.PathLike, overwrite: bool, argument: str = "path") -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"`{argument}` {str(path)!r} is a folder; pass the file to write, "
                                f"e.g. {str(path / LM_CHECKPOINT)!r}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"`{argument}` {str(path)!r} already exists; pass overwrite=True to replace it "
                              "(or --overwrite on the command line).")
    return path


def _atomic_save(package: dict, path: Path) -> Path:
    """``torch.save(package)`` to a temporary file next to ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        torch.save(package, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _package(state: dict, cfg: DictConfig) -> dict:
    return {"best_state": state, "xp.cfg": OmegaConf.to_yaml(cfg, resolve=True), "version": _version(),
            "exported": True}


# ============================================================================ language model

def _check_lm_cfg(lm: nn.Module, cfg: DictConfig) -> None:
    """The config must describe this LM (same K, V, D, layers), or the file would not load back."""
    section = cfg.get("transformer_lm")
    if section is None:
        raise ValueError("`cfg` has no `transformer_lm` section; pass the AudioCraft-style config (xp.cfg layout) "
                         "the LM was built from.")
    actual = {"n_q": getattr(lm, "n_q", None), "card": getattr(lm, "card", None), "dim": getattr(lm, "dim", None)}
    transformer = getattr(lm, "transformer", None)
    if transformer is not None and hasattr(transformer, "layers"):
        actual["num_layers"] = len(transformer.layers)
    wrong = {key: (section.get(key), value) for key, value in actual.items()
             if value is not None and section.get(key) is not None and int(section.get(key)) != int(value)}
    if wrong:
        details = ", ".join(f"transformer_lm.{key}={cfg_value} but the LM has {value}"
                            for key, (cfg_value, value) in wrong.items())
        raise ValueError(f"`cfg` does not describe `lm`: {details}. Pass the config the LM was built from.")
    for name, entry in (cfg.get("conditioners") or {}).items():
        if isinstance(entry, Mapping) and entry.get("model") == "t5" and not (entry.get("t5") or {}).get("name"):
            raise ValueError(f"`cfg.conditioners.{name}.t5.name` is empty: AudioCraft's format loads the T5 text "
                             "encoder by name, so set it to the Hub name or local folder of this T5 before exporting.")


def half_state(state: Mapping[str, torch.Tensor]) -> dict:
    """``state`` with its floating-point tensors in float16 (others unchanged)."""
    return {name: tensor.to(torch.float16) if tensor.is_floating_point() else tensor
            for name, tensor in state.items()}


def export_lm(lm: nn.Module, cfg: ConfigLike | None, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``lm`` as AudioCraft's released ``state_dict.bin``.

    Args:
        lm: the language model (:class:`~audiocraft.models.lm.LMModel`).
        cfg: its AudioCraft-style config (``xp.cfg`` layout: ``transformer_lm``, ``codebooks_pattern``,
            ``conditioners``, ``fuser``...); ``None`` uses ``lm.cfg``.
        path: file to write (parent folders are created).
        overwrite: replace an existing file.
    Returns:
        The path written. Floating-point tensors are stored in float16, like the released files.
    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: no config, or a config that does not describe ``lm``.
    """
    if not isinstance(lm, nn.Module):
        raise TypeError(f"`lm` must be an LMModel (torch.nn.Module), got {type(lm).__name__}.")
    cfg = _as_cfg(cfg, lm, "cfg")
    _check_lm_cfg(lm, cfg)
    target = _check_target(path, overwrite)
    state = half_state({name: tensor.detach().cpu() for name, tensor in lm.state_dict().items()})
    return _atomic_save(_package(state, cfg), target)


# ============================================================================ compression model

def hub_name_of(model: nn.Module) -> Optional[str]:
    """The Hugging Face Hub name a ``transformers`` EnCodec (or its adapter) was loaded from, if it is one.

    Returns None for models built from a config, loaded from a local folder, or whose name
    looks like a path.
    """
    from .loaders import looks_like_local_path

    inner = getattr(model, "model", model)
    config = getattr(inner, "config", None)
    name = str(getattr(config, "_name_or_path", "") or getattr(inner, "name_or_path", "") or "")
    if not name or looks_like_local_path(name) or Path(name).expanduser().exists():
        return None
    return name


def export_compression_pointer(name: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a pointer ``{'pretrained': name}`` to an EnCodec published on the Hugging Face Hub.

    Args:
        name: Hub name such as ``'facebook/encodec_32khz'`` (without AudioCraft's ``//pretrained/`` prefix).
        path: file to write, usually ``<folder>/compression_state_dict.bin``.
        overwrite: replace an existing file.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a Hugging Face model name like 'facebook/encodec_32khz', got {name!r}.")
    name = name.removeprefix("//pretrained/")
    target = _check_target(path, overwrite)
    return _atomic_save({"pretrained": name, "exported": True, "version": _version()}, target)


def refuse_half_pointer(name: str, half: bool) -> None:
    """Raise if float16 weights were asked for a codec written as a pointer (it has no weights)."""
    if half:
        raise ValueError(f"The codec {name!r} is written as a pointer, with no weights to store in float16: "
                         "drop the float16 option (half=True, --compression-float16).")


def export_compression(model: nn.Module, cfg: ConfigLike | None, path: str | os.PathLike,
                       overwrite: bool = False, half: bool = False) -> Path:
    """Write a compression model as AudioCraft's released ``compression_state_dict.bin``.

    Args:
        model: an :class:`~audiocraft.models.encodec.EncodecModel` (its weights are written),
            or an :class:`~audiocraft.models.encodec.HFEncodecCompressionModel` loaded from a Hub
            name (a pointer to that name is written; ``cfg`` is not used).
        cfg: the EnCodec's AudioCraft-style config (``compression_model``, ``encodec``, ``seanet``,
            ``rvq``...); ``None`` uses ``model.cfg``.
        path: file to write (parent folders are created).
        overwrite: replace an existing file.
        half: store floating-point weights in float16 (half the size; loading casts them back to the
            model's dtype). The codes of a few frames in a thousand may change, so an LM trained on
            the float32 codec's codes is still valid. Not for a pointer.
    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: stereo wrapper given (export its ``.model``), or a config that does not build
            a model with these weights.
        NotImplementedError: a transformers EnCodec that is not a Hub model (nothing to point to).
    """
    from . import builders
    from .encodec import EncodecModel, HFEncodecCompressionModel, InterleaveStereoCompressionModel

    if isinstance(model, InterleaveStereoCompressionModel):
        raise ValueError("`model` is a stereo wrapper (InterleaveStereoCompressionModel): AudioCraft stores the mono "
                         "codec and re-wraps it from the LM config (`interleave_stereo_codebooks`); export "
                         "`model.model` instead.")
    if isinstance(model, HFEncodecCompressionModel):
        name = hub_name_of(model)
        if name is None:
            source = getattr(model.model.config, "_name_or_path", "") or "a config (no name)"
            raise NotImplementedError(
                f"This transformers EnCodec comes from {source!r}, not from a Hugging Face Hub name, and AudioCraft's "
                "format can only point to a Hub EnCodec (its weights are not converted to AudioCraft names). "
                "Publish it (`model.model.push_to_hub('<user>/<name>')`), set `model.model.config._name_or_path` "
                "to that name and export again; or, if it is the same codec as a Hub EnCodec, pass "
                "compression_name='<hub name>' to export_pretrained() (--compression-name on the command line); "
                "or export only the LM with export_lm().")
        refuse_half_pointer(name, half)
        return export_compression_pointer(name, path, overwrite)
    if not isinstance(model, EncodecModel):
        raise TypeError(f"`model` must be an EncodecModel or an HFEncodecCompressionModel, got {type(model).__name__}.")
    cfg = _as_cfg(cfg, model, "cfg")
    target = _check_target(path, overwrite)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    if half:
        state = half_state(state)
    expected = builders.get_compression_model(cfg).state_dict()
    mismatched = sorted(set(expected) ^ set(state))
    mismatched += [name for name in expected
                   if name in state and tuple(expected[name].shape) != tuple(state[name].shape)]
    if mismatched:
        raise ValueError(f"`cfg` does not describe `model`: the model it builds differs in {len(mismatched)} weight "
                         f"name(s) or shape(s) (first: {mismatched[:5]}). Pass the config the model was built from.")
    return _atomic_save(_package(state, cfg), target)


# ============================================================================ whole model

def export_pretrained(model: Any, folder: str | os.PathLike, overwrite: bool = False,
                      compression_name: Optional[str] = None) -> tuple[Path, Path]:
    """Write ``model`` (with ``.lm`` and ``.compression_model``, e.g. a MusicGen) as a released AudioCraft folder.

    Writes ``<folder>/state_dict.bin`` (config: ``model.lm.cfg``) and
    ``<folder>/compression_state_dict.bin`` (weights + ``model.compression_model.cfg``, or a pointer
    for a Hub EnCodec). A stereo wrapper is unwrapped: AudioCraft re-wraps the mono codec from
    the LM config. Nothing is written if either file exists and ``overwrite`` is False.

    Args:
        model: object with ``.lm`` and ``.compression_model``.
        folder: where to write the two files (created if needed).
        overwrite: replace existing files.
        compression_name: write a pointer to this Hub EnCodec (e.g. ``'facebook/encodec_32khz'``)
            instead of exporting ``model.compression_model``; the caller vouches that it is the same codec.

    Returns:
        ``(lm_path, compression_path)``.
    """
    from .encodec import InterleaveStereoCompressionModel

    lm = getattr(model, "lm", None)
    compression_model = getattr(model, "compression_model", None)
    if lm is None or compression_model is None:
        raise TypeError(f"`model` must have `.lm` and `.compression_model` (e.g. a MusicGen), "
                        f"got {type(model).__name__}.")
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"`folder` {str(folder)!r} is a file; pass the folder to write the model into.")
    lm_path = _check_target(folder / LM_CHECKPOINT, overwrite, "folder")
    compression_path = _check_target(folder / COMPRESSION_CHECKPOINT, overwrite, "folder")
    if isinstance(compression_model, InterleaveStereoCompressionModel):
        compression_model = compression_model.model
    lm_cfg = _as_cfg(None, lm, "model.lm.cfg")
    _check_lm_cfg(lm, lm_cfg)
    if compression_name is not None:
        export_compression_pointer(compression_name, compression_path, overwrite)
    else:
        export_compression(compression_model, getattr(compression_model, "cfg", None), compression_path, overwrite)
    export_lm(lm, lm_cfg, lm_path, overwrite)
    return lm_path, compression_path


# ============================================================================ command line

def _load_audiocraft_folder(folder: Path):
    """``(lm, lm_cfg, compression_package)`` of a local AudioCraft folder.

    The LM is loaded (which validates it); ``lm_cfg`` is the file's own config, unchanged.
    """
    from . import loaders

    cfg = OmegaConf.create(loaders.load_lm_model_ckpt(folder).get("xp.cfg", "{}"))
    lm = loaders.load_lm_model(folder, device="cpu")
    compression_package = loaders.load_compression_model_ckpt(folder)
    if "pretrained" not in compression_package:
        model = loaders.load_compression_model(folder)  # validates names and shapes against its config
        del model
        if "xp.cfg" not in compression_package:
            raise ValueError(f"{str(folder / COMPRESSION_CHECKPOINT)!r} lacks 'xp.cfg'.")
    return lm.eval(), cfg, compression_package


def convert_folder(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False,
                   compression_name: Optional[str] = None) -> tuple[Path, Path]:
    """Write the model in ``src`` (AudioCraft folder or transformers MusicGen folder) to ``dst`` in AudioCraft's format.

    ``compression_name`` (Hub name of the EnCodec) replaces the compression model by a pointer to it.
    Returns ``(lm_path, compression_path)``.
    """
    from . import loaders
    from .hf_convert import is_transformers_musicgen_folder, load_transformers_musicgen

    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise FileNotFoundError(f"`src` {str(src)!r} is not a folder; pass an AudioCraft model folder "
                                f"({LM_CHECKPOINT} + {COMPRESSION_CHECKPOINT}) or a transformers MusicGen folder.")
    if is_transformers_musicgen_folder(src):
        compression_model, lm, _ = load_transformers_musicgen(src)
        parts = SimpleNamespace(lm=lm, compression_model=compression_model)
        return export_pretrained(parts, dst, overwrite, compression_name=compression_name)
    if (src / LM_CHECKPOINT).is_file() and (src / loaders.COMPRESSION_CHECKPOINT).is_file():
        lm, cfg, compression_package = _load_audiocraft_folder(src)
        lm_path = _check_target(dst / LM_CHECKPOINT, overwrite, "dst")
        compression_path = _check_target(dst / COMPRESSION_CHECKPOINT, overwrite, "dst")
        if compression_name is not None or "pretrained" in compression_package:
            export_compression_pointer(compression_name or compression_package["pretrained"], compression_path,
                                       overwrite)
        else:
            compression_cfg = OmegaConf.create(compression_package["xp.cfg"])
            _atomic_save(_package(compression_package["best_state"], compression_cfg), compression_path)
        export_lm(lm, cfg, lm_path, overwrite)
        return lm_path, compression_path
    present = sorted(p.name for p in src.iterdir())[:10]
    raise FileNotFoundError(f"`src` {str(src)!r} is neither an AudioCraft folder ({LM_CHECKPOINT} + "
                            f"{COMPRESSION_CHECKPOINT}) nor a transformers MusicGen folder (config.json with "
                            f"model_type 'musicgen'); it contains {present}.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audiocraft.models.export",
        description="Write a MusicGen in AudioCraft's released format (state_dict.bin + compression_state_dict.bin).")
    parser.add_argument("src", help="local AudioCraft model folder, or a folder saved by transformers' "
                                    "MusicgenForConditionalGeneration.save_pretrained")
    parser.add_argument("dst_folder", help="folder to write state_dict.bin and compression_state_dict.bin into")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files in dst_folder")
    parser.add_argument("--compression-name", default=None,
                        help="write a pointer to this Hugging Face EnCodec (e.g. facebook/encodec_32khz) instead of "
                             "the source's compression model")
    args = parser.parse_args(argv)
    try:
        lm_path, compression_path = convert_folder(args.src, args.dst_folder, args.overwrite, args.compression_name)
    except (FileNotFoundError, FileExistsError, ValueError, NotImplementedError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {lm_path}\nwrote {compression_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
