"""Render a :class:`~.arrange.Performance` to mono float32 audio with FluidSynth.

We drive libfluidsynth through pyfluidsynth (import name ``fluidsynth``) and read its output
as 32-bit floats: the 16-bit path adds dither noise from a generator that persists across
calls, and a reused synthesizer keeps state between clips, so each clip gets a fresh
synthesizer (the SoundFont's samples stay cached by libfluidsynth, so this costs ~0.2 s) and the
output is a deterministic function of the performance.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from .arrange import Performance

__all__ = ["DEFAULT_SOUNDFONT", "find_soundfont", "FluidRenderer", "peak_normalize"]

#: Debian's ``fluid-soundfont-gm`` (FluidR3_GM, MIT licence).
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
_SOUNDFONT_CANDIDATES = (DEFAULT_SOUNDFONT, "/usr/share/soundfonts/FluidR3_GM.sf2",
                         "/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/soundfonts/default.sf2")
_BLOCK = 64  # libfluidsynth renders in blocks of 64 frames; events apply at block boundaries


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The SoundFont to use: ``path`` if given, else the first General MIDI one installed.

    Raises:
        FileNotFoundError: ``path`` does not exist, or no GM SoundFont is installed.
    """
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"soundfont {str(path)!r} does not exist; pass a General MIDI .sf2 file "
                                    f"(Debian: `apt-get install fluid-soundfont-gm`).")
        return Path(path)
    for candidate in _SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(f"no General MIDI SoundFont found (looked at {list(_SOUNDFONT_CANDIDATES)}); install "
                            f"one with `apt-get install fluid-soundfont-gm` or pass --soundfont.")


def peak_normalize(wav: np.ndarray, headroom_db: float = 1.0) -> np.ndarray:
    """Scale ``wav`` so its peak is ``-headroom_db`` dBFS (silence is returned unchanged)."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak <= 0:
        return wav.astype(np.float32)
    return (wav * (10 ** (-headroom_db / 20) / peak)).astype(np.float32)


class FluidRenderer:
    """Renders performances with one SoundFont at one sample rate (one instance per process).

    Args:
        soundfont: General MIDI .sf2 file; see :func:`find_soundfont`.
        sample_rate: output sample rate in Hz (8000 to 96000, FluidSynth's limits).
        gain: FluidSynth master gain before normalisation (low enough not to clip dense scores).
    """

    def __init__(self, soundfont: str | os.PathLike, sample_rate: int = 16000, gain: float = 0.2):
        try:
            import fluidsynth
        except ImportError as err:  # the Python binding or libfluidsynth itself is missing
            raise ImportError(f"rendering needs pyfluidsynth and libfluidsynth: `pip install pyfluidsynth` and "
                              f"`apt-get install fluidsynth` ({err}).") from err
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 96000:
            raise ValueError(f"FluidRenderer: `sample_rate` must be an int in [8000, 96000] Hz, got {sample_rate!r}.")
        self._fluidsynth = fluidsynth
        self.soundfont = str(find_soundfont(soundfont))
        self.sample_rate = sample_rate
        self.gain = gain
        write = fluidsynth._fl.fluid_synth_write_float
        write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                          ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        write.restype = ctypes.c_int
        self._write = write
        # Kept alive so libfluidsynth keeps the SoundFont's samples cached for the per-clip synths.
        self._keeper, _ = self._new_synth()

    def _new_synth(self):
        synth = self._fluidsynth.Synth(gain=self.gain, samplerate=float(self.sample_rate))
        font = synth.sfload(self.soundfont)
        if font < 0:
            raise RuntimeError(f"FluidSynth could not load the SoundFont {self.soundfont!r}.")
        return synth, font

    def _samples(self, synth, frames: int) -> np.ndarray:
        buffer = np.zeros((frames, 2), dtype=np.float32)
        pointer = buffer.ctypes.data
        if self._write(synth.synth, frames, pointer, 0, 2, pointer, 1, 2) != 0:
            raise RuntimeError("FluidSynth failed to render audio (fluid_synth_write_float).")
        return buffer.mean(axis=1)

    def render(self, performance: Performance) -> np.ndarray:
        """Mono float32 audio [T] of ``performance``, T = ``performance.num_samples`` (not normalised).

        Raises:
            ValueError: the performance was arranged for another sample rate.
        """
        if performance.sample_rate != self.sample_rate:
            raise ValueError(f"FluidRenderer.render: the performance is planned at {performance.sample_rate} Hz "
                             f"but this renderer runs at {self.sample_rate} Hz; plan and render at one rate.")
        synth, font = self._new_synth()
        try:
            for setup in performance.channels:
                synth.program_select(setup.channel, font, setup.bank, setup.program)
                synth.cc(setup.channel, 7, setup.volume)
                synth.cc(setup.channel, 91, setup.reverb)
                synth.cc(setup.channel, 93, 0)
            events = []
            for start, end, channel, pitch, velocity in performance.notes:
                events.append((int(round(start * self.sample_rate)), 1, channel, pitch, velocity))
                events.append((int(round(end * self.sample_rate)), 0, channel, pitch, 0))
            events.sort()  # at equal times note-offs (0) come before note-ons (1): repeated notes retrigger
            chunks, cursor, total = [], 0, performance.num_samples
            for frame, is_on, channel, pitch, velocity in events:
                frame = min(frame, total)
                if frame > cursor:
                    chunks.append(self._samples(synth, frame - cursor))
                    cursor = frame
                if is_on:
                    synth.noteon(channel, pitch, velocity)
                else:
                    synth.noteoff(channel, pitch)
            if total > cursor:
                chunks.append(self._samples(synth, total - cursor))
        finally:
            synth.delete()
        audio = np.concatenate(chunks) if chunks else np.zeros(total, dtype=np.float32)
        fade = min(len(audio), int(0.05 * self.sample_rate))
        if fade:
            audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return audio[:total]
