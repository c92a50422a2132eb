"""MusicInfo and MusicDataset (audiocraft.data.music_dataset): sidecars, augmentation, conditions."""
import json
import random
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audiocraft.data.audio_dataset import AudioMeta, SegmentInfo
from audiocraft.data.info_audio_dataset import AudioInfo, InfoAudioDataset, get_keyword_list
from audiocraft.data.music_dataset import (MusicDataset, MusicInfo, augment_music_info_description,
                                           get_bpm, get_musical_key)
from audiocraft.modules.conditioners import ConditioningAttributes, WavCondition

SR = 8000
FULL_SIDECAR = {"title": " Intro ", "artist": "a1", "key": "C Major", "bpm": "120", "genre": "Rock",
                "moods": ["Energetic", "happy"], "keywords": "guitar, drums", "description": "an upbeat rock intro",
                "name": "Intro", "instrument": "Mix", "sample_rate": 44100, "duration": 99.0}


def write_wav(path: Path, seconds: float = 1.0) -> AudioMeta:
    samples = (0.1 * np.random.default_rng(1).standard_normal(int(seconds * SR))).astype(np.float32)
    soundfile.write(path, samples, SR)
    return AudioMeta(str(path), seconds, SR)


@pytest.fixture()
def tracks(tmp_path):
    """json.wav + json.json (full sidecar), txt.wav + txt.txt, bare.wav (no metadata)."""
    meta = {name: write_wav(tmp_path / f"{name}.wav") for name in ("json", "txt", "bare")}
    (tmp_path / "json.json").write_text(json.dumps(FULL_SIDECAR))
    (tmp_path / "txt.txt").write_text("  calm piano with soft strings\n")
    return meta


def item_for(meta: AudioMeta, **kwargs):
    ds = MusicDataset([meta], sample_rate=SR, channels=1, shuffle=False, **kwargs)
    return ds[0]


def segment(**metadata) -> MusicInfo:
    info = SegmentInfo(AudioMeta("x.wav", 1.0, SR), 0.0, SR, SR, SR, 1)
    return MusicInfo.from_dict({**info.to_dict(), **metadata})


def test_json_sidecar_is_parsed_and_cleaned(tracks):
    wav, info = item_for(tracks["json"])
    assert isinstance(info, MusicInfo) and isinstance(info, AudioInfo)
    assert (info.title, info.artist, info.key, info.bpm, info.genre) == ("Intro", "a1", "c major", 120.0, "rock")
    assert info.moods == ["energetic", "happy"] and info.keywords == ["guitar", "drums"]
    assert (info.description, info.name, info.instrument) == ("an upbeat rock intro", "intro", "mix")
    assert info.has_music_meta
    # Segment fields come from the audio, not from the sidecar.
    assert info.sample_rate == SR and info.meta == tracks["json"] and info.n_frames == SR


def test_info_path_from_the_manifest_and_zip_sidecars(tracks, tmp_path):
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({**FULL_SIDECAR, "description": "from info_path"}))
    _, info = item_for(replace(tracks["bare"], info_path=str(other)))
    assert info.description == "from info_path"
    with zipfile.ZipFile(tmp_path / "meta.zip", "w") as bundle:
        bundle.writestr("data/bare.json", json.dumps({**FULL_SIDECAR, "description": "zipped"}))
    _, info = item_for(replace(tracks["bare"], info_path=f"{tmp_path / 'meta.zip'}:/data/bare.json"))
    assert info.description == "zipped"
    with pytest.raises(FileNotFoundError, match="gone.json"):
        item_for(replace(tracks["bare"], info_path=str(tmp_path / "gone.json")))


def test_required_fields(tracks, tmp_path):
    partial = {k: v for k, v in FULL_SIDECAR.items() if k not in ("genre", "keywords")}
    (tmp_path / "json.json").write_text(json.dumps(partial))
    with pytest.raises(ValueError, match=r"json\.json.*genre"):
        item_for(tracks["json"])
    _, info = item_for(tracks["json"], info_fields_required=False)
    assert info.genre is None and info.keywords is None and info.description == "an upbeat rock intro"
    (tmp_path / "json.json").write_text("{'genre': None}")  # Python, not JSON
    with pytest.raises(ValueError, match="not valid JSON"):
        item_for(tracks["json"])


def test_txt_fallback_and_no_metadata(tracks):
    _, info = item_for(tracks["txt"])  # info_fields_required=True does not apply to .txt descriptions
    assert info.description == "calm piano with soft strings" and info.genre is None
    _, info = item_for(tracks["bare"])
    assert info.description is None and not info.has_music_meta


def test_self_wav_and_condition_attributes(tracks):
    ds = MusicDataset([tracks["json"]], segment_duration=0.5, num_samples=3, sample_rate=SR, channels=2)
    ds.set_epoch(0)
    wav, info = ds[1]
    assert isinstance(info.self_wav, WavCondition)
    assert info.self_wav.wav.shape == (1, 2, 4000) and torch.equal(info.self_wav.wav[0], wav)
    assert info.self_wav.length.tolist() == [info.n_frames]
    assert info.self_wav.sample_rate == [SR] and info.self_wav.path == [tracks["json"].path]
    assert info.self_wav.seek_time == [info.seek_time]
    attributes = info.to_condition_attributes()
    assert isinstance(attributes, ConditioningAttributes)
    assert attributes.text == {"title": "Intro", "artist": "a1", "key": "c major", "bpm": "120.0", "genre": "rock",
                               "moods": "energetic happy", "keywords": "guitar drums",
                               "description": "an upbeat rock intro", "name": "intro", "instrument": "mix"}
    assert list(attributes.wav) == ["self_wav"] and attributes.wav["self_wav"] is info.self_wav
    assert segment(description="x").to_condition_attributes().wav == {}
    batch, infos = ds.collater([ds[0], ds[1]])
    assert batch.shape == (2, 2, 4000) and all(isinstance(i, MusicInfo) for i in infos)


def test_augmentation_probabilities_at_0_and_1():
    info = segment(description="Calm piano.", key="C major", bpm=90, genre="Jazz", moods=["chill", "warm"],
                   instrument="piano", keywords="night, rain")
    pairs = {"key: c major", "bpm: 90.0", "genre: jazz", "moods: chill, warm", "instrument: piano",
             "keywords: night, rain"}
    # No merge: only AudioCraft's normalisation of the final period.
    assert augment_music_info_description(info).description == "Calm piano."
    merged = augment_music_info_description(info, merge_text_p=1.0).description
    assert merged.startswith("Calm piano. ") and set(merged[len("Calm piano. "):].split(". ")) == pairs
    only_meta = augment_music_info_description(info, merge_text_p=1.0, drop_desc_p=1.0).description
    assert set(only_meta.split(". ")) == pairs
    assert augment_music_info_description(info, 1.0, drop_other_p=1.0).description == "Calm piano."
    assert augment_music_info_description(info, 1.0, drop_desc_p=1.0, drop_other_p=1.0).description is None
    assert info.description == "Calm piano."  # the input is not modified
    same = [augment_music_info_description(info, 1.0, 0.5, 0.5, rng=random.Random(3)).description for _ in range(2)]
    assert same[0] == same[1]
    with pytest.raises(ValueError, match="merge_text_p"):
        augment_music_info_description(info, merge_text_p=1.5)


def test_augmentation_in_the_dataset(tracks):
    _, info = item_for(tracks["json"], merge_text_p=1.0, drop_desc_p=1.0)
    assert "an upbeat rock intro" not in info.description and "genre: rock" in info.description
    _, info = item_for(tracks["json"], merge_text_p=1.0, drop_other_p=1.0)
    assert info.description == "an upbeat rock intro."
    with pytest.raises(ValueError, match="joint_embed_attributes"):
        MusicDataset([tracks["json"]], joint_embed_attributes=["description"])
    with pytest.raises(ValueError, match="drop_desc_p"):
        MusicDataset([tracks["json"]], drop_desc_p=-0.1)


def test_from_dict_requirements():
    base = SegmentInfo(AudioMeta("x.wav", 1.0, SR), 0.0, SR, SR, SR, 1).to_dict()
    without = lambda name: {k: v for k, v in FULL_SIDECAR.items() if k != name}  # noqa: E731
    with pytest.raises(ValueError, match="genre"):
        MusicInfo.from_dict({**base, **without("genre")}, fields_required=True)
    assert MusicInfo.from_dict({**base, **without("keywords")}, fields_required=True).keywords is None
    with pytest.raises(ValueError, match="segment field"):
        MusicInfo.from_dict({"description": "no segment"})


def test_info_audio_dataset_returns_audio_info(tracks):
    ds = InfoAudioDataset([tracks["bare"]], sample_rate=SR, channels=1, return_info=True)
    wav, info = ds[0]
    assert type(info) is AudioInfo and info.to_condition_attributes() == ConditioningAttributes()
    assert isinstance(InfoAudioDataset([tracks["bare"]], sample_rate=SR, channels=1)[0], torch.Tensor)


def test_value_helpers():
    assert get_musical_key(" A minor ") == "a minor"
    assert get_musical_key("C, G") is None and get_musical_key("") is None and get_musical_key(None) is None
    assert get_bpm("128") == 128.0 and get_bpm(100) == 100.0
    assert get_bpm("fast") is None and get_bpm(None) is None and get_bpm("") is None
    assert get_keyword_list("Rock, Pop  jazz") == ["rock", "pop", "jazz"]
    assert get_keyword_list([]) is None and get_keyword_list(float("nan")) is None
