"""The language model over codec tokens (MusicGen's LM).

Codes ``[B, K, T]`` from the compression model are interleaved by a codebook pattern
into a sequence ``[B, K, S]``; each step embeds its K tokens (one table per codebook,
plus a special "not yet / nothing here" token), sums them, runs the transformer with
the conditions fused in, and predicts K distributions over the ``card`` code values.

Dimensions: B batch, K codebooks, T frames, S pattern steps, D model width, V = card.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional

import torch
from torch import nn

from ..modules.codebooks_patterns import CodebooksPatternProvider, Pattern
from ..modules.linear import Linear
from ..modules.conditioners import (AttributeDropout, ClassifierFreeGuidanceDropout, ConditionFuser,
                                    ConditioningAttributes, ConditioningProvider, ConditionType,
                                    drop_all_conditions, drop_text_conditions)
from ..modules.sampling import sample_token
from ..modules.streaming import StreamingModule
from ..modules.transformer import StreamingTransformer, create_norm_fn

ConditionTensors = Dict[str, ConditionType]
ProgressCallback = Callable[[int, int], None]


@dataclass
class LMOutput:
    """Per-frame predictions.

    Attributes:
        logits: [B, K, T, V] (NaN where ``mask`` is False).
        mask: [B, K, T] positions the pattern lets the model predict.
    """
    logits: torch.Tensor
    mask: torch.Tensor


class ScaledEmbedding(nn.Embedding):
    """An embedding table that can have its own learning rate (``lr``) in the optimizer."""

    def __init__(self, *args, lr: Optional[float] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr = lr

    def make_optim_group(self) -> dict:
        group = {"params": list(self.parameters())}
        if self.lr is not None:
            group["lr"] = self.lr
        return group


class LMModel(StreamingModule):
    """Transformer language model over K parallel codebooks.

    Args:
        pattern_provider: how codebooks are interleaved in time.
        condition_provider: conditioners for each attribute.
        fuser: how conditions reach the transformer.
        n_q: number of codebooks K.
        card: codebook size V.
        dim: model width D.
        num_heads, num_layers, hidden_scale: transformer shape (feed-forward width = hidden_scale * dim).
        norm: normalisation type; norm_first: pre-norm (adds ``out_norm`` before the heads).
        emb_lr: learning rate of the embeddings, if different.
        bias_proj: biases in the output heads.
        weight_init / depthwise_init / zero_bias_init: initialisation for training from scratch
            ('gaussian' or None; None / 'current' / 'global'; zero the biases).
        cfg_dropout: training probability of dropping all conditions (classifier-free guidance).
        cfg_coef: default guidance coefficient at generation.
        attribute_dropout: per-attribute training dropout, ``{'text': {'genre': 0.5}}``.
        two_step_cfg: default for running the unconditional pass separately.
        transformer_kwargs: the remaining transformer options (causal, cross_attention,
            activation, bias_ff, bias_attn, dropout, layer_scale, positional_embedding,
            max_period, past_context, attention_dropout...), see :class:`StreamingTransformer`.
    """

    def __init__(self, pattern_provider: CodebooksPatternProvider, condition_provider: ConditioningProvider,
                 fuser: ConditionFuser, n_q: int = 8, card: int = 1024, dim: int = 128, num_heads: int = 8,
                 num_layers: int = 8, hidden_scale: int = 4, norm: str = "layer_norm", norm_first: bool = False,
                 emb_lr: Optional[float] = None, bias_proj: bool = True, weight_init: Optional[str] = None,
                 depthwise_init: Optional[str] = None, zero_bias_init: bool = False, cfg_dropout: float = 0.0,
                 cfg_coef: float = 1.0, attribute_dropout: Optional[Dict[str, Dict[str, float]]] = None,
                 two_step_cfg: bool = False, transformer_kwargs: Optional[dict] = None,
                 device=None, dtype=None):
        super().__init__()
        if n_q != pattern_provider.n_q:
            raise ValueError(f"the codebook pattern is for {pattern_provider.n_q} codebooks but n_q={n_q}")
        self.pattern_provider = pattern_provider
        self.condition_provider = condition_provider
        self.fuser = fuser
        self.n_q = n_q
        self.card = card
        self.dim = dim
        self.cfg_coef = cfg_coef
        self.two_step_cfg = two_step_cfg
        self.cfg_dropout = ClassifierFreeGuidanceDropout(p=cfg_dropout)
        self.att_dropout = AttributeDropout(p=attribute_dropout or {})
        factory = {"device": device, "dtype": dtype}
        self.emb = nn.ModuleList([ScaledEmbedding(card + 1, dim, lr=emb_lr, **factory) for _ in range(n_q)])
        self.transformer = StreamingTransformer(
            d_model=dim, num_heads=num_heads, num_layers=num_layers, dim_feedforward=int(hidden_scale * dim),
            norm=norm, norm_first=norm_first, **(transformer_kwargs or {}), **factory)
        self.out_norm: Optional[nn.Module] = create_norm_fn(norm, dim, **factory) if norm_first else None
        self.linears = nn.ModuleList([Linear(dim, card, bias=bias_proj, **factory) for _ in range(n_q)])
        self._init_weights(weight_init, depthwise_init, zero_bias_init)

    # ------------------------------------------------------------------ set-up
    def _init_weights(self, weight_init: Optional[str], depthwise_init: Optional[str], zero_bias_init: bool):
        if weight_init is None:
            return
        if weight_init != "gaussian":
            raise ValueError(f"weight_init must be 'gaussian' or None, got {weight_init!r}")
        if depthwise_init not in (None, "current", "global"):
            raise ValueError(f"depthwise_init must be None, 'current' or 'global', got {depthwise_init!r}")

        def init(module: nn.Module, depth: Optional[int]):
            for param_name, param in module.named_parameters():
                if param.dim() >= 2:
                    std = 1 / math.sqrt(param.shape[-1])
                    if depth is not None:
                        std = std / math.sqrt(2 * depth)
                    nn.init.trunc_normal_(param, mean=0.0, std=std, a=-3 * std, b=3 * std)
                elif zero_bias_init and param_name.endswith("bias") and "norm" not in param_name:
                    nn.init.zeros_(param)

        num_layers = len(self.transformer.layers)
        for index, layer in enumerate(self.transformer.layers):
            depth = {None: None, "current": index + 1, "global": num_layers}[depthwise_init]
            init(layer, depth)
        for module in [*self.emb, *self.linears]:
            init(module, None)

    @property
    def num_codebooks(self) -> int:
        return self.n_q

    @property
    def special_token_id(self) -> int:
        return self.card

    # ----------------------------------------------------------------- forward
    def forward(self, sequence: torch.Tensor, conditions: List[ConditioningAttributes],
                condition_tensors: Optional[ConditionTensors] = None) -> torch.Tensor:
        """Logits for every step of an interleaved sequence.

        Args:
            sequence: [B, K, S] tokens in ``[0, card]`` (``card`` is the special token).
            conditions: attributes of each sample; ignored when ``condition_tensors`` is given.
            condition_tensors: precomputed output of ``condition_provider``.
        Returns:
            [B, K, S, V] logits.
        """
        B, K, S = sequence.shape
        if K != self.n_q:
            raise ValueError(f"sequence has {K} codebooks, the model expects {self.n_q}")
        embedded = 0
        for k in range(K):  # summed in order, as AudioCraft does
            embedded = embedded + self.emb[k](sequence[:, k])
        if condition_tensors is None:
            if self._is_streaming:
                raise RuntimeError("pass condition_tensors when streaming: conditions are computed once per generation")
            condition_tensors = self.training_condition_tensors(conditions)
        fused, cross_source = self.fuser(embedded, condition_tensors)
        out = self.transformer(fused, cross_attention_src=cross_source)
        if self.out_norm is not None:
            out = self.out_norm(out)
        logits = torch.stack([self.linears[k](out) for k in range(K)], dim=1)
        if self.fuser.fuse2cond["prepend"]:
            logits = logits[:, :, -S:]
        return logits

    def training_condition_tensors(self, conditions: List[ConditioningAttributes]) -> ConditionTensors:
        """Condition tensors of ``conditions`` after the classifier-free-guidance and attribute dropouts
        (which act only in training mode, as in :meth:`forward`)."""
        conditions = self.att_dropout(self.cfg_dropout(conditions))
        return self.condition_provider(self.condition_provider.tokenize(conditions))

    def compute_predictions(self, codes: torch.Tensor, conditions: List[ConditioningAttributes],
                            condition_tensors: Optional[ConditionTensors] = None,
                            keep_only_valid_steps: bool = True) -> LMOutput:
        """Teacher-forced predictions for codes [B, K, T] -> LMOutput(logits [B, K, T, V], mask [B, K, T])."""
        self._check_codes(codes, "codes")
        B, K, T = codes.shape
        pattern = self.pattern_provider.get_pattern(T)
        sequence, _, _ = pattern.build_pattern_sequence(codes.contiguous(), self.special_token_id,
                                                        keep_only_valid_steps=keep_only_valid_steps)
        logits = self(sequence, conditions, condition_tensors)  # [B, K, S, V]
        logits, _, mask = pattern.revert_pattern_logits(logits.permute(0, 3, 1, 2), float("nan"),
                                                        keep_only_valid_steps=keep_only_valid_steps)
        logits = logits.permute(0, 2, 3, 1)  # [B, K, T, V]
        return LMOutput(logits, mask[None].expand(B, -1, -1))

    def _check_codes(self, codes: torch.Tensor, name: str) -> None:
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"`{name}` must be a tensor [B, K, T] of codes, got {shape}")
        if codes.shape[1] != self.n_q:
            raise ValueError(f"`{name}` has {codes.shape[1]} codebooks, this model uses {self.n_q}: "
                             "check that the codes come from the matching compression model")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.card):
            raise ValueError(f"`{name}` values must lie in [0, {self.card}), got [{int(codes.min())}, {int(codes.max())}]")

    # -------------------------------------------------------------- generation
    def _prepare_cfg_conditions(self, conditions: List[ConditioningAttributes], two_step_cfg: bool,
                                cfg_coef_beta: Optional[float]):
        """Condition tensors for guided decoding (batched: cond + null; two-step: a pair)."""
        if not conditions:
            return {}
        provider = self.condition_provider
        null_conditions = drop_all_conditions(conditions)
        if cfg_coef_beta is not None:
            batch = conditions + drop_text_conditions(conditions) + null_conditions
            return provider(provider.tokenize(batch))
        if two_step_cfg:
            return (provider(provider.tokenize(conditions)), provider(provider.tokenize(null_conditions)))
        return provider(provider.tokenize(conditions + null_conditions))

    def _guided_logits(self, sequence: torch.Tensor, cfg_conditions, cfg_coef: float,
                       cfg_coef_beta: Optional[float], uncond_state: dict) -> torch.Tensor:
        """Guided logits of the last step: sequence [B, K, S] -> [B, K, V]."""
        B = sequence.shape[0]
        if isinstance(cfg_conditions, tuple):  # two passes with separate streaming states
            cond_tensors, null_tensors = cfg_conditions
            cond_logits = self(sequence, [], condition_tensors=cond_tensors)
            cond_state = self.get_streaming_state()
            self.set_streaming_state(uncond_state)
            uncond_logits = self(sequence, [], condition_tensors=null_tensors)
            uncond_state.clear()
            uncond_state.update(self.get_streaming_state())
            self.set_streaming_state(cond_state)
            logits = uncond_logits + (cond_logits - uncond_logits) * cfg_coef
        elif not cfg_conditions:
            logits = self(sequence, [], condition_tensors={})
        elif cfg_coef_beta is not None:
            all_logits = self(torch.cat([sequence] * 3), [], condition_tensors=cfg_conditions)
            cond_logits, wav_logits, uncond_logits = all_logits.split(B)
            logits = uncond_logits + cfg_coef * (wav_logits + cfg_coef_beta * (cond_logits - wav_logits)
                                                 - uncond_logits)
        else:
            all_logits = self(torch.cat([sequence, sequence]), [], condition_tensors=cfg_conditions)
            cond_logits, uncond_logits = all_logits.split(B)
            logits = uncond_logits + (cond_logits - uncond_logits) * cfg_coef
        return logits[:, :, -1]

    @torch.no_grad()
    def stream_generate(self, prompt: Optional[torch.Tensor] = None,
                        conditions: Optional[List[ConditioningAttributes]] = None,
                        num_samples: Optional[int] = None, max_gen_len: int = 256, use_sampling: bool = True,
                        temp: float = 1.0, top_k: int = 250, top_p: float = 0.0, cfg_coef: Optional[float] = None,
                        cfg_coef_beta: Optional[float] = None, two_step_cfg: Optional[bool] = None,
                        callback: Optional[ProgressCallback] = None,
                        generator: Optional[torch.Generator] = None) -> Iterator[torch.Tensor]:
        """Generate codes, yielding each run of frames as soon as all its codebooks are known.

        The prompt's own frames come first, then the generated ones; concatenated along
        time, the chunks equal :meth:`generate`'s output with ``remove_prompts=False``.
        Arguments are those of :meth:`generate`.

        Yields:
            codes [B, K, t] (t >= 1 frames per chunk).
        """
        if self.training:
            raise RuntimeError("call lm.eval() before generating")
        conditions = list(conditions or [])
        cfg_coef = self.cfg_coef if cfg_coef is None else cfg_coef
        two_step_cfg = self.two_step_cfg if two_step_cfg is None else two_step_cfg
        device = next(self.parameters()).device
        if num_samples is None:
            num_samples = prompt.shape[0] if prompt is not None else (len(conditions) or 1)
        if conditions and len(conditions) != num_samples:
            raise ValueError(f"got {len(conditions)} conditions for {num_samples} samples: give one per sample")
        if max_gen_len <= 0:
            raise ValueError(f"max_gen_len must be > 0 frames, got {max_gen_len}")
        if prompt is None:
            prompt = torch.zeros(num_samples, self.n_q, 0, dtype=torch.long, device=device)
        self._check_codes(prompt, "prompt")
        if prompt.shape[0] != num_samples:
            raise ValueError(f"prompt has {prompt.shape[0]} items but num_samples={num_samples}")
        B, K, prompt_len = prompt.shape
        if prompt_len >= max_gen_len:
            raise ValueError(f"the prompt ({prompt_len} frames) must be shorter than max_gen_len ({max_gen_len})")

        cfg_conditions = self._prepare_cfg_conditions(conditions, two_step_cfg, cfg_coef_beta)
        pattern = self.pattern_provider.get_pattern(max_gen_len)
        unknown = -1
        codes = torch.full((B, K, max_gen_len), unknown, dtype=torch.long, device=device)
        codes[..., :prompt_len] = prompt.to(device)
        sequence, _, mask = pattern.build_pattern_sequence(codes, self.special_token_id)
        mask = mask.to(device)
        first_step = pattern.get_first_step_with_timesteps(prompt_len)
        if first_step is None:
            raise RuntimeError(f"the codebook pattern has no step for frame {prompt_len}")
        step_of = _step_of_coordinates(pattern, K, max_gen_len, device)  # [K, T]
        last_step_of_frame = step_of.max(dim=0).values  # [T]

        if prompt_len:
            yield prompt.to(device)
        emitted = prompt_len
        total_steps = sequence.shape[-1] - first_step
        uncond_state: dict = {}
        with self.streaming():
            previous = 0
            for step in range(first_step, sequence.shape[-1]):
                logits = self._guided_logits(sequence[..., previous:step], cfg_conditions, cfg_coef,
                                             cfg_coef_beta, uncond_state)
                next_token = sample_token(logits, use_sampling, temp, top_k, top_p, generator)  # [B, K, 1]
                valid = mask[..., step:step + 1].expand(B, -1, -1)
                next_token[~valid] = self.special_token_id
                current = sequence[..., step:step + 1]
                sequence[..., step:step + 1] = torch.where(current == unknown, next_token, current)
                previous = step
                if callback is not None:
                    callback(1 + step - first_step, total_steps)
                done = emitted
                while done < max_gen_len and int(last_step_of_frame[done]) <= step:
                    done += 1
                if done > emitted:
                    index = step_of[:, emitted:done].unsqueeze(0).expand(B, -1, -1)
                    yield torch.gather(sequence, 2, index)
                    emitted = done
        if emitted != max_gen_len:
            raise RuntimeError(f"generation ended with {emitted} of {max_gen_len} frames: pattern/sequence mismatch")

    @torch.no_grad()
    def generate(self, prompt: Optional[torch.Tensor] = None,
                 conditions: Optional[List[ConditioningAttributes]] = None,
                 num_samples: Optional[int] = None, max_gen_len: int = 256, use_sampling: bool = True,
                 temp: float = 1.0, top_k: int = 250, top_p: float = 0.0, cfg_coef: Optional[float] = None,
                 cfg_coef_beta: Optional[float] = None, two_step_cfg: Optional[bool] = None,
                 remove_prompts: bool = False, callback: Optional[ProgressCallback] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Generate codes with KV-cache sampling and classifier-free guidance.

        Args:
            prompt: [B, K, T0] codes to continue, or None.
            conditions: one ConditioningAttributes per sample (empty list: unconditional, no CFG).
            num_samples: batch size when neither prompt nor conditions give it.
            max_gen_len: total length in frames, prompt included.
            use_sampling: sample (True) or take the argmax (False).
            temp, top_k, top_p: sampling temperature and restrictions (top_p wins when > 0).
            cfg_coef: guidance coefficient (default: the model's).
            cfg_coef_beta: if set, double guidance for melody/style models: text on top of audio.
            two_step_cfg: run the unconditional branch as a second pass (honours ``cfg_coef``).
            remove_prompts: drop the prompt frames from the output.
            callback: called with (steps done, steps total) after each step.
            generator: torch RNG for sampling (default: the global one).
        Returns:
            [B, K, max_gen_len] codes ([B, K, max_gen_len - T0] with ``remove_prompts``).
        """
        chunks = list(self.stream_generate(prompt, conditions, num_samples, max_gen_len, use_sampling, temp,
                                           top_k, top_p, cfg_coef, cfg_coef_beta, two_step_cfg, callback,
                                           generator))
        codes = torch.cat(chunks, dim=-1)
        if remove_prompts and prompt is not None:
            codes = codes[..., prompt.shape[-1]:]
        return codes


def _step_of_coordinates(pattern: Pattern, num_codebooks: int, timesteps: int, device) -> torch.Tensor:
    """[K, T] index of the sequence step that holds each (codebook, frame)."""
    step_of = torch.full((num_codebooks, timesteps), -1, dtype=torch.long)
    for step, coords in enumerate(pattern.layout):
        for coord in coords:
            if coord.t < timesteps:
                step_of[coord.q, coord.t] = step
    if (step_of < 0).any():
        raise RuntimeError("the codebook pattern does not place every (codebook, frame)")
    return step_of.to(device)
