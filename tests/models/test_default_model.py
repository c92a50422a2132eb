"""The bundled default model: loads offline with no argument, in the released format, and makes sound."""
from pathlib import Path

import torch

from audiocraft.models import MusicGen
from audiocraft.models.loaders import COMPRESSION_CHECKPOINT, LM_CHECKPOINT
from audiocraft.models.pretrained import DEFAULT_MODEL_DIR

MAX_BUNDLE_MB = 60


def test_bundle_is_small_and_in_the_released_format():
    files = {name: DEFAULT_MODEL_DIR / name for name in (LM_CHECKPOINT, COMPRESSION_CHECKPOINT)}
    assert all(path.is_file() for path in files.values()), f"missing files in {DEFAULT_MODEL_DIR}"
    total_mb = sum(path.stat().st_size for path in Path(DEFAULT_MODEL_DIR).iterdir() if path.is_file()) / 2**20
    assert total_mb <= MAX_BUNDLE_MB
    for name, path in files.items():
        package = torch.load(path, map_location="cpu", weights_only=True)
        assert {"best_state", "xp.cfg"} <= set(package), name


def test_get_pretrained_without_argument_generates_music_offline():
    model = MusicGen.get_pretrained(device="cpu")
    assert Path(model.name) == DEFAULT_MODEL_DIR
    assert model.sample_rate == 16000 and model.audio_channels == 1
    assert model.compression_model.frame_rate == 25 and model.lm.num_codebooks == 4
    assert model.max_duration >= 10  # 10 s in one window, no extension
    model.set_generation_params(duration=1.0)
    torch.manual_seed(0)
    wav, tokens = model.generate(["a slow baroque chorale on string ensemble", "a bossa nova on nylon guitar"],
                                 return_tokens=True)
    assert wav.shape == (2, 1, 16000) and tokens.shape == (2, 4, 25)
    assert torch.isfinite(wav).all()
    rms = wav.pow(2).mean(dim=(1, 2)).sqrt()
    assert (rms > 1e-3).all(), f"silent output: rms {rms.tolist()}"
    assert not torch.equal(tokens[0], tokens[1])


def test_missing_bundle_is_a_clear_error(tmp_path, monkeypatch):
    import pytest

    from audiocraft.cli.common import CliError
    from audiocraft.cli.loading import default_model_name
    from audiocraft.models import pretrained

    monkeypatch.setattr(pretrained, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    with pytest.raises(FileNotFoundError, match="bundled default model is missing"):
        MusicGen.get_pretrained(device="cpu")
    with pytest.raises(CliError, match="pass --model"):
        default_model_name()
