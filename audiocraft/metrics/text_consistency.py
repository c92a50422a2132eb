"""How well generated audio follows its text prompt.

Two measures:

- :class:`TextConsistencyMetric`: the mean cosine similarity between the embedding of each
  clip and the embedding of its prompt, in the joint space of a
  :class:`~audiocraft.metrics.embedders.TextAudioEmbedder` (AudioCraft's CLAP score / MuLan
  cycle consistency, with a pluggable model).
- :class:`ClassifierTextConsistency`: "adherence", the fraction of clips whose label predicted
  by an :class:`~audiocraft.metrics.embedders.AudioClassifier` is the label the prompt asked
  for (e.g. the instrument). Prompts that name no label are skipped, and counted.
  :func:`keyword_label_matcher` builds the prompt -> label function from keyword lists.
"""
from __future__ import annotations

import re
import typing as tp
from collections.abc import Mapping, Sequence

import torch
from torch.nn import functional as F

from .base import StreamingMetric, per_clip_ints, check_audio_batch, run_audio_model
from .embedders import AudioClassifier, TextAudioEmbedder, check_audio_classifier, check_text_audio_embedder

__all__ = ["TextConsistencyMetric", "ClassifierTextConsistency", "keyword_label_matcher"]


def _check_texts(text: object, batch: int, caller: str) -> list[str]:
    if isinstance(text, str) or not isinstance(text, Sequence) or not all(isinstance(t, str) for t in text):
        raise TypeError(f"{caller}: `text` must be a list of str (one prompt per clip), got {text!r:.80}.")
    if len(text) != batch:
        raise ValueError(f"{caller}: `text` has {len(text)} prompt(s) but the audio has B={batch} clips; "
                         f"pass one prompt per clip.")
    return list(text)


class TextConsistencyMetric(StreamingMetric):
    """Mean cosine similarity between clip and prompt embeddings of a text/audio model.

    Args:
        text_audio_embedder: any :class:`~audiocraft.metrics.embedders.TextAudioEmbedder`.

    :meth:`compute` returns a float in [-1, 1] (1: every clip points like its prompt).
    """

    def __init__(self, text_audio_embedder: TextAudioEmbedder) -> None:
        super().__init__()
        self.model = check_text_audio_embedder(text_audio_embedder, "TextConsistencyMetric")
        self.add_state("cosine_sum", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.float64))

    def update(self, audio: torch.Tensor, text: list[str], sizes: torch.Tensor | None = None,
               sample_rates: torch.Tensor | int | None = None) -> None:
        """Add clips and the prompts they were generated from.

        Args:
            audio: generated audio ``[B, C, T]``.
            text: the ``B`` prompts, ``text[i]`` for ``audio[i]``.
            sizes: valid length of each clip in samples ``[B]`` (None: ``T``).
            sample_rates: sample rate of each clip in Hz ``[B]`` or one int (None: already at
                the model's ``sample_rate``).
        """
        audio = check_audio_batch(audio, "audio", "TextConsistencyMetric.update")
        texts = _check_texts(text, audio.shape[0], "TextConsistencyMetric.update")
        audio_embeddings = run_audio_model(self.model.embed_audio, self.model, audio, sizes, sample_rates,
                                           "TextConsistencyMetric.update", "audio")
        self.update_embeddings(audio_embeddings, self._embed_texts(texts))

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            out = self.model.embed_text(texts)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(texts):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"TextConsistencyMetric: {type(self.model).__name__}.embed_text must return a tensor "
                             f"[B, D] with B={len(texts)}, got {got}.")
        return out.detach().to("cpu", torch.float64)

    def update_embeddings(self, audio_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> None:
        """Add precomputed pairs of audio and text embeddings, both ``[B, D]``."""
        for name, emb in (("audio_embeddings", audio_embeddings), ("text_embeddings", text_embeddings)):
            if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or emb.shape[0] == 0:
                got = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
                raise ValueError(f"TextConsistencyMetric: `{name}` must be a tensor [B, D] with B >= 1, got {got}.")
            if not torch.isfinite(emb).all():
                raise ValueError(f"TextConsistencyMetric: `{name}` contains NaN or inf.")
        if audio_embeddings.shape != text_embeddings.shape:
            raise ValueError(f"TextConsistencyMetric: audio embeddings {tuple(audio_embeddings.shape)} and text "
                             f"embeddings {tuple(text_embeddings.shape)} must have the same shape [B, D]; the "
                             f"model must embed both in one space.")
        cosine = F.cosine_similarity(audio_embeddings.detach().to("cpu", torch.float64),
                                     text_embeddings.detach().to("cpu", torch.float64), dim=1, eps=1e-8)
        self.cosine_sum = self.cosine_sum + cosine.sum()
        self.count = self.count + cosine.shape[0]

    def compute(self) -> float:
        """Mean cosine similarity over all (clip, prompt) pairs."""
        if float(self.count) == 0:
            raise ValueError("TextConsistencyMetric.compute: no (clip, prompt) pair was added; call update() first.")
        return float(self.cosine_sum / self.count)


def _select(value: tp.Any, batch: int, indices: list[int], name: str, caller: str) -> tp.Any:
    """Keep the entries ``indices`` of a per-clip argument (None / a single int stay as they are)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)) \
            or (isinstance(value, torch.Tensor) and value.dim() == 0):
        return value
    values = per_clip_ints(value, batch, name, caller)
    return [values[i] for i in indices]


class ClassifierTextConsistency(StreamingMetric):
    """Fraction of clips whose predicted label is the one their prompt asked for ("adherence").

    For each clip, ``label_of_text(prompt)`` gives the wanted label (one of
    ``classifier.labels``) or None when the prompt names none; such clips are skipped (not
    classified) and counted in :attr:`num_skipped`. A clip matches when the wanted label is
    among the classifier's ``top_k`` highest scores (probabilities or logits alike).

    Args:
        classifier: any :class:`~audiocraft.metrics.embedders.AudioClassifier`.
        label_of_text: prompt -> wanted label or None, e.g. :func:`keyword_label_matcher`.
        top_k: how many of the top predictions count as a match (1: the argmax only).
    """

    def __init__(self, classifier: AudioClassifier, label_of_text: tp.Callable[[str], str | None],
                 top_k: int = 1) -> None:
        super().__init__()
        self.classifier = check_audio_classifier(classifier, "ClassifierTextConsistency")
        if not callable(label_of_text):
            raise TypeError(f"ClassifierTextConsistency: `label_of_text` must be a callable str -> str | None, "
                            f"got {type(label_of_text).__name__}.")
        num_labels = len(self.classifier.labels)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_labels:
            raise ValueError(f"ClassifierTextConsistency: `top_k` must be an int in [1, {num_labels}] (the number "
                             f"of labels), got {top_k!r}.")
        self.label_of_text = label_of_text
        self.top_k = top_k
        self._label_index = {label: index for index, label in enumerate(self.classifier.labels)}
        self.add_state("matches_per_label", torch.zeros(num_labels, dtype=torch.int64))
        self.add_state("count_per_label", torch.zeros(num_labels, dtype=torch.int64))
        self.add_state("skipped", torch.zeros((), dtype=torch.int64))

    def _wanted_labels(self, texts: list[str]) -> list[int | None]:
        wanted: list[int | None] = []
        for text in texts:
            label = self.label_of_text(text)
            if label is not None and label not in self._label_index:
                raise ValueError(f"ClassifierTextConsistency: label_of_text({text!r}) returned {label!r}, which is "
                                 f"not one of the classifier labels {list(self.classifier.labels)}; return one of "
                                 f"them, or None to skip the prompt.")
            wanted.append(None if label is None else self._label_index[label])
        return wanted

    def update(self, audio: torch.Tensor, text: list[str], sizes: torch.Tensor | None = None,
               sample_rates: torch.Tensor | int | None = None) -> None:
        """Add generated clips and their prompts (arguments as :meth:`TextConsistencyMetric.update`)."""
        caller = "ClassifierTextConsistency.update"
        audio = check_audio_batch(audio, "audio", caller)
        batch = audio.shape[0]
        wanted = self._wanted_labels(_check_texts(text, batch, caller))
        kept = [index for index, label in enumerate(wanted) if label is not None]
        if kept:
            scores = run_audio_model(self.classifier.predict_proba, self.classifier, audio[kept],
                                     _select(sizes, batch, kept, "sizes", caller),
                                     _select(sample_rates, batch, kept, "sample_rates", caller), caller, "audio")
            if scores.shape[-1] != len(self._label_index):
                raise ValueError(f"{caller}: the classifier returned {scores.shape[-1]} columns but has "
                                 f"{len(self._label_index)} labels; `predict_proba` must return [B, len(labels)].")
            self.update_predictions(scores, [tp.cast(int, wanted[i]) for i in kept])
        self.skipped = self.skipped + (batch - len(kept))

    def update_predictions(self, scores: torch.Tensor, wanted: Sequence[int | str]) -> None:
        """Add precomputed classifier scores ``[B, L]`` and the wanted labels (names or column indices)."""
        if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[-1] != len(self._label_index):
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(f"ClassifierTextConsistency: `scores` must be a tensor [B, {len(self._label_index)}], "
                             f"got {got}.")
        if len(wanted) != scores.shape[0]:
            raise ValueError(f"ClassifierTextConsistency: `wanted` has {len(wanted)} labels for "
                             f"{scores.shape[0]} rows of scores; pass one per row.")
        indices = [self._label_index[w] if isinstance(w, str) and w in self._label_index else w for w in wanted]
        if any(isinstance(i, str) or not 0 <= int(i) < len(self._label_index) for i in indices):
            raise ValueError(f"ClassifierTextConsistency: `wanted` must hold labels from {list(self._label_index)} "
                             f"or their indices, got {list(wanted)}.")
        target = torch.tensor([int(i) for i in indices], dtype=torch.int64)
        top = scores.detach().cpu().topk(self.top_k, dim=-1).indices
        hit = (top == target[:, None]).any(dim=-1)
        num_labels = len(self._label_index)
        self.matches_per_label = self.matches_per_label + torch.bincount(target[hit], minlength=num_labels)
        self.count_per_label = self.count_per_label + torch.bincount(target, minlength=num_labels)

    @property
    def num_evaluated(self) -> int:
        """Clips whose prompt named a label (classified)."""
        return int(self.count_per_label.sum())

    @property
    def num_skipped(self) -> int:
        """Clips whose prompt named no label (not classified)."""
        return int(self.skipped)

    def compute(self) -> float:
        """Fraction in [0, 1] of evaluated clips classified as their prompt's label."""
        if self.num_evaluated == 0:
            raise ValueError(f"ClassifierTextConsistency.compute: no clip could be evaluated ({self.num_skipped} "
                             f"skipped because label_of_text returned None); check the prompts or label_of_text.")
        return int(self.matches_per_label.sum()) / self.num_evaluated

    def compute_per_label(self) -> dict[str, float]:
        """Fraction of matches for each wanted label that occurred at least once."""
        return {label: int(self.matches_per_label[i]) / int(self.count_per_label[i])
                for label, i in self._label_index.items() if int(self.count_per_label[i]) > 0}


def keyword_label_matcher(keywords: Mapping[str, str | Sequence[str]]) -> tp.Callable[[str], str | None]:
    """Build a ``label_of_text`` from keywords: label -> words or phrases that name it.

    Matching is case-insensitive on whole words (``'bass'`` does not match ``'bassoon'``).
    The returned function gives the one label whose keywords occur in the prompt, or None when
    no label or more than one label occurs (ambiguous prompts are skipped).

    Example: ``keyword_label_matcher({'piano': ['piano', 'keys'], 'guitar': 'guitar'})``.
    """
    if not isinstance(keywords, Mapping) or not keywords:
        raise TypeError(f"keyword_label_matcher: `keywords` must be a non-empty dict label -> keyword(s), "
                        f"got {keywords!r:.80}.")
    patterns: dict[str, re.Pattern[str]] = {}
    for label, words in keywords.items():
        words = [words] if isinstance(words, str) else list(words)
        if not isinstance(label, str) or not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise ValueError(f"keyword_label_matcher: entry {label!r} must map a str label to non-empty "
                             f"keyword string(s), got {words!r}.")
        alternatives = "|".join(re.escape(w.strip()) for w in words)
        patterns[label] = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def label_of_text(text: str) -> str | None:
        found = [label for label, pattern in patterns.items() if pattern.search(text)]
        return found[0] if len(found) == 1 else None

    return label_of_text
