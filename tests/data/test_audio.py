"""Audio file I/O (audiocraft.data.audio): round trips, seeking, info, atomic writes, errors."""
import math
import os

import av
import numpy as np
import pytest
import soundfile
import torch

import audiocraft.data.audio as audio_module
from audiocraft.data.audio import AudioFileError, AudioFileInfo, audio_info, audio_read, audio_write

SR = 32000
LSB = 1 / 2 ** 15
MP3_FRAME = 1152  # samples per MPEG-1 layer III frame


def music_like(channels: int, seconds: float = 0.75, sample_rate: int = SR) -> torch.Tensor:
    """A few harmonics plus a little noise, peak below 1: [C, T]."""
    t = torch.arange(int(seconds * sample_rate) + 37, dtype=torch.float64) / sample_rate
    rows = []
    for c in range(channels):
        f0 = 220 * (1 + 0.5 * c)
        row = sum(0.25 / k * torch.sin(2 * math.pi * k * f0 * t + c) for k in (1, 2, 3))
        rows.append(row + 0.01 * torch.randn_like(t))
    return torch.stack(rows).float()


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()


def leftovers(folder) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_lossless_round_trip_is_exact_up_to_16_bit_quantisation(tmp_path, fmt, channels):
    wav = music_like(channels)
    path = audio_write(tmp_path / "x", wav, SR, format=fmt, strategy=None)
    assert path == tmp_path / f"x.{fmt}"
    out, sr = audio_read(path)
    assert sr == SR and out.dtype == torch.float32 and out.shape == wav.shape
    assert (out - wav).abs().max().item() <= 0.5 * LSB + 1e-7
    # Stored samples are round(x * 2**15), as ffmpeg's float -> s16 conversion does in AudioCraft.
    stored, _ = soundfile.read(str(path), dtype="int16", always_2d=True)
    assert torch.equal(torch.from_numpy(stored.T.copy()), (wav * 2 ** 15).round().short())
    assert soundfile.info(str(path)).subtype == "PCM_16"


@pytest.mark.parametrize("fmt,min_corr,length_tolerance", [
    # Vorbis: the last page's granule position gives decoders the exact length.
    ("ogg", 0.98, 0),
    # mp3: ffmpeg writes a LAME tag with the encoder delay and padding and trims both when
    # decoding; allow one frame of trailing padding for decoders that only trim the delay.
    # The zero-lag correlation checks that the start is aligned.
    ("mp3", 0.99, MP3_FRAME),
])
@pytest.mark.parametrize("channels", [1, 2])
def test_lossy_round_trip_keeps_length_and_waveform(tmp_path, fmt, min_corr, length_tolerance, channels):
    wav = music_like(channels)
    path = audio_write(tmp_path / "x", wav, SR, format=fmt, strategy=None)
    out, sr = audio_read(path)
    assert sr == SR and out.shape[0] == channels and out.dtype == torch.float32
    assert abs(out.shape[-1] - wav.shape[-1]) <= length_tolerance
    n = min(out.shape[-1], wav.shape[-1])
    for c in range(channels):
        assert correlation(out[c, :n], wav[c, :n]) > min_corr


def test_mp3_rate_sets_the_bitrate(tmp_path):
    wav = music_like(2, seconds=2)
    sizes = {rate: audio_write(tmp_path / f"r{rate}", wav, SR, format="mp3", mp3_rate=rate).stat().st_size
             for rate in (64, 320)}
    assert sizes[320] == pytest.approx(sizes[64] * 5, rel=0.2)


def test_default_write_peak_normalises_to_minus_1_dbfs(tmp_path):
    wav = 0.1 * music_like(1)
    out, _ = audio_read(audio_write(tmp_path / "peak", wav, SR))
    assert out.abs().max().item() == pytest.approx(10 ** (-1 / 20), abs=LSB)


def test_write_accepts_1d_mono_and_non_float32(tmp_path):
    wav = music_like(1)[0].double()
    out, _ = audio_read(audio_write(tmp_path / "mono", wav, SR, strategy=None))
    assert out.shape == (1, wav.shape[-1])


# ----------------------------------------------------------------------------- paths, overwrite, atomicity


def test_suffix_parent_dir_and_overwrite(tmp_path):
    wav = music_like(1)
    nested = audio_write(tmp_path / "a" / "b" / "song", wav, SR)
    assert nested == tmp_path / "a" / "b" / "song.wav" and nested.is_file()
    raw = audio_write(tmp_path / "plain.audio", wav, SR, format="flac", add_suffix=False)
    assert raw == tmp_path / "plain.audio" and soundfile.info(str(raw)).format == "FLAC"
    first = audio_write(tmp_path / "same", wav, SR, strategy=None)
    audio_write(tmp_path / "same", 0.5 * wav, SR, strategy=None)
    out, _ = audio_read(first)
    assert torch.allclose(out, 0.5 * wav, atol=LSB)
    assert leftovers(tmp_path) == []
    assert (first.stat().st_mode & 0o777) == (0o666 & ~_umask())
    with pytest.raises(FileNotFoundError, match="make_parent_dir=True"):
        audio_write(tmp_path / "missing" / "x", wav, SR, make_parent_dir=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    wav = music_like(1)
    target = audio_write(tmp_path / "keep", wav, SR)
    before = target.read_bytes()

    def half_written(tmp, *args, **kwargs):
        tmp.write_bytes(b"RIFF\x00\x00")
        raise KeyboardInterrupt

    monkeypatch.setattr(audio_module, "_write_soundfile", half_written)
    with pytest.raises(KeyboardInterrupt):
        audio_write(tmp_path / "keep", wav, SR)
    with pytest.raises(KeyboardInterrupt):
        audio_write(tmp_path / "new", wav, SR)
    assert target.read_bytes() == before
    assert not (tmp_path / "new.wav").exists()
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- seek / duration / pad


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_seek_and_duration_select_the_same_samples_as_a_full_read(tmp_path, fmt):
    path = audio_write(tmp_path / "x", music_like(2, seconds=1.5), SR, format=fmt)
    full, _ = audio_read(path)
    for seek, duration in [(0.0, 0.2), (0.31, 0.25), (1.07, 0.3)]:
        part, sr = audio_read(path, seek_time=seek, duration=duration)
        start, count = int(seek * sr), int(duration * sr)
        assert part.shape == (2, count)
        assert torch.allclose(part, full[:, start:start + count], atol=1e-6)
    rest, _ = audio_read(path, seek_time=0.5)
    assert torch.allclose(rest, full[:, int(0.5 * SR):], atol=1e-6)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_pad_zero_fills_to_exact_duration(tmp_path, fmt):
    wav = music_like(1, seconds=0.5)
    path = audio_write(tmp_path / "x", wav, SR, format=fmt)
    full, _ = audio_read(path)
    tail, _ = audio_read(path, seek_time=0.4, duration=0.3)
    assert tail.shape[-1] == full.shape[-1] - int(0.4 * SR)  # no padding unless asked
    padded, _ = audio_read(path, seek_time=0.4, duration=0.3, pad=True)
    assert padded.shape == (1, int(0.3 * SR))
    assert torch.equal(padded[:, :tail.shape[-1]], tail) and not padded[:, tail.shape[-1]:].any()
    beyond, _ = audio_read(path, seek_time=2.0, duration=0.1, pad=True)
    assert beyond.shape == (1, int(0.1 * SR)) and not beyond.any()
    assert audio_read(path, seek_time=2.0)[0].shape == (1, 0)
    assert audio_read(path, duration=-1, pad=True)[0].shape == full.shape  # pad needs duration > 0


def test_ffmpeg_fallback_reads_what_soundfile_cannot(tmp_path, monkeypatch):
    wav = music_like(2, seconds=0.5, sample_rate=16000)
    aac = tmp_path / "x.aac"
    with av.open(str(aac), "w", format="adts") as container:
        stream = container.add_stream("aac", rate=16000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(wav.numpy(), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            container.mux(packet)
    out, sr = audio_read(aac)
    assert sr == 16000 and out.shape[0] == 2 and out.shape[-1] >= wav.shape[-1]
    # The PyAV reader (packed int16 path) agrees with soundfile on a wav, seeking included.
    path = audio_write(tmp_path / "w", wav, 16000)
    reference, _ = audio_read(path)
    part_reference, _ = audio_read(path, 0.1, 0.2)
    monkeypatch.setattr(audio_module, "_use_soundfile_first", lambda path: False)
    assert torch.equal(audio_read(path)[0], reference)
    assert torch.equal(audio_read(path, 0.1, 0.2)[0], part_reference)


# ----------------------------------------------------------------------------- info


@pytest.mark.parametrize("fmt,channels", [("wav", 2), ("flac", 1), ("ogg", 2), ("mp3", 1)])
def test_audio_info(tmp_path, fmt, channels):
    wav = music_like(channels, seconds=1.0)
    info = audio_info(audio_write(tmp_path / "x", wav, SR, format=fmt))
    assert isinstance(info, AudioFileInfo)
    assert (info.sample_rate, info.channels) == (SR, channels)
    tolerance = MP3_FRAME / SR if fmt == "mp3" else 1e-9
    assert info.duration == pytest.approx(wav.shape[-1] / SR, abs=tolerance)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("reader", [audio_read, audio_info])
def test_missing_file(tmp_path, reader):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        reader(tmp_path / "nope.wav")


def _bad_files(tmp_path) -> dict:
    good = audio_write(tmp_path / "good", music_like(1), SR).read_bytes()
    with soundfile.SoundFile(str(tmp_path / "zero_frames.wav"), "w", samplerate=SR, channels=1, subtype="PCM_16"):
        pass
    files = {
        "empty.wav": b"",
        "empty.mp3": b"",
        "corrupt.wav": np.random.default_rng(0).bytes(4000),
        "corrupt.mp3": np.random.default_rng(1).bytes(4000),
        "truncated_header.wav": good[:30],
        "text.flac": b"this is not audio\n" * 50,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in list(files) + ["zero_frames.wav"]}


@pytest.mark.parametrize("reader", [audio_read, audio_info])
def test_unreadable_files_raise_audio_file_error_naming_the_file(tmp_path, reader):
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(AudioFileError, match=name) as err:
            reader(path)
        assert isinstance(err.value, ValueError)
        assert "supported formats: wav, flac, ogg, mp3" in str(err.value)
        problem = str(err.value)
        if name.startswith("empty"):
            assert "0 bytes" in problem
        if name == "zero_frames.wav":
            assert "no audio frames" in problem
    with pytest.raises(AudioFileError, match="directory"):
        reader(tmp_path)


def test_bad_read_arguments(tmp_path):
    path = audio_write(tmp_path / "x", music_like(1), SR)
    with pytest.raises(ValueError, match="seek_time"):
        audio_read(path, seek_time=-1.0)
    with pytest.raises(ValueError, match="duration"):
        audio_read(path, duration=float("nan"))


def test_write_rejects_bad_input(tmp_path):
    wav = music_like(2)
    with pytest.raises(ValueError, match="unknown format 'aiff'; supported formats: wav, flac, ogg, mp3"):
        audio_write(tmp_path / "x", wav, SR, format="aiff")
    for bad_value in (float("nan"), float("inf")):
        broken = wav.clone()
        broken[1, 10] = bad_value
        with pytest.raises(ValueError, match="broken.*NaN/inf"):
            audio_write(tmp_path / "broken", broken, SR)
    with pytest.raises(ValueError, match=r"\[C, T\] or \[T\].*\(1, 2,"):
        audio_write(tmp_path / "x", wav[None], SR)
    with pytest.raises(ValueError, match="empty"):
        audio_write(tmp_path / "x", torch.zeros(1, 0), SR)
    with pytest.raises(TypeError, match="floating-point"):
        audio_write(tmp_path / "x", (wav * 1000).short(), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        audio_write(tmp_path / "x", wav, 0)
    with pytest.raises(ValueError, match="mp3 cannot store 12345 Hz"):
        audio_write(tmp_path / "x", wav, 12345, format="mp3")
    with pytest.raises(ValueError, match="mp3 holds 1 or 2 channels"):
        audio_write(tmp_path / "x", music_like(3), SR, format="mp3")
    with pytest.raises(ValueError, match="ogg_rate"):
        audio_write(tmp_path / "x", wav, SR, format="ogg", ogg_rate=-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
