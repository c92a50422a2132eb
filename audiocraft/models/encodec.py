"""Compression models: the audio tokenizers a language model works on.

:class:`CompressionModel` is the narrow interface (waveform ``[B, C, T]`` <-> codes
``[B, K, T']``); :class:`EncodecModel` is AudioCraft's EnCodec (SEANet + RVQ);
:class:`InterleaveStereoCompressionModel` makes a stereo tokenizer from a mono one;
:class:`HFEncodecCompressionModel` adapts a ``transformers`` EnCodec.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ..modules.seanet import NotStreamableError, SEANetDecoder, SEANetStreamDecoder
from ..quantization import BaseQuantizer, DummyQuantizer, QuantizedResult

if TYPE_CHECKING:  # transformers is optional and imported only where used
    from transformers import EncodecModel as TransformersEncodecModel


class CompressionModel(ABC, nn.Module):
    """Interface of an audio tokenizer usable by a language model.

    Shapes: waveforms ``[B, C, T]`` (T in samples at :attr:`sample_rate`), codes ``[B, K, T']``
    int64 (T' frames at :attr:`frame_rate`), latents ``[B, D, T']``.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor) -> QuantizedResult:
        """Full training pass: waveform ``[B, C, T]`` -> result whose ``x`` is the reconstruction ``[B, C, T]``."""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Waveform ``[B, C, T]`` -> ``(codes [B, K, T'] int64, scale [B, 1] or None)``."""

    @abstractmethod
    def decode(self, codes: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``[B, K, T']`` (+ scale from :meth:`encode`) -> waveform ``[B, C, T' * hop]``.

        The output may be a few samples longer than the encoded input (encoder padding).
        """

    @abstractmethod
    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T']`` -> continuous latent ``[B, D, T']``."""

    @property
    @abstractmethod
    def channels(self) -> int:
        """Audio channels C."""

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        """Code frames per second (Hz)."""

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Audio sample rate (Hz)."""

    @property
    @abstractmethod
    def cardinality(self) -> int:
        """Codebook size V: codes are in ``[0, V)``."""

    @property
    @abstractmethod
    def num_codebooks(self) -> int:
        """Codebooks K produced by :meth:`encode`."""

    @property
    @abstractmethod
    def total_codebooks(self) -> int:
        """Largest number of codebooks available."""

    @abstractmethod
    def set_num_codebooks(self, n: int) -> None:
        """Make :meth:`encode` produce ``n`` codebooks."""

    # ------------------------------------------------------------------ input checks
    def _check_waveform(self, x: torch.Tensor, method: str) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}.{method}: `x` must be a torch.Tensor waveform [B, C, T], got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(f"{name}.{method}: `x` must be a float waveform, got dtype {x.dtype}; "
                            "convert it with x.float() (values in [-1, 1]).")
        if x.dim() != 3 or x.shape[1] != self.channels:
            hint = " Add the channel axis with x.unsqueeze(1)." if x.dim() == 2 and self.channels == 1 else ""
            raise ValueError(f"{name}.{method}: `x` must have shape [B, C, T] with C={self.channels} channels, "
                             f"got shape {tuple(x.shape)}.{hint}")
        if x.shape[-1] == 0:
            raise ValueError(f"{name}.{method}: `x` has no samples (shape {tuple(x.shape)}).")

    def _check_codes(self, codes: torch.Tensor, method: str, allowed_codebooks: str,
                     is_allowed: Callable[[int], bool]) -> None:
        name = type(self).__name__
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"{name}.{method}: `codes` must be a torch.Tensor [B, K, T], got {type(codes).__name__}.")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise TypeError(f"{name}.{method}: `codes` must be an integer tensor (int64), got dtype {codes.dtype}.")
        if codes.dim() != 3:
            raise ValueError(f"{name}.{method}: `codes` must have shape [B, K, T], got shape {tuple(codes.shape)}.")
        if not is_allowed(codes.shape[1]):
            raise ValueError(f"{name}.{method}: `codes` has K={codes.shape[1]} codebooks, expected "
                             f"{allowed_codebooks}. Pass the codes returned by encode().")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cardinality):
            raise ValueError(f"{name}.{method}: `codes` must be in [0, {self.cardinality}), got values in "
                             f"[{int(codes.min())}, {int(codes.max())}]. Codes from another model or special "
                             "tokens (e.g. the LM's padding id) cannot be decoded.")

    # ------------------------------------------------------------------ incremental decoding
    def stream_decoder(self) -> "StreamDecoder":
        """A :class:`StreamDecoder` turning successive code chunks into successive audio chunks.

        This generic version keeps the codes and decodes everything at ``flush()``;
        :class:`EncodecModel` and :class:`InterleaveStereoCompressionModel` release audio as they go.
        """
        return _DecodeAtFlush(self)

    # ------------------------------------------------------------------ loading
    @staticmethod
    def get_pretrained(name_or_path: str | Path, device: torch.device | str = "cpu") -> "CompressionModel":
        """Load a pretrained compression model, in eval mode, on ``device``.

        Args:
            name_or_path: one of
                - a local AudioCraft checkpoint: a ``compression_state_dict.bin`` file or a folder holding one;
                - a local folder saved by ``transformers`` (``config.json`` of an EnCodec model);
                - a Hugging Face model name of a ``transformers`` EnCodec, e.g. ``'facebook/encodec_32khz'``;
                - ``'debug_compression_model'``: a tiny random model for tests.
            device: where to put the model.
        """
        from . import builders, loaders

        name = str(name_or_path)
        if name == "debug_compression_model":
            return builders.get_debug_compression_model(device)
        path = Path(name).expanduser()
        if path.is_file() or (path.is_dir() and (path / loaders.COMPRESSION_CHECKPOINT).is_file()):
            model: CompressionModel = loaders.load_compression_model(path, device=device)
        elif path.is_dir() and (path / "config.json").is_file():
            model = HFEncodecCompressionModel.from_pretrained(str(path))
        elif path.exists():
            raise FileNotFoundError(f"`name_or_path` folder {str(path)!r} holds neither "
                                    f"{loaders.COMPRESSION_CHECKPOINT} (AudioCraft) nor config.json (transformers).")
        elif loaders.looks_like_local_path(name):
            raise FileNotFoundError(f"`name_or_path` {name!r} looks like a local path but does not exist; "
                                    "check the path, or pass a Hugging Face name such as 'facebook/encodec_32khz'.")
        else:
            model = HFEncodecCompressionModel.from_pretrained(name)
        return model.to(device).eval()


class StreamDecoder:
    """Incremental decoding: ``push(codes [B, K, t]) -> audio [B, C, n]`` repeatedly, then ``flush()``.

    The concatenation of every returned chunk equals ``model.decode(all_codes)`` (up to float
    rounding); ``n`` may be 0 while the decoder waits for look-ahead frames.
    """

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def flush(self) -> torch.Tensor:
        raise NotImplementedError


class _DecodeAtFlush(StreamDecoder):
    def __init__(self, model: CompressionModel) -> None:
        self.model, self.chunks = model, []

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        self.chunks.append(codes)
        return torch.zeros(codes.shape[0], self.model.channels, 0, device=codes.device)

    def flush(self) -> torch.Tensor:
        if not self.chunks:
            return torch.zeros(0, self.model.channels, 0)
        codes, self.chunks = torch.cat(self.chunks, dim=-1), []
        return self.model.decode(codes)


class _EncodecStreamDecoder(StreamDecoder):
    def __init__(self, model: "EncodecModel", scale: torch.Tensor | None) -> None:
        self.model, self.scale = model, scale
        self.seanet = SEANetStreamDecoder(model.decoder)

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.postprocess(self.seanet.push(self.model.decode_latent(codes)), self.scale)

    def flush(self) -> torch.Tensor:
        return self.model.postprocess(self.seanet.flush(), self.scale)


class _StereoStreamDecoder(StreamDecoder):
    def __init__(self, model: "InterleaveStereoCompressionModel") -> None:
        self.model = model
        self.left, self.right = model.model.stream_decoder(), model.model.stream_decoder()
        self.pending: torch.Tensor | None = None  # an odd trailing step (per_timestep)

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        if self.pending is not None:
            codes, self.pending = torch.cat([self.pending, codes], dim=-1), None
        if self.model.per_timestep and codes.shape[-1] % 2:
            codes, self.pending = codes[..., :-1], codes[..., -1:]
        left, right = self.model._validated_split(codes, "stream_decoder().push")
        return torch.cat([self.left.push(left), self.right.push(right)], dim=1)

    def flush(self) -> torch.Tensor:
        if self.pending is not None:
            raise ValueError("stream_decoder().flush: an odd number of steps was pushed to a per_timestep "
                             "stereo model; every left step needs its right step.")
        return torch.cat([self.left.flush(), self.right.flush()], dim=1)


class EncodecModel(CompressionModel):
    """EnCodec: convolutional encoder, residual vector quantizer, convolutional decoder.

    Args:
        encoder: waveform ``[B, C, T]`` -> latent ``[B, D, T']`` (e.g. ``SEANetEncoder``).
        decoder: latent ``[B, D, T']`` -> waveform ``[B, C, T' * hop]`` (e.g. ``SEANetDecoder``).
        quantizer: latent <-> codes (e.g. ``ResidualVectorQuantizer``).
        frame_rate: latent frames per second, ``sample_rate / hop`` (Hz).
        sample_rate: audio sample rate (Hz).
        channels: audio channels C.
        causal: the encoder/decoder are causal (incompatible with ``renormalize``).
        renormalize: divide each input by its RMS before encoding; the RMS is returned as ``scale``
            by :meth:`encode` and multiplied back by :meth:`decode`.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, quantizer: BaseQuantizer, frame_rate: float,
                 sample_rate: int, channels: int, causal: bool = False, renormalize: bool = False) -> None:
        super().__init__()
        if frame_rate <= 0 or sample_rate <= 0 or channels <= 0:
            raise ValueError(f"`frame_rate`, `sample_rate` and `channels` must be positive, got "
                             f"{frame_rate}, {sample_rate}, {channels}.")
        if causal and renormalize:
            raise ValueError("`renormalize=True` is not supported with `causal=True` (the scale would depend on "
                             "future samples); disable one of them.")
        self.encoder = encoder
        self.decoder = decoder
        self.quantizer = quantizer
        self._frame_rate = float(frame_rate)
        self._sample_rate = int(sample_rate)
        self._channels = int(channels)
        self.causal = causal
        self.renormalize = renormalize

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def frame_rate(self) -> float:
        return self._frame_rate

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def cardinality(self) -> int:
        return self.quantizer.codebook_size

    @property
    def num_codebooks(self) -> int:
        return self.quantizer.num_codebooks

    @property
    def total_codebooks(self) -> int:
        return self.quantizer.total_codebooks

    def set_num_codebooks(self, n: int) -> None:
        self.quantizer.set_num_codebooks(n)

    def preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Renormalise ``x`` ``[B, C, T]`` if enabled; returns ``(x, scale [B, 1] or None)``."""
        if not self.renormalize:
            return x, None
        rms = x.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()
        scale = rms + 1e-8
        return x / scale, scale.view(-1, 1)

    def postprocess(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Undo :meth:`preprocess` on a waveform ``[B, C, T]``."""
        return x if scale is None else x * scale.view(-1, 1, 1)

    def forward(self, x: torch.Tensor,
                transform_codes: Callable[[torch.Tensor], torch.Tensor] | None = None) -> QuantizedResult:
        """Encode, quantize and decode ``x`` ``[B, C, T]``.

        Returns the quantizer's :class:`QuantizedResult` with ``x`` replaced by the reconstruction
        ``[B, C, T]`` (cut to the input length); ``penalty`` is the commitment loss.
        ``transform_codes`` (codes ``[B, K, T']`` -> codes of the same shape), if given, changes the
        codes before they are decoded; ``codes`` is then the transformed codes, and no gradient
        flows from the decoder back to the encoder.
        """
        self._check_waveform(x, "forward")
        length = x.shape[-1]
        x, scale = self.preprocess(x)
        result = self.quantizer(self.encoder(x), self.frame_rate)
        latent = result.x
        if transform_codes is not None:
            codes = transform_codes(result.codes)
            if codes.shape != result.codes.shape:
                raise ValueError(f"transform_codes changed the codes' shape {tuple(result.codes.shape)} "
                                 f"to {tuple(codes.shape)}; it must keep it.")
            result.codes = codes
            latent = self.decode_latent(codes)
        out = self.decoder(latent)
        if out.shape[-1] < length:
            raise RuntimeError(f"decoder output ({out.shape[-1]} samples) is shorter than the input ({length}); "
                               "the encoder and decoder strides do not match.")
        result.x = self.postprocess(out[..., :length], scale)
        return result

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Waveform ``[B, C, T]`` -> ``(codes [B, K, ceil(T / hop)] int64, scale [B, 1] or None)``."""
        self._check_waveform(x, "encode")
        x, scale = self.preprocess(x)
        return self.quantizer.encode(self.encoder(x)), scale

    def decode(self, codes: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``[B, K, T']`` (1 <= K <= total_codebooks) -> waveform ``[B, C, T' * hop]``."""
        if scale is not None and not self.renormalize:
            raise ValueError("EncodecModel.decode: `scale` was given but this model does not renormalise "
                             "(renormalize=False); pass scale=None.")
        emb = self.decode_latent(codes)
        return self.postprocess(self.decoder(emb), scale)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T']`` -> quantized latent ``[B, D, T']``."""
        if isinstance(self.quantizer, DummyQuantizer):  # float pass-through "codes" [B, 1, D, T']
            return self.quantizer.decode(codes)
        total = self.total_codebooks
        self._check_codes(codes, "decode", f"1 to {total}", lambda k: 1 <= k <= total)
        return self.quantizer.decode(codes)

    def stream_decoder(self, scale: torch.Tensor | None = None) -> StreamDecoder:
        """Incremental decoder (see :class:`StreamDecoder`); ``scale`` as returned by :meth:`encode`.

        With a SEANet decoder, audio comes out a few frames behind the codes (the convolutions'
        look-ahead) and the past is never re-decoded.
        """
        if scale is not None and not self.renormalize:
            raise ValueError("EncodecModel.stream_decoder: `scale` was given but this model does not renormalise.")
        if isinstance(self.decoder, SEANetDecoder):
            try:
                return _EncodecStreamDecoder(self, scale)
            except NotStreamableError:
                pass
        if scale is None:
            return _DecodeAtFlush(self)
        raise ValueError("EncodecModel.stream_decoder: this decoder cannot decode incrementally with a `scale`; "
                         "use decode() instead.")


class InterleaveStereoCompressionModel(CompressionModel):
    """Stereo tokenizer from a mono one: left and right are encoded separately and interleaved.

    With ``per_timestep=False`` the codes are ``[B, 2K, T']`` ordered
    ``L_0, R_0, L_1, R_1, ...`` (codebook k of the left channel at row ``2k``, right at ``2k+1``).
    With ``per_timestep=True`` they are ``[B, K, 2T']`` with frames ``L_t, R_t`` at ``2t, 2t+1``,
    and the frame rate doubles. Same layouts as AudioCraft.

    Args:
        model: a mono :class:`CompressionModel`.
        per_timestep: interleave along time instead of codebooks.
    """

    def __init__(self, model: CompressionModel, per_timestep: bool = False) -> None:
        super().__init__()
        if model.channels != 1:
            raise ValueError(f"`model` must be a mono compression model (channels=1), got channels={model.channels}.")
        self.model = model
        self.per_timestep = per_timestep

    @property
    def channels(self) -> int:
        return 2

    @property
    def frame_rate(self) -> float:
        return self.model.frame_rate * (2 if self.per_timestep else 1)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def cardinality(self) -> int:
        return self.model.cardinality

    @property
    def num_codebooks(self) -> int:
        """Codebooks after interleaving (twice the mono count unless ``per_timestep``)."""
        return self.model.num_codebooks * (1 if self.per_timestep else 2)

    @property
    def total_codebooks(self) -> int:
        """Largest :attr:`num_codebooks` reachable (after interleaving)."""
        return self.model.total_codebooks * (1 if self.per_timestep else 2)

    def set_num_codebooks(self, n: int) -> None:
        """Set the number of codebooks **per channel** (before interleaving), as AudioCraft does."""
        self.model.set_num_codebooks(n)

    def forward(self, x: torch.Tensor) -> QuantizedResult:
        raise NotImplementedError("InterleaveStereoCompressionModel is inference-only: use encode() and decode(), "
                                  "or train the wrapped mono model.")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stereo waveform ``[B, 2, T]`` -> ``(codes, scale [B, 2] or None)`` (layout: see class doc)."""
        self._check_waveform(x, "encode")
        left, left_scale = self.model.encode(x[:, :1])
        right, right_scale = self.model.encode(x[:, 1:2])
        batch, k, frames = left.shape
        if self.per_timestep:
            codes = torch.stack([left, right], dim=-1).reshape(batch, k, frames * 2)
        else:
            codes = torch.stack([left, right], dim=2).reshape(batch, k * 2, frames)
        scale = None
        if left_scale is not None and right_scale is not None:
            scale = torch.cat([left_scale.view(batch, 1), right_scale.view(batch, 1)], dim=1)
        return codes, scale

    def split_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interleaved codes -> ``(left, right)`` mono codes ``[B, K, T']`` each."""
        batch, k, frames = codes.shape
        if self.per_timestep:
            pairs = codes.reshape(batch, k, frames // 2, 2)
            return pairs[..., 0], pairs[..., 1]
        pairs = codes.reshape(batch, k // 2, 2, frames)
        return pairs[:, :, 0], pairs[:, :, 1]

    def _validated_split(self, codes: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.per_timestep:
            total = self.model.total_codebooks
            self._check_codes(codes, method, f"1 to {total}", lambda k: 1 <= k <= total)
            if codes.shape[-1] % 2:
                raise ValueError(f"{type(self).__name__}.{method}: with per_timestep=True `codes` must have an even "
                                 f"number of steps (left/right pairs), got T={codes.shape[-1]}.")
        else:
            total = self.total_codebooks
            self._check_codes(codes, method, f"an even number from 2 to {total}",
                              lambda k: k % 2 == 0 and 2 <= k <= total)
        return self.split_codes(codes)

    def decode(self, codes: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Interleaved codes (+ scale ``[B, 2]``) -> stereo waveform ``[B, 2, T]``."""
        left, right = self._validated_split(codes, "decode")
        left_scale = right_scale = None
        if scale is not None:
            if scale.dim() < 2 or scale.shape[0] != codes.shape[0] or scale.shape[1] != 2:
                raise ValueError(f"{type(self).__name__}.decode: `scale` must have shape [B, 2] (one scale per "
                                 f"channel, as returned by encode), got {tuple(scale.shape)}.")
            left_scale, right_scale = scale[:, 0:1], scale[:, 1:2]
        return torch.cat([self.model.decode(left, left_scale), self.model.decode(right, right_scale)], dim=1)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Interleaved codes -> latents of left and right stacked on the feature axis ``[B, 2D, T']``."""
        left, right = self._validated_split(codes, "decode_latent")
        return torch.cat([self.model.decode_latent(left), self.model.decode_latent(right)], dim=1)

    def stream_decoder(self) -> StreamDecoder:
        """Incremental stereo decoding with one mono stream decoder per channel."""
        return _StereoStreamDecoder(self)


class HFEncodecCompressionModel(CompressionModel):
    """Adapter exposing a ``transformers.EncodecModel`` through :class:`CompressionModel`.

    The number of codebooks follows the model's ``target_bandwidths``: each bandwidth
    ``bw`` (kbit/s) allows ``bw * 1000 / (frame_rate * log2(V))`` codebooks. Chunked models
    (``chunk_length_s`` set, e.g. the 48 kHz one) are not supported. Inference only.

    Args:
        model: a ``transformers.EncodecModel``.
    """

    def __init__(self, model: "TransformersEncodecModel") -> None:
        super().__init__()
        self.model = model
        config = model.config
        if getattr(config, "chunk_length_s", None) is not None:
            raise ValueError(f"`model` is a chunked EnCodec (chunk_length_s={config.chunk_length_s}); only "
                             "unchunked models such as facebook/encodec_24khz or facebook/encodec_32khz are supported.")
        bits = math.log2(self.cardinality)
        counts = [bw * 1000 / (self.frame_rate * bits) for bw in config.target_bandwidths]
        if any(abs(c - round(c)) > 1e-3 or round(c) < 1 for c in counts):
            raise ValueError(f"`model.config.target_bandwidths` {list(config.target_bandwidths)} kbit/s do not map to "
                             f"whole numbers of codebooks at {self.frame_rate} Hz x {bits:g} bits (got {counts}).")
        self.possible_num_codebooks = [int(round(c)) for c in counts]
        self._num_codebooks = max(self.possible_num_codebooks)

    @classmethod
    def from_pretrained(cls, name_or_path: str, cache_dir: str | None = None) -> "HFEncodecCompressionModel":
        """Load ``transformers.EncodecModel.from_pretrained(name_or_path)`` and wrap it."""
        try:
            from transformers import EncodecModel as TransformersEncodecModel
        except ImportError as exc:  # pragma: no cover - transformers is a declared dependency
            raise ImportError("Loading a transformers EnCodec needs the `transformers` package: "
                              "pip install transformers") from exc
        try:
            model = TransformersEncodecModel.from_pretrained(name_or_path, cache_dir=cache_dir)
        except OSError as exc:
            raise FileNotFoundError(
                f"Could not load the transformers EnCodec {name_or_path!r}: it is not a local folder and could not "
                "be fetched from the Hugging Face Hub (offline, HF_HUB_OFFLINE=1, or not in the cache). Download it "
                f"where you have a connection, e.g. `hf download {name_or_path} --local-dir <folder>`, "
                f"and pass that folder path instead. ({exc})") from exc
        return cls(model)

    @property
    def channels(self) -> int:
        return int(self.model.config.audio_channels)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / math.prod(self.model.config.upsampling_ratios)

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def cardinality(self) -> int:
        return int(self.model.config.codebook_size)

    @property
    def num_codebooks(self) -> int:
        return self._num_codebooks

    @property
    def total_codebooks(self) -> int:
        return max(self.possible_num_codebooks)

    def set_num_codebooks(self, n: int) -> None:
        """``n`` must be one of :attr:`possible_num_codebooks` (one per target bandwidth)."""
        if n not in self.possible_num_codebooks:
            raise ValueError(f"`n` must be one of {self.possible_num_codebooks} for this model "
                             f"(target bandwidths {list(self.model.config.target_bandwidths)} kbit/s), got {n!r}.")
        self._num_codebooks = n

    def forward(self, x: torch.Tensor) -> QuantizedResult:
        raise NotImplementedError("HFEncodecCompressionModel is inference-only: use encode() and decode().")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Waveform ``[B, C, T]`` -> ``(codes [B, K, T'], scale [B, 1] or None)``."""
        self._check_waveform(x, "encode")
        bandwidth = self.model.config.target_bandwidths[self.possible_num_codebooks.index(self._num_codebooks)]
        frames, scales, _ = self.model.encode(x, None, bandwidth, return_dict=False)
        return frames[0], scales[0]

    def decode(self, codes: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``[B, K, T']`` -> waveform ``[B, C, T' * hop]``."""
        total = self.total_codebooks
        self._check_codes(codes, "decode", f"1 to {total}", lambda k: 1 <= k <= total)
        return self.model.decode(codes[None], [scale], return_dict=False)[0]

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T']`` -> quantized latent ``[B, D, T']``."""
        total = self.total_codebooks
        self._check_codes(codes, "decode_latent", f"1 to {total}", lambda k: 1 <= k <= total)
        return self.model.quantizer.decode(codes.transpose(0, 1))
