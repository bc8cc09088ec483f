"""``solve(scenario) -> Result`` for the neural family: train the potential, evaluate, package."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mfg.provenance import git_revision, versions
from mfg.results import Result
from mfg.scenario import Scenario
from solvers.neural.fields import evaluate, fields_on_grid
from solvers.neural.training import NeuralTrainingError, Trainer, train

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda``; asking for cuda without a GPU is an error that says so."""
    if name == "cuda" and not torch.cuda.is_available():
        raise NeuralTrainingError("solver.device: cuda requested but torch sees no GPU "
                                  f"(torch {torch.__version__}, cuda {torch.version.cuda})")
    return torch.device(name)


def default_checkpoint(scenario: Scenario) -> str:
    """The result path (scenario ``output``, else results/<name>.h5) with ``.ckpt`` appended."""
    out = scenario.output or str(Path("results") / f"{scenario.name}.h5")
    return out + ".ckpt"


def solve(scenario: Scenario, *, callback: Callable[[Trainer], None] | None = None) -> Result:
    """Train U_θ for ``scenario`` (settings: mfg.settings.neural) and return its Result: terminal
    samples and trajectories, history, metrics, and for dim <= 2 the fields U and ρ on the grid.

    ``callback(trainer)`` runs after every iteration (for tests and tools)."""
    t0 = time.perf_counter()
    cfg = scenario.solver
    device = resolve_device(cfg.device)
    trainer = Trainer(scenario, device, DTYPES[cfg.dtype])
    checkpoint = cfg.checkpoint or default_checkpoint(scenario)
    train(trainer, checkpoint if (cfg.checkpoint_every or cfg.resume) else None, callback)
    samples, metrics = evaluate(trainer)
    grid = fields_on_grid(trainer)
    metrics["iterations"] = float(trainer.iteration)
    device_name = str(device)
    if device.type == "cuda":
        device_name += f" ({torch.cuda.get_device_name(device)})"
    settings = dataclasses.asdict(cfg) | {"checkpoint": checkpoint,
                                          "divergence": trainer.divergence}
    return Result(
        solver="neural",
        status="max_iter",
        scenario_text=scenario.text,
        settings=settings,
        grid=grid,
        samples=samples,
        history={k: np.asarray(v, dtype=np.float64) for k, v in trainer.history.items()},
        metrics=metrics,
        wall_time_s=time.perf_counter() - t0,
        device=device_name,
        versions=versions(),
        git_revision=git_revision(),
    )
