"""Fréchet audio distance (FAD), computed in-process on embeddings from a pluggable model.

A Gaussian ``N(mu, Sigma)`` is fitted to the clip embeddings of the generated audio and
another one to those of the reference audio; FAD is the Fréchet (2-Wasserstein) distance
between them (Dowson & Landau, 1982; Kilgour et al., 2019)::

    d^2 = ||mu_1 - mu_2||^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2))

``Tr((Sigma_1 Sigma_2)^(1/2))`` is computed stably in float64 as the sum of the square roots
of the eigenvalues of the symmetric PSD matrix ``Sigma_1^(1/2) Sigma_2 Sigma_1^(1/2)`` (which
has the same eigenvalues as ``Sigma_1 Sigma_2``); tiny negative eigenvalues due to rounding are
clamped to 0, so singular covariances (fewer clips than dimensions) are fine.

Covariances are unbiased (divide by ``N - 1``), as ``numpy.cov`` in Google's reference FAD code.
The embedding model is any :class:`~audiocraft.metrics.embedders.AudioEmbedder`; AudioCraft
used VGGish through a TensorFlow subprocess, this module needs neither.
"""
from __future__ import annotations

import os
import typing as tp
from collections.abc import Sequence
from pathlib import Path

import torch

from .base import StreamingMetric, run_audio_model
from .embedders import AudioEmbedder, check_audio_embedder

__all__ = ["frechet_distance", "gaussian_parameters", "FrechetAudioDistance",
           "frechet_audio_distance_from_folders", "AUDIO_EXTENSIONS"]

#: File extensions picked up by :func:`frechet_audio_distance_from_folders` (case-insensitive).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

#: A tensor, numpy array or nested sequence of numbers.
_ArrayLike = tp.Any


def _as_float64(value: _ArrayLike, name: str, dims: int) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(value, dtype=torch.float64, device="cpu")
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"frechet_distance: `{name}` must be a tensor or array of numbers, "
                        f"got {type(value).__name__} ({err}).") from err
    if tensor.dim() != dims:
        expected = "[D]" if dims == 1 else "[D, D]"
        raise ValueError(f"frechet_distance: `{name}` must have shape {expected}, got {tuple(tensor.shape)}.")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"frechet_distance: `{name}` contains NaN or inf; check the embeddings it came from.")
    return tensor


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix via its eigendecomposition (negative eigenvalues -> 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(mu1: _ArrayLike, sigma1: _ArrayLike, mu2: _ArrayLike, sigma2: _ArrayLike) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``, in float64.

    Args:
        mu1: mean ``[D]`` of the first Gaussian.
        sigma1: covariance ``[D, D]`` of the first Gaussian (symmetric PSD; it is symmetrised).
        mu2: mean ``[D]`` of the second Gaussian.
        sigma2: covariance ``[D, D]`` of the second Gaussian.
    Returns:
        ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``, clamped at 0
        (squared embedding units).
    """
    mu1, mu2 = _as_float64(mu1, "mu1", 1), _as_float64(mu2, "mu2", 1)
    sigma1, sigma2 = _as_float64(sigma1, "sigma1", 2), _as_float64(sigma2, "sigma2", 2)
    dim = mu1.shape[0]
    for name, tensor in (("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if any(size != dim for size in tensor.shape):
            raise ValueError(f"frechet_distance: `{name}` has shape {tuple(tensor.shape)} but `mu1` has D={dim}; "
                             f"both Gaussians must live in the same D-dimensional space.")
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2
    trace_sqrt_product = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    distance = (mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product
    return max(float(distance), 0.0)


def gaussian_parameters(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of embeddings ``[N, D]``, N >= 2."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"gaussian_parameters: `embeddings` must be a tensor [N, D], got {got}.")
    if embeddings.shape[0] < 2:
        raise ValueError(f"gaussian_parameters: need at least 2 embeddings for a covariance, got "
                         f"{embeddings.shape[0]}.")
    data = embeddings.detach().to("cpu", torch.float64)
    return data.mean(dim=0), torch.cov(data.T, correction=1).reshape(data.shape[1], data.shape[1])


class FrechetAudioDistance(StreamingMetric):
    """Streaming FAD between generated and reference audio, on embeddings from ``embedder``.

    Only sufficient statistics are kept, in float64 (for each set: the number of clips, the sum
    of the embeddings ``[D]`` and the sum of their outer products ``[D, D]``), so memory does
    not grow with the number of clips and per-rank states merge by addition.

    Args:
        embedder: any :class:`~audiocraft.metrics.embedders.AudioEmbedder`, e.g.
            :class:`~audiocraft.metrics.embedders.MelStatisticsEmbedder`.

    Example::

        fad = FrechetAudioDistance(MelStatisticsEmbedder())
        for generated, reference, sizes, sample_rates in batches:
            fad.update(generated, reference, sizes, sample_rates)
        score = fad.compute()
    """

    _SETS = ("generated", "reference")

    def __init__(self, embedder: AudioEmbedder) -> None:
        super().__init__()
        self.embedder = check_audio_embedder(embedder, "FrechetAudioDistance")
        for which in self._SETS:
            self.add_state(f"{which}_count", torch.zeros((), dtype=torch.float64))
            self.add_state(f"{which}_sum", torch.zeros((), dtype=torch.float64))
            self.add_state(f"{which}_outer_sum", torch.zeros((), dtype=torch.float64))

    def _checked(self, which: str, embeddings: torch.Tensor) -> torch.Tensor:
        """Validate embeddings [B, D] for set ``which`` -> float64 CPU copy."""
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or embeddings.shape[0] == 0:
            got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"FrechetAudioDistance: `{which}` embeddings must be a tensor [B, D] with B >= 1, "
                             f"got {got}.")
        data = embeddings.detach().to("cpu", torch.float64)
        if not torch.isfinite(data).all():
            raise ValueError(f"FrechetAudioDistance: `{which}` embeddings contain NaN or inf.")
        for known_set in self._SETS:
            known = getattr(self, f"{known_set}_sum")
            if known.dim() and known.shape[0] != data.shape[1]:
                raise ValueError(f"FrechetAudioDistance: `{which}` embeddings have D={data.shape[1]} but the "
                                 f"{known_set} embeddings added so far have D={known.shape[0]}; use one embedder "
                                 f"for both sets and the whole evaluation.")
        return data

    def _add(self, which: str, data: torch.Tensor) -> None:
        setattr(self, f"{which}_count", getattr(self, f"{which}_count") + data.shape[0])
        setattr(self, f"{which}_sum", getattr(self, f"{which}_sum") + data.sum(dim=0))
        setattr(self, f"{which}_outer_sum", getattr(self, f"{which}_outer_sum") + data.T @ data)

    def update(self, preds: torch.Tensor, targets: torch.Tensor, sizes: torch.Tensor | None = None,
               sample_rates: torch.Tensor | int | None = None) -> None:
        """Add a batch of generated clips and the matching reference clips (AudioCraft's signature).

        Args:
            preds: generated audio ``[B, C, T]``.
            targets: reference audio ``[B, C, T]`` (same shape as ``preds``).
            sizes: valid length of each clip in samples ``[B]`` (None: ``T``), applied to both.
            sample_rates: sample rate of each clip in Hz ``[B]`` or one int (None: already at
                ``embedder.sample_rate``).
        """
        if isinstance(preds, torch.Tensor) and isinstance(targets, torch.Tensor) and preds.shape != targets.shape:
            raise ValueError(f"FrechetAudioDistance.update: `preds` {tuple(preds.shape)} and `targets` "
                             f"{tuple(targets.shape)} must have the same shape [B, C, T]; for sets of different "
                             f"sizes call update_generated() and update_reference() separately.")
        # Embed both sets before touching the state, so a bad batch leaves the metric unchanged.
        generated = run_audio_model(self.embedder.embed, self.embedder, preds, sizes, sample_rates,
                                    "FrechetAudioDistance.update", "preds")
        reference = run_audio_model(self.embedder.embed, self.embedder, targets, sizes, sample_rates,
                                    "FrechetAudioDistance.update", "targets")
        self.update_embeddings(generated, reference)

    def update_generated(self, wav: torch.Tensor, sizes: torch.Tensor | None = None,
                         sample_rates: torch.Tensor | int | None = None) -> None:
        """Add generated clips ``[B, C, T]`` (``sizes`` and ``sample_rates`` as in :meth:`update`)."""
        embeddings = run_audio_model(self.embedder.embed, self.embedder, wav, sizes, sample_rates,
                                     "FrechetAudioDistance.update_generated")
        self._add("generated", self._checked("generated", embeddings))

    def update_reference(self, wav: torch.Tensor, sizes: torch.Tensor | None = None,
                         sample_rates: torch.Tensor | int | None = None) -> None:
        """Add reference clips ``[B, C, T]`` (``sizes`` and ``sample_rates`` as in :meth:`update`)."""
        embeddings = run_audio_model(self.embedder.embed, self.embedder, wav, sizes, sample_rates,
                                     "FrechetAudioDistance.update_reference")
        self._add("reference", self._checked("reference", embeddings))

    def update_embeddings(self, generated: torch.Tensor | None = None,
                          reference: torch.Tensor | None = None) -> None:
        """Add precomputed embeddings ``[B, D]`` to either or both sets (e.g. cached reference ones)."""
        if generated is None and reference is None:
            raise ValueError("FrechetAudioDistance.update_embeddings: pass `generated` and/or `reference` "
                             "embeddings [B, D].")
        # Validate everything before adding anything, so a bad call leaves the metric unchanged.
        checked = {which: self._checked(which, emb) for which, emb in (("generated", generated),
                                                                       ("reference", reference)) if emb is not None}
        if len(checked) == 2 and checked["generated"].shape[1] != checked["reference"].shape[1]:
            raise ValueError(f"FrechetAudioDistance.update_embeddings: `generated` has D="
                             f"{checked['generated'].shape[1]} but `reference` has D={checked['reference'].shape[1]}; "
                             f"embed both sets with the same embedder.")
        for which, data in checked.items():
            self._add(which, data)

    def _parameters(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        count = float(getattr(self, f"{which}_count"))
        if count < 2:
            raise ValueError(f"FrechetAudioDistance: the {which} set has {int(count)} clip(s); a covariance needs "
                             f"at least 2 (and a meaningful FAD many more). Add clips with update_{which}() or "
                             f"update().")
        total, outer = getattr(self, f"{which}_sum"), getattr(self, f"{which}_outer_sum")
        mean = total / count
        covariance = (outer - count * torch.outer(mean, mean)) / (count - 1)
        return mean, (covariance + covariance.T) / 2

    def generated_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[D]`` and covariance ``[D, D]`` (float64) of the generated embeddings so far."""
        return self._parameters("generated")

    def reference_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[D]`` and covariance ``[D, D]`` (float64) of the reference embeddings so far."""
        return self._parameters("reference")

    def compute(self) -> float:
        """FAD between everything added so far (squared embedding units, >= 0)."""
        return frechet_distance(*self.generated_parameters(), *self.reference_parameters())


def _audio_files(folder: str | os.PathLike, name: str, extensions: Sequence[str]) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"frechet_audio_distance_from_folders: `{name}` {str(path)!r} is not an existing "
                                f"directory; pass the folder holding the {name.split('_')[0]} audio files.")
    wanted = {ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
    if not files:
        raise ValueError(f"frechet_audio_distance_from_folders: no audio file with extension "
                         f"{sorted(wanted)} under `{name}` {str(path)!r}; check the folder or `extensions`.")
    return files


def frechet_audio_distance_from_folders(generated_dir: str | os.PathLike, reference_dir: str | os.PathLike,
                                        embedder: AudioEmbedder,
                                        extensions: Sequence[str] = AUDIO_EXTENSIONS) -> float:
    """FAD between two folders of audio files (searched recursively).

    Each file is read whole with :func:`audiocraft.data.audio.audio_read`, converted to the
    embedder's sample rate and channel count, and embedded as one clip.

    Args:
        generated_dir: folder of generated audio.
        reference_dir: folder of reference audio.
        embedder: an :class:`~audiocraft.metrics.embedders.AudioEmbedder`.
        extensions: file extensions to include (case-insensitive).
    Returns:
        The FAD (float, >= 0). Each folder needs at least 2 files.
    """
    from ..data.audio import audio_read

    metric = FrechetAudioDistance(embedder)
    for which, folder in (("generated", generated_dir), ("reference", reference_dir)):
        for path in _audio_files(folder, f"{which}_dir", extensions):
            wav, sample_rate = audio_read(path)
            if wav.shape[-1] == 0:
                raise ValueError(f"frechet_audio_distance_from_folders: {str(path)!r} holds no samples; remove it "
                                 f"from `{which}_dir` or replace it.")
            if which == "generated":
                metric.update_generated(wav[None], sample_rates=sample_rate)
            else:
                metric.update_reference(wav[None], sample_rates=sample_rate)
    return metric.compute()
