"""MusicGen: text-to-music (and melody-to-music) generation.

    from audiocraft.models import MusicGen
    model = MusicGen.get_pretrained()          # the bundled default model, works offline
    model.set_generation_params(duration=8)
    wav = model.generate(["lofi piano"])        # [B, C, T] at model.sample_rate
"""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch

from ..modules.conditioners import ConditioningAttributes, WavCondition
from .genmodel import AudioOrTokens, BaseGenModel
from .pretrained import load_pretrained_parts

MelodyList = List[Optional[torch.Tensor]]
MelodyType = Union[torch.Tensor, MelodyList]

# Deprecated short names of AudioCraft, kept working with a warning.
LEGACY_NAMES = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}


class MusicGen(BaseGenModel):
    """MusicGen with AudioCraft's API and defaults (see :class:`BaseGenModel`)."""

    def __init__(self, name: str, compression_model, lm, max_duration: Optional[float] = None):
        super().__init__(name, compression_model, lm, max_duration)
        self.set_generation_params(duration=15)
        self._melody: Optional[List[Optional[WavCondition]]] = None

    @staticmethod
    def get_pretrained(name: Optional[str] = None, device=None, dtype=None) -> "MusicGen":
        """Load a MusicGen.

        Args:
            name: None for the bundled default model (offline); a released name
                ('facebook/musicgen-small', '-medium', '-large', '-melody', '-melody-large',
                'facebook/musicgen-stereo-small'...), fetched through huggingface_hub and its cache;
                a local folder in AudioCraft's format (``state_dict.bin`` + ``compression_state_dict.bin``)
                or saved by transformers (``config.json`` + safetensors); 'debug' for a tiny random model.
                The legacy names 'small', 'medium', 'large', 'melody' still work, with a warning.
            device: 'cpu', 'cuda'... (default: cuda if available).
            dtype: None (float32, exact) or torch.bfloat16 / 'int8': weight-only low precision for the
                LM's linear layers, 2x / 4x less memory traffic per decoding step (faster on CPU).
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if name in LEGACY_NAMES:
            warnings.warn(f"MusicGen.get_pretrained({name!r}) uses a deprecated short name: "
                          f"use {LEGACY_NAMES[name]!r} instead", DeprecationWarning, stacklevel=2)
            name = LEGACY_NAMES[name]
        resolved, compression_model, lm, max_duration = load_pretrained_parts(name, device, dtype)
        if "self_wav" in lm.condition_provider.conditioners:
            melody = lm.condition_provider.conditioners["self_wav"]
            melody.match_len_on_eval = True
            melody.use_masking = False
        return MusicGen(resolved, compression_model, lm, max_duration)

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: float = 30.0, cfg_coef: float = 3.0,
                              cfg_coef_beta: Optional[float] = None, two_step_cfg: bool = False,
                              extend_stride: Optional[float] = None) -> None:
        """Set the generation parameters (AudioCraft's defaults).

        Args:
            use_sampling: sample (True) or take the most likely token (False).
            top_k: sample among the k most likely tokens (0: no restriction).
            top_p: nucleus sampling mass (0: use top_k instead).
            temperature: softmax temperature.
            duration: length of the output in seconds; beyond the model's window (max_duration)
                generation continues by sliding windows.
            cfg_coef: classifier-free guidance coefficient.
            cfg_coef_beta: double guidance for melody/style models: extra weight of the text over
                the audio condition (None: off).
            two_step_cfg: run the unconditional branch as a separate pass instead of batching it.
            extend_stride: how far each new window starts after the previous one, in seconds
                (must be smaller than max_duration; smaller keeps more context and costs more).
                Default: 18 s, or 0.6 * max_duration for models with a window shorter than 30 s.
        """
        self._apply_generation_params(18.0, duration, extend_stride, use_sampling, top_k, top_p, temperature,
                                      cfg_coef, two_step_cfg, cfg_coef_beta=cfg_coef_beta)

    def load_lora(self, path) -> "MusicGen":
        """Add the LoRA adapters saved in ``path`` (:func:`audiocraft.models.lora.save_lora`, or
        ``python -m audiocraft.solvers.musicgen export-lora``) to the LM, which must be the base
        model they were trained from. Returns ``self``."""
        from .lora import load_lora
        load_lora(self.lm, path)
        self.lm.eval()
        return self

    # ------------------------------------------------------------------ melody
    @property
    def supports_melody(self) -> bool:
        return "self_wav" in self.lm.condition_provider.conditioners

    def generate_with_chroma(self, descriptions: List[Optional[str]], melody_wavs: MelodyType,
                             melody_sample_rate: int, progress: bool = False,
                             return_tokens: bool = False) -> AudioOrTokens:
        """Generate from text and a melody (melody models only).

        Args:
            descriptions: one text (or None) per sample.
            melody_wavs: [B, C, T] or [C, T] tensor, or a list of [C, T] tensors / None (no melody).
            melody_sample_rate: sample rate of the melodies in Hz.
        Returns:
            audio [B, C, T] (and tokens [B, K, T']). In long generation the melody is tiled to
            follow each window.
        """
        if not self.supports_melody:
            raise ValueError(f"model {self.name!r} has no melody conditioning: use a melody model such as "
                             "'facebook/musicgen-melody'")
        descriptions = self._validate_descriptions(descriptions, allow_none=True)
        if isinstance(melody_wavs, torch.Tensor):
            if melody_wavs.dim() == 2:
                melody_wavs = melody_wavs[None]
            if melody_wavs.dim() != 3:
                raise ValueError(f"melody_wavs must have shape [B, C, T], got {tuple(melody_wavs.shape)}")
            melody_wavs = list(melody_wavs)
        if len(melody_wavs) != len(descriptions):
            raise ValueError(f"got {len(melody_wavs)} melodies for {len(descriptions)} descriptions: give one "
                             "melody (or None) per description")
        melodies = [None if wav is None else self._validate_audio(wav, melody_sample_rate, f"melody_wavs[{i}]")[0]
                    for i, wav in enumerate(melody_wavs)]
        attributes, _ = self._prepare_tokens_and_attributes(descriptions, None, melodies)
        return self._finish(self._generate_tokens(attributes, None, progress), return_tokens)

    def _null_melody(self) -> WavCondition:
        return WavCondition(torch.zeros((1, 1, 1), device=self.device), torch.tensor([0], device=self.device),
                            sample_rate=[self.sample_rate], path=[None], seek_time=[None])

    def _prepare_tokens_and_attributes(self, descriptions: Sequence[Optional[str]], prompt: Optional[torch.Tensor],
                                       melody_wavs: Optional[MelodyList] = None
                                       ) -> Tuple[List[ConditioningAttributes], Optional[torch.Tensor]]:
        attributes, prompt_tokens = super()._prepare_tokens_and_attributes(descriptions, prompt)
        self._melody = None
        if self.supports_melody:
            melodies = melody_wavs or [None] * len(attributes)
            self._melody = []
            for attr, melody in zip(attributes, melodies):
                if melody is None:
                    attr.wav["self_wav"] = self._null_melody()
                    self._melody.append(None)
                else:
                    cond = WavCondition(melody[None].to(self.device), torch.tensor([melody.shape[-1]], device=self.device),
                                        sample_rate=[self.sample_rate], path=[None], seek_time=[0.0])
                    attr.wav["self_wav"] = cond
                    self._melody.append(cond)
        return attributes, prompt_tokens

    def _window_hook(self, attributes: List[ConditioningAttributes], time_offset: float) -> None:
        """Make each window's melody start at the window's time (the melody is tiled if it is shorter)."""
        if not self._melody:
            return
        window_samples = int(self.max_duration * self.sample_rate)
        start = int(time_offset * self.sample_rate)
        for attr, melody in zip(attributes, self._melody):
            if melody is None:
                continue
            length = int(melody.length.item())
            positions = torch.arange(start, start + window_samples, device=self.device) % length
            attr.wav["self_wav"] = WavCondition(melody.wav[..., positions], torch.tensor([window_samples], device=self.device),
                                                sample_rate=[self.sample_rate], path=[None], seek_time=[time_offset])
