"""Decoding speed of the MusicGen language model (musicgen-small architecture, random weights).

Prints milliseconds per decoding step and seconds of compute per second of audio, with
classifier-free guidance on (the batch is doubled), for batch 1 and 4:

    python scripts/bench_lm.py [--steps 50] [--threads 2] [--dtype float32|bfloat16] [--config small]

The text condition is a random tensor of T5-base width (the T5 encoder runs once per
generation and is not part of the per-step cost).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from audiocraft.models import builders

CONFIGS = Path(__file__).resolve().parent.parent / "tests" / "assets" / "reference"


def build_lm(dtype: torch.dtype) -> torch.nn.Module:
    cfg = OmegaConf.load(CONFIGS / "musicgen_small_xp_cfg.yaml")
    cfg.device = "cpu"
    lm = builders.get_lm_model(cfg).eval()
    return lm.to(dtype)


@torch.no_grad()
def time_steps(lm, batch: int, steps: int, warmup: int = 5) -> float:
    """Mean seconds per decoding step with batched CFG (2 * batch rows)."""
    dtype = next(lm.parameters()).dtype
    rows = 2 * batch
    text = torch.randn(rows, 12, lm.dim, dtype=dtype)
    conditions = {"description": (text, torch.ones(rows, 12, dtype=torch.long))}
    token = torch.full((rows, lm.num_codebooks, 1), lm.special_token_id, dtype=torch.long)
    with lm.streaming():
        for step in range(warmup + steps):
            if step == warmup:
                start = time.perf_counter()
            logits = lm(token, [], condition_tensors=conditions)
            token = logits[:, :, -1:].argmax(-1)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = build_lm(getattr(torch, args.dtype))
    params = sum(p.numel() for p in lm.parameters())
    frame_rate = 50.0
    print(f"musicgen-small LM: {params / 1e6:.0f}M parameters, {args.dtype}, {args.threads} threads, CFG on")
    print(f"{'batch':>5} {'ms/step':>9} {'s per s of audio':>17}")
    for batch in args.batches:
        seconds = time_steps(lm, batch, args.steps)
        print(f"{batch:>5} {seconds * 1000:>9.1f} {seconds * frame_rate:>17.2f}")


if __name__ == "__main__":
    main()
