"""The command line (`python -m audiocraft ...`), mostly called in-process through `main(argv)`.

Generation uses the reference tiny MusicGen folder (1 s = 50 frames at 32 kHz) or the
'debug' model; the environment (HF_HOME, HF_HUB_OFFLINE) comes from conftest.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audiocraft.cli import main
from audiocraft.cli.common import CliError, collect_prompts, parse_prompt_lines
from audiocraft.cli.outputs import numbered_names, slugify

REPO = Path(__file__).resolve().parents[2]


def run(argv, capsys):
    """main(argv) -> (exit code, stdout, stderr)."""
    code = main([str(item) for item in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, verb: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"audiocraft {verb}: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], err


def write_tone(path: Path, seconds: float, sample_rate: int, channels: int) -> None:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    soundfile.write(str(path), np.stack([tone] * channels, axis=1).astype(np.float32), sample_rate)


def subprocess_env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    return env


# ---------------------------------------------------------------------------- parsing helpers

def test_prompt_lines_and_names():
    text = "# my prompts\n\n  lofi piano  \n#skipped\nepic brass # not a comment\n\n"
    assert parse_prompt_lines(text) == ["lofi piano", "epic brass # not a comment"]
    with pytest.raises(CliError, match="no prompt"):
        collect_prompts([], None)
    with pytest.raises(CliError, match="empty"):
        collect_prompts(["  "], None)
    assert slugify("Épic Orchestral / Brass & Strings!!") == "epic_orchestral_brass_strings"
    assert slugify("???") == "untitled" and slugify(None) == "untitled"
    long = slugify("word " * 40)
    assert len(long) <= 48 and not long.endswith("_") and long.startswith("word_word")
    assert numbered_names(["a", "a", None]) == ["000_a", "001_a", "002_untitled"]
    assert numbered_names(["x"] * 1001)[-1] == "1000_x"


def test_help_in_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "audiocraft", "--help"], capture_output=True, text=True,
                            env=subprocess_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    for verb in ("generate", "continue", "melody", "encode", "decode", "info"):
        assert verb in result.stdout
    result = subprocess.run([sys.executable, "-m", "audiocraft", "generate", "--help"], capture_output=True,
                            text=True, env=subprocess_env(), timeout=60)
    assert result.returncode == 0
    for option in ("--prompts-file", "--seed", "--top-k", "--cfg-coef", "--overwrite", "--strategy"):
        assert option in result.stdout
    # a usage error: exit 2, one argparse-style line, no traceback
    result = subprocess.run([sys.executable, "-m", "audiocraft", "generate", "x", "--duration", "-1"],
                            capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--duration" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------- generate

def test_generate_from_prompts_file(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts and a comment\n\nlofi hip hop beat\n\n# skipped\nepic brass & strings\n")
    out = tmp_path / "out"
    code, stdout, stderr = run(["generate", "calm piano", "--prompts-file", prompts, "--model", tiny_model_dir,
                                "--duration", 1, "--batch-size", 2, "--seed", 1, "--out", out], capsys)
    assert code == 0, stderr
    names = sorted(path.name for path in out.iterdir())
    assert names == ["000_calm_piano.wav", "001_lofi_hip_hop_beat.wav", "002_epic_brass_strings.wav"]
    assert stdout.split() == [str(out / name) for name in names]
    for name in names:
        info = soundfile.info(str(out / name))
        assert (info.samplerate, info.channels, info.frames) == (32000, 1, 32000)
    assert "wrote 3 file(s)" in stderr and "3.0 s of audio" in stderr and "real time" in stderr
    assert "seed 1" in stderr


def test_seed_gives_the_same_bytes(tiny_model_dir, tmp_path, capsys):
    common = ["generate", "techno", "--model", tiny_model_dir, "--duration", 0.5, "-q"]
    assert run(common + ["--seed", 7, "--out", tmp_path / "a"], capsys)[0] == 0
    assert run(common + ["--seed", 7, "--out", tmp_path / "b"], capsys)[0] == 0
    assert run(common + ["--seed", 8, "--out", tmp_path / "c"], capsys)[0] == 0
    first, second, other = (tmp_path / folder / "000_techno.wav" for folder in "abc")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_overwrite_is_refused_before_any_work(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "001_b.wav"
    existing.write_bytes(b"keep me")
    os.utime(existing, (1_000_000_000, 1_000_000_000))
    code, stdout, stderr = run(["generate", "a", "b", "--model", tiny_model_dir, "--duration", 0.2, "--out", out],
                               capsys)
    assert_one_line_error(code, stderr, "generate", str(existing), "--overwrite")
    assert stdout == ""
    assert existing.read_bytes() == b"keep me" and existing.stat().st_mtime == 1_000_000_000
    assert sorted(path.name for path in out.iterdir()) == ["001_b.wav"]  # nothing generated
    code, _, stderr = run(["generate", "a", "b", "--model", tiny_model_dir, "--duration", 0.2, "--out", out,
                           "--overwrite", "-q"], capsys)
    assert code == 0, stderr
    assert soundfile.info(str(existing)).frames == int(0.2 * 32000)
    assert sorted(path.name for path in out.iterdir()) == ["000_a.wav", "001_b.wav"]


def test_seeded_cli_equals_the_python_api(tiny_model_dir, tmp_path, capsys):
    from audiocraft.models import MusicGen

    code, _, stderr = run(["generate", "lofi beat", "calm", "--model", tiny_model_dir, "--duration", 0.5, "--seed", 5,
                           "--top-k", 50, "--strategy", "clip", "--out", tmp_path, "-q"], capsys)
    assert code == 0, stderr
    model = MusicGen.get_pretrained(str(tiny_model_dir), device="cpu")
    model.set_generation_params(duration=0.5, top_k=50)
    torch.manual_seed(5)
    audio = model.generate(["lofi beat", "calm"])
    limit = 10 ** (-1 / 20)  # --strategy clip clamps to -1 dBFS; wav files hold 16-bit samples
    for index, name in enumerate(["000_lofi_beat.wav", "001_calm.wav"]):
        written, _ = soundfile.read(str(tmp_path / name), dtype="float32")
        expected = (audio[index, 0].clamp(-limit, limit) * 2 ** 15).round().clamp(-2 ** 15, 2 ** 15 - 1) / 2 ** 15
        np.testing.assert_array_equal(written, expected.numpy())


# ---------------------------------------------------------------------------- continue / melody

def test_continue_from_a_wav(tiny_model_dir, tmp_path, capsys):
    prompt = tmp_path / "riff.wav"
    write_tone(prompt, 0.6, 16000, 2)  # other rate and channels: converted to 32 kHz mono
    out = tmp_path / "out"
    code, stdout, stderr = run(["continue", prompt, "--prompt-duration", 0.4, "--description", "jazz trio",
                                "--num-samples", 2, "--model", tiny_model_dir, "--duration", 1, "--seed", 0,
                                "--out", out, "--strategy", "peak", "-q"], capsys)
    assert code == 0, stderr
    assert sorted(path.name for path in out.iterdir()) == ["000_jazz_trio.wav", "001_jazz_trio.wav"]
    for path in out.iterdir():
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.frames) == (32000, 1, 32000)
    # the prompt must be shorter than the whole output
    code, _, stderr = run(["continue", prompt, "--model", tiny_model_dir, "--duration", 0.5, "--out", out], capsys)
    assert_one_line_error(code, stderr, "continue", "--duration")


def test_melody_needs_a_melody_model(tiny_model_dir, tmp_path, capsys):
    melody = tmp_path / "hum.wav"
    write_tone(melody, 0.5, 32000, 1)
    code, _, stderr = run(["melody", melody, "synth pop", "--model", tiny_model_dir, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, stderr, "melody", "melody conditioning")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- input errors

def test_input_errors_exit_2_with_one_line(tiny_model_dir, tmp_path, capsys):
    code, _, stderr = run(["continue", tmp_path / "missing.wav", "--model", tiny_model_dir], capsys)
    assert_one_line_error(code, stderr, "continue", "missing.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 4)
    code, _, stderr = run(["continue", corrupt, "--model", tiny_model_dir], capsys)
    assert_one_line_error(code, stderr, "continue", "corrupt.wav")
    code, _, stderr = run(["encode", corrupt, "--model", tiny_model_dir, "--out", tmp_path / "t.pt"], capsys)
    assert_one_line_error(code, stderr, "encode", "corrupt.wav")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n   \n")
    code, _, stderr = run(["generate", "--prompts-file", empty, "--model", tiny_model_dir], capsys)
    assert_one_line_error(code, stderr, "generate", "empty.txt", "no prompts")
    code, _, stderr = run(["generate", "x", "--duration", "-1", "--model", tiny_model_dir], capsys)
    assert_one_line_error(code, stderr, "generate", "--duration")
    code, _, stderr = run(["generate", "x", "--model", tmp_path / "no_such_model", "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, stderr, "generate", "no_such_model")
    code, _, stderr = run(["generate", "x", "--model", "facebook/musicgen-small", "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, stderr, "generate", "facebook/musicgen-small")
    code, _, stderr = run(["decode", corrupt, "--out", tmp_path / "x.wav"], capsys)
    assert_one_line_error(code, stderr, "decode", "not a torch file")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- encode / decode / info

def test_encode_decode_round_trip(tiny_model_dir, tmp_path, capsys):
    audio = tmp_path / "tone.wav"
    write_tone(audio, 0.73, 44100, 2)
    tokens = tmp_path / "tone.tokens.pt"
    code, stdout, stderr = run(["encode", audio, "--out", tokens, "--model", tiny_model_dir], capsys)
    assert code == 0, stderr
    assert stdout.strip() == str(tokens)
    package = torch.load(tokens, weights_only=True)
    frames = math.ceil(0.73 * 50)
    assert package["codes"].dtype == torch.int16 and tuple(package["codes"].shape) == (1, 4, frames)
    assert package["sample_rate"] == 32000 and package["frame_rate"] == 50 and package["channels"] == 1
    assert package["num_samples"] == round(0.73 * 32000)
    assert package["model"] == str(tiny_model_dir.resolve())
    assert int(package["codes"].min()) >= 0 and int(package["codes"].max()) < 64

    decoded = tmp_path / "tone.decoded.wav"
    code, _, stderr = run(["decode", tokens, "--out", decoded], capsys)  # codec named in the file
    assert code == 0, stderr
    info = soundfile.info(str(decoded))
    assert (info.samplerate, info.channels, info.frames) == (32000, 1, frames * 640)
    code, _, stderr = run(["decode", tokens, "--out", decoded], capsys)
    assert_one_line_error(code, stderr, "decode", "--overwrite")
    code, _, stderr = run(["decode", tokens, "--out", tmp_path / "trimmed.flac", "--trim"], capsys)
    assert code == 0, stderr
    assert soundfile.info(str(tmp_path / "trimmed.flac")).frames == package["num_samples"]

    again = tmp_path / "again.pt"
    code, _, stderr = run(["encode", decoded, "--out", again, "--model", tiny_model_dir, "-q"], capsys)
    assert code == 0, stderr
    assert tuple(torch.load(again, weights_only=True)["codes"].shape) == (1, 4, frames)

    code, stdout, stderr = run(["info", tokens, "--json"], capsys)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["kind"] == "tokens" and summary["codes"] == f"int16 [1, 4, {frames}]"
    assert summary["frames"] == frames and summary["sample_rate"] == 32000


def test_info_on_folder_does_not_need_t5(tiny_model_dir, tmp_path):
    """In a subprocess whose HF cache is empty: a summary that loaded T5 would fail."""
    result = subprocess.run([sys.executable, "-m", "audiocraft", "info", str(tiny_model_dir), "--json"],
                            capture_output=True, text=True, timeout=120,
                            env=subprocess_env(HF_HOME=str(tmp_path / "empty_hf"), HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    state = torch.load(tiny_model_dir / "state_dict.bin", weights_only=True)["best_state"]
    lm = summary["language_model"]
    assert (lm["dim"], lm["num_layers"], lm["num_heads"], lm["n_q"], lm["card"]) == (64, 2, 4, 4, 64)
    assert lm["parameters"] == sum(value.numel() for value in state.values())
    assert summary["conditioners"]["description"].startswith("t5 (name=t5-base")
    assert summary["pattern"].startswith("delay (delays=[0, 1, 2, 3]")
    assert summary["max_duration_s"] == 30 and summary["kind"] == "MusicGen"
    codec = summary["codec"]
    assert (codec["sample_rate_hz"], codec["frame_rate_hz"], codec["channels"], codec["codebooks"]) == (32000, 50, 1, 4)


def test_info_on_checkpoint_file(tiny_model_dir, capsys):
    code, stdout, stderr = run(["info", tiny_model_dir / "state_dict.bin"], capsys)
    assert code == 0, stderr
    assert "keys:" in stdout and "best_state, exported, version, xp.cfg" in stdout
    assert "float16: 36" in stdout and "solver:" in stdout and "musicgen" in stdout
    code, stdout, stderr = run(["info", tiny_model_dir / "compression_state_dict.bin", "--json"], capsys)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["best_state"]["dtypes"] == {"float32": summary["best_state"]["tensors"]}
    assert summary["config"]["codec"]["hop_length"] == 640 and summary["config"]["codec"]["codebooks"] == 4
