"""Measure EnCodec encode/decode speed (x real time) on this machine.

Builds the full-size 32 kHz MusicGen EnCodec (SEANet 64 filters, latent 128, ratios
[8, 5, 4, 4], 4 codebooks of 2048) with random weights from AudioCraft's config, then
times ``encode`` and ``decode`` on random audio. "x real time" = seconds of audio
processed per second of wall-clock time (> 1 means faster than real time).

Usage::

    python scripts/bench_codec.py --duration 10 --batch 1 --threads 1
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from audiocraft.models import builders

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "tests" / "assets" / "reference" / "encodec32_xp_cfg.yaml"


def build_model(config: Path) -> torch.nn.Module:
    """Full-size EnCodec with random weights and random (initialised) codebooks, in eval mode."""
    if not config.is_file():
        raise FileNotFoundError(f"--config {str(config)!r} does not exist; pass an AudioCraft compression xp.cfg YAML.")
    model = builders.get_compression_model(OmegaConf.load(config))
    with torch.no_grad():
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_()
            layer._codebook.embed_avg.copy_(layer._codebook.embed)
            layer._codebook.inited.fill_(1.0)
    return model.eval()


def best_time(fn, repeats: int) -> float:
    """Smallest wall-clock time of ``repeats`` calls, in seconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="audio length per item, in seconds")
    parser.add_argument("--batch", type=int, default=1, help="batch size B")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the best one is reported)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="AudioCraft compression config YAML")
    args = parser.parse_args()
    if args.duration <= 0 or args.batch < 1 or args.repeats < 1:
        parser.error("--duration must be > 0 seconds, --batch and --repeats >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = build_model(args.config)
    num_params = sum(p.numel() for p in model.parameters())
    wav = 0.1 * torch.randn(args.batch, model.channels, int(args.duration * model.sample_rate))
    audio_seconds = args.batch * args.duration
    with torch.inference_mode():
        codes, scale = model.encode(wav)
        encode_s = best_time(lambda: model.encode(wav), args.repeats)
        decode_s = best_time(lambda: model.decode(codes, scale), args.repeats)

    print(f"EnCodec 32 kHz, {num_params / 1e6:.1f} M parameters, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"input: batch {args.batch} x {args.duration:g} s ({tuple(wav.shape)}), codes {tuple(codes.shape)}")
    print(f"encode: {encode_s:.3f} s -> {audio_seconds / encode_s:.1f}x real time")
    print(f"decode: {decode_s:.3f} s -> {audio_seconds / decode_s:.1f}x real time")


if __name__ == "__main__":
    main()
