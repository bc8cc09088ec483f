"""Residuals of the optimality system on a space-time grid (DESIGN.md §1).

    −∂tU + |∇U|²/(2λ) = 0,   U(·, T) = δG/δρ(ρ_T)          (Hamilton–Jacobi, backward)
     ∂tρ + ∇·m = 0,          m = −ρ ∇U/λ                   (continuity, forward)

Conventions: densities ``rho`` at the time nodes t_k = k dt, shape (nt+1, *n); the value function
``U`` and momenta ``m`` at the time-cell centres t_{k+½}, shape (nt, *n); cell-centred space.
Every residual is weighted by the density, since U only matters where there is mass.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def spatial_gradient(f: Array, dx: tuple[float, ...]) -> list[Array]:
    """Centred differences along the spatial axes (the last len(dx)), one-sided at the boundary."""
    d = len(dx)
    return [np.gradient(f, dx[j], axis=f.ndim - d + j) for j in range(d)]


def hj_residual(U: Array, rho: Array, dt: float, dx: tuple[float, ...], lam: float) -> float:
    """Relative, ρ-weighted L1 residual of −∂tU + |∇U|²/(2λ) = 0 at the interior time nodes.

    At t_k (k = 1..nt−1): ∂tU ≈ (U_{k+½} − U_{k−½})/dt and |∇U|² is the mean of the two
    neighbouring cells. Returns Σ ρ|R| / Σ ρ(|∂tU| + |∇U|²/(2λ)) ∈ [0, 1]; 0 for an exact solution.
    """
    if U.shape[0] < 2:
        return float("nan")
    grad2 = sum(g * g for g in spatial_gradient(U, dx))
    dtU = np.diff(U, axis=0) / dt
    h = 0.5 * (grad2[1:] + grad2[:-1]) / (2.0 * lam)
    w = rho[1:-1]
    num = np.sum(w * np.abs(-dtU + h))
    den = np.sum(w * (np.abs(dtU) + h))
    return float(num / den) if den > 0 else 0.0


def velocity_residual(
    rho_bar: Array, m_bars: list[Array], U: Array, dx: tuple[float, ...], lam: float
) -> float:
    """Relative L1 residual of m = −ρ∇U/λ on the cell centres: Σ|m + ρ∇U/λ| / Σ|m|."""
    grads = spatial_gradient(U, dx)
    num = sum(np.sum(np.abs(m + rho_bar * g / lam)) for m, g in zip(m_bars, grads, strict=True))
    den = sum(np.sum(np.abs(m)) for m in m_bars)
    return float(num / den) if den > 0 else 0.0


def terminal_residual(
    U_T: Array, first_variation: Array, rho_T: Array, cell_volume: float
) -> float:
    """ρ_T-weighted L1 distance ∫ ρ_T |U(·, T) − δG/δρ(ρ_T)| dx (cells with ρ_T > 0)."""
    pos = rho_T > 0
    return float(np.sum(rho_T[pos] * np.abs(U_T[pos] - first_variation[pos])) * cell_volume)


def mass_error(rho: Array, cell_volume: float, mass: float = 1.0) -> float:
    """max over time of |∫ρ(t) dx − mass|."""
    spatial = tuple(range(1, rho.ndim))
    return float(np.max(np.abs(rho.sum(axis=spatial) * cell_volume - mass)))


def cells_to_nodes(u: Array) -> Array:
    """Time-cell values (t_{k+½}) to time nodes (t_k): averages inside, linear extrapolation at the
    two ends (second order for smooth u)."""
    if u.shape[0] == 1:
        return np.concatenate([u, u])
    inner = 0.5 * (u[1:] + u[:-1])
    first = 1.5 * u[0] - 0.5 * u[1]
    last = 1.5 * u[-1] - 0.5 * u[-2]
    return np.concatenate([first[None], inner, last[None]])
