"""Shared plumbing of the particle family: devices, seeded samples, evaluation against fresh
target samples, the scenario's terminal cost, snapshot schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mfg.metrics import EVAL_BLUR, EVAL_P, mmd2, sinkhorn_divergence

Tensor = torch.Tensor


def torch_device(name: str) -> torch.device:
    """``torch.device(name)``; a CUDA device that is not there is a RuntimeError."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"solver.device: {name!r} requested but CUDA is not available")
    return dev


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


@dataclass
class Streams:
    """Independent random streams derived from the scenario seed: ``source`` (particles,
    latents), ``target`` (the training bank), ``eval`` (fresh evaluation samples), and
    ``torch_seed`` (network initialization, field state)."""

    source: np.random.Generator
    target: np.random.Generator
    eval: np.random.Generator
    torch_seed: int


def streams(seed: int) -> Streams:
    s = np.random.SeedSequence(seed).spawn(4)
    return Streams(np.random.default_rng(s[0]), np.random.default_rng(s[1]),
                   np.random.default_rng(s[2]), int(s[3].generate_state(1)[0]))


def to_tensor(a: np.ndarray, device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype).to(device)


class Evaluator:
    """Divergences of samples to ``n`` fresh target samples (drawn once, never trained on)."""

    def __init__(self, scenario: Any, n: int, rng: np.random.Generator) -> None:
        self.y = np.asarray(scenario.target.sample(n, rng), dtype=np.float64)
        self.rng = rng
        self.terminal = scenario.terminal
        self.scenario_target = scenario.target
        self.n = n
        self._floor: float | None = None

    def _x(self, x: Tensor | np.ndarray) -> np.ndarray:
        x = x.detach().double().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        return x[: self.n]

    def sinkhorn(self, x: Tensor | np.ndarray) -> float:
        """S_ε(first n of x, fresh target), blur 0.05, p 2 (mfg.metrics.sinkhorn_divergence)."""
        xs = self._x(x)
        if not np.all(np.isfinite(xs)):
            return float("nan")
        return sinkhorn_divergence(xs, self.y, blur=EVAL_BLUR, p=EVAL_P)

    def floor(self) -> float:
        """S_ε between the evaluation set and n more fresh target samples: the value a perfect
        sampler would get (the sampling floor of ``sinkhorn``); drawn once, then cached so that
        the stopping rule and the reported metric use the same value."""
        if self._floor is None:
            other = np.asarray(self.scenario_target.sample(self.n, self.rng), dtype=np.float64)
            self._floor = sinkhorn_divergence(other, self.y, blur=EVAL_BLUR, p=EVAL_P)
        return self._floor

    def terminal_cost(self, x: Tensor | np.ndarray) -> float:
        """The scenario's G (sinkhorn with its blur/p, or MMD² with its kernel/bandwidth)."""
        xs = self._x(x)
        if not np.all(np.isfinite(xs)):
            return float("nan")
        t = self.terminal
        if t.kind == "sinkhorn":
            return sinkhorn_divergence(xs, self.y, blur=t.blur, p=t.p)
        if t.kind == "mmd":
            return mmd2(xs, self.y, kernel=t.kernel, bandwidth=t.bandwidth)
        raise ValueError(f"terminal.kind: {t.kind!r} cannot be evaluated from samples")


def snapshot_steps(total: int, count: int) -> list[int]:
    """``count`` (at most) distinct steps 0..total, evenly spread, ending at ``total``."""
    return sorted({int(round(s)) for s in np.linspace(0, total, max(count, 2))})


def progress_bar(total: int, enabled: bool, desc: str) -> Any:
    """tqdm bar, shown only on a terminal (``disable=None``) and when ``enabled``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=None if enabled else True, desc=desc, leave=False)
