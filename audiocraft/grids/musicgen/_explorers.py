"""How ``dora grid`` summarises MusicGen runs: cross-entropy and perplexity, evaluation metrics."""
from __future__ import annotations

from .._base_explorers import BaseExplorer


class LMExplorer(BaseExplorer):
    """Language-model experiments (MusicGen): ``ce``/``ppl`` per stage, FAD at evaluation."""

    stage_metrics = {
        "train": ["ce", "ppl"],
        "valid": ["ce", "ppl"],
        "evaluate": ["ce", "fad"],
    }
