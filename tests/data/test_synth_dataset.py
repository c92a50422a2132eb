"""The music21 + FluidSynth dataset builder: tiny clips end to end, plus its pure parts."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiocraft.data.synth.harmony import Key, estimate_chords, find_key, parse_key
from audiocraft.data.synth.plan import SPLITS, assign_split


def _missing_tools() -> str | None:
    for module in ("music21", "fluidsynth"):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module!r} is not installed"
    try:
        import fluidsynth  # noqa: F401  (loads libfluidsynth)
    except (ImportError, OSError) as err:
        return f"libfluidsynth cannot be loaded ({err}); apt-get install fluidsynth"
    from audiocraft.data.synth.render import find_soundfont
    try:
        find_soundfont()
    except FileNotFoundError as err:
        return str(err)
    return None


MISSING = _missing_tools()
needs_tools = pytest.mark.skipif(MISSING is not None, reason=f"synth dataset needs FluidSynth + GM soundfont + "
                                                              f"music21: {MISSING}")
TINY = dict(hours=1.0, workers=1, seed=0, sample_rate=16000, max_works=3, clip_seconds=(2.0, 4.0),
            collections=("essenFolksong",), splits=(0.34, 0.33, 0.33), progress=False)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    if MISSING is not None:
        pytest.skip(MISSING)
    from audiocraft.data.synth.build import BuildConfig, build_dataset
    out = tmp_path_factory.mktemp("synth") / "ds"
    config = BuildConfig(out=out, **TINY)
    summary = build_dataset(config)
    return out, summary


def _sidecars(out: Path) -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in sorted((out / "audio").rglob("*.json"))]


# ----------------------------------------------------------------------------- end to end


@needs_tools
def test_clips_exist_are_audible_and_in_range(tiny_dataset):
    out, summary = tiny_dataset
    total = sum(summary["clips"].values())
    assert 2 <= total <= 12, summary
    assert summary["num_clips_failed"] == 0, summary["clips_failed"]
    wavs = sorted((out / "audio").rglob("*.wav"))
    assert len(wavs) == total
    for wav in wavs:
        audio, sample_rate = soundfile.read(wav, dtype="float32")
        assert sample_rate == 16000 and audio.ndim == 1
        assert 2.0 - 1e-3 <= len(audio) / sample_rate <= 4.0 + 1e-3
        assert np.sqrt(np.mean(audio ** 2)) > 1e-3, f"{wav.name} is silent"
        assert 0.8 < np.max(np.abs(audio)) <= 0.9, "peak-normalised with 1 dB headroom"


@needs_tools
def test_sidecars_are_music_info_and_captions_match_fields(tiny_dataset):
    from audiocraft.data.music_dataset import MusicInfo
    out, _ = tiny_dataset
    segment = dict(meta=None, seek_time=0.0, n_frames=1, total_frames=1, sample_rate=16000, channels=1)
    for path, data in _sidecars(out):
        info = MusicInfo.from_dict({**data, **segment}, fields_required=True)
        description = info.description.lower()
        assert data["instrument"] in description, info.description
        assert data["key"].lower() in description, info.description
        assert f"{data['bpm']} bpm" in description, info.description
        assert 50 <= info.bpm <= 180 and info.key.split()[1] in ("major", "minor")
        assert info.genre and info.moods and info.keywords and info.artist and info.title
        assert data["instrument_family"] in ("keyboard", "strings", "woodwind", "brass", "guitar", "mallet",
                                             "voice", "synth", "organ")
        assert data["style"] and info.name == path.stem


@needs_tools
def test_manifests_load_and_splits_share_no_work(tiny_dataset):
    from audiocraft.data.audio_dataset import AudioDataset
    from audiocraft.data.music_dataset import MusicDataset
    out, summary = tiny_dataset
    works_by_split = {}
    for split in SPLITS:
        if not summary["clips"][split]:
            assert not (out / split / "data.jsonl").exists()
            continue
        dataset = AudioDataset.from_meta(out / split, segment_duration=None, sample_rate=16000, channels=1)
        assert len(dataset.meta) == summary["clips"][split]
        assert all(Path(m.path).parent == out / "audio" / split and m.info_path for m in dataset.meta)
        music = MusicDataset.from_meta(out / split, segment_duration=1.5, sample_rate=16000, channels=1,
                                       num_samples=2)
        wav, info = music[0]
        assert wav.shape == (1, 24000) and info.description
        works_by_split[split] = {json.loads(Path(m.info_path).read_text())["source"]["work_id"]
                                 for m in dataset.meta}
    assert len(works_by_split) >= 2, "the tiny run should fill at least two splits"
    names = list(works_by_split)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not works_by_split[first] & works_by_split[second]


@needs_tools
def test_rerun_is_a_no_op_and_settings_are_guarded(tiny_dataset):
    from audiocraft.data.synth.build import BuildConfig, build_dataset
    out, summary = tiny_dataset
    before = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*") if p.is_file()}
    again = build_dataset(BuildConfig(out=out, **TINY))
    assert again["clips_rendered_this_run"] == 0
    assert again["clips"] == summary["clips"]
    assert {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*") if p.is_file()} == before
    with pytest.raises(ValueError, match="seed"):
        build_dataset(BuildConfig(out=out, **dict(TINY, seed=1)))
    with pytest.raises(ValueError, match="balance_families"):
        build_dataset(BuildConfig(out=out, **dict(TINY, balance_families=True)))


@needs_tools
def test_refuses_a_foreign_non_empty_folder(tmp_path):
    from audiocraft.data.synth.build import BuildConfig, check_output_dir
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        check_output_dir(BuildConfig(out=tmp_path, **TINY))
    check_output_dir(BuildConfig(out=tmp_path, force=True, **TINY))
    assert (tmp_path / "notes.txt").read_text() == "mine"


@needs_tools
def test_rendering_is_deterministic(tiny_dataset):
    from audiocraft.data.synth.arrange import arrange
    from audiocraft.data.synth.corpus import list_works, load_work
    from audiocraft.data.synth.plan import plan_clips
    from audiocraft.data.synth.render import FluidRenderer
    out, _ = tiny_dataset
    ref = list_works(["essenFolksong"], seed=0)[0]
    work = load_work(ref, out / "cache")
    plan = plan_clips(work, seed=0, sample_rate=16000, clip_seconds=(2.0, 4.0))[0]
    assert plan_clips(work, seed=0, sample_rate=16000, clip_seconds=(2.0, 4.0))[0] == plan
    renderer = FluidRenderer(None, 16000)
    first = renderer.render(arrange(work, plan))
    renderer.render(arrange(work, plan_clips(work, seed=5, sample_rate=16000, clip_seconds=(2.0, 4.0))[0]))
    assert np.array_equal(first, renderer.render(arrange(work, plan)))
    assert len(first) == plan.num_samples


# ----------------------------------------------------------------------------- pure parts


def _scale(tonic_midi: int, steps: tuple[int, ...]) -> list[tuple[float, float, int]]:
    return [(float(i), 1.0 + (step == 0), tonic_midi + step) for i, step in enumerate(steps)]


def test_find_key_on_scales_and_transposition():
    major = (0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0)
    minor = (0, 2, 3, 5, 7, 8, 11, 12, 7, 3, 0)
    assert find_key(_scale(60, major)).name == "C major"
    assert find_key(_scale(62, major)).name == "D major"
    assert find_key(_scale(57, minor)).name == "A minor"
    assert find_key(_scale(67, minor)).name == "G minor"
    assert Key(10, "major").name == "Bb major" and Key(1, "minor").name == "C# minor"
    assert Key(0, "major").transposed(-5).name == "G major"
    assert parse_key("B- major") == Key(10, "major") and parse_key("F# minor") == Key(6, "minor")
    assert parse_key("H dorian") is None and parse_key(None) is None
    assert Key(0, "major").same_signature(Key(9, "minor")) and not Key(0, "major").same_signature(Key(0, "minor"))


def test_chords_follow_the_melody():
    # bar 1 outlines C major, bar 2 G major (B-D-G), bar 3 F major (A-C-F)
    notes = [(0, 1, 60), (1, 1, 64), (2, 1, 67), (3, 1, 64), (4, 1, 71), (5, 1, 74), (6, 1, 67), (7, 1, 74),
             (8, 1, 69), (9, 1, 72), (10, 1, 65), (11, 1, 69)]
    chords = estimate_chords(notes, [(0, 4), (4, 8), (8, 12)], Key(0, "major"))
    assert [(c.root, c.quality) for c in chords] == [(0, "major"), (7, "major"), (5, "major")]


@pytest.mark.parametrize("texture, parts", [("solo", 1), ("solo", 3), ("accompanied", 1), ("ensemble", 4)])
def test_balanced_families_are_drawn_alike(texture, parts):
    import random
    from collections import Counter
    from types import SimpleNamespace

    from audiocraft.data.synth.plan import _choose_players

    work = SimpleNamespace(parts=[[]] * parts, compound=False, bars=[[0.0, 4.0]], time_signature="4/4",
                           beat_ql=1.0, beats_per_bar=4)
    draws = 4000

    def families(balance: bool) -> Counter:
        rng = random.Random(0)
        return Counter(_choose_players(work, texture, [], rng, balance)["family"] for _ in range(draws))

    plain, balanced = families(False), families(True)
    assert set(balanced) == set(plain)  # the same families on offer, drawn alike
    assert max(balanced.values()) / min(balanced.values()) < 1.25
    expected = draws / len(balanced)
    assert all(abs(count - expected) < 0.15 * expected for count in balanced.values())
    assert max(plain.values()) > max(balanced.values())  # uniform over instruments favours the larger families


def test_assign_split_is_deterministic_and_proportional():
    names = [f"work-{i}" for i in range(2000)]
    first = [assign_split(n, (0.9, 0.05, 0.05)) for n in names]
    assert first == [assign_split(n, (0.9, 0.05, 0.05)) for n in names]
    shares = {s: first.count(s) / len(names) for s in SPLITS}
    assert 0.87 < shares["train"] < 0.93 and 0.03 < shares["valid"] < 0.07
    with pytest.raises(ValueError, match="proportions"):
        assign_split("x", (1.0, -1.0, 0.0))


def test_build_config_rejects_bad_settings(tmp_path):
    from audiocraft.data.synth.build import BuildConfig
    with pytest.raises(ValueError, match="hours"):
        BuildConfig(out=tmp_path, hours=0)
    with pytest.raises(ValueError, match="clip_seconds"):
        BuildConfig(out=tmp_path, clip_seconds=(30.0, 10.0))
    with pytest.raises(ValueError, match="collections"):
        BuildConfig(out=tmp_path, collections=("nope",))
    with pytest.raises(ValueError, match="audio_format"):
        BuildConfig(out=tmp_path, audio_format="mp3")
    assert os.listdir(tmp_path) == []


@needs_tools
def test_command_line_with_worker_processes(tmp_path, capsys):
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_music_dataset.py"
    spec = importlib.util.spec_from_file_location("make_music_dataset", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--out", str(tmp_path / "ds"), "--hours", "0.001", "--workers", "2", "--max-works", "2",
            "--clip-seconds", "2", "3", "--collections", "essenFolksong", "--no-progress"]
    assert module.main(argv) == 0
    assert "done: " in capsys.readouterr().out
    assert len(list((tmp_path / "ds" / "audio").rglob("*.wav"))) >= 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    assert module.main(["--out", str(tmp_path / "other"), "--no-progress"]) == 2
    assert "--force" in capsys.readouterr().err
