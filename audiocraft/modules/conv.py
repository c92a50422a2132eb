"""1D convolutions with built-in "same length" padding, causal mode and weight norm.

These are the building blocks of the SEANet encoder/decoder used by EnCodec.
The module tree and parameter names mirror AudioCraft's released checkpoints:
a :class:`StreamableConv1d` holds ``conv`` (a :class:`NormConv1d`), which holds
``conv`` (the actual convolution, with ``weight_g``/``weight_v``/``bias`` when
weight norm is on) and ``norm`` (identity or a GroupNorm). Hence state-dict keys
such as ``encoder.model.0.conv.conv.weight_g``.

Shapes follow the package convention: inputs and outputs are ``[B, C, T]``.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

#: Normalisations a convolution of this module accepts.
CONV_NORMALIZATIONS = ("none", "weight_norm", "time_group_norm")
#: Padding modes accepted by :class:`StreamableConv1d` (those of ``torch.nn.functional.pad``).
PAD_MODES = ("constant", "reflect", "replicate", "circular")


# --------------------------------------------------------------------------- padding helpers

def get_extra_padding_for_conv1d(x: torch.Tensor, kernel_size: int, stride: int, padding_total: int = 0) -> int:
    """Right padding needed so that the last convolution window is complete.

    Without it, a strided convolution silently drops the last samples, and the
    matching transposed convolution could not rebuild the full length.

    Args:
        x: signal ``[..., T]``.
        kernel_size: effective kernel size in samples (dilation included).
        stride: stride in samples.
        padding_total: padding already planned on both sides, in samples.
    Returns:
        Number of zero samples to append on the right (>= 0).
    """
    length = x.shape[-1]
    num_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(num_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def pad1d(x: torch.Tensor, paddings: tuple[int, int], mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """``F.pad`` on the last axis that also accepts reflect padding of very short signals.

    Reflect padding needs more samples than the padding amount; when the signal is
    too short, zeros are first appended on the right, the reflection is done, and the
    temporary zeros are cut off again.

    Args:
        x: signal ``[..., T]``.
        paddings: ``(left, right)`` padding in samples, both >= 0.
        mode: one of :data:`PAD_MODES`.
        value: fill value for ``mode='constant'``.
    Returns:
        Padded signal ``[..., left + T + right]``.
    """
    left, right = paddings
    if left < 0 or right < 0:
        raise ValueError(f"pad1d: `paddings` must be non-negative, got {paddings}.")
    if mode != "reflect":
        return F.pad(x, (left, right), mode, value)
    length = x.shape[-1]
    needed = max(left, right)
    tmp = 0
    if length <= needed:
        tmp = needed - length + 1
        x = F.pad(x, (0, tmp))
    padded = F.pad(x, (left, right), mode, value)
    return padded[..., : padded.shape[-1] - tmp]


def unpad1d(x: torch.Tensor, paddings: tuple[int, int]) -> torch.Tensor:
    """Remove ``(left, right)`` samples from the last axis of ``x`` (``[..., T]``)."""
    left, right = paddings
    if left < 0 or right < 0 or left + right > x.shape[-1]:
        raise ValueError(f"unpad1d: cannot remove {paddings} samples from a signal of length {x.shape[-1]}.")
    return x[..., left: x.shape[-1] - right]


# --------------------------------------------------------------------------- weight norm

def _norm_over_all_but_first_dim(weight: torch.Tensor) -> torch.Tensor:
    flat = weight.reshape(weight.shape[0], -1)
    return torch.linalg.vector_norm(flat, dim=1).view(-1, *([1] * (weight.dim() - 1)))


class _WeightNormMixin:
    """Replaces the ``weight`` parameter of a conv by ``weight_g`` (magnitude) and ``weight_v`` (direction).

    The effective weight is ``weight_v * weight_g / ||weight_v||`` with the norm taken over
    every axis but the first, i.e. exactly what ``torch.nn.utils.weight_norm(module)``
    (dim 0) computes and stores. It is implemented here because that helper is deprecated
    and its replacement names the parameters differently from the released checkpoints.
    """

    def _split_weight(self) -> None:
        weight = self.weight.detach()
        del self._parameters["weight"]
        self.weight_g = nn.Parameter(_norm_over_all_but_first_dim(weight))
        self.weight_v = nn.Parameter(weight.clone())

    def normalized_weight(self) -> torch.Tensor:
        """The effective convolution kernel built from ``weight_g`` and ``weight_v``.

        Without autograd (inference) it is computed once and reused until either parameter
        changes (in place, as an optimizer or ``load_state_dict`` does, or by moving to another
        device or dtype): rebuilding it was 10% of a codec decode.
        """
        if torch.is_grad_enabled():
            return torch._weight_norm(self.weight_v, self.weight_g, 0)
        key = tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in (self.weight_v, self.weight_g))
        cached = self.__dict__.get("_normalized_cache")
        if cached is None or cached[0] != key:
            cached = (key, torch._weight_norm(self.weight_v, self.weight_g, 0))
            self.__dict__["_normalized_cache"] = cached
        return cached[1]


class WeightNormConv1d(_WeightNormMixin, nn.Conv1d):
    """``nn.Conv1d`` whose kernel is weight-normalised (parameters ``weight_g``, ``weight_v``, ``bias``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


class WeightNormConvTranspose1d(_WeightNormMixin, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with a weight-normalised kernel; no implicit padding is supported."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(x, self.normalized_weight(), self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


def _check_norm(norm: str, causal: bool) -> None:
    if norm not in CONV_NORMALIZATIONS:
        raise ValueError(f"`norm` must be one of {CONV_NORMALIZATIONS}, got {norm!r}.")
    if norm == "time_group_norm" and causal:
        raise ValueError("`norm='time_group_norm'` normalises over the whole time axis and cannot be causal; "
                         "use norm='weight_norm' or 'none' with causal=True.")


def _output_norm(norm: str, channels: int, norm_params: dict | None) -> nn.Module:
    """The normalisation applied after the convolution: GroupNorm(1) for 'time_group_norm', else identity."""
    if norm == "time_group_norm":
        return nn.GroupNorm(1, channels, **(norm_params or {}))
    return nn.Identity()


class NormConv1d(nn.Module):
    """A ``Conv1d`` plus its normalisation: weight norm, a time GroupNorm, or nothing.

    Args:
        in_channels, out_channels: channel counts ``C_in`` -> ``C_out``.
        kernel_size, stride, dilation, groups, bias: as in ``nn.Conv1d`` (no implicit padding).
        causal: only used to reject normalisations that look at future samples.
        norm: one of :data:`CONV_NORMALIZATIONS`.
        norm_params: extra keyword arguments of ``nn.GroupNorm`` for ``time_group_norm``.
    Input ``[B, C_in, T]`` -> output ``[B, C_out, T']``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True, causal: bool = False,
                 norm: str = "none", norm_params: dict | None = None) -> None:
        super().__init__()
        _check_norm(norm, causal)
        conv_cls = WeightNormConv1d if norm == "weight_norm" else nn.Conv1d
        self.conv = conv_cls(in_channels, out_channels, kernel_size, stride,
                             dilation=dilation, groups=groups, bias=bias)
        self.norm = _output_norm(norm, out_channels, norm_params)
        self.norm_type = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class NormConvTranspose1d(nn.Module):
    """A ``ConvTranspose1d`` plus its normalisation (see :class:`NormConv1d`).

    Input ``[B, C_in, T]`` -> output ``[B, C_out, (T - 1) * stride + kernel_size]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True, causal: bool = False,
                 norm: str = "none", norm_params: dict | None = None) -> None:
        super().__init__()
        _check_norm(norm, causal)
        conv_cls = WeightNormConvTranspose1d if norm == "weight_norm" else nn.ConvTranspose1d
        self.convtr = conv_cls(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)
        self.norm = _output_norm(norm, out_channels, norm_params)
        self.norm_type = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.convtr(x))


# --------------------------------------------------------------------------- streamable convs

class StreamableConv1d(nn.Module):
    """Conv1d that pads its input itself so that ``T' = ceil(T / stride)``.

    The total padding is ``effective_kernel - stride`` (effective kernel =
    ``(kernel_size - 1) * dilation + 1``). Non-causal: split in two, the extra sample
    (odd total) going left; causal: everything on the left. Then extra right padding
    completes the last window (:func:`get_extra_padding_for_conv1d`).

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: kernel size in samples.
        stride: stride in samples.
        dilation: dilation of the kernel.
        groups, bias: as in ``nn.Conv1d``.
        causal: pad only on the left so output frame t never sees input after t.
        norm: one of :data:`CONV_NORMALIZATIONS`.
        norm_params: extra arguments for the normalisation module.
        pad_mode: one of :data:`PAD_MODES` (released EnCodec models use ``'constant'``).
    Input ``[B, C_in, T]`` -> output ``[B, C_out, ceil(T / stride)]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True, causal: bool = False,
                 norm: str = "none", norm_params: dict | None = None, pad_mode: str = "reflect") -> None:
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f"`pad_mode` must be one of {PAD_MODES}, got {pad_mode!r}.")
        if stride > 1 and dilation > 1:
            warnings.warn(f"StreamableConv1d with both stride > 1 and dilation > 1 (kernel_size={kernel_size}, "
                          f"stride={stride}, dilation={dilation}) is unusual; check the configuration.")
        self.conv = NormConv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation,
                               groups=groups, bias=bias, causal=causal, norm=norm, norm_params=norm_params)
        self.causal = causal
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv.conv
        stride = conv.stride[0]
        kernel = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
        padding_total = kernel - stride
        extra = get_extra_padding_for_conv1d(x, kernel, stride, padding_total)
        if self.causal:
            left, right = padding_total, 0
        else:
            right = padding_total // 2
            left = padding_total - right
        return self.conv(pad1d(x, (left, right + extra), mode=self.pad_mode))


class StreamableConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims its own output so that ``T' = T * stride``.

    ``kernel_size - stride`` samples are removed: non-causal, split in two with the
    extra one on the left; causal, ``ceil(total * trim_right_ratio)`` on the right and
    the rest on the left. Extra padding added by the encoder is not removed here (the
    caller cuts the final output to the input length).

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride: in samples.
        causal: causal trimming (see above).
        norm: one of :data:`CONV_NORMALIZATIONS`.
        trim_right_ratio: share of the trimming done on the right, in [0, 1]; must be 1 unless causal.
        norm_params: extra arguments for the normalisation module.
    Input ``[B, C_in, T]`` -> output ``[B, C_out, T * stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 causal: bool = False, norm: str = "none", trim_right_ratio: float = 1.0,
                 norm_params: dict | None = None) -> None:
        super().__init__()
        if not 0.0 <= trim_right_ratio <= 1.0:
            raise ValueError(f"`trim_right_ratio` must be in [0, 1], got {trim_right_ratio}.")
        if not causal and trim_right_ratio != 1.0:
            raise ValueError(f"`trim_right_ratio`={trim_right_ratio} only applies to causal convolutions; "
                             "set causal=True or trim_right_ratio=1.0.")
        self.convtr = NormConvTranspose1d(in_channels, out_channels, kernel_size, stride,
                                          causal=causal, norm=norm, norm_params=norm_params)
        self.causal = causal
        self.trim_right_ratio = trim_right_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        convtr = self.convtr.convtr
        padding_total = convtr.kernel_size[0] - convtr.stride[0]
        y = self.convtr(x)
        if self.causal:
            right = math.ceil(padding_total * self.trim_right_ratio)
        else:
            right = padding_total // 2
        return unpad1d(y, (padding_total - right, right))
