"""Explorers: how ``dora grid`` summarises the experiments of a grid (one table row per experiment)."""
from __future__ import annotations

import dora
import treetable as tt


class BaseExplorer(dora.Explorer):
    """Shows the epoch reached and, per stage, the metrics of :meth:`stage_metrics` at the last epoch."""

    #: metrics shown for each stage: {stage: [metric names]}
    stage_metrics: dict[str, list[str]] = {"train": ["loss"], "valid": ["loss"]}

    def get_grid_meta(self):
        return super().get_grid_meta() + [tt.leaf("epoch", align=">")]

    def get_grid_metrics(self):
        return [tt.group(stage, [tt.leaf(name, ".4f") for name in names])
                for stage, names in self.stage_metrics.items()]

    def process_history(self, history: list[dict]) -> dict:
        out: dict = {"epoch": len(history)}
        for epoch in history:  # latest value of each stage (evaluate only runs some epochs)
            for stage, names in self.stage_metrics.items():
                if stage in epoch:
                    out[stage] = {name: epoch[stage][name] for name in names if name in epoch[stage]}
        return out


class CompressionExplorer(BaseExplorer):
    """Compression (EnCodec) experiments: reconstruction and adversarial losses, evaluation metrics."""

    stage_metrics = {
        "train": ["l1", "msspec", "adv", "feat", "d_loss", "bandwidth"],
        "valid": ["l1", "msspec", "sisnr"],
        "evaluate": ["sisnr", "mel"],
    }
