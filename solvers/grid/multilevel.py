"""Coarse-to-fine warm start of the Douglas–Rachford splitting (solvers/grid/douglas_rachford.py).

The splitting's iteration count grows with the grid: its early iterations only carry mass and
the value function across the domain, which a grid with half the cells per axis does at a
fraction of the cost. A level is the same problem with the cells of every axis merged in pairs
(densities averaged, so the mass is kept; the time steps unchanged); the splitting variable z of
the converged coarse level is prolonged to the fine grid and the fine iteration starts from it.

Prolongation (:func:`prolong`) of the packed vector [ρ, m, w, σ | ρ̄, m̄, w̄] block by block:

* quantities at cell centres (ρ, σ, ρ̄, m̄, w̄; intensive, per unit volume) are injected: each
  fine cell takes the value of the coarse cell it lies in;
* fluxes on the interior faces normal to axis j (m^j, w^j) are linear along j — the fine face at
  a coarse face takes its value, the fine face in the middle of a coarse cell the mean of that
  cell's two faces (zero on the boundary) — and injected along the other axes.

What the coarse grid averaged away of ρ0 (ρ0 minus its injected restriction, zero mean over each
block) is added to every density of the prolonged path: ρ(0) is then the fine ρ0 exactly, a
solution at rest (ρ0 = π) starts at rest, and the discrete continuity equation, which the
prolongation keeps, still holds. (Carrying the detail of ρ0 and π geometrically along the path
instead breaks the continuity equation and was slower: 5,068 fine iterations against 868 for the
Gaussian KL case on 64², both from 32² and 16² levels.)

The splitting is per unit cell (its objective and constraints are written cell by cell in
intensive quantities), so the prolonged z is a consistent starting point with the same step γ:
the value function U = −p/γ is read off the same way on both grids.
"""

from __future__ import annotations

import numpy as np

from solvers.grid.staggered import Layout, pad_faces

Array = np.ndarray

#: the coarsest level has at least this many cells along its shortest axis
MIN_CELLS = 16


def coarsenable(n: tuple[int, ...]) -> bool:
    """Whether a grid of ``n`` cells per axis has a coarse level (every axis even, the halved
    grid at least MIN_CELLS per axis)."""
    return all(k % 2 == 0 and k // 2 >= MIN_CELLS for k in n)


def axis_spreads(rho: Array, centres: list[Array]) -> Array:
    """Standard deviation of the density ``rho`` (cell values, mass > 0) along each axis, from
    its marginals on the cell centres ``centres`` (one 1-D array per axis)."""
    out = []
    for axis, x in enumerate(centres):
        marginal = rho.sum(axis=tuple(a for a in range(rho.ndim) if a != axis))
        w = marginal / marginal.sum()
        mean = float(np.sum(w * x))
        out.append(np.sqrt(float(np.sum(w * (x - mean) ** 2))))
    return np.asarray(out)


def resolves(cell_widths: tuple[float, ...], spreads: Array) -> bool:
    """Whether cells of ``cell_widths`` are no wider than the data's spread along each axis:
    a coarser level smears the densities over a cell and its solution, injected, leaves a
    staircase the fine iteration is slow to remove (1-D KL-type case on 128 cells, js, 2,500
    iterations: quantile error 0.005 from 64- or 32-cell levels, 0.015 with a 16-cell level
    wider than the source's standard deviation)."""
    return bool(np.all(np.asarray(cell_widths) <= spreads))


def restrict(rho: Array, dim: int) -> Array:
    """Mean over each block of 2 cells per axis of the last ``dim`` axes (mass kept)."""
    out = rho
    for axis in range(out.ndim - dim, out.ndim):
        shape = list(out.shape)
        shape[axis : axis + 1] = [shape[axis] // 2, 2]
        out = out.reshape(shape).mean(axis=axis + 1)
    return out


def _inject(a: Array, axes: range | tuple[int, ...]) -> Array:
    for axis in axes:
        a = np.repeat(a, 2, axis=axis)
    return a


def inject(a: Array, dim: int) -> Array:
    """Each value of ``a`` on the 2^dim fine cells of its cell (the last ``dim`` axes)."""
    return _inject(a, range(a.ndim - dim, a.ndim))


def _prolong_faces(m: Array, axis: int, spatial: range) -> Array:
    """Interior-face flux normal to ``axis`` (length n_j − 1 there) to the fine interior faces
    (length 2 n_j − 1): linear along ``axis``, injected along the other spatial axes."""
    full = pad_faces(m, axis)  # n_j + 1 faces, zero on the boundary
    n = full.shape[axis] - 1
    shape = list(full.shape)
    shape[axis] = 2 * n + 1
    fine = np.empty(shape)
    even = [slice(None)] * full.ndim
    odd = [slice(None)] * full.ndim
    even[axis] = slice(0, None, 2)
    odd[axis] = slice(1, None, 2)
    lo = [slice(None)] * full.ndim
    hi = [slice(None)] * full.ndim
    lo[axis] = slice(0, -1)
    hi[axis] = slice(1, None)
    fine[tuple(even)] = full
    fine[tuple(odd)] = 0.5 * (full[tuple(lo)] + full[tuple(hi)])
    inner = [slice(None)] * full.ndim
    inner[axis] = slice(1, -1)
    return _inject(fine[tuple(inner)], tuple(a for a in spatial if a != axis))


def prolong(z: Array, coarse: Layout, fine: Layout) -> Array:
    """The packed vector ``z`` of the ``coarse`` layout on the ``fine`` one (2× cells per axis,
    same time steps and blocks); see the module docstring."""
    if fine.n != tuple(2 * k for k in coarse.n) or fine.nt != coarse.nt:
        raise ValueError(f"prolong: {coarse.n} x {coarse.nt} steps is not the coarse level of "
                         f"{fine.n} x {fine.nt}")
    d = coarse.dim
    src, dst = coarse.views(z), fine.views(out := fine.zeros())
    timed = range(1, 1 + d)  # spatial axes of blocks with a leading time axis
    static = range(d)
    dst.rho[...] = _inject(src.rho, timed)
    dst.rho_bar[...] = _inject(src.rho_bar, timed)
    for j in range(d):
        dst.m[j][...] = _prolong_faces(src.m[j], 1 + j, timed)
        dst.m_bar[j][...] = _inject(src.m_bar[j], timed)
    for j, w in enumerate(src.w):
        dst.w[j][...] = _prolong_faces(w, j, static)
        dst.w_bar[j][...] = _inject(src.w_bar[j], static)
    if src.sigma is not None:
        dst.sigma[...] = _inject(src.sigma, static)
    return out
