"""W1 proximal on the grid (terminal kinds w1 and lipschitz_f) against exact solutions and limits.

1-D exact solution for ``w1`` (derived in mfg.analytic.w1_terminal_quantile): both W2 and W1 are
integrals over the quantile variable, so ρ_T has the quantile function
clip(Qπ, Q0 − τL, Q0 + τL), τ = T/λ.
"""

from __future__ import annotations

import numpy as np
import pytest
from grid_cases import SCENARIOS, load, moments_1d
from scipy.interpolate import RegularGridInterpolator
from scipy.stats import norm

from mfg.analytic import closed_form, w1_1d_from_quantiles, w1_terminal_quantile
from mfg.divergences import get_f_divergence
from mfg.scenario import ScenarioError, load_scenario
from solvers.grid import solve


def w1_cdf(a: np.ndarray, b: np.ndarray, dx: float) -> float:
    """W1 = ∫|F_a − F_b| dx between two 1-D grid densities."""
    return float(np.sum(np.abs(np.cumsum(a) - np.cumsum(b))) * dx * dx)


def w1_relative_errors(levels: tuple[tuple[int, int], ...], L: float = 0.5) -> list[float]:
    """W1(ρ_T, exact ρ_T) / W1(ρ0, exact ρ_T) of the 1-D Gaussian case with the W1 terminal cost
    at each (n, nt), the exact ρ_T from its quantile solution; checks the Lipschitz bound and mass
    on the way."""
    rel = []
    for n, nt in levels:
        sc = load("gaussian_kl_1d.yaml", f"terminal={{kind: w1, L: {L}}}", f"solver.n={n}",
                  f"solver.nt={nt}", "solver.max_iter=4000", "solver.tol=1e-8")
        res = solve(sc)
        src, tgt = sc.source, sc.target
        exact = w1_terminal_quantile(
            lambda u, s=src: s.mean()[0] + s.std[0] * norm.ppf(u),
            lambda u, s=tgt: s.mean()[0] + s.std[0] * norm.ppf(u),
            sc.T / sc.lam, L,
        )
        x = res.grid.x1.values
        err = w1_1d_from_quantiles(res.grid.rho.values[-1], x, exact)
        moved = w1_1d_from_quantiles(res.grid.source.values, x, exact)  # W1(ρ0, exact ρ_T)
        rel.append(err / moved)
        # the potential is L-Lipschitz and is U(·, T) up to a constant
        assert res.metrics["lipschitz_constant"] <= L * (1 + 1e-3)
        assert res.metrics["mass_error"] < 1e-10
    return rel


def test_w1_1d_matches_the_quantile_solution():
    rel = w1_relative_errors(((32, 8), (64, 16)))
    assert rel[1] < 0.02 and rel[0] > rel[1], rel


@pytest.mark.slow
def test_w1_1d_quantile_error_falls_under_refinement():
    rel = w1_relative_errors(((32, 8), (64, 16), (128, 32)))
    assert rel[1] < 0.02 and rel[2] < 0.02, rel
    assert rel[0] > rel[1] > rel[2], rel


def test_lipschitz_kl_tends_to_the_kl_closed_form_as_L_grows():
    cf = closed_form(load("gaussian_kl_1d.yaml"))
    errors = []
    # 32 cells: errors 1.004, 0.503, 1.0e-3 (64 cells: 1.004, 0.503, 1.9e-4; bound 6.6e-3)
    for L in (0.5, 1.0, 4.0):
        sc = load("gaussian_kl_1d.yaml", f"terminal={{kind: lipschitz_f, f: kl, L: {L}}}",
                  "solver.n=32", "solver.nt=8", "solver.max_iter=3000")
        res = solve(sc)
        mean, std = moments_1d(res.grid.rho.values[-1], res.grid.x1.values)
        errors.append(abs(mean - cf.mT[0]) + abs(std - cf.sT[0]))
    assert errors[0] > errors[1] > errors[2], errors
    # L = 4 exceeds the Lipschitz constant of the KL potential log(ρ_T/π) on the support: the
    # constraint is inactive and the KL solution is recovered
    assert errors[2] < 0.01 * cf.sT[0]
    assert res.metrics["terminal_cost"] == pytest.approx(cf.terminal_cost, rel=0.01)


def test_lipschitz_kl_over_L_tends_to_w1_as_L_shrinks():
    ratios = []
    for L in (0.2, 0.05):  # 32 cells: the ratios equal 64 cells' to 1e-6
        sc = load("gaussian_kl_1d.yaml", f"terminal={{kind: lipschitz_f, f: kl, L: {L}}}",
                  "solver.n=32", "solver.nt=8", "solver.max_iter=3000")
        res = solve(sc)
        dx = float(res.grid.x1[1] - res.grid.x1[0])
        w1 = w1_cdf(res.grid.rho.values[-1], res.grid.target.values, dx)
        ratios.append(res.metrics["terminal_cost"] / L / w1)
        assert res.metrics["lipschitz_constant"] <= L * (1 + 1e-3)
    # D_f^{Γ_L}(ρ‖π)/L ≤ W1(ρ, π), with equality in the limit L → 0
    assert ratios[0] < ratios[1] <= 1 + 1e-3, ratios
    assert abs(ratios[1] - 1) < 0.02, ratios


@pytest.fixture(scope="module")
def circle():
    sc = load("circle_lipschitz_2d.yaml", "solver.n=32", "solver.nt=8", "solver.max_iter=4000",
              "solver.tol=3e-5")
    return sc, solve(sc)


def test_circle_target_converges_with_bounded_potential(circle):
    sc, res = circle
    assert res.status == "converged"
    m = res.metrics
    assert m["mass_error"] < 1e-10
    assert m["lipschitz_constant"] <= sc.terminal.L * (1 + 1e-3)
    # σ out of its prox meets the mass constraint up to the splitting tolerance
    assert m["sigma_mass"] == pytest.approx(1.0, abs=1e-4)
    # σ lives on the cells the circle touches (σ ≪ π)
    sigma, target = res.grid.sigma.values, res.grid.target.values
    assert np.all(sigma[target == 0] == 0)


def test_circle_characteristics_land_on_the_terminal_density(circle):
    """Particles moved by −∇U/λ (the stored U, in time) land where ρ_T has its mass."""
    sc, res = circle
    ds = res.grid
    x1, x2 = ds.x1.values, ds.x2.values
    h = (x1[1] - x1[0], x2[1] - x2[0])
    X = sc.source.sample(5000, np.random.default_rng(0))
    dt = float(ds.t_cell[1] - ds.t_cell[0])
    for U in ds.U_cell.values:
        grads = np.gradient(U, *h)
        v = [RegularGridInterpolator((x1, x2), g, bounds_error=False, fill_value=None)(X)
             for g in grads]
        X = X - dt / sc.lam * np.stack(v, axis=1)
    # the radial band [r_lo, r_hi] holding 98% of ρ_T's mass (1% cut on each side)
    rho_T = ds.rho.values[-1]
    m1, m2 = np.meshgrid(x1 - sc.target.centre[0], x2 - sc.target.centre[1], indexing="ij")
    r_cells = np.hypot(m1, m2).ravel()
    order = np.argsort(r_cells)
    cdf = np.cumsum(np.maximum(rho_T.ravel()[order], 0))
    cdf /= cdf[-1]
    r_lo, r_hi = r_cells[order][np.searchsorted(cdf, [0.01, 0.99])]
    r = np.hypot(X[:, 0] - sc.target.centre[0], X[:, 1] - sc.target.centre[1])
    landed = np.mean((r >= r_lo - h[0]) & (r <= r_hi + h[0]))
    # measured 0.93 at n = 32 (0.98 at n = 64): the kink of U at the apex of the transport
    # (where directions to the circle diverge) is smeared over a few cells
    assert landed > 0.9, (landed, r_lo, r_hi)
    mean_r_T = np.sum(np.maximum(rho_T, 0).ravel() * r_cells) / np.sum(np.maximum(rho_T, 0))
    assert abs(r.mean() - mean_r_T) < 0.05


def test_f_divergence_with_a_target_on_a_circle_is_refused():
    with pytest.raises(ScenarioError, match="use terminal {kind: lipschitz_f"):
        load("circle_lipschitz_2d.yaml", "terminal={kind: f, f: kl}")


def test_kl_3d_matches_closed_form():
    sc = load_scenario(SCENARIOS / "gaussian_kl_2d.yaml", [
        "dim=3", "source.mean=[-1, 0.5, 0]", "source.std=[0.5, 0.6, 0.5]",
        "target.mean=[1, -0.5, 0]", "target.std=[0.7, 0.4, 0.5]",
        "domain.bounds=[[-4, 4], [-4, 4], [-3, 3]]", "solver.n=[16, 16, 12]", "solver.nt=4",
        "solver.max_iter=600", "solver.progress=false",
    ])
    res = solve(sc)
    cf = closed_form(sc)
    rho = res.grid.rho.values[-1]
    axes = [res.grid[f"x{k + 1}"].values for k in range(3)]
    mesh = np.meshgrid(*axes, indexing="ij")
    h = np.prod([a[1] - a[0] for a in axes])
    mean = np.array([np.sum(rho * m) for m in mesh]) * h
    assert res.metrics["mass_error"] < 1e-10
    np.testing.assert_allclose(mean, cf.mT, atol=0.03 * np.abs(cf.mT - cf.m0).max())
    assert res.metrics["kinetic_energy"] == pytest.approx(cf.kinetic_energy, rel=0.05)


@pytest.mark.parametrize(
    "terminal",
    ["{kind: f, f: reverse_kl}", "{kind: f, f: chi2}", "{kind: f, f: alpha, alpha: 2.0}",
     "{kind: f, f: js}"],
)
def test_f_divergences_satisfy_the_static_optimality_condition(terminal):
    """At the optimum of W2²(ρ0, ρ_T)/(2τ) + D_f(ρ_T‖π), characteristics are straight:
    x_0 = x_T + τ ∂x f'(ρ_T/π)(x_T). In 1-D, with quantiles: Q0(u) = Q_T(u) + τ g'(Q_T(u)),
    g = f'(ρ_T/π). Checked from ρ_T alone (measured max error 0.003–0.006 at n = 128)."""
    sc = load("gaussian_kl_1d.yaml", f"terminal={terminal}", "solver.n=128", "solver.nt=16",
              "solver.max_iter=2500")
    res = solve(sc)
    x = res.grid.x1.values
    dx = x[1] - x[0]
    rho_T = np.maximum(res.grid.rho.values[-1], 0.0)
    div = get_f_divergence(sc.terminal.f, sc.terminal.alpha)
    g = div.df(np.maximum(rho_T, 1e-300) / res.grid.target.values)
    u = np.linspace(0.05, 0.95, 91)
    cdf = np.concatenate([[0.0], np.cumsum(rho_T)]) * dx
    q_T = np.interp(u, cdf / cdf[-1], np.concatenate([[x[0] - dx / 2], x + dx / 2]))
    predicted = q_T + sc.T / sc.lam * np.interp(q_T, x, np.gradient(g, dx))
    q_0 = sc.source.mean()[0] + sc.source.std[0] * norm.ppf(u)
    assert np.max(np.abs(predicted - q_0)) < 0.015
    assert res.metrics["terminal_residual"] < 2e-3
    assert res.metrics["hj_residual"] < 2e-3
