"""Multi-scale STFT discriminator (MS-STFTD) of EnCodec.

Each sub-discriminator looks at the complex STFT of the waveform at one resolution: the real
and imaginary parts are stacked as ``2 * C`` image channels ``[B, 2C, frames, F]`` and go
through a stack of 2-D convolutions (LeakyReLU after each), the first keeping the size,
the next ones dilated along time and strided by 2 along frequency, then a final conv to
``out_channels`` logits. Every activation is returned as a feature map for the feature
matching loss.

Architecture, defaults and module names follow AudioCraft's
``audiocraft/adversarial/discriminators/msstftd.py``, so state dicts use the same keys
(``discriminators.<i>.convs.<j>.conv.weight_g`` ...; the first conv of each
sub-discriminator has no weight norm, as in AudioCraft).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...modules.spectrogram import Spectrogram

#: Output of a multi-discriminator: one logits tensor per sub-discriminator, and for each
#: sub-discriminator the list of its feature maps.
MultiDiscriminatorOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]

#: Normalisations accepted by the 2-D convolutions.
CONV2D_NORMALIZATIONS = ("none", "weight_norm")


class WeightNormConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a weight-normalised kernel: parameters ``weight_g``, ``weight_v``, ``bias``.

    The kernel is ``weight_v * weight_g / ||weight_v||`` (norm over all axes but the output
    channels), the parametrisation and parameter names of ``torch.nn.utils.weight_norm``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        kernel = self.weight.detach()
        del self._parameters["weight"]
        magnitude = kernel.flatten(1).norm(p=2, dim=1).view(-1, 1, 1, 1)
        self.weight_g = nn.Parameter(magnitude)
        self.weight_v = nn.Parameter(kernel.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = torch._weight_norm(self.weight_v, self.weight_g, 0)
        return self._conv_forward(x, kernel, self.bias)


class NormConv2d(nn.Module):
    """A 2-D convolution (``.conv``) with optional weight norm; ``.norm`` is an identity kept for key names.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, dilation, padding: as in ``nn.Conv2d``, ``(time, frequency)``.
        norm: one of :data:`CONV2D_NORMALIZATIONS`.
    Input ``[B, C_in, frames, F]`` -> output ``[B, C_out, frames', F']``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
                 padding: tuple[int, int] = (0, 0), norm: str = "none") -> None:
        super().__init__()
        if norm not in CONV2D_NORMALIZATIONS:
            raise ValueError(f"`norm` must be one of {CONV2D_NORMALIZATIONS}, got {norm!r}.")
        conv_cls = WeightNormConv2d if norm == "weight_norm" else nn.Conv2d
        self.conv = conv_cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                             dilation=dilation)
        self.norm = nn.Identity()
        self.norm_type = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def _same_padding(kernel_size: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """Padding that keeps the size of each axis for an odd kernel (before striding)."""
    return tuple((k - 1) * d // 2 for k, d in zip(kernel_size, dilation))  # type: ignore[return-value]


class DiscriminatorSTFT(nn.Module):
    """One STFT sub-discriminator.

    Args:
        filters: channels of the first conv layer.
        in_channels: audio channels ``C`` of the input.
        out_channels: channels of the logits.
        n_fft, hop_length, win_length: STFT sizes in samples (no centering, Hann window).
        max_filters: cap on the channels of any layer.
        filters_scale: channel growth factor per layer.
        kernel_size: ``(time, frequency)`` kernel of the inner convs.
        dilations: time dilation of each strided conv (one conv per entry).
        stride: ``(time, frequency)`` stride of the dilated convs.
        normalized: window-normalised STFT.
        norm: normalisation of every conv but the first (``'weight_norm'`` or ``'none'``).
        activation: name of a ``torch.nn`` activation class.
        activation_params: keyword arguments of the activation (default ``negative_slope=0.2``).
    Input ``[B, C, T]`` -> ``(logits [B, out_channels, frames, F'], feature maps)`` with
    ``frames = 1 + (T - n_fft) // hop_length``.
    """

    def __init__(self, filters: int, in_channels: int = 1, out_channels: int = 1, n_fft: int = 1024,
                 hop_length: int = 256, win_length: int = 1024, max_filters: int = 1024, filters_scale: int = 1,
                 kernel_size: tuple[int, int] = (3, 9), dilations: Sequence[int] = (1, 2, 4),
                 stride: tuple[int, int] = (1, 2), normalized: bool = True, norm: str = "weight_norm",
                 activation: str = "LeakyReLU", activation_params: dict | None = None) -> None:
        super().__init__()
        if len(kernel_size) != 2 or len(stride) != 2:
            raise ValueError(f"`kernel_size` and `stride` must be (time, frequency) pairs, got {kernel_size!r} "
                             f"and {stride!r}.")
        activation_cls = getattr(nn, activation, None)
        if not (isinstance(activation_cls, type) and issubclass(activation_cls, nn.Module)):
            raise ValueError(f"`activation` must name a torch.nn activation class (e.g. 'LeakyReLU'), "
                             f"got {activation!r}.")
        if activation_params is None:
            activation_params = {"negative_slope": 0.2}
        self.filters = filters
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.normalized = normalized
        self.activation = activation_cls(**activation_params)
        self.spec_transform = Spectrogram(n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                                          power=None, normalized=normalized, center=False)
        kernel_size = tuple(kernel_size)
        square = (kernel_size[0], kernel_size[0])
        self.convs = nn.ModuleList()
        self.convs.append(NormConv2d(2 * in_channels, filters, kernel_size, padding=_same_padding(kernel_size)))
        channels = min(filters_scale * filters, max_filters)
        for i, dilation in enumerate(dilations):
            out_chs = min(filters_scale ** (i + 1) * filters, max_filters)
            self.convs.append(NormConv2d(channels, out_chs, kernel_size, stride=tuple(stride),
                                         dilation=(dilation, 1), padding=_same_padding(kernel_size, (dilation, 1)),
                                         norm=norm))
            channels = out_chs
        out_chs = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        self.convs.append(NormConv2d(channels, out_chs, square, padding=_same_padding(square), norm=norm))
        self.conv_post = NormConv2d(out_chs, out_channels, square, padding=_same_padding(square), norm=norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Waveform ``[B, C, T]`` -> ``(logits [B, out_channels, frames, F'], feature maps)``."""
        spec = self.spec_transform(x)  # [B, C, F, frames], complex
        z = torch.cat([spec.real, spec.imag], dim=1).transpose(-1, -2)  # [B, 2C, frames, F]
        fmap = []
        for conv in self.convs:
            z = self.activation(conv(z))
            fmap.append(z)
        return self.conv_post(z), fmap


class MultiScaleSTFTDiscriminator(nn.Module):
    """Several :class:`DiscriminatorSTFT` at different STFT resolutions.

    Args:
        filters: channels of the first conv of every sub-discriminator.
        in_channels: audio channels ``C`` (1 when ``sep_channels``).
        out_channels: channels of the logits.
        sep_channels: fold the channels of a ``[B, C, T]`` input into the batch
            (``[B * C, 1, T]``) so a mono discriminator judges each channel separately
            (AudioCraft 1.3.0 accepts this flag but ignores it).
        n_ffts, hop_lengths, win_lengths: STFT sizes in samples, one entry per sub-discriminator.
        max_filters, filters_scale, kernel_size, dilations, stride, normalized, norm, activation,
            activation_params: see :class:`DiscriminatorSTFT`.
    ``forward(x [B, C, T])`` -> ``(logits, fmaps)``: one logits tensor
    ``[B, out_channels, frames_i, F'_i]`` per sub-discriminator, and for each its feature maps.
    """

    def __init__(self, filters: int, in_channels: int = 1, out_channels: int = 1, sep_channels: bool = False,
                 n_ffts: Sequence[int] = (1024, 2048, 512), hop_lengths: Sequence[int] = (256, 512, 128),
                 win_lengths: Sequence[int] = (1024, 2048, 512), max_filters: int = 1024, filters_scale: int = 1,
                 kernel_size: tuple[int, int] = (3, 9), dilations: Sequence[int] = (1, 2, 4),
                 stride: tuple[int, int] = (1, 2), normalized: bool = True, norm: str = "weight_norm",
                 activation: str = "LeakyReLU", activation_params: dict | None = None) -> None:
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError(f"`n_ffts`, `hop_lengths` and `win_lengths` need one entry per sub-discriminator, got "
                             f"lengths {len(n_ffts)}, {len(hop_lengths)} and {len(win_lengths)}.")
        if sep_channels and in_channels != 1:
            raise ValueError(f"With sep_channels=True each channel is judged alone: set in_channels=1, "
                             f"got in_channels={in_channels}.")
        self.in_channels = in_channels
        self.sep_channels = sep_channels
        self.discriminators = nn.ModuleList([
            DiscriminatorSTFT(filters, in_channels=in_channels, out_channels=out_channels, n_fft=n_fft,
                              hop_length=hop, win_length=win, max_filters=max_filters, filters_scale=filters_scale,
                              kernel_size=kernel_size, dilations=dilations, stride=stride, normalized=normalized,
                              norm=norm, activation=activation, activation_params=activation_params)
            for n_fft, hop, win in zip(n_ffts, hop_lengths, win_lengths)
        ])

    @property
    def num_discriminators(self) -> int:
        """Number of sub-discriminators (STFT resolutions)."""
        return len(self.discriminators)

    def forward(self, x: torch.Tensor) -> MultiDiscriminatorOutput:
        """Waveform ``[B, C, T]`` -> ``(logits, fmaps)`` (see the class docstring)."""
        if x.dim() != 3:
            raise ValueError(f"MultiScaleSTFTDiscriminator expects a waveform [B, C, T], got shape {tuple(x.shape)}.")
        if self.sep_channels:
            x = x.reshape(-1, 1, x.shape[-1])
        elif x.shape[1] != self.in_channels:
            raise ValueError(f"MultiScaleSTFTDiscriminator was built for in_channels={self.in_channels}, got a "
                             f"[B, C, T] input with C={x.shape[1]}; rebuild it or pass sep_channels=True for mono.")
        longest = max(disc.n_fft for disc in self.discriminators)
        if x.shape[-1] < longest:
            raise ValueError(f"MultiScaleSTFTDiscriminator needs at least n_fft={longest} samples, got "
                             f"T={x.shape[-1]}; feed longer segments or use smaller n_ffts.")
        logits, fmaps = [], []
        for disc in self.discriminators:
            logit, fmap = disc(x)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps
