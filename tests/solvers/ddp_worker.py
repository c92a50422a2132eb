"""One process of the data-parallel tests (started by test_solver_distributed.py, like torchrun would).

Usage: python ddp_worker.py <manifest folder> <work folder>; reads RANK / WORLD_SIZE / MASTER_* from the
environment and writes ``<work folder>/result_<rank>.pt`` with the final states of a toy solver and of the
compression solver.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from audiocraft.solvers import StandardSolver, StepOutput, builders, get_solver
from audiocraft.utils import distributed
from solver_helpers import compose_config, debug_overrides, seed_all

TOY_OVERRIDES = ["dataset.batch_size=8", "optim.epochs=2", "optim.updates_per_epoch=null", "optim.max_norm=0.5",
                 "optim.lr=0.01", "optim.ema.use=true"]


class ToySolver(StandardSolver):
    """Regression of a small MLP on 32 fixed random points (mean squared error)."""

    def build_model(self) -> None:
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).to(self.device)
        self.optimizer = builders.get_optimizer(self.model.parameters(), self.cfg.optim)
        self.register_stateful("model", "optimizer")
        self.register_best_state("model")
        self.register_ema("model")

    def build_dataloaders(self) -> None:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(32, 8, generator=generator)
        dataset = torch.utils.data.TensorDataset(inputs, inputs.sum(-1, keepdim=True).sin())
        batch_size = builders.per_process_batch_size(int(self.cfg.dataset.batch_size), "dataset.batch_size")
        self.dataloaders = {
            "train": builders.get_loader(dataset, batch_size, shuffle=True, seed=int(self.cfg.seed), drop_last=True),
            "valid": builders.get_loader(dataset, batch_size),
        }

    def run_step(self, batch) -> StepOutput:
        inputs, targets = (tensor.to(self.device) for tensor in batch)
        loss = F.mse_loss(self.model(inputs), targets)
        return StepOutput(metrics={"loss": loss}, loss=loss if self.is_training else None)


def run_toy(manifest: Path, folder: Path) -> dict:
    cfg = compose_config(debug_overrides(manifest) + TOY_OVERRIDES)
    seed_all(int(cfg.seed))
    solver = ToySolver(cfg, folder=folder)
    solver.run()
    return {"model": solver.model.state_dict(), "ema": solver.ema.state_dict(), "history": solver.history}


def run_compression(manifest: Path, folder: Path) -> dict:
    cfg = compose_config(debug_overrides(manifest, epochs=1, updates=2) + ["dataset.batch_size=4"])
    seed_all(int(cfg.seed))
    solver = get_solver(cfg, folder=folder)
    solver.run()
    return {"model": solver.model.state_dict(), "history": solver.history}


def main() -> None:
    manifest, work = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    distributed.init("cpu")
    result = {"world_size": distributed.world_size(), "toy": run_toy(manifest, work / "toy"),
              "compression": run_compression(manifest, work / "compression")}
    torch.save(result, work / f"result_{distributed.rank()}.pt")
    distributed.barrier()


if __name__ == "__main__":
    main()
