"""Audio file input/output: :func:`audio_info`, :func:`audio_read`, :func:`audio_write`.

Same API, defaults and semantics as AudioCraft's ``audiocraft/data/audio.py``, with these
backends instead of torchaudio / an ffmpeg subprocess:

- reading: soundfile (libsndfile) for wav, flac, ogg and whatever else it knows, with
  frame-accurate seeking; PyAV (ffmpeg libraries) for mp3 and anything soundfile refuses.
- writing: soundfile for wav / flac (16-bit PCM) and ogg (Vorbis); PyAV (LAME) for mp3.

Waveforms are float32 [C, T] in [-1, 1]. Failures are explicit: a missing file raises
``FileNotFoundError``, an empty, corrupt or unsupported one raises :class:`AudioFileError`
(a ``ValueError``), both naming the file.
"""
from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile
import torch
from torch.nn import functional as F

from .audio_utils import normalize_audio

__all__ = ["AudioFileError", "AudioFileInfo", "audio_info", "audio_read", "audio_write",
           "SUPPORTED_WRITE_FORMATS"]

#: Values accepted by ``audio_write(format=...)``.
SUPPORTED_WRITE_FORMATS = ("wav", "flac", "ogg", "mp3")
_MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# libvorbis nominal bitrates (kbps, 44.1 kHz stereo) at VBR quality 0.0, 0.1, ..., 1.0.
_VORBIS_NOMINAL_KBPS = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)
# Decode this much before a seek target: mp3 frames depend on the previous ones.
_AV_PREROLL_SECONDS = 0.1


class AudioFileError(ValueError):
    """An audio file exists but cannot be used: empty, corrupt, truncated or unsupported."""


class _NoUsableStream(Exception):
    """ffmpeg opened the file but found nothing it can decode as audio."""


@dataclass(frozen=True)
class AudioFileInfo:
    """Basic facts about an audio file.

    Attributes:
        sample_rate: samples per second per channel, in Hz.
        duration: length in seconds.
        channels: number of channels.
    """
    sample_rate: int
    duration: float
    channels: int


def _unreadable(path: Path, problem: str) -> AudioFileError:
    return AudioFileError(
        f"not a readable audio file: {str(path)!r} ({problem}); supported formats: wav, flac, ogg, mp3 "
        f"(and most formats ffmpeg decodes). Check that the file is complete and really contains audio, "
        f"or re-export it in one of these formats.")


def _describe(err: Exception) -> str:
    """A backend error without the file path (already in our message)."""
    if isinstance(err, soundfile.LibsndfileError):
        return f"libsndfile: {err.error_string}"
    if isinstance(err, av.error.FFmpegError):
        return f"ffmpeg: {err.strerror or err}"
    return str(err)


def _existing_file(filepath: str | os.PathLike) -> Path:
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"`filepath` must be a str or os.PathLike, got {type(filepath).__name__}.")
    path = Path(filepath)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {str(path)!r}; check the path "
                                f"(relative paths are resolved from {os.getcwd()!r}).")
    if path.is_dir():
        raise _unreadable(path, "it is a directory")
    if path.stat().st_size == 0:
        raise _unreadable(path, "the file is empty, 0 bytes")
    return path


def _use_soundfile_first(path: Path) -> bool:
    # mp3 goes to ffmpeg like in AudioCraft (its decoder trims the encoder delay/padding).
    return path.suffix.lower() != ".mp3"


# --------------------------------------------------------------------------- info


def audio_info(filepath: str | os.PathLike) -> AudioFileInfo:
    """Sample rate, duration (seconds) and channel count of an audio file, read from its header.

    Only a file whose header gives no length at all (rare, e.g. raw AAC) is decoded to count samples.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioFileError: the file is empty, corrupt, has no audio, or is in an unknown format.
    """
    path = _existing_file(filepath)
    soundfile_problem = ""
    if _use_soundfile_first(path):
        try:
            info = soundfile.info(str(path))
        except soundfile.SoundFileError as err:
            soundfile_problem = _describe(err) + "; "
        else:
            if info.frames <= 0:
                raise _unreadable(path, "it contains no audio frames")
            return AudioFileInfo(int(info.samplerate), info.frames / info.samplerate, int(info.channels))
    try:
        with av.open(str(path)) as container:
            stream = _first_audio_stream(container)
            sample_rate = int(stream.codec_context.sample_rate)
            channels = len(stream.codec_context.layout.channels)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:  # no header information: count the samples.
                duration = sum(frame.samples for frame in container.decode(stream)) / sample_rate
    except (av.error.FFmpegError, _NoUsableStream) as err:
        raise _unreadable(path, soundfile_problem + _describe(err)) from err
    if duration <= 0:
        raise _unreadable(path, "it contains no audio frames")
    return AudioFileInfo(sample_rate, duration, channels)


def _first_audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise _NoUsableStream("ffmpeg: no audio stream")
    stream = container.streams.audio[0]
    if not stream.codec_context.sample_rate or not stream.codec_context.layout.channels:
        raise _NoUsableStream("ffmpeg: no decodable audio stream (unknown sample rate or channels)")
    return stream


# --------------------------------------------------------------------------- read


def _soundfile_read(path: Path, seek_time: float, duration: float) -> tuple[torch.Tensor, int]:
    with soundfile.SoundFile(str(path)) as handle:
        sample_rate, total = handle.samplerate, handle.frames
        if total <= 0:
            raise _unreadable(path, "it contains no audio frames")
        start = int(seek_time * sample_rate)
        count = int(duration * sample_rate) if duration > 0 else -1
        if start >= total:
            data = np.zeros((0, handle.channels), dtype=np.float32)
        else:
            handle.seek(start)
            data = handle.read(count, dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data.T)), sample_rate


def _frame_to_float(frame, channels: int) -> np.ndarray:
    """One decoded PyAV frame as float32 [C, n]."""
    data = frame.to_ndarray()
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128) / 128
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    return data.astype(np.float32, copy=False)


def _av_decode(path: Path, seek_time: float, duration: float, allow_seek: bool) -> tuple[np.ndarray, int, bool]:
    """Decode samples [int(seek_time * sr), + int(duration * sr)) (duration <= 0: to the end) with PyAV.

    Sample positions are measured from the first decoded sample (the stream start time),
    so a seek returns exactly what a full decode holds at that position.
    Returns (audio [C, n], sample_rate, ok); ok is False if seeking was unreliable.
    """
    with av.open(str(path)) as container:
        stream = _first_audio_stream(container)
        sample_rate = int(stream.codec_context.sample_rate)
        channels = len(stream.codec_context.layout.channels)
        start = int(seek_time * sample_rate)
        count = int(duration * sample_rate) if duration > 0 else -1
        time_base = stream.time_base
        origin = stream.start_time or 0
        seeked = False
        if allow_seek and start > 0 and time_base is not None:
            target = max(0.0, start / sample_rate - _AV_PREROLL_SECONDS)
            container.seek(origin + int(target / time_base), stream=stream)
            seeked = True
        stop = start + count if count >= 0 else None
        chunks: list[np.ndarray] = []
        position: int | None = None if seeked else 0
        for frame in container.decode(stream):
            if position is None:  # first frame after a seek: locate it with its timestamp
                if frame.pts is None or time_base is None:
                    return np.zeros((channels, 0), np.float32), sample_rate, False
                position = int(round(float((frame.pts - origin) * time_base) * sample_rate))
                if position > start:  # landed past the target: cannot be sample accurate
                    return np.zeros((channels, 0), np.float32), sample_rate, False
            data = _frame_to_float(frame, channels)
            lo, hi = position, position + data.shape[1]
            position = hi
            if hi <= start:
                continue
            chunks.append(data[:, max(0, start - lo): data.shape[1] if stop is None else max(0, stop - lo)])
            if stop is not None and hi >= stop:
                break
        if not chunks and position in (None, 0):
            if seeked:  # nothing after the seek point: let the caller decode from the start
                return np.zeros((channels, 0), np.float32), sample_rate, False
            raise _unreadable(path, "it contains no audio frames")
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return audio, sample_rate, True


def _av_read(path: Path, seek_time: float, duration: float, previous_problem: str = "") -> tuple[torch.Tensor, int]:
    try:
        audio, sample_rate, ok = _av_decode(path, seek_time, duration, allow_seek=True)
        if not ok:
            audio, sample_rate, _ = _av_decode(path, seek_time, duration, allow_seek=False)
    except (av.error.FFmpegError, _NoUsableStream) as err:
        raise _unreadable(path, previous_problem + _describe(err)) from err
    return torch.from_numpy(np.ascontiguousarray(audio)), sample_rate


def audio_read(filepath: str | os.PathLike, seek_time: float = 0.,
               duration: float = -1., pad: bool = False) -> tuple[torch.Tensor, int]:
    """Read (part of) an audio file.

    Args:
        filepath: path to a wav, flac, ogg, mp3 or other ffmpeg-readable file.
        seek_time: where to start, in seconds; the first sample read is ``int(seek_time * sr)``.
        duration: how much to read, in seconds (``int(duration * sr)`` samples); <= 0 reads
            to the end. Reading past the end returns what is there (possibly nothing).
        pad: with ``duration > 0``, zero-pad the end to exactly ``int(duration * sr)`` samples.
    Returns:
        ``(wav, sample_rate)``: float32 [C, T] in [-1, 1] and the file's sample rate in Hz.
    Raises:
        FileNotFoundError: the file does not exist.
        AudioFileError: the file is empty, corrupt, truncated or in an unsupported format.
        ValueError: negative or non-finite ``seek_time``, non-finite ``duration``.
    """
    for name, value in (("seek_time", seek_time), ("duration", duration)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"audio_read: `{name}` must be a finite number of seconds, got {value!r}.")
    if seek_time < 0:
        raise ValueError(f"audio_read: `seek_time` must be >= 0 seconds, got {seek_time!r}.")
    path = _existing_file(filepath)
    result, soundfile_problem = None, ""
    if _use_soundfile_first(path):
        try:
            result = _soundfile_read(path, seek_time, duration)
        except soundfile.SoundFileError as err:  # not for libsndfile: try ffmpeg
            soundfile_problem = _describe(err) + "; "
    wav, sample_rate = result if result is not None else _av_read(path, seek_time, duration, soundfile_problem)
    if pad and duration > 0:
        missing = int(duration * sample_rate) - wav.shape[-1]
        if missing > 0:
            wav = F.pad(wav, (0, missing))
    return wav, sample_rate


# --------------------------------------------------------------------------- write


def _to_pcm16(wav: torch.Tensor) -> np.ndarray:
    """float [C, T] -> int16 [T, C], scaled by 2**15, rounded, saturated (as ffmpeg converts)."""
    return (wav * 2 ** 15).round().clamp(-2 ** 15, 2 ** 15 - 1).to(torch.int16).T.contiguous().numpy()


def _vorbis_quality(kbps: float) -> float:
    """Approximate libvorbis VBR quality in [0, 1] giving ``kbps`` (nominal, 44.1 kHz stereo)."""
    table = _VORBIS_NOMINAL_KBPS
    if kbps <= table[0]:
        return 0.0
    for idx in range(1, len(table)):
        if kbps <= table[idx]:
            return (idx - 1 + (kbps - table[idx - 1]) / (table[idx] - table[idx - 1])) / 10
    return 1.0


def _write_soundfile(tmp: Path, wav: torch.Tensor, sample_rate: int, fmt: str, ogg_rate: float | None) -> None:
    if fmt == "ogg":
        options = {} if ogg_rate is None else {"compression_level": 1.0 - _vorbis_quality(ogg_rate)}
        with soundfile.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=wav.shape[0],
                                 format="OGG", subtype="VORBIS", **options) as handle:
            handle.write(wav.T.contiguous().numpy())
    else:
        soundfile.write(str(tmp), _to_pcm16(wav), sample_rate, format=fmt.upper(), subtype="PCM_16")


def _write_mp3(tmp: Path, wav: torch.Tensor, sample_rate: int, mp3_rate: int) -> None:
    layout = "mono" if wav.shape[0] == 1 else "stereo"
    codec = "libmp3lame" if "libmp3lame" in av.codecs_available else "mp3"
    with av.open(str(tmp), "w", format="mp3") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        stream.bit_rate = int(mp3_rate) * 1000
        frame = av.AudioFrame.from_ndarray(wav.contiguous().numpy(), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _check_write_args(stem_name: object, wav: object, sample_rate: object, format: object,
                      mp3_rate: object, ogg_rate: object) -> torch.Tensor:
    """Validate audio_write's arguments; returns ``wav`` as [C, T]."""
    if not isinstance(stem_name, (str, os.PathLike)):
        raise TypeError(f"audio_write: `stem_name` must be a str or Path, got {type(stem_name).__name__}.")
    if not isinstance(wav, torch.Tensor) or not wav.dtype.is_floating_point:
        got = f"a {wav.dtype} tensor" if isinstance(wav, torch.Tensor) else type(wav).__name__
        raise TypeError(f"audio_write({str(stem_name)!r}): `wav` must be a floating-point torch.Tensor "
                        f"[C, T] or [T] in [-1, 1], got {got}; use audio_utils.f32_pcm for int16 PCM.")
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2:
        raise ValueError(f"audio_write({str(stem_name)!r}): `wav` must have shape [C, T] or [T], got "
                         f"{tuple(wav.shape)}; write each item of a batch separately (wav[i]).")
    if wav.shape[-1] == 0 or wav.shape[0] == 0:
        raise ValueError(f"audio_write({str(stem_name)!r}): `wav` is empty, shape {tuple(wav.shape)}; "
                         f"nothing to write.")
    if not torch.isfinite(wav).all():
        bad = int((~torch.isfinite(wav)).sum())
        raise ValueError(f"audio_write({str(stem_name)!r}): `wav` contains {bad} NaN/inf value(s); "
                         f"fix the model output or replace them (torch.nan_to_num) before writing.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) \
            or not math.isfinite(sample_rate) or sample_rate <= 0 or sample_rate != int(sample_rate):
        raise ValueError(f"audio_write({str(stem_name)!r}): `sample_rate` must be a positive whole number "
                         f"of Hz, got {sample_rate!r}.")
    if format not in SUPPORTED_WRITE_FORMATS:
        raise ValueError(f"audio_write({str(stem_name)!r}): unknown format {format!r}; supported formats: "
                         f"{', '.join(SUPPORTED_WRITE_FORMATS)}.")
    if format == "mp3":
        if int(sample_rate) not in _MP3_SAMPLE_RATES:
            raise ValueError(f"audio_write({str(stem_name)!r}): mp3 cannot store {sample_rate} Hz audio; "
                             f"supported rates: {', '.join(map(str, _MP3_SAMPLE_RATES))} Hz. Resample with "
                             f"audio_utils.convert_audio or write wav/flac/ogg.")
        if wav.shape[0] > 2:
            raise ValueError(f"audio_write({str(stem_name)!r}): mp3 holds 1 or 2 channels, got {wav.shape[0]}; "
                             f"downmix with audio_utils.convert_audio_channels or write wav/flac/ogg.")
        if isinstance(mp3_rate, bool) or not isinstance(mp3_rate, int) or mp3_rate <= 0:
            raise ValueError(f"audio_write({str(stem_name)!r}): `mp3_rate` must be a positive int (kbps), "
                             f"got {mp3_rate!r}.")
    if format == "ogg" and ogg_rate is not None and (
            isinstance(ogg_rate, bool) or not isinstance(ogg_rate, (int, float)) or not ogg_rate > 0):
        raise ValueError(f"audio_write({str(stem_name)!r}): `ogg_rate` must be None or a positive number "
                         f"(kbps), got {ogg_rate!r}.")
    return wav


def audio_write(stem_name: str | os.PathLike, wav: torch.Tensor, sample_rate: int,
                format: str = "wav", mp3_rate: int = 320, ogg_rate: int | None = None,
                normalize: bool = True, strategy: str | None = "peak", peak_clip_headroom_db: float = 1,
                rms_headroom_db: float = 18, loudness_headroom_db: float = 14,
                loudness_compressor: bool = False, log_clipping: bool = True,
                make_parent_dir: bool = True, add_suffix: bool = True) -> Path:
    """Normalise audio and save it to ``stem_name`` + ``'.' + format``; returns the path written.

    The file is written to a hidden temporary file in the same folder, then renamed, so an
    interrupted write never leaves a truncated file. An existing file at the target path is
    replaced (as in AudioCraft).

    Args:
        stem_name: output path without extension (the extension is added when ``add_suffix``).
        wav: audio [C, T] or [T] (mono), float, finite.
        sample_rate: sample rate of ``wav`` in Hz.
        format: 'wav' (16-bit PCM), 'flac' (16-bit), 'ogg' (Vorbis) or 'mp3' (LAME, CBR).
        mp3_rate: mp3 bitrate in kbps.
        ogg_rate: approximate Vorbis bitrate in kbps (mapped to a VBR quality); None lets
            the encoder choose (quality 0.4, about 128 kbps for 44.1 kHz stereo music).
        normalize, strategy, peak_clip_headroom_db, rms_headroom_db, loudness_headroom_db,
        loudness_compressor, log_clipping: see :func:`audio_utils.normalize_audio`.
        make_parent_dir: create missing parent folders.
        add_suffix: append ``'.' + format`` to ``stem_name``.
    Returns:
        Path of the saved file.
    Raises:
        TypeError: ``wav`` is not a floating-point tensor.
        ValueError: wrong shape, empty, NaN/inf values, bad sample rate or format options.
        FileNotFoundError: the parent folder is missing and ``make_parent_dir`` is False.
    """
    wav = _check_write_args(stem_name, wav, sample_rate, format, mp3_rate, ogg_rate)
    sample_rate = int(sample_rate)
    wav = wav.detach().cpu().float()
    wav = normalize_audio(wav, normalize, strategy, peak_clip_headroom_db, rms_headroom_db,
                          loudness_headroom_db, loudness_compressor, log_clipping=log_clipping,
                          sample_rate=sample_rate, stem_name=str(stem_name))
    path = Path(str(stem_name) + ("." + format if add_suffix else ""))
    if make_parent_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"audio_write: folder {str(path.parent)!r} does not exist; create it or "
                                f"pass make_parent_dir=True.")
    if path.is_dir():
        raise ValueError(f"audio_write: {str(path)!r} is a directory; choose another `stem_name`.")
    tmp = _create_temp_beside(path)
    try:
        if format == "mp3":
            _write_mp3(tmp, wav, sample_rate, mp3_rate)
        else:
            _write_soundfile(tmp, wav, sample_rate, format, ogg_rate)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, (soundfile.SoundFileError, av.error.FFmpegError)):
            raise ValueError(f"audio_write: the {format} encoder rejected {str(path)!r} "
                             f"({wav.shape[0]} channel(s), {sample_rate} Hz): {err}; try another format "
                             f"or sample rate.") from err
        raise
    return path


def _create_temp_beside(path: Path) -> Path:
    """Create an empty hidden file next to ``path`` (regular permissions, umask applied)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
