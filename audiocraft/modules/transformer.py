"""Streaming transformer used by the language model.

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`
(no xformers). State-dict names follow AudioCraft's released checkpoints
(``layers.N.self_attn.in_proj_weight``, ``norm1``, ``linear1``, ``cross_attention``,
``norm_cross``, ``layer_scale_1.scale``...), so those weights load unchanged.

Incremental decoding: inside ``with transformer.streaming():`` every call processes
the next ``T`` steps of the sequence. Self-attention keys and values are appended
to a growable cache; cross-attention keys and values are computed once, on the
first call, and reused (the cross-attention source must stay the same during one
streaming session, which is the case for generation).

Dimensions: B batch, T time steps, D model width, H heads.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear, linear
from .streaming import StreamingModule


def create_sin_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal positional embedding, cosines in the first half of the channels.

    Args:
        positions: [B, T, 1] positions (any numeric dtype).
        dim: embedding width D, must be even.
        max_period: longest period of the sinusoids, in steps.
    Returns:
        [B, T, D] embedding.
    """
    if dim % 2 != 0:
        raise ValueError(f"create_sin_embedding: dim must be even, got {dim}")
    half = dim // 2
    positions = positions.to(dtype)
    exponents = torch.arange(half, device=positions.device, dtype=dtype).view(1, 1, -1)
    period = torch.full([], max_period, device=positions.device, dtype=dtype)
    phase = positions / (period ** (exponents / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class LayerScale(nn.Module):
    """Per-channel learnt scale on a residual branch (CaiT), initialised small."""

    def __init__(self, channels: int, init: float = 1e-4, device=None, dtype=None):
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), init, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


def create_norm_fn(norm_type: str, dim: int, device=None, dtype=None) -> nn.Module:
    """The normalisation layer named in the config (only ``layer_norm`` is used by released models)."""
    if norm_type == "layer_norm":
        return nn.LayerNorm(dim, eps=1e-5, device=device, dtype=dtype)
    raise ValueError(f"unknown norm {norm_type!r}: expected 'layer_norm'")


def get_activation_fn(activation):
    if callable(activation):
        return activation
    known = {"gelu": F.gelu, "relu": F.relu}
    if activation not in known:
        raise ValueError(f"unknown activation {activation!r}: expected one of {sorted(known)}")
    return known[activation]


class StreamingMultiheadAttention(StreamingModule):
    """Multi-head attention with a packed input projection and a KV cache.

    Args:
        embed_dim: model width D.
        num_heads: number of heads H (D must be divisible by H).
        dropout: attention dropout probability (training only).
        bias: whether the projections have biases.
        causal: mask future steps in self-attention.
        past_context: if set, each step only sees this many past steps.
        cross_attention: keys/values come from ``key``/``value`` instead of the query.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, past_context: Optional[int] = None, cross_attention: bool = False,
                 device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if cross_attention and causal:
            raise ValueError("cross-attention cannot be causal")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.causal = causal
        self.past_context = past_context
        self.cross_attention = cross_attention
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, device=device, dtype=dtype))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim, device=device, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        nn.init.xavier_uniform_(self.in_proj_weight)
        self._low_precision_in_proj: Optional[nn.Module] = None

    def use_low_precision(self, in_proj: nn.Module) -> None:
        """Replace the input projection by a low-precision one (inference only, see ``low_precision``)."""
        self._low_precision_in_proj = in_proj
        del self.in_proj_weight
        self.register_parameter("in_proj_weight", None)
        self.register_parameter("in_proj_bias", None)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, H, T, D/H]"""
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, -1).transpose(1, 2)

    def _project(self, x: torch.Tensor, part: slice) -> torch.Tensor:
        """Rows ``part`` of the packed q/k/v projection: [B, T, D] -> [B, T, len(part)]."""
        if self._low_precision_in_proj is not None:
            return self._low_precision_in_proj(x, part.start, part.stop)
        bias = None if self.in_proj_bias is None else self.in_proj_bias[part]
        return linear(x, self.in_proj_weight[part], bias)

    def _cross_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._is_streaming and "cross_k" in self._streaming_state:
            return self._streaming_state["cross_k"], self._streaming_state["cross_v"]
        D = self.embed_dim
        k = self._heads(self._project(source, slice(D, 2 * D)))
        v = self._heads(self._project(source, slice(2 * D, 3 * D)))
        if self._is_streaming:
            self._streaming_state["cross_k"] = k
            self._streaming_state["cross_v"] = v
        return k, v

    def _append_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Add the new steps to the cache; returns all keys/values and the number of past steps."""
        if not self._is_streaming:
            return k, v, 0
        state = self._streaming_state
        new = k.shape[2]
        if "k" not in state:
            capacity = max(64, 2 * new)
            state["k"] = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            state["v"] = v.new_empty(v.shape[0], v.shape[1], capacity, v.shape[3])
            state["length"] = 0
        past = state["length"]
        capacity = state["k"].shape[2]
        if past + new > capacity:
            grown = max(2 * capacity, past + new)
            for name in ("k", "v"):
                buffer = state[name].new_empty(*state[name].shape[:2], grown, state[name].shape[3])
                buffer[:, :, :past] = state[name][:, :, :past]
                state[name] = buffer
        state["k"][:, :, past:past + new] = k
        state["v"][:, :, past:past + new] = v
        state["length"] = past + new
        return state["k"][:, :, :past + new], state["v"][:, :, :past + new], past

    def _self_attention_mask(self, queries: int, past: int, device) -> Optional[torch.Tensor]:
        """Boolean mask [Tq, Tk] (True = may attend), or None when no mask is needed."""
        keys = past + queries
        if not self.causal and self.past_context is None:
            return None
        if self.causal and queries == 1 and (self.past_context is None or keys <= self.past_context + 1):
            return None
        q_pos = torch.arange(past, keys, device=device).view(-1, 1)
        k_pos = torch.arange(keys, device=device).view(1, -1)
        delta = q_pos - k_pos
        allowed = torch.ones_like(delta, dtype=torch.bool)
        if self.causal:
            allowed &= delta >= 0
        if self.past_context is not None:
            allowed &= delta <= self.past_context
        return allowed

    def forward(self, query: torch.Tensor, key: Optional[torch.Tensor] = None,
                value: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention of ``query`` [B, T, D] over itself, or over ``key`` [B, S, D] for cross-attention."""
        D = self.embed_dim
        if self.cross_attention:
            if key is None:
                raise ValueError("cross-attention needs the source sequence as `key`")
            q = self._heads(self._project(query, slice(0, D)))
            k, v = self._cross_kv(key)
            mask = None
        else:
            B, T, _ = query.shape
            packed = self._project(query, slice(0, 3 * D))
            q, k, v = packed.view(B, T, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
            k, v, past = self._append_kv(k, v)
            mask = self._self_attention_mask(T, past, query.device)
        dropout = self.dropout if self.training else 0.0
        if mask is not None and self.causal and self.past_context is None and mask.shape[0] == mask.shape[1]:
            x = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        B, H, T, _ = x.shape
        x = x.transpose(1, 2).reshape(B, T, D)
        return self.out_proj(x)


class StreamingTransformerLayer(nn.Module):
    """One transformer block: self-attention, optional cross-attention, feed-forward.

    Args:
        d_model: width D.
        num_heads: attention heads.
        dim_feedforward: hidden width of the feed-forward block.
        dropout: dropout on the residual branches (and attention unless ``attention_dropout``).
        bias_ff / bias_attn: biases in the feed-forward / attention projections.
        causal: causal self-attention.
        past_context: limit of the self-attention window, in steps.
        cross_attention: add a cross-attention block (``cross_attention``, ``norm_cross``).
        layer_scale: initial value of LayerScale on each branch, or None for no LayerScale.
        norm_first: pre-norm (True, used by MusicGen) or post-norm.
        activation: 'gelu' or 'relu' (or a callable).
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 bias_ff: bool = True, bias_attn: bool = True, causal: bool = False,
                 past_context: Optional[int] = None, cross_attention: bool = False,
                 layer_scale: Optional[float] = None, norm: str = "layer_norm", norm_first: bool = False,
                 activation="relu", attention_dropout: Optional[float] = None, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        attn_dropout = dropout if attention_dropout is None else attention_dropout
        self.self_attn = StreamingMultiheadAttention(d_model, num_heads, dropout=attn_dropout, bias=bias_attn,
                                                     causal=causal, past_context=past_context, **factory)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias_ff, **factory)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias_ff, **factory)
        self.norm1 = create_norm_fn(norm, d_model, **factory)
        self.norm2 = create_norm_fn(norm, d_model, **factory)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm_first = norm_first
        self.activation = get_activation_fn(activation)
        self._no_layer_scale = layer_scale is None
        self.layer_scale_1: nn.Module = nn.Identity() if layer_scale is None else LayerScale(d_model, layer_scale, **factory)
        self.layer_scale_2: nn.Module = nn.Identity() if layer_scale is None else LayerScale(d_model, layer_scale, **factory)
        self.cross_attention: Optional[StreamingMultiheadAttention] = None
        if cross_attention:
            self.cross_attention = StreamingMultiheadAttention(d_model, num_heads, dropout=attn_dropout,
                                                               bias=bias_attn, cross_attention=True, **factory)
            self.dropout_cross = nn.Dropout(dropout)
            self.norm_cross = create_norm_fn(norm, d_model, **factory)
            self.layer_scale_cross: nn.Module = (nn.Identity() if layer_scale is None
                                                 else LayerScale(d_model, layer_scale, **factory))

    # Dropout and an absent LayerScale are identities in inference: skipping their module calls
    # saves per-step overhead when decoding one step at a time.
    def _branch_out(self, x: torch.Tensor, dropout: nn.Module, layer_scale: nn.Module) -> torch.Tensor:
        if self.training:
            x = dropout(x)
        return x if self._no_layer_scale else layer_scale(x)

    def _self_block(self, x: torch.Tensor) -> torch.Tensor:
        return self._branch_out(self.self_attn(x), self.dropout1, self.layer_scale_1)

    def _cross_block(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        assert self.cross_attention is not None
        return self._branch_out(self.cross_attention(x, source, source), self.dropout_cross, self.layer_scale_cross)

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.linear1(x))
        if self.training:
            hidden = self.dropout(hidden)
        return self._branch_out(self.linear2(hidden), self.dropout2, self.layer_scale_2)

    def forward(self, x: torch.Tensor, cross_attention_src: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B, T, D]; cross_attention_src: [B, S, D], or None to skip the cross-attention block."""
        use_cross = self.cross_attention is not None and cross_attention_src is not None
        if self.norm_first:
            x = x + self._self_block(self.norm1(x))
            if use_cross:
                x = x + self._cross_block(self.norm_cross(x), cross_attention_src)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._self_block(x))
            if use_cross:
                x = self.norm_cross(x + self._cross_block(x, cross_attention_src))
            x = self.norm2(x + self._ff_block(x))
        return x


class StreamingTransformer(StreamingModule):
    """A stack of :class:`StreamingTransformerLayer` with sinusoidal positions.

    Args:
        d_model: width D.
        num_heads: attention heads per layer.
        num_layers: number of layers.
        dim_feedforward: feed-forward hidden width.
        positional_embedding: 'sin' (added to the input) or 'none'.
        max_period: longest period of the sinusoidal embedding, in steps.
        positional_scale: multiplier of the positional embedding.
        Other arguments are passed to every layer (see :class:`StreamingTransformerLayer`).
    """

    def __init__(self, d_model: int, num_heads: int, num_layers: int, dim_feedforward: int = 2048,
                 dropout: float = 0.0, bias_ff: bool = True, bias_attn: bool = True, causal: bool = False,
                 past_context: Optional[int] = None, cross_attention: bool = False,
                 layer_scale: Optional[float] = None, positional_embedding: str = "sin",
                 max_period: float = 10_000, positional_scale: float = 1.0, norm: str = "layer_norm",
                 norm_first: bool = False, activation="relu", attention_dropout: Optional[float] = None,
                 device=None, dtype=None):
        super().__init__()
        if positional_embedding not in ("sin", "none"):
            raise ValueError(f"positional_embedding {positional_embedding!r} is not supported: use 'sin' or 'none'")
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.positional_embedding = positional_embedding
        self.max_period = max_period
        self.positional_scale = positional_scale
        self.layers = nn.ModuleList([
            StreamingTransformerLayer(
                d_model, num_heads, dim_feedforward, dropout=dropout, bias_ff=bias_ff, bias_attn=bias_attn,
                causal=causal, past_context=past_context, cross_attention=cross_attention,
                layer_scale=layer_scale, norm=norm, norm_first=norm_first, activation=activation,
                attention_dropout=attention_dropout, device=device, dtype=dtype)
            for _ in range(num_layers)
        ])

    def forward(self, x: torch.Tensor, cross_attention_src: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B, T, D] -> [B, T, D]. In streaming mode, positions continue from the previous call."""
        B, T, D = x.shape
        offsets = self._streaming_state.get("offsets")
        if offsets is None:
            offsets = torch.zeros(B, dtype=torch.long, device=x.device)
        if self.positional_embedding == "sin":
            positions = torch.arange(T, device=x.device).view(1, -1, 1) + offsets.view(-1, 1, 1)
            x = x + self.positional_scale * create_sin_embedding(positions, D, self.max_period, dtype=x.dtype)
        for layer in self.layers:
            x = layer(x, cross_attention_src=cross_attention_src)
        if self._is_streaming:
            self._streaming_state["offsets"] = offsets + T
        return x


def scaled_init_(module: nn.Module, std_scale: float = 1.0) -> None:
    """Truncated Gaussian init with std 1/sqrt(fan_in) (the 'gaussian' init of MusicGen)."""
    for name, param in module.named_parameters(recurse=False):
        if param.dim() >= 2:
            fan_in = param.shape[-1]
            std = std_scale / math.sqrt(fan_in)
            nn.init.trunc_normal_(param, mean=0.0, std=std, a=-3 * std, b=3 * std)
