"""The grid solver against truth: closed forms, POT's exact W2, conservation, optimality residuals.

Torch is not used here; BLAS threads are pinned by the Makefile (OMP/OPENBLAS_NUM_THREADS=2).
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
from grid_cases import load, moments_1d

from mfg.analytic import closed_form
from mfg.grid import Grid
from solvers.grid import solve


@pytest.fixture(scope="module")
def kl_1d():
    sc = load("gaussian_kl_1d.yaml", "solver.n=128", "solver.nt=32", "solver.max_iter=3000")
    return sc, solve(sc)


@pytest.fixture(scope="module")
def fixed_2d():
    sc = load("mixture_fixed_2d.yaml", "solver.n=32", "solver.nt=8", "solver.max_iter=1500")
    return sc, solve(sc)


def test_kl_1d_terminal_moments_match_closed_form(kl_1d):
    sc, res = kl_1d
    cf = closed_form(sc)
    mean, std = moments_1d(res.grid.rho.values[-1], res.grid.x1.values)
    assert abs(mean - cf.mT[0]) / abs(cf.mT[0]) < 0.01
    assert abs(std - cf.sT[0]) / cf.sT[0] < 0.01
    # the whole path is McCann's interpolation: check the midpoint too
    k = len(res.grid.t) // 2
    mean_mid, std_mid = moments_1d(res.grid.rho.values[k], res.grid.x1.values)
    t = float(res.grid.t[k])
    assert abs(mean_mid - cf.mean(t)[0]) < 0.01 * abs(cf.mT[0] - cf.m0[0])
    assert abs(std_mid - cf.std(t)[0]) / cf.std(t)[0] < 0.01


def test_kl_1d_energies_and_value_function_match_closed_form(kl_1d):
    sc, res = kl_1d
    cf = closed_form(sc)
    assert res.metrics["kinetic_energy"] == pytest.approx(cf.kinetic_energy, rel=1e-2)
    assert res.metrics["terminal_cost"] == pytest.approx(cf.terminal_cost, rel=1e-2)
    x = res.grid.x1.values[:, None]
    for k in (0, len(res.grid.t) // 2, len(res.grid.t) - 1):
        rho = res.grid.rho.values[k]
        support = rho > 1e-2 * rho.max()
        exact = cf.U(x, float(res.grid.t[k]))
        # KL pins U(T) = log(ρ_T/π) including the constant, so no constant is removed
        assert np.max(np.abs(res.grid.U.values[k] - exact)[support]) < 0.02


def test_kl_1d_optimality_residuals_are_small(kl_1d):
    _, res = kl_1d
    m = res.metrics
    assert m["hj_residual"] < 1e-3
    assert m["terminal_residual"] < 1e-3
    assert m["velocity_residual"] < 1e-3
    assert m["continuity_residual"] < 1e-10


def test_kl_1d_error_falls_under_refinement():
    errors = []
    for n, nt in ((16, 4), (32, 8), (64, 16)):
        sc = load(
            "gaussian_kl_1d.yaml", f"solver.n={n}", f"solver.nt={nt}",
            "solver.max_iter=6000", "solver.tol=1e-8",
        )
        res = solve(sc)
        cf = closed_form(sc)
        mean, std = moments_1d(res.grid.rho.values[-1], res.grid.x1.values)
        errors.append(abs(mean - cf.mT[0]) / abs(cf.mT[0]) + abs(std - cf.sT[0]) / cf.sT[0])
    assert errors[0] > errors[1] > errors[2]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.0), orders


def test_fixed_2d_kinetic_energy_matches_pot_emd2(fixed_2d):
    sc, res = fixed_2d
    grid = Grid(sc.domain.bounds, sc.solver.n)
    ds = res.grid
    a = ds.source.values.ravel() * grid.cell_volume
    b = ds.target.values.ravel() * grid.cell_volume
    pts = grid.mesh().reshape(-1, 2)
    w2_sq = ot.emd2(a / a.sum(), b / b.sum(), ot.dist(pts, pts), numItermax=10**7)
    assert 2 * sc.T / sc.lam * res.metrics["kinetic_energy"] == pytest.approx(w2_sq, rel=0.02)


def test_fixed_2d_conserves_mass_and_positivity(fixed_2d):
    sc, res = fixed_2d
    grid = Grid(sc.domain.bounds, sc.solver.n)
    rho = res.grid.rho.values
    np.testing.assert_allclose(rho.sum(axis=(1, 2)) * grid.cell_volume, 1.0, rtol=0, atol=1e-10)
    # cell-centred densities come out of the kinetic prox: nonnegative exactly
    assert res.grid.rho_cell.values.min() >= 0.0
    # node densities come out of the continuity projection: nonnegative to the splitting tolerance
    assert rho.min() >= -1e-3 * rho.max()
    assert res.metrics["mass_error"] < 1e-10


def test_fixed_2d_residuals_decrease(fixed_2d):
    _, res = fixed_2d
    for key in ("primal_residual", "dual_residual"):
        h = res.history[key]
        assert len(h) == res.metrics["iterations"]
        assert h[-1] < 0.1 * h[10] < h[1], key
        # decrease over windows of 100 iterations, not only end to end
        windows = h[: len(h) // 100 * 100].reshape(-1, 100).max(axis=1)
        assert np.all(np.diff(windows) < 0), key


def test_kl_2d_matches_closed_form():
    sc = load("gaussian_kl_2d.yaml", "solver.n=32", "solver.nt=8", "solver.max_iter=1500")
    res = solve(sc)
    cf = closed_form(sc)
    ds = res.grid
    rho = ds.rho.values[-1]
    x1, x2 = np.meshgrid(ds.x1.values, ds.x2.values, indexing="ij")
    h = Grid(sc.domain.bounds, sc.solver.n).cell_volume
    mean = np.array([np.sum(rho * x1), np.sum(rho * x2)]) * h
    var = [np.sum(rho * (x1 - mean[0]) ** 2), np.sum(rho * (x2 - mean[1]) ** 2)]
    std = np.sqrt(np.array(var) * h)
    np.testing.assert_allclose(mean, cf.mT, atol=0.01 * np.abs(cf.mT - cf.m0).max())
    np.testing.assert_allclose(std, cf.sT, rtol=0.02)
    assert res.metrics["kinetic_energy"] == pytest.approx(cf.kinetic_energy, rel=0.03)


def test_max_iter_is_reported_not_hidden():
    sc = load("gaussian_kl_1d.yaml", "solver.n=32", "solver.nt=4", "solver.max_iter=5")
    res = solve(sc)
    assert res.status == "max_iter"
    assert res.metrics["iterations"] == 5
