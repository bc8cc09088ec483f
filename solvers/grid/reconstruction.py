"""The dynamic solution (ρ(t), m(t), U(t)) of a JKO step from its static dual potentials.

With ψ = φ^c the source-side potential of the back-and-forth method and U(·, T) = −φ − ν:

    U(x, t) = min_y U(y, T) + λ|x − y|²/(2(T − t))   (Hopf–Lax backward from T; U(·,0) = ψ − ν)
    ρ(t)    = (x ↦ x − (t/λ)∇U(x, 0))#ρ0                  (displacement interpolation)
    m(t)    = the same push-forward of ρ0·v, v(x) = −∇U(x, 0)/λ (constant along characteristics)

on the time nodes t_k (ρ, U) and the time-cell centres t_{k+½} (ρ̄, m̄, U_cell), the layout of the
Douglas–Rachford result (solvers/grid/solver.py ``to_dataset``) so that compare/plot/study read
both alike. ρ(0) = ρ0 and ρ(T) = ρ_G(φ) (π for ``fixed``) exactly; the push-forwards in between
conserve mass to rounding (solvers/grid/pushforward.py) and carry its O(h²) smoothing, with more
sub-points than the iteration's (SUBDIVISIONS) against the aliasing of the deposits.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from mfg.residuals import hj_residual, mass_error, spatial_gradient, terminal_residual
from mfg.residuals import velocity_residual as velocity_res
from solvers.grid.back_and_forth import BackAndForth, BFMState
from solvers.grid.c_transform import inf_convolution
from solvers.grid.douglas_rachford import GridProblem

Array = np.ndarray

#: sub-points per axis and cell of the path's push-forwards, at most (done once per time node, so
#: more than in the iteration): cloud-in-cell deposits of a regular lattice of sub-points alias
#: where the map stretches it. Gaussian KL at 64², L1 distance of ρ(t) to the closed form at
#: t = T/4, T/2, 3T/4: 0.019, 0.040, 0.058 with the iteration's 2 sub-points, 0.011, 0.019, 0.027
#: with 8 (Douglas–Rachford: 0.001 at T/2)
SUBDIVISIONS = {1: 32, 2: 8, 3: 4}
#: ... and fewer where a plan would hold more than this many entries (N·s^d·2^d, 24 bytes each,
#: 100 MB at most; 64² and 128²: 8, 256²: 4, 512²: 2). Gaussian KL at 256², L1 of ρ(T/2) to the
#: closed form: 0.037 with 2 sub-points, 0.020 with 4, 0.017 with 8 (the rest is the map's
#: roughness)
MAX_PLAN_ENTRIES = 2**22


def path_subdivisions(grid_n: tuple[int, ...], iteration_subdivisions: int) -> int:
    """Sub-points per axis for the path's push-forwards on a grid of ``grid_n`` cells: the
    largest s <= SUBDIVISIONS[d] whose plan fits MAX_PLAN_ENTRIES, never fewer than the
    iteration's."""
    d, cells = len(grid_n), int(np.prod(grid_n))
    s = SUBDIVISIONS[d]
    while s > iteration_subdivisions and cells * (2 * s) ** d > MAX_PLAN_ENTRIES:
        s //= 2
    return max(s, iteration_subdivisions)


def hopf_lax(u_T: Array, problem: GridProblem, t: float) -> Array:
    """U(·, t) = min_y U_T(y) + λ|x − y|²/(2(T − t)) on the grid (U_T itself at t = T)."""
    if t >= problem.T:
        return u_T.copy()
    return inf_convolution(u_T, problem.grid.dx, (problem.T - t) / problem.lam, smooth=True)


def reconstruct(
    problem: GridProblem, bfm: BackAndForth, state: BFMState
) -> tuple[xr.Dataset, dict[str, float]]:
    """Dataset (same variables as Douglas–Rachford's) and metrics of a back-and-forth run."""
    grid, h, T, lam = problem.grid, problem.grid.cell_volume, problem.T, problem.lam
    psi = bfm.c(state.phi)
    rho_T, nu = bfm.terminal.density(state.phi)
    u_T = -state.phi - nu
    disp = [-bfm.tau * g for g in spatial_gradient(psi, grid.dx)]  # T(x) − x

    subs = path_subdivisions(tuple(grid.n), bfm.subdivisions)

    def push(s: float) -> tuple[Array, list[Array]]:
        plan = bfm.plan(psi, problem.rho0, fraction=s, subdivisions=subs)
        rho = plan.push(bfm.mu) / h
        return rho, [plan.push(bfm.mu * d / T) / h for d in disp]

    times, cell_times = problem.times, problem.cell_times
    rho = np.empty((problem.nt + 1, *grid.n))
    rho[0], rho[-1] = problem.rho0, rho_T
    U = np.empty_like(rho)
    U[0], U[-1] = psi - nu, u_T
    for k in range(1, problem.nt):
        rho[k] = push(times[k] / T)[0]
        U[k] = hopf_lax(u_T, problem, times[k])
    rho_cell = np.empty((problem.nt, *grid.n))
    U_cell = np.empty_like(rho_cell)
    m_cell = [np.empty_like(rho_cell) for _ in range(grid.dim)]
    for k, t in enumerate(cell_times):
        rho_cell[k], ms = push(t / T)
        for j, m in enumerate(ms):
            m_cell[j][k] = m
        U_cell[k] = hopf_lax(u_T, problem, t)

    space = tuple(f"x{j + 1}" for j in range(grid.dim))
    data = {
        "rho": (("t", *space), rho, {"long_name": "density", "grid": "time nodes"}),
        "U": (("t", *space), U, {"long_name": "value function"}),
        "U_cell": (("t_cell", *space), U_cell, {"long_name": "value function, t cells"}),
        "rho_cell": (("t_cell", *space), rho_cell, {"long_name": "density, t cells"}),
        "source": (space, problem.rho0),
        "target": (space, problem.rho1),
    }
    for j, m in enumerate(m_cell):
        data[f"m{j + 1}"] = (("t_cell", *space), m, {"long_name": f"momentum {j + 1}"})
    coords = {"t": times, "t_cell": cell_times}
    coords.update({f"x{j + 1}": grid.centres(j) for j in range(grid.dim)})

    # continuity residual with centred differences (the path is not on a staggered grid):
    # max |(ρ_{k+1} − ρ_k)/dt + ∇·m̄_{k+½}| relative to max |∂tρ|
    dtrho = np.diff(rho, axis=0) / problem.dt
    div = sum(np.gradient(m, grid.dx[j], axis=j + 1) for j, m in enumerate(m_cell))
    metrics = {
        "kinetic_energy": state.upper_split[0],
        "terminal_cost": state.upper_split[1],
        "objective": state.upper,
        "objective_lower_bound": state.lower,
        "duality_gap": state.upper - state.lower,
        "relative_gap": state.relative_gap,
        "hj_residual": hj_residual(U_cell, rho, problem.dt, grid.dx, lam),
        "continuity_residual": float(
            np.max(np.abs(dtrho + div)) / max(float(np.max(np.abs(dtrho))), 1e-300)
        ),
        "velocity_residual": velocity_res(rho_cell, m_cell, U_cell, grid.dx, lam),
        "mass_error": mass_error(rho, h),
        "rho_min_relative": float(rho.min() / rho.max()),
        "iterations": float(state.iterations),
        "polish_iterations": float(state.polish_iterations),
        # on the coarse warm-start levels, each 2^d times cheaper than the next finer one
        "coarse_iterations": float(sum(state.coarse_iterations)),
    }
    if problem.terminal == "f":
        support = problem.rho1 > 0
        g = np.zeros_like(rho_T)
        with np.errstate(divide="ignore"):
            g[support] = problem.divergence.df(rho_T[support] / problem.rho1[support])
        metrics["terminal_residual"] = terminal_residual(u_T, g, rho_T, h)
    return xr.Dataset(data, coords=coords), metrics
