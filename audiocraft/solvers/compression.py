"""EnCodec training: the compression task for the generic loop of :mod:`audiocraft.solvers.base`.

Per batch ``x`` [B, C, T]: the model reconstructs ``y = model(x).x``; the discriminators
(``adversarial.adversaries``) take one step on (y, x) every ``adversarial.every`` batches on
average; then the generator is trained on the weighted losses ``losses.{adv, feat, l1, mel, msspec,
sisnr}`` combined by the loss :class:`~audiocraft.losses.Balancer`, plus the quantizer's commitment
penalty (weight 1, outside the balancer). Losses with weight 0 are only logged.

With ``+freeze=[encoder,quantizer]`` the decoder can also learn from codes a language model would
make: ``+lm_resample.lm=<LM>`` with ``+lm_resample.p=<share>`` replaces, in that share of the training
items, the encoder's codes by a teacher-forced sample of the LM (see :class:`LMResampler`); the
target stays the original audio. ``+active_codebooks=<N>`` trains and evaluates with the first N codebooks
only, for an LM over those (``compression_model_n_q=N``); with the frozen encoder and quantizer, the decoder
learns to render them.

A trained codec can get a new quantizer (other codebook count or size): ``continue_from=<codec>
+reinit=[quantizer]`` takes the other parts from ``<codec>`` and starts the quantizer afresh, and
``+quantizer_init_batches=<N>`` fits its codebooks by k-means on the latents of N training batches before
the first update (without it, on the first batch alone, as AudioCraft does: too few vectors for large
codebooks). With ``+freeze=[encoder,quantizer]`` as well, the codes are then fixed and the decoder learns them.
``+grow_quantizer=true`` keeps the codebooks of ``continue_from`` as the first ones of a residual quantizer
with more of them (a larger ``rvq.n_q``, the same ``rvq.bins``), and fits only the added ones, on the residual
the kept ones leave (``+quantizer_init_batches``): the codes of the first codebooks do not change, so an LM
trained on them can be extended rather than retrained.
``+parts_from.<part>=<codec>`` takes that part from another codec of the same shapes (e.g. the decoder of the
run the quantizer was fitted for). With every part frozen, a run changes no weights: it fits a new quantizer
or puts parts together, and evaluates and saves the result (``optim.updates_per_epoch=1 optim.epochs=1``);
with discriminators (``adversarial.adversaries``), it trains them alone against the fixed codec: a warm-up
for a later run that starts from them with ``+adversaries_from``.
``+adversaries_from=<run>`` starts the discriminators from another run's trained ones (those of its
last checkpoint, with the same ``adversarial`` and discriminator options; their optimizers start
afresh), so that a run continuing a decoder does not go back through the epochs where an untrained
discriminator gives no signal.

Valid reports the same losses; evaluate reports ``sisnr`` (AudioCraft's SI-SNR loss, i.e. minus the
SI-SNR in dB: lower is better) and ``mel`` (mel-spectrogram L1 distance) on the evaluate split;
generate writes reconstructions and references to ``<xp folder>/samples/epoch_<N>/``.

:func:`export_compression` turns a training checkpoint into ``compression_state_dict.bin``, the
released format that :meth:`CompressionModel.get_pretrained` loads.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..models import builders as model_builders
from ..models.encodec import CompressionModel, EncodecModel
from ..models.pretrained import resolve_pretrained_name
from ..modules.conditioners import ConditioningAttributes
from ..modules.sampling import sample_token
from ..quantization.base import QuantizedResult
from ..quantization.vq import EuclideanCodebook
from ..utils import checkpoint, distributed
from . import builders
from .base import StandardSolver, StepOutput
from .monitor import Averager, Progress

logger = logging.getLogger("audiocraft.solver")

_AUDIO_WRITE_KEYS = ("format", "strategy", "mp3_rate", "ogg_rate", "normalize", "peak_clip_headroom_db",
                     "rms_headroom_db", "loudness_headroom_db", "loudness_compressor")


class CompressionSolver(StandardSolver):
    """Trains an :class:`~audiocraft.models.EncodecModel` (see the module docstring)."""

    def build_model(self) -> None:
        cfg = self.cfg
        if cfg.fsdp.use:
            raise ValueError("fsdp.use=true is not supported by the compression solver; set fsdp.use=false.")
        if self.autocast_enabled and self.autocast_dtype == torch.float16 and self.device.type == "cuda":
            raise ValueError("The compression solver cannot use float16 autocast: its loss balancer backpropagates "
                             "without gradient scaling. Use autocast_dtype=bfloat16 or autocast=false.")
        if cfg.evaluate.metrics.get("visqol"):
            raise ValueError("evaluate.metrics.visqol=true is not available in this implementation; set it to false.")
        self.model = model_builders.get_compression_model(cfg).to(self.device)
        active = cfg.get("active_codebooks")
        if active is not None:  # train the decoder for the codes of an LM with compression_model_n_q=<active>
            total = self.model.total_codebooks
            if not _whole_number_in(active, 1, total):
                raise ValueError(f"active_codebooks={active!r}: give a whole number of codebooks from 1 to the "
                                 f"quantizer's {total}.")
            self.model.set_num_codebooks(active)
        self.frozen = _frozen_parts(cfg.get("freeze"))
        self.reinit = _model_parts(cfg.get("reinit"), "reinit")
        parts_from = builders.as_dict(cfg.get("parts_from") or {}, "parts_from")
        self.parts_from = {part: str(parts_from[part]) for part in _model_parts(list(parts_from), "parts_from")}
        for option, value in (("reinit", self.reinit), ("parts_from", list(self.parts_from))):
            if value and not cfg.continue_from:
                raise ValueError(f"{option}={value} replaces parts of the model that continue_from gives, but "
                                 "continue_from is not set.")
        self.grow_quantizer = bool(cfg.get("grow_quantizer", False))
        if self.grow_quantizer and (not cfg.continue_from or "quantizer" in self.reinit
                                    or "quantizer" in self.parts_from):
            raise ValueError("grow_quantizer=true adds codebooks after those of continue_from's quantizer: set "
                             "continue_from, and drop +reinit=[quantizer] / +parts_from.quantizer.")
        self.quantizer_init_batches = cfg.get("quantizer_init_batches")
        if self.quantizer_init_batches is not None and not _whole_number_in(self.quantizer_init_batches, 1):
            raise ValueError(f"quantizer_init_batches={self.quantizer_init_batches!r}: give a number of training "
                             "batches >= 1 whose latents the codebooks are fitted on.")
        if "quantizer" not in self.frozen:
            _warn_if_codebooks_churn(cfg, self.model)
        self.lm_resampler = LMResampler.from_config(cfg.get("lm_resample"), self.frozen, self.model, self.device)
        for part in self.frozen:
            getattr(self.model, part).requires_grad_(False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = builders.get_optimizer(trainable, cfg.optim) if trainable else None
        self.adv_losses = builders.get_adversarial_losses(cfg, self.device)
        if set(self.frozen) == set(_FREEZABLE) and not (self.reinit or self.parts_from or self.adv_losses
                                                          or self.grow_quantizer):
            raise ValueError("freeze lists every part of the model: nothing would be trained. (Freezing every "
                             "part is for runs that only fit a new quantizer (+reinit=[quantizer] or "
                             "+grow_quantizer=true), take parts from other codecs (+parts_from.<part>=...) or train "
                             "the discriminators alone (adversarial.adversaries=[...]).)")
        self.adversaries_from = cfg.get("adversaries_from")
        if self.adversaries_from and not self.adv_losses:
            raise ValueError(f"adversaries_from={self.adversaries_from}: this config trains no discriminator "
                             "(adversarial.adversaries is empty); set adversarial.adversaries or drop adversaries_from.")
        self.aux_losses, self.info_losses = nn.ModuleDict(), nn.ModuleDict()
        weights: dict[str, float] = {}
        for name, weight in builders.as_dict(cfg.losses, "losses").items():
            if name in ("adv", "feat"):
                weights.update({f"{name}_{adversary}": float(weight) for adversary in self.adv_losses})
            elif weight > 0:
                self.aux_losses[name] = builders.get_loss(name, cfg).to(self.device)
                weights[name] = float(weight)
            else:
                self.info_losses[name] = builders.get_loss(name, cfg).to(self.device)
        self.loss_weights = weights
        self.balancer = builders.get_balancer(weights, cfg.balancer) if weights else None
        self.register_stateful("model", "adv_losses")  # adv_losses include their optimizers
        if self.optimizer is not None:
            self.register_stateful("optimizer")
        if self.balancer is not None:
            self.register_stateful("balancer")  # its gradient-norm averages, for an exact resume
        self.register_best_state("model")
        self.register_ema("model")

    def set_model_mode(self, training: bool) -> None:
        super().set_model_mode(training)
        for part in self.frozen:  # a frozen quantizer must not update its codebooks either
            getattr(self.model, part).eval()
        if training and "quantizer" in self.frozen and "encoder" not in self.frozen:
            # The encoder learns through the quantizer: its straight-through gradient and commitment loss
            # exist in training mode only, so the quantizer trains and only its codebooks stay still.
            self.model.quantizer.train()
            for module in self.model.quantizer.modules():
                if isinstance(module, EuclideanCodebook):
                    module.eval()

    def build_dataloaders(self) -> None:
        self.dataloaders = builders.get_audio_datasets(self.cfg, dataset_type="audio")

    def _waveform(self, batch: Any) -> torch.Tensor:
        """The audio ``[B, C, T]`` of a batch (``wav`` or ``(wav, infos)``), on the solver's device."""
        return (batch[0] if isinstance(batch, (tuple, list)) else batch).to(self.device)

    def _continue_from_best_state(self, source: str) -> dict:
        state = super()._continue_from_best_state(source)
        fresh = self.model.state_dict()
        origins = {part: (f"continue_from={source}", state["model"]) for part in _FREEZABLE}
        origins.update({part: ("reinit", fresh) for part in self.reinit})  # new, unfitted state
        origins.update({part: (f"parts_from.{part}={other}", _best_model_state(other)[1])
                        for part, other in self.parts_from.items()})
        model = {}
        for part, (origin, weights) in origins.items():
            taken = {key: value for key, value in weights.items() if key.split(".")[0] == part}
            if part == "quantizer" and self.grow_quantizer:
                taken = _grown_quantizer_state(taken, {key: value for key, value in fresh.items()
                                                       if key.split(".")[0] == part}, origin)
            if {key: value.shape for key, value in taken.items()} != \
                    {key: value.shape for key, value in fresh.items() if key.split(".")[0] == part}:
                raise ValueError(f"{origin}: its {part} does not have this config's shapes (e.g. other rvq.n_q / "
                                 f"rvq.bins / seanet options). Use the same options, or add +reinit=[{part}] to "
                                 f"start the {part} afresh.")
            model.update(taken)
        logger.info("Model parts from: %s", {part: origin for part, (origin, _) in origins.items()})
        return {**state, "model": model}

    def restore(self, load_best: bool = False, ignore_state_keys=()) -> bool:
        fresh = not self.checkpoint_path().exists()
        loaded = super().restore(load_best, ignore_state_keys)
        if fresh and self.adversaries_from:
            self._load_adversaries(str(self.adversaries_from))
        self._fit_codebooks()
        return loaded

    def _load_adversaries(self, source: str) -> None:
        """Load the discriminator weights of training run ``source`` (not their optimizer states)."""
        path, package, _ = checkpoint.load_run_checkpoint(source)
        states = package.get("adv_losses") or {}
        weights = {key: value for key, value in states.items() if not key.endswith(".optimizer")}
        if not weights:
            raise ValueError(f"adversaries_from={source}: {str(path)!r} holds no discriminator weights (an exported "
                             "codec, or a run without adversarial.adversaries). Give the folder or //sig/ of a "
                             "training run that had discriminators.")
        mine = self.adv_losses.state_dict()
        expected = {key: value.shape for key, value in mine.items() if not key.endswith(".optimizer")}
        shapes = {key: value.shape for key, value in weights.items()}
        if shapes != expected:
            key = next(k for k in sorted(set(shapes) | set(expected)) if shapes.get(k) != expected.get(k))
            raise ValueError(f"adversaries_from={source}: the discriminators of {str(path)!r} do not have this "
                             f"config's shapes ({key}: {tuple(shapes.get(key, ()))} there, "
                             f"{tuple(expected.get(key, ()))} here). Use that run's adversarial and "
                             "discriminator options (e.g. msstftd.filters, msstftd.n_ffts).")
        self.adv_losses.load_state_dict({**mine, **weights})
        for adversary in self.adv_losses.values():
            distributed.broadcast_module(adversary)
        logger.info("Discriminators %s from %s", sorted(self.adv_losses), path)

    @torch.no_grad()
    def _fit_codebooks(self) -> None:
        """Fit codebooks that were never initialised by k-means on ``quantizer_init_batches`` batches of latents."""
        quantizer = self.model.quantizer
        layers = getattr(getattr(quantizer, "vq", None), "layers", [])
        if all(bool(layer.inited.item()) for layer in layers):
            return  # fitted already (resumed run, or a loaded codec), or no codebooks
        if self.quantizer_init_batches is None:
            if "quantizer" in self.frozen:
                raise ValueError("The quantizer is frozen but its codebooks were never fitted: they would be fitted "
                                 "on the first batch alone and never change. Add +quantizer_init_batches=<N> "
                                 "(e.g. 200) to fit them on that many training batches first.")
            return  # AudioCraft's behaviour: k-means on the first training batch
        unfitted = sum(not bool(layer.inited.item()) for layer in layers)
        latents = []
        self.current_stage = "train"  # for _batches' error message on an empty loader
        for batch in self._batches(self.dataloaders["train"], self.quantizer_init_batches):
            wav = self._waveform(batch)
            latents.append(self.model.encoder(self.model.preprocess(wav)[0]))
        self.current_stage = None
        frames = torch.cat([latent.transpose(0, 1).flatten(1) for latent in latents], dim=1)  # [D, N]
        training = quantizer.training
        quantizer.eval()  # each layer fits itself on the residual it sees, without EMA or dead-code steps
        with torch.random.fork_rng(devices=[]):  # k-means draws its first centres: the same fit for the same seed
            torch.manual_seed(int(self.cfg.seed))
            quantizer.vq(frames.unsqueeze(0), len(layers))
        quantizer.train(training)
        distributed.broadcast_module(quantizer)
        if self.ema is not None:
            self._init_ema()
        logger.info("Fitted %d of %d codebooks of %d entries on %d latent frames from %d training batches", unfitted,
                    len(layers), quantizer.codebook_size, frames.shape[1], len(latents))

    def show(self) -> None:
        super().show()
        logger.info("Codebooks: %d; adversaries: %s; losses: %s; logged only: %s; frozen: %s",
                    self.model.total_codebooks, list(self.adv_losses), self.loss_weights, list(self.info_losses),
                    self.frozen or "nothing")
        if self.lm_resampler is not None:
            logger.info("Decoder also trained on LM-resampled codes: %s", self.lm_resampler.describe())

    # ------------------------------------------------------------------ one batch
    def run_step(self, batch: Any) -> StepOutput:
        x = self._waveform(batch)
        if self.is_training and self.lm_resampler is not None:
            result = self.lm_resampler.reconstruct(self.model, x, self.rng)
        else:
            result = self.model(x)
        y_pred = result.x
        metrics: dict[str, Any] = {"bandwidth": result.bandwidth.mean()}

        if self.is_training and len(self.adv_losses) > 0:
            if torch.rand(1, generator=self.rng).item() <= 1 / float(self.cfg.adversarial.every):
                d_losses = {f"d_{name}": adversary.train_adv(y_pred.detach(), x, before_step=_average_gradients)
                            for name, adversary in self.adv_losses.items()}
                metrics["d_loss"] = torch.stack([torch.as_tensor(v) for v in d_losses.values()]).sum()
                metrics.update(d_losses)

        balanced: dict[str, torch.Tensor] = {}
        for name, adversary in self.adv_losses.items():
            balanced[f"adv_{name}"], balanced[f"feat_{name}"] = adversary(y_pred, x)
        for name, criterion in self.aux_losses.items():
            balanced[name] = criterion(y_pred, x)
        metrics.update(balanced)
        if result.penalty is not None:
            metrics["penalty"] = result.penalty
        metrics.update(result.metrics)

        if self.is_training and self.optimizer is not None:
            if result.penalty is not None and result.penalty.requires_grad:
                result.penalty.backward(retain_graph=True)  # commitment loss, weight 1, not balanced
                metrics["ratio1"] = _grad_norm(self.model)
            if balanced:
                metrics["g_loss"] = self.balancer.backward(balanced, y_pred)
                metrics.update(self.balancer.metrics)
            metrics["ratio2"] = _grad_norm(self.model)
        else:
            metrics["g_loss"] = sum(self.loss_weights[name] * loss for name, loss in balanced.items()) \
                if balanced else torch.zeros(())

        with torch.no_grad():
            for name, criterion in self.info_losses.items():
                metrics[name] = criterion(y_pred, x)
        for prefix in ("adv", "feat"):
            parts = [value for key, value in balanced.items() if key.startswith(prefix + "_")]
            if parts:
                metrics[prefix] = torch.stack(parts).sum()
        return StepOutput(metrics=metrics, loss=None)

    # ------------------------------------------------------------------ evaluate / generate
    def evaluate(self) -> dict[str, float]:
        """SI-SNR loss (``sisnr``, minus dB) and mel L1 distance (``mel``) of the evaluate split's reconstructions."""
        if "evaluate" not in self.dataloaders:
            return {}
        self.model.eval()
        loader = self.dataloaders["evaluate"]
        criteria = {"mel": builders.get_loss("mel", self.cfg).to(self.device)}
        if self.cfg.evaluate.metrics.get("sisnr", True):
            criteria["sisnr"] = builders.get_loss("sisnr", self.cfg).to(self.device)
        average = Averager()
        progress = Progress(loader, "evaluate", self.epoch, len(loader), int(self.cfg.logging.log_updates))
        for batch in progress:
            wav = self._waveform(batch)
            y_pred = self.model(wav).x
            progress.update(average.update({name: criterion(y_pred, wav) for name, criterion in criteria.items()}))
        return distributed.average_metrics(average.value(), len(loader))

    def generate(self) -> None:
        """Write the reconstructions (``<index>.<format>``) and references (``<index>_reference.<format>``)."""
        if "generate" not in self.dataloaders:
            return
        from ..data.audio import audio_write
        from ..data.audio_utils import convert_audio

        self.model.eval()
        loader = self.dataloaders["generate"]
        audio_cfg = builders.as_dict(self.cfg.generate.audio, "generate.audio")
        out_rate = int(audio_cfg.get("sample_rate") or self.model.sample_rate)
        write_kwargs = {key: audio_cfg[key] for key in _AUDIO_WRITE_KEYS if audio_cfg.get(key) is not None}
        folder = self.folder / str(self.cfg.generate.path) / f"epoch_{self.epoch}"
        rank, world = distributed.rank(), distributed.world_size()
        position = 0
        for batch in Progress(loader, "generate", self.epoch, len(loader), int(self.cfg.logging.log_updates)):
            wav = self._waveform(batch)
            y_pred = self.model(wav).x
            for reference, estimate in zip(wav.cpu(), y_pred.float().cpu()):
                index = rank + position * world  # position of the item in the (unsharded) split
                position += 1
                for suffix, audio in (("", estimate), ("_reference", reference)):
                    audio = convert_audio(audio, self.model.sample_rate, out_rate, audio.shape[0])
                    audio_write(folder / f"{index:05d}{suffix}", audio, out_rate, **write_kwargs)
        logger.info("Samples written to %s", folder)

    # ------------------------------------------------------------------ loading models
    def load_from_pretrained(self, name: str) -> dict:
        model = CompressionModel.get_pretrained(resolve_pretrained_name(name))
        if not isinstance(model, EncodecModel):
            raise ValueError(f"continue_from=//pretrained/{name}: only AudioCraft EnCodec checkpoints can be "
                             f"fine-tuned, got a {type(model).__name__}.")
        return {"best_state": {"model": model.state_dict()}}

    @staticmethod
    def model_from_checkpoint(checkpoint_path: str | Path, device: torch.device | str = "cpu") -> CompressionModel:
        """A compression model (eval mode) from ``//pretrained/<name>``, ``//sig/<sig>``, an experiment folder or a
        checkpoint file (its best state, i.e. the EMA weights when EMA is on)."""
        source = str(checkpoint_path)
        if source.startswith(checkpoint.PRETRAINED_PREFIX):
            name = resolve_pretrained_name(source[len(checkpoint.PRETRAINED_PREFIX):])
            return CompressionModel.get_pretrained(name, device=device)
        cfg, state = _best_model_state(source)
        model = model_builders.get_compression_model(cfg)
        model.load_state_dict(state)
        return model.to(device).eval()

    @staticmethod
    def wrapped_model_from_checkpoint(cfg: DictConfig, checkpoint_path: str | Path,
                                      device: torch.device | str = "cpu") -> CompressionModel:
        """:meth:`model_from_checkpoint` with the LM config's options (stereo interleaving, number of codebooks)."""
        model = CompressionSolver.model_from_checkpoint(checkpoint_path, device)
        return model_builders.get_wrapped_compression_model(model, cfg)


_FREEZABLE = ("encoder", "quantizer", "decoder")


def _whole_number_in(value: Any, low: int, high: float = float("inf")) -> bool:
    """True if ``value`` is an int (not a bool) with ``low <= value <= high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _model_parts(value: Any, option: str) -> list[str]:
    """The model parts named by option ``option`` (a list, or one name), checked."""
    parts = [value] if isinstance(value, str) else [str(part) for part in (value or [])]
    unknown = [part for part in parts if part not in _FREEZABLE]
    if unknown:
        raise ValueError(f"{option}={parts}: unknown part(s) {unknown}; choose among {list(_FREEZABLE)}.")
    return parts


def _warn_if_codebooks_churn(cfg: DictConfig, model: CompressionModel) -> None:
    """Warn when ``rvq.threshold_ema_dead_code`` would re-draw most codebook entries at every step.

    An entry's EMA usage tends to the number of its uses per step; averaged over the entries that is
    (latent frames per batch) / (entries). At or under twice the threshold, most entries keep falling
    under it and are replaced by random latents of the batch, so the codebooks never settle (seen with
    2048 entries and 200 frames per batch: two thirds of the entries at the threshold after 1,000 updates).
    """
    threshold = float(OmegaConf.select(cfg, "rvq.threshold_ema_dead_code", default=0) or 0)
    bins = OmegaConf.select(cfg, "rvq.bins", default=None)
    duration = OmegaConf.select(cfg, "dataset.segment_duration", default=None)
    if threshold <= 0 or not bins or not duration:
        return  # no dead-code replacement, or no fixed batch size in frames to judge it by
    batch = builders.per_process_batch_size(int(cfg.dataset.batch_size), "dataset.batch_size")
    frames = batch * float(duration) * float(model.frame_rate)
    usage = frames / int(bins)
    if usage <= 2 * threshold:
        logger.warning("rvq.threshold_ema_dead_code=%g: with %d latent frames per training batch and %d entries "
                       "per codebook, an entry is used %.3g times per step on average, so most entries will fall "
                       "under the threshold and be re-drawn at every step (the codebooks churn). Set it under "
                       "%.2g (or 0), train on larger batches, or freeze the quantizer (+freeze=[quantizer]).",
                       threshold, round(frames), int(bins), usage, usage / 4)


def _grown_quantizer_state(kept: dict, fresh: dict, origin: str) -> dict:
    """The quantizer state for ``grow_quantizer``: the codebooks of ``kept`` (state of a smaller residual quantizer)
    as the first layers, the unfitted ones of ``fresh`` (this config's) after them."""
    def layer(key: str) -> int | None:
        parts = key.split(".")
        return int(parts[3]) if parts[:3] == ["quantizer", "vq", "layers"] and parts[3].isdigit() else None

    grown, have, want = builders.grown_state(
        kept, fresh, layer, f"grow_quantizer=true ({origin})", "set rvq.n_q",
        "use the codec's rvq.bins and seanet.dimension.")
    logger.info("Quantizer grown from %d to %d codebooks; codebooks %d-%d are new.", have, want, have + 1, want)
    return grown


def _frozen_parts(freeze: Any) -> list[str]:
    """The model parts named by the ``freeze`` option (a list, or one name), checked."""
    parts = _model_parts(freeze, "freeze")
    if "quantizer" in parts and "encoder" not in parts:
        logger.warning("freeze=%s: the quantizer's codebooks are frozen but the encoder trains (through the "
                       "straight-through estimator and the commitment loss), so the codes still change.", parts)
    return [part for part in _FREEZABLE if part in parts]


class LMResampler:
    """Codes a language model would make, aligned with real audio, for training a decoder.

    For each training item, with probability ``p``: the encoder's codes ``[K, T]`` go through ``lm``
    teacher-forced and unconditioned (the null condition that classifier-free guidance also uses),
    and every position in codebooks ``first_codebook`` (counted from 0) and up is replaced, with
    probability ``rate``, by a sample of the LM's prediction there (``top_k``, ``temperature``). The
    last frames of the delayed codebooks are predicted too, as at the end of a generation. All
    positions are sampled in one pass, each given the *real* codes before it (the coarser codebooks
    of its frame included): the result is what the LM finds likely at each step, without the drift
    of free generation, but a sampled fine code may not refine the sampled coarse code it is decoded
    with. The decoder is then trained to render the original audio from these codes. The codes of
    the other items, and evaluation, are unchanged.
    """

    OPTIONS = ("lm", "p", "first_codebook", "rate", "top_k", "temperature")

    def __init__(self, lm: nn.Module, p: float, first_codebook: int = 0, rate: float = 1.0,
                 top_k: int = 250, temperature: float = 1.0) -> None:
        for name, value in (("p", p), ("rate", rate)):
            if not 0 < value <= 1:
                raise ValueError(f"lm_resample.{name}={value} must lie in (0, 1].")
        if not 0 <= first_codebook < lm.n_q:
            raise ValueError(f"lm_resample.first_codebook={first_codebook}: the LM has {lm.n_q} codebooks "
                             f"(0 to {lm.n_q - 1}).")
        if top_k < 1 or temperature <= 0:
            raise ValueError(f"lm_resample: top_k={top_k} must be >= 1 and temperature={temperature} > 0.")
        if lm.condition_provider.wav_conditions:
            raise ValueError(f"lm_resample.lm has waveform conditions {lm.condition_provider.wav_conditions} "
                             "(a melody model): use a text-only LM over the same codec.")
        self.lm = lm.eval().requires_grad_(False)
        self.p, self.first_codebook, self.rate = float(p), int(first_codebook), float(rate)
        self.top_k, self.temperature = int(top_k), float(temperature)
        self._null: dict[int, Any] = {}  # null condition tensors by batch size
        self._null_conditions(1)  # a text encoder that cannot load fails now, not at the first step

    @classmethod
    def from_config(cls, cfg: Any, frozen: list[str], codec: CompressionModel,
                    device: torch.device) -> LMResampler | None:
        """The resampler of the ``lm_resample`` option group, or None when the group is absent or ``p=0``."""
        options = dict(cfg or {})
        unknown = set(options) - set(cls.OPTIONS)
        if unknown:
            raise ValueError(f"lm_resample: unknown option(s) {sorted(unknown)}; use {', '.join(cls.OPTIONS)}.")
        if not options:
            return None
        if not options.get("lm") or "p" not in options:
            raise ValueError(f"lm_resample needs both `lm` (the LM to sample from) and `p` (the share of items), "
                             f"got {sorted(options)}; e.g. +lm_resample.lm=//pretrained/default +lm_resample.p=0.5.")
        if float(options["p"]) == 0:
            return None  # switched off
        if not {"encoder", "quantizer"} <= set(frozen):
            raise ValueError("lm_resample trains the decoder on an LM's codes, which stay valid only if the codes "
                             "do not change: add +freeze=[encoder,quantizer].")
        lm = _load_lm(str(options.pop("lm")), device)
        if (lm.n_q, lm.card) != (codec.num_codebooks, codec.cardinality):
            raise ValueError(f"lm_resample.lm models {lm.n_q} codebooks of {lm.card} codes, the codec makes "
                             f"{codec.num_codebooks} of {codec.cardinality}: use an LM trained on this codec's codes.")
        return cls(lm, **options)

    def describe(self) -> str:
        return (f"p={self.p}, first_codebook={self.first_codebook}, rate={self.rate}, top_k={self.top_k}, "
                f"temperature={self.temperature}")

    def _null_conditions(self, n: int) -> Any:
        if n not in self._null:
            provider = self.lm.condition_provider
            null = [ConditioningAttributes(text={name: None for name in provider.text_conditions}) for _ in range(n)]
            self._null[n] = provider(provider.tokenize(null))
        return self._null[n]

    @torch.no_grad()
    def resample(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes ``[B, K, T]`` -> codes of the same shape, resampled as the class docstring says."""
        items = (torch.rand(codes.shape[0], generator=generator) < self.p).to(codes.device)
        if not items.any():
            return codes
        chosen = codes[items]
        out = self.lm.compute_predictions(chosen, [], condition_tensors=self._null_conditions(chosen.shape[0]),
                                          keep_only_valid_steps=False)
        # Positions the pattern does not predict are NaN; they are never replaced (``out.mask``).
        logits = torch.nan_to_num(out.logits.float(), nan=0.0).cpu()  # [n, K, T, V]; the generator is on CPU
        sampled = sample_token(logits, use_sampling=True, temp=self.temperature, top_k=self.top_k, top_p=0.0,
                               generator=generator)[..., 0].to(codes.device)
        replace = out.mask & (torch.rand(chosen.shape, generator=generator) < self.rate).to(codes.device)
        replace[:, :self.first_codebook] = False
        codes = codes.clone()
        codes[items] = torch.where(replace, sampled, chosen)
        return codes

    def reconstruct(self, model: EncodecModel, x: torch.Tensor,
                    generator: torch.Generator | None = None) -> QuantizedResult:
        """``model(x)`` with the codes resampled before decoding (:meth:`EncodecModel.forward`'s
        ``transform_codes``); the encoder and quantizer must be frozen and in eval mode."""
        if model.encoder.training or model.quantizer.training:
            raise ValueError("LMResampler.reconstruct: the encoder and quantizer must be in eval mode (frozen); "
                             "in training mode the quantizer would update its codebooks.")
        return model(x, transform_codes=lambda codes: self.resample(codes, generator))


def _load_lm(name: str, device: torch.device) -> nn.Module:
    """An LM in AudioCraft's released format: ``//pretrained/<name>``, a folder or a ``state_dict.bin``."""
    from ..models.loaders import load_lm_model

    if name.startswith(checkpoint.PRETRAINED_PREFIX):
        name = resolve_pretrained_name(name[len(checkpoint.PRETRAINED_PREFIX):])
    return load_lm_model(name, device=device)


def _average_gradients(module: nn.Module) -> None:
    distributed.average_gradients(module.parameters())


def _grad_norm(model: nn.Module) -> torch.Tensor:
    norms = [p.grad.detach().norm(2).pow(2) for p in model.parameters() if p.grad is not None]
    return torch.stack(norms).sum().sqrt() if norms else torch.zeros(())


# ============================================================================ export

def _best_model_state(source: str) -> tuple[DictConfig, dict]:
    """(config, model state dict) of the best state of a training checkpoint or exported file."""
    path, package, cfg = checkpoint.load_run_checkpoint(source)
    return cfg, checkpoint.best_model_state(package, path)


def export_compression(xp_or_checkpoint_path: str | os.PathLike, out_path: str | os.PathLike,
                       overwrite: bool = False, half: bool = False) -> Path:
    """Write a trained compression model in AudioCraft's released format.

    The file is ``{'best_state': <model state dict>, 'xp.cfg': <YAML config>, 'version': ...,
    'exported': True}``; ``CompressionModel.get_pretrained(<file or its folder>)`` loads it.

    Args:
        xp_or_checkpoint_path: ``//sig/<signature>``, an experiment folder, or a checkpoint file.
            The best state is exported (the EMA weights when ``optim.ema.use``).
        out_path: output file, or an existing folder (then ``<folder>/compression_state_dict.bin``).
        overwrite: replace an existing output file.
        half: store the weights in float16 (see :func:`audiocraft.models.export.export_compression`).
    Returns:
        The path written.
    Raises:
        FileNotFoundError: no checkpoint found at ``xp_or_checkpoint_path``.
        FileExistsError: the output exists and ``overwrite`` is False.
    """
    from ..models import export
    from ..models.loaders import COMPRESSION_CHECKPOINT

    cfg, state = _best_model_state(str(xp_or_checkpoint_path))
    model = model_builders.get_compression_model(cfg)
    model.load_state_dict(state)
    out = Path(out_path).expanduser()
    if out.is_dir():
        out = out / COMPRESSION_CHECKPOINT
    path = export.export_compression(model, cfg, out, overwrite=overwrite, half=half)
    logger.info("Exported compression model to %s", path)
    return path
