"""Tensor-product cell-centred grids on a box, shared by the grid solver, comparisons and plots.

A grid of ``n = (n_1, ..., n_d)`` cells on ``bounds = ((lo_1, hi_1), ...)`` has cell widths
``dx_k = (hi_k - lo_k) / n_k`` and cell centres ``lo_k + (i + 1/2) dx_k``. A density on the grid is
an array of shape ``n`` holding cell averages, so its mass is ``sum(rho) * prod(dx)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Cell-centred tensor grid on ``bounds`` with ``n`` cells per axis."""

    bounds: tuple[tuple[float, float], ...]
    n: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.n):
            raise ValueError(f"grid: {len(self.bounds)} bounds but {len(self.n)} cell counts")

    @property
    def dim(self) -> int:
        return len(self.n)

    @property
    def dx(self) -> tuple[float, ...]:
        """Cell widths, one per axis."""
        return tuple((hi - lo) / k for (lo, hi), k in zip(self.bounds, self.n, strict=True))

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.dx))

    def centres(self, axis: int) -> np.ndarray:
        """Cell centres along ``axis``, shape (n[axis],)."""
        lo, _ = self.bounds[axis]
        return lo + (np.arange(self.n[axis]) + 0.5) * self.dx[axis]

    def mesh(self) -> np.ndarray:
        """All cell centres, shape (*n, d)."""
        axes = [self.centres(k) for k in range(self.dim)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def mass(self, rho: np.ndarray) -> np.ndarray:
        """Mass ``sum(rho) * prod(dx)`` over the spatial axes (the last ``dim`` axes)."""
        return rho.sum(axis=tuple(range(-self.dim, 0))) * self.cell_volume

    def discretize(self, log_density) -> np.ndarray:
        """Probability density on the grid from a log-density evaluated at the cell centres.

        ``rho_i = exp(log p(x_i)) / (sum_j exp(log p(x_j)) * prod(dx))``, so the mass is exactly 1
        (the mass outside the box is dropped and the rest renormalized).
        """
        logp = np.asarray(log_density(self.mesh().reshape(-1, self.dim)), dtype=np.float64)
        logp = logp.reshape(self.n)
        p = np.exp(logp - logp.max())
        return p / (p.sum() * self.cell_volume)

    def deposit(self, points: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Density of the weighted atoms Σ_j w_j δ_{x_j} on the grid: each atom's mass goes to the
        cell containing it (points outside the box are dropped), divided by the cell volume, and
        the result renormalized to mass 1. ``points`` has shape (N, d)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, self.dim)
        w = np.full(len(points), 1.0 / len(points)) if weights is None else np.asarray(weights)
        edges = [
            np.linspace(lo, hi, k + 1) for (lo, hi), k in zip(self.bounds, self.n, strict=True)
        ]
        mass, _ = np.histogramdd(points, bins=edges, weights=w)
        total = mass.sum()
        if total <= 0:
            raise ValueError("grid: no mass of the measure falls inside the domain")
        return mass / (total * self.cell_volume)
