"""Coarse-to-fine warm start of Douglas–Rachford (solvers/grid/multilevel.py): the prolongation
maps discrete solutions of the continuity equation to discrete solutions, restriction keeps mass,
and a warm-started run reaches the closed form with fewer fine-grid iterations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfg.analytic import closed_form
from mfg.scenario import load_scenario
from solvers.grid.douglas_rachford import coarse_problem, douglas_rachford
from solvers.grid.multilevel import axis_spreads, coarsenable, prolong, resolves, restrict
from solvers.grid.solver import DEFAULT_GAMMA, RELAXATION, discretize, solve
from solvers.grid.staggered import Layout, divergence, spatial_divergence

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _inject(a: np.ndarray, axes: range) -> np.ndarray:
    for axis in axes:
        a = np.repeat(a, 2, axis=axis)
    return a


@pytest.mark.parametrize("n", [(6,), (4, 6), (4, 2, 4)])
def test_prolongation_keeps_the_discrete_continuity_equation_and_the_mass(n):
    """div_fine(P z) = div_coarse(z) on each of the 2^d fine cells of a coarse cell, for the
    space-time divergence of (ρ, m) and the spatial one of Beckmann's w (both exact: the fluxes
    are linear along their axis), for arbitrary fields; ρ and σ keep their mass."""
    rng = np.random.default_rng(0)
    d, nt = len(n), 3
    dx = tuple(1.0 / k for k in n)
    coarse = Layout(nt, n, beckmann=True, sigma=True)
    fine = Layout(nt, tuple(2 * k for k in n), beckmann=True, sigma=True)
    z = rng.normal(size=coarse.size)
    zc, zf = coarse.views(z), fine.views(prolong(z, coarse, fine))
    fine_dx = tuple(h / 2 for h in dx)
    div_c = divergence(zc.rho, zc.m, 0.1, dx)
    div_f = divergence(zf.rho, zf.m, 0.1, fine_dx)
    np.testing.assert_allclose(div_f, _inject(div_c, range(1, 1 + d)), rtol=0, atol=1e-11)
    np.testing.assert_allclose(spatial_divergence(zf.w, fine_dx),
                               _inject(spatial_divergence(zc.w, dx), range(d)), atol=1e-11)
    cell_c, cell_f = np.prod(dx), np.prod(fine_dx)
    np.testing.assert_allclose(zf.rho.sum(axis=tuple(range(1, 1 + d))) * cell_f,
                               zc.rho.sum(axis=tuple(range(1, 1 + d))) * cell_c, rtol=1e-12)
    assert zf.sigma.sum() * cell_f == pytest.approx(zc.sigma.sum() * cell_c, rel=1e-12)
    # and restriction undoes injection
    np.testing.assert_allclose(restrict(zf.rho, d), zc.rho, rtol=1e-12)


def test_restriction_keeps_mass_and_coarsenable_stops_at_odd_or_small_grids():
    sc = load_scenario(SCENARIOS / "gaussian_kl_2d.yaml", ["solver.n=64", "solver.nt=4"])
    problem = discretize(sc)
    low = coarse_problem(problem)
    assert low.grid.n == (32, 32) and low.grid.bounds == problem.grid.bounds
    assert coarsenable((32, 32))
    for a, b in ((problem.rho0, low.rho0), (problem.rho1, low.rho1)):
        assert b.sum() * low.grid.cell_volume == pytest.approx(1.0, abs=1e-12)
        assert a.sum() * problem.grid.cell_volume == pytest.approx(1.0, abs=1e-12)
    assert coarsenable((64, 64)) and not coarsenable((16, 32)) and not coarsenable((64, 66 + 1))


def test_warm_start_reaches_the_closed_form_in_fewer_fine_iterations():
    """Gaussian KL in 1-D on 128 cells, tol 1e-5: cold, 4,585-ish iterations; started from the
    64-cell solution, the fine level stops in a fraction of them, and both objectives are within
    the discretization's 1e-4 of the closed form (measured: 2.6e-5 cold, 1.4e-6 warm)."""
    sc = load_scenario(SCENARIOS / "gaussian_kl_1d.yaml", ["solver.n=128", "solver.nt=16"])
    problem = discretize(sc)
    exact = closed_form(sc).objective
    runs = {lv: douglas_rachford(problem, gamma=DEFAULT_GAMMA, max_iter=20000, tol=1e-5,
                                 relaxation=RELAXATION, levels=lv) for lv in (0, 1)}
    cold, warm = runs[0], runs[1]
    assert cold.converged and warm.converged
    assert warm.coarse_iterations and len(warm.coarse_iterations) == 1
    assert warm.iterations < 0.5 * cold.iterations
    for state in (cold, warm):
        assert abs(state.history["objective"][-1] / exact - 1) < 1e-4


def test_solve_records_the_levels_it_used():
    """Asked for 3 levels on 128 cells, the 1-D KL case gets 2 (the 16-cell level would have
    cells wider than the source's standard deviation 0.5); by default the f kinds get none and
    the W1 kinds all (64² circle: 32² and 16²)."""
    kl = ["solver.n=128", "solver.nt=8", "solver.max_iter=50", "solver.progress=false"]
    asked = solve(load_scenario(SCENARIOS / "gaussian_kl_1d.yaml", [*kl, "solver.levels=3"]))
    assert asked.settings["levels"] == 2
    assert asked.metrics["coarse_iterations"] == 100  # 50 on each level
    default = solve(load_scenario(SCENARIOS / "gaussian_kl_1d.yaml", kl))
    assert default.settings["levels"] == 0 and default.metrics["coarse_iterations"] == 0
    circle = solve(load_scenario(SCENARIOS / "circle_lipschitz_2d.yaml",
                                 ["solver.n=64", "solver.nt=2", "solver.max_iter=5",
                                  "solver.progress=false"]))
    assert circle.settings["levels"] == 2 and circle.metrics["coarse_iterations"] == 10


def test_levels_stop_where_the_cells_get_wider_than_the_data():
    x = (np.arange(64) + 0.5) / 64 * 10 - 5
    rho = np.exp(-0.5 * (x / 0.5) ** 2)
    spread = axis_spreads(rho, [x])
    assert spread[0] == pytest.approx(0.5, rel=1e-3)
    assert resolves((0.3125,), spread) and not resolves((0.625,), spread)
