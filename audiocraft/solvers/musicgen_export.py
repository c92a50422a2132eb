"""Exporting a MusicGen training run as a released model folder, and its command line.

``python -m audiocraft.solvers.musicgen export <sig or checkpoint> <folder>`` (or
``python -m audiocraft.solvers.musicgen_export ...``) writes ``state_dict.bin`` and
``compression_state_dict.bin``, which ``MusicGen.get_pretrained(<folder>)`` loads;
``export-lora`` writes the LoRA adapters alone.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from ..models import builders as model_builders
from ..utils import checkpoint
from .musicgen import _lora_options, resolve_pretrained_name

logger = logging.getLogger("audiocraft.solver")


def _load_run(xp_or_checkpoint: str | os.PathLike) -> tuple[DictConfig, dict]:
    """(config, LM state of the best state) of a MusicGen run."""
    path, package, cfg = checkpoint.load_run_checkpoint(xp_or_checkpoint)
    if cfg.get("solver") not in ("musicgen", "lm"):
        raise ValueError(f"{str(path)!r} is a checkpoint of a {cfg.get('solver')!r} run, not a MusicGen one.")
    return cfg, checkpoint.best_model_state(package, path)


def _lm_from_run(cfg: DictConfig, state: dict, merge: bool = True):
    """``(lm, cfg, used_lora)``: the run's LM on CPU in eval mode, LoRA adapters merged if ``merge``."""
    from ..models.lora import add_lora, merge_lora

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg.device, cfg.dtype = "cpu", "float32"
    lm = model_builders.get_lm_model(cfg)
    used_lora = any(".lora_" in key for key in state)
    if used_lora:
        lora = _lora_options(cfg)
        add_lora(lm, int(lora["rank"]), float(lora["alpha"]), float(lora["dropout"]), list(lora["target_modules"]))
    lm.load_state_dict(state)
    if used_lora and merge:
        merge_lora(lm)
    return lm.eval(), cfg, used_lora


def _export_codec(source: str, target: Path, overwrite: bool, half: bool = False) -> Path:
    """``compression_state_dict.bin`` for the codec named by ``compression_model_checkpoint``
    (its weights in float16 if ``half``)."""
    from ..models import export, loaders
    from ..models.encodec import InterleaveStereoCompressionModel
    from ..models.hf_convert import is_transformers_musicgen_folder, load_transformers_musicgen
    from .compression import export_compression

    if not source.startswith(checkpoint.PRETRAINED_PREFIX):
        return export_compression(source, target, overwrite=overwrite, half=half)  # //sig/, folder or checkpoint
    name = resolve_pretrained_name(source[len(checkpoint.PRETRAINED_PREFIX):])
    if name == "debug_compression_model":
        export.refuse_half_pointer(name, half)
        return export.export_compression_pointer(name, target, overwrite)
    folder = Path(name).expanduser()
    if folder.is_dir() and is_transformers_musicgen_folder(folder):  # a pointer to its Hub EnCodec
        codec, _, _ = load_transformers_musicgen(folder)
        codec = codec.model if isinstance(codec, InterleaveStereoCompressionModel) else codec
        return export.export_compression(codec, None, target, overwrite, half=half)
    try:
        package = loaders.load_compression_model_ckpt(name)
    except FileNotFoundError:
        if loaders.looks_like_local_path(name) or Path(name).expanduser().exists():
            raise
        export.refuse_half_pointer(name, half)
        return export.export_compression_pointer(name, target, overwrite)  # a transformers EnCodec on the Hub
    if half:
        if "best_state" not in package:  # a copy of a pointer
            export.refuse_half_pointer(name, half)
        package = {**package, "best_state": export.half_state(package["best_state"])}
    export._check_target(target, overwrite, "out_folder")
    return export._atomic_save(package, target)


def export_musicgen(xp_or_checkpoint: str | os.PathLike, out_folder: str | os.PathLike,
                    overwrite: bool = False, compression_name: str | None = None,
                    compression_model: str | None = None, compression_half: bool = False) -> tuple[Path, Path]:
    """Write the best state of a MusicGen run as a released model folder.

    Writes ``<out_folder>/state_dict.bin`` (the LM, float16, with the run's config; LoRA adapters
    are merged into the weights) and ``<out_folder>/compression_state_dict.bin`` (the run's codec:
    a copy of a released file, a pointer to a Hub EnCodec, or the export of a compression run).
    ``MusicGen.get_pretrained(out_folder)`` loads the result.

    Args:
        xp_or_checkpoint: ``//sig/<signature>``, an experiment folder or a checkpoint file.
        out_folder: folder to write (created if needed).
        overwrite: replace existing files.
        compression_name: write a pointer to this Hub EnCodec (e.g. ``'facebook/encodec_32khz'``) instead
            of the run's codec; needed when it is a transformers EnCodec saved locally without a Hub name.
        compression_model: bundle this codec (``//sig/<signature>``, an experiment folder, a checkpoint or
            ``//pretrained/<name>``) instead of the run's. It must make the same codes: the run's codec
            before or after a decoder-only fine-tune (``+freeze=[encoder,quantizer]``). Its rates, codebooks
            and channels are checked, and at least 99% of its codes of a test signal must be the run's codec's.
        compression_half: store the codec's weights in float16 (half the size; a few codes in a thousand
            change). Not with ``compression_name``.
    Returns:
        ``(lm_path, compression_path)``.
    """
    from ..models import export
    from ..models.loaders import COMPRESSION_CHECKPOINT, LM_CHECKPOINT

    if compression_name and compression_model:
        raise ValueError("Give either compression_name (a Hub EnCodec pointer) or compression_model, not both.")
    if compression_name:
        export.refuse_half_pointer(compression_name, compression_half)
    cfg, state = _load_run(xp_or_checkpoint)
    out = Path(out_folder).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"`out_folder` {str(out)!r} is a file; pass a folder to write the model into.")
    for name in (LM_CHECKPOINT, COMPRESSION_CHECKPOINT):
        export._check_target(out / name, overwrite, "out_folder")
    lm, lm_cfg, merged = _lm_from_run(cfg, state)
    if compression_model:
        if str(cfg.get("continue_from") or "").startswith(checkpoint.PRETRAINED_PREFIX):
            raise ValueError(f"This run fine-tuned {cfg.continue_from}, whose codec it used: export it with that "
                             "codec (no compression_model), or point to a Hub EnCodec with compression_name.")
        compression_model = _as_source(str(compression_model))
        _check_same_codes(lm_cfg, str(cfg.compression_model_checkpoint), compression_model)
        lm_cfg.compression_model_checkpoint = compression_model  # the config says which codec is bundled
    target = out / COMPRESSION_CHECKPOINT
    compression_path = export.export_compression_pointer(compression_name, target, overwrite) if compression_name \
        else _export_codec(str(lm_cfg.compression_model_checkpoint), target, overwrite, compression_half)
    lm_path = export.export_lm(lm, lm_cfg, out / LM_CHECKPOINT, overwrite=overwrite)
    logger.info("Exported MusicGen to %s%s", out, " (LoRA adapters merged)" if merged else "")
    return lm_path, compression_path


def _check_same_codes(cfg: DictConfig, trained_with: str, replacement: str) -> None:
    """Refuse a replacement codec that does not make the codes the LM was trained on.

    The codes are compared on a fixed signal (tones and noise): a frozen encoder still drifts by float
    rounding under the weight EMA (about 1e-5), which may move a code that sits on a boundary.
    """
    from .musicgen import load_codec

    old, new = load_codec(cfg, trained_with), load_codec(cfg, replacement)
    fields = ("sample_rate", "channels", "frame_rate", "num_codebooks", "cardinality")
    mismatched = {f: (getattr(old, f), getattr(new, f)) for f in fields if getattr(old, f) != getattr(new, f)}
    if mismatched:
        raise ValueError(f"The codec {replacement!r} does not make the codes the LM was trained on (with "
                         f"{trained_with!r}): {', '.join(f'{k} {a} vs {b}' for k, (a, b) in mismatched.items())}. "
                         "Bundle the run's own codec, or one fine-tuned from it with +freeze=[encoder,quantizer].")
    generator = torch.Generator().manual_seed(0)
    seconds = torch.arange(2 * old.sample_rate) / old.sample_rate
    tones = sum(torch.sin(2 * torch.pi * f * seconds) / (i + 1) for i, f in enumerate((220.0, 330.0, 587.0, 1250.0)))
    signal = 0.1 * tones + 0.02 * torch.randn(old.channels, seconds.numel(), generator=generator)
    signal = signal.expand(1, old.channels, -1).contiguous()
    with torch.no_grad():
        agreement = (old.encode(signal)[0] == new.encode(signal)[0]).float().mean().item()
    if agreement < 0.99:
        raise ValueError(f"The codec {replacement!r} makes other codes than {trained_with!r}, which the LM was trained "
                         f"on: {100 * agreement:.0f}% of the codes of a test signal agree. Bundle the run's own codec, "
                         "or one fine-tuned from it with +freeze=[encoder,quantizer].")


def export_lora(xp_or_checkpoint: str | os.PathLike, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write only the LoRA adapters of a run trained with ``lora.use=true`` (apply them to the base model
    with ``MusicGen.get_pretrained(<base>).load_lora(path)``)."""
    from ..models.lora import save_lora

    lm, _, used_lora = _lm_from_run(*_load_run(xp_or_checkpoint), merge=False)
    if not used_lora:
        raise ValueError(f"{str(xp_or_checkpoint)!r} was not trained with LoRA (lora.use=true); use export_musicgen.")
    return save_lora(lm, path, overwrite=overwrite)


def _as_source(text: str) -> str:
    """A bare signature (no slash, not an existing path) means ``//sig/<signature>``."""
    if "/" not in text and not Path(text).exists():
        return checkpoint.SIG_PREFIX + text
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m audiocraft.solvers.musicgen export|export-lora <sig or checkpoint> <output>``."""
    parser = argparse.ArgumentParser(prog="python -m audiocraft.solvers.musicgen",
                                     description="Export a MusicGen training run.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text, output in (("export", "write a model folder MusicGen.get_pretrained loads", "out_folder"),
                                    ("export-lora", "write the LoRA adapters only", "out_file")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("source", help="signature (or //sig/<sig>), experiment folder or checkpoint file")
        sub.add_argument(output)
        sub.add_argument("--overwrite", action="store_true", help="replace existing files")
        if name == "export":
            sub.add_argument("--compression-name", default=None,
                             help="point to this Hub EnCodec (e.g. facebook/encodec_32khz) instead of the run's codec")
            sub.add_argument("--compression-model", default=None,
                             help="bundle this codec (//sig/<sig>, folder, checkpoint, //pretrained/<name>) instead "
                                  "of the run's; it must make the same codes (e.g. a decoder-only fine-tune of it)")
            sub.add_argument("--compression-float16", action="store_true",
                             help="store the codec's weights in float16 (half the size; a few codes in a thousand "
                                  "change)")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            for path in export_musicgen(_as_source(args.source), args.out_folder, args.overwrite,
                                        args.compression_name, args.compression_model,
                                        args.compression_float16):
                print(f"wrote {path}")
        else:
            print(f"wrote {export_lora(_as_source(args.source), args.out_file, args.overwrite)}")
    except (FileNotFoundError, FileExistsError, NotADirectoryError, NotImplementedError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
