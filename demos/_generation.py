"""What the MusicGen demo does between the form and the model, without any Gradio.

- :func:`parse_prompts`, :func:`resolve_seed`, :func:`read_audio_upload`, :func:`check_settings`
  turn raw form values into checked ones and raise ``ValueError`` with a message meant for
  the person in front of the page.
- :class:`GenerationJob` runs one generation in a worker thread so the web handler can keep
  reporting progress, stream chunks as they come and stop it on demand. All jobs of an app
  share one lock: a model holds its KV cache in its modules and the sampler draws from
  torch's global RNG, so two generations at once would corrupt each other and make seeds
  meaningless. Waiting jobs say so through their progress events.

Shapes: audio ``[B, C, T]`` (or ``[C, T]`` for one upload) at the stated sample rate.
"""
from __future__ import annotations

import logging
import math
import queue
import random
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import torch

from audiocraft.data.audio import AudioFileError, audio_read

logger = logging.getLogger(__name__)

#: How the uploaded audio is used.
AUDIO_AS_MELODY = "melody"
AUDIO_AS_CONTINUATION = "continuation prompt"
AUDIO_MODES = (AUDIO_AS_MELODY, AUDIO_AS_CONTINUATION)
#: Largest seed accepted (seeds are shown and typed back by people).
MAX_SEED = 2**31 - 1


@dataclass
class GenerationSettings:
    """Checked values of one request.

    Attributes:
        descriptions: one text (or None for no text) per sample.
        duration: output length in seconds (continuations include the prompt).
        use_sampling, top_k, top_p, temperature, cfg_coef: sampling parameters of MusicGen.
        extend_stride: sliding-window stride in seconds, used beyond the model's window.
        seed: seed given to torch before generating.
        audio_mode: one of :data:`AUDIO_MODES`, or None without an upload.
        audio: the upload [C, T] (float, [-1, 1]) or None; never serialised.
        audio_sample_rate: sample rate of ``audio`` in Hz.
    """
    descriptions: List[Optional[str]]
    duration: float
    use_sampling: bool
    top_k: int
    top_p: float
    temperature: float
    cfg_coef: float
    extend_stride: float
    seed: int
    audio_mode: Optional[str] = None
    audio: Optional[torch.Tensor] = field(default=None, repr=False)
    audio_sample_rate: Optional[int] = None

    def summary(self) -> dict:
        """The settings as plain JSON-able values (the audio itself is left out)."""
        values = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "audio"}
        values["descriptions"] = list(self.descriptions)
        values["audio_seconds"] = (None if self.audio is None
                                   else round(self.audio.shape[-1] / self.audio_sample_rate, 3))
        return values


def parse_prompts(text: Optional[str], samples_per_prompt: int) -> List[str]:
    """One description per non-empty line of ``text``, each repeated ``samples_per_prompt`` times."""
    lines = [line.strip() for line in (text or "").splitlines()]
    return [line for line in lines if line for _ in range(samples_per_prompt)]


def resolve_seed(seed: Optional[float]) -> int:
    """The seed to use: ``seed`` itself, or a fresh random one when it is empty or negative."""
    if seed is None or (isinstance(seed, float) and math.isnan(seed)) or seed < 0:
        return random.SystemRandom().randint(0, MAX_SEED)
    if seed != int(seed) or seed > MAX_SEED:
        raise ValueError(f"Seed must be a whole number between 0 and {MAX_SEED} (or -1 for a random one), "
                         f"got {seed!r}.")
    return int(seed)


def read_audio_upload(path: Optional[str]) -> Tuple[Optional[torch.Tensor], Optional[int]]:
    """Read the uploaded file: ``(wav [C, T], sample_rate)`` or ``(None, None)`` without upload.

    Raises:
        ValueError: the file cannot be decoded, is empty or silent; the message names the file.
    """
    if not path:
        return None, None
    name = Path(path).name
    try:
        wav, sample_rate = audio_read(path)
    except (AudioFileError, FileNotFoundError, ValueError, RuntimeError) as err:
        logger.info("unreadable upload %s: %s", path, err)
        raise ValueError(f"The uploaded file '{name}' could not be read as audio: it is damaged or not in an "
                         "audio format. Upload a WAV, FLAC, OGG or MP3 file, or remove the upload.") from err
    if wav.shape[-1] == 0:
        raise ValueError(f"The uploaded file '{name}' holds no audio samples: upload a longer recording.")
    if not torch.isfinite(wav).all() or not wav.abs().max() > 0:
        raise ValueError(f"The uploaded file '{name}' is silent or holds invalid samples: upload real audio.")
    return wav, sample_rate


def _check_range(label: str, value: float, low: float, high: float, what_to_do: str) -> None:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{label} must be between {low:g} and {high:g}, got {value!r}: {what_to_do}.")


def check_settings(duration: float, top_k: float, top_p: float, temperature: float, cfg_coef: float,
                   extend_stride: float, samples_per_prompt: float, max_duration: float) -> None:
    """Raise ``ValueError`` for any form value outside what the app accepts.

    Args:
        duration: requested length in seconds, in (0, ``max_duration``].
        max_duration: the app's limit in seconds.
        Other arguments: the raw slider values.
    """
    _check_range("Duration", duration, 0.1, max_duration, "pick a duration with the slider")
    _check_range("Top-k", top_k, 0, 10_000, "use 0 to disable it or e.g. 250")
    _check_range("Top-p", top_p, 0.0, 1.0, "use 0 to disable it or e.g. 0.9")
    _check_range("Temperature", temperature, 0.0, 100.0, "use e.g. 1.0")
    _check_range("CFG coefficient", cfg_coef, 0.0, 100.0, "use e.g. 3.0")
    _check_range("Extend stride", extend_stride, 0.5, 600.0, "use e.g. 18 seconds")
    _check_range("Samples per prompt", samples_per_prompt, 1, 64, "use e.g. 1")


class GenerationCancelled(Exception):
    """Raised inside the worker when the job is cancelled; never reaches the user."""


@dataclass
class Event:
    """What a job reports: ``kind`` is 'waiting' (for the lock), 'starting', 'progress', 'chunk' or 'done'.

    ``done_frames``/``total_frames`` count token frames; ``audio`` is a chunk [B, C, t] for 'chunk'.
    """
    kind: str
    done_frames: int = 0
    total_frames: int = 0
    audio: Optional[torch.Tensor] = None


class GenerationJob:
    """One generation in a worker thread; :meth:`events` follows it, :meth:`cancel` stops it.

    Args:
        model: a loaded MusicGen.
        settings: the checked request.
        lock: the app's generation lock (held while the model works).
        stream: yield audio in chunks as it becomes final (text and continuation only; melody
            generation always ends with one chunk).
    """

    def __init__(self, model, settings: GenerationSettings, lock: threading.Lock, stream: bool = True):
        self.model = model
        self.settings = settings
        self._lock = lock
        self._stream = stream
        self._events: "queue.Queue[Tuple[str, object]]" = queue.Queue()
        self._stop = threading.Event()
        self._progress = (0, 0)
        self._running = False  # holds the lock
        self._started = False
        self._thread = threading.Thread(target=self._run, name="musicgen-demo-job", daemon=True)

    # ------------------------------------------------------------------ control
    def start(self) -> "GenerationJob":
        self._started = True
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the worker to stop at the next token frame (idempotent, returns at once)."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the worker to finish; True if it did."""
        if self._started:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def events(self, poll_seconds: float = 0.25) -> Iterator[Event]:
        """Follow the job until it ends: progress ticks at least every ``poll_seconds``, chunks, then 'done'.

        Raises:
            Exception: whatever the generation raised (a ValueError carries a user-facing message).
        """
        while True:
            try:
                kind, payload = self._events.get(timeout=poll_seconds)
            except queue.Empty:
                done, total = self._progress
                kind = "progress" if total else ("starting" if self._running else "waiting")
                yield Event(kind, done, total)
                continue
            if kind == "chunk":
                yield Event("chunk", *self._progress, audio=payload)
            elif kind == "error":
                raise payload  # type: ignore[misc]
            elif kind == "end":
                yield Event("done", *self._progress)
                return

    # ------------------------------------------------------------------ worker
    def _on_progress(self, done_frames: int, total_frames: int) -> None:
        self._progress = (done_frames, total_frames)
        if self._stop.is_set():
            raise GenerationCancelled()

    def _run(self) -> None:
        try:
            while not self._lock.acquire(timeout=0.2):
                if self._stop.is_set():
                    return
            self._running = True
            try:
                if not self._stop.is_set():
                    self._generate()
            finally:
                self.model.set_custom_progress_callback(None)
                self._lock.release()
        except GenerationCancelled:
            pass
        except BaseException as err:  # handed to the web handler, which shows it
            self._events.put(("error", err))
        finally:
            self._events.put(("end", None))

    def _generate(self) -> None:
        model, s = self.model, self.settings
        model.set_generation_params(use_sampling=s.use_sampling, top_k=s.top_k, top_p=s.top_p,
                                    temperature=s.temperature, duration=s.duration, cfg_coef=s.cfg_coef,
                                    extend_stride=s.extend_stride)
        model.set_custom_progress_callback(self._on_progress)
        torch.manual_seed(s.seed)
        batch = len(s.descriptions)
        if s.audio is not None and s.audio_mode == AUDIO_AS_MELODY:
            melody = s.audio[None].expand(batch, -1, -1)
            audio = model.generate_with_chroma(s.descriptions, melody, s.audio_sample_rate)
            self._events.put(("chunk", audio.cpu()))
            return
        descriptions = None if all(d is None for d in s.descriptions) else s.descriptions
        prompt, num_samples = None, None
        if s.audio is not None:
            prompt = s.audio[None].expand(batch, -1, -1).contiguous()
        elif descriptions is None:
            num_samples = batch
        if not self._stream:
            if prompt is not None:
                audio = model.generate_continuation(prompt, s.audio_sample_rate, descriptions)
            elif descriptions is None:
                audio = model.generate_unconditional(num_samples)
            else:
                audio = model.generate(descriptions)
            self._events.put(("chunk", audio.cpu()))
            return
        chunks = model.stream(descriptions, prompt=prompt, prompt_sample_rate=s.audio_sample_rate,
                              num_samples=num_samples)
        try:
            for chunk in chunks:
                if self._stop.is_set():
                    raise GenerationCancelled()
                self._events.put(("chunk", chunk.cpu()))
        finally:
            chunks.close()
