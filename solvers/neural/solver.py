"""``solve(scenario) -> Result`` for the neural family: train the potential, evaluate, package."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from tqdm.auto import tqdm

from mfg.provenance import git_revision, versions
from mfg.results import Result
from mfg.scenario import Scenario, ScenarioError
from solvers.neural.distributed import Group, check_batch, launch_ranks, process_group
from solvers.neural.fields import EVALUATION_STAGES, evaluate, fields_on_grid, has_grid_fields
from solvers.neural.likelihood import LikelihoodTrainer
from solvers.neural.training import NeuralTrainingError, Trainer, distributable, train

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


def trainer_class_for(scenario: Scenario) -> type[Trainer]:
    """The trainer of the scenario's terminal kind: maximum likelihood for ``likelihood``, the
    generator/critic trainer otherwise."""
    return LikelihoodTrainer if scenario.terminal.kind == "likelihood" else Trainer


def make_trainer(trainer_class: type[Trainer], scenario: Scenario, group: Group) -> Trainer:
    """The run's trainer on the group's device; the group is passed only when there are several
    processes (trainer classes that do not run distributed need not accept it)."""
    dtype = DTYPES[scenario.solver.dtype]
    if group.world_size > 1:
        return trainer_class(scenario, group.device, dtype, group)
    return trainer_class(scenario, group.device, dtype)


class StageBar:
    """Progress of the evaluation after training, a stage at a time (it has no iterations to
    count; in R^64 its Sinkhorn figure alone takes minutes on CPU): ``begin(name)`` ends the
    stage before and shows ``name``, ``end()`` ends the current one, ``close()`` removes the
    bar (a stage cut short by an error is not counted). tqdm on ``file`` (stderr); ``disable``
    as tqdm's (None: off when ``file`` is not a terminal)."""

    def __init__(self, total: int, disable: bool | None, file: TextIO | None = None):
        self.bar = tqdm(total=total, disable=disable, file=file, dynamic_ncols=True,
                        bar_format="evaluation {n}/{total} [{elapsed}] {desc}")
        self.current: str | None = None

    def begin(self, name: str) -> None:
        self.end()
        self.current = name
        self.bar.set_description_str(name)

    def end(self) -> None:
        if self.current is not None:
            self.bar.update(1)
            self.current = None

    def close(self) -> None:
        self.bar.close()


def solve(scenario: Scenario, *, callback: Callable[[Trainer], None] | None = None) -> Result:
    """Train U_θ for ``scenario`` (settings: mfg.settings.neural) and return its Result: terminal
    samples and trajectories, history, metrics, and for dim <= 2 the fields U and ρ on the grid.

    ``callback(trainer)`` runs after every iteration (for tests and tools).

    ``wall_time_s`` is this call's time plus, for a resumed run, the training time of its
    earlier sessions (recorded in the checkpoint); ``metrics["train_time_s"]`` the training
    time alone, all sessions together.

    Under torchrun (WORLD_SIZE > 1) the processes train together (solvers.neural.distributed):
    ``batch_size`` is the global batch, rank 0 alone evaluates and writes checkpoints; the other
    ranks return the Result without samples, metrics and fields."""
    t0 = time.perf_counter()
    cfg = scenario.solver
    device = resolve_device(cfg.device)
    trainer_class = trainer_class_for(scenario)
    ranks = launch_ranks()
    if ranks.world_size > 1:
        check_batch(cfg.batch_size, ranks.world_size)
        if not distributable(trainer_class):
            raise ScenarioError(f"terminal kind {scenario.terminal.kind!r}: its trainer does "
                                "not run under torchrun yet; run it in one process")
    with process_group(ranks, device) as group:
        trainer = make_trainer(trainer_class, scenario, group)
        checkpoint = cfg.checkpoint or default_checkpoint(scenario)
        train(trainer, checkpoint if (cfg.checkpoint_every or cfg.resume) else None, callback)
        samples: dict[str, np.ndarray] = {}
        metrics: dict[str, float] = {}
        grid = None
        if group.is_main:
            on_grid = has_grid_fields(scenario)
            stages = StageBar(len(EVALUATION_STAGES) + on_grid,
                              disable=None if cfg.progress else True)
            try:
                samples, metrics = evaluate(trainer, on_stage=stages.begin)
                if on_grid:
                    stages.begin("fields on the grid")
                grid = fields_on_grid(trainer)
                stages.end()
            finally:
                stages.close()
        group.barrier()  # the others wait, so that the group outlives rank 0's evaluation
    metrics["iterations"] = float(trainer.iteration)
    metrics["train_time_s"] = trainer.train_seconds
    device_name = str(group.device)
    if group.device.type == "cuda":
        device_name += f" ({torch.cuda.get_device_name(group.device)})"
    if group.world_size > 1:
        device_name += f" x {group.world_size} processes (torchrun, DDP)"
    settings = dataclasses.asdict(cfg) | {"checkpoint": checkpoint,
                                          "divergence": trainer.divergence,
                                          "method": trainer.method,
                                          "processes": group.world_size}
    return Result(
        solver="neural",
        status="max_iter",
        scenario_text=scenario.text,
        settings=settings,
        grid=grid,
        samples=samples,
        history={k: np.asarray(v, dtype=np.float64) for k, v in trainer.history.items()},
        metrics=metrics,
        # a resumed run's time counts the training of its earlier sessions
        wall_time_s=time.perf_counter() - t0 + trainer.carried_seconds,
        device=device_name,
        versions=versions(),
        git_revision=git_revision(),
    )
