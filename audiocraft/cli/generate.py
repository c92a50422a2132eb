"""The generation verbs: ``generate`` (text), ``continue`` (audio prompt) and ``melody`` (chroma)."""
from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import torch

from .common import (CliError, add_generation_options, add_prompt_sources, collect_prompts, non_negative_float,
                     positive_float, positive_int, setup_runtime)
from .outputs import RunSummary, WriteOptions, check_targets, numbered_names, write_audio

GENERATE_EPILOG = """\
examples:
  python -m audiocraft generate "lofi hip hop beat with mellow chords" --duration 8
  python -m audiocraft generate --prompts-file prompts.txt --model facebook/musicgen-small --seed 1
  python -m audiocraft generate "calm piano" "epic brass" --greedy --format flac --out songs

Output files are named <index>_<slug of the prompt>.<format> (000_calm_piano.wav...) inside --out;
written paths are printed on stdout, progress and the summary on stderr."""

CONTINUE_EPILOG = """\
examples:
  python -m audiocraft continue intro.wav --prompt-duration 4 --duration 12 --description "jazz trio"
  python -m audiocraft continue riff.flac --num-samples 3 --seed 7

--duration is the length of the whole output, which starts with the prompt itself."""

MELODY_EPILOG = """\
examples:
  python -m audiocraft melody hum.wav "80s synth pop" --model facebook/musicgen-melody --duration 10

Needs a model with melody (chroma) conditioning, such as facebook/musicgen-melody."""

#: ``call(descriptions) -> audio [B, C, T]``, one batch of a verb.
BatchCall = Callable[[List[Optional[str]]], Any]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the generate, continue and melody sub-commands."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(
        "generate", help="text to music: one audio file per prompt", epilog=GENERATE_EPILOG,
        formatter_class=formatter,
        description="Generate one audio file per text prompt with MusicGen (or AudioGen).")
    add_prompt_sources(parser)
    add_generation_options(parser)
    parser.set_defaults(handler=run_generate)

    parser = subparsers.add_parser(
        "continue", help="continue an audio file", epilog=CONTINUE_EPILOG, formatter_class=formatter,
        description="Generate audio that continues the start of AUDIO_FILE, optionally guided by a description.")
    parser.add_argument("audio_file", metavar="AUDIO_FILE", help="audio to continue (wav, flac, ogg, mp3...)")
    parser.add_argument("--prompt-start", type=non_negative_float, default=0.0, metavar="SECONDS",
                        help="where the prompt starts in AUDIO_FILE (default: 0)")
    parser.add_argument("--prompt-duration", type=positive_float, default=None, metavar="SECONDS",
                        help="how much of AUDIO_FILE to use as the prompt (default: all of it); must be "
                             "shorter than --duration and than the model's window")
    parser.add_argument("--description", default=None, metavar="TEXT", help="text guiding the continuation")
    parser.add_argument("--num-samples", type=positive_int, default=1, metavar="N",
                        help="how many different continuations to write (default: 1)")
    add_generation_options(parser)
    parser.set_defaults(handler=run_continue)

    parser = subparsers.add_parser(
        "melody", help="text + melody to music (melody models)", epilog=MELODY_EPILOG,
        formatter_class=formatter,
        description="Generate one audio file per prompt that follows the melody (chroma) of AUDIO_FILE.")
    parser.add_argument("audio_file", metavar="AUDIO_FILE", help="audio whose melody to follow")
    add_prompt_sources(parser)
    add_generation_options(parser)
    parser.set_defaults(handler=run_melody)


# ============================================================================ verbs

@contextlib.contextmanager
def _hub_progress_bars(enabled: bool):
    """Silence huggingface_hub's (and so transformers') progress bars inside the block when not ``enabled``."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _quiet_aware(handler):
    """Run a verb with third-party progress bars off under --quiet."""
    def run(args: argparse.Namespace) -> int:
        with _hub_progress_bars(not args.quiet):
            return handler(args)
    run.__doc__ = handler.__doc__
    return run


@_quiet_aware
def run_generate(args: argparse.Namespace) -> int:
    """Text to music: one file per prompt."""
    prompts = collect_prompts(args.prompts, args.prompts_file)
    paths = _plan_outputs(args, prompts)
    model, load_seconds = _load_model(args)
    return _generate(args, model, prompts, paths, lambda batch: model.generate(batch), load_seconds)


@_quiet_aware
def run_continue(args: argparse.Namespace) -> int:
    """Continue (the start of) an audio file, --num-samples times."""
    if args.description is not None and not args.description.strip():
        raise CliError("--description is empty: write a description or leave the option out")
    wav, sample_rate = _read_audio(args.audio_file, "AUDIO_FILE", args.prompt_start, args.prompt_duration)
    prompt_seconds = wav.shape[-1] / sample_rate
    if prompt_seconds >= args.duration:
        raise CliError(f"the prompt lasts {prompt_seconds:.2f} s but --duration is {args.duration:g} s (the whole "
                       "output, prompt included): raise --duration or pass a shorter --prompt-duration")
    label = args.description or Path(args.audio_file).stem
    descriptions = [args.description] * args.num_samples
    paths = _plan_outputs(args, [label] * args.num_samples)
    model, load_seconds = _load_model(args)
    if prompt_seconds > model.max_duration:
        raise CliError(f"the prompt lasts {prompt_seconds:.2f} s, longer than the model's window of "
                       f"{model.max_duration:g} s: pass --prompt-duration with a smaller value")

    def call(batch: List[Optional[str]]):
        return model.generate_continuation(wav[None].expand(len(batch), -1, -1), sample_rate, batch)
    return _generate(args, model, descriptions, paths, call, load_seconds)


@_quiet_aware
def run_melody(args: argparse.Namespace) -> int:
    """Text + melody (chroma) to music: one file per prompt."""
    prompts = collect_prompts(args.prompts, args.prompts_file)
    wav, sample_rate = _read_audio(args.audio_file, "AUDIO_FILE")
    paths = _plan_outputs(args, prompts)
    model, load_seconds = _load_model(args)
    if not getattr(model, "supports_melody", False):
        raise CliError(f"model {model.name!r} has no melody conditioning: pass --model with a melody model, "
                       "e.g. facebook/musicgen-melody, or use the `generate` verb for text only")

    def call(batch: List[Optional[str]]):
        return model.generate_with_chroma(batch, wav[None].expand(len(batch), -1, -1), sample_rate)
    return _generate(args, model, prompts, paths, call, load_seconds)


# ============================================================================ shared steps

def _read_audio(filename: str, argument: str, start: float = 0.0, duration: Optional[float] = None):
    """Read ``[C, T]`` audio and its sample rate; clear errors for missing, unreadable or empty audio."""
    from ..data.audio import audio_read

    wav, sample_rate = audio_read(filename, seek_time=start, duration=duration or -1.0)
    if wav.shape[-1] == 0:
        raise CliError(f"{argument} {filename!r} holds no audio after {start:g} s: lower --prompt-start")
    return wav, sample_rate


def _plan_outputs(args: argparse.Namespace, labels: Sequence[Optional[str]]) -> List[Path]:
    """The output path of every sample, checked against existing files before any work."""
    folder = Path(args.out).expanduser()
    paths = [folder / f"{name}.{args.format}" for name in numbered_names(labels)]
    check_targets(paths, args.overwrite)
    return paths


SMALL_LM = 50_000_000  # parameters


def _load_model(args: argparse.Namespace):
    from .loading import load_generation_model

    device = setup_runtime(args.device, args.threads)
    start = time.perf_counter()
    model = load_generation_model(args.model, device)
    if args.threads is None and device == "cpu" and sum(p.numel() for p in model.lm.parameters()) < SMALL_LM:
        # A small LM's per-step work is too fine-grained for several threads: they only add
        # synchronisation, which stalls badly when other processes share the cores.
        torch.set_num_threads(1)
    return model, time.perf_counter() - start


def _set_params(args: argparse.Namespace, model) -> None:
    from ..models import MusicGen

    params = dict(use_sampling=not args.greedy, top_k=min(args.top_k, model.lm.card), top_p=args.top_p,
                  temperature=args.temperature, duration=args.duration, cfg_coef=args.cfg_coef,
                  two_step_cfg=args.two_step_cfg)
    stride = args.extend_stride
    if stride is not None and stride >= model.max_duration:
        raise CliError(f"--extend-stride {stride:g} must be smaller than the model's window of "
                       f"{model.max_duration:g} s (each new window keeps the last window - stride seconds)")
    if stride is None and isinstance(model, MusicGen):
        stride = min(18.0, 0.6 * model.max_duration)
    if stride is not None:
        params["extend_stride"] = stride
    model.set_generation_params(**params)


def _progress_bar(description: str, total_frames: int, quiet: bool):
    """A tqdm bar on stderr and the ``(done_frames, total_frames)`` callback that drives it."""
    from tqdm import tqdm

    bar = tqdm(total=total_frames, desc=description, unit="frame", leave=False, disable=quiet, file=sys.stderr)

    def callback(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)
    return bar, callback


def _generate(args: argparse.Namespace, model, descriptions: List[Optional[str]], paths: List[Path],
              call: BatchCall, load_seconds: float) -> int:
    """Generate in batches of --batch-size, writing each batch as soon as it is ready."""
    import torch

    _set_params(args, model)
    options = WriteOptions(format=args.format, strategy=args.strategy,
                           loudness_headroom_db=args.loudness_headroom_db)
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    summary = RunSummary(seed=seed, model=model.name, load_seconds=load_seconds)
    start = time.perf_counter()
    torch.manual_seed(seed)
    batches = range(0, len(descriptions), args.batch_size)
    try:
        for number, first in enumerate(batches, start=1):
            batch = descriptions[first:first + args.batch_size]
            bar, callback = _progress_bar(f"batch {number}/{len(batches)}", int(model.duration * model.frame_rate),
                                          args.quiet)
            model.set_custom_progress_callback(callback)
            try:
                with torch.no_grad():
                    audio = call(batch)
            finally:
                bar.close()
            for offset, wav in enumerate(audio):
                path = write_audio(paths[first + offset], wav, model.sample_rate, options)
                summary.written.append(path)
                summary.audio_seconds += wav.shape[-1] / model.sample_rate
                print(path, flush=True)
    finally:
        model.set_custom_progress_callback(None)
    summary.wall_seconds = time.perf_counter() - start
    if not args.quiet:
        summary.report()
    return 0
