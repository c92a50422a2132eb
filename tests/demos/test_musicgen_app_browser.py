"""The MusicGen Gradio demo, driven in a real (headless) Chromium with Selenium.

The app runs in this process on 127.0.0.1 with the tiny reference MusicGen injected through
``build_ui(load_model=...)``; the browser types, uploads and clicks like a person, and the
audio it ends up with is fetched from the page's own URLs and decoded. Needs gradio,
selenium, /usr/bin/chromium and /usr/bin/chromedriver (skipped, saying which, otherwise);
the live player also needs the ``ffmpeg`` program (without it the page simply has no live player).
Screenshots go to ``<tmp>/musicgen_app_browser/``.
"""
from __future__ import annotations

import importlib.util
import io
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

gr = pytest.importorskip("gradio", reason="the demo needs gradio: pip install gradio")
pytest.importorskip("selenium", reason="the browser tests need selenium: pip install selenium")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(tempfile.gettempdir()) / "musicgen_app_browser"
WAIT_SECONDS = 90

# The demos/ folder lives at the repository root, next to audiocraft/ (it is not installed).
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from demos._generation import GenerationJob, GenerationSettings  # noqa: E402
from demos.musicgen_app import ModelCache, _check_form, _load, build_ui  # noqa: E402
from audiocraft.models import MusicGen  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory):
    """The demo serving the tiny reference model on a free local port; yields (url, model)."""
    loaded = {}

    def load(name: str) -> MusicGen:
        loaded[name] = MusicGen.get_pretrained(name, device="cpu")
        return loaded[name]

    default = str(tiny_model_dir)
    demo = build_ui(ModelCache(load), [default], default, max_duration=120, concurrency_limit=2,
                    output_dir=str(tmp_path_factory.mktemp("musicgen_app_outputs")))
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False,
                quiet=True, show_error=True)
    try:
        yield f"http://127.0.0.1:{port}", loaded
    finally:
        demo.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}",
                 "--window-size=1400,1800", "--autoplay-policy=no-user-gesture-required",
                 # The page must work offline: any host but this machine fails to resolve.
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield browser
    finally:
        browser.quit()


# ---------------------------------------------------------------------------- page helpers


def _wait(browser, condition, what: str, timeout: float = WAIT_SECONDS):
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        shot = ARTIFACTS / f"timeout_{int(time.time())}.png"
        browser.save_screenshot(str(shot))
        status = browser.find_elements(By.ID, "status")
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; status: "
                             f"{status[0].text if status else '?'}; screenshot: {shot}") from None


def _open(browser, url: str) -> None:
    browser.get(url)
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#generate"), "the page to load", 60)


def _type_prompt(browser, text: str) -> None:
    box = browser.find_element(By.CSS_SELECTOR, "#prompt textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)


def _set_slider(browser, elem_id: str, value: float) -> None:
    field = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(f"{value:g}")
    field.send_keys(Keys.TAB)
    _wait(browser, lambda b: float(b.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=range]")
                                   .get_attribute("value")) == value, f"slider {elem_id} to show {value}", 10)


def _audio_src(browser, elem_id: str = "sample_1") -> str:
    players = browser.find_elements(By.CSS_SELECTOR, f"#{elem_id} audio")
    return (players[0].get_attribute("src") or "") if players else ""


def _status(browser) -> str:
    return browser.find_element(By.ID, "status").text


def _generate_and_wait(browser, previous_src: str = "") -> str:
    browser.find_element(By.ID, "generate").click()
    return _wait(browser, lambda b: (src := _audio_src(b)) and src != previous_src and src,
                 "sample 1's audio player to get a src")


def _fetch_audio(app_url: str, src: str):
    assert src.startswith(app_url + "/"), f"audio src {src!r} is not served by the app at {app_url}"
    with urllib.request.urlopen(src, timeout=30) as response:
        data = response.read()
    return soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)


def _check_audio(app_url: str, src: str, model: MusicGen, duration: float) -> np.ndarray:
    wav, sample_rate = _fetch_audio(app_url, src)
    assert sample_rate == model.sample_rate
    expected = int(duration * model.sample_rate)
    one_frame = model.sample_rate / model.frame_rate
    assert abs(wav.shape[0] - expected) <= one_frame, (wav.shape, expected)
    assert np.isfinite(wav).all()
    assert np.abs(wav).max() > 1e-3 and wav.std() > 1e-4, "the generated audio is silent"
    return wav


# ---------------------------------------------------------------------------- tests


def test_text_to_music_in_the_browser(app, driver):
    url, loaded = app
    _open(driver, url)
    _type_prompt(driver, "lofi hip hop beat with mellow chords")
    _set_slider(driver, "duration", 1)
    src = _generate_and_wait(driver)
    _wait(driver, lambda b: "Done" in _status(b), "the status to say Done")
    model = next(iter(loaded.values()))
    _check_audio(url, src, model, duration=1.0)
    # The rest of the outputs: seed, settings, picture, live player.
    seed_text = driver.find_element(By.ID, "seed_used").text
    assert "Seed used" in seed_text and any(ch.isdigit() for ch in seed_text)
    assert "lofi hip hop beat" in driver.find_element(By.ID, "settings").text
    _wait(driver, lambda b: b.find_elements(By.CSS_SELECTOR, "#picture img"), "the waveform picture", 10)
    if shutil.which("ffmpeg"):
        assert driver.find_element(By.CSS_SELECTOR, "#live audio").get_attribute("src"), "live player never streamed"
    # Everything the page loaded came from this machine.
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    foreign = [r for r in resources if not r.startswith((url, "blob:", "data:"))]
    assert not foreign, f"the page tried to load from other hosts: {foreign}"
    shot = ARTIFACTS / "text_to_music.png"
    driver.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


def test_unreadable_upload_shows_error_then_app_still_works(app, driver, tmp_path):
    url, loaded = app
    _open(driver, url)
    bogus = tmp_path / "not_really_audio.wav"
    bogus.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    # The page is usable once #generate shows; the upload widget may render a moment later.
    upload = _wait(driver, lambda b: b.find_elements(By.CSS_SELECTOR, "#audio_in input[type=file]"),
                   "the audio upload input", 30)
    upload[0].send_keys(str(bogus))
    _type_prompt(driver, "calm piano")
    _set_slider(driver, "duration", 1)
    driver.find_element(By.ID, "generate").click()
    message = "could not be read as audio"
    _wait(driver, lambda b: message in _status(b), "the unreadable-upload message in the status line")
    assert "not_really_audio.wav" in _status(driver)
    _wait(driver, lambda b: message in b.find_element(By.TAG_NAME, "body").text, "the error toast")
    driver.save_screenshot(str(ARTIFACTS / "unreadable_upload.png"))
    # Remove the upload and generate normally in the same page.
    clear = driver.find_elements(By.CSS_SELECTOR, "#audio_in button[aria-label='Clear']")
    assert clear, "the audio input has no Clear button"
    clear[0].click()
    _wait(driver, lambda b: not b.find_elements(By.CSS_SELECTOR, "#audio_in audio[src]"), "the upload to clear", 10)
    src = _generate_and_wait(driver)
    _check_audio(url, src, next(iter(loaded.values())), duration=1.0)


def test_two_sessions_at_once_both_get_their_audio(app, driver):
    url, loaded = app
    prompts = {"first": "epic orchestral soundtrack", "second": "acoustic folk song with guitar"}
    windows = {}
    for key, prompt in prompts.items():
        if windows:
            driver.switch_to.new_window("window")
        windows[key] = driver.current_window_handle
        _open(driver, url)
        _type_prompt(driver, prompt)
        _set_slider(driver, "duration", 2)
    for key in prompts:  # press Generate in both before waiting for either
        driver.switch_to.window(windows[key])
        driver.find_element(By.ID, "generate").click()
    model = next(iter(loaded.values()))
    for key, prompt in prompts.items():
        driver.switch_to.window(windows[key])
        src = _wait(driver, lambda b: _audio_src(b), f"the {key} window's audio")
        label = driver.find_element(By.CSS_SELECTOR, "#sample_1").text
        assert prompt in label, f"the {key} window shows another session's sample: {label!r}"
        _check_audio(url, src, model, duration=2.0)
        driver.save_screenshot(str(ARTIFACTS / f"session_{key}.png"))
    driver.switch_to.window(windows["second"])
    driver.close()
    driver.switch_to.window(windows["first"])


def test_cancel_stops_a_long_generation(app, driver):
    url, loaded = app
    _open(driver, url)
    _type_prompt(driver, "a very long ambient drone")
    _set_slider(driver, "duration", 120)
    driver.find_element(By.ID, "generate").click()
    _wait(driver, lambda b: "Generating" in _status(b), "generation to start")
    driver.find_element(By.ID, "cancel").click()
    _wait(driver, lambda b: "Cancelled" in _status(b), "the status to say Cancelled", 30)
    assert not _audio_src(driver), "a cancelled generation still produced a sample"
    # The worker let go of the model: a short generation right after goes through.
    _set_slider(driver, "duration", 1)
    src = _generate_and_wait(driver)
    _check_audio(url, src, next(iter(loaded.values())), duration=1.0)


# ---------------------------------------------------------------------------- without a browser


def _form(**changes) -> dict:
    form = dict(model_name="tiny", prompt_text="calm piano", audio_path=None, audio_mode="continuation prompt",
                prompt_seconds=5, duration=1, samples=1, use_sampling=True, top_k=250, top_p=0.0,
                temperature=1.0, cfg_coef=3.0, extend_stride=18, seed=-1)
    form.update(changes)
    return form


@pytest.mark.parametrize("changes, message", [
    (dict(prompt_text="  \n "), "Write a text prompt"),
    (dict(duration=10_000), "Duration must be between"),
    (dict(top_p=1.5), "Top-p must be between"),
    (dict(seed=1.5), "Seed must be a whole number"),
    (dict(prompt_text="a\nb\nc", samples=2), "at most 4 at once"),
    (dict(model_name=" "), "Choose a model"),
])
def test_bad_form_values_get_a_clear_message(changes, message):
    with pytest.raises(gr.Error) as info:
        _check_form(_form(**changes), max_duration=120, max_samples=4)
    assert message in info.value.message


def test_a_model_that_fails_to_load_gets_a_clear_message():
    def broken(name: str):
        raise FileNotFoundError(f"no checkpoint in {name}")

    with pytest.raises(gr.Error) as info:
        _load(broken, "/nowhere")
    assert "Could not load the model '/nowhere'" in info.value.message
    assert "no checkpoint in /nowhere" in info.value.message


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return MusicGen.get_pretrained(str(tiny_model_dir), device="cpu")


def _settings(**changes) -> GenerationSettings:
    values = dict(descriptions=["calm piano"], duration=1.0, use_sampling=True, top_k=16, top_p=0.0,
                  temperature=1.0, cfg_coef=3.0, extend_stride=18.0, seed=1)
    values.update(changes)
    return GenerationSettings(**values)


def test_job_continues_an_audio_prompt(tiny_model):
    time_axis = np.arange(16000) / 32000
    prompt = torch.from_numpy(0.3 * np.sin(2 * np.pi * 220 * time_axis)).float()[None]  # [C, T], 0.5 s
    settings = _settings(audio=prompt, audio_sample_rate=32000, audio_mode="continuation prompt")
    lock = threading.Lock()
    events = list(GenerationJob(tiny_model, settings, lock).start().events())
    audio = torch.cat([e.audio for e in events if e.kind == "chunk"], dim=-1)
    assert audio.shape == (1, 1, 32000)
    assert events[-1].kind == "done" and events[-1].done_frames == events[-1].total_frames == 50
    assert not lock.locked()


def test_job_cancel_frees_the_model(tiny_model):
    lock = threading.Lock()
    job = GenerationJob(tiny_model, _settings(duration=60.0), lock).start()
    for event in job.events():
        if event.kind in ("progress", "chunk"):
            job.cancel()
            break
    assert job.join(timeout=30), "the worker kept running after cancel()"
    assert not lock.locked()
    assert job.cancelled


@pytest.mark.parametrize("with_matplotlib", [True, False])
def test_picture_of_the_audio(with_matplotlib, monkeypatch):
    from demos._plots import IMAGE_SIZE, render_audio_picture

    if not with_matplotlib:
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails: numpy drawing
    elif importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    time_axis = np.arange(32000) / 32000
    wav = (0.5 * np.sin(2 * np.pi * 440 * time_axis))[None].astype(np.float32)  # [C, T]
    image = render_audio_picture(wav, 32000, title="test")
    assert image.dtype == np.uint8 and image.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0], 3)
    assert image.std() > 10, "the picture is blank"
