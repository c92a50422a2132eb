"""MusicGen training: the language-model task for the generic loop of :mod:`audiocraft.solvers.base`.

Per batch of audio ``wav`` [B, C, T] with its :class:`~audiocraft.data.music_dataset.MusicInfo`:
the frozen compression model (``compression_model_checkpoint``) turns the audio into codes
[B, K, T'] (or they are read from the token cache, ``cache.path``); the LM predicts every code
from the previous ones and the segment's text (``LMModel.compute_predictions``, which applies the
classifier-free-guidance and attribute dropouts in training); the loss is the cross-entropy of
:func:`audiocraft.losses.lm.compute_cross_entropy`, logged as ``ce``/``ppl`` and per codebook
``ce_q<k>``/``ppl_q<k>``. The loop adds AdamW/D-Adapt Adam, the schedule, clipping and EMA.
In training, ``tokens.random_crop_p`` and ``tokens.split_p`` (this project's options, off by
default) replace some batches by windows of their codes, for more sequence starts per update.

``continue_from=//pretrained/<name or folder>`` fine-tunes a released model: its LM (architecture,
conditioners, weights) and its codec replace the config's (``default`` is the bundled model).
``lora.use=true`` trains LoRA adapters only (:mod:`audiocraft.models.lora`).
``+grow_codebooks=true`` with ``continue_from=<run or LM file>`` over fewer codebooks than this config's
``transformer_lm.n_q``: that LM's weights, its codebooks' embeddings and output layers first, and new
ones for the added codebooks (embeddings at zero, so that at the start the LM predicts the first codebooks
as before). For a codec grown the same way (the compression solver's ``+grow_quantizer=true``).

Generate writes, per item of the generate split, text-conditioned, unconditional and continuation
samples (``samples/epoch_<N>/{text,unconditional,continuation,reference}/``) made with the
:class:`~audiocraft.models.MusicGen` API; evaluate reports ``ce``/``ppl`` on the evaluate split and
the metrics of ``evaluate.metrics`` (FAD, KLD, text consistency) on generated audio.

:func:`~audiocraft.solvers.musicgen_export.export_musicgen` writes a trained run as a released
folder that ``MusicGen.get_pretrained`` loads; command line:
``python -m audiocraft.solvers.musicgen export <sig or checkpoint> <folder>``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from ..data.token_cache import TokenBatch, TokenCache, TokenCacheDataset, identity_collate
from ..losses.lm import compute_cross_entropy
from ..models import builders as model_builders
from ..models.lm import LMOutput
from ..models.pretrained import resolve_pretrained_name
from ..utils import checkpoint, distributed
from . import builders
from .base import StandardSolver, StepOutput
from .compression import CompressionSolver
from .monitor import Progress

logger = logging.getLogger("audiocraft.solver")

_AUDIO_WRITE_KEYS = ("format", "strategy", "mp3_rate", "ogg_rate", "normalize", "peak_clip_headroom_db",
                     "rms_headroom_db", "loudness_headroom_db", "loudness_compressor")
# Sections of the config that describe the LM and its codec; continue_from=//pretrained/ takes them from the model.
_MODEL_SECTIONS = ("lm_model", "transformer_lm", "codebooks_pattern", "conditioners", "fuser",
                   "classifier_free_guidance", "compression_model_n_q", "interleave_stereo_codebooks")
_LORA_DEFAULTS = {"use": False, "rank": 8, "alpha": 16.0, "dropout": 0.0,
                  "target_modules": ["linear1", "linear2", "out_proj", "linears"]}


def load_codec(cfg: DictConfig, source: str, device: torch.device | str = "cpu"):
    """The codec a MusicGen run uses, from a ``compression_model_checkpoint``-style ``source``."""
    if source.startswith(checkpoint.PRETRAINED_PREFIX):
        source = checkpoint.PRETRAINED_PREFIX + resolve_pretrained_name(source[len(checkpoint.PRETRAINED_PREFIX):])
    return CompressionSolver.wrapped_model_from_checkpoint(cfg, source, device=device)


class MusicGenSolver(StandardSolver):
    """Trains a MusicGen LM on the codes of a frozen compression model (see the module docstring)."""

    def __init__(self, cfg: DictConfig, folder: str | Path | None = None) -> None:
        super().__init__(cfg, folder)
        self.compression_model = None
        self.token_cache: TokenCache | None = None
        self._pretrained: tuple[str, Any, Any] | None = None  # (name, codec, lm) of continue_from=//pretrained/
        self._cache_writing = False
        self._cache_batches = 0

    @property
    def best_metric_name(self) -> str | None:
        """``ce`` on the valid split unless ``checkpoint.best_metric`` says otherwise (as AudioCraft)."""
        return OmegaConf.select(self.cfg, "checkpoint.best_metric", default="ce")

    # ------------------------------------------------------------------ config and models
    def _pretrained_name(self) -> str | None:
        source = self.cfg.continue_from
        if source and str(source).startswith(checkpoint.PRETRAINED_PREFIX):
            return resolve_pretrained_name(str(source)[len(checkpoint.PRETRAINED_PREFIX):])
        return None

    def _adopt_pretrained_config(self) -> None:
        """With ``continue_from=//pretrained/<name>``: load that model and make its LM and codec sections the run's."""
        name = self._pretrained_name()
        if name is None or self._pretrained is not None:
            return
        from ..models.pretrained import load_pretrained_parts
        from ..modules.conditioners import AttributeDropout, ClassifierFreeGuidanceDropout

        name, codec, lm, _ = load_pretrained_parts(name, self.device)
        lm_cfg = getattr(lm, "cfg", None)
        if lm_cfg is None:
            raise ValueError(f"continue_from=//pretrained/{name}: this model has no training config (lm.cfg); "
                             "fine-tune a model saved in AudioCraft's or transformers' format.")
        cfg = self.cfg
        window = OmegaConf.select(lm_cfg, "dataset.segment_duration", default=None)
        if window and cfg.dataset.segment_duration and float(cfg.dataset.segment_duration) > float(window):
            logger.warning("dataset.segment_duration=%s s is longer than the %s s segments %s was trained on; "
                           "consider dataset.segment_duration=%s.", cfg.dataset.segment_duration, window, name, window)
        OmegaConf.set_struct(cfg, False)
        keep = {"training_dropout": OmegaConf.select(cfg, "classifier_free_guidance.training_dropout"),
                "attribute_dropout": cfg.get("attribute_dropout")}
        for key in _MODEL_SECTIONS:
            if key in lm_cfg:
                cfg[key] = OmegaConf.to_container(lm_cfg[key], resolve=True) \
                    if OmegaConf.is_config(lm_cfg[key]) else lm_cfg[key]
        if keep["training_dropout"] is not None:  # training options stay the run's
            cfg.classifier_free_guidance.training_dropout = keep["training_dropout"]
        if keep["attribute_dropout"] is not None:
            cfg.attribute_dropout = keep["attribute_dropout"]
        cfg.sample_rate, cfg.channels = int(codec.sample_rate), int(codec.channels)
        cfg.compression_model_checkpoint = checkpoint.PRETRAINED_PREFIX + name
        OmegaConf.set_struct(cfg, True)
        lm = lm.to(device=self.device, dtype=torch.float32)
        lm.cfg_dropout = ClassifierFreeGuidanceDropout(
            p=float(OmegaConf.select(cfg, "classifier_free_guidance.training_dropout", default=0.0)))
        lm.att_dropout = AttributeDropout(p=builders.as_dict(cfg.get("attribute_dropout"), "attribute_dropout"))
        self._pretrained = (name, codec, lm)
        logger.info("Fine-tuning %s: its LM (%d codebooks of %d, %d layers) and codec at %d Hz.", name, lm.n_q,
                    lm.card, len(lm.transformer.layers), codec.sample_rate)

    def build_dataloaders(self) -> None:
        self._adopt_pretrained_config()
        for key in ("sample_rate", "channels"):
            if OmegaConf.is_missing(self.cfg, key) or self.cfg[key] is None:
                raise ValueError(f"`{key}` is not set: give it (e.g. {key}=32000) or fine-tune a pretrained model "
                                 "with continue_from=//pretrained/<name>, which sets it.")
        self.dataloaders = builders.get_audio_datasets(self.cfg, dataset_type="music")

    def _load_compression_model(self):
        if self._pretrained is not None:
            return self._pretrained[1]
        source = self.cfg.compression_model_checkpoint
        if source is None or OmegaConf.is_missing(self.cfg, "compression_model_checkpoint"):
            raise ValueError("compression_model_checkpoint is not set: give the codec, e.g. "
                             "compression_model_checkpoint=//pretrained/facebook/encodec_32khz or //sig/<signature>.")
        return load_codec(self.cfg, str(source), self.device)

    def build_model(self) -> None:
        from ..models.lora import add_lora

        cfg = self.cfg
        if cfg.fsdp.use:
            raise ValueError("fsdp.use=true is not supported by this implementation; set fsdp.use=false.")
        self._adopt_pretrained_config()
        self._check_random_crop(cfg)
        codec = self._load_compression_model().to(self.device).eval()
        for param in codec.parameters():
            param.requires_grad_(False)
        if codec.sample_rate != int(cfg.sample_rate):
            raise ValueError(f"The compression model works at {codec.sample_rate} Hz but sample_rate="
                             f"{cfg.sample_rate}; set sample_rate={codec.sample_rate}.")
        self.compression_model = codec
        lm = self._pretrained[2] if self._pretrained is not None else model_builders.get_lm_model(cfg)
        for what, lm_value, codec_value in (("codebooks", lm.n_q, codec.num_codebooks),
                                            ("codebook size", lm.card, codec.cardinality)):
            if lm_value != codec_value:
                raise ValueError(f"The LM has {lm_value} as {what} (transformer_lm) but the compression model has "
                                 f"{codec_value}; make transformer_lm.n_q/card match the codec.")
        lora = _lora_options(cfg)
        if lora["use"]:
            add_lora(lm, int(lora["rank"]), float(lora["alpha"]), float(lora["dropout"]), list(lora["target_modules"]))
        self.model = lm.to(self.device)
        self._check_windows_with_conditions()
        groups = [{**group, "params": [p for p in group["params"] if p.requires_grad]}
                  for group in builders.get_optim_parameter_groups(self.model)]
        self.optimizer = builders.get_optimizer([g for g in groups if g["params"]], cfg.optim)
        self.register_stateful("model", "optimizer")
        self.register_best_state("model")
        self.register_ema("model")
        self._build_token_cache()

    def _build_token_cache(self) -> None:
        cache_cfg = self.cfg.cache
        if not cache_cfg.path or "train" not in self.dataloaders:
            return
        if int(cache_cfg.write_num_shards) != 1 or int(cache_cfg.write_shard) != 0:
            raise ValueError("cache.write_num_shards/write_shard (parallel cache writers) are not supported; keep "
                             "cache.write_num_shards=1 and cache.write_shard=0.")
        wav_conditions = self.model.condition_provider.wav_conditions
        if wav_conditions:
            raise ValueError(f"The token cache keeps text attributes only; this model is conditioned on audio "
                             f"({wav_conditions}). Set cache.path=null.")
        codec = self.compression_model
        signature = {"compression_model": str(self.cfg.compression_model_checkpoint),
                     "sample_rate": int(codec.sample_rate), "channels": int(self.cfg.channels),
                     "frame_rate": float(codec.frame_rate), "num_codebooks": int(codec.num_codebooks),
                     "cardinality": int(codec.cardinality), "segment_duration": self.cfg.dataset.segment_duration,
                     "train": str(self.cfg.datasource.get("train"))}
        # compression_model_n_q keeps the first codebooks of the codec's residual quantizer, so a cache
        # written with all of them serves (mono only: stereo codes interleave the two channels').
        prefix = self.cfg.get("compression_model_n_q") is not None and not self.cfg.interleave_stereo_codebooks.use
        self.token_cache = TokenCache(cache_cfg.path, signature, codebook_prefix=prefix)
        written = self.token_cache.complete_epochs()
        if self.token_cache.read_only and not written:
            raise ValueError(f"The token cache {str(self.token_cache.path)!r} holds more codebooks than this run's "
                             f"{codec.num_codebooks} and no complete epoch to read; use another cache.path.")
        if self.token_cache.read_only and cache_cfg.write and len(written) < int(cache_cfg.get("num_epochs", 1)):
            raise ValueError(f"The token cache {str(self.token_cache.path)!r} holds more codebooks than this run's "
                             f"{codec.num_codebooks}: it can be read, not written, and it has {len(written)} complete "
                             f"epochs. Set cache.num_epochs={len(written)} (or cache.write=false), or use another "
                             "cache.path.")
        train = self.dataloaders["train"]
        dataset = TokenCacheDataset(self.token_cache, int(train.batch_size), distributed.rank(),
                                    distributed.world_size())
        self._cache_loader = torch.utils.data.DataLoader(dataset, batch_size=None, collate_fn=identity_collate)

    def _continue_from_best_state(self, source: str) -> dict:
        state = super()._continue_from_best_state(source)
        if not self.cfg.get("grow_codebooks"):
            return state
        if source.startswith(checkpoint.PRETRAINED_PREFIX):
            raise ValueError("grow_codebooks=true takes the LM of a training run or an LM file "
                             "(continue_from=<folder>/state_dict.bin), not //pretrained/ (which brings its own "
                             "codec and codebook count).")
        return {**state, "model": _grown_lm_state(state["model"], self.model.state_dict(), source)}

    def load_from_pretrained(self, name: str) -> dict:
        """The weights of the pretrained LM (already loaded by :meth:`build_model`, adapters included)."""
        if self._pretrained is None:
            raise ValueError(f"continue_from=//pretrained/{name}: the model was not loaded; build the solver first.")
        return {"best_state": {"model": self.model.state_dict()}}

    def show(self) -> None:
        super().show()
        codec = self.compression_model
        logger.info("Compression model: %s, %d codebooks of %d at %.1f Hz", type(codec).__name__,
                    codec.num_codebooks, codec.cardinality, codec.frame_rate)

    # ------------------------------------------------------------------ one batch
    @staticmethod
    def _check_random_crop(cfg: DictConfig) -> None:
        """Refuse ``tokens.random_crop_*`` and ``tokens.split_*`` values that :meth:`_random_token_crop` and
        :meth:`_token_split` cannot use."""
        stereo_steps = cfg.interleave_stereo_codebooks.use and cfg.interleave_stereo_codebooks.per_timestep
        for p_key, duration_key, duration_default in (("random_crop_p", "random_crop_min_duration", 1.0),
                                                      ("split_p", "split_duration", 2.0)):
            raw_p, raw_duration = cfg.tokens.get(p_key, 0.0), cfg.tokens.get(duration_key, duration_default)
            try:
                probability, duration = float(raw_p or 0.0), float(raw_duration)
            except (TypeError, ValueError):
                probability, duration = float("nan"), float("nan")
            if not (0.0 <= probability <= 1.0 and duration > 0):
                raise ValueError(f"tokens.{p_key}={raw_p} and tokens.{duration_key}={raw_duration}: the probability "
                                 f"must be a number within [0, 1] and the duration a number of seconds > 0.")
            if probability > 0 and stereo_steps:
                raise ValueError(f"tokens.{p_key} > 0 cannot be combined with interleave_stereo_codebooks."
                                 f"per_timestep=true (a window could start on a right-channel step); set one of "
                                 f"them off.")

    def _check_windows_with_conditions(self) -> None:
        """Windows of the codes (``tokens.random_crop_p``, ``tokens.split_p``) keep text conditions valid but
        not audio ones, which are aligned with the whole segment."""
        wav_conditions = self.model.condition_provider.wav_conditions
        options = [name for name in ("random_crop_p", "split_p") if float(self.cfg.tokens.get(name, 0.0) or 0.0) > 0]
        if wav_conditions and options:
            raise ValueError(f"tokens.{options[0]} > 0 trains on windows of the segments, but this model is also "
                             f"conditioned on audio ({wav_conditions}), which covers the whole segment; set "
                             f"tokens.{options[0]}=0.")

    def _codes_and_attributes(self, batch: Any) -> tuple[torch.Tensor, list, torch.Tensor, int]:
        """(codes [B, K, T'], conditioning attributes, mask [B, K, T'] of the frames that count in the loss,
        number of leading frames made from real audio in at least one item)."""
        if isinstance(batch, TokenBatch):
            codes, attributes = batch.codes.to(self.device), batch.attributes
            n_frames, sample_rate = batch.n_frames, batch.sample_rate
        else:
            wav, infos = batch
            with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
                codes, scale = self.compression_model.encode(wav.to(self.device))
            if scale is not None:
                raise ValueError("The compression model renormalises audio (scale is not None); MusicGen needs a "
                                 "codec without renormalisation.")
            attributes = [info.to_condition_attributes() for info in infos]
            n_frames, sample_rate = [info.n_frames for info in infos], infos[0].sample_rate
            if self._cache_writing:
                batch_size = codes.shape[0]
                position = (self._cache_batches * distributed.world_size() + distributed.rank()) * batch_size
                self.token_cache.write_batch(self.epoch, position, codes, attributes, n_frames, sample_rate,
                                             [info.meta.path for info in infos], [info.seek_time for info in infos])
                self._cache_batches += 1
        mask = torch.ones_like(codes, dtype=torch.bool)
        frame_rate = self.compression_model.frame_rate
        real_frames = [min(math.floor(length / sample_rate * frame_rate), codes.shape[-1]) for length in n_frames]
        if self.cfg.tokens.padding_with_special_token:  # frames of padded audio do not count in the loss
            for index, length in enumerate(real_frames):
                mask[index, :, length:] = False
        return codes, attributes, mask, max(real_frames, default=codes.shape[-1])

    def _random_token_crop(self, codes: torch.Tensor, mask: torch.Tensor,
                           real_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """With probability ``tokens.random_crop_p`` (this project's option; 0 by default), the same random
        window of every sequence of the batch, at least ``tokens.random_crop_min_duration`` seconds long,
        within the first ``real_frames`` frames (those made from real audio in at least one item: a
        window never holds only padding).

        Only the first frames of a sequence have to take the instrument and style from the text: later
        ones can copy them from the frames before. Shorter windows at random offsets give the LM more
        such starts per update, and starts that differ from epoch to epoch when the codes come from
        the token cache. Drawn from ``self.rng`` (reseeded every epoch).
        """
        probability = float(self.cfg.tokens.get("random_crop_p", 0.0) or 0.0)  # checked by build_model
        if probability <= 0 or torch.rand(1, generator=self.rng).item() >= probability:
            return codes, mask
        total = codes.shape[-1] if real_frames is None else max(1, min(int(real_frames), codes.shape[-1]))
        shortest = math.ceil(float(self.cfg.tokens.get("random_crop_min_duration", 1.0))
                             * self.compression_model.frame_rate)
        shortest = min(max(shortest, 1), total)
        length = int(torch.randint(shortest, total + 1, (1,), generator=self.rng))
        start = int(torch.randint(0, total - length + 1, (1,), generator=self.rng))
        return codes[..., start:start + length], mask[..., start:start + length]

    def _token_split(self, codes: torch.Tensor, mask: torch.Tensor, real_frames: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """With probability ``tokens.split_p`` (this project's option; 0 by default), the batch cut into
        consecutive windows of ``tokens.split_duration`` seconds, each trained as a sequence of its own.

        A window starts at position 0 with nothing before it to copy the instrument from, like a
        generation: a batch of B segments of N windows gives B * N such starts for about the compute of
        B whole segments. The windows begin at a random offset (drawn from ``self.rng``) within the
        first ``real_frames`` frames, so they move from epoch to epoch.

        Returns:
            None when the batch is not split, else (codes [B * N, K, W], mask [B * N, K, W], index [B * N]
            of the segment each window comes from, for its condition tensors).
        """
        probability = float(self.cfg.tokens.get("split_p", 0.0) or 0.0)  # checked by build_model
        if probability <= 0 or torch.rand(1, generator=self.rng).item() >= probability:
            return None
        total = codes.shape[-1] if real_frames is None else max(1, min(int(real_frames), codes.shape[-1]))
        width = math.ceil(float(self.cfg.tokens.split_duration) * self.compression_model.frame_rate)
        if width * 2 > total:  # fewer than two windows: nothing gained over the whole segment
            return None
        offset = int(torch.randint(0, min(width, total - 2 * width + 1), (1,), generator=self.rng))
        count = (total - offset) // width
        B, K, _ = codes.shape
        end = offset + count * width

        def cut(tensor: torch.Tensor) -> torch.Tensor:
            return tensor[..., offset:end].reshape(B, K, count, width).permute(0, 2, 1, 3).reshape(B * count, K, width)

        index = torch.arange(B, device=codes.device).repeat_interleave(count)
        return cut(codes), cut(mask), index

    def _split_predictions(self, codes: torch.Tensor, attributes: list, index: torch.Tensor) -> LMOutput:
        """Teacher-forced predictions of windows cut by :meth:`_token_split`: the conditions of each segment
        are dropped out and encoded once, then shared by its windows (the text encoder runs B times, not
        B * N)."""
        tensors = self.model.training_condition_tensors(attributes)
        shared = {name: (embedding.index_select(0, index), mask.index_select(0, index))
                  for name, (embedding, mask) in tensors.items()}
        return self.model.compute_predictions(codes, [], condition_tensors=shared)

    def run_step(self, batch: Any) -> StepOutput:
        codes, attributes, padding_mask, real_frames = self._codes_and_attributes(batch)
        split = self._token_split(codes, padding_mask, real_frames) if self.is_training else None
        if split is not None:
            codes, padding_mask, index = split
            output = self._split_predictions(codes, attributes, index)
        else:
            if self.is_training:
                codes, padding_mask = self._random_token_crop(codes, padding_mask, real_frames)
            output = self.model.compute_predictions(codes, attributes)  # dropouts of the conditions in training
        ce, ce_per_codebook = compute_cross_entropy(output.logits, codes, output.mask & padding_mask)
        metrics: dict[str, Any] = {"ce": ce.detach(), "ppl": torch.exp(ce.detach())}
        for k, ce_k in enumerate(ce_per_codebook):
            metrics[f"ce_q{k + 1}"] = ce_k
            metrics[f"ppl_q{k + 1}"] = torch.exp(ce_k)
        return StepOutput(metrics=metrics, loss=ce if self.is_training else None)

    # ------------------------------------------------------------------ train stage (token cache)
    def train(self) -> dict[str, float]:
        seed = int(self.cfg.seed) * 1000 + self.epoch  # the dropouts' own generators: exact resume per epoch
        self.model.cfg_dropout.rng.seed(seed)
        self.model.att_dropout.rng.seed(seed + 1)
        if self.token_cache is None:
            return super().train()
        if self._reads_cache():
            audio_loader = self.dataloaders["train"]
            self.dataloaders["train"] = self._cache_loader
            try:
                return super().train()
            finally:
                self.dataloaders["train"] = audio_loader
        logger.info("Writing the codes of epoch %d to the token cache %s", self.epoch, self.token_cache.path)
        self._cache_writing, self._cache_batches = True, 0
        try:
            metrics = super().train()
        finally:
            self._cache_writing = False
        distributed.barrier()
        if distributed.is_rank_zero():
            batch_size = int(self.dataloaders["train"].batch_size)
            self.token_cache.finish_epoch(self.epoch, self._cache_batches * batch_size * distributed.world_size())
        distributed.barrier()
        return metrics

    def _reads_cache(self) -> bool:
        """Read epoch ``self.epoch`` from the cache? Without ``cache.write`` always; with it, once
        ``cache.num_epochs`` epochs (default 1) are written, or if this epoch is."""
        cache = self.token_cache
        if not self.cfg.cache.write:
            return True
        written = cache.complete_epochs()
        return self.epoch in written or len(written) >= int(self.cfg.cache.get("num_epochs", 1))

    # ------------------------------------------------------------------ generate / evaluate
    def generation_model(self, duration: float | None = None):
        """A :class:`~audiocraft.models.MusicGen` on the current weights, with ``generate.lm`` sampling options."""
        from ..models import MusicGen

        lm_cfg = self.cfg.generate.lm
        max_duration = float(self.cfg.dataset.segment_duration or 30.0)
        model = MusicGen(str(self.folder), self.compression_model, self.model, max_duration=max_duration)
        coef = OmegaConf.select(self.cfg, "classifier_free_guidance.inference_coef", default=3.0)
        model.set_generation_params(use_sampling=bool(lm_cfg.use_sampling), top_k=int(lm_cfg.top_k),
                                    top_p=float(lm_cfg.top_p), temperature=float(lm_cfg.get("temp", 1.0)),
                                    duration=float(duration or max_duration), cfg_coef=float(coef))
        return model

    @staticmethod
    def _descriptions(infos: Sequence[Any]) -> list[str | None]:
        """The description of each segment, None when it has none (or only blanks)."""
        texts = [getattr(info, "description", None) for info in infos]
        return [text if isinstance(text, str) and text.strip() else None for text in texts]

    def _generate_from_text(self, model, descriptions: Sequence[str | None]) -> torch.Tensor:
        """Audio [B, C, T]: text-conditioned where there is a description, unconditional elsewhere."""
        with_text = [i for i, text in enumerate(descriptions) if text]
        without = [i for i, text in enumerate(descriptions) if not text]
        parts = {}
        if with_text:
            parts.update(zip(with_text, model.generate([descriptions[i] for i in with_text])))
        if without:
            parts.update(zip(without, model.generate_unconditional(len(without))))
        return torch.stack([parts[i] for i in range(len(descriptions))])

    @contextlib.contextmanager
    def _rng_fork(self):
        """Generation draws from its own seeded stream: the training randomness does not depend on it."""
        with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
            torch.manual_seed(int(self.cfg.seed) + self.epoch)
            yield

    def _durations(self) -> tuple[float, float]:
        split = self.cfg.dataset.get("generate") or {}
        length = float(split.get("segment_duration") or self.cfg.dataset.segment_duration or 30.0)
        gen_duration = float(self.cfg.generate.lm.gen_duration or length)
        prompt_duration = float(self.cfg.generate.lm.prompt_duration or length / 4)
        if prompt_duration >= gen_duration:
            raise ValueError(f"generate.lm.prompt_duration ({prompt_duration} s) must be shorter than the generated "
                             f"duration ({gen_duration} s).")
        return gen_duration, prompt_duration

    def generate(self) -> dict[str, float]:
        """Write text, unconditional and continuation samples and the references of the generate split."""
        if "generate" not in self.dataloaders:
            return {}
        from ..data.audio import audio_write
        from ..data.audio_utils import convert_audio

        gen_duration, prompt_duration = self._durations()
        model = self.generation_model(gen_duration)
        lm_cfg, audio_cfg = self.cfg.generate.lm, builders.as_dict(self.cfg.generate.audio, "generate.audio")
        out_rate = int(audio_cfg.get("sample_rate") or model.sample_rate)
        write_kwargs = {key: audio_cfg[key] for key in _AUDIO_WRITE_KEYS if audio_cfg.get(key) is not None}
        folder = self.folder / str(self.cfg.generate.path) / f"epoch_{self.epoch}"
        loader = self.dataloaders["generate"]
        rank, world = distributed.rank(), distributed.world_size()
        position, prompts = 0, []
        with self._rng_fork():
            for wav, infos in Progress(loader, "generate", self.epoch, len(loader), int(self.cfg.logging.log_updates)):
                descriptions = self._descriptions(infos)
                samples = {"reference": wav}
                if lm_cfg.unprompted_samples:
                    samples["text"] = wav if lm_cfg.gen_gt_samples else self._generate_from_text(model, descriptions)
                if self.cfg.generate.lm.get("unconditional_samples", True):
                    samples["unconditional"] = model.generate_unconditional(len(infos))
                if lm_cfg.prompted_samples:
                    prompt = wav[..., :int(prompt_duration * model.sample_rate)]
                    if all(bool(item.abs().max() > 0) for item in prompt):  # the API refuses silent prompts
                        audio = model.generate_continuation(prompt, model.sample_rate, descriptions)
                        samples["continuation"] = audio[..., prompt.shape[-1]:] if lm_cfg.remove_prompts else audio
                    else:
                        logger.warning("Generate: a prompt of batch %d is silent; no continuation samples.", position)
                for offset, info in enumerate(infos):
                    index = rank + (position + offset) * world
                    prompts.append({"index": index, "description": descriptions[offset],
                                    "path": info.meta.path, "seek_time": info.seek_time})
                    for kind, audio in samples.items():
                        item = convert_audio(audio[offset].float().cpu(), model.sample_rate, out_rate, audio.shape[1])
                        audio_write(folder / kind / f"{index:05d}", item, out_rate, **write_kwargs)
                position += len(infos)
        if prompts:
            lines = "".join(json.dumps(entry) + "\n" for entry in prompts)
            (folder / f"prompts.{rank}.jsonl").write_text(lines, encoding="utf-8")
        logger.info("Samples written to %s", folder)
        return {}

    def evaluate(self) -> dict[str, float]:
        """``ce``/``ppl`` on the evaluate split (``evaluate.metrics.base``) and generation metrics."""
        if "evaluate" not in self.dataloaders:
            return {}
        metrics = dict(self.common_train_valid("evaluate")) if self.cfg.evaluate.metrics.base else {}
        metrics.update(self._generation_metrics())
        return metrics

    def _generation_metrics(self) -> dict[str, float]:
        metrics = get_generation_metrics(self.cfg)
        if not metrics:
            return {}
        self.model.eval()
        loader = self.dataloaders["evaluate"]
        with self._rng_fork():
            for wav, infos in Progress(loader, "evaluate", self.epoch, len(loader), int(self.cfg.logging.log_updates)):
                duration = float(self.cfg.evaluate.fixed_generation_duration or wav.shape[-1] / self.cfg.sample_rate)
                model = self.generation_model(duration)
                descriptions = self._descriptions(infos)
                generated = self._generate_from_text(model, descriptions).cpu()[..., :wav.shape[-1]]
                sizes = torch.tensor([info.n_frames for info in infos])
                reconstructed = None
                for name, metric in metrics.items():
                    preds = generated
                    if self.cfg.metrics[name].get("use_gt"):
                        if reconstructed is None:
                            codes, _ = self.compression_model.encode(wav.to(self.device))
                            reconstructed = self.compression_model.decode(codes).cpu()[..., :wav.shape[-1]]
                        preds = reconstructed
                    if name == "text_consistency":
                        metric.update(preds, [text or "" for text in descriptions], sizes, int(self.cfg.sample_rate))
                    else:
                        metric.update(preds, wav, sizes, int(self.cfg.sample_rate))
        results: dict[str, float] = {}
        for name, metric in metrics.items():
            value = _merged_over_processes(metric).compute()
            results.update(value if isinstance(value, dict) else {name: value})
        return results


# ============================================================================ evaluation metrics

def _metric_model(cfg: DictConfig, name: str, builtin: dict[str, Any]) -> Any | None:
    """The model of metric ``name``: built-in by name, or ``metrics.<name>.model=<package.module.Factory>``
    called with ``metrics.<name>.model_kwargs``. None (with a warning) for AudioCraft models not available here."""
    section = cfg.metrics[name]
    kind = str(section.model)
    if kind in builtin:
        return builtin[kind]()
    if "." in kind:
        factory = builders.import_object(kind, f"metrics.{name}.model")
        return factory(**builders.as_dict(section.get("model_kwargs"), f"metrics.{name}.model_kwargs"))
    logger.warning("Evaluate: metric %s skipped: metrics.%s.model=%s (an AudioCraft model) is not available; set "
                   "metrics.%s.model=<package.module.Class> (see audiocraft.metrics.embedders for the protocol).",
                   name, name, kind, name)
    return None


def get_generation_metrics(cfg: DictConfig) -> dict[str, Any]:
    """The metrics that ``evaluate.metrics`` turns on, each on its configured model.

    FAD uses the built-in :class:`~audiocraft.metrics.MelStatisticsEmbedder` for ``mel_stats`` and for
    AudioCraft's ``tf`` (VGGish, not available here); KLD needs an :class:`~audiocraft.metrics.AudioClassifier`
    and text consistency a :class:`~audiocraft.metrics.TextAudioEmbedder` (cosine similarity) or an
    ``AudioClassifier`` (fraction of clips classified as the label their prompt names), given as import
    paths, e.g. ``metrics.kld.model=audiocraft.metrics.classifier.TaggerClassifier``.
    """
    from .. import metrics as eval_metrics

    wanted = builders.as_dict(cfg.evaluate.metrics, "evaluate.metrics")
    out: dict[str, Any] = {}
    if wanted.get("fad"):
        embedder = _metric_model(cfg, "fad", {"mel_stats": eval_metrics.MelStatisticsEmbedder,
                                              "tf": eval_metrics.MelStatisticsEmbedder})
        out["fad"] = eval_metrics.FrechetAudioDistance(embedder)
    if wanted.get("kld"):
        classifier = _metric_model(cfg, "kld", {})
        if classifier is not None:
            out["kld"] = eval_metrics.KLDivergence(classifier)
    if wanted.get("text_consistency"):
        model = _metric_model(cfg, "text_consistency", {})
        if hasattr(model, "embed_text"):  # a joint text/audio space (CLAP-like): cosine similarity
            out["text_consistency"] = eval_metrics.TextConsistencyMetric(model)
        elif model is not None:  # a classifier: is the label named in the prompt the one it hears?
            names = {label: [label, label.replace("_", " ")] for label in model.labels}
            out["text_consistency"] = eval_metrics.ClassifierTextConsistency(
                model, eval_metrics.keyword_label_matcher(names))
    if wanted.get("chroma_cosine"):
        logger.warning("Evaluate: chroma_cosine is not available in this implementation; skipped.")
    return out


def _merged_over_processes(metric):
    """``metric`` with the accumulated sums of every process added (no-op in a single process)."""
    if not distributed.is_distributed():
        return metric
    states = [None] * distributed.world_size()
    torch.distributed.all_gather_object(states, metric.state())
    metric.reset()
    for state in states:
        metric.merge(state)
    return metric


def _grown_lm_state(kept: dict, fresh: dict, source: str) -> dict:
    """The LM state for ``grow_codebooks``: ``kept`` (an LM over fewer codebooks) with the per-codebook embeddings
    and output layers of the added codebooks taken from ``fresh`` (this config's LM), the embeddings zeroed."""
    def codebook(key: str) -> int | None:
        parts = key.split(".")
        return int(parts[1]) if parts[0] in ("emb", "linears") and parts[1].isdigit() else None

    grown, have, want = builders.grown_state(
        kept, fresh, codebook, f"grow_codebooks=true (continue_from={source})",
        "set transformer_lm.n_q",
        "use its architecture options (transformer_lm width, card, conditioners).",
        added=lambda key, value: torch.zeros_like(value) if key.startswith("emb.") else value)
    logger.info("LM grown from %d to %d codebooks; the embeddings of codebooks %d-%d start at zero.",
                have, want, have + 1, want)
    return grown


def _lora_options(cfg: DictConfig) -> dict:
    return {**_LORA_DEFAULTS, **builders.as_dict(cfg.get("lora"), "lora")}


def __getattr__(name: str):
    # The export functions live in musicgen_export (imported lazily: it imports this module).
    if name in ("export_musicgen", "export_lora", "main"):
        from . import musicgen_export
        return getattr(musicgen_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    from .musicgen_export import main as _main
    sys.exit(_main())
