#!/usr/bin/env python
"""Render a captioned music dataset from the music21 corpus with FluidSynth (General MIDI).

Example::

    python scripts/make_music_dataset.py --out /work/data/music21_gm --hours 12 --workers 2 --seed 0

writes ``<out>/audio/<split>/*.wav`` (16 kHz mono) with a MusicInfo ``.json`` sidecar next to each
clip, and manifests ``<out>/{train,valid,test}/data.jsonl`` usable with
``AudioDataset.from_meta(<out>/train)`` and ``MusicDataset``. Rerunning with the same arguments
resumes (finished clips are skipped); more ``--hours`` extends the dataset. See docs/DATASET.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audiocraft.data.synth.build import BuildConfig, build_dataset  # noqa: E402
from audiocraft.data.synth.corpus import COLLECTIONS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (new, empty, or a previous run)")
    parser.add_argument("--hours", type=float, default=10.0, help="hours of audio to plan, all splits (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 1 = no subprocess)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output sample rate in Hz (default 16000)")
    parser.add_argument("--max-works", type=int, default=None, help="use at most the first N source works")
    parser.add_argument("--clip-seconds", type=float, nargs=2, default=(10.0, 30.0), metavar=("MIN", "MAX"),
                        help="clip duration range in seconds (default 10 30)")
    parser.add_argument("--format", dest="audio_format", choices=("wav", "flac"), default="wav",
                        help="audio file format, 16-bit PCM (default wav)")
    parser.add_argument("--collections", type=str, default=None,
                        help=f"comma-separated music21 corpus folders (default all: {','.join(COLLECTIONS)})")
    parser.add_argument("--splits", type=float, nargs=3, default=(0.9, 0.05, 0.05), metavar=("TRAIN", "VALID", "TEST"),
                        help="shares of works per split (default 0.9 0.05 0.05)")
    parser.add_argument("--soundfont", type=str, default=None, help="General MIDI .sf2 (default FluidR3_GM)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="parsed-works cache (default <out>/cache)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder that is not a previous run (never deletes anything)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--balance-families", action="store_true",
                        help="draw each clip's instrument family first, uniformly, then an instrument of it "
                             "(default: instruments uniformly, which makes a third of the clips woodwind)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    collections = None
    if args.collections:
        collections = tuple(name.strip() for name in args.collections.split(",") if name.strip())
    try:
        config = BuildConfig(out=args.out, hours=args.hours, workers=args.workers, seed=args.seed,
                             sample_rate=args.sample_rate, max_works=args.max_works,
                             clip_seconds=tuple(args.clip_seconds), audio_format=args.audio_format,
                             collections=collections, splits=tuple(args.splits), soundfont=args.soundfont,
                             cache_dir=args.cache_dir, force=args.force, progress=not args.no_progress,
                             balance_families=args.balance_families)
        summary = build_dataset(config)
    except (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError) as err:
        print(f"make_music_dataset: error: {err}", file=sys.stderr)
        return 2
    clips, hours = summary["clips"], summary["hours"]
    speed = summary["render_speed_x_realtime"]
    print(f"done: {sum(clips.values())} clips, {sum(hours.values()):.2f} h "
          f"({', '.join(f'{s} {clips[s]} clips / {hours[s]:.2f} h' for s in clips)}); "
          f"{summary['works_used']} works ({summary['works_failed_to_parse']} failed to parse); "
          f"rendered {summary['clips_rendered_this_run']} clips this run at "
          f"{'n/a' if speed is None else f'{speed}x'} real time; {summary['num_clips_failed']} failed; "
          f"total {summary['total_seconds']:.0f} s")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
