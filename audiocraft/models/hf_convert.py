"""Loading MusicGen checkpoints saved by Hugging Face ``transformers``.

A folder written by ``MusicgenForConditionalGeneration.save_pretrained(folder)`` holds
``config.json`` (three sub-configs: ``text_encoder`` (T5), ``audio_encoder`` (EnCodec),
``decoder``), ``model.safetensors`` (or shards listed in ``model.safetensors.index.json``)
and usually ``generation_config.json`` and a tokenizer. :func:`load_transformers_musicgen`
turns it into this package's objects: an :class:`~audiocraft.models.lm.LMModel` with
AudioCraft's parameter names, its AudioCraft-style config, and an
:class:`~audiocraft.models.encodec.HFEncodecCompressionModel`.

How transformers' MusicGen decoder relates to AudioCraft's LM (checked against
transformers 5.x ``modeling_musicgen.py``; the tests compare logits and greedy tokens):

- Same block: pre-norm (``self_attn_layer_norm`` -> ``norm1``, ``encoder_attn_layer_norm``
  -> ``norm_cross``, ``final_layer_norm`` -> ``norm2``), final ``layer_norm`` -> ``out_norm``,
  no biases in attention and feed-forward, exact (erf) GELU, LayerNorm eps 1e-5, attention
  scaled by ``head_dim ** -0.5``. ``q_proj``/``k_proj``/``v_proj`` rows are stacked into the
  packed ``in_proj_weight`` (q, k, v order); ``fc1``/``fc2`` -> ``linear1``/``linear2``.
- Same positions: sinusoids with the cosines in the first half of the channels, frequencies
  ``10000 ** (-i / (D/2 - 1))``, position 0 on the first step, no offset. transformers
  computes them with ``exp`` instead of ``pow`` (differences ~1e-7). ``scale_embedding`` is
  stored in the config but not applied by transformers' forward pass, so it is ignored.
- Same token layout: the decoder input at step ``s`` is AudioCraft's delayed pattern
  sequence (step 0 is the special token ``vocab_size``; codebook ``k`` of frame ``t`` sits at
  step ``t + delay_k + 1``), and logits at step ``s`` predict step ``s + 1`` in both.
  Stereo models interleave left/right codebooks (``L0, R0, L1, R1, ...``) with delays
  ``[0, 0, 1, 1, ...]`` in both.
- Same text path: T5 features -> ``enc_to_dec_proj`` (AudioCraft's ``output_proj``; absent
  when the widths match, then an identity projection is used) -> multiplied by the mask.
- One difference: transformers also masks padded text tokens inside cross-attention,
  AudioCraft does not (their zeroed keys still take softmax weight). The converted LM follows
  AudioCraft, so its logits equal transformers' when the texts of a batch have the same
  token length, and for the null (unconditional) condition, but not for padded items.

The T5 conditioner of the config is named after the text encoder's ``_name_or_path`` (for the
released models 't5-base'), which is how AudioCraft's format finds T5 again after an export; an
unnamed text encoder gets the name '' (usable in memory, refused by the exporter). The
tokenizer comes from the folder when one was saved there, else from that name.

MusicGen-Melody checkpoints (``model_type: musicgen_melody``) are refused with
``NotImplementedError``: use AudioCraft's own release of the melody models instead.
Memory: the decoder is built on the meta device and takes the checkpoint's tensors, so the peak
is about 1.5 times the checkpoint size (the packed q/k/v projections are new tensors).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
MUSICGEN_MODEL_TYPES = ("musicgen", "musicgen_melody")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")
# Prefixes of the weights of the three parts inside the checkpoint.
_DECODER = "decoder.model.decoder."
_HEADS = "decoder.lm_heads."
_PROJ = "enc_to_dec_proj."
_TEXT = "text_encoder."
_AUDIO = "audio_encoder."
# Deterministic buffers some older checkpoints contain; they are recomputed, not loaded.
_IGNORED_SUFFIXES = ("embed_positions.weights",)
_DESCRIPTION = "description"
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}


# ============================================================================ reading the folder

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON ({exc}); re-save the model with save_pretrained().") from exc


def is_transformers_musicgen_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder whose ``config.json`` has ``model_type`` 'musicgen' or 'musicgen_melody'."""
    config = Path(path).expanduser() / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in MUSICGEN_MODEL_TYPES
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def read_safetensors_folder(folder: str | os.PathLike) -> Dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` in ``folder``, or of the shards its index lists.

    Raises:
        FileNotFoundError: neither file exists (e.g. the model was saved as ``pytorch_model.bin``),
            or a shard named in the index is missing.
    """
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    single = folder / SAFETENSORS_NAME
    index = folder / SAFETENSORS_INDEX_NAME
    if single.is_file():
        return load_file(str(single), device="cpu")
    if not index.is_file():
        present = sorted(p.name for p in folder.iterdir())[:10] if folder.is_dir() else []
        raise FileNotFoundError(
            f"Folder {str(folder)!r} has neither {SAFETENSORS_NAME!r} nor {SAFETENSORS_INDEX_NAME!r} (it contains "
            f"{present}). Re-save the transformers model with `model.save_pretrained(folder)` (safetensors is the "
            "default format).")
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{str(index)!r} has no 'weight_map'; re-save the model with save_pretrained().")
    tensors: Dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = folder / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"Shard {shard!r} listed in {str(index)!r} is missing; download the whole folder.")
        tensors.update(load_file(str(shard_path), device="cpu"))
    return tensors


# ============================================================================ config

def _decoder_delays(num_codebooks: int, audio_channels: int) -> List[int]:
    if audio_channels == 1:
        return list(range(num_codebooks))
    if num_codebooks % 2:
        raise ValueError(f"A stereo decoder (audio_channels=2) needs an even num_codebooks (left/right pairs), "
                         f"got {num_codebooks}.")
    return [k // 2 for k in range(num_codebooks)]


def _frame_rate(audio_config: Mapping[str, Any]) -> float:
    return float(audio_config["sampling_rate"]) / math.prod(int(r) for r in audio_config["upsampling_ratios"])


def transformers_config_to_xp_cfg(config: Mapping[str, Any],
                                  generation_config: Optional[Mapping[str, Any]] = None) -> DictConfig:
    """AudioCraft-style LM config (``xp.cfg`` layout) equivalent to a transformers MusicGen ``config.json``.

    Args:
        config: the parsed ``config.json`` (``model_type`` 'musicgen').
        generation_config: the parsed ``generation_config.json``, if any: ``guidance_scale`` gives
            ``classifier_free_guidance.inference_coef`` (default 3.0) and ``max_length`` (in decoder
            steps) gives ``dataset.segment_duration = max_length / frame_rate`` (default 30 seconds).
    Returns:
        A config accepted by :func:`audiocraft.models.builders.get_lm_model` (and by AudioCraft's).
    Raises:
        NotImplementedError: melody checkpoints, or a decoder option AudioCraft's LM cannot express.
        ValueError: an inconsistent config.
    """
    model_type = config.get("model_type")
    if model_type == "musicgen_melody":
        raise NotImplementedError(
            "transformers MusicGen-Melody checkpoints (model_type 'musicgen_melody') are not supported: their "
            "chroma and text conditions are prepended with transformers-specific projections that have no exact "
            "AudioCraft counterpart here. Load AudioCraft's own release instead, e.g. "
            "MusicGen.get_pretrained('facebook/musicgen-melody').")
    if model_type != "musicgen":
        raise ValueError(f"`config` must be a transformers MusicGen config (model_type 'musicgen'), got "
                         f"model_type {model_type!r}.")
    missing = [key for key in ("text_encoder", "audio_encoder", "decoder") if not isinstance(config.get(key), Mapping)]
    if missing:
        raise ValueError(f"The MusicGen config lacks the sub-config(s) {missing}; re-save the model with "
                         "save_pretrained().")
    decoder, audio, text = config["decoder"], config["audio_encoder"], config["text_encoder"]
    generation_config = dict(generation_config or {})

    dim = int(decoder["hidden_size"])
    num_heads = int(decoder["num_attention_heads"])
    num_codebooks = int(decoder["num_codebooks"])
    card = int(decoder["vocab_size"])
    channels = int(decoder.get("audio_channels", 1))
    if dim % num_heads:
        raise ValueError(f"decoder.hidden_size ({dim}) must be divisible by decoder.num_attention_heads ({num_heads}).")
    ffn_dim = int(decoder["ffn_dim"])
    hidden_scale: float | int = ffn_dim // dim if ffn_dim % dim == 0 else ffn_dim / dim
    if int(hidden_scale * dim) != ffn_dim:
        raise NotImplementedError(f"decoder.ffn_dim={ffn_dim} is not a multiple of hidden_size={dim} that "
                                  "AudioCraft's `hidden_scale` can express.")
    activation = decoder.get("activation_function", "gelu")
    if activation not in _ACTIVATIONS:
        raise NotImplementedError(f"decoder.activation_function {activation!r} has no AudioCraft counterpart; "
                                  f"supported: {sorted(_ACTIVATIONS)}.")
    for key in ("pad_token_id", "bos_token_id"):
        value = decoder.get(key, card)
        if value is not None and int(value) != card:
            raise NotImplementedError(
                f"decoder.{key}={value}, but AudioCraft's LM always uses the extra embedding row {card} "
                f"(= vocab_size) as its start/padding token; this checkpoint follows another convention.")
    if channels not in (1, 2):
        raise ValueError(f"decoder.audio_channels must be 1 or 2, got {channels}.")
    if int(audio.get("audio_channels", 1)) != 1:
        raise NotImplementedError("Only mono EnCodec audio encoders are supported (stereo MusicGen encodes each "
                                  "channel with a mono codec), got audio_encoder.audio_channels="
                                  f"{audio['audio_channels']}.")
    text_name = str(text.get("_name_or_path") or "")
    if text.get("model_type", "t5") != "t5":
        raise NotImplementedError(f"Only T5 text encoders are supported, got text_encoder.model_type "
                                  f"{text.get('model_type')!r}.")

    frame_rate = _frame_rate(audio)
    max_length = generation_config.get("max_length")
    segment_duration = float(max_length) / frame_rate if max_length else 30.0
    guidance = generation_config.get("guidance_scale")
    inference_coef = float(guidance) if guidance is not None else 3.0
    audio_name = str(audio.get("_name_or_path") or "")

    cfg = {
        "solver": "musicgen",
        "device": "cpu",
        "dtype": "float32",
        "autocast": False,
        "sample_rate": int(audio["sampling_rate"]),
        "channels": channels,
        "compression_model_checkpoint": f"//pretrained/{audio_name}" if audio_name else None,
        "compression_model_n_q": None,
        "interleave_stereo_codebooks": {"use": channels == 2, "per_timestep": False},
        "tokens": {"padding_with_special_token": False},
        "dataset": {"segment_duration": segment_duration},
        "lm_model": "transformer_lm",
        "codebooks_pattern": {
            "modeling": "delay",
            "delay": {"delays": _decoder_delays(num_codebooks, channels), "flatten_first": 0, "empty_initial": 0},
        },
        "transformer_lm": {
            "dim": dim, "num_heads": num_heads, "num_layers": int(decoder["num_hidden_layers"]),
            "hidden_scale": hidden_scale, "n_q": num_codebooks, "card": card, "dropout": 0.0, "emb_lr": None,
            "activation": _ACTIVATIONS[activation], "norm_first": True, "bias_ff": False, "bias_attn": False,
            "bias_proj": False, "past_context": None, "causal": True, "custom": False, "memory_efficient": True,
            "attention_as_float32": False, "layer_scale": None, "positional_embedding": "sin", "xpos": False,
            "checkpointing": "none", "weight_init": "gaussian", "depthwise_init": "current", "zero_bias_init": True,
            "norm": "layer_norm", "cross_attention": False, "qk_layer_norm": False, "qk_layer_norm_cross": False,
            "attention_dropout": None, "kv_repeat": 1, "two_step_cfg": False,
        },
        "classifier_free_guidance": {"training_dropout": 0.3, "inference_coef": inference_coef},
        "attribute_dropout": {},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
                  "cross": [_DESCRIPTION], "input_interpolate": []},
        "conditioners": {
            _DESCRIPTION: {"model": "t5", "t5": {"name": text_name, "finetune": False,
                                                  "word_dropout": 0.3, "normalize_text": False}},
        },
    }
    return OmegaConf.create(cfg)


# ============================================================================ weights

def _take(state: Dict[str, torch.Tensor], used: set, name: str) -> torch.Tensor:
    if name not in state:
        raise ValueError(f"The transformers checkpoint lacks the weight {name!r} required by its config; the "
                         "safetensors file does not match config.json (incomplete download or edited config).")
    used.add(name)
    return state[name]


def convert_decoder_state_dict(state: Dict[str, torch.Tensor], num_layers: int, num_codebooks: int,
                               text_dim: int, dim: int) -> Tuple[Dict[str, torch.Tensor], set]:
    """Rename transformers' decoder weights to AudioCraft's LM names.

    Args:
        state: the whole checkpoint (``decoder.*``, ``enc_to_dec_proj.*`` ... keys).
        num_layers, num_codebooks: decoder shape from the config.
        text_dim, dim: text-encoder and decoder widths (an identity ``output_proj`` is made when the
            checkpoint has no ``enc_to_dec_proj``, which transformers omits when they are equal).
    Returns:
        ``(lm_state_dict, used)``: the LM state dict and the set of checkpoint keys it consumed.
    """
    used: set = set()
    out: Dict[str, torch.Tensor] = {}
    for k in range(num_codebooks):
        out[f"emb.{k}.weight"] = _take(state, used, f"{_DECODER}embed_tokens.{k}.weight")
        out[f"linears.{k}.weight"] = _take(state, used, f"{_HEADS}{k}.weight")
    pairs = (("self_attn_layer_norm", "norm1"), ("encoder_attn_layer_norm", "norm_cross"),
             ("final_layer_norm", "norm2"))
    for i in range(num_layers):
        src, dst = f"{_DECODER}layers.{i}.", f"transformer.layers.{i}."
        for hf_attn, ac_attn in (("self_attn", "self_attn"), ("encoder_attn", "cross_attention")):
            out[f"{dst}{ac_attn}.in_proj_weight"] = torch.cat(
                [_take(state, used, f"{src}{hf_attn}.{p}_proj.weight") for p in ("q", "k", "v")], dim=0)
            out[f"{dst}{ac_attn}.out_proj.weight"] = _take(state, used, f"{src}{hf_attn}.out_proj.weight")
        for hf_norm, ac_norm in pairs:
            for param in ("weight", "bias"):
                out[f"{dst}{ac_norm}.{param}"] = _take(state, used, f"{src}{hf_norm}.{param}")
        out[f"{dst}linear1.weight"] = _take(state, used, f"{src}fc1.weight")
        out[f"{dst}linear2.weight"] = _take(state, used, f"{src}fc2.weight")
    for param in ("weight", "bias"):
        out[f"out_norm.{param}"] = _take(state, used, f"{_DECODER}layer_norm.{param}")
    proj = f"condition_provider.conditioners.{_DESCRIPTION}.output_proj."
    if f"{_PROJ}weight" in state:
        out[proj + "weight"] = _take(state, used, f"{_PROJ}weight")
        out[proj + "bias"] = _take(state, used, f"{_PROJ}bias")
    elif text_dim == dim:
        out[proj + "weight"] = torch.eye(dim)
        out[proj + "bias"] = torch.zeros(dim)
    else:
        raise ValueError(f"The checkpoint has no 'enc_to_dec_proj' although the text encoder width ({text_dim}) "
                         f"differs from the decoder width ({dim}); the safetensors file does not match config.json.")
    return out, used


def _load_strict(module: nn.Module, state: Dict[str, torch.Tensor], what: str,
                 tied: Optional[Mapping[str, str]] = None, assign: bool = False) -> None:
    """Copy ``state`` into ``module``; any missing, unexpected or reshaped name is a ValueError.

    ``assign``: use the tensors themselves (converted to the module's dtypes) as parameters, for
    modules built on the meta device.
    """
    expected = module.state_dict()
    state = dict(state)
    for target, source in (tied or {}).items():  # tied weights are saved once
        if target in expected and target not in state and source in state:
            state[target] = state[source]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(v.shape)}"
                for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or reshaped:
        problems = [f"{len(items)} {label} (first: {items[:5]})" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("with another shape", reshaped)) if items]
        raise ValueError(f"The {what} weights of the transformers checkpoint do not match its config: "
                         f"{'; '.join(problems)}. Re-download or re-save the model with save_pretrained().")
    if assign:
        state = {name: tensor.to(expected[name].dtype) for name, tensor in state.items()}
    module.load_state_dict(state, assign=assign)


def _match_weight_norm_names(state: Dict[str, torch.Tensor], expected: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """Translate weight-norm names between the legacy (``weight_g``/``weight_v``) and the
    parametrization (``parametrizations.weight.original0/1``) spellings, towards ``expected``."""
    legacy = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}
    out = {}
    for name, tensor in state.items():
        if name not in expected:
            for old, new in legacy.items():
                if name.endswith(old) and name[: -len(old)] + new in expected:
                    name = name[: -len(old)] + new
                elif name.endswith(new) and name[: -len(new)] + old in expected:
                    name = name[: -len(new)] + old
        out[name] = tensor
    return out


def _submodule_state(state: Dict[str, torch.Tensor], prefix: str, used: set) -> Dict[str, torch.Tensor]:
    sub = {name[len(prefix):]: tensor for name, tensor in state.items() if name.startswith(prefix)}
    used.update(prefix + name for name in sub)
    return sub


# ============================================================================ parts

def _load_tokenizer(folder: Path, name: str):
    import transformers

    local = any((folder / f).is_file() for f in _TOKENIZER_FILES)
    source = str(folder) if local else name
    if not source:
        raise FileNotFoundError(
            f"Folder {str(folder)!r} holds no tokenizer ({', '.join(_TOKENIZER_FILES)}) and its text_encoder config "
            "has no `_name_or_path` to load one by name. Save the T5 tokenizer into the folder, e.g. "
            "`AutoTokenizer.from_pretrained('t5-base').save_pretrained(folder)`.")
    try:
        return transformers.AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"Could not load the T5 tokenizer {source!r} for {str(folder)!r} ({type(exc).__name__}: {exc}). The "
            "folder holds no tokenizer and the hub name cannot be reached (offline?). Save the tokenizer into the "
            f"folder where you have a connection (`AutoTokenizer.from_pretrained({name or 't5-base'!r})"
            ".save_pretrained(folder)`), or point HF_HOME at a cache that holds it.") from exc


def _build_text_encoder(text_config: Mapping[str, Any], state: Dict[str, torch.Tensor], used: set) -> nn.Module:
    import transformers

    config = transformers.T5Config.from_dict(dict(text_config))
    encoder = transformers.T5EncoderModel(config)
    weights = _submodule_state(state, _TEXT, used)
    tied = {"encoder.embed_tokens.weight": "shared.weight"}
    _load_strict(encoder, weights, "text encoder (text_encoder.*)", tied)
    return encoder.eval().requires_grad_(False)


def _build_audio_encoder(audio_config: Mapping[str, Any], state: Dict[str, torch.Tensor], used: set) -> nn.Module:
    import transformers

    config = transformers.EncodecConfig.from_dict(dict(audio_config))
    model = transformers.EncodecModel(config)
    weights = _submodule_state(state, _AUDIO, used)
    _load_strict(model, _match_weight_norm_names(weights, model.state_dict()), "audio encoder (audio_encoder.*)")
    if audio_config.get("_name_or_path"):
        model.config._name_or_path = str(audio_config["_name_or_path"])
    return model.eval().requires_grad_(False)


def _build_lm(cfg: DictConfig, text_dim: int):
    """``builders.get_lm_model(cfg)`` on the meta device, with the T5 conditioner's input width set to ``text_dim``.

    T5Conditioner infers its width from its name (a known T5 name or a local folder); a
    checkpoint whose text encoder has another name (or none) or another width gets a stand-in
    name for building, then its real name back and an ``output_proj`` of the right input width.
    """
    from ..modules.conditioners.text import T5_DIMS
    from . import builders

    name = str(cfg.conditioners[_DESCRIPTION].t5.name)
    build_cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    build_cfg.device = "meta"  # no memory and no random init for weights that are loaded next
    if name not in T5_DIMS and not (name and (Path(name) / CONFIG_NAME).is_file()):
        build_cfg.conditioners[_DESCRIPTION].t5.name = "t5-base"
    lm = builders.get_lm_model(build_cfg)
    conditioner = lm.condition_provider.conditioners[_DESCRIPTION]
    conditioner.name = name
    if conditioner.dim != text_dim:
        old = conditioner.output_proj
        conditioner.output_proj = nn.Linear(text_dim, old.out_features, device=old.weight.device,
                                            dtype=old.weight.dtype)
        conditioner.dim = text_dim
    return lm


def load_transformers_musicgen(path: str | os.PathLike, device: torch.device | str = "cpu"):
    """Load a MusicGen saved by ``transformers`` (``config.json`` + safetensors) as AudioCraft objects.

    Args:
        path: folder written by ``MusicgenForConditionalGeneration.save_pretrained``.
        device: where to put the models.
    Returns:
        ``(compression_model, lm, cfg)``: an :class:`HFEncodecCompressionModel` (wrapped in
        :class:`InterleaveStereoCompressionModel` for stereo models), the
        :class:`~audiocraft.models.lm.LMModel` with the decoder's weights (``lm.cfg`` is set) and
        its T5 encoder injected, both in eval mode, and the AudioCraft-style config (see
        :func:`transformers_config_to_xp_cfg`).
    Raises:
        FileNotFoundError: not a folder, no config.json / safetensors, or no reachable tokenizer.
        ValueError: not a MusicGen config, or weights missing / unexpected / of another shape
            (the message lists the first few names).
        NotImplementedError: MusicGen-Melody or a decoder option AudioCraft's LM cannot express.
    """
    from . import builders
    from .encodec import HFEncodecCompressionModel

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"`path` {str(path)!r} is not a folder; pass the folder written by "
                                "MusicgenForConditionalGeneration.save_pretrained().")
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"`path` {str(folder)!r} has no {CONFIG_NAME}; pass the folder written by "
                                "MusicgenForConditionalGeneration.save_pretrained().")
    config = _read_json(folder / CONFIG_NAME)
    generation = folder / GENERATION_CONFIG_NAME
    cfg = transformers_config_to_xp_cfg(config, _read_json(generation) if generation.is_file() else None)
    cfg.device = str(device)
    decoder, text = config["decoder"], config["text_encoder"]
    text_dim = int(text["d_model"])
    tokenizer = _load_tokenizer(folder, str(text.get("_name_or_path") or ""))  # fails fast when offline
    state = read_safetensors_folder(folder)

    lm_state, used = convert_decoder_state_dict(state, int(decoder["num_hidden_layers"]),
                                                int(decoder["num_codebooks"]), text_dim, int(decoder["hidden_size"]))
    text_encoder = _build_text_encoder(text, state, used)
    audio_encoder = _build_audio_encoder(config["audio_encoder"], state, used)
    leftover = sorted(name for name in state if name not in used and not name.endswith(_IGNORED_SUFFIXES))
    if leftover:
        raise ValueError(f"The transformers checkpoint {str(folder)!r} has {len(leftover)} weight(s) with no place "
                         f"in AudioCraft's MusicGen (first: {leftover[:5]}); it is not a plain MusicGen checkpoint "
                         "(e.g. biases or adapters were added).")

    lm = _build_lm(cfg, text_dim)
    _load_strict(lm, lm_state, "decoder (decoder.*, enc_to_dec_proj.*)", assign=True)
    del state, lm_state
    left_on_meta = [name for name, t in [*lm.named_parameters(), *lm.named_buffers()] if t.is_meta]
    if left_on_meta:  # pragma: no cover - would be a builder change
        raise RuntimeError(f"LM tensors {left_on_meta[:5]} were not loaded from the checkpoint.")
    lm.condition_provider.conditioners[_DESCRIPTION].set_pretrained(tokenizer, text_encoder)
    lm.cfg = cfg
    lm = lm.to(device).eval()

    compression_model = HFEncodecCompressionModel(audio_encoder)
    per_channel = lm.n_q // 2 if cfg.channels == 2 else lm.n_q
    if per_channel not in compression_model.possible_num_codebooks:
        raise ValueError(f"The decoder predicts {per_channel} codebooks per channel but the audio encoder's "
                         f"target_bandwidths give {compression_model.possible_num_codebooks}; config.json is "
                         "inconsistent.")
    compression_model.set_num_codebooks(per_channel)
    if compression_model.cardinality != lm.card:
        raise ValueError(f"decoder.vocab_size ({lm.card}) differs from audio_encoder.codebook_size "
                         f"({compression_model.cardinality}); config.json is inconsistent.")
    compression_model = builders.get_wrapped_compression_model(compression_model, cfg)
    return compression_model.to(device).eval(), lm, cfg
