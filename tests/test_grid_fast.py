"""The back-and-forth grid method (solver.method: bfm) against truth: brute-force c-transforms,
POT's exact W2 (bracketed by the certified bounds), the KL closed form, the f-divergence
optimality condition, and the Douglas–Rachford result layout."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import scipy.optimize
import scipy.special
from grid_cases import load, moments_1d

from mfg.analytic import closed_form
from mfg.divergences import get_f_divergence
from mfg.grid import Grid
from mfg.results import Result
from mfg.scenario import Scenario, ScenarioError
from solvers.grid import solve
from solvers.grid.back_and_forth import (
    BackAndForth,
    TerminalDual,
    coarse_potential,
    warm_start_levels,
)
from solvers.grid.c_transform import inf_convolution, inf_convolution_brute
from solvers.grid.entropic import EntropicGrid, glued_plan_cost, log_sum_exp
from solvers.grid.pushforward import map_plan, match_deficits
from solvers.grid.solver import discretize

with contextlib.redirect_stdout(io.StringIO()):
    import ot


@pytest.mark.parametrize("shape", [(9,), (40,), (11, 7), (5, 6, 4)])
def test_inf_convolution_is_exact_and_the_smooth_one_never_above(shape):
    rng = np.random.default_rng(len(shape))
    dx = tuple(rng.uniform(0.1, 1.0) for _ in shape)
    for g in (rng.standard_normal(shape) * 3, np.zeros(shape), rng.standard_normal(shape) * 50):
        exact = inf_convolution_brute(g, dx, 0.7)
        np.testing.assert_allclose(inf_convolution(g, dx, 0.7), exact, rtol=0, atol=1e-12)
        # the smooth variant adds candidates between samples: a lower value, a valid dual pair
        assert np.all(inf_convolution(g, dx, 0.7, smooth=True) <= exact + 1e-12)


def test_smooth_inf_convolution_is_exact_on_a_quadratic():
    # g(y) = a y²/2: (g □ c_τ)(x) = a x²/(2(1 + aτ)) exactly on the continuum; the exact discrete
    # minimum over samples is piecewise linear in between, the smooth one is exact here
    for n in (32, 64):
        grid = Grid(((-2.0, 2.0),), (n,))
        x = grid.centres(0)
        a, tau = 1.5, 0.8
        truth = a * x**2 / (2 * (1 + a * tau))
        smooth = inf_convolution(a * x**2 / 2, grid.dx, tau, smooth=True)
        inner = np.abs(x) < 1.0  # away from the box, where the minimizer stays inside
        assert np.max(np.abs(smooth - truth)[inner]) < 1e-12


def test_rounded_plan_cost_is_never_below_the_exact_optimum():
    # the upper bound of the certificate: a coupling of exactly (a, b) built from any map,
    # so its cost is >= POT's exact W2² for random densities, maps and sub-divisions
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = (int(rng.integers(3, 9)), int(rng.integers(3, 9))) if trial % 2 else (
            int(rng.integers(3, 30)),)
        grid = Grid(tuple((0.0, float(k)) for k in n), n)
        c = grid.mesh().reshape(-1, len(n))
        a, b = rng.random(n) ** 3, rng.random(n) ** 3
        a, b = a / a.sum(), b / b.sum()
        disp = [rng.standard_normal(n) * rng.uniform(0, 3) for _ in n]
        plan = map_plan(disp, grid.dx, int(rng.integers(1, 4)), a if trial % 3 else None)
        np.testing.assert_allclose(plan.push(a).sum(), 1.0, atol=1e-12)
        exact = ot.emd2(a.ravel(), b.ravel(), ot.dist(c, c), numItermax=10**7)
        assert plan.rounded_cost(a, b, c) >= exact - 1e-12


@pytest.mark.parametrize("n", [(40,), (9, 11), (5, 6, 4)])
def test_deficit_matching_is_a_coupling_no_cheaper_than_the_optimum(n):
    # the rounding's matching of excess r to shortfall q: its first moments are those of a
    # coupling of (r, q), its cost is never below POT's exact one, and a one-cell translation
    # between disjoint supports (what aliasing leaves) is matched exactly
    rng = np.random.default_rng(len(n))
    grid = Grid(tuple((0.0, 1.0 + k) for k in range(len(n))), n)
    c = grid.mesh().reshape(-1, len(n))
    for _ in range(5):
        r = rng.random(n) ** 4 * (rng.random(n) < 0.3)
        q = rng.random(n) ** 4 * (rng.random(n) < 0.3)
        r, q = r.ravel() / r.sum(), q.ravel() / q.sum()
        cost, moves = match_deficits(r, q, n, c)
        np.testing.assert_allclose(moves.sum(0), q @ c - r @ c, atol=1e-12)
        assert cost >= ot.emd2(r, q, ot.dist(c, c), numItermax=10**7) - 1e-12
    r = np.zeros(n)
    r[(slice(0, n[0] - 1, 3),) + (slice(None),) * (len(n) - 1)] = 1.0 + rng.random(
        (len(range(0, n[0] - 1, 3)), *n[1:]))
    q = np.roll(r, 1, axis=0)  # rows 3k → 3k + 1: no closer q for any r
    cost, _ = match_deficits(r.ravel(), q.ravel(), n, c)
    np.testing.assert_allclose(cost, r.sum() * grid.dx[0] ** 2, rtol=1e-12)


@pytest.fixture(scope="module")
def fixed_32():
    sc = load("mixture_fixed_2d.yaml", "solver.n=32", "solver.nt=4", "solver.method=bfm",
              "solver.max_iter=60", "solver.tol=1e-3")
    return sc, solve(sc)


def test_fixed_2d_bounds_bracket_pot_emd2(fixed_32):
    sc, res = fixed_32
    grid = Grid(sc.domain.bounds, sc.solver.n)
    h = grid.cell_volume
    pts = grid.mesh().reshape(-1, 2)
    a, b = res.grid.source.values.ravel() * h, res.grid.target.values.ravel() * h
    exact = ot.emd2(a, b, ot.dist(pts, pts), numItermax=10**7) * sc.lam / (2 * sc.T)
    m = res.metrics
    # the certificate: a dual value below and a feasible coupling's cost above the optimum
    assert m["objective_lower_bound"] <= exact * (1 + 1e-12)
    assert m["objective"] >= exact * (1 - 1e-12)
    assert m["relative_gap"] == pytest.approx(
        (m["objective"] - m["objective_lower_bound"]) / m["objective"], rel=1e-9)
    # and the lower bound is close: the dual has (nearly) converged
    assert m["objective_lower_bound"] > exact * (1 - 0.01)


def _dense_cost(grid: Grid, tau: float) -> np.ndarray:
    pts = grid.mesh().reshape(-1, grid.dim)
    return ot.dist(pts, pts) / (2 * tau)


@pytest.mark.parametrize("n", [(7,), (6, 5), (4, 3, 5)])
def test_separable_log_sum_exp_matches_the_dense_sum(n):
    rng = np.random.default_rng(3)
    grid = Grid([(-1.0, 1.5)] * len(n), list(n))
    tau, eps = 0.7, 0.05
    ent = EntropicGrid(grid, tau, eps)
    a = rng.normal(size=n) * 3
    a.flat[1] = -np.inf  # an atom without mass
    dense = scipy.special.logsumexp(a.ravel()[None, :] - _dense_cost(grid, tau) / eps, axis=1)
    np.testing.assert_allclose(log_sum_exp(a, ent.kernels).ravel(), dense, rtol=1e-13, atol=1e-12)


def test_entropic_bounds_bracket_emd2_and_the_plan_moments_are_exact():
    rng = np.random.default_rng(4)
    grid = Grid([(-1.0, 1.0), (-0.5, 1.5)], [9, 8])
    tau = 0.5
    mu = rng.random(grid.n) ** 3
    nu = rng.random(grid.n) ** 3
    nu[2, :] = 0.0  # cells without mass on one side
    mu, nu = mu / mu.sum(), nu / nu.sum()
    cost = _dense_cost(grid, tau)
    exact = ot.emd2(mu.ravel(), nu.ravel(), cost)
    ent = EntropicGrid(grid, tau, eps=0.02)
    g = np.zeros(grid.n)
    for _ in range(5):  # far from converged: the columns miss ν by O(1)
        f = ent.softmin(g, nu)
        g = ent.softmin(f, mu)
    f = ent.softmin(g, nu)
    with np.errstate(divide="ignore"):
        plan = np.exp((f.ravel()[:, None] + g.ravel()[None, :] - cost) / ent.eps)
    plan *= mu.ravel()[:, None] * nu.ravel()[None, :]
    np.testing.assert_allclose(plan.sum(1), mu.ravel(), atol=1e-15)  # rows exact
    cols, plan_cost, bary = ent.plan_moments(f, mu, g, nu)
    np.testing.assert_allclose(cols.ravel(), plan.sum(0), rtol=1e-12, atol=1e-18)
    assert plan_cost == pytest.approx(float(np.sum(plan * cost)), rel=1e-12)
    pts = grid.mesh().reshape(-1, 2)
    has = plan.sum(0) > 0
    np.testing.assert_allclose(bary.reshape(2, -1).T[has],
                               (plan.T @ pts)[has] / plan.sum(0)[has, None], rtol=1e-10)
    assert np.abs(cols - nu).sum() > 0.05
    # a coupling of exactly (μ, ν) costs at least the optimum; any g gives a lower bound
    assert glued_plan_cost(ent, f, g, mu, nu) >= exact * (1 - 1e-12)
    h = grid.cell_volume
    bfm = BackAndForth(grid, tau, mu / h, TerminalDual("fixed", nu / h, h))
    assert bfm.exact_dual(g) <= exact * (1 + 1e-12)


def test_fixed_64_is_certified_to_a_thousandth_around_emd2():
    # the back-and-forth ascent alone stalls near 2.5e-3 at 64² (the O(h) floor of smooth
    # potentials); the entropic polish takes the bracket under 1e-3, around POT's value
    sc = load("mixture_fixed_2d.yaml", "solver.n=64", "solver.nt=4", "solver.method=bfm",
              "solver.max_iter=400", "solver.tol=1e-3")
    res = solve(sc)
    m = res.metrics
    assert res.status == "converged" and m["relative_gap"] <= 1e-3
    assert m["polish_iterations"] > 0
    grid = Grid(sc.domain.bounds, sc.solver.n)
    h = grid.cell_volume
    a, b = res.grid.source.values.ravel() * h, res.grid.target.values.ravel() * h
    exact = ot.emd2(a, b, _dense_cost(grid, sc.T / sc.lam), numItermax=10**8)
    assert m["objective_lower_bound"] <= exact * (1 + 1e-12) <= m["objective"] * (1 + 1e-12)
    # started from the 32² solution (solver.levels: 1): the 64² bracket is certified from
    # scratch, so it holds emd2's value too
    warm = solve(load("mixture_fixed_2d.yaml", "solver.n=64", "solver.nt=4",
                      "solver.method=bfm", "solver.max_iter=400", "solver.tol=1e-3",
                      "solver.levels=1"))
    w = warm.metrics
    assert warm.status == "converged" and w["coarse_iterations"] > 0
    assert w["objective_lower_bound"] <= exact * (1 + 1e-12) <= w["objective"] * (1 + 1e-12)


@pytest.mark.parametrize(("n", "levels"), [
    ((16, 16), 0), ((32, 32), 1), ((64, 64), 2), ((128, 128), 3), ((512, 512), 5),
    ((512, 256), 4), ((32, 32, 32), 1), ((256,), 4), ((1024,), 6), ((250, 250), 1),
    ((300, 300), 2), ((257, 257), 0)])
def test_bfm_warm_starts_from_grids_of_at_least_16_cells(n, levels):
    assert warm_start_levels(n) == levels


def test_warm_start_from_the_coarse_potential_saves_fine_iterations():
    # 1-D fixed Gaussians on 256 cells, started from the 128-cell potential interpolated: both
    # runs certify the same tolerance, the warm one in fewer fine iterations
    sc = load("gaussian_kl_1d.yaml", "solver.n=256", "terminal={kind: fixed}")
    p = discretize(sc)
    bfm = BackAndForth(p.grid, p.T / p.lam, p.rho0,
                       TerminalDual("fixed", p.rho1, p.grid.cell_volume))
    phi, iterations = coarse_potential(bfm, 1e-3, 300, 1)
    assert phi.shape == p.grid.n and len(iterations) == 1 and iterations[0] > 0
    state = bfm.run(1e-3, 300, phi0=phi)
    cold = bfm.run(1e-3, 300)
    assert state.converged and cold.converged
    assert state.iterations < cold.iterations


def test_fixed_2d_result_has_the_douglas_rachford_layout(fixed_32):
    sc, res = fixed_32
    dr = solve(load("mixture_fixed_2d.yaml", "solver.n=8", "solver.nt=4", "solver.max_iter=2"))
    assert set(res.grid.data_vars) == set(dr.grid.data_vars)
    for name in dr.grid.data_vars:
        assert res.grid[name].dims == dr.grid[name].dims, name
    rho = res.grid.rho.values
    h = Grid(sc.domain.bounds, sc.solver.n).cell_volume
    np.testing.assert_allclose(rho.sum(axis=(1, 2)) * h, 1.0, rtol=0, atol=1e-12)
    assert rho.min() >= 0.0
    np.testing.assert_array_equal(rho[-1], res.grid.target.values)


def test_kl_1d_matches_closed_form_to_a_tenth_of_a_percent():
    # the shared scenario's 256 cells (at 128 the ascent's ρ_T mean wanders between 3e-4 and
    # 1.1e-3 of the closed form from one iteration to the next: the O(h) of the grid atoms)
    sc = load("gaussian_kl_1d.yaml", "solver.nt=8", "solver.method=bfm",
              "solver.max_iter=150", "solver.tol=1e-4")
    assert sc.solver.n == (256,)
    res = solve(sc)
    cf = closed_form(sc)
    mean, std = moments_1d(res.grid.rho.values[-1], res.grid.x1.values)
    assert abs(mean - cf.mT[0]) / abs(cf.mT[0]) < 1e-3
    assert abs(std - cf.sT[0]) / cf.sT[0] < 1e-3
    exact = cf.kinetic_energy + cf.terminal_cost
    assert res.metrics["objective_lower_bound"] == pytest.approx(exact, rel=1e-3)
    assert res.metrics["objective"] == pytest.approx(exact, rel=5e-3)
    # U(T) = log(ρ_T/π) with its constant, and the path keeps mass
    assert res.metrics["terminal_residual"] < 1e-10
    assert res.metrics["mass_error"] < 1e-12
    x = res.grid.x1.values[:, None]
    k = len(res.grid.t) // 2
    rho = res.grid.rho.values[k]
    support = rho > 1e-2 * rho.max()
    exact_u = cf.U(x, float(res.grid.t[k]))
    assert np.max(np.abs(res.grid.U.values[k] - exact_u)[support]) < 0.02


@pytest.mark.parametrize("f", ["reverse_kl", "chi2", "js", "alpha"])
def test_terminal_density_solves_the_first_order_condition(f):
    sc = load("gaussian_kl_1d.yaml", f"terminal={{kind: f, f: {f}"
              + (", alpha: 2.5}" if f == "alpha" else "}"), "solver.n=64")
    p = discretize(sc)
    term = TerminalDual(p.terminal, p.rho1, p.grid.cell_volume, p.divergence)
    phi = 0.3 * np.sin(p.grid.centres(0))
    rho, nu = term.density(phi)
    assert np.sum(rho) * p.grid.cell_volume == pytest.approx(1.0, abs=1e-12)
    div = get_f_divergence(f, 2.5 if f == "alpha" else None)
    pos = rho > 0
    # f'(ρ/π) = −φ − ν where ρ > 0 (and ρ minimizes Σ h φ ρ + D_f(ρ‖π) at mass 1)
    np.testing.assert_allclose(div.df(rho[pos] / p.rho1[pos]), -phi[pos] - nu, atol=1e-8)


def static_reference(sc) -> float:
    """min over ρ_T of W2²(ρ0, ρ_T)/(2τ) + D_f(ρ_T‖π) on the grid atoms, independently of the
    solver: POT's exact emd2 (with its dual potential as gradient) and L-BFGS over a softmax
    parametrization of ρ_T, restarted from its own answer until the value stops falling.
    Its value is that of a feasible ρ_T, an upper estimate of the optimum. One pass is not
    enough: L-BFGS-B stops at a kink of emd2 with its curvature memory spoiled (js, n = 64:
    0.81883 after one pass, 0.81121 after a restart, above the solver's certified lower bound
    and below its upper; scipy 1.18.1, POT 0.9.7)."""
    p = discretize(sc)
    h, tau = p.grid.cell_volume, p.T / p.lam
    pts = p.grid.mesh().reshape(-1, p.grid.dim)
    cost = ot.dist(pts, pts)
    a, pi, div = p.rho0.ravel() * h, p.rho1.ravel(), p.divergence

    def value(z):
        b = np.exp(z - z.max())
        b /= b.sum()
        w, log = ot.emd2(a, b, cost, log=True)
        val = w / (2 * tau) + h * np.sum(pi * div.f(b / (h * pi)))
        grad = log["v"] / (2 * tau) + div.df(b / (h * pi))
        return val, b * (grad - np.dot(b, grad))

    z, best = np.log(pi * h), np.inf
    for _ in range(20):
        res = scipy.optimize.minimize(value, z, jac=True, method="L-BFGS-B",
                                      options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12})
        if res.fun >= best - 1e-12 * abs(best):
            break
        z, best = res.x, float(res.fun)
    return best


@pytest.mark.parametrize("f", ["kl", "reverse_kl", "chi2", "js", "alpha"])
def test_f_kinds_bounds_bracket_an_independent_static_solve(f):
    kind = f"terminal={{kind: f, f: {f}" + (", alpha: 2.5}" if f == "alpha" else "}")
    sc = load("gaussian_kl_1d.yaml", kind, "solver.n=64", "solver.nt=2", "solver.method=bfm",
              "solver.max_iter=100", "solver.tol=1e-4")
    res = solve(sc)
    ref = static_reference(sc)
    lo, hi = res.metrics["objective_lower_bound"], res.metrics["objective"]
    assert lo <= ref * (1 + 1e-9)  # a true lower bound of the optimum (<= ref)
    assert ref <= hi * (1 + 1e-6)  # ref is near the optimum, which hi bounds from above
    assert hi - lo < 0.03 * hi  # and the bracket is narrow after 100 iterations


def test_kl_2d_polish_brackets_an_independent_static_solve():
    # on 16² the ascent stalls well above 3e-3; the entropic polish (unbalanced g-step) takes the
    # bracket under 3e-3 (its floor there, the entropic bias: 2.4e-3; 32² reaches 8e-4), and
    # its lower bound is under the independent solve's value (a feasible one, 9.5e-4 above our
    # upper bound here even with restarts: L-BFGS stalls on the nonsmooth emd2) and its plan is
    # no worse
    sc = load("gaussian_kl_2d.yaml", "solver.n=16", "solver.nt=2", "solver.method=bfm",
              "solver.max_iter=400", "solver.tol=3e-3")
    res = solve(sc)
    m = res.metrics
    assert res.status == "converged" and m["polish_iterations"] > 0
    ref = static_reference(sc)
    assert m["objective_lower_bound"] <= ref * (1 + 1e-9)
    assert m["objective"] <= ref * (1 + 1e-9)
    assert m["kinetic_energy"] + m["terminal_cost"] == pytest.approx(m["objective"], rel=1e-12)


def test_reverse_kl_gives_ordered_finite_bounds():
    # f* has a pole at 1: the terminal density's multiplier sits near it in the early iterates
    res = solve(load("gaussian_kl_1d.yaml", "terminal={kind: f, f: reverse_kl}", "solver.n=32",
                     "solver.nt=2", "solver.method=bfm", "solver.max_iter=10"))
    lo, hi = res.metrics["objective_lower_bound"], res.metrics["objective"]
    assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi
    assert res.metrics["mass_error"] < 1e-12


def test_3d_kl_runs_and_brackets_the_closed_form():
    sc = load("gaussian_kl_2d.yaml", "dim=3", "source.mean=[-1, 0.5, 0]",
              "source.std=[0.5, 0.6, 0.5]", "target.mean=[1, -0.5, 0]",
              "target.std=[0.7, 0.4, 0.5]", "domain.bounds=[[-4, 4], [-4, 4], [-3, 3]]",
              "solver.n=16", "solver.nt=2", "solver.method=bfm", "solver.max_iter=20",
              "solver.tol=1e-3")
    res = solve(sc)
    cf = closed_form(sc)
    exact = cf.kinetic_energy + cf.terminal_cost
    assert res.grid.rho.shape == (3, 16, 16, 16)
    assert res.metrics["mass_error"] < 1e-12
    # the discrete problem's optimum is O(h²) from the continuum: a loose bracket of it
    assert res.metrics["objective_lower_bound"] < exact * 1.03
    assert res.metrics["objective"] > exact * 0.97


def test_bfm_refuses_w1_kinds_naming_the_field():
    with pytest.raises(ScenarioError, match="method"):
        load("gaussian_kl_1d.yaml", "terminal={kind: w1, L: 0.5}", "solver.method=bfm")


def test_max_iter_is_reported():
    sc = load("gaussian_kl_1d.yaml", "solver.n=32", "solver.method=bfm", "solver.max_iter=2",
              "solver.tol=1e-9")
    res = solve(sc)
    assert res.status == "max_iter"
    assert res.metrics["iterations"] == 2
    assert res.metrics["relative_gap"] > 1e-9


def test_bfm_gap_is_monotone_and_certified():
    # the best bounds only improve; every recorded gap is nonnegative
    sc = load("gaussian_kl_1d.yaml", "solver.n=64")
    p = discretize(sc)
    term = TerminalDual(p.terminal, p.rho1, p.grid.cell_volume, p.divergence)
    state = BackAndForth(p.grid, p.T / p.lam, p.rho0, term).run(1e-12, 20)
    lower, upper = np.array(state.history["lower"]), np.array(state.history["upper"])
    assert np.all(np.diff(lower) >= 0) and np.all(np.diff(upper) <= 0)
    assert np.all(upper >= lower)


@pytest.mark.slow
def test_fixed_128_kinetic_energy_within_one_percent_of_emd2():
    # the case: solver {kind: grid, n: 128} and its defaults (back-and-forth, tol 1e-3):
    # both certified bounds of (2T/λ)·KE bracket POT's exact value, the reported KE (the upper
    # bound) is within 1%, and the run converged (bench/grid.py times it against emd2)
    sc = load("mixture_fixed_2d.yaml", "solver={kind: grid, n: 128, progress: false}")
    assert (sc.solver.method, sc.solver.tol) == ("bfm", 1e-3)
    res = solve(sc)
    assert res.status == "converged"
    grid = Grid(sc.domain.bounds, sc.solver.n)
    h = grid.cell_volume
    pts = grid.mesh().reshape(-1, 2)
    a, b = res.grid.source.values.ravel() * h, res.grid.target.values.ravel() * h
    w2_sq = ot.emd2(a, b, ot.dist(pts, pts), numItermax=10**8)
    scale = 2 * sc.T / sc.lam
    assert scale * res.metrics["objective_lower_bound"] <= w2_sq <= scale * res.metrics["objective"]
    assert scale * res.metrics["kinetic_energy"] == pytest.approx(w2_sq, rel=0.01)


@pytest.mark.slow
def test_iterations_to_a_fixed_gap_do_not_grow_with_the_grid():
    # iterations (ascent plus entropic polish) until the certified gap is under 1e-3: from 64²
    # to 256² at most 1.5× more
    counts = []
    for n in (64, 128, 256):
        p = discretize(load("mixture_fixed_2d.yaml", f"solver.n={n}"))
        term = TerminalDual(p.terminal, p.rho1, p.grid.cell_volume, p.divergence)
        state = BackAndForth(p.grid, p.T / p.lam, p.rho0, term).run(1e-3, 400)
        assert state.converged, n
        counts.append(state.iterations)
    assert max(counts) <= 1.5 * counts[0], counts


def test_kl_1d_objective_converges_at_second_order():
    # the certified lower bound against the closed-form objective, n = 16, 32, 64
    errors = []
    for n in (16, 32, 64):
        sc = load("gaussian_kl_1d.yaml", f"solver.n={n}", "solver.nt=2", "solver.method=bfm",
                  "solver.max_iter=150", "solver.tol=1e-6")
        res = solve(sc)
        cf = closed_form(sc)
        exact = cf.kinetic_energy + cf.terminal_cost
        errors.append(abs(res.metrics["objective_lower_bound"] - exact) / exact)
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.8), (errors, orders)


def closed_form_l1(sc: Scenario, res: Result, k: int) -> float:
    """Σ h |ρ − ρ*| at time node ``k`` of a 2-D Gaussian KL result, ρ* the closed form's
    Gaussian at that time (ClosedForm.log_density) on the grid's centres, mass 1."""
    grid = Grid(sc.domain.bounds, sc.solver.n)
    h = grid.cell_volume
    logp = closed_form(sc).log_density(grid.mesh(), float(res.grid.t.values[k]))
    exact = np.exp(logp - logp.max())
    exact /= exact.sum() * h
    return float(np.abs(res.grid.rho.values[k] - exact).sum() * h)


def test_kl_2d_path_follows_the_closed_form_displacement_interpolation():
    # ρ(T/2) against the closed form's Gaussian at T/2, L1 on 64²: 0.040 with the iteration's 2
    # sub-points per cell, 0.019 with the path's 8 (aliasing of the cloud-in-cell deposits
    # where the map stretches the lattice of sub-points)
    sc = load("gaussian_kl_2d.yaml", "solver.n=64", "solver.nt=4", "solver.method=bfm",
              "solver.tol=2e-3", "solver.max_iter=400")
    assert closed_form_l1(sc, solve(sc), 2) < 0.025


@pytest.mark.slow
def test_kl_2d_terminal_density_agrees_with_douglas_rachford_and_is_nearer_the_truth():
    # Gaussian KL, nt 16: ρ_T of back-and-forth with the grid's defaults against the certified
    # dynamic reference (Douglas–Rachford from its coarse levels, 5,000 iterations: its ρ_T moves
    # by 7e-5 in L1 from 5,000 to 20,000 at 64²). Measured L1: bfm–DR 7.0e-3 (32²), 1.8e-3 (64²),
    # 1.3e-3 (128²); to the closed form bfm 3.5e-3, 9.9e-4, 7.1e-4 and DR 6.4e-3, 1.3e-3,
    # 9.7e-4. DR is not nearer the truth than 1.3e-3 at 64² (its own discretization error, at
    # any nt: 1.6e-3 at nt 32), so bfm is held to it from the closed form's side. Before the
    # warm start from 32² and 16² bfm was 2.1e-3 from the closed form and 2.7e-3 from DR.
    diffs, errors = [], []
    for n, levels in ((32, 1), (64, 2)):
        sc = load("gaussian_kl_2d.yaml", f"solver={{kind: grid, n: {n}, nt: 16, progress: false}}")
        assert sc.solver.method == "bfm"
        bfm = solve(sc)
        ref_sc = load("gaussian_kl_2d.yaml", f"solver.n={n}", f"solver.levels={levels}",
                      "solver.max_iter=5000", "solver.tol=1e-9")
        ref = solve(ref_sc)
        assert bfm.status == "converged"
        h = Grid(sc.domain.bounds, sc.solver.n).cell_volume
        diffs.append(float(np.abs(bfm.grid.rho.values[-1] - ref.grid.rho.values[-1]).sum() * h))
        errors.append((closed_form_l1(sc, bfm, -1), closed_form_l1(ref_sc, ref, -1)))
    assert diffs[1] < 2e-3 and diffs[0] / diffs[1] > 3.0, diffs
    for mine, reference in errors:
        assert mine < reference, errors
