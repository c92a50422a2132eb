"""One vector-quantization codebook: nearest-neighbour lookup, k-means init, EMA updates, dead codes.

:class:`EuclideanCodebook` works on rows ``[N, D]``; :class:`VectorQuantization` wraps it
for latent sequences ``[B, D, T]``. Buffers (``inited``, ``cluster_size``, ``embed``,
``embed_avg``) and the ``_codebook`` attribute match AudioCraft's checkpoints.

Nothing here talks to ``torch.distributed``: with several workers, the training loop
must keep the buffers in sync (e.g. broadcast them after k-means initialisation and
average the EMA statistics).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """Pick ``num`` rows of ``samples`` ``[N, D]`` at random (without replacement when N >= num)."""
    count = samples.shape[0]
    if count >= num:
        index = torch.randperm(count, device=samples.device)[:num]
    else:
        index = torch.randint(0, count, (num,), device=samples.device)
    return samples[index]


def squared_distance_scores(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distances between rows, ``[N, D] x [V, D] -> [N, V]``.

    Computed as ``-(|x|^2 - 2 x.e + |e|^2)``, the same float arithmetic AudioCraft uses,
    so that ``argmax`` gives bit-identical codes.
    """
    embed_t = embed.t()
    return -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed_t + embed_t.pow(2).sum(0, keepdim=True))


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on ``samples`` ``[N, D]``, initialised with random samples.

    Clusters that end up empty keep their previous centre.

    Returns:
        ``(centres [V, D], counts [V])`` with V = ``num_clusters``; counts are those of the last assignment.
    """
    dim = samples.shape[-1]
    means = sample_vectors(samples, num_clusters)
    counts = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        assignment = squared_distance_scores(samples, means).argmax(dim=-1)
        counts = torch.bincount(assignment, minlength=num_clusters)
        sums = samples.new_zeros(num_clusters, dim).index_add_(0, assignment, samples)
        empty = counts == 0
        new_means = sums / counts.masked_fill(empty, 1).unsqueeze(1).to(samples.dtype)
        means = torch.where(empty.unsqueeze(1), means, new_means)
    return means, counts


class EuclideanCodebook(nn.Module):
    """A codebook of V vectors of size D, learned by exponential moving averages (no gradients).

    Args:
        dim: vector size D.
        codebook_size: number of entries V.
        kmeans_init: initialise the entries with k-means on the first batch seen by ``forward``
            (``inited`` is 0 until then); otherwise Kaiming-uniform random entries.
        kmeans_iters: k-means iterations.
        decay: EMA decay of the cluster sizes and sums, in [0, 1).
        epsilon: Laplace smoothing of the cluster sizes.
        threshold_ema_dead_code: entries whose EMA cluster size falls below this are replaced by
            random vectors of the current batch during training (0 disables it).
    """

    def __init__(self, dim: int, codebook_size: int, kmeans_init: bool = False, kmeans_iters: int = 10,
                 decay: float = 0.99, epsilon: float = 1e-5, threshold_ema_dead_code: float = 2) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"`decay` must be in [0, 1), got {decay}.")
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"`codebook_size` and `dim` must be >= 1, got {codebook_size} and {dim}.")
        self.dim = dim
        self.codebook_size = codebook_size
        self.kmeans_iters = kmeans_iters
        self.decay = decay
        self.epsilon = epsilon
        self.threshold_ema_dead_code = threshold_ema_dead_code
        embed = torch.zeros(codebook_size, dim)
        if not kmeans_init:
            nn.init.kaiming_uniform_(embed)
        self.register_buffer("inited", torch.tensor([0.0 if kmeans_init else 1.0]))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    @property
    def is_initialized(self) -> bool:
        return bool(self.inited.item())

    @torch.no_grad()
    def init_embed_(self, data: torch.Tensor) -> None:
        """Run k-means on ``data`` ``[N, D]`` and use the centres as entries (no-op once initialised)."""
        if self.is_initialized:
            return
        means, counts = kmeans(data, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(means)
        self.embed_avg.copy_(means)
        self.cluster_size.copy_(counts)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def expire_codes_(self, data: torch.Tensor) -> None:
        """Replace entries with EMA cluster size below the threshold by random rows of ``data`` ``[N, D]``.

        The replaced entries also get ``cluster_size = threshold`` and a matching ``embed_avg``
        so the following EMA step keeps them (AudioCraft only overwrote ``embed``, which the
        EMA step then undid).
        """
        if self.threshold_ema_dead_code <= 0:
            return
        dead = self.cluster_size < self.threshold_ema_dead_code
        if not bool(dead.any()):
            return
        fresh = sample_vectors(data, self.codebook_size)
        mask = dead.unsqueeze(1)
        self.embed.copy_(torch.where(mask, fresh, self.embed))
        self.embed_avg.copy_(torch.where(mask, fresh * self.threshold_ema_dead_code, self.embed_avg))
        self.cluster_size.masked_fill_(dead, float(self.threshold_ema_dead_code))

    @torch.no_grad()
    def ema_update_(self, data: torch.Tensor, codes: torch.Tensor) -> None:
        """Move entries toward the mean of the rows assigned to them: ``data`` ``[N, D]``, ``codes`` ``[N]``."""
        counts = torch.bincount(codes, minlength=self.codebook_size).to(data.dtype)
        sums = data.new_zeros(self.codebook_size, self.dim).index_add_(0, codes, data)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest entry for each vector: ``[..., D]`` -> ``[...]`` int64."""
        flat = x.reshape(-1, x.shape[-1])
        return squared_distance_scores(flat, self.embed).argmax(dim=-1).view(x.shape[:-1])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Entries for the given indices: ``[...]`` -> ``[..., D]``."""
        return F.embedding(codes, self.embed)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize ``x`` ``[..., D]`` -> ``(quantized [..., D], codes [...])``.

        Initialises the codebook with k-means on ``x`` if needed; in training mode, then
        replaces dead codes and applies the EMA update (after the lookup, so the returned
        values use the codebook as it was before this batch).
        """
        flat = x.reshape(-1, x.shape[-1])
        self.init_embed_(flat.detach())
        codes = squared_distance_scores(flat, self.embed).argmax(dim=-1)
        quantized = self.decode(codes).view(x.shape)
        if self.training:
            self.expire_codes_(flat.detach())
            self.ema_update_(flat.detach(), codes)
        return quantized, codes.view(x.shape[:-1])


def orthogonal_loss(codebook: torch.Tensor) -> torch.Tensor:
    """Mean squared deviation of the entries' cosine-similarity matrix from identity (``[V, D]`` -> scalar).

    Eq. (2) of "Orthogonal ... regularization" (arXiv:2112.00384).
    """
    n = codebook.shape[0]
    unit = F.normalize(codebook, p=2, dim=-1)
    eye = torch.eye(n, device=codebook.device, dtype=codebook.dtype)
    return ((unit @ unit.t() - eye) ** 2).sum() / (n ** 2)


class VectorQuantization(nn.Module):
    """Vector quantization of latent sequences ``[B, D, T]`` with one :class:`EuclideanCodebook`.

    Args:
        dim: latent size D.
        codebook_size: entries V.
        codebook_dim: size of the codebook vectors; if it differs from ``dim``, linear
            projections ``project_in``/``project_out`` are added.
        decay, epsilon, kmeans_init, kmeans_iters, threshold_ema_dead_code: see :class:`EuclideanCodebook`.
        commitment_weight: weight of the commitment loss ``mse(x, quantized.detach())`` (training only).
        orthogonal_reg_weight: weight of :func:`orthogonal_loss` on the codebook (training only).
        orthogonal_reg_active_codes_only: apply it only to the entries used by the batch.
        orthogonal_reg_max_codes: apply it to at most this many random entries.
    """

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int | None = None, decay: float = 0.99,
                 epsilon: float = 1e-5, kmeans_init: bool = True, kmeans_iters: int = 10,
                 threshold_ema_dead_code: float = 2, commitment_weight: float = 1.0,
                 orthogonal_reg_weight: float = 0.0, orthogonal_reg_active_codes_only: bool = False,
                 orthogonal_reg_max_codes: int | None = None) -> None:
        super().__init__()
        inner = dim if codebook_dim is None else codebook_dim
        self.project_in: nn.Module = nn.Linear(dim, inner) if inner != dim else nn.Identity()
        self.project_out: nn.Module = nn.Linear(inner, dim) if inner != dim else nn.Identity()
        self.commitment_weight = commitment_weight
        self.orthogonal_reg_weight = orthogonal_reg_weight
        self.orthogonal_reg_active_codes_only = orthogonal_reg_active_codes_only
        self.orthogonal_reg_max_codes = orthogonal_reg_max_codes
        self.codebook_size = codebook_size
        self._codebook = EuclideanCodebook(inner, codebook_size, kmeans_init=kmeans_init,
                                           kmeans_iters=kmeans_iters, decay=decay, epsilon=epsilon,
                                           threshold_ema_dead_code=threshold_ema_dead_code)

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook entries ``[V, codebook_dim]``."""
        return self._codebook.embed

    @property
    def inited(self) -> torch.Tensor:
        return self._codebook.inited

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, D, T]`` -> codes ``[B, T]`` (int64)."""
        return self._codebook.encode(self.project_in(x.transpose(1, 2)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, T]`` -> quantized latent ``[B, D, T]``."""
        return self.project_out(self._codebook.decode(codes)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize ``x`` ``[B, D, T]``.

        Returns:
            ``(quantized [B, D, T], codes [B, T], loss)``; in training mode ``quantized`` passes
            gradients straight through to ``x`` and ``loss`` (a 0-dim tensor) holds the weighted
            commitment and orthogonal losses; in eval mode ``loss`` is 0.
        """
        latent = self.project_in(x.transpose(1, 2))  # [B, T, D']
        quantized, codes = self._codebook(latent)
        loss = latent.new_zeros(())
        if self.training:
            quantized = latent + (quantized - latent).detach()
            if self.commitment_weight > 0:
                loss = loss + F.mse_loss(quantized.detach(), latent) * self.commitment_weight
            if self.orthogonal_reg_weight > 0:
                loss = loss + self._orthogonal_penalty(codes) * self.orthogonal_reg_weight
        return self.project_out(quantized).transpose(1, 2), codes, loss

    def _orthogonal_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        codebook = self.codebook
        if self.orthogonal_reg_active_codes_only:
            codebook = codebook[torch.unique(codes)]
        limit = self.orthogonal_reg_max_codes
        if limit is not None and codebook.shape[0] > limit:
            codebook = codebook[torch.randperm(codebook.shape[0], device=codebook.device)[:limit]]
        return orthogonal_loss(codebook)
