"""BaseGenModel: a compression model and a language model behind one generation API.

Subclasses (:class:`~audiocraft.models.MusicGen`, :class:`~audiocraft.models.AudioGen`)
choose defaults, how attributes are built and how checkpoints are found. Everything
else lives here: text / unconditional / continuation generation, long generation by a
sliding window (``extend_stride``), streaming (audio chunks while tokens are produced),
progress reporting and input validation.

Shapes: audio ``[B, C, T]`` at :attr:`sample_rate`; tokens ``[B, K, T']`` at :attr:`frame_rate`.
"""
from __future__ import annotations

import contextlib
import math
import os
from abc import ABC, abstractmethod
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ..data.audio_utils import convert_audio
from ..modules.conditioners import ConditioningAttributes
from .encodec import CompressionModel
from .lm import LMModel

ProgressCallback = Callable[[int, int], None]
AudioOrTokens = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]


def _available_memory_bytes() -> Optional[int]:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


class BaseGenModel(ABC):
    """Generation API shared by MusicGen and AudioGen.

    Args:
        name: name of the model (hub name, folder or 'debug').
        compression_model: the audio tokenizer; frozen, in eval mode.
        lm: the language model over its tokens; in eval mode.
        max_duration: longest window the LM generates at once, in seconds (default: the
            training segment duration recorded in ``lm.cfg``).
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: LMModel,
                 max_duration: Optional[float] = None):
        self.name = name
        self.compression_model = compression_model.eval()
        self.lm = lm.eval()
        if lm.num_codebooks != compression_model.num_codebooks:
            raise ValueError(
                f"model {name!r}: the language model predicts {lm.num_codebooks} codebooks but its compression "
                f"model produces {compression_model.num_codebooks}; the two checkpoints do not belong together")
        if lm.card != compression_model.cardinality:
            raise ValueError(f"model {name!r}: the language model's codebook size ({lm.card}) differs from the "
                             f"compression model's ({compression_model.cardinality})")
        if max_duration is None:
            cfg = getattr(lm, "cfg", None)
            if cfg is None:
                raise ValueError("max_duration is required when the LM has no training config (lm.cfg)")
            max_duration = float(cfg.dataset.segment_duration)
        if max_duration <= 0:
            raise ValueError(f"max_duration must be > 0 seconds, got {max_duration}")
        self.max_duration: float = float(max_duration)
        self.device = next(iter(lm.parameters())).device
        self.generation_params: dict = {}
        self.duration = self.max_duration
        self.extend_stride: Optional[float] = None
        self._progress_callback: Optional[ProgressCallback] = None
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self.autocast = torch.autocast(device_type="cuda", dtype=dtype)
        else:
            self.autocast = contextlib.nullcontext()

    # ------------------------------------------------------------------ properties
    @property
    def frame_rate(self) -> float:
        """Token frames per second (Hz)."""
        return self.compression_model.frame_rate

    @property
    def sample_rate(self) -> int:
        """Sample rate of the generated audio (Hz)."""
        return self.compression_model.sample_rate

    @property
    def audio_channels(self) -> int:
        """Channels of the generated audio."""
        return self.compression_model.channels

    def set_custom_progress_callback(self, progress_callback: Optional[ProgressCallback] = None) -> None:
        """Call ``progress_callback(generated_frames, total_frames)`` during every generation (None to remove)."""
        self._progress_callback = progress_callback

    @abstractmethod
    def set_generation_params(self, *args, **kwargs) -> None:
        """Set the sampling parameters and the duration."""

    @staticmethod
    @abstractmethod
    def get_pretrained(name: Optional[str] = None, device=None) -> "BaseGenModel":
        """Load a pretrained model by name or from a folder."""

    def _apply_generation_params(self, default_stride: float, duration: float, extend_stride: Optional[float],
                                 use_sampling: bool, top_k: int, top_p: float, temperature: float,
                                 cfg_coef: float, two_step_cfg: bool, **extra) -> None:
        """Validate and store what ``set_generation_params`` received (shared by the subclasses).

        ``extend_stride`` None means ``default_stride``, shortened to 0.6 * max_duration for short windows.
        """
        if extend_stride is None:
            extend_stride = min(default_stride, 0.6 * self.max_duration)
        self._validate_common_params(duration, extend_stride)
        self._validate_sampling(use_sampling, top_k, top_p, temperature, cfg_coef)
        self.extend_stride = extend_stride
        self.duration = duration
        self.generation_params = {"use_sampling": use_sampling, "temp": temperature, "top_k": top_k,
                                  "top_p": top_p, "cfg_coef": cfg_coef, "two_step_cfg": two_step_cfg, **extra}

    # ------------------------------------------------------------------ validation helpers
    def _validate_common_params(self, duration: float, extend_stride: float) -> None:
        if not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration <= 0:
            raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
        if not isinstance(extend_stride, (int, float)) or extend_stride <= 0:
            raise ValueError(f"extend_stride must be a positive number of seconds, got {extend_stride!r}")
        if extend_stride >= self.max_duration:
            raise ValueError(f"extend_stride ({extend_stride} s) must be smaller than the model's window "
                             f"max_duration ({self.max_duration} s): each new window keeps "
                             "max_duration - extend_stride seconds of context")

    @staticmethod
    def _validate_sampling(use_sampling: bool, top_k: int, top_p: float, temperature: float, cfg_coef: float) -> None:
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {top_k!r}")
        if not 0.0 <= float(top_p) <= 1.0:
            raise ValueError(f"top_p must be in [0, 1] (0 disables it), got {top_p!r}")
        if float(temperature) < 0 or not math.isfinite(float(temperature)):
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        if not math.isfinite(float(cfg_coef)):
            raise ValueError(f"cfg_coef must be a finite number, got {cfg_coef!r}")

    @staticmethod
    def _validate_descriptions(descriptions, allow_none: bool) -> List[Optional[str]]:
        if isinstance(descriptions, str):
            raise TypeError("descriptions must be a list of strings, got a single string: wrap it in a list, "
                            f"e.g. [{descriptions!r}]")
        if not isinstance(descriptions, (list, tuple)):
            raise TypeError(f"descriptions must be a list of strings, got {type(descriptions).__name__}")
        if len(descriptions) == 0:
            raise ValueError("descriptions is empty: pass at least one text prompt "
                             "(or use generate_unconditional(num_samples))")
        for index, text in enumerate(descriptions):
            if text is None and allow_none:
                continue
            if not isinstance(text, str):
                raise TypeError(f"descriptions[{index}] must be a string, got {type(text).__name__}: {text!r}")
            if not text.strip():
                raise ValueError(f"descriptions[{index}] is empty: write a prompt, or pass None "
                                 "to generate without text for that sample")
        return list(descriptions)

    def _validate_audio(self, wav: torch.Tensor, sample_rate: int, argument: str) -> torch.Tensor:
        """Check a user waveform ([C, T] or [B, C, T]) and bring it to the model's rate and channels."""
        if not isinstance(wav, torch.Tensor):
            raise TypeError(f"{argument} must be a torch.Tensor [B, C, T], got {type(wav).__name__}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or sample_rate <= 0:
            raise ValueError(f"{argument}: the sample rate must be a positive number of Hz, got {sample_rate!r}")
        if wav.dim() == 2:
            wav = wav[None]
        if wav.dim() != 3:
            raise ValueError(f"{argument} must have shape [B, C, T] (or [C, T] for one sample), got {tuple(wav.shape)}")
        if wav.shape[1] not in (1, 2, self.audio_channels):
            raise ValueError(f"{argument} has {wav.shape[1]} channels (shape {tuple(wav.shape)}): expected mono or "
                             "stereo [B, C, T]; did you pass [B, T, C]? Use wav.transpose(1, 2)")
        if wav.shape[-1] == 0:
            raise ValueError(f"{argument} has no samples")
        if not wav.is_floating_point():
            raise TypeError(f"{argument} must be a float waveform in [-1, 1], got dtype {wav.dtype}")
        if not torch.isfinite(wav).all():
            raise ValueError(f"{argument} contains NaN or infinite values: clean the audio before using it")
        if not wav.abs().amax(dim=(1, 2)).gt(0).all():
            silent = [i for i, item in enumerate(wav) if not item.abs().max() > 0]
            raise ValueError(f"{argument} is silent (all zeros) for item(s) {silent}: pass real audio")
        return convert_audio(wav.float(), sample_rate, self.sample_rate, self.audio_channels).to(self.device)

    def _check_output_fits_in_memory(self, num_samples: int) -> None:
        frames = int(self.duration * self.frame_rate)
        samples = int(self.duration * self.sample_rate)
        needed = num_samples * (samples * self.audio_channels * 4 + frames * self.lm.num_codebooks * 8)
        available = _available_memory_bytes()
        if available is not None and needed > available:
            raise ValueError(
                f"duration={self.duration} s for {num_samples} sample(s) needs about {needed / 2**30:.1f} GiB for the "
                f"output alone, more than the {available / 2**30:.1f} GiB available: ask for a shorter duration or "
                "fewer samples")

    # ------------------------------------------------------------------ attributes
    def _prepare_tokens_and_attributes(self, descriptions: Sequence[Optional[str]],
                                       prompt: Optional[torch.Tensor]
                                       ) -> Tuple[List[ConditioningAttributes], Optional[torch.Tensor]]:
        """One ConditioningAttributes per description, and the prompt's tokens [B, K, T'] (or None)."""
        attributes = [ConditioningAttributes(text={"description": text}) for text in descriptions]
        prompt_tokens = None
        if prompt is not None:
            if len(descriptions) != len(prompt):
                raise ValueError(f"got {len(prompt)} prompt(s) but {len(descriptions)} description(s): "
                                 "give one description (or None) per prompt")
            with torch.no_grad():
                prompt_tokens, scale = self.compression_model.encode(prompt)
            if scale is not None:
                raise ValueError("this compression model renormalises audio (scale is not None); "
                                 "continuation needs a model without renormalisation")
        return attributes, prompt_tokens

    def _window_hook(self, attributes: List[ConditioningAttributes], time_offset: float) -> None:
        """Called before each window of long generation (melody models shift their melody)."""

    # ------------------------------------------------------------------ public API
    def generate_unconditional(self, num_samples: int, progress: bool = False,
                               return_tokens: bool = False) -> AudioOrTokens:
        """``num_samples`` samples with no text. Returns audio [B, C, T] (and tokens [B, K, T'])."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        attributes, prompt_tokens = self._prepare_tokens_and_attributes([None] * num_samples, None)
        return self._finish(self._generate_tokens(attributes, prompt_tokens, progress), return_tokens)

    def generate(self, descriptions: List[str], progress: bool = False, return_tokens: bool = False) -> AudioOrTokens:
        """One sample per text description. Returns audio [B, C, T] (and tokens [B, K, T'])."""
        descriptions = self._validate_descriptions(descriptions, allow_none=False)
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, None)
        return self._finish(self._generate_tokens(attributes, prompt_tokens, progress), return_tokens)

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int,
                              descriptions: Optional[List[Optional[str]]] = None, progress: bool = False,
                              return_tokens: bool = False) -> AudioOrTokens:
        """Continue audio prompts [B, C, T] (or [C, T]); the output starts with the prompt itself.

        Args:
            prompt: waveforms, any sample rate and mono/stereo (converted to the model's).
            prompt_sample_rate: sample rate of ``prompt`` in Hz.
            descriptions: optional text per prompt (None entries: no text).
        """
        prompt = self._validate_audio(prompt, prompt_sample_rate, "prompt")
        if descriptions is None:
            descriptions = [None] * len(prompt)
        descriptions = self._validate_descriptions(descriptions, allow_none=True)
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, prompt)
        return self._finish(self._generate_tokens(attributes, prompt_tokens, progress), return_tokens)

    def generate_audio(self, gen_tokens: torch.Tensor) -> torch.Tensor:
        """Decode tokens [B, K, T'] into audio [B, C, T]."""
        if not isinstance(gen_tokens, torch.Tensor) or gen_tokens.dim() != 3:
            raise ValueError(f"gen_tokens must be a tensor [B, K, T'], got "
                             f"{tuple(gen_tokens.shape) if isinstance(gen_tokens, torch.Tensor) else type(gen_tokens)}")
        with torch.no_grad():
            return self.compression_model.decode(gen_tokens, None)

    def stream(self, descriptions: Optional[List[Optional[str]]] = None, prompt: Optional[torch.Tensor] = None,
               prompt_sample_rate: Optional[int] = None, num_samples: Optional[int] = None,
               progress: bool = False, min_chunk_duration: float = 0.5) -> Iterator[torch.Tensor]:
        """Generate and yield decoded audio chunks [B, C, t] as soon as they are final.

        Playback can start while the rest is being generated; concatenated along time, the
        chunks equal the output of the matching ``generate*`` call with the same seed.

        Args:
            descriptions: text per sample (None: unconditional).
            prompt, prompt_sample_rate: optional audio to continue (its audio is yielded first).
            num_samples: batch size for unconditional streaming.
            min_chunk_duration: accumulate at least this many seconds of tokens per decoded chunk.
        """
        if prompt is not None:
            if prompt_sample_rate is None:
                raise ValueError("prompt_sample_rate is required with a prompt")
            prompt = self._validate_audio(prompt, prompt_sample_rate, "prompt")
            descriptions = [None] * len(prompt) if descriptions is None else descriptions
            descriptions = self._validate_descriptions(descriptions, allow_none=True)
        elif descriptions is not None:
            descriptions = self._validate_descriptions(descriptions, allow_none=False)
        else:
            if num_samples is None or num_samples <= 0:
                raise ValueError("give descriptions, a prompt, or num_samples > 0 for unconditional streaming")
            descriptions = [None] * num_samples
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, prompt)
        min_frames = max(1, int(min_chunk_duration * self.frame_rate))
        decoder = self.compression_model.stream_decoder()
        pending: List[torch.Tensor] = []
        with torch.no_grad():
            for chunk in self._iter_token_chunks(attributes, prompt_tokens, progress):
                pending.append(chunk)
                if sum(c.shape[-1] for c in pending) >= min_frames:
                    audio = decoder.push(torch.cat(pending, dim=-1))
                    pending = []
                    if audio.shape[-1]:
                        yield audio
            if pending:
                audio = decoder.push(torch.cat(pending, dim=-1))
                if audio.shape[-1]:
                    yield audio
            tail = decoder.flush()
            if tail.shape[-1]:
                yield tail

    # ------------------------------------------------------------------ generation core
    def _finish(self, tokens: torch.Tensor, return_tokens: bool) -> AudioOrTokens:
        audio = self.generate_audio(tokens)
        return (audio, tokens) if return_tokens else audio

    def _generate_tokens(self, attributes: List[ConditioningAttributes], prompt_tokens: Optional[torch.Tensor],
                         progress: bool = False) -> torch.Tensor:
        """Tokens [B, K, T'] for the current duration (prompt included)."""
        return torch.cat(list(self._iter_token_chunks(attributes, prompt_tokens, progress)), dim=-1)

    def _make_callback(self, total_frames: int, progress: bool):
        bar = None
        if progress and self._progress_callback is None:
            from tqdm import tqdm
            bar = tqdm(total=total_frames, unit="frame", desc=f"generating {self.duration:g} s", leave=False)

        def report(done: int) -> None:
            if self._progress_callback is not None:
                self._progress_callback(done, total_frames)
            if bar is not None:
                bar.update(done - bar.n)
                if done >= total_frames:
                    bar.close()
        return report

    def _iter_token_chunks(self, attributes: List[ConditioningAttributes], prompt_tokens: Optional[torch.Tensor],
                           progress: bool) -> Iterator[torch.Tensor]:
        """Yield token chunks [B, K, t] in time order: the prompt, then generated frames as they complete."""
        total_len = int(self.duration * self.frame_rate)
        window_len = int(min(self.duration, self.max_duration) * self.frame_rate)
        prompt_len = 0 if prompt_tokens is None else prompt_tokens.shape[-1]
        if prompt_len >= total_len:
            raise ValueError(f"the audio prompt ({prompt_len / self.frame_rate:.2f} s) is not shorter than the "
                             f"requested duration ({self.duration} s): raise the duration or shorten the prompt")
        if prompt_len > window_len:
            raise ValueError(f"the audio prompt ({prompt_len / self.frame_rate:.2f} s) is longer than the model's "
                             f"window ({self.max_duration} s): shorten the prompt")
        self._check_output_fits_in_memory(len(attributes) if attributes else 1)
        report = self._make_callback(total_len, progress)
        params = dict(self.generation_params)
        emitted = 0

        def window(context: Optional[torch.Tensor], max_gen_len: int) -> Iterator[torch.Tensor]:
            with self.autocast:
                chunks = self.lm.stream_generate(context, attributes, num_samples=len(attributes) or None,
                                                 max_gen_len=max_gen_len, **params)
                for index, chunk in enumerate(chunks):
                    if index == 0 and context is not None and context.shape[-1]:
                        continue  # the context's own frames were already emitted
                    yield chunk

        if prompt_tokens is not None:
            emitted += prompt_len
            report(emitted)
            yield prompt_tokens
        if self.duration <= self.max_duration:
            for chunk in window(prompt_tokens, total_len):
                emitted += chunk.shape[-1]
                report(emitted)
                yield chunk
            return

        # Long generation: windows of max_duration, each new one starting extend_stride later and
        # keeping the last (max_duration - extend_stride) seconds of tokens as its prompt.
        assert self.extend_stride is not None
        stride = int(self.frame_rate * self.extend_stride)
        context = prompt_tokens
        offset = 0
        while offset + (0 if context is None else context.shape[-1]) < total_len:
            time_offset = offset / self.frame_rate
            max_gen_len = int(min(self.duration - time_offset, self.max_duration) * self.frame_rate)
            self._window_hook(attributes, time_offset)
            new = []
            for chunk in window(context, max_gen_len):
                new.append(chunk)
                emitted += chunk.shape[-1]
                report(emitted)
                yield chunk
            full = torch.cat(([] if context is None else [context]) + new, dim=-1)
            context = full[..., stride:]
            offset += stride
