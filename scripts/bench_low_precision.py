"""Quality cost of the weight-only low-precision options (bfloat16, int8) against float32.

For a model (default: the bundled default model) and a few prompts, it measures:

* teacher-forced agreement: the float32 model's greedy tokens are fed to each low-precision
  model; share of positions where its top-1 token is the same, and the mean KL divergence
  of its next-token distribution from float32's;
* free-running greedy generation: share of tokens equal to float32's, and the number of
  frames before the first difference;
* audio distance: mel L1 distance and SI-SNR of each low-precision generation against the
  float32 generation (both decoded by the same codec).

    python scripts/bench_low_precision.py [--model default|<name or folder>] [--duration 5]
                                          [--threads 2]
"""
from __future__ import annotations

import argparse

import torch

PROMPTS = ["a slow baroque chorale on string ensemble", "a lively folk dance on flute with drums",
           "a calm piano piece in D major", "a march for brass band, 120 bpm"]


def load(name: str, dtype):
    from audiocraft.models import MusicGen
    model = MusicGen.get_pretrained(None if name == "default" else name, device="cpu", dtype=dtype)
    return model


@torch.no_grad()
def teacher_forced(model, codes: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Log-probabilities [B, K, T, card] of the LM (conditional, no CFG) for ``codes`` [B, K, T]."""
    attributes, _ = model._prepare_tokens_and_attributes(prompts, None)
    lm = model.lm
    tokenized = lm.condition_provider.tokenize(attributes)
    conditions = lm.condition_provider(tokenized)
    out = lm.compute_predictions(codes, [], condition_tensors=conditions)
    return out.logits.float().log_softmax(-1), out.mask


def mel_distance(a: torch.Tensor, b: torch.Tensor, sample_rate: int) -> float:
    from audiocraft.losses.specloss import MelSpectrogramL1Loss
    return float(MelSpectrogramL1Loss(sample_rate=sample_rate)(a, b))


def si_snr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    from audiocraft.losses.sisnr import SISNR
    return -float(SISNR()(estimate, reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="'default' or a pretrained name / folder")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reference = load(args.model, None)
    reference.set_generation_params(duration=args.duration, use_sampling=False)
    ref_wav, ref_codes = reference.generate(PROMPTS, return_tokens=True)
    ref_logp, mask = teacher_forced(reference, ref_codes, PROMPTS)
    ref_top1 = ref_logp.argmax(-1)
    sample_rate = reference.sample_rate
    print(f"model {args.model}, {len(PROMPTS)} prompts, {args.duration:g} s, greedy, CFG "
          f"{reference.generation_params['cfg_coef']:g}")
    print(f"{'dtype':>9} | teacher-forced top-1 agreement | mean KL (nats) | free-running tokens equal | "
          f"first difference (frame) | mel distance | SI-SNR vs float32")
    for dtype in (torch.bfloat16, "int8"):
        model = load(args.model, dtype)
        model.set_generation_params(duration=args.duration, use_sampling=False)
        logp, _ = teacher_forced(model, ref_codes, PROMPTS)
        valid = mask.bool()
        agree = (logp.argmax(-1) == ref_top1)[valid].float().mean().item()
        kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)[valid].mean().item()
        wav, codes = model.generate(PROMPTS, return_tokens=True)
        equal = (codes == ref_codes)
        same_frames = equal.all(dim=1)  # [B, T]
        first = [int((~row).nonzero()[0]) if (~row).any() else row.numel() for row in same_frames]
        print(f"{str(dtype).replace('torch.', ''):>9} | {agree:30.4f} | {kl:14.5f} | {equal.float().mean().item():25.4f} | "
              f"{sum(first) / len(first):24.1f} | {mel_distance(wav, ref_wav, sample_rate):12.4f} | "
              + ("identical" if torch.equal(wav, ref_wav) else f"{si_snr_db(wav, ref_wav):8.2f} dB"))


if __name__ == "__main__":
    main()
