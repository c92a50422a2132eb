"""KL divergence between the label distributions a classifier predicts for generated and reference audio.

For each pair (generated clip ``i``, reference clip ``i``) an
:class:`~audiocraft.metrics.embedders.AudioClassifier` gives label distributions ``q_i``
(generated) and ``p_i`` (reference). With AudioCraft's names and conventions::

    kld_pq = mean_i KL(p_i || q_i) = mean_i sum_l p_il * (log p_il - log(q_il + eps))
    kld_qp = mean_i KL(q_i || p_i)          (same formula, roles swapped)
    kld    = kld_pq,   kld_both = kld_pq + kld_qp

``0 * log 0`` is taken as 0 and ``eps`` (1e-6) keeps ``log q`` finite where the classifier
gives a label probability 0; this is ``torch.nn.functional.kl_div(log(q + eps), p)`` as in
AudioCraft. Low values mean the classifier sees the generated audio like the reference audio.
Unlike AudioCraft (PaSST on 10 s windows), the classifier here is clip-level: splitting long
audio into windows, if needed, is the classifier's job.
"""
from __future__ import annotations

import torch

from .base import StreamingMetric, run_audio_model
from .embedders import AudioClassifier, check_audio_classifier

__all__ = ["kl_divergence", "KLDivergence"]

#: Tolerance on the row sums of probabilities given by a classifier.
_PROBABILITY_SUM_TOLERANCE = 1e-3


def kl_divergence(pred_probs: torch.Tensor, target_probs: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """Per-item ``KL(target || pred)`` between label distributions.

    Args:
        pred_probs: probabilities ``[B, L]`` for the generated audio (``q``).
        target_probs: probabilities ``[B, L]`` for the reference audio (``p``).
        epsilon: added to ``pred_probs`` inside the log.
    Returns:
        ``sum_l p * (log p - log(q + epsilon))`` per item, ``[B]``, in nats (0 log 0 = 0).
    """
    for name, probs in (("pred_probs", pred_probs), ("target_probs", target_probs)):
        if not isinstance(probs, torch.Tensor) or probs.dim() != 2:
            got = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
            raise ValueError(f"kl_divergence: `{name}` must be a tensor [B, L], got {got}.")
    if pred_probs.shape != target_probs.shape:
        raise ValueError(f"kl_divergence: `pred_probs` {tuple(pred_probs.shape)} and `target_probs` "
                         f"{tuple(target_probs.shape)} must have the same shape [B, L].")
    if not epsilon >= 0:
        raise ValueError(f"kl_divergence: `epsilon` must be >= 0, got {epsilon!r}.")
    return (torch.xlogy(target_probs, target_probs) - target_probs * (pred_probs + epsilon).log()).sum(dim=-1)


class KLDivergence(StreamingMetric):
    """Streaming KL divergence of classifier label distributions, generated vs reference.

    Args:
        classifier: any :class:`~audiocraft.metrics.embedders.AudioClassifier`.
        from_logits: the classifier's ``predict_proba`` returns logits; apply a softmax.
        epsilon: numerical floor added inside the log (see :func:`kl_divergence`).

    :meth:`compute` returns ``{'kld', 'kld_pq', 'kld_qp', 'kld_both'}`` (floats, nats).
    """

    def __init__(self, classifier: AudioClassifier, from_logits: bool = False, epsilon: float = 1e-6) -> None:
        super().__init__()
        self.classifier = check_audio_classifier(classifier, "KLDivergence")
        if not isinstance(from_logits, bool):
            raise TypeError(f"KLDivergence: `from_logits` must be a bool, got {type(from_logits).__name__}.")
        if not epsilon >= 0:
            raise ValueError(f"KLDivergence: `epsilon` must be >= 0, got {epsilon!r}.")
        self.from_logits = from_logits
        self.epsilon = float(epsilon)
        self.add_state("kld_pq_sum", torch.zeros((), dtype=torch.float64))
        self.add_state("kld_qp_sum", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.float64))

    def label_distribution(self, wav: torch.Tensor, sizes: torch.Tensor | None = None,
                           sample_rates: torch.Tensor | int | None = None, name: str = "wav") -> torch.Tensor:
        """Label probabilities ``[B, L]`` (float64) of audio ``[B, C, T]`` (see :meth:`update` for the args)."""
        output = run_audio_model(self.classifier.predict_proba, self.classifier, wav, sizes, sample_rates,
                                 "KLDivergence", name)
        return self._as_probabilities(output, name)

    def _as_probabilities(self, output: torch.Tensor, name: str) -> torch.Tensor:
        num_labels = len(self.classifier.labels)
        if output.shape[-1] != num_labels:
            raise ValueError(f"KLDivergence: the classifier returned {output.shape[-1]} columns for `{name}` but "
                             f"has {num_labels} labels; `predict_proba` must return [B, len(labels)].")
        if not torch.isfinite(output).all():
            raise ValueError(f"KLDivergence: the classifier output for `{name}` contains NaN or inf; check the "
                             f"audio and the classifier.")
        if self.from_logits:
            return output.softmax(dim=-1)
        sums = output.sum(dim=-1)
        if (output < 0).any() or ((sums - 1).abs() > _PROBABILITY_SUM_TOLERANCE).any():
            raise ValueError(f"KLDivergence: the classifier output for `{name}` is not a probability distribution "
                             f"(min {output.min().item():.4g}, row sums from {sums.min().item():.4g} to "
                             f"{sums.max().item():.4g}); if it returns logits, build the metric with "
                             f"from_logits=True.")
        return output

    def update(self, preds: torch.Tensor, targets: torch.Tensor, sizes: torch.Tensor | None = None,
               sample_rates: torch.Tensor | int | None = None) -> None:
        """Add pairs of generated and reference clips.

        Args:
            preds: generated audio ``[B, C, T]``.
            targets: reference audio ``[B, C, T]``, item ``i`` paired with ``preds[i]``.
            sizes: valid length of each clip in samples ``[B]`` (None: ``T``), for both.
            sample_rates: sample rate of each clip in Hz ``[B]`` or one int (None: already at
                ``classifier.sample_rate``).
        """
        if isinstance(preds, torch.Tensor) and isinstance(targets, torch.Tensor) and preds.shape != targets.shape:
            raise ValueError(f"KLDivergence.update: `preds` {tuple(preds.shape)} and `targets` "
                             f"{tuple(targets.shape)} must have the same shape [B, C, T] (item i of each is a pair).")
        pred_probs = self.label_distribution(preds, sizes, sample_rates, "preds")
        target_probs = self.label_distribution(targets, sizes, sample_rates, "targets")
        self._accumulate(pred_probs, target_probs)

    def update_probabilities(self, pred_probs: torch.Tensor, target_probs: torch.Tensor) -> None:
        """Add pairs of precomputed label distributions ``[B, L]`` (or logits with ``from_logits``)."""
        for name, probs in (("pred_probs", pred_probs), ("target_probs", target_probs)):
            if not isinstance(probs, torch.Tensor) or probs.dim() != 2 or probs.shape[0] == 0:
                got = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
                raise ValueError(f"KLDivergence.update_probabilities: `{name}` must be a tensor [B, L] with B >= 1, "
                                 f"got {got}.")
        pred = self._as_probabilities(pred_probs.detach().to("cpu", torch.float64), "pred_probs")
        target = self._as_probabilities(target_probs.detach().to("cpu", torch.float64), "target_probs")
        self._accumulate(pred, target)

    def _accumulate(self, pred_probs: torch.Tensor, target_probs: torch.Tensor) -> None:
        kld_pq = kl_divergence(pred_probs, target_probs, self.epsilon)
        kld_qp = kl_divergence(target_probs, pred_probs, self.epsilon)
        self.kld_pq_sum = self.kld_pq_sum + kld_pq.sum()
        self.kld_qp_sum = self.kld_qp_sum + kld_qp.sum()
        self.count = self.count + kld_pq.shape[0]

    def compute(self) -> dict[str, float]:
        """Mean KL divergences over all pairs: ``{'kld', 'kld_pq', 'kld_qp', 'kld_both'}`` (nats)."""
        count = float(self.count)
        if count == 0:
            raise ValueError("KLDivergence.compute: no pair of clips was added; call update() first.")
        kld_pq = float(self.kld_pq_sum) / count
        kld_qp = float(self.kld_qp_sum) / count
        return {"kld": kld_pq, "kld_pq": kld_pq, "kld_qp": kld_qp, "kld_both": kld_pq + kld_qp}
