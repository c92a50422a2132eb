"""SEANet convolutional encoder and decoder, the auto-encoder of EnCodec.

The encoder maps a waveform ``[B, C, T]`` to latent frames ``[B, D, T / hop]``, the
decoder maps them back to ``[B, C, T]``, with ``hop = prod(ratios)``. Layer order
(and therefore the ``model.<i>`` indices of the state dict) matches AudioCraft's
released EnCodec checkpoints.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .conv import StreamableConv1d, StreamableConvTranspose1d
from .lstm import StreamableLSTM


def make_activation(name: str, params: dict | None = None) -> nn.Module:
    """Instantiate the ``torch.nn`` activation called ``name`` (e.g. ``'ELU'``) with ``params``."""
    klass = getattr(nn, name, None)
    if not (isinstance(klass, type) and issubclass(klass, nn.Module)):
        raise ValueError(f"`activation` must name a torch.nn activation class such as 'ELU', 'LeakyReLU', "
                         f"'ReLU', 'GELU', 'SiLU' or 'Tanh'; got {name!r}.")
    return klass(**(params or {}))


class SEANetResnetBlock(nn.Module):
    """Residual block: ``shortcut(x) + [act, conv, act, conv, ...](x)``, ``[B, D, T] -> [B, D, T]``.

    Args:
        dim: channels D of input and output.
        kernel_sizes: kernel size of each conv of the residual branch.
        dilations: dilation of each conv (same length as ``kernel_sizes``).
        activation, activation_params: activation before each conv (a ``torch.nn`` class name).
        norm, norm_params: normalisation of the convs (see ``conv.CONV_NORMALIZATIONS``).
        causal: causal padding.
        pad_mode: padding mode of the convs.
        compress: the branch's hidden width is ``dim // compress``.
        true_skip: identity shortcut if True, else a 1x1 conv.
    """

    def __init__(self, dim: int, kernel_sizes: Sequence[int] = (3, 1), dilations: Sequence[int] = (1, 1),
                 activation: str = "ELU", activation_params: dict | None = None,
                 norm: str = "none", norm_params: dict | None = None, causal: bool = False,
                 pad_mode: str = "reflect", compress: int = 2, true_skip: bool = True) -> None:
        super().__init__()
        if len(kernel_sizes) != len(dilations):
            raise ValueError(f"`kernel_sizes` ({list(kernel_sizes)}) and `dilations` ({list(dilations)}) "
                             "must have the same length (one entry per conv).")
        hidden = dim // compress
        layers: list[nn.Module] = []
        last = len(kernel_sizes) - 1
        for i, (kernel_size, dilation) in enumerate(zip(kernel_sizes, dilations)):
            layers.append(make_activation(activation, activation_params))
            layers.append(StreamableConv1d(dim if i == 0 else hidden, dim if i == last else hidden,
                                           kernel_size=kernel_size, dilation=dilation, norm=norm,
                                           norm_params=norm_params, causal=causal, pad_mode=pad_mode))
        self.block = nn.Sequential(*layers)
        if true_skip:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = StreamableConv1d(dim, dim, kernel_size=1, norm=norm, norm_params=norm_params,
                                             causal=causal, pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


def _setup_common(module: nn.Module, channels: int, dimension: int, num_filters: int, ratios: Sequence[int],
                  disable_norm_outer_blocks: int) -> int:
    """Check the arguments shared by encoder and decoder, set their attributes; returns the number of blocks."""
    if len(ratios) == 0 or any(int(r) < 1 for r in ratios):
        raise ValueError(f"`ratios` must be a non-empty list of positive strides, got {list(ratios)}.")
    if num_filters < 1:
        raise ValueError(f"`num_filters` must be >= 1, got {num_filters}.")
    num_blocks = len(ratios) + 2  # first conv + one block per ratio + last conv
    if not 0 <= disable_norm_outer_blocks <= num_blocks:
        raise ValueError(f"`disable_norm_outer_blocks` must be in [0, {num_blocks}] (number of blocks for "
                         f"{len(ratios)} ratios), got {disable_norm_outer_blocks}.")
    module.channels = channels
    module.dimension = dimension
    module.num_filters = num_filters
    module.ratios = [int(r) for r in ratios]
    module.hop_length = math.prod(module.ratios)
    return num_blocks


class SEANetEncoder(nn.Module):
    """SEANet encoder: waveform ``[B, C, T]`` -> latent ``[B, D, ceil(T / hop_length)]``.

    Layout: conv(C -> F), then for each stride r of ``reversed(ratios)``: residual
    blocks, activation, strided conv (width doubles, kernel 2r, stride r); then an
    optional LSTM, activation and a last conv to ``dimension``.

    Args:
        channels: audio channels C.
        dimension: latent size D.
        num_filters: base width F.
        num_residual_layers: residual blocks per stage (dilations ``dilation_base ** j``).
        ratios: up-sampling ratios in decoder order; the encoder uses them reversed.
        activation, activation_params: activation (a ``torch.nn`` class name) and its arguments.
        norm, norm_params: conv normalisation.
        kernel_size: kernel of the first conv; last_kernel_size: of the last conv;
        residual_kernel_size: of the residual convs.
        dilation_base: dilation growth in residual stacks.
        causal: causal convolutions.
        pad_mode: padding mode of the convs.
        true_skip: identity shortcuts in residual blocks.
        compress: width reduction in residual branches.
        lstm_layers: LSTM layers before the last conv (0 = no LSTM).
        disable_norm_outer_blocks: number of leading blocks without normalisation.
    """

    def __init__(self, channels: int = 1, dimension: int = 128, num_filters: int = 32,
                 num_residual_layers: int = 3, ratios: Sequence[int] = (8, 5, 4, 2),
                 activation: str = "ELU", activation_params: dict | None = None,
                 norm: str = "none", norm_params: dict | None = None, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 causal: bool = False, pad_mode: str = "reflect", true_skip: bool = True,
                 compress: int = 2, lstm_layers: int = 0, disable_norm_outer_blocks: int = 0) -> None:
        super().__init__()
        num_blocks = _setup_common(self, channels, dimension, num_filters, ratios, disable_norm_outer_blocks)
        act_params = activation_params
        conv_args = dict(norm_params=norm_params, causal=causal, pad_mode=pad_mode)

        def norm_for(block_index: int) -> str:  # blocks numbered from 1 at the input side
            return "none" if disable_norm_outer_blocks >= block_index else norm

        mult = 1
        layers: list[nn.Module] = [StreamableConv1d(channels, num_filters, kernel_size, norm=norm_for(1), **conv_args)]
        for i, ratio in enumerate(reversed(self.ratios)):
            width = mult * num_filters
            for j in range(num_residual_layers):
                layers.append(SEANetResnetBlock(
                    width, kernel_sizes=(residual_kernel_size, 1), dilations=(dilation_base ** j, 1),
                    activation=activation, activation_params=act_params, norm=norm_for(i + 2),
                    compress=compress, true_skip=true_skip, **conv_args))
            layers.append(make_activation(activation, act_params))
            layers.append(StreamableConv1d(width, width * 2, kernel_size=ratio * 2, stride=ratio,
                                           norm=norm_for(i + 2), **conv_args))
            mult *= 2
        if lstm_layers:
            layers.append(StreamableLSTM(mult * num_filters, num_layers=lstm_layers))
        layers.append(make_activation(activation, act_params))
        last_norm = "none" if disable_norm_outer_blocks == num_blocks else norm
        layers.append(StreamableConv1d(mult * num_filters, dimension, last_kernel_size, norm=last_norm, **conv_args))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T]`` waveform -> ``[B, D, ceil(T / hop_length)]`` latent frames."""
        return self.model(x)


class SEANetDecoder(nn.Module):
    """SEANet decoder: latent ``[B, D, T']`` -> waveform ``[B, C, T' * hop_length]``.

    Layout: conv(D -> F * 2**len(ratios)), optional LSTM, then for each stride r of
    ``ratios``: activation, transposed conv (width halves, kernel 2r, stride r) and
    residual blocks; then activation, a last conv to C and an optional final activation.

    Args: as :class:`SEANetEncoder` (``disable_norm_outer_blocks`` counts blocks from the
    output side), plus
        final_activation, final_activation_params: optional activation on the output (e.g. ``'Tanh'``).
        trim_right_ratio: right share of the transposed-conv trimming (causal models only).
    """

    def __init__(self, channels: int = 1, dimension: int = 128, num_filters: int = 32,
                 num_residual_layers: int = 3, ratios: Sequence[int] = (8, 5, 4, 2),
                 activation: str = "ELU", activation_params: dict | None = None,
                 final_activation: str | None = None, final_activation_params: dict | None = None,
                 norm: str = "none", norm_params: dict | None = None, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 causal: bool = False, pad_mode: str = "reflect", true_skip: bool = True,
                 compress: int = 2, lstm_layers: int = 0, disable_norm_outer_blocks: int = 0,
                 trim_right_ratio: float = 1.0) -> None:
        super().__init__()
        num_blocks = _setup_common(self, channels, dimension, num_filters, ratios, disable_norm_outer_blocks)
        act_params = activation_params
        conv_args = dict(norm_params=norm_params, causal=causal, pad_mode=pad_mode)

        def norm_for(block_from_output: int) -> str:  # blocks numbered from 1 at the output side
            return "none" if disable_norm_outer_blocks >= block_from_output else norm

        mult = 2 ** len(self.ratios)
        first_norm = "none" if disable_norm_outer_blocks == num_blocks else norm
        layers: list[nn.Module] = [StreamableConv1d(dimension, mult * num_filters, kernel_size,
                                                    norm=first_norm, **conv_args)]
        if lstm_layers:
            layers.append(StreamableLSTM(mult * num_filters, num_layers=lstm_layers))
        for i, ratio in enumerate(self.ratios):
            width = mult * num_filters
            block_norm = norm_for(num_blocks - (i + 1))
            layers.append(make_activation(activation, act_params))
            layers.append(StreamableConvTranspose1d(width, width // 2, kernel_size=ratio * 2, stride=ratio,
                                                    norm=block_norm, norm_params=norm_params, causal=causal,
                                                    trim_right_ratio=trim_right_ratio))
            for j in range(num_residual_layers):
                layers.append(SEANetResnetBlock(
                    width // 2, kernel_sizes=(residual_kernel_size, 1), dilations=(dilation_base ** j, 1),
                    activation=activation, activation_params=act_params, norm=block_norm,
                    compress=compress, true_skip=true_skip, **conv_args))
            mult //= 2
        layers.append(make_activation(activation, act_params))
        layers.append(StreamableConv1d(num_filters, channels, last_kernel_size, norm=norm_for(1), **conv_args))
        if final_activation is not None:
            layers.append(make_activation(final_activation, final_activation_params))
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, D, T']`` latent frames -> ``[B, C, T' * hop_length]`` waveform."""
        return self.model(z)


# ============================================================================ incremental decoding

class NotStreamableError(ValueError):
    """The decoder contains a layer whose output depends on the whole sequence (e.g. a time GroupNorm)."""


def _conv_padding(conv: StreamableConv1d) -> tuple[int, int]:
    """(left, right) padding in samples that :class:`StreamableConv1d` adds for a stride-1 conv."""
    inner = conv.conv.conv
    if inner.stride[0] != 1 or conv.conv.norm_type == "time_group_norm":
        raise NotStreamableError("only stride-1 convolutions without time GroupNorm can be decoded incrementally")
    total = (inner.kernel_size[0] - 1) * inner.dilation[0]
    return (total, 0) if conv.causal else (total - total // 2, total // 2)


def _context_of(layers: Sequence[nn.Module]) -> tuple[int, int, int]:
    """Upper bounds of the (left, right) context in input frames of a local stack, and its up-sampling factor."""
    up, left, right = 1, 1, 1  # one frame of safety margin on each side

    def add(samples_left: int, samples_right: int) -> None:
        nonlocal left, right
        left += math.ceil(samples_left / up)
        right += math.ceil(samples_right / up)

    for layer in layers:
        if isinstance(layer, StreamableConv1d):
            add(*_conv_padding(layer))
        elif isinstance(layer, StreamableConvTranspose1d):
            inner = layer.convtr.convtr
            if layer.convtr.norm_type == "time_group_norm":
                raise NotStreamableError("time GroupNorm needs the whole sequence")
            reach = math.ceil(inner.kernel_size[0] / inner.stride[0])
            add(reach, reach)
            up *= inner.stride[0]
        elif isinstance(layer, SEANetResnetBlock):
            for inner_layer in list(layer.block) + [layer.shortcut]:
                if isinstance(inner_layer, StreamableConv1d):
                    add(*_conv_padding(inner_layer))
        elif not (isinstance(layer, nn.Identity) or type(layer).__module__ == "torch.nn.modules.activation"):
            raise NotStreamableError(f"cannot bound the receptive field of {type(layer).__name__}")
    return left, right, up


class _LocalStage:
    """Runs a stack with a finite receptive field on a sliding window of frames.

    Output samples are released only once their whole receptive field has been received
    (or at ``final``), and are then identical to those of a single pass over the sequence.
    """

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        self.stack = nn.Sequential(*layers)
        self.left, self.right, self.up = _context_of(layers)
        self.buffer: torch.Tensor | None = None  # input frames [start, received)
        self.start = self.received = self.emitted = 0

    def push(self, x: torch.Tensor | None, final: bool) -> torch.Tensor | None:
        if x is not None and x.shape[-1]:
            self.buffer = x if self.buffer is None else torch.cat([self.buffer, x], dim=-1)
            self.received += x.shape[-1]
        ready = self.received if final else max(self.emitted, self.received - self.right)
        if self.buffer is None or ready <= self.emitted:
            return None
        out = self.stack(self.buffer)
        result = out[..., (self.emitted - self.start) * self.up: (ready - self.start) * self.up]
        self.emitted = ready
        new_start = max(self.start, self.emitted - self.left)
        self.buffer = self.buffer[..., new_start - self.start:]
        self.start = new_start
        return result


class SEANetStreamDecoder:
    """Decode latent frames chunk by chunk with a :class:`SEANetDecoder`, without re-decoding the past.

    The LSTM carries its state across chunks and the convolutional parts run on a short
    sliding window, so the concatenation of all returned chunks (``push`` ..., then
    ``flush``) equals ``decoder(all_frames)`` up to float rounding. Audio is returned
    with a delay of a few frames (the convolutions' look-ahead).

    Args:
        decoder: the SEANet decoder (its modules are shared, not copied).
    Raises:
        NotStreamableError: the decoder uses a layer that needs the whole sequence.
    """

    def __init__(self, decoder: SEANetDecoder) -> None:
        layers = list(decoder.model)
        lstm_at = [i for i, layer in enumerate(layers) if isinstance(layer, StreamableLSTM)]
        if len(lstm_at) > 1:
            raise NotStreamableError("a decoder with several LSTM blocks is not supported")
        split = lstm_at[0] if lstm_at else -1
        self.before = _LocalStage(layers[:split]) if split > 0 else None
        self.lstm: StreamableLSTM | None = layers[split] if lstm_at else None
        self.after = _LocalStage(layers[split + 1:])
        self.channels = decoder.channels
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.empty = torch.zeros(0, decoder.channels, 0)  # returned while nothing is ready, [B, C, 0]

    def _run(self, z: torch.Tensor | None, final: bool) -> torch.Tensor:
        x = self.before.push(z, final) if self.before is not None else z
        if self.lstm is not None and x is not None and x.shape[-1]:
            time_major = x.permute(2, 0, 1)
            y, self.state = self.lstm.lstm(time_major, self.state)
            if self.lstm.skip:
                y = y + time_major
            x = y.permute(1, 2, 0)
        out = self.after.push(x, final)
        return self.empty if out is None else out

    def push(self, z: torch.Tensor) -> torch.Tensor:
        """Latent frames ``[B, D, t]`` -> the audio ``[B, C, n]`` that is now final (n may be 0)."""
        self.empty = z.new_zeros(z.shape[0], self.channels, 0)
        return self._run(z, final=False)

    def flush(self) -> torch.Tensor:
        """End of sequence: the remaining audio ``[B, C, n]``."""
        return self._run(None, final=True)
