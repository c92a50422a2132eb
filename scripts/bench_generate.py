"""Generation speed: our MusicGen against transformers' MusicgenForConditionalGeneration.

Both are built with the musicgen-small architecture and random weights (same config), and
decode with CFG 3 and top-k 250, after a short warm-up generation (codec decode: best of 2 calls after
one untimed call). For each batch size and
duration it prints the median ms per decoding step (every step is time-stamped; the median is
robust to the stalls of a shared virtual machine, and transformers' steps are time-stamped the
same way, by a stopping criterion), seconds of compute per second of audio (mean step), peak
memory (each implementation runs in its own process; peak RSS of that process) and the codec
decode time against transformers' EncodecModel; then the same for the bundled default model:

    python scripts/bench_generate.py [--durations 1 10] [--batches 1 4] [--threads 2] [--rounds 3]
                                     [--dtypes float32 bfloat16 int8] [--skip-transformers]

transformers is an optional dependency of this benchmark only. Run it on a quiet machine:
the numbers are memory-bandwidth bound and any other process skews them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench_codec import best_time  # scripts/ is on the path when a script runs

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "assets" / "reference"
FRAME_RATE = 50.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_ours(dtype: str):
    """Our MusicGen with the musicgen-small LM and the 32 kHz EnCodec, random weights."""
    from audiocraft.models import MusicGen, builders
    from audiocraft.modules.low_precision import lower_precision_

    lm_cfg = OmegaConf.load(REFERENCE / "musicgen_small_xp_cfg.yaml")
    lm_cfg.device = "cpu"
    lm = builders.get_lm_model(lm_cfg)
    lm.cfg = lm_cfg
    codec = builders.get_compression_model(OmegaConf.load(REFERENCE / "encodec32_xp_cfg.yaml"))
    if dtype != "float32":
        lower_precision_(lm, dtype)
    return MusicGen("bench/musicgen-small", codec, lm, max_duration=30)


def text_conditions(lm, batch: int):
    """Precomputed T5-width conditions, so that no T5 download is needed."""
    rows = 2 * batch
    return {"description": (torch.randn(rows, 12, lm.dim), torch.ones(rows, 12, dtype=torch.long))}


def step_stats(stamps: list[float]) -> tuple[float, float]:
    """(median ms per step, mean ms per step) from the time stamps taken after each step."""
    gaps = sorted(1000 * (later - earlier) for earlier, later in zip(stamps, stamps[1:]))
    return gaps[len(gaps) // 2], sum(gaps) / len(gaps)


@torch.no_grad()
def time_ours(model, batch: int, duration: float) -> tuple[float, float, float]:
    """(median ms per step, mean ms per step, codec decode seconds) with guided top-k sampling."""
    lm = model.lm
    steps = int(duration * FRAME_RATE) + lm.num_codebooks
    conditions = text_conditions(lm, batch)
    token = torch.full((batch, lm.num_codebooks, 1), lm.special_token_id, dtype=torch.long)
    from audiocraft.modules.sampling import sample_token
    with lm.streaming():
        stamps = [time.perf_counter()]
        for _ in range(steps):
            logits = lm._guided_logits(token, conditions, 3.0, None, {})
            token = sample_token(logits, True, 1.0, 250, 0.0)
            stamps.append(time.perf_counter())
    codes = torch.randint(0, 2048, (batch, 4, int(duration * FRAME_RATE)))
    decode = best_time(lambda: model.compression_model.decode(codes), repeats=2)
    return (*step_stats(stamps), decode)


def build_transformers():
    """transformers' MusicgenForConditionalGeneration with the musicgen-small decoder, random weights."""
    from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, T5Config)
    text = T5Config(d_model=768, num_layers=1, num_heads=2, d_kv=8, d_ff=32, vocab_size=160,
                    pad_token_id=0, eos_token_id=1)  # tiny: runs once, not part of the per-step cost
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=64, codebook_size=2048,
                          codebook_dim=128, hidden_size=128, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2],
                          use_causal_conv=False, norm_type="weight_norm", pad_mode="constant",
                          num_lstm_layers=2, compress=2, normalize=False, chunk_length_s=None, overlap=None)
    decoder = MusicgenDecoderConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                    ffn_dim=4096, num_codebooks=4, vocab_size=2048, pad_token_id=2048,
                                    bos_token_id=2048, max_position_embeddings=2048, dropout=0.0)
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    return MusicgenForConditionalGeneration(config).eval()


@torch.no_grad()
def time_transformers(model, batch: int, duration: float) -> tuple[float, float, float]:
    """(median ms per step, mean ms per step, codec decode seconds) of transformers' generate, guided top-k
    sampling. A stopping criterion (called once per step) time-stamps the steps, so that the
    audio decoding that ends generate() is not counted as decoding steps."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stamps(StoppingCriteria):
        def __init__(self):
            self.stamps = []

        def __call__(self, input_ids, scores, **kwargs):
            self.stamps.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    inputs = {"input_ids": torch.ones(batch, 12, dtype=torch.long), "attention_mask": torch.ones(batch, 12, dtype=torch.long)}
    steps = int(duration * FRAME_RATE) + 4
    stamps = Stamps()
    model.generate(**inputs, do_sample=True, top_k=250, guidance_scale=3.0, max_new_tokens=steps - 1,
                   stopping_criteria=StoppingCriteriaList([stamps]))
    codes = torch.randint(0, 2048, (1, batch, 4, int(duration * FRAME_RATE)))
    decode = best_time(lambda: model.audio_encoder.decode(codes, [None]), repeats=2)
    return (*step_stats(stamps.stamps), decode)


def bench_worker(kind: str, args: argparse.Namespace) -> list[tuple]:
    """Time one implementation ('ours:<dtype>' or 'transformers') in this process; rows as tuples."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    if kind == "transformers":
        model = build_transformers()
        time_transformers(model, 1, 0.2)  # warm-up: first-call kernel set-up is not a per-step cost
        for batch in args.batches:
            for duration in args.durations:
                ms, mean, decode = time_transformers(model, batch, duration)
                rows.append(("transformers", batch, duration, ms, mean * FRAME_RATE / 1000, decode, peak_rss_mb()))
        return rows
    dtype = kind.split(":", 1)[1]
    model = build_ours(dtype)
    time_ours(model, 1, 0.2)  # warm-up, as for transformers
    for batch in args.batches:
        for duration in args.durations:
            ms, mean, decode = time_ours(model, batch, duration)
            rows.append(("ours " + dtype, batch, duration, ms, mean * FRAME_RATE / 1000, decode, peak_rss_mb()))
    return rows


def run_in_subprocess(kind: str, args: argparse.Namespace) -> list[tuple]:
    """Each implementation runs in its own process, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--worker", kind, "--threads", str(args.threads),
               "--durations", *map(str, args.durations), "--batches", *map(str, args.batches)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{kind}: failed\n{done.stderr[-2000:]}")
        return []
    return [tuple(row) for row in json.loads(done.stdout.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "int8"])
    parser.add_argument("--rounds", type=int, default=3,
                        help="run every implementation this many times, in rotating order, and report the median "
                             "round (the machine's speed drifts by up to 40%% between runs); [min-max] shows the spread")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="print a torch.profiler summary of our decoding steps (batch 1, first of --dtypes) and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(bench_worker(args.worker, args)))
        return
    if args.profile:
        profile_ours(args.threads, args.dtypes[0])
        return
    print(f"torch {torch.__version__}, {args.threads} threads, musicgen-small architecture, random weights, "
          "CFG 3, top-k 250; each implementation in its own process (peak memory = that process's peak RSS)")
    rows = []
    kinds = [f"ours:{dtype}" for dtype in args.dtypes]
    if not args.skip_transformers:
        if importlib.util.find_spec("transformers") is None:
            print("transformers not installed; skipped")
        else:
            kinds.append("transformers")
    runs: dict[tuple, list[tuple]] = {}
    for round_index in range(args.rounds):
        # the order rotates, so that a slow spell of the (shared) machine does not always hit the same one
        order = kinds[round_index % len(kinds):] + kinds[:round_index % len(kinds)]
        for kind in order:
            for row in run_in_subprocess(kind, args):
                runs.setdefault(row[:3], []).append(row)
    for key in sorted(runs, key=lambda key: (key[0] == "transformers", key)):
        row = combine_rounds(runs[key])
        rows.append(row)
        print_row(row, [run[3] for run in runs[key]])
    print_ratios(rows)
    if not args.skip_default:
        torch.set_num_threads(args.threads)
        bench_default_model(args.threads)


@torch.no_grad()
def profile_ours(threads: int, dtype: str = "float32", steps: int = 30) -> None:
    """Where the time of a decoding step goes (batch 1, CFG 3, top-k 250)."""
    from torch.profiler import ProfilerActivity, profile

    from audiocraft.modules.sampling import sample_token
    torch.set_num_threads(threads)
    model = build_ours(dtype)
    lm = model.lm
    conditions = text_conditions(lm, 1)
    token = torch.full((1, lm.num_codebooks, 1), lm.special_token_id, dtype=torch.long)
    with lm.streaming():
        for _ in range(5):
            token = sample_token(lm._guided_logits(token, conditions, 3.0, None, {}), True, 1.0, 250, 0.0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                token = sample_token(lm._guided_logits(token, conditions, 3.0, None, {}), True, 1.0, 250, 0.0)
    print(f"{steps} {dtype} decoding steps, batch 1, {threads} threads:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def combine_rounds(runs: list[tuple]) -> tuple:
    """One row from the rounds of one configuration: the median of each timing, the highest peak memory."""
    def median(values):
        values, middle = sorted(values), len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
    name, batch, duration = runs[0][:3]
    return (name, batch, duration, median([run[3] for run in runs]), median([run[4] for run in runs]),
            median([run[5] for run in runs]), max(run[6] for run in runs))


def print_row(row, round_ms: list[float] | None = None) -> None:
    name, batch, duration, ms, s_per_s, decode, mem = row
    spread = f" [{min(round_ms):.0f}-{max(round_ms):.0f}]" if round_ms and len(round_ms) > 1 else ""
    print(f"{name:>18} | batch {batch} | {duration:5.1f} s | {ms:7.1f} ms/step (median){spread} | {s_per_s:6.2f} s per s of audio "
          f"| codec decode {decode:6.2f} s | peak RSS {mem:7.0f} MB")


def print_ratios(rows) -> None:
    reference = {(b, d): ms for name, b, d, ms, *_ in rows if name == "transformers"}
    if not reference:
        return
    print("\nspeed-up over transformers (median ms per step, same batch and duration):")
    for name, batch, duration, ms, *_ in rows:
        if name != "transformers" and (batch, duration) in reference:
            print(f"{name:>18} | batch {batch} | {duration:5.1f} s | x{reference[(batch, duration)] / ms:5.2f}")


@torch.no_grad()
def bench_default_model(threads: int) -> None:
    from audiocraft.models import MusicGen
    try:
        model = MusicGen.get_pretrained(device="cpu")
    except FileNotFoundError as exc:
        print(f"\ndefault model: not available ({exc})")
        return
    print("\nbundled default model, 10 s of audio, batch 1:")
    for dtype in (None, torch.bfloat16, "int8"):
        model = MusicGen.get_pretrained(device="cpu", dtype=dtype)
        model.set_generation_params(duration=10)
        model.generate(["warm up"])
        start = time.perf_counter()
        first = None
        for chunk in model.stream(["a calm piano piece"], min_chunk_duration=0.5):
            if first is None:
                first = time.perf_counter() - start
        total = time.perf_counter() - start
        print(f"  dtype {str(dtype):>14}: 10 s of audio in {total:5.2f} s (x{10 / total:4.1f} real time), "
              f"first streamed chunk after {first:4.2f} s")


if __name__ == "__main__":
    main()
