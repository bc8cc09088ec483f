"""``solve(scenario) -> Result`` for the grid family: discretize, split, certify, package."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import xarray as xr

from mfg.distributions import Distribution, Samples
from mfg.divergences import f_divergence_on_grid, get_f_divergence
from mfg.grid import Grid
from mfg.provenance import git_revision, versions
from mfg.residuals import (
    cells_to_nodes,
    hj_residual,
    mass_error,
    spatial_gradient,
    terminal_residual,
    velocity_residual,
)
from mfg.results import Result
from mfg.scenario import Scenario
from solvers.grid.douglas_rachford import GridProblem, SplittingState, douglas_rachford
from solvers.grid.staggered import divergence

Array = np.ndarray

#: Douglas–Rachford step γ for the problem scaled per cell (see douglas_rachford); tuned on the
#: shared Gaussian scenarios in 1-D and 2-D, where it beat 0.003 and 0.03 at every resolution.
DEFAULT_GAMMA = 0.01
#: over-relaxation α of the splitting; 1.8 reached the same accuracy in about half the iterations
RELAXATION = 1.8


#: atoms used to put a measure without density on the grid (per unit of grid cells)
QUADRATURE_PER_CELL = 64


def measure_on_grid(dist: Distribution, grid: Grid) -> Array:
    """Density (mass 1) of ``dist`` on ``grid``: cell-centre values of its density when it has
    one, else the mass of its atoms/quadrature points deposited on the cells they fall in."""
    if dist.has_density:
        return grid.discretize(dist.log_density)
    if isinstance(dist, Samples):
        return grid.deposit(dist.points)
    n = QUADRATURE_PER_CELL * int(np.prod(grid.n))
    points, weights = dist.quadrature(n)
    return grid.deposit(points, weights)


def discretize(scenario: Scenario) -> GridProblem:
    """Source and target on the scenario's grid (mass 1 each) and the terminal cost."""
    cfg = scenario.solver
    grid = Grid(tuple(tuple(b) for b in scenario.domain.bounds), tuple(cfg.n))
    rho0 = measure_on_grid(scenario.source, grid)
    rho1 = measure_on_grid(scenario.target, grid)
    term = scenario.terminal
    div = get_f_divergence(term.f, term.alpha) if term.kind in ("f", "lipschitz_f") else None
    return GridProblem(grid, cfg.nt, scenario.T, scenario.lam, rho0, rho1, term.kind, div, term.L)


def _coords(problem: GridProblem) -> dict[str, np.ndarray]:
    grid = problem.grid
    c = {"t": problem.times, "t_cell": problem.cell_times}
    c.update({f"x{j + 1}": grid.centres(j) for j in range(grid.dim)})
    return c


def to_dataset(problem: GridProblem, state: SplittingState) -> xr.Dataset:
    """ρ and U at the time nodes, centred momenta and the cell-centred U, source and target, and
    for W1 terminal costs the potential φ*, the flux w̄ and (``lipschitz_f``) σ at t = T."""
    grid = problem.grid
    f = state.layout.views(state.y)
    U_cell = state.value_function
    space = tuple(f"x{j + 1}" for j in range(grid.dim))
    data = {
        "rho": (("t", *space), f.rho.copy(), {"long_name": "density", "grid": "time nodes"}),
        "U": (("t", *space), cells_to_nodes(U_cell), {"long_name": "value function"}),
        "U_cell": (("t_cell", *space), U_cell.copy(), {"long_name": "value function, t cells"}),
        "rho_cell": (("t_cell", *space), f.rho_bar.copy(), {"long_name": "density, t cells"}),
        "source": (space, problem.rho0),
        "target": (space, problem.rho1),
    }
    for j, m in enumerate(f.m_bar):
        data[f"m{j + 1}"] = (("t_cell", *space), m.copy(), {"long_name": f"momentum {j + 1}"})
    if state.potential is not None:
        data["phi"] = (space, state.potential, {"long_name": "Lipschitz potential φ* at T"})
        for j, w in enumerate(f.w_bar):
            data[f"w{j + 1}"] = (space, w.copy(), {"long_name": f"Beckmann flux {j + 1} at T"})
    xs = state.layout.views(state.x).sigma
    if xs is not None:  # σ out of its prox: exactly 0 where π = 0 (σ ≪ π)
        data["sigma"] = (space, xs.copy(), {"long_name": "intermediate measure σ"})
    return xr.Dataset(data, coords=_coords(problem))


def lipschitz_constant(phi: Array, dx: tuple[float, ...]) -> float:
    """max over faces of |φ_{i+1} − φ_i|/dx_j along each axis: the discrete Lipschitz constant
    of φ in the norm the Beckmann flux is dual to (per axis), and max over cells of the
    Euclidean norm of the centred gradient, whichever is larger."""
    per_axis = max(float(np.max(np.abs(np.diff(phi, axis=j)))) / dx[j] for j in range(phi.ndim))
    centred = float(np.max(np.sqrt(sum(g * g for g in spatial_gradient(phi, dx)))))
    return max(per_axis, centred)


def certify(problem: GridProblem, state: SplittingState) -> dict[str, float]:
    """Objective split and residuals of the optimality system for the final iterate."""
    grid = problem.grid
    f = state.layout.views(state.y)
    xf = state.layout.views(state.x)
    rho = f.rho
    U_cell = state.value_function
    U_T = cells_to_nodes(U_cell)[-1]
    ke = problem.kinetic_energy(f.rho_bar, f.m_bar)
    tc = problem.terminal_cost(xf)
    metrics = {
        "kinetic_energy": ke,
        "terminal_cost": tc,
        "objective": ke + tc,
        "hj_residual": hj_residual(U_cell, rho, problem.dt, grid.dx, problem.lam),
        "continuity_residual": float(
            np.max(np.abs(divergence(rho, f.m, problem.dt, grid.dx)))
            / max(np.max(np.abs(np.diff(rho, axis=0))) / problem.dt, 1e-300)
        ),
        "velocity_residual": velocity_residual(f.rho_bar, f.m_bar, U_cell, grid.dx, problem.lam),
        "mass_error": mass_error(rho, grid.cell_volume),
        "rho_min_relative": float(rho.min() / rho.max()),
        "primal_residual": state.history["primal_residual"][-1],
        "dual_residual": state.history["dual_residual"][-1],
        "iterations": float(state.iterations),
    }
    rho_T = np.maximum(rho[-1], 0.0)
    if problem.terminal == "f":
        with np.errstate(divide="ignore"):
            g = problem.divergence.df(rho_T / problem.rho1)
        metrics["terminal_residual"] = terminal_residual(U_T, g, rho_T, grid.cell_volume)
    if problem.beckmann:
        phi = state.potential
        metrics["lipschitz_constant"] = lipschitz_constant(phi, grid.dx)
        metrics["lipschitz_bound"] = float(problem.L)
        metrics["w1_term"] = problem.L * problem.w1_flux_norm(xf.w_bar)
        # U(T) = δG/δρ_T = φ* (up to a constant: only ∇φ* matters for W1 kinds)
        shift = np.sum(rho_T * (U_T - phi)) / np.sum(rho_T)
        metrics["terminal_residual"] = terminal_residual(
            U_T - shift, phi, rho_T, grid.cell_volume
        )
        if f.sigma is not None:
            metrics["divergence_term"] = f_divergence_on_grid(
                problem.divergence, xf.sigma, problem.rho1, grid.cell_volume
            )
            metrics["sigma_mass"] = float(np.sum(xf.sigma) * grid.cell_volume)
    return metrics


def solve(scenario: Scenario) -> Result:
    """Solve ``scenario`` on its tensor grid by Douglas–Rachford splitting (float64)."""
    t0 = time.perf_counter()
    problem = discretize(scenario)
    cfg = scenario.solver
    gamma = cfg.gamma if cfg.gamma is not None else DEFAULT_GAMMA
    state = douglas_rachford(
        problem,
        gamma=gamma,
        max_iter=cfg.max_iter,
        tol=cfg.tol,
        relaxation=RELAXATION,
        progress=cfg.progress,
    )
    settings = dataclasses.asdict(cfg) | {"gamma": gamma, "relaxation": RELAXATION}
    return Result(
        solver="grid",
        status="converged" if state.converged else "max_iter",
        scenario_text=scenario.text,
        settings=settings,
        grid=to_dataset(problem, state),
        history={k: np.asarray(v) for k, v in state.history.items()},
        metrics=certify(problem, state),
        wall_time_s=time.perf_counter() - t0,
        device="cpu",
        versions=versions(),
        git_revision=git_revision(),
    )
