"""``solve(scenario) -> Result`` for the grid family: discretize, split, certify, package."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from mfg.distributions import Distribution, Samples
from mfg.divergences import f_divergence_on_grid, get_f_divergence
from mfg.grid import Grid
from mfg.provenance import git_revision, versions
from mfg.residuals import (
    ZERO_FRACTION,
    cells_to_nodes,
    hj_residual,
    mass_error,
    mass_outside,
    spatial_gradient,
    terminal_residual,
    velocity_residual,
)
from mfg.results import Result
from mfg.scenario import Scenario, ScenarioError
from solvers.grid.douglas_rachford import GridProblem, SplittingState, douglas_rachford
from solvers.grid.staggered import divergence

Array = np.ndarray

#: Douglas–Rachford step γ for the problem scaled per cell (see douglas_rachford); tuned on the
#: shared Gaussian scenarios in 1-D and 2-D, where it beat 0.003 and 0.03 at every resolution.
DEFAULT_GAMMA = 0.01
#: over-relaxation α of the splitting; 1.8 reached the same accuracy in about half the iterations
RELAXATION = 1.8


#: ``levels: None``: coarse levels until the grid stops being coarsenable (multilevel.py)
ALL_LEVELS = 32


def default_levels(problem: GridProblem) -> int:
    """Coarse warm-start levels of ``levels: None``: all (down to 16 cells, or to cells as wide
    as the data's spread) for the W1 kinds, none for ``fixed`` and ``f``. Measured at 64², tol
    1e-5: W1 (circle) 4,240 fine iterations instead of 9,460; Gaussian KL 683 instead of 7,662
    (one 32² level), objective 1.2e-4 from the closed form against 2.3e-4. But for the f kinds
    a run cut by
    ``max_iter`` keeps the coarse levels' staircase in ρ_T: 1-D js on 128 cells after 2,500
    iterations violates the static optimality condition by 0.013 instead of 0.005, so there the
    warm start is asked for (``levels: N``)."""
    return ALL_LEVELS if problem.beckmann else 0


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


#: largest factor between the midpoint-rule mass of a density on the grid's cells and its mass
#: in the box for the grid to resolve it: a Gaussian narrower than 0.32 cell widths (midpoint
#: error 2·exp(−2π²(std/dx)²) > 25%) or a uniform box under ~4 cells wide is refused
RESOLUTION_FACTOR = 1.25


def check_resolved(dist: Distribution, grid: Grid, field: str) -> None:
    """Refuse (ScenarioError naming ``field``) a density the grid cannot resolve: its values at
    the cell centres are the whole discrete problem (``measure_on_grid``), and a feature narrower
    than a cell is either missed or turned into a one-cell spike. The test is the midpoint rule
    Σ_i p(x_i)·|cell| against the mass in the box, which agree for any density smooth on the
    cell scale (and the mass would sit in one cell of an unresolved one: a KL target of std
    1e-6 made the terminal residual infinite and the answer meaningless)."""
    logp = np.asarray(dist.log_density(grid.mesh().reshape(-1, grid.dim)), dtype=np.float64)
    top = float(np.max(logp))
    log_quad = top + np.log(np.sum(np.exp(logp - top)) * grid.cell_volume)
    mass = dist.mass_in_box(grid.bounds)
    if np.isfinite(log_quad) and abs(log_quad - np.log(mass)) <= np.log(RESOLUTION_FACTOR):
        return
    cells = " x ".join(f"{d:.4g}" for d in grid.dx)
    raise ScenarioError(
        f"{field}: the grid does not resolve its density (cells of {cells}): the midpoint rule "
        f"on the cell centres gives mass {np.exp(log_quad):.3g} instead of {mass:.4f}; "
        f"refine solver.n or use a wider {field}"
    )


def discretize(scenario: Scenario) -> GridProblem:
    """Source and target on the scenario's grid (mass 1 each) and the terminal cost.

    Raises ScenarioError (bad input) for a source, or a target whose density the terminal cost
    uses pointwise (``fixed``, ``f``), narrower than the grid resolves (:func:`check_resolved`)."""
    cfg = scenario.solver
    grid = Grid(tuple(tuple(b) for b in scenario.domain.bounds), tuple(cfg.n))
    check_resolved(scenario.source, grid, "source")
    if scenario.terminal.kind in ("fixed", "f") and scenario.target.has_density:
        check_resolved(scenario.target, grid, "target")
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
        # relative residuals with floors at ZERO_FRACTION of the problem's scales: at rest
        # (source = target) they would otherwise divide rounding by rounding
        "hj_residual": hj_residual(U_cell, rho, problem.dt, grid.dx, problem.lam,
                                   u_floor=ZERO_FRACTION * problem.value_scale),
        "continuity_residual": float(
            np.max(np.abs(divergence(rho, f.m, problem.dt, grid.dx)))
            / max(np.max(np.abs(np.diff(rho, axis=0))) / problem.dt,
                  ZERO_FRACTION * np.max(np.abs(rho)) / problem.T, 1e-300)
        ),
        "velocity_residual": velocity_residual(
            f.rho_bar, f.m_bar, U_cell, grid.dx, problem.lam,
            m_floor=ZERO_FRACTION * float(np.max(np.abs(f.rho_bar))) * problem.velocity_scale,
        ),
        "mass_error": mass_error(rho, grid.cell_volume),
        "rho_min_relative": float(rho.min() / rho.max()),
        "primal_residual": state.history["primal_residual"][-1],
        "dual_residual": state.history["dual_residual"][-1],
        "iterations": float(state.iterations),
        # on the coarse warm-start levels, each 2^d times cheaper than the next finer one
        "coarse_iterations": float(sum(state.coarse_iterations)),
    }
    rho_T = np.maximum(rho[-1], 0.0)
    if problem.terminal == "f":
        # δG/δρ = f'(ρ_T/π) on supp π; outside it D_f is +∞ for any mass, reported apart
        support = problem.rho1 > 0
        g = np.full_like(rho_T, np.inf)
        # ρ_T/π overflows where π is subnormal: f' is then +∞ there too (excluded like π = 0)
        with np.errstate(divide="ignore", over="ignore"):
            g[support] = problem.divergence.df(rho_T[support] / problem.rho1[support])
        metrics["terminal_residual"] = terminal_residual(U_T, g, rho_T, grid.cell_volume)
        if not np.all(support):
            metrics["mass_outside_target"] = mass_outside(rho_T, support, grid.cell_volume)
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
    """Solve ``scenario`` on its tensor grid (float64) by the method ``solver.method``:
    Douglas–Rachford splitting of the dynamic problem, or the back-and-forth method on the
    static JKO step with the path reconstructed (:func:`solve_bfm`)."""
    if scenario.solver.method == "bfm":
        return solve_bfm(scenario)
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
        levels=default_levels(problem) if cfg.levels is None else cfg.levels,
    )
    settings = dataclasses.asdict(cfg) | {"gamma": gamma, "relaxation": RELAXATION,
                                          "levels": len(state.coarse_iterations)}
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


def solve_bfm(scenario: Scenario) -> Result:
    """Back-and-forth method (solvers/grid/back_and_forth.py) for ``fixed`` and ``f``; status
    "converged" when the certified relative gap of the objective is <= ``solver.tol``."""
    from solvers.grid.back_and_forth import BackAndForth, TerminalDual, warm_start_levels
    from solvers.grid.reconstruction import reconstruct

    t0 = time.perf_counter()
    problem = discretize(scenario)
    cfg = scenario.solver
    terminal = TerminalDual(problem.terminal, problem.rho1, problem.grid.cell_volume,
                            problem.divergence)
    bfm = BackAndForth(problem.grid, problem.T / problem.lam, problem.rho0, terminal)
    levels = warm_start_levels(problem.grid.n) if cfg.levels is None else cfg.levels
    # disable=None: no bar when stderr is not a terminal (CI logs, pipes)
    bar = tqdm(total=cfg.max_iter, disable=None if cfg.progress else True, desc="grid bfm",
               unit="it")

    def progress(state) -> None:
        bar.update(state.iterations - bar.n)
        bar.set_postfix(gap=f"{state.relative_gap:.2e}", polish=state.polish_iterations,
                        refresh=False)

    try:
        state = bfm.run_multilevel(cfg.tol, cfg.max_iter, levels, callback=progress)
    finally:
        bar.close()
    dataset, metrics = reconstruct(problem, bfm, state)
    return Result(
        solver="grid",
        status="converged" if state.converged else "max_iter",
        scenario_text=scenario.text,
        settings=dataclasses.asdict(cfg),
        grid=dataset,
        history={k: np.asarray(v) for k, v in state.history.items()},
        metrics=metrics,
        wall_time_s=time.perf_counter() - t0,
        device="cpu",
        versions=versions(),
        git_revision=git_revision(),
    )
