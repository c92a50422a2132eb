"""Pieces shared by the verbs of ``python -m audiocraft``: errors, argument types, option groups.

Nothing here imports torch at module level, so ``python -m audiocraft --help`` stays fast;
the functions that need it import it when they run.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import List, Optional

#: Audio formats the verbs can write (see ``audiocraft.data.audio.audio_write``).
AUDIO_FORMATS = ("wav", "flac", "mp3", "ogg")
#: Normalisation strategies of ``audio_write``.
STRATEGIES = ("peak", "clip", "rms", "loudness")


class CliError(Exception):
    """A usage or input problem: printed as ``<prog>: error: <message>``, exit code 2."""


# ============================================================================ argument types

def _finite_number(text: str, accept, requirement: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {requirement}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (seconds, coefficients...)."""
    return _finite_number(text, lambda value: value > 0, "a number > 0")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _finite_number(text, lambda value: value >= 0, "a number >= 0")


def finite_float(text: str) -> float:
    """argparse type: any finite number."""
    return _finite_number(text, lambda value: True, "a finite number")


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _whole_number_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _whole_number_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _whole_number_at_least(text, 0)


# ============================================================================ option groups

MODEL_HELP = ("model to use: a Hugging Face name (e.g. facebook/musicgen-small), a local folder "
              "(state_dict.bin + compression_state_dict.bin, or a transformers save), or 'debug' "
              "(tiny random model, for trying the command). Default: the bundled default model")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """--device, --threads, --quiet."""
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", default=None,
                       help="torch device: 'cpu', 'cuda', 'cuda:1'... (default: cuda when available, else cpu)")
    group.add_argument("--threads", type=positive_int, default=None, metavar="N",
                       help="CPU threads torch may use (default: torch's choice)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars and no summary (written paths are still printed on stdout)")


def add_write_options(group, default_strategy: str) -> None:
    """--strategy, --loudness-headroom-db, --overwrite (how audio files are written) on a parser or group."""
    group.add_argument("--strategy", choices=STRATEGIES, default=default_strategy,
                       help=f"level normalisation of each file (default: {default_strategy}); 'loudness' "
                            "targets -HEADROOM LUFS with a soft limiter, 'peak' scales the peak to -1 dBFS, "
                            "'rms' to -18 dBFS RMS, 'clip' only clamps to -1 dBFS")
    group.add_argument("--loudness-headroom-db", type=positive_float, default=14.0, metavar="DB",
                       help="target loudness for --strategy loudness, in dB below 0 LUFS (default: 14)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace existing output files (default: refuse, before doing any work)")


def add_generation_options(parser: argparse.ArgumentParser, default_duration: float = 10.0) -> None:
    """Model, duration, seed, sampling, batching and output options of generate / continue / melody."""
    parser.add_argument("--model", default=None, metavar="NAME_OR_FOLDER", help=MODEL_HELP)
    parser.add_argument("--duration", type=positive_float, default=default_duration, metavar="SECONDS",
                        help=f"length of each output, in seconds (default: {default_duration:g})")
    parser.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                        help="random seed: the same command with the same seed writes the same audio "
                             "(default: a fresh seed, printed in the summary)")
    parser.add_argument("--batch-size", type=positive_int, default=4, metavar="N",
                        help="samples generated together (default: 4); lower it if memory runs out")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--top-k", type=non_negative_int, default=250, metavar="K",
                          help="sample among the K most likely tokens; 0 disables (default: 250, capped at "
                               "the model's codebook size)")
    sampling.add_argument("--top-p", type=probability, default=0.0, metavar="P",
                          help="nucleus sampling: smallest set of tokens of total probability P; 0 disables "
                               "and uses --top-k (default: 0)")
    sampling.add_argument("--temperature", type=non_negative_float, default=1.0, metavar="T",
                          help="softmax temperature; 0 = greedy (default: 1.0)")
    sampling.add_argument("--cfg-coef", type=finite_float, default=3.0, metavar="COEF",
                          help="classifier-free guidance strength (default: 3.0; 1 = no guidance)")
    sampling.add_argument("--greedy", action="store_true",
                          help="always take the most likely token (deterministic, ignores top-k/top-p)")
    sampling.add_argument("--two-step-cfg", action="store_true",
                          help="run the unconditional guidance pass separately instead of batched")
    sampling.add_argument("--extend-stride", type=positive_float, default=None, metavar="SECONDS",
                          help="for outputs longer than the model's window: how far each new window starts "
                               "after the previous one (default: 18 s for MusicGen, less for short windows)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="generated", metavar="FOLDER",
                        help="folder for the audio files (default: ./generated, created if missing)")
    output.add_argument("--format", choices=AUDIO_FORMATS, default="wav",
                        help="audio file format (default: wav, 16-bit)")
    add_write_options(output, default_strategy="loudness")
    add_runtime_options(parser)


def add_prompt_sources(parser: argparse.ArgumentParser) -> None:
    """Positional PROMPT ... plus --prompts-file (at least one prompt in all)."""
    parser.add_argument("prompts", nargs="*", metavar="PROMPT",
                        help="text description(s), one output file per prompt")
    parser.add_argument("--prompts-file", default=None, metavar="FILE",
                        help="read more prompts from FILE, one per line ('-' for stdin); blank lines and "
                             "lines starting with '#' are skipped")


# ============================================================================ inputs

def parse_prompt_lines(text: str) -> List[str]:
    """Prompts of a prompts file: one per line, stripped; blank lines and ``#`` comment lines skipped."""
    prompts = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            prompts.append(line)
    return prompts


def collect_prompts(prompts: List[str], prompts_file: Optional[str]) -> List[str]:
    """Command-line prompts followed by those of ``prompts_file``; at least one, none blank."""
    result = []
    for index, prompt in enumerate(prompts):
        if not prompt.strip():
            raise CliError(f"prompt #{index + 1} is empty: write a description, e.g. \"lofi piano\"")
        result.append(prompt.strip())
    if prompts_file is not None:
        if prompts_file == "-":
            text = sys.stdin.read()
        else:
            path = Path(prompts_file).expanduser()
            if not path.is_file():
                raise CliError(f"--prompts-file {prompts_file!r} does not exist or is not a file "
                               f"(relative paths start from {os.getcwd()!r})")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise CliError(f"--prompts-file {prompts_file!r} is not UTF-8 text ({exc.reason}); "
                               "save it as UTF-8 with one prompt per line") from None
        from_file = parse_prompt_lines(text)
        if not from_file:
            raise CliError(f"--prompts-file {prompts_file!r} holds no prompts: write one prompt per line "
                           "(blank lines and lines starting with '#' are skipped)")
        result.extend(from_file)
    if not result:
        raise CliError("no prompt given: pass at least one PROMPT or --prompts-file FILE")
    return result


# ============================================================================ runtime

def setup_runtime(device: Optional[str], threads: Optional[int]) -> str:
    """Apply --threads and check --device; returns the device string to use."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise CliError(f"--device {device!r} is not a torch device ({exc}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {device!r}: no CUDA GPU is available to this torch build; use --device cpu")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise CliError(f"--device {device!r}: MPS is not available here; use --device cpu")
    return str(resolved)


def one_line(message: object) -> str:
    """An exception message on a single line."""
    return " ".join(str(message).split())
