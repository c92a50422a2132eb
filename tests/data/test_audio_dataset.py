"""Manifests and AudioDataset (audiocraft.data.audio_dataset): CLI, sampling, padding, errors."""
import gzip
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audiocraft.data.audio import audio_read
from audiocraft.data.audio_dataset import (AudioDataset, AudioMeta, SegmentInfo, find_audio_files,
                                           load_audio_meta, main, padding_mask, save_audio_meta)
from audiocraft.data.audio_utils import convert_audio

REPO = Path(__file__).resolve().parents[2]
SR = 8000
RAMP_SECONDS = 3.0


def ramp(num_samples: int) -> np.ndarray:
    """Sample n has value -0.9 + 1.8 n / N, so a sample value tells its position."""
    return (-0.9 + 1.8 * np.arange(num_samples) / num_samples).astype(np.float32)


def ramp_position(value: float, num_samples: int) -> float:
    return (value + 0.9) / 1.8 * num_samples


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """ramp.wav (3 s, float, 8 kHz), stereo.wav (2 s, 16 kHz), mono.flac (2.5 s), sub/deep.ogg (1.5 s),
    short.wav (0.3 s), corrupt.wav (garbage), notes.txt (ignored); ramp.json is a sidecar."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    soundfile.write(root / "ramp.wav", ramp(int(RAMP_SECONDS * SR)), SR, subtype="FLOAT")
    t = np.arange(2 * 16000) / 16000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], axis=1)
    soundfile.write(root / "stereo.wav", stereo.astype(np.float32), 16000)
    soundfile.write(root / "mono.flac", (0.1 * rng.standard_normal(int(2.5 * SR))).astype(np.float32), SR)
    (root / "sub").mkdir()
    soundfile.write(root / "sub" / "deep.ogg", (0.1 * rng.standard_normal(int(1.5 * SR))).astype(np.float32), SR)
    soundfile.write(root / "short.wav", (0.1 * rng.standard_normal(int(0.3 * SR))).astype(np.float32), SR)
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEgarbage" + bytes(range(256)))
    (root / "notes.txt").write_text("not audio")
    (root / "ramp.json").write_text(json.dumps({"description": "a ramp"}))
    return root


def meta_of(corpus: Path, *names: str, **overrides) -> list:
    entries = []
    for name in names:
        info = soundfile.info(str(corpus / name))
        entries.append(AudioMeta(str(corpus / name), info.frames / info.samplerate, info.samplerate,
                                 **overrides.get(name, {})))
    return entries


# ----------------------------------------------------------------------------- manifests


def test_cli_builds_manifest_and_lists_unreadable_files(corpus, tmp_path):
    out = tmp_path / "egs" / "data.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "audiocraft.data.audio_dataset", corpus.name, str(out),
                           "--workers", "2"], cwd=corpus.parent, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 unreadable" in proc.stderr and "corrupt.wav" in proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == [f"{corpus.name}/{n}" for n in
                                         ("mono.flac", "ramp.wav", "short.wav", "stereo.wav", "sub/deep.ogg")]
    for row in rows:
        assert set(row) == {"path", "duration", "sample_rate", "amplitude", "weight", "info_path"}
        assert row["amplitude"] is None and row["weight"] is None
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["ramp.wav"]["duration"] == pytest.approx(RAMP_SECONDS)
    assert by_name["stereo.wav"]["sample_rate"] == 16000
    assert by_name["ramp.wav"]["info_path"] == f"{corpus.name}/ramp.json"
    assert by_name["stereo.wav"]["info_path"] is None


def test_cli_gzip_resolve_complete_and_no_overwrite(corpus, tmp_path, capsys):
    out = tmp_path / "data.jsonl.gz"
    assert main([str(corpus), str(out), "--resolve", "--complete", "--workers", "0"]) == 0
    with gzip.open(out, "rt") as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) == 5 and all(os.path.isabs(r["path"]) for r in rows)
    ramp_row = next(r for r in rows if r["path"].endswith("ramp.wav"))
    assert ramp_row["amplitude"] == pytest.approx(0.9, abs=1e-3)
    assert "corrupt.wav" in capsys.readouterr().err
    before = out.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main([str(corpus), str(out)])
    assert exc.value.code != 0 and "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([str(corpus), str(out), "--overwrite", "--workers", "1"]) == 0


def test_cli_reports_missing_root(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nope"), str(tmp_path / "data.jsonl")])
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "data.jsonl").exists()


@pytest.mark.parametrize("name", ["data.jsonl", "data.jsonl.gz"])
def test_meta_round_trip(tmp_path, name):
    meta = [AudioMeta("/x/a.wav", 1.5, 16000), AudioMeta("b.mp3", 10.0, 44100, 0.5, 2.0, "b.json"),
            AudioMeta("/x/c.flac", 3.0, 8000, info_path="/x/arch.zip:c.json")]
    save_audio_meta(tmp_path / "sub" / name, meta)
    assert load_audio_meta(tmp_path / "sub" / name, resolve=False) == meta
    resolved = load_audio_meta(tmp_path / "sub" / name)
    assert resolved[1].path == os.path.abspath("b.mp3") and resolved[1].info_path == os.path.abspath("b.json")
    assert resolved[2] == meta[2]
    assert AudioMeta.from_dict({**meta[1].to_dict(), "unknown": 1}) == meta[1]
    assert not any(p.name.startswith(".") for p in (tmp_path / "sub").iterdir())


def test_meta_errors(tmp_path):
    with pytest.raises(ValueError, match="duration"):
        AudioMeta.from_dict({"path": "a.wav", "sample_rate": 16000})
    bad = tmp_path / "data.jsonl"
    bad.write_text(json.dumps(AudioMeta("a.wav", 1.0, 16000).to_dict()) + "\n{oops\n")
    with pytest.raises(ValueError, match="line 2"):
        load_audio_meta(bad)
    with pytest.raises(FileNotFoundError, match="audiocraft.data.audio_dataset"):
        load_audio_meta(tmp_path / "missing.jsonl")


def test_find_audio_files(corpus, caplog):
    with caplog.at_level(logging.WARNING):
        meta = find_audio_files(corpus, resolve=False, workers=2)
    assert [Path(m.path).name for m in meta] == ["mono.flac", "ramp.wav", "short.wav", "stereo.wav", "deep.ogg"]
    assert "corrupt.wav" in caplog.text
    assert [Path(m.path).name for m in find_audio_files(corpus, exts=["WAV"])] == \
        ["ramp.wav", "short.wav", "stereo.wav"]
    with pytest.raises(FileNotFoundError):
        find_audio_files(corpus / "missing")


# ----------------------------------------------------------------------------- segments


def test_segments_read_the_right_samples(corpus):
    ds = AudioDataset(meta_of(corpus, "ramp.wav"), segment_duration=0.5, sample_rate=SR, channels=1,
                      num_samples=20, return_info=True)
    ds.set_epoch(0)
    total = int(RAMP_SECONDS * SR)
    starts = []
    for index in range(len(ds)):
        wav, info = ds[index]
        # The start is uniform in [0, duration - min_segment_ratio * segment]: segments near the end are padded.
        assert 0 <= info.seek_time <= RAMP_SECONDS - 0.5 * 0.5
        start = int(info.seek_time * SR)
        assert wav.shape == (1, 4000) and info.total_frames == 4000 and info.n_frames == min(4000, total - start)
        expected = ramp(total)[start:][:4000]
        assert torch.equal(wav[0, :len(expected)], torch.from_numpy(expected))
        assert wav[0, len(expected):].abs().sum() == 0
        starts.append(ramp_position(wav[0, 0].item(), total))
    assert max(starts) - min(starts) > SR * 0.5  # start times are spread over the file


def test_padding_and_mask_for_a_file_shorter_than_the_segment(corpus):
    ds = AudioDataset(meta_of(corpus, "short.wav"), segment_duration=1.0, sample_rate=SR, channels=1,
                      num_samples=6, min_segment_ratio=0.2, return_info=True)
    ds.set_epoch(0)
    items = [ds[i] for i in range(len(ds))]
    for wav, info in items:
        assert wav.shape == (1, SR) and info.total_frames == SR
        assert 0 <= info.seek_time <= 0.3 - 0.2 + 1e-6
        assert info.n_frames == int(0.3 * SR) - int(info.seek_time * SR)
        assert wav[0, info.n_frames:].abs().sum() == 0 and wav[0, :info.n_frames].abs().sum() > 0
    batch, infos = ds.collater(items)
    assert batch.shape == (6, 1, SR)
    mask = padding_mask(infos)
    assert mask.shape == (6, SR) and mask.dtype == torch.bool
    assert torch.equal(mask.sum(1), torch.tensor([info.n_frames for info in infos]))
    unpadded = AudioDataset(meta_of(corpus, "short.wav"), segment_duration=1.0, sample_rate=SR, channels=1,
                            num_samples=2, min_segment_ratio=0.2, pad=False, shuffle=False)
    assert unpadded[0].shape[-1] < SR


def test_too_short_files_are_left_out(corpus):
    ds = AudioDataset(meta_of(corpus, "short.wav", "ramp.wav"), segment_duration=1.0, min_segment_ratio=0.5)
    assert [Path(m.path).name for m in ds.meta] == ["ramp.wav"]
    with pytest.raises(ValueError, match="left out"):
        AudioDataset(meta_of(corpus, "short.wav"), segment_duration=1.0, min_segment_ratio=0.5)
    kept = AudioDataset(meta_of(corpus, "short.wav", "ramp.wav"), min_audio_duration=0.1, max_audio_duration=2.9)
    assert [Path(m.path).name for m in kept.meta] == ["short.wav"] and len(kept) == 1


def test_sampling_is_deterministic_per_index_and_epoch(corpus):
    meta = meta_of(corpus, "ramp.wav", "mono.flac", "stereo.wav")
    ds = AudioDataset(meta, segment_duration=0.5, sample_rate=SR, channels=1, num_samples=12, return_info=True)

    def draws(dataset, epoch):
        dataset.set_epoch(epoch)
        return [(info.meta.path, info.seek_time) for _, info in (dataset[i] for i in range(len(dataset)))]

    epoch0 = draws(ds, 0)
    assert draws(ds, 0) == epoch0
    wav_a, _ = ds[3]
    wav_b, _ = ds[3]
    assert torch.equal(wav_a, wav_b)
    assert sum(a != b for a, b in zip(draws(ds, 1), epoch0)) >= 10
    other_seed = AudioDataset(meta, segment_duration=0.5, sample_rate=SR, channels=1, num_samples=12,
                              return_info=True, shuffle_seed=5)
    assert draws(other_seed, 0) != epoch0
    # Validation: a function of the index only, whatever the epoch.
    valid = AudioDataset(meta, segment_duration=0.5, sample_rate=SR, channels=1, num_samples=12,
                         return_info=True, shuffle=False)
    assert draws(valid, 0) == draws(valid, 7)


def test_weights_and_durations_drive_sampling(corpus):
    meta = meta_of(corpus, "ramp.wav", "mono.flac", "stereo.wav",
                   **{"ramp.wav": {"weight": 0.0}, "mono.flac": {"weight": 3.0}})
    ds = AudioDataset(meta, segment_duration=0.5, num_samples=60, load_wav=False, return_info=True)
    durations = torch.tensor([3.0, 2.5, 2.0])
    expected = torch.tensor([0.0, 3.0, 1.0]) * durations
    assert torch.allclose(ds.sampling_probabilities, expected / expected.sum())
    ds.set_epoch(0)
    picked = [Path(ds[i][1].meta.path).name for i in range(len(ds))]
    assert "ramp.wav" not in picked and {"mono.flac", "stereo.wav"} <= set(picked)
    assert ds[0][0].shape == (2, int(0.5 * 48000)) and ds[0][0].abs().sum() == 0  # load_wav=False: silence
    uniform = AudioDataset(meta, segment_duration=0.5, num_samples=60, load_wav=False, return_info=True,
                           sample_on_weight=False, sample_on_duration=False)
    uniform.set_epoch(0)
    assert "ramp.wav" in {Path(uniform[i][1].meta.path).name for i in range(len(uniform))}
    all_zero = meta_of(corpus, "ramp.wav", **{"ramp.wav": {"weight": 0.0}})
    with pytest.raises(ValueError, match="weight"):
        AudioDataset(all_zero, segment_duration=0.5)


def test_permutation_on_files_visits_every_file_once_per_pass(corpus):
    meta = meta_of(corpus, "ramp.wav", "mono.flac", "stereo.wav")
    ds = AudioDataset(meta, segment_duration=0.5, num_samples=3, load_wav=False, return_info=True,
                      sample_on_duration=False, sample_on_weight=False, permutation_on_files=True)
    for epoch in range(3):
        ds.set_epoch(epoch)
        assert sorted(ds[i][1].meta.path for i in range(3)) == sorted(m.path for m in meta)
    with pytest.raises(ValueError, match="permutation_on_files"):
        AudioDataset(meta, segment_duration=0.5, permutation_on_files=True)


def test_resampling_and_channel_conversion(corpus):
    meta = meta_of(corpus, "stereo.wav")
    full, sr = audio_read(corpus / "stereo.wav")
    mono = AudioDataset(meta, sample_rate=SR, channels=1, return_info=True)
    wav, info = mono[0]
    assert wav.shape == (1, 2 * SR) and info.sample_rate == SR and info.channels == 1 and info.seek_time == 0
    assert torch.allclose(wav, convert_audio(full, sr, SR, 1))
    seg = AudioDataset(meta, segment_duration=0.25, sample_rate=24000, channels=2, num_samples=4, return_info=True)
    seg.set_epoch(0)
    wav, info = seg[1]
    assert wav.shape == (2, 6000) and info.total_frames == 6000 and info.sample_rate == 24000
    assert info.channels == 2 and info.n_frames == 6000
    mono_file = AudioDataset(meta_of(corpus, "mono.flac"), sample_rate=SR, channels=2)
    wav = mono_file[0]
    assert wav.shape == (2, int(2.5 * SR)) and torch.equal(wav[0], wav[1]) and wav.is_contiguous()


def test_return_info_fields(corpus):
    ds = AudioDataset(meta_of(corpus, "ramp.wav"), segment_duration=1.0, sample_rate=16000, channels=2,
                      num_samples=3, return_info=True)
    ds.set_epoch(2)
    wav, info = ds[0]
    assert isinstance(info, SegmentInfo) and info.meta == ds.meta[0]
    assert (info.sample_rate, info.channels, info.total_frames) == (16000, 2, 16000)
    assert wav.shape[-1] == 16000 and isinstance(info.seek_time, float)
    assert info.n_frames == min(16000, 2 * (int(RAMP_SECONDS * SR) - int(info.seek_time * SR)))
    assert set(info.to_dict()) == {"meta", "seek_time", "n_frames", "total_frames", "sample_rate", "channels"}
    assert isinstance(AudioDataset(meta_of(corpus, "ramp.wav"), segment_duration=1.0)[0], torch.Tensor)


# ----------------------------------------------------------------------------- unreadable files


def test_corrupt_file_is_skipped_and_counted_in_training(corpus, caplog):
    corrupt = AudioMeta(str(corpus / "corrupt.wav"), 3.0, SR)  # drawn half of the time
    meta = [corrupt] + meta_of(corpus, "ramp.wav")
    ds = AudioDataset(meta, segment_duration=0.5, sample_rate=SR, channels=1, num_samples=20, return_info=True)
    ds.set_epoch(0)
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]
    assert all(wav.shape == (1, 4000) and info.meta.path.endswith("ramp.wav") for wav, info in items)
    assert ds.num_skipped_files >= 5
    assert "corrupt.wav" in caplog.text
    only_corrupt = AudioDataset([corrupt], segment_duration=0.5, num_samples=2, max_read_retry=3)
    only_corrupt.set_epoch(0)
    with pytest.raises(RuntimeError, match="3 attempts.*corrupt.wav"):
        only_corrupt[0]
    assert only_corrupt.num_skipped_files == 3


def test_corrupt_file_raises_in_validation(corpus):
    corrupt = AudioMeta(str(corpus / "corrupt.wav"), 2.0, SR)
    valid = AudioDataset([corrupt] + meta_of(corpus, "ramp.wav", **{"ramp.wav": {"weight": 0.0}}),
                         segment_duration=0.5, num_samples=4, shuffle=False)
    with pytest.raises(RuntimeError, match="corrupt.wav"):
        valid[0]
    assert valid.num_skipped_files == 0
    whole = AudioDataset([corrupt] + meta_of(corpus, "ramp.wav"), shuffle=False)
    with pytest.raises(RuntimeError, match="corrupt.wav"):
        whole[0]
    missing = AudioDataset([AudioMeta(str(corpus / "gone.wav"), 1.0, SR)], shuffle=False)
    with pytest.raises(RuntimeError, match="gone.wav"):
        missing[0]


# ----------------------------------------------------------------------------- validation and batching


def test_whole_files_in_validation_and_collation(corpus):
    meta = meta_of(corpus, "ramp.wav", "mono.flac", "short.wav")
    ds = AudioDataset(meta, shuffle=False, sample_rate=SR, channels=1, return_info=True)
    assert len(ds) == 3
    items = [ds[i] for i in range(len(ds))]
    for (wav, info), entry in zip(items, meta):
        expected, _ = audio_read(entry.path)
        assert info.meta == entry and info.seek_time == 0 and torch.equal(wav, expected)
    assert torch.equal(ds[0][0], items[0][0])
    batch, infos = ds.collater(items)
    assert batch.shape == (3, 1, int(RAMP_SECONDS * SR))
    assert [info.total_frames for info in infos] == [batch.shape[-1]] * 3
    assert [info.n_frames for info in infos] == [24000, 20000, 2400]
    assert items[2][1].total_frames == 2400  # the items themselves are not modified
    assert torch.equal(padding_mask(infos).sum(1), torch.tensor([24000, 20000, 2400]))
    no_info = AudioDataset(meta, shuffle=False, sample_rate=SR, channels=1, pad=False)
    with pytest.raises(ValueError, match="pad=False"):
        no_info.collater([no_info[0], no_info[2]])
    with pytest.raises(IndexError):
        ds[3]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=ds.collater)
    assert [b.shape[0] for b, _ in loader] == [2, 1]


def test_from_meta_and_from_path(corpus, tmp_path):
    save_audio_meta(tmp_path / "data.jsonl.gz", meta_of(corpus, "ramp.wav", "mono.flac"))
    ds = AudioDataset.from_meta(tmp_path, segment_duration=0.5, num_samples=5)
    assert len(ds) == 5 and len(ds.meta) == 2
    assert len(AudioDataset.from_path(tmp_path / "data.jsonl.gz").meta) == 2
    scanned = AudioDataset.from_path(corpus)
    assert len(scanned) == 5 and all(os.path.isabs(m.path) for m in scanned.meta)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="data.jsonl"):
        AudioDataset.from_meta(tmp_path / "empty")


def test_argument_errors(corpus):
    meta = meta_of(corpus, "ramp.wav")
    with pytest.raises(ValueError, match="empty"):
        AudioDataset([])
    with pytest.raises(TypeError, match="from_meta"):
        AudioDataset(str(corpus))
    with pytest.raises(TypeError, match="AudioMeta"):
        AudioDataset([m.to_dict() for m in meta])
    with pytest.raises(ValueError, match="segment_duration"):
        AudioDataset(meta, segment_duration=0)
    with pytest.raises(ValueError, match="load_wav"):
        AudioDataset(meta, load_wav=False)
    with pytest.raises(ValueError, match="min_audio_duration"):
        AudioDataset(meta, min_audio_duration=3, max_audio_duration=1)
    with pytest.raises(ValueError, match="sample_rate"):
        AudioDataset(meta, sample_rate=0)
