"""Waveform conditioners: melody (chromagram) conditioning of MusicGen-melody.

The chroma conditioner extracts a chromagram ``[B, frames, n_chroma]`` from the
melody waveform, optionally after isolating the melodic stems ('vocals' + 'other')
with demucs when the ``demucs`` package is installed.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import torch

from ..chroma import ChromaExtractor
from .base import BaseConditioner, ConditionType, WavCondition, length_to_mask


class WaveformConditioner(BaseConditioner):
    """A conditioner whose attribute is a :class:`WavCondition`.

    Subclasses implement ``_embed(cond) -> [B, T, dim]`` and ``_downsampling_factor()``
    (audio samples per output frame), used to turn lengths into masks.
    """

    def __init__(self, dim: int, output_dim: int):
        super().__init__(dim, output_dim, project_output=True)
        self.use_masking = True

    def tokenize(self, cond: WavCondition) -> WavCondition:
        device = self.output_proj.weight.device
        return WavCondition(cond.wav.to(device), cond.length.to(device), cond.sample_rate, cond.path,
                            cond.seek_time)

    def _embed(self, cond: WavCondition) -> torch.Tensor:
        raise NotImplementedError

    def _downsampling_factor(self) -> float:
        raise NotImplementedError

    def forward(self, cond: WavCondition) -> ConditionType:
        with torch.no_grad():
            features = self._embed(cond)
        embeds = self.output_proj(features.to(self.output_proj.weight))
        if self.use_masking:
            lengths = cond.length / self._downsampling_factor()
            mask = length_to_mask(lengths, max_len=embeds.shape[1]).int()
        else:
            mask = torch.ones_like(embeds[..., 0], dtype=torch.int)
        return embeds * mask.unsqueeze(-1), mask


class ChromaStemConditioner(WaveformConditioner):
    """Chromagram of the melodic stems, tiled or cut to the training segment length.

    Args:
        output_dim: LM width.
        sample_rate: rate of the conditioning audio, in Hz.
        n_chroma: number of chroma bins.
        radix2_exp: the STFT size is 2**radix2_exp.
        duration: training segment length in seconds; chromagrams are matched to it.
        match_len_on_eval: tile/cut the chromagram to ``duration`` (and do not mask).
        use_demucs: separate stems with demucs if the package is installed.
    """

    def __init__(self, output_dim: int, sample_rate: int, n_chroma: int, radix2_exp: int, duration: float,
                 match_len_on_eval: bool = True, eval_wavs: Optional[str] = None, n_eval_wavs: int = 0,
                 cache_path: Optional[str] = None, device: str = "cpu", use_demucs: bool = True, **chroma_args):
        super().__init__(dim=n_chroma, output_dim=output_dim)
        self.sample_rate = sample_rate
        self.duration = duration
        self.match_len_on_eval = match_len_on_eval
        if match_len_on_eval:
            self.use_masking = False
        self.chroma = ChromaExtractor(sample_rate=sample_rate, n_chroma=n_chroma, radix2_exp=radix2_exp,
                                      **chroma_args)
        self.chroma_len = self.chroma(torch.zeros(1, 1, int(sample_rate * duration))).shape[1]
        self.__dict__["_demucs"] = None
        self.use_demucs = use_demucs

    def _downsampling_factor(self) -> float:
        return self.chroma.winhop

    def _demucs_model(self):
        if self.__dict__["_demucs"] is None and self.use_demucs:
            try:
                from demucs import pretrained
            except ImportError:
                warnings.warn("demucs is not installed: melody chroma is computed on the full mix instead of the "
                              "melodic stems (pip install demucs for stem separation)")
                self.use_demucs = False
                return None
            self.__dict__["_demucs"] = pretrained.get_model("htdemucs")
        return self.__dict__["_demucs"]

    def _melodic_stems(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """[B, C, T] mix -> [B, 1, T] sum of the 'vocals' and 'other' stems, at ``self.sample_rate``."""
        from ...data.audio_utils import convert_audio
        demucs = self._demucs_model()
        if demucs is None:
            return convert_audio(wav, sample_rate, self.sample_rate, 1)
        from demucs.apply import apply_model
        demucs.to(wav.device)
        mix = convert_audio(wav, sample_rate, demucs.samplerate, demucs.audio_channels)
        stems = apply_model(demucs, mix, device=wav.device)
        indices = [demucs.sources.index("vocals"), demucs.sources.index("other")]
        melodic = stems[:, indices].sum(1)
        return convert_audio(melodic, demucs.samplerate, self.sample_rate, 1)

    def _match_length(self, chroma: torch.Tensor) -> torch.Tensor:
        if not self.match_len_on_eval:
            return chroma
        frames = chroma.shape[1]
        if frames < self.chroma_len:
            chroma = chroma.repeat(1, int(math.ceil(self.chroma_len / frames)), 1)
        return chroma[:, :self.chroma_len]

    def _embed(self, cond: WavCondition) -> torch.Tensor:
        wav = cond.wav
        if wav.shape[-1] > 1:
            wav = self._melodic_stems(wav, int(cond.sample_rate[0]))
        return self._match_length(self.chroma(wav))
