"""Evaluate a MusicGen model (by default the project's own) on the held-out split of a captioned dataset.

For ``--num-samples`` clips of the test split of a dataset made by
``scripts/make_music_dataset.py`` (the first ``--duration`` seconds of each clip), it measures:

- the codec (``model.compression_model``): SI-SNR (dB, :func:`audiocraft.losses.si_snr`) and the
  log-mel L1 distance (:class:`audiocraft.losses.MelSpectrogramL1Loss`, the ``mel`` settings of
  the compression solver) of the reconstructions, and the accuracy of the evaluation classifier
  (:mod:`audiocraft.metrics.classifier`) on the originals and on the reconstructions;
- the LM: one clip generated from each held-out caption (``--duration`` seconds, the model's
  default sampling parameters; ``--rounds N``: N clips per caption, pooled). *Instrument
  adherence* is the fraction of generated clips the classifier hears as the instrument family
  of their caption's clip (sidecar ``instrument_family``); the *shuffled* rate scores the same
  clips against the family of another clip's caption (a fixed derangement of the captions), i.e.
  the agreement expected by chance. The same is reported for the style head, plus the KL divergence between the
  classifier's family distributions of each generated clip and its original. Per family, it also
  counts how many prompts asked for it and how many of their clips were heard as it, what the
  generated clips were heard as, and the mean of the per-family rates (*balanced*): a decoder that
  renders everything as the most common family scores well on the plain rate, not on this one;
- FAD on the classifier's embeddings (:class:`~audiocraft.metrics.classifier.TaggerEmbedder`) of
  generated audio vs held-out audio, and of codec reconstructions vs held-out audio; for scale,
  also between the two halves of the held-out clips (real vs real music with half as many clips).
  With ``D = 128`` embeddings, FAD needs many clips (100+) to be stable; compare runs at equal N.

It prints a table, writes ``<out>/eval.json`` and, for the first ``--num-examples`` captions,
``<out>/sample_XX.ogg`` and a spectrogram ``<out>/sample_XX.png`` (files of earlier runs with
these names are replaced).

    python scripts/eval_default_model.py --model default --data /work/data/music21_gm_lm0 --num-samples 53
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from audiocraft.cli.common import non_negative_float, non_negative_int  # noqa: E402
from audiocraft.data.audio import audio_read, audio_write  # noqa: E402
from audiocraft.data.audio_utils import convert_audio  # noqa: E402
from audiocraft.losses import MelSpectrogramL1Loss, si_snr  # noqa: E402
from audiocraft.metrics import ClassifierTextConsistency, FrechetAudioDistance, KLDivergence  # noqa: E402
from audiocraft.metrics.base import run_audio_model  # noqa: E402
from audiocraft.metrics.classifier import (MusicTagger, TaggerClassifier, TaggerEmbedder, load_tagger,  # noqa: E402
                                           read_tagger_notes)
from audiocraft.modules.spectrogram import MelSpectrogram  # noqa: E402

FAMILY, STYLE = "instrument_family", "style"


@dataclass
class HeldOutClip:
    """One held-out clip: its audio ``wav`` ``[C, T]`` at ``sample_rate`` Hz and its sidecar labels."""
    name: str
    description: str
    labels: dict[str, str]
    wav: torch.Tensor
    sample_rate: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default",
                        help="MusicGen folder, hub name, or 'default' for the bundled model (default)")
    parser.add_argument("--data", type=Path, required=True, help="dataset root with <split>/data.jsonl")
    parser.add_argument("--split", default="test", help="held-out split (default test)")
    parser.add_argument("--num-samples", type=int, default=32, help="held-out clips to use (default 32)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per clip and generation (default 5)")
    parser.add_argument("--classifier", type=Path, default=None,
                        help="tagger folder (default: the shipped audiocraft/assets/eval_classifier)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "default_model",
                        help="folder for eval.json and the examples (default docs/default_model)")
    parser.add_argument("--num-examples", type=int, default=4, help="generated examples to save (default 4)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per generation batch (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip choice, shuffle and sampling")
    parser.add_argument("--rounds", type=int, default=1,
                        help="generations per caption, pooled in the LM scores (default 1; one round's instrument "
                             "adherence varies by a few points with the seed)")
    parser.add_argument("--cfg-coef", type=non_negative_float, default=None,
                        help="classifier-free guidance coefficient (default: the model's)")
    parser.add_argument("--top-k", type=non_negative_int, default=None, help="top-k sampling (default: the model's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--codec", default=None, metavar="CHECKPOINT",
                        help="evaluate only a codec: //sig/<signature>, an experiment folder, a checkpoint or "
                             "//pretrained/<name> (writes <out>/codec_eval.json; --model is ignored)")
    args = parser.parse_args(argv)
    for name in ("num_samples", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.duration <= 0:
        parser.error(f"--duration must be > 0 seconds, got {args.duration}")
    if args.num_examples < 0:
        parser.error(f"--num-examples must be >= 0, got {args.num_examples}")
    return args


# --------------------------------------------------------------------------- data


def load_heldout_clips(root: Path, split: str, num_samples: int, duration: float, seed: int = 0) -> list[HeldOutClip]:
    """Up to ``num_samples`` clips of ``<root>/<split>/data.jsonl`` (a seeded choice, in manifest order),
    each cut or zero-padded to its first ``duration`` seconds, with its sidecar description and labels."""
    manifest = Path(root) / split / "data.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"load_heldout_clips: no manifest {manifest}; --data must be a dataset root "
                                f"made by scripts/make_music_dataset.py, with a {split!r} split.")
    entries = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not entries:
        raise ValueError(f"load_heldout_clips: {manifest} lists no clip.")
    if num_samples < len(entries):
        order = torch.randperm(len(entries), generator=torch.Generator().manual_seed(seed))[:num_samples]
        entries = [entries[i] for i in sorted(order.tolist())]
    clips = []
    for entry in entries:
        info_path = Path(entry.get("info_path") or Path(entry["path"]).with_suffix(".json"))
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if not info.get("description"):
            raise ValueError(f"load_heldout_clips: {info_path} has no description to generate from.")
        wav, sample_rate = audio_read(entry["path"], duration=duration, pad=True)
        clips.append(HeldOutClip(name=info.get("name") or Path(entry["path"]).stem, description=info["description"],
                                 labels={head: info[head] for head in (FAMILY, STYLE) if info.get(head)},
                                 wav=wav, sample_rate=sample_rate))
    return clips


def wanted_labels(clips: list[HeldOutClip]) -> dict[str, list[str | None]]:
    """Per tagger head, the label each clip's sidecar gives (None when it has none)."""
    return {head: [clip.labels.get(head) for clip in clips] for head in (FAMILY, STYLE)}


def stack_clips(clips: list[HeldOutClip]) -> tuple[torch.Tensor, int]:
    """The clips as one batch ``[B, C, T]`` at the first clip's rate (others are resampled)."""
    rate = clips[0].sample_rate
    wavs = [clip.wav if clip.sample_rate == rate else convert_audio(clip.wav, clip.sample_rate, rate, clip.wav.shape[0])
            for clip in clips]
    length = min(wav.shape[-1] for wav in wavs)
    channels = max(wav.shape[0] for wav in wavs)
    return torch.stack([wav[:, :length].expand(channels, -1) for wav in wavs]), rate


# --------------------------------------------------------------------------- measurements


def derangement(count: int, seed: int = 0) -> list[int]:
    """A seeded permutation of ``range(count)`` with no fixed point (identity when ``count < 2``)."""
    if count < 2:
        return list(range(count))
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(count, generator=generator).tolist()
        if all(i != j for i, j in enumerate(order)):
            return order


def tag_audio(tagger: MusicTagger, wav: torch.Tensor, sample_rate: int,
              batch_size: int = 16) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Tagger embeddings ``[B, D]`` and probabilities ``{head: [B, L]}`` of audio ``[B, C, T]`` at ``sample_rate`` Hz."""
    heads = list(tagger.heads)

    def outputs(chunk: torch.Tensor) -> torch.Tensor:
        embedding, probabilities = tagger.clip_outputs(chunk)
        return torch.cat([embedding, *(probabilities[head] for head in heads)], dim=-1)

    tagger.eval()
    rows = [run_audio_model(outputs, tagger, wav[i:i + batch_size], None, sample_rate, "tag_audio")
            for i in range(0, wav.shape[0], batch_size)]
    table = torch.cat(rows).float()
    sizes = [tagger.embedding_dim] + [len(tagger.heads[head]) for head in heads]
    embedding, *probabilities = table.split(sizes, dim=-1)
    return embedding, dict(zip(heads, probabilities))


def accuracy(probabilities: torch.Tensor, labels: list[str], wanted: list[str | None]) -> float | None:
    """Fraction of rows whose argmax is the wanted label (rows without a known wanted label are skipped)."""
    kept = [i for i, label in enumerate(wanted) if label in labels]
    if not kept:
        return None
    predicted = probabilities[kept].argmax(dim=-1)
    target = torch.tensor([labels.index(wanted[i]) for i in kept])
    return float((predicted == target).float().mean())


def per_label(probabilities: torch.Tensor, labels: list[str], wanted: list[str | None]) -> dict:
    """Per wanted label, ``[hits, count]``: ``count`` rows asked for it, ``hits`` of them were heard as it.
    Also what all rows were heard as, and ``balanced``: the mean of the per-label rates (None when no row
    has a known wanted label)."""
    heard = [labels[int(i)] for i in probabilities.argmax(dim=-1)]
    by_label: dict[str, list[int]] = {}
    for got, want in zip(heard, wanted):
        if want in labels:
            counts = by_label.setdefault(want, [0, 0])
            counts[0] += int(got == want)
            counts[1] += 1
    rates = [hits / count for hits, count in by_label.values()]
    return {"by_label": dict(sorted(by_label.items())),
            "heard": {label: heard.count(label) for label in labels if label in heard},
            "balanced": sum(rates) / len(rates) if rates else None}


def adherence(classifier: TaggerClassifier, probabilities: torch.Tensor, wanted: list[str | None],
              order: list[int]) -> dict[str, float | int | None]:
    """Adherence of generated clips to their prompts' labels, and to shuffled prompts' labels.

    Args:
        classifier: the head that produced ``probabilities`` (gives the labels).
        probabilities: ``[B, L]`` class probabilities of the generated clips.
        wanted: label wanted by the prompt of each clip (None or unknown: skipped).
        order: clip ``i`` is also scored against ``wanted[order[i]]`` (the shuffled rate).
    Returns:
        ``{'rate', 'shuffled_rate', 'evaluated'}``; rates are None when nothing could be scored.
    """
    result: dict[str, float | int | None] = {}
    for key, targets in (("rate", wanted), ("shuffled_rate", [wanted[j] for j in order])):
        metric = ClassifierTextConsistency(classifier, label_of_text=lambda text: None)
        kept = [i for i, label in enumerate(targets) if label in classifier.labels]
        if kept:
            metric.update_predictions(probabilities[kept], [targets[i] for i in kept])
        result[key] = metric.compute() if metric.num_evaluated else None
        if key == "rate":
            result["evaluated"] = metric.num_evaluated
    return result


def fad(embedder: TaggerEmbedder, generated: torch.Tensor, reference: torch.Tensor) -> float | None:
    """FAD between two sets of tagger embeddings ``[B, D]`` (None with fewer than 2 clips in a set)."""
    if generated.shape[0] < 2 or reference.shape[0] < 2:
        return None
    metric = FrechetAudioDistance(embedder)
    metric.update_embeddings(generated=generated, reference=reference)
    return metric.compute()


def kl_to_originals(classifier: TaggerClassifier, generated: torch.Tensor, originals: torch.Tensor) -> float:
    """Mean KL divergence KL(original || generated) of paired class distributions ``[B, L]``."""
    metric = KLDivergence(classifier)
    metric.update_probabilities(generated, originals)
    return float(metric.compute()["kld"])


@torch.no_grad()
def reconstruct(compression_model, wav: torch.Tensor, sample_rate: int, batch_size: int) -> torch.Tensor:
    """Encode and decode audio ``[B, C, T]`` at ``sample_rate`` with the codec -> ``[B, C', T']`` at the codec's rate."""
    device = next(iter(compression_model.parameters())).device
    audio = convert_audio(wav, sample_rate, compression_model.sample_rate, compression_model.channels)
    outputs = []
    for start in range(0, audio.shape[0], batch_size):
        chunk = audio[start:start + batch_size].to(device)
        codes, scale = compression_model.encode(chunk)
        outputs.append(compression_model.decode(codes, scale)[..., :chunk.shape[-1]].cpu())
    return torch.cat(outputs)


def codec_scores(compression_model, originals: torch.Tensor, sample_rate: int,
                 reconstructions: torch.Tensor) -> dict[str, float]:
    """Mean SI-SNR (dB) and mel distance between originals (any rate) and codec reconstructions."""
    reference = convert_audio(originals, sample_rate, compression_model.sample_rate, compression_model.channels)
    length = min(reference.shape[-1], reconstructions.shape[-1])
    reference, estimate = reference[..., :length], reconstructions[..., :length]
    mel = MelSpectrogramL1Loss(sample_rate=compression_model.sample_rate, n_fft=1024, hop_length=256,
                               win_length=1024, n_mels=64, f_min=64)
    distances = [float(mel(estimate[i:i + 1], reference[i:i + 1])) for i in range(reference.shape[0])]
    return {"si_snr_db": float(si_snr(estimate, reference).mean()), "mel_distance": sum(distances) / len(distances)}


# --------------------------------------------------------------------------- examples


def save_spectrogram_png(wav: torch.Tensor, sample_rate: int, path: Path, title: str = "") -> Path:
    """A log-mel spectrogram picture (dB, 80 bands) of audio ``[C, T]``: matplotlib if installed, else PIL."""
    mono = wav.float().mean(dim=0)
    mel = MelSpectrogram(sample_rate=sample_rate, n_fft=1024, hop_length=256, n_mels=80)(mono)
    db = 10 * mel.clamp(min=1e-10).log10()
    db = db.clamp(min=float(db.max()) - 80).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        import numpy as np
        from PIL import Image

        grey = (255 * (db - db.min()) / max(float(db.max() - db.min()), 1e-6)).astype(np.uint8)[::-1]
        Image.fromarray(grey).resize((800, 320)).save(path)
        return path
    figure = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    seconds = mono.shape[-1] / sample_rate
    image = axis.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, db.shape[0]))
    axis.set_xlabel("time (s)")
    axis.set_ylabel("mel band")
    axis.set_title("\n".join(textwrap.wrap(title, 100)), fontsize=8)
    figure.colorbar(image, ax=axis, label="dB")
    figure.tight_layout()
    figure.savefig(path)
    return path


def write_examples(out: Path, generated: torch.Tensor, sample_rate: int, clips: list[HeldOutClip],
                   heard: list[str], count: int) -> list[dict]:
    """Save the first ``count`` generated clips as .ogg + spectrogram .png; their descriptions for the JSON."""
    examples = []
    for index in range(min(count, generated.shape[0])):
        stem = out / f"sample_{index:02d}"
        audio_path = audio_write(stem, generated[index], sample_rate, format="ogg", strategy="loudness",
                                 log_clipping=False)
        picture = save_spectrogram_png(generated[index], sample_rate, stem.with_suffix(".png"),
                                       clips[index].description)
        examples.append({"caption": clips[index].description, "clip": clips[index].name,
                         "wanted_family": clips[index].labels.get(FAMILY), "heard_family": heard[index],
                         "audio": audio_path.name, "spectrogram": picture.name})
    return examples


# --------------------------------------------------------------------------- the evaluation


def evaluate_codec(compression_model, originals: torch.Tensor, data_rate: int, tagger: MusicTagger,
                   wanted: dict[str, list[str | None]], batch_size: int = 8, log=print):
    """Codec scores on held-out audio ``[B, C, T]``: SI-SNR, mel distance, classifier accuracy.

    Returns ``(scores, original_embedding, original_probs, reconstruction_embedding)``; ``scores``
    holds the sample rate, ``si_snr_db``, ``mel_distance`` and ``classifier_accuracy`` (per head,
    on the originals and on the reconstructions).
    """
    start = time.time()
    reconstructions = reconstruct(compression_model, originals, data_rate, batch_size)
    scores = {"sample_rate": compression_model.sample_rate,
              **codec_scores(compression_model, originals, data_rate, reconstructions)}
    log(f"codec: {originals.shape[0]} clips reconstructed in {time.time() - start:.1f} s")
    original_embedding, original_probs = tag_audio(tagger, originals, data_rate)
    recon_embedding, recon_probs = tag_audio(tagger, reconstructions, compression_model.sample_rate)
    scores["classifier_accuracy"] = {
        "original": {head: accuracy(original_probs[head], tagger.heads[head], wanted[head]) for head in wanted},
        "reconstructed": {head: accuracy(recon_probs[head], tagger.heads[head], wanted[head]) for head in wanted}}
    if FAMILY in wanted:
        scores["family_by_label"] = {kind: per_label(probs[FAMILY], tagger.heads[FAMILY], wanted[FAMILY])
                                     for kind, probs in (("original", original_probs), ("reconstructed", recon_probs))}
    return scores, original_embedding, original_probs, recon_embedding


def evaluate_model(model, clips: list[HeldOutClip], tagger: MusicTagger, duration: float = 5.0,
                   batch_size: int = 8, seed: int = 0, out: Path | None = None, num_examples: int = 0,
                   log=print, generation_params: dict | None = None, rounds: int = 1) -> dict:
    """All the numbers of the module docstring for ``model`` (a MusicGen) on ``clips``.

    Args:
        model: a loaded :class:`audiocraft.models.MusicGen` (or any BaseGenModel).
        clips: held-out clips (see :func:`load_heldout_clips`).
        tagger: the evaluation classifier (needs the heads ``instrument_family`` and ``style``).
        duration: length of each generated clip, in seconds.
        batch_size: clips per generation / codec batch.
        seed: seed of the caption shuffle and of the sampling.
        out: folder for the examples (None: none are written).
        num_examples: how many generated clips to save in ``out``.
        log: where progress lines go.
        generation_params: other arguments of ``set_generation_params`` (e.g. ``cfg_coef``); the
            model's defaults otherwise.
        rounds: generations per caption (the sampling continues from ``seed``). The LM scores pool
            all of them; with more than one, ``lm`` also lists the instrument adherence of each
            round, to show how much one round varies.
    Returns:
        A JSON-serialisable dict: ``codec``, ``lm``, ``fad``, ``examples``, ``settings``.
    """
    if not clips:
        raise ValueError("evaluate_model: `clips` is empty; pass at least one held-out clip.")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"evaluate_model: rounds must be an integer >= 1, got {rounds!r}.")
    missing = [head for head in (FAMILY, STYLE) if head not in tagger.heads]
    if missing:
        raise ValueError(f"evaluate_model: the tagger lacks the head(s) {missing}; it has {list(tagger.heads)}.")
    classifiers = {head: TaggerClassifier(tagger, head) for head in (FAMILY, STYLE)}
    embedder = TaggerEmbedder(tagger)
    originals, data_rate = stack_clips(clips)
    wanted = wanted_labels(clips)

    codec, original_embedding, original_probs, recon_embedding = evaluate_codec(
        model.compression_model, originals, data_rate, tagger, wanted, batch_size, log)

    start = time.time()
    model.set_generation_params(duration=duration, **(generation_params or {}))
    torch.manual_seed(seed)
    captions = [clip.description for clip in clips]
    batches = []
    total = len(captions) * rounds
    done = 0
    for _ in range(rounds):
        for first in range(0, len(captions), batch_size):
            batches.append(model.generate(captions[first:first + batch_size]).cpu())
            done += batches[-1].shape[0]
            log(f"lm: generated {done}/{total} clips ({time.time() - start:.0f} s)")
    generated = torch.cat(batches)
    generation_seconds = time.time() - start
    log(f"lm: {total} clips of {duration:g} s generated in {generation_seconds:.1f} s")
    generated_embedding, generated_probs = tag_audio(tagger, generated, model.sample_rate)
    order = derangement(len(clips), seed)
    pooled_order = [round_index * len(clips) + j for round_index in range(rounds) for j in order]
    lm: dict = {"generation_seconds": round(generation_seconds, 2), "rounds": rounds}
    for head, name in ((FAMILY, "instrument"), (STYLE, "style")):
        scores = adherence(classifiers[head], generated_probs[head], wanted[head] * rounds, pooled_order)
        lm[f"{name}_adherence"] = scores["rate"]
        lm[f"{name}_adherence_shuffled"] = scores["shuffled_rate"]
        lm[f"{name}_adherence_evaluated"] = scores["evaluated"]
    lm["instrument_by_family"] = per_label(generated_probs[FAMILY], tagger.heads[FAMILY], wanted[FAMILY] * rounds)
    if rounds > 1:
        n = len(clips)
        lm["instrument_adherence_rounds"] = [
            adherence(classifiers[FAMILY], generated_probs[FAMILY][r * n:(r + 1) * n], wanted[FAMILY], order)["rate"]
            for r in range(rounds)]
    lm["kld_instrument_family"] = kl_to_originals(classifiers[FAMILY], generated_probs[FAMILY],
                                                    original_probs[FAMILY].repeat(rounds, 1))
    half = len(clips) // 2
    distances = {"generated_vs_heldout": fad(embedder, generated_embedding, original_embedding),
                 "reconstructed_vs_heldout": fad(embedder, recon_embedding, original_embedding),
                 # Scale: one half of the held-out clips against the other (real vs real music; pessimistic,
                 # since each half has only N/2 clips and FAD's estimation bias grows as N shrinks).
                 "heldout_half_vs_half": fad(embedder, original_embedding[:half], original_embedding[half:])}

    examples = []
    if out is not None and num_examples > 0:
        labels = tagger.heads[FAMILY]
        heard = [labels[int(i)] for i in generated_probs[FAMILY].argmax(dim=-1)]
        examples = write_examples(Path(out), generated, model.sample_rate, clips, heard, num_examples)
    return {"codec": codec, "lm": lm, "fad": distances,
            "examples": examples,
            "settings": {"num_clips": len(clips), "duration": duration, "seed": seed, "sample_rate": model.sample_rate,
                         "generation_params": _generation_params(model), "shuffle_order": order}}


def _generation_params(model) -> dict:
    params = getattr(model, "generation_params", None)
    if isinstance(params, dict):
        return {key: value for key, value in params.items() if isinstance(value, (int, float, bool, str))}
    return {}


def format_table(results: dict) -> str:
    """The headline numbers as a text table."""
    def show(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    codec, lm, distances = results["codec"], results["lm"], results["fad"]
    rows = [("codec SI-SNR (dB)", show(codec["si_snr_db"])),
            ("codec mel distance", show(codec["mel_distance"])),
            ("family accuracy, originals", show(codec["classifier_accuracy"]["original"][FAMILY])),
            ("family accuracy, codec reconstructions", show(codec["classifier_accuracy"]["reconstructed"][FAMILY])),
            ("family accuracy, reconstructions, mean over families",
             show(codec.get("family_by_label", {}).get("reconstructed", {}).get("balanced"))),
            ("instrument adherence (LM)", show(lm["instrument_adherence"])),
            ("instrument adherence, mean over families", show(lm.get("instrument_by_family", {}).get("balanced"))),
            ("instrument adherence, shuffled prompts", show(lm["instrument_adherence_shuffled"])),
            ("style adherence (LM)", show(lm["style_adherence"])),
            ("style adherence, shuffled prompts", show(lm["style_adherence_shuffled"])),
            ("KL(original || generated), family", show(lm["kld_instrument_family"])),
            ("FAD generated vs held-out", show(distances["generated_vs_heldout"])),
            ("FAD codec reconstructions vs held-out", show(distances["reconstructed_vs_heldout"])),
            ("FAD held-out half vs half (floor)", show(distances["heldout_half_vs_half"]))]
    if lm.get("instrument_adherence_rounds"):
        each_round = " ".join(show(v) for v in lm["instrument_adherence_rounds"])
        after = [name for name, _ in rows].index("instrument adherence, shuffled prompts")
        rows.insert(after + 1, ("instrument adherence, each round", each_round))
    width = max(len(name) for name, _ in rows)
    table = "\n".join(f"{name:<{width}}  {value:>8}" for name, value in rows)
    families = lm.get("instrument_by_family")
    if families:
        asked = ", ".join(f"{label} {hits}/{count}" for label, (hits, count) in families["by_label"].items())
        heard = ", ".join(f"{label} {count}" for label, count in
                          sorted(families["heard"].items(), key=lambda item: -item[1]))
        table += f"\ngenerations heard as asked, per family: {asked}\ngenerations heard as: {heard}"
    return table


def format_codec_table(codec: dict) -> str:
    """The codec's numbers as a text table."""
    accuracy_rows = [(f"{head} accuracy, {kind}", value)
                     for kind in ("original", "reconstructed")
                     for head, value in codec["classifier_accuracy"][kind].items()]
    rows = [("codec SI-SNR (dB)", codec["si_snr_db"]), ("codec mel distance", codec["mel_distance"]), *accuracy_rows]
    if "family_by_label" in codec:
        rows.append((f"{FAMILY} accuracy, reconstructed, mean over families",
                     codec["family_by_label"]["reconstructed"]["balanced"]))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {'n/a' if value is None else f'{value:.3f}':>8}" for name, value in rows)


def write_results(path: Path, results: dict, table: str) -> dict:
    """Write ``results`` as JSON to ``path`` (its folder is created), print ``table``; returns ``results``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(table)
    print(f"wrote {path}")
    return results


def main_codec(args: argparse.Namespace, tagger: MusicTagger, clips: list[HeldOutClip]) -> dict:
    """``--codec``: the codec scores of one compression checkpoint."""
    from audiocraft.solvers.compression import CompressionSolver

    codec_model = CompressionSolver.model_from_checkpoint(args.codec, device=args.device)
    originals, data_rate = stack_clips(clips)
    wanted = wanted_labels(clips)
    scores = evaluate_codec(codec_model, originals, data_rate, tagger, wanted, args.batch_size,
                            log=lambda line: print(line, flush=True))[0]
    results = {"codec_checkpoint": str(args.codec), "data": str(args.data), "split": args.split,
               "num_clips": len(clips), "duration": args.duration, "codec": scores}
    return write_results(args.out / "codec_eval.json", results, format_codec_table(scores))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from audiocraft.models import MusicGen

    tagger = load_tagger(args.classifier, device=args.device)
    clips = load_heldout_clips(args.data, args.split, args.num_samples, args.duration, args.seed)
    if args.codec is not None:
        return main_codec(args, tagger, clips)
    name = None if args.model == "default" else args.model
    model = MusicGen.get_pretrained(name, device=args.device)
    print(f"model {model.name}: evaluating on {len(clips)} clips of {args.data} ({args.split})", flush=True)
    generation_params = {key: value for key, value in (("cfg_coef", args.cfg_coef), ("top_k", args.top_k))
                         if value is not None}
    results = evaluate_model(model, clips, tagger, duration=args.duration, batch_size=args.batch_size,
                             seed=args.seed, out=args.out, num_examples=args.num_examples,
                             log=lambda line: print(line, flush=True), generation_params=generation_params,
                             rounds=args.rounds)
    try:
        classifier_notes = read_tagger_notes(args.classifier)
    except (FileNotFoundError, ValueError):
        classifier_notes = {}
    results = {"model": str(model.name), "data": str(args.data), "split": args.split,
               "classifier": {"path": str(args.classifier or "shipped"),
                              "test_accuracy": classifier_notes.get("test", {})},
               **results}
    return write_results(args.out / "eval.json", results, format_table(results))


if __name__ == "__main__":
    main()
