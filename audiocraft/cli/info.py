"""The ``info`` verb: what a model, a checkpoint file or a tokens file holds, without running anything.

Model summaries come from the checkpoints' configs and state dicts (memory-mapped), so no LM
is built and the text encoder (T5) is never loaded; only the (small) codec is loaded, to report
its exact rates.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Optional

from .common import CliError

INFO_EPILOG = """\
examples:
  python -m audiocraft info facebook/musicgen-small
  python -m audiocraft info path/to/model_folder
  python -m audiocraft info path/to/state_dict.bin --json
  python -m audiocraft info song.tokens.pt"""

Summary = Dict[str, Any]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the info sub-command."""
    parser = subparsers.add_parser(
        "info", help="describe a model, checkpoint file or tokens file", epilog=INFO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Describe a model (folder, Hugging Face name or 'debug'), a single checkpoint file "
                    "(.bin) or a tokens file written by `encode`. Nothing is generated and the text "
                    "encoder is not loaded.")
    parser.add_argument("target", metavar="NAME_OR_FOLDER_OR_FILE", help="what to describe")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    summary = describe(args.target)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary)
    return 0


def describe(target: str) -> Summary:
    """The summary of ``target`` (see the module docstring) as a nested, JSON-friendly dict."""
    from ..models import loaders

    if target == "debug":
        return _debug_summary()
    path = Path(target).expanduser()
    if path.is_file():
        return _file_summary(path)
    if path.is_dir():
        return _folder_summary(path)
    if loaders.looks_like_local_path(target):
        raise FileNotFoundError(f"NAME_OR_FOLDER_OR_FILE {target!r} does not exist (resolved to "
                                f"{str(path.absolute())!r}); pass an existing file or folder, or a Hugging Face name")
    lm_file = loaders.resolve_checkpoint_file(target, loaders.LM_CHECKPOINT)
    codec_file = loaders.resolve_checkpoint_file(target, loaders.COMPRESSION_CHECKPOINT)
    return _model_summary(target, lm_file, codec_file, codec_source=target)


# ============================================================================ printing

def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def print_summary(summary: Summary, indent: int = 0) -> None:
    """Print a nested summary as aligned ``key: value`` lines."""
    width = max((len(str(key)) for key in summary), default=0) + 1
    for key, value in summary.items():
        if isinstance(value, dict):
            print(" " * indent + f"{key}:")
            print_summary(value, indent + 2)
        else:
            print(" " * indent + f"{str(key) + ':':<{width}} {_format_value(value)}")


# ============================================================================ configs

def _plain(cfg) -> dict:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation that cannot be resolved here (e.g. an unset env variable)
        return OmegaConf.to_container(cfg, resolve=False)


def _config_of(package: dict) -> Optional[dict]:
    if "xp.cfg" not in package:
        return None
    from omegaconf import OmegaConf
    return _plain(OmegaConf.create(package["xp.cfg"]))


def _count(state: dict) -> Summary:
    import torch

    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    dtypes = Counter(str(value.dtype).replace("torch.", "") for value in tensors.values())
    return {"tensors": len(tensors), "parameters": sum(value.numel() for value in tensors.values()),
            "dtypes": dict(sorted(dtypes.items()))}


def _lm_config_summary(cfg: dict) -> Summary:
    lm = cfg.get("transformer_lm", {})
    summary = {key: lm.get(key) for key in ("dim", "num_layers", "num_heads", "n_q", "card") if key in lm}
    if "dim" in lm and "hidden_scale" in lm:
        summary["feed_forward_dim"] = int(lm["dim"] * lm["hidden_scale"])
    for key in ("norm_first", "positional_embedding"):
        if key in lm:
            summary[key] = lm[key]
    return summary


def _conditioners(cfg: dict) -> Summary:
    """``name -> 'model (options) -> fusion'`` for every conditioner of an LM config."""
    fuser = cfg.get("fuser") or {}
    where = {name: method for method, names in fuser.items() if isinstance(names, list) for name in names}
    result = {}
    for name, entry in (cfg.get("conditioners") or {}).items():
        if name == "args" or not isinstance(entry, dict):
            continue
        kind = entry.get("model", "?")
        options = entry.get(kind) or {}
        shown = ", ".join(f"{key}={value}" for key, value in options.items() if not isinstance(value, (dict, list)))
        text = f"{kind} ({shown})" if shown else str(kind)
        result[name] = text + (f" -> {where[name]}" if name in where else "")
    return result


def _pattern(cfg: dict) -> str:
    pattern = cfg.get("codebooks_pattern") or {}
    modeling = pattern.get("modeling", "?")
    options = pattern.get(modeling) or {}
    shown = ", ".join(f"{key}={_format_value(value)}" for key, value in options.items())
    return f"{modeling} ({shown})" if shown else str(modeling)


def _codec_config_summary(cfg: dict) -> Summary:
    import math

    seanet = cfg.get("seanet") or {}
    rvq = cfg.get("rvq") or {}
    summary: Summary = {"sample_rate_hz": cfg.get("sample_rate"), "channels": cfg.get("channels")}
    ratios = seanet.get("ratios")
    if ratios and cfg.get("sample_rate"):
        hop = math.prod(ratios)
        summary.update(ratios=ratios, hop_length=hop, frame_rate_hz=cfg["sample_rate"] / hop)
    if rvq:
        summary.update(codebooks=rvq.get("n_q"), codebook_size=rvq.get("bins"))
    return summary


def _config_summary(cfg: dict) -> Summary:
    summary: Summary = {key: cfg[key] for key in ("solver", "sample_rate", "channels") if key in cfg}
    if "transformer_lm" in cfg and str(cfg.get("solver", "")) != "compression":
        summary["language_model"] = _lm_config_summary(cfg)
        summary["conditioners"] = _conditioners(cfg)
        summary["pattern"] = _pattern(cfg)
        summary["segment_duration_s"] = (cfg.get("dataset") or {}).get("segment_duration")
    elif "seanet" in cfg:
        summary["compression_model"] = cfg.get("compression_model")
        summary["codec"] = _codec_config_summary(cfg)
    return summary


# ============================================================================ targets

def _file_summary(path: Path) -> Summary:
    from .loading import is_tokens_file, read_torch_file

    package = read_torch_file(path)
    if is_tokens_file(package):
        return _tokens_summary(path, package)
    if not isinstance(package, dict):
        raise CliError(f"{str(path)!r} holds a {type(package).__name__}: expected an AudioCraft checkpoint dict "
                       "or a tokens file written by `audiocraft encode`")
    summary: Summary = {"file": str(path), "kind": "checkpoint", "size_mb": round(path.stat().st_size / 2 ** 20, 2),
                        "keys": sorted(str(key) for key in package)}
    for key in ("version", "exported", "pretrained"):
        if key in package:
            summary[key] = package[key]
    for key in ("best_state", "model", "state_dict"):
        if isinstance(package.get(key), dict):
            summary[key] = _count(package[key])
    cfg = _config_of(package)
    if cfg is not None:
        summary["config"] = _config_summary(cfg)
    return summary


def _tokens_summary(path: Path, package: dict) -> Summary:
    codes = package["codes"]
    shape = list(codes.shape)
    frame_rate = float(package["frame_rate"])
    summary: Summary = {"file": str(path), "kind": "tokens",
                        "codes": f"{str(codes.dtype).replace('torch.', '')} {shape}",
                        "codebooks": shape[-2] if len(shape) >= 2 else None, "frames": shape[-1],
                        "duration_s": round(shape[-1] / frame_rate, 3) if frame_rate > 0 else None}
    for key, value in package.items():
        if key != "codes":
            summary[key] = value
    return summary


def _folder_summary(path: Path) -> Summary:
    from ..models import loaders

    lm_file, codec_file = path / loaders.LM_CHECKPOINT, path / loaders.COMPRESSION_CHECKPOINT
    if lm_file.is_file():
        return _model_summary(str(path.resolve()), lm_file, codec_file if codec_file.is_file() else None,
                              codec_source=str(path))
    if codec_file.is_file():
        return _file_summary(codec_file)
    config = path / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CliError(f"{str(config)!r} is not readable JSON ({exc})") from None
        keys = ("model_type", "architectures", "sampling_rate", "audio_channels", "num_codebooks")
        summary: Summary = {"folder": str(path.resolve()), "kind": "transformers model"}
        summary.update({key: data[key] for key in keys if key in data})
        decoder = data.get("decoder")
        if isinstance(decoder, dict):
            summary["decoder"] = {key: decoder[key] for key in ("hidden_size", "num_hidden_layers",
                                                                  "num_attention_heads", "num_codebooks",
                                                                  "vocab_size") if key in decoder}
        return summary
    present = sorted(item.name for item in path.iterdir())[:10]
    raise CliError(f"folder {str(path)!r} holds no model: expected {loaders.LM_CHECKPOINT} and "
                   f"{loaders.COMPRESSION_CHECKPOINT} (AudioCraft) or config.json (transformers); it has {present}")


def _model_summary(name: str, lm_file: Path, codec_file: Optional[Path], codec_source: str) -> Summary:
    from .loading import read_torch_file

    package = read_torch_file(Path(lm_file))
    cfg = _config_of(package) if isinstance(package, dict) else None
    if cfg is None or "best_state" not in package:
        raise CliError(f"{str(lm_file)!r} is not an exported AudioCraft LM checkpoint (no 'xp.cfg'/'best_state')")
    solver = str(cfg.get("solver", "?"))
    lm = _lm_config_summary(cfg)
    counts = _count(package["best_state"])
    lm["parameters"] = counts["parameters"]
    lm["dtypes_in_file"] = counts["dtypes"]
    summary: Summary = {"model": name, "kind": "AudioGen" if solver.startswith("audiogen") else "MusicGen",
                        "solver": solver, "version": package.get("version"), "language_model": lm,
                        "conditioners": _conditioners(cfg), "pattern": _pattern(cfg),
                        "max_duration_s": (cfg.get("dataset") or {}).get("segment_duration"),
                        "cfg_coef": (cfg.get("classifier_free_guidance") or {}).get("inference_coef")}
    summary["codec"] = _codec_summary(codec_source, codec_file)
    return summary


def _codec_summary(source: str, codec_file: Optional[Path]) -> Summary:
    from .loading import load_codec, read_torch_file

    summary: Summary = {}
    if codec_file is not None:
        package = read_torch_file(Path(codec_file))
        if isinstance(package, dict) and "pretrained" in package:
            summary["pretrained"] = package["pretrained"]
    try:
        codec = load_codec(source, "cpu")
    except (OSError, ValueError) as exc:  # e.g. a pointer to a Hub codec while offline
        summary["unavailable"] = " ".join(str(exc).split())
        return summary
    return {**summary, **_codec_object_summary(codec)}


def _codec_object_summary(codec) -> Summary:
    return {"class": type(codec).__name__, "sample_rate_hz": codec.sample_rate, "frame_rate_hz": codec.frame_rate,
            "channels": codec.channels, "codebooks": codec.num_codebooks, "codebook_size": codec.cardinality,
            "parameters": sum(p.numel() for p in codec.parameters())}


def _debug_summary() -> Summary:
    from .loading import load_generation_model

    model = load_generation_model("debug", "cpu")
    lm = model.lm
    layers = lm.transformer.layers
    pattern = lm.pattern_provider
    delays = f" (delays={list(pattern.delays)})" if hasattr(pattern, "delays") else ""
    fusion = {name: method for method, names in getattr(lm.fuser, "fuse2cond", {}).items() for name in names}
    conditioners = {name: type(module).__name__ + (f" -> {fusion[name]}" if name in fusion else "")
                    for name, module in lm.condition_provider.conditioners.items()}
    return {"model": "debug", "kind": type(model).__name__,
            "language_model": {"dim": lm.dim, "num_layers": len(layers), "num_heads": layers[0].self_attn.num_heads,
                               "n_q": lm.n_q, "card": lm.card,
                               "parameters": sum(p.numel() for p in lm.parameters())},
            "conditioners": conditioners,
            "pattern": type(pattern).__name__ + delays,
            "max_duration_s": model.max_duration, "codec": _codec_object_summary(model.compression_model)}
