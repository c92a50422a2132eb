"""AudioGen: text-to-sound generation (same machinery as MusicGen, its own defaults)."""
from __future__ import annotations

from typing import Optional

import torch

from .genmodel import BaseGenModel
from .pretrained import load_pretrained_parts


class AudioGen(BaseGenModel):
    """AudioGen with AudioCraft's API and defaults (see :class:`BaseGenModel`)."""

    def __init__(self, name: str, compression_model, lm, max_duration: Optional[float] = None):
        super().__init__(name, compression_model, lm, max_duration)
        self.set_generation_params(duration=5)

    @staticmethod
    def get_pretrained(name: Optional[str] = "facebook/audiogen-medium", device=None, dtype=None) -> "AudioGen":
        """Load an AudioGen: 'facebook/audiogen-medium' (hub, cached), a local folder, or 'debug'.

        ``dtype``: None (float32), torch.bfloat16 or 'int8' (weight-only, see MusicGen.get_pretrained).
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if name is None:
            raise ValueError("AudioGen has no bundled default model: pass 'facebook/audiogen-medium' or a folder")
        resolved, compression_model, lm, max_duration = load_pretrained_parts(name, device, dtype)
        return AudioGen(resolved, compression_model, lm, max_duration)

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: float = 10.0, cfg_coef: float = 3.0,
                              two_step_cfg: bool = False, extend_stride: Optional[float] = None) -> None:
        """Set the generation parameters (AudioCraft's AudioGen defaults).

        Args:
            use_sampling: sample (True) or take the most likely token (False).
            top_k: sample among the k most likely tokens (0: no restriction).
            top_p: nucleus sampling mass (0: use top_k instead).
            temperature: softmax temperature.
            duration: output length in seconds (beyond max_duration: sliding windows).
            cfg_coef: classifier-free guidance coefficient.
            two_step_cfg: run the unconditional branch as a separate pass.
            extend_stride: window shift in long generation, in seconds (< max_duration; default 2 s).
        """
        self._apply_generation_params(2.0, duration, extend_stride, use_sampling, top_k, top_p, temperature,
                                      cfg_coef, two_step_cfg)
