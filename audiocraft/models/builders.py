"""Where configs meet constructors: one function per component.

Configs use AudioCraft's ``xp.cfg`` layout (the YAML stored in released checkpoints):
names such as ``n_q``, ``bins`` or ``n_filters`` are translated here, once, into the
spelled-out constructor arguments of this package. Unknown keys are errors.

Compression part: :func:`get_compression_model` and its helpers :func:`get_encodec_autoencoder`,
:func:`get_quantizer`, :func:`get_wrapped_compression_model`, :func:`get_debug_compression_model`.
Language-model part: :func:`get_lm_model` and its helpers :func:`get_codebooks_pattern_provider`,
:func:`get_condition_fuser`, :func:`get_conditioner_provider`, :func:`get_debug_lm_model`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from torch import nn

from .. import quantization as qt
from ..modules.codebooks_patterns import (CodebooksPatternProvider, CoarseFirstPattern, DelayedPatternProvider,
                                          MusicLMPattern, ParallelPatternProvider, UnrolledPatternProvider)
from ..modules.conditioners import (ChromaStemConditioner, ConditionFuser, ConditioningProvider, LUTConditioner,
                                    SentenceEmbeddingConditioner, T5Conditioner)
from ..modules.conditioners.provider import FUSE_METHODS
from ..modules.seanet import SEANetDecoder, SEANetEncoder
from .encodec import CompressionModel, EncodecModel, InterleaveStereoCompressionModel
from .lm import LMModel

# ============================================================================ config helpers

ConfigLike = Mapping[str, Any] | DictConfig


def _as_dict(cfg: ConfigLike | None, what: str) -> dict:
    """Plain, resolved ``dict`` copy of a config section (``None`` -> ``{}``)."""
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return dict(OmegaConf.to_container(cfg, resolve=True))
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(f"`{what}` must be a mapping (dict or OmegaConf DictConfig), got {type(cfg).__name__}.")


def _section(cfg: dict, key: str, owner: str) -> dict:
    if key not in cfg:
        raise ValueError(f"The config has no `{key}` section, needed to build the {owner}; "
                         f"top-level keys are {sorted(cfg)[:20]}.")
    return _as_dict(cfg[key], key)


def _translate(section: Mapping[str, Any], names: Mapping[str, str], where: str) -> dict:
    """Rename the keys of ``section`` with ``names`` (config name -> argument name); unknown keys fail."""
    unknown = sorted(set(section) - set(names))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in config section `{where}`; known keys: {sorted(names)}.")
    return {names[key]: value for key, value in section.items()}


# ============================================================================ compression model

KNOWN_COMPRESSION_MODELS = ("encodec",)
KNOWN_AUTOENCODERS = ("seanet",)
KNOWN_QUANTIZERS = ("rvq", "no_quant")

# `seanet:` keys shared by encoder and decoder -> SEANetEncoder/SEANetDecoder arguments.
_SEANET_NAMES = {
    "channels": "channels", "dimension": "dimension", "n_filters": "num_filters",
    "n_residual_layers": "num_residual_layers", "ratios": "ratios", "activation": "activation",
    "activation_params": "activation_params", "norm": "norm", "norm_params": "norm_params",
    "kernel_size": "kernel_size", "last_kernel_size": "last_kernel_size",
    "residual_kernel_size": "residual_kernel_size", "dilation_base": "dilation_base", "causal": "causal",
    "pad_mode": "pad_mode", "true_skip": "true_skip", "compress": "compress", "lstm": "lstm_layers",
    "disable_norm_outer_blocks": "disable_norm_outer_blocks",
}
_SEANET_DECODER_ONLY = {
    "trim_right_ratio": "trim_right_ratio", "final_activation": "final_activation",
    "final_activation_params": "final_activation_params",
}
# `rvq:` keys -> ResidualVectorQuantizer arguments.
_RVQ_NAMES = {
    "n_q": "num_codebooks", "q_dropout": "quantizer_dropout", "bins": "codebook_size", "decay": "decay",
    "kmeans_init": "kmeans_init", "kmeans_iters": "kmeans_iters",
    "threshold_ema_dead_code": "threshold_ema_dead_code", "orthogonal_reg_weight": "orthogonal_reg_weight",
    "orthogonal_reg_active_codes_only": "orthogonal_reg_active_codes_only",
    "orthogonal_reg_max_codes": "orthogonal_reg_max_codes",
}
# `encodec:` keys (``renorm`` is a deprecated spelling AudioCraft ignores).
_ENCODEC_KEYS = ("autoencoder", "quantizer", "sample_rate", "channels", "causal", "renormalize", "renorm")


def get_quantizer(kind: str, cfg: ConfigLike, dimension: int) -> qt.BaseQuantizer:
    """Build the quantizer ``kind`` ('rvq' or 'no_quant') from section ``cfg[kind]``, for latents of size ``dimension``."""
    cfg = _as_dict(cfg, "cfg")
    if kind == "rvq":
        args = _translate(_section(cfg, "rvq", "quantizer"), _RVQ_NAMES, "rvq")
        return qt.ResidualVectorQuantizer(dimension=dimension, **args)
    if kind == "no_quant":
        return qt.DummyQuantizer()
    raise ValueError(f"Unknown quantizer {kind!r} (`encodec.quantizer`); known quantizers: {list(KNOWN_QUANTIZERS)}.")


def get_encodec_autoencoder(kind: str, cfg: ConfigLike) -> tuple[SEANetEncoder, SEANetDecoder]:
    """Build the ``(encoder, decoder)`` pair ``kind`` (only 'seanet') from section ``cfg[kind]``.

    ``seanet.encoder`` and ``seanet.decoder`` hold per-side overrides of the shared keys.
    """
    cfg = _as_dict(cfg, "cfg")
    if kind != "seanet":
        raise ValueError(f"Unknown auto-encoder {kind!r} (`encodec.autoencoder`); "
                         f"known auto-encoders: {list(KNOWN_AUTOENCODERS)}.")
    seanet = _section(cfg, "seanet", "SEANet auto-encoder")
    encoder_overrides = _as_dict(seanet.pop("encoder", None), "seanet.encoder")
    decoder_overrides = _as_dict(seanet.pop("decoder", None), "seanet.decoder")
    shared = _translate(seanet, _SEANET_NAMES, "seanet")
    encoder_args = {**shared, **_translate(encoder_overrides, _SEANET_NAMES, "seanet.encoder")}
    decoder_args = {**shared, **_translate(decoder_overrides, {**_SEANET_NAMES, **_SEANET_DECODER_ONLY},
                                           "seanet.decoder")}
    return SEANetEncoder(**encoder_args), SEANetDecoder(**decoder_args)


def get_compression_model(cfg: ConfigLike) -> CompressionModel:
    """Build a compression model from an AudioCraft-style config (``xp.cfg`` layout).

    Reads ``compression_model`` ('encodec'), ``encodec: {autoencoder, quantizer, sample_rate,
    channels, causal, renormalize}`` and the sections those name (``seanet``, ``rvq``).
    The model is built on CPU with random weights (and un-initialised codebooks); move it
    with ``.to(device)`` and load weights with :mod:`audiocraft.models.loaders`.
    """
    cfg = _as_dict(cfg, "cfg")
    kind = cfg.get("compression_model")
    if kind != "encodec":
        raise ValueError(f"Unknown compression model {kind!r} (`compression_model`); "
                         f"known compression models: {list(KNOWN_COMPRESSION_MODELS)}.")
    encodec = _section(cfg, "encodec", "EnCodec model")
    unknown = sorted(set(encodec) - set(_ENCODEC_KEYS))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in config section `encodec`; known keys: {list(_ENCODEC_KEYS)}.")
    missing = [key for key in ("autoencoder", "quantizer", "sample_rate", "channels") if key not in encodec]
    if missing:
        raise ValueError(f"Config section `encodec` lacks {missing}.")
    encoder, decoder = get_encodec_autoencoder(encodec["autoencoder"], cfg)
    if encoder.channels != encodec["channels"] or decoder.channels != encodec["channels"]:
        raise ValueError(f"`encodec.channels`={encodec['channels']} but the auto-encoder is built for "
                         f"{encoder.channels} channels (`seanet.channels`); make them equal.")
    quantizer = get_quantizer(encodec["quantizer"], cfg, encoder.dimension)
    sample_rate = int(encodec["sample_rate"])
    return EncodecModel(encoder, decoder, quantizer,
                        frame_rate=sample_rate / encoder.hop_length,
                        sample_rate=sample_rate,
                        channels=int(encodec["channels"]),
                        causal=bool(encodec.get("causal", False)),
                        renormalize=bool(encodec.get("renormalize", False)))


def get_wrapped_compression_model(model: CompressionModel, cfg: ConfigLike) -> CompressionModel:
    """Apply the LM config's compression options to ``model``.

    ``interleave_stereo_codebooks: {use, per_timestep}`` wraps it in
    :class:`InterleaveStereoCompressionModel`; ``compression_model_n_q`` (if not null)
    sets the number of codebooks (per channel for stereo).
    """
    cfg = _as_dict(cfg, "cfg")
    stereo = _as_dict(cfg.get("interleave_stereo_codebooks"), "interleave_stereo_codebooks")
    unknown = sorted(set(stereo) - {"use", "per_timestep"})
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in `interleave_stereo_codebooks`; known: ['per_timestep', 'use'].")
    if stereo.get("use", False):
        model = InterleaveStereoCompressionModel(model, per_timestep=bool(stereo.get("per_timestep", False)))
    if cfg.get("compression_model_n_q") is not None:
        model.set_num_codebooks(int(cfg["compression_model_n_q"]))
    return model


def get_debug_compression_model(device: torch.device | str = "cpu", sample_rate: int = 32000) -> EncodecModel:
    """A tiny random EnCodec (25 Hz, 4 codebooks of 400, latent 32) for tests, in eval mode.

    Codebooks are initialised by k-means on seeded random latents.
    """
    ratios = {16000: [10, 8, 8], 32000: [10, 8, 16]}.get(sample_rate)
    if ratios is None:
        raise ValueError(f"`sample_rate` must be 16000 or 32000 for the debug compression model, got {sample_rate}.")
    seanet = dict(num_filters=4, num_residual_layers=1, dimension=32, ratios=ratios)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same debug model in every process
        encoder, decoder = SEANetEncoder(**seanet), SEANetDecoder(**seanet)
        quantizer = qt.ResidualVectorQuantizer(dimension=32, num_codebooks=4, codebook_size=400, kmeans_iters=10)
        quantizer(torch.randn(8, 32, 128), 1.0)  # k-means initialisation
    model = EncodecModel(encoder, decoder, quantizer, frame_rate=sample_rate / encoder.hop_length,
                         sample_rate=sample_rate, channels=1)
    return model.to(device).eval()


# ============================================================================ language model

# Options refused unless they have the value released models use (not silently ignored).
_UNSUPPORTED_LM_OPTIONS = {"xpos": False, "qk_layer_norm": False, "qk_layer_norm_cross": False, "kv_repeat": 1}
# Options that only pick an implementation or a training trick; the model computes the same function.
_IGNORED_LM_OPTIONS = ("custom", "memory_efficient", "attention_as_float32", "checkpointing", "q_modeling",
                       "two_step_cfg", "spectral_norm_attn_iters", "spectral_norm_ff_iters")
# `transformer_lm:` keys passed to the transformer layers.
_TRANSFORMER_OPTIONS = ("causal", "cross_attention", "activation", "bias_ff", "bias_attn", "dropout", "layer_scale",
                        "positional_embedding", "max_period", "positional_scale", "past_context", "attention_dropout")
# `transformer_lm:` keys passed to LMModel itself.
_LM_OPTIONS = ("n_q", "card", "dim", "num_heads", "num_layers", "hidden_scale", "norm", "norm_first", "emb_lr",
               "bias_proj", "weight_init", "depthwise_init", "zero_bias_init")

_PATTERN_PROVIDERS = {
    "parallel": ParallelPatternProvider,
    "delay": DelayedPatternProvider,
    "unroll": UnrolledPatternProvider,
    "coarse_first": CoarseFirstPattern,
    "music_lm": MusicLMPattern,
}


def get_codebooks_pattern_provider(n_q: int, cfg: ConfigLike) -> CodebooksPatternProvider:
    """The pattern named by ``cfg['modeling']`` with the options of its own sub-section."""
    cfg = _as_dict(cfg, "codebooks_pattern")
    name = cfg.get("modeling")
    if name not in _PATTERN_PROVIDERS:
        raise ValueError(f"Unknown codebooks_pattern.modeling {name!r}; known: {sorted(_PATTERN_PROVIDERS)}.")
    options = {} if name == "parallel" else _as_dict(cfg.get(name), f"codebooks_pattern.{name}")
    return _PATTERN_PROVIDERS[name](n_q, **options)


def get_condition_fuser(cfg: ConfigLike) -> ConditionFuser:
    """The fuser of the ``fuser:`` section: ``{sum, prepend, cross, input_interpolate: [names]}`` + options."""
    fuser = _as_dict(cfg, "fuser")
    methods = {key: list(fuser.pop(key) or []) for key in FUSE_METHODS if key in fuser}
    options = _translate(fuser, {"cross_attention_pos_emb": "cross_attention_pos_emb",
                                 "cross_attention_pos_emb_scale": "cross_attention_pos_emb_scale"}, "fuser")
    return ConditionFuser(methods, **options)


def get_conditioner(name: str, entry: ConfigLike, output_dim: int, segment_duration: float,
                    device: str = "cpu") -> nn.Module:
    """One conditioner from its ``conditioners.<name>`` entry: ``{model: <kind>, <kind>: {options}}``."""
    entry = _as_dict(entry, f"conditioners.{name}")
    kind = entry.get("model")
    options = _as_dict(entry.get(kind), f"conditioners.{name}.{kind}")
    if kind == "t5":
        return T5Conditioner(output_dim=output_dim, device=device, **options)
    if kind == "lut":
        return LUTConditioner(output_dim=output_dim, **options)
    if kind == "sentence_embedding":
        return SentenceEmbeddingConditioner(output_dim=output_dim, device=device, **options)
    if kind == "chroma_stem":
        options.pop("cache_path", None)
        return ChromaStemConditioner(output_dim=output_dim, duration=segment_duration, device=device, **options)
    raise ValueError(f"conditioners.{name}: unknown model {kind!r}; known: chroma_stem, lut, sentence_embedding, t5.")


def get_conditioner_provider(output_dim: int, cfg: ConfigLike) -> ConditioningProvider:
    """All conditioners of the ``conditioners:`` section of a full LM config."""
    cfg = _as_dict(cfg, "cfg")
    entries = _as_dict(cfg.get("conditioners"), "conditioners")
    entries.pop("args", None)  # data augmentation options, used by the dataset
    segment_duration = float(_as_dict(cfg.get("dataset"), "dataset").get("segment_duration") or 30.0)
    device = str(cfg.get("device", "cpu"))
    return ConditioningProvider({
        str(name): get_conditioner(str(name), entry, output_dim, segment_duration, device)
        for name, entry in entries.items()})


def get_lm_model(cfg: ConfigLike) -> LMModel:
    """The language model of a full config in AudioCraft's layout (``lm_model: transformer_lm``).

    Reads ``transformer_lm``, ``codebooks_pattern``, ``conditioners``, ``fuser``,
    ``classifier_free_guidance``, ``attribute_dropout``, ``dataset.segment_duration``,
    ``device`` and ``dtype``.
    """
    cfg = _as_dict(cfg, "cfg")
    if cfg.get("lm_model", "transformer_lm") != "transformer_lm":
        raise ValueError(f"Unknown lm_model {cfg['lm_model']!r}; only 'transformer_lm' is supported.")
    options = _section(cfg, "transformer_lm", "language model")
    for key, expected in _UNSUPPORTED_LM_OPTIONS.items():
        if key in options and options.pop(key) != expected:
            raise ValueError(f"transformer_lm.{key} is not supported (released MusicGen/AudioGen use {expected!r}).")
    two_step_cfg = bool(options.get("two_step_cfg", False))
    for key in _IGNORED_LM_OPTIONS:
        options.pop(key, None)
    transformer_kwargs = {key: options.pop(key) for key in _TRANSFORMER_OPTIONS if key in options}
    unknown = sorted(set(options) - set(_LM_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in config section `transformer_lm`.")
    fuser = get_condition_fuser(cfg.get("fuser") or {})
    if fuser.fuse2cond["cross"]:
        transformer_kwargs["cross_attention"] = True  # as AudioCraft: cross-attention follows the fuser
    condition_provider = get_conditioner_provider(options["dim"], cfg)
    pattern_provider = get_codebooks_pattern_provider(options["n_q"], _section(cfg, "codebooks_pattern", "LM"))
    guidance = _as_dict(cfg.get("classifier_free_guidance"), "classifier_free_guidance")
    device = str(cfg.get("device", "cpu"))
    dtype = getattr(torch, str(cfg.get("dtype", "float32")))
    factory = {"device": "meta"} if device == "meta" else {}
    model = LMModel(pattern_provider=pattern_provider, condition_provider=condition_provider, fuser=fuser,
                    cfg_dropout=float(guidance.get("training_dropout", 0.0)),
                    cfg_coef=float(guidance.get("inference_coef", 3.0)),
                    attribute_dropout=_as_dict(cfg.get("attribute_dropout"), "attribute_dropout"),
                    two_step_cfg=two_step_cfg, transformer_kwargs=transformer_kwargs, **options, **factory)
    return model if device == "meta" else model.to(device=device, dtype=dtype)


def get_debug_lm_model(device: torch.device | str = "cpu", card: int = 400, n_q: int = 4) -> LMModel:
    """A tiny random LM for tests, matching :func:`get_debug_compression_model` (4 codebooks of 400).

    Conditioned on a ``description`` through a lookup table (works offline).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same debug model in every process
        provider = ConditioningProvider({"description": LUTConditioner(n_bins=128, dim=16, output_dim=16)})
        fuser = ConditionFuser({"cross": ["description"]})
        model = LMModel(DelayedPatternProvider(n_q), provider, fuser, n_q=n_q, card=card, dim=16, num_heads=2,
                        num_layers=2, hidden_scale=2, norm_first=True, bias_proj=False, weight_init="gaussian",
                        cfg_coef=3.0, transformer_kwargs={"causal": True, "cross_attention": True,
                                                          "activation": "gelu", "bias_ff": False, "bias_attn": False})
    return model.to(device).eval()
