"""A picture of generated audio for the demo: waveform on top, log spectrogram below.

Uses matplotlib when it is installed; otherwise draws the same two panels with numpy
alone, so the demo needs nothing beyond gradio. Either way the result is an RGB image
``[H, W, 3]`` uint8 that ``gr.Image`` shows directly.
"""
from __future__ import annotations

import numpy as np

#: Size of the picture in pixels (width, height).
IMAGE_SIZE = (960, 420)
_FFT_SIZE = 1024
_HOP = 256


def _mono(wav: np.ndarray) -> np.ndarray:
    """[C, T] or [T] float audio -> [T] float64."""
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim == 2:
        wav = wav.mean(axis=0)
    if wav.ndim != 1:
        raise ValueError(f"wav must be [C, T] or [T] audio, got an array of shape {wav.shape}")
    return wav


def log_spectrogram(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """Magnitude spectrogram in dB of mono audio.

    Args:
        wav: audio [C, T] or [T] (channels are averaged).
        sample_rate: in Hz.
    Returns:
        ``(spec_db, max_frequency)``: ``[F, N]`` float64 dB values (F frequency bins from
        0 Hz to ``max_frequency`` = Nyquist, N frames of ``_HOP`` samples), clipped to 80 dB
        below the peak.
    """
    signal = _mono(wav)
    if signal.size < _FFT_SIZE:
        signal = np.pad(signal, (0, _FFT_SIZE - signal.size))
    count = 1 + (signal.size - _FFT_SIZE) // _HOP
    starts = np.arange(count) * _HOP
    frames = signal[starts[:, None] + np.arange(_FFT_SIZE)[None, :]] * np.hanning(_FFT_SIZE)[None, :]
    magnitude = np.abs(np.fft.rfft(frames, axis=-1)).T  # [F, N]
    spec_db = 20 * np.log10(np.maximum(magnitude, 1e-10))
    spec_db = np.maximum(spec_db, spec_db.max() - 80.0)
    return spec_db, sample_rate / 2


def _render_matplotlib(signal: np.ndarray, sample_rate: int, title: str) -> np.ndarray:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    del matplotlib  # imported only to fail early (ImportError) when matplotlib is missing
    width, height = IMAGE_SIZE
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    seconds = np.arange(signal.size) / sample_rate
    top.plot(seconds, signal, linewidth=0.5, color="#ff7c00")
    peak = max(float(np.abs(signal).max()), 1e-3)
    top.set_ylim(-1.05 * peak, 1.05 * peak)
    top.set_ylabel("amplitude")
    top.set_title(title, fontsize=10)
    spec_db, nyquist = log_spectrogram(signal, sample_rate)
    duration = max(signal.size / sample_rate, 1e-3)
    bottom.imshow(spec_db, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, nyquist / 1000))
    bottom.set_ylabel("kHz")
    bottom.set_xlabel("time (s)")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _render_numpy(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    width, height = IMAGE_SIZE
    half = height // 2
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    # Waveform: for each pixel column, a vertical bar from the minimum to the maximum sample.
    edges = np.linspace(0, signal.size, width + 1).astype(int)
    middle = half // 2
    peak = max(float(np.abs(signal).max()), 1e-3)
    for column in range(width):
        part = signal[edges[column]:max(edges[column + 1], edges[column] + 1)]
        if part.size == 0:
            continue
        low = int(np.clip(middle - part.max() / peak * (middle - 2), 0, half - 1))
        high = int(np.clip(middle - part.min() / peak * (middle - 2), 0, half - 1))
        image[low:high + 1, column] = (255, 124, 0)
    image[middle, :] = (200, 200, 200)
    # Spectrogram: dB values scaled to grey levels, low frequencies at the bottom.
    spec_db, _ = log_spectrogram(signal, sample_rate)
    rows = np.linspace(spec_db.shape[0] - 1, 0, height - half).astype(int)
    cols = np.linspace(0, spec_db.shape[1] - 1, width).astype(int)
    grid = spec_db[rows][:, cols]
    span = max(float(grid.max() - grid.min()), 1e-6)
    grey = (255 * (grid - grid.min()) / span).astype(np.uint8)
    image[half:] = grey[..., None]
    return image


def render_audio_picture(wav: np.ndarray, sample_rate: int, title: str = "") -> np.ndarray:
    """Waveform and spectrogram of ``wav`` as an RGB image.

    Args:
        wav: audio [C, T] or [T] in [-1, 1] (channels are averaged).
        sample_rate: in Hz.
        title: caption drawn above the waveform (matplotlib only).
    Returns:
        uint8 array ``[H, W, 3]`` (``IMAGE_SIZE`` = (W, H)).
    """
    signal = _mono(wav)
    if signal.size == 0:
        raise ValueError("wav is empty: there is nothing to draw")
    try:
        return _render_matplotlib(signal, sample_rate, title)
    except ImportError:
        return _render_numpy(signal, sample_rate)
