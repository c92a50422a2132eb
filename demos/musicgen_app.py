"""MusicGen web demo (Gradio >= 5): text, melody or audio continuation to music, in the browser.

    python demos/musicgen_app.py                       # http://127.0.0.1:7860, bundled default model
    python demos/musicgen_app.py --model facebook/musicgen-small --listen 0.0.0.0 --port 8080
    python demos/musicgen_app.py --model /path/to/folder --concurrency 2 --share

The page is built by :func:`build_ui`, which receives a model loader instead of reading
module-level globals, so tests and other programs can inject any model (e.g. a tiny one).
:func:`main` creates a :class:`ModelCache` around ``MusicGen.get_pretrained`` and launches.
See ``docs/DEMO.md`` for the options and how the browser tests drive the page.
"""
from __future__ import annotations

import argparse
import html
import io
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, List, Optional, Tuple

try:
    import gradio as gr
except ImportError as _err:  # pragma: no cover - depends on the installation
    raise ImportError("the MusicGen demo needs Gradio: pip install 'audiocraft[demo]' "
                      "(or pip install gradio)") from _err

import soundfile
import torch

if __package__ in (None, ""):  # run as a script: make `demos` and `audiocraft` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audiocraft.data.audio import audio_write  # noqa: E402
from audiocraft.models import MusicGen  # noqa: E402
from demos._generation import (AUDIO_AS_CONTINUATION, AUDIO_AS_MELODY, AUDIO_MODES, GenerationJob,  # noqa: E402
                               GenerationSettings, check_settings, parse_prompts, read_audio_upload,
                               resolve_seed)
from demos._plots import render_audio_picture  # noqa: E402

logger = logging.getLogger(__name__)

#: Dropdown entry (and ``--model`` value) meaning "the model bundled with audiocraft".
DEFAULT_MODEL_LABEL = "default"
#: Released MusicGen checkpoints offered in the model dropdown (any other name or folder can be typed).
RELEASED_MODELS = [
    "facebook/musicgen-small",
    "facebook/musicgen-medium",
    "facebook/musicgen-large",
    "facebook/musicgen-melody",
    "facebook/musicgen-melody-large",
    "facebook/musicgen-stereo-small",
    "facebook/musicgen-stereo-medium",
    "facebook/musicgen-stereo-large",
    "facebook/musicgen-stereo-melody",
    "facebook/musicgen-stereo-melody-large",
]
_OUTPUT_MAX_AGE_SECONDS = 3600.0
_BAR_STYLE = "width: 40%; height: 1em; vertical-align: middle; margin-right: 0.5em"


class ModelCache:
    """Loads models by name on first use and keeps the ``capacity`` most recently used ones.

    Args:
        loader: ``loader(name) -> MusicGen``; called at most once per name while it stays cached.
        capacity: how many models stay in memory (older ones are dropped).
    """

    def __init__(self, loader: Callable[[str], MusicGen], capacity: int = 2):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 model, got {capacity}")
        self._loader = loader
        self._capacity = capacity
        self._models: "OrderedDict[str, MusicGen]" = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> MusicGen:
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            model = self._loader(name)
            self._models[name] = model
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)
            return model


def pretrained_loader(device: str) -> Callable[[str], MusicGen]:
    """A loader for :class:`ModelCache`: :data:`DEFAULT_MODEL_LABEL` is the bundled model, anything
    else is passed to ``MusicGen.get_pretrained`` (hub name, local folder, 'debug')."""
    def load(name: str) -> MusicGen:
        return MusicGen.get_pretrained(None if name == DEFAULT_MODEL_LABEL else name, device=device)
    return load


# ---------------------------------------------------------------------------- helpers


def _wav_bytes(wav: torch.Tensor, sample_rate: int) -> bytes:
    """One streamed chunk [C, t] as a 16-bit WAV file in memory (what gradio streams best)."""
    buffer = io.BytesIO()
    data = wav.clamp(-1, 1).t().numpy()
    soundfile.write(buffer, data, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _prune_old_outputs(root: Path) -> None:
    """Delete request folders older than an hour (gradio has copied them into its own cache)."""
    now = time.time()
    for folder in root.glob("request_*"):
        try:
            if now - folder.stat().st_mtime > _OUTPUT_MAX_AGE_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def _trim_upload(model: MusicGen, wav: torch.Tensor, sample_rate: int, mode: str, duration: float,
                 prompt_seconds: float) -> torch.Tensor:
    """Cut the upload [C, T] to what the model can use; warn in the page when it is shortened."""
    seconds = wav.shape[-1] / sample_rate
    if mode == AUDIO_AS_MELODY:
        keep = min(seconds, model.max_duration)
        return wav[..., :int(keep * sample_rate)]
    # A continuation prompt must leave room for new frames, inside the model's window.
    room = min(duration, model.max_duration) - 2.0 / model.frame_rate
    if room < 1.0 / model.frame_rate:
        raise gr.Error(f"Duration {duration:g} s is too short to continue the uploaded audio: "
                       "raise the duration.")
    keep = min(seconds, prompt_seconds, room)
    if keep < min(seconds, prompt_seconds):
        gr.Warning(f"The audio prompt was shortened to {keep:.2f} s so that the model has room to continue "
                   f"it within the {duration:g} s duration.")
    return wav[..., :max(1, int(keep * sample_rate))]


def _status_html(text: str, done: int = 0, total: int = 0, state: str = "running") -> str:
    """The status line: a progress bar (moving when ``total`` is unknown) and a message."""
    if state != "running":
        bar = ""
    elif total:
        bar = f'<progress value="{done}" max="{total}" style="{_BAR_STYLE}"></progress> '
    else:
        bar = f'<progress style="{_BAR_STYLE}"></progress> '
    return f'<div class="musicgen-status" data-state="{state}">{bar}<span>{html.escape(text)}</span></div>'


def _check_form(raw: dict, max_duration: float, max_samples: int
                ) -> Tuple[List[Optional[str]], int, Optional[torch.Tensor], Optional[int]]:
    """Check the form values: ``(descriptions, seed, upload [C, T] or None, upload sample rate)``."""
    try:
        check_settings(raw["duration"], raw["top_k"], raw["top_p"], raw["temperature"], raw["cfg_coef"],
                       raw["extend_stride"], raw["samples"], max_duration)
        seed = resolve_seed(raw["seed"])
        audio, audio_rate = read_audio_upload(raw["audio_path"])
    except ValueError as err:
        raise gr.Error(str(err)) from err
    samples = int(raw["samples"])
    descriptions: List[Optional[str]] = list(parse_prompts(raw["prompt_text"], samples))
    if not descriptions:
        if audio is None:
            raise gr.Error("Write a text prompt (one line per sample) or upload audio, then press Generate.")
        descriptions = [None] * samples
    if len(descriptions) > max_samples:
        raise gr.Error(f"{len(descriptions)} samples asked ({len(descriptions) // samples} prompt line(s) x "
                       f"{samples}); this app makes at most {max_samples} at once: use fewer lines or fewer "
                       "samples per prompt.")
    if not (raw["model_name"] or "").strip():
        raise gr.Error("Choose a model in the Model list, or type the path of a model folder.")
    return descriptions, seed, audio, audio_rate


def _load(load_model: Callable[[str], MusicGen], name: str) -> MusicGen:
    try:
        return load_model(name)
    except Exception as err:  # any loading failure is shown, and the app keeps serving
        logger.exception("loading model %r failed", name)
        reason = str(err).strip() or type(err).__name__
        reason += "" if reason.endswith((".", "!", "?")) else "."
        raise gr.Error(f"Could not load the model '{name}': {reason} Choose one of the listed models, or type the "
                       "path of a folder holding state_dict.bin and compression_state_dict.bin.") from err


def _settings_for_model(model: MusicGen, name: str, raw: dict, descriptions: List[Optional[str]], seed: int,
                        audio: Optional[torch.Tensor], audio_rate: Optional[int]) -> GenerationSettings:
    """Fit the checked request to the loaded model (upload length, top-k, stride)."""
    duration = float(raw["duration"])
    mode = raw["audio_mode"]
    if audio is not None:
        if mode not in AUDIO_MODES:
            raise gr.Error(f"Choose how to use the audio: one of {', '.join(AUDIO_MODES)}.")
        if mode == AUDIO_AS_MELODY and not model.supports_melody:
            raise gr.Error(f"The model '{name}' has no melody conditioning: choose '{AUDIO_AS_CONTINUATION}', or a "
                           "melody model such as facebook/musicgen-melody.")
        audio = _trim_upload(model, audio, audio_rate, mode, duration, float(raw["prompt_seconds"]))
    stride = float(raw["extend_stride"])
    if duration > model.max_duration and stride >= model.max_duration:
        raise gr.Error(f"Extend stride ({stride:g} s) must be shorter than the model's window "
                       f"({model.max_duration:g} s): lower it in the Sampling section.")
    return GenerationSettings(
        descriptions=descriptions, duration=duration, use_sampling=bool(raw["use_sampling"]),
        # top-k beyond the codebook size means "no restriction": clamp it to what the model has.
        top_k=min(int(raw["top_k"]), int(model.lm.card)), top_p=float(raw["top_p"]),
        temperature=float(raw["temperature"]), cfg_coef=float(raw["cfg_coef"]),
        extend_stride=min(stride, model.max_duration * 0.9), seed=seed,
        audio_mode=mode if audio is not None else None, audio=audio, audio_sample_rate=audio_rate)


def _write_outputs(model: MusicGen, settings: GenerationSettings, chunks: List[torch.Tensor], name: str,
                   elapsed: float, out_root: Path, max_samples: int):
    """WAV files, player updates, picture and settings summary for the generated chunks [B, C, t]."""
    audio = torch.cat(chunks, dim=-1)  # [B, C, T]
    _prune_old_outputs(out_root)
    folder = Path(tempfile.mkdtemp(prefix="request_", dir=out_root))
    updates = []
    for index in range(max_samples):
        if index < len(audio):
            path = audio_write(folder / f"musicgen_{settings.seed}_{index + 1}", audio[index], model.sample_rate,
                               strategy="loudness", loudness_headroom_db=16, loudness_compressor=True,
                               log_clipping=False)
            label = settings.descriptions[index] or "(no text)"
            updates.append(gr.update(value=str(path), visible=True, label=f"Sample {index + 1}: {label}"))
        else:
            updates.append(gr.update(value=None, visible=False))
    picture = render_audio_picture(audio[0].numpy(), model.sample_rate, title=settings.descriptions[0] or "")
    summary = {"model": name, "sample_rate": model.sample_rate,
               "seconds": round(audio.shape[-1] / model.sample_rate, 3),
               "generation_seconds": round(elapsed, 2), **settings.summary()}
    return updates, picture, summary


# ---------------------------------------------------------------------------- the page


def build_ui(load_model: Callable[[str], MusicGen], model_choices: List[str], default_model: str, *,
             max_duration: float = 120.0, max_samples: int = 4, concurrency_limit: int = 1,
             live_preview: Optional[bool] = None, output_dir: Optional[str] = None) -> gr.Blocks:
    """Build the MusicGen page; the result is queued and ready for ``.launch()``.

    Args:
        load_model: returns the MusicGen for a dropdown value (should cache: it is called per request).
        model_choices: names offered in the model dropdown (a local folder path can also be typed).
        default_model: the dropdown's initial value.
        max_duration: longest output a user may ask for, in seconds (beyond the model's
            window, generation continues by sliding windows).
        max_samples: most samples per request (one audio player each).
        concurrency_limit: requests handled at once (``queue(default_concurrency_limit=...)``).
            Generations themselves run one at a time (they share the model and torch's RNG);
            the others wait, saying so in their progress bar.
        live_preview: stream the first sample while it is generated (needs the ``ffmpeg``
            program, which gradio uses to encode the stream); None: on when ffmpeg is found.
        output_dir: where generated WAV files are written (default: a new temporary folder).
    """
    if not callable(load_model):
        raise TypeError(f"load_model must be a callable name -> MusicGen, got {type(load_model).__name__}")
    if max_duration <= 0 or max_samples < 1 or concurrency_limit < 1:
        raise ValueError(f"max_duration (seconds), max_samples and concurrency_limit must be positive, got "
                         f"{max_duration}, {max_samples}, {concurrency_limit}")
    if live_preview is None:
        live_preview = shutil.which("ffmpeg") is not None
    choices = list(dict.fromkeys([default_model, *model_choices]))
    out_root = Path(output_dir or tempfile.mkdtemp(prefix="musicgen_demo_"))
    out_root.mkdir(parents=True, exist_ok=True)
    generation_lock = threading.Lock()

    with gr.Blocks(title="MusicGen", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# MusicGen\nText to music with AudioCraft's MusicGen. One prompt per line gives one "
                    "sample per line; an uploaded file can steer the melody (melody models) or be continued.")
        with gr.Row():
            with gr.Column():
                model_box = gr.Dropdown(choices, value=default_model, allow_custom_value=True, label="Model",
                                        info="A released model, or type the path of a local model folder.",
                                        elem_id="model")
                prompt_box = gr.Textbox(label="Text prompt (one per line)", lines=3, elem_id="prompt",
                                        placeholder="lofi hip hop beat with mellow chords")
                with gr.Accordion("Audio prompt (optional)", open=True):
                    audio_box = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                         label="Melody or audio to continue", elem_id="audio_in")
                    mode_box = gr.Radio(list(AUDIO_MODES), value=AUDIO_AS_CONTINUATION, label="Use the audio as",
                                        elem_id="audio_mode")
                    prompt_seconds_box = gr.Slider(0.5, 30, value=5, step=0.5, elem_id="prompt_seconds",
                                                   label="Continuation: seconds of the upload to keep")
                duration_box = gr.Slider(0.5, max_duration, value=min(10.0, max_duration), step=0.5,
                                         label="Duration (s)", elem_id="duration",
                                         info="Beyond the model's window (30 s) generation slides on.")
                samples_box = gr.Slider(1, max_samples, value=1, step=1, label="Samples per prompt",
                                        elem_id="samples")
                with gr.Accordion("Sampling", open=False):
                    sampling_box = gr.Checkbox(True, label="Sample (off: always the most likely token)")
                    top_k_box = gr.Slider(0, 1000, value=250, step=1, label="Top-k (0: off)")
                    top_p_box = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Top-p (0: use top-k)")
                    temperature_box = gr.Slider(0.05, 3.0, value=1.0, step=0.05, label="Temperature")
                    cfg_box = gr.Slider(0.0, 10.0, value=3.0, step=0.1, label="Classifier-free guidance")
                    stride_box = gr.Slider(1, 29, value=18, step=1, label="Extend stride (s)",
                                           info="Long outputs: how far each new window moves on.")
                seed_box = gr.Number(-1, precision=0, label="Seed (-1: random)", elem_id="seed")
                with gr.Row():
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column():
                # Our own progress bar and status line rather than gr.Progress: gradio's overlay covers
                # the live player, and after a Cancel it leaves an "Error" badge on every output.
                status_box = gr.HTML(_status_html("Ready.", state="idle"), elem_id="status")
                live_box = gr.Audio(streaming=True, autoplay=True, interactive=False, visible=live_preview,
                                    label="Live: sample 1 while it is generated", elem_id="live")
                players = [gr.Audio(type="filepath", interactive=False, visible=index == 0,
                                    buttons=["download"], label=f"Sample {index + 1}",
                                    waveform_options=gr.WaveformOptions(show_recording_waveform=False),
                                    elem_id=f"sample_{index + 1}") for index in range(max_samples)]
                picture_box = gr.Image(type="numpy", format="png", interactive=False, elem_id="picture",
                                       label="Waveform and spectrogram of sample 1")
                seed_used_box = gr.Markdown(elem_id="seed_used")
                settings_box = gr.JSON(label="Settings used", elem_id="settings")

        outputs = [status_box, live_box, *players, picture_box, seed_used_box, settings_box]

        def respond(status=None, live=None, audio=None, picture=None, seed_text=None, settings=None):
            """One value per output; None leaves that output as it is."""
            keep = gr.skip()
            audio = audio if audio is not None else [keep] * max_samples
            return (keep if status is None else status, keep if live is None else live, *audio,
                    keep if picture is None else picture, keep if seed_text is None else seed_text,
                    keep if settings is None else settings)

        def run(raw: dict):
            """The request from form values to final outputs; raises gr.Error for anything a user can fix."""
            descriptions, seed, audio, audio_rate = _check_form(raw, max_duration, max_samples)
            name = (raw["model_name"] or "").strip()
            yield respond(status=_status_html(f"Loading model {name}…"), audio=[gr.update(value=None)] * max_samples,
                          seed_text=f"Seed: `{seed}`")
            model = _load(load_model, name)
            settings = _settings_for_model(model, name, raw, descriptions, seed, audio, audio_rate)
            job = GenerationJob(model, settings, generation_lock, stream=live_preview)
            started = time.time()
            chunks: List[torch.Tensor] = []
            finished = False
            try:
                job.start()
                for event in job.events():
                    if event.kind == "waiting":
                        text, done, total = "Waiting for another generation to finish…", 0, 0
                    elif event.kind == "starting" or not event.total_frames:
                        text, done, total = "Starting…", 0, 0
                    else:
                        done, total = event.done_frames, event.total_frames
                        text = (f"Generating: {done / model.frame_rate:.1f} of {total / model.frame_rate:.1f} s "
                                f"({time.time() - started:.0f} s elapsed)")
                    if event.kind == "chunk":
                        chunks.append(event.audio)
                    if event.kind == "done":
                        break
                    # Yield often, even with nothing new: Cancel closes this generator at a yield.
                    live = None
                    if event.kind == "chunk" and live_preview:
                        live = _wav_bytes(event.audio[0], model.sample_rate)
                    yield respond(status=_status_html(text, done, total), live=live)
                finished = not job.cancelled
            except ValueError as err:  # the model's own messages say what to change
                raise gr.Error(str(err)) from err
            except Exception as err:
                logger.exception("generation failed")
                raise gr.Error(f"Generation failed ({type(err).__name__}: {err}). Try a shorter duration or "
                               "other settings; the details are in the server log.") from err
            finally:
                if not finished:  # the user cancelled, the page went away or something failed
                    job.cancel()
            if not chunks:
                return
            yield respond(status=_status_html("Writing the audio files…"))
            elapsed = time.time() - started
            updates, picture, summary = _write_outputs(model, settings, chunks, name, elapsed, out_root, max_samples)
            seed_text = (f"**Seed used:** `{settings.seed}`. Type it in the Seed box to get the same result "
                         "again with the same settings.")
            yield respond(status=_status_html(f"Done in {elapsed:.1f} s.", state="done"), audio=updates,
                          picture=picture, seed_text=seed_text, settings=summary)

        def generate(model_name, prompt_text, audio_path, audio_mode, prompt_seconds, duration, samples,
                     use_sampling, top_k, top_p, temperature, cfg_coef, extend_stride, seed):
            raw = dict(model_name=model_name, prompt_text=prompt_text, audio_path=audio_path, audio_mode=audio_mode,
                       prompt_seconds=prompt_seconds, duration=duration, samples=samples,
                       use_sampling=use_sampling, top_k=top_k, top_p=top_p, temperature=temperature,
                       cfg_coef=cfg_coef, extend_stride=extend_stride, seed=seed)
            try:
                yield from run(raw)  # `yield from` passes gradio's close() (Cancel) on to run()
            except gr.Error as err:
                yield respond(status=_status_html(f"Error: {getattr(err, 'message', err)}", state="error"))
                raise

        inputs = [model_box, prompt_box, audio_box, mode_box, prompt_seconds_box, duration_box, samples_box,
                  sampling_box, top_k_box, top_p_box, temperature_box, cfg_box, stride_box, seed_box]
        generation = generate_button.click(generate, inputs=inputs, outputs=outputs, api_name="generate",
                                           show_progress="hidden")
        # Gradio cancels the run and closes `generate` at its next yield; run()'s `finally` stops the worker.
        cancel_button.click(None, cancels=[generation]).then(
            lambda: _status_html("Cancelled.", state="cancelled"), outputs=status_box, queue=False)

    demo.queue(default_concurrency_limit=concurrency_limit)
    return demo


# ---------------------------------------------------------------------------- command line


def _parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MusicGen web demo (Gradio).")
    parser.add_argument("--listen", default="127.0.0.1",
                        help="address to serve on (0.0.0.0 for every interface); default 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="port (default: gradio's, 7860 or the next free)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--model", default=DEFAULT_MODEL_LABEL,
                        help="model selected at start: 'default' (bundled), a hub name, a folder or 'debug'")
    parser.add_argument("--concurrency", type=int, default=1, help="requests handled at once (default 1)")
    parser.add_argument("--max-duration", type=float, default=120.0, help="longest output allowed, in seconds")
    parser.add_argument("--device", default=None, help="'cpu', 'cuda'... (default: cuda if available)")
    parser.add_argument("--inbrowser", action="store_true", help="open the page in the local browser")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_duration <= 0:
        parser.error(f"--max-duration must be > 0 seconds, got {args.max_duration}")
    return args


def main(argv: Optional[List[str]] = None) -> None:
    """Parse the command line, build the page around a :class:`ModelCache` and serve it."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cache = ModelCache(pretrained_loader(device), capacity=1)  # large models: keep one in memory
    choices = [DEFAULT_MODEL_LABEL, *RELEASED_MODELS]
    demo = build_ui(cache, choices, args.model, max_duration=args.max_duration,
                    concurrency_limit=args.concurrency)
    demo.launch(server_name=args.listen, server_port=args.port, share=args.share, inbrowser=args.inbrowser,
                ssr_mode=False, show_error=True)


if __name__ == "__main__":
    main()
