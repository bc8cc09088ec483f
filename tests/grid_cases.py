"""Shared helpers of the grid-solver tests: shared scenarios with overrides, 1-D moments."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mfg.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def load(name: str, *overrides: str) -> Scenario:
    """The shared scenario ``name`` with ``overrides`` and no progress bar."""
    return load_scenario(SCENARIOS / name, ["solver.progress=false", *overrides])


def moments_1d(rho: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a 1-D grid density (cell averages at centres ``x``)."""
    dx = x[1] - x[0]
    mean = float(np.sum(rho * x) * dx)
    return mean, float(np.sqrt(np.sum(rho * (x - mean) ** 2) * dx))
