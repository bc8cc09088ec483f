"""The grid solver does not depend on the units of time (issue #11, defect 1).

The continuous problem depends on (T, λ) only through τ = T/λ for the terminal law, and its
objective is known in closed form (DESIGN.md §1): for KL it is a function of τ alone; for
``fixed`` the kinetic energy is λ W2²(ρ0, π)/(2T). A sweep of T over six decades must reproduce
both at every T, and, since the discrete problems are exactly equivalent (the splitting runs in
reference time), the same terminal density and value function to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from grid_cases import load, moments_1d

from mfg.analytic import closed_form
from solvers.grid import solve

T_SWEEP = (1e-4, 1e-2, 1.0, 1e2)
#: τ of the KL sweep: its terminal mean (−0.33) is away from 0, so relative errors are meaningful
TAU = 0.25
#: enough cells and iterations for the 1% checks (discretization error ~0.1% at these settings)
GRID = ("solver.n=64", "solver.nt=8", "solver.max_iter=1000", "solver.tol=1e-9")


@pytest.fixture(scope="module")
def kl_sweep():
    """The 1-D KL case at τ = TAU for every T of the sweep (λ = T/τ)."""
    out = []
    for T in T_SWEEP:
        sc = load("gaussian_kl_1d.yaml", f"T={T!r}", f"lambda={T / TAU!r}", *GRID)
        out.append((sc, solve(sc)))
    return out


@pytest.fixture(scope="module")
def fixed_sweep():
    """The 1-D ``fixed`` case (dynamic OT) at λ = 1 for every T of the sweep (τ = T)."""
    out = []
    for T in T_SWEEP:
        sc = load("gaussian_fixed_1d.yaml", f"T={T!r}", *GRID)
        out.append((sc, solve(sc)))
    return out


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("k", range(len(T_SWEEP)), ids=[f"T={T:g}" for T in T_SWEEP])
def test_kl_terminal_law_and_objective_match_closed_form_at_every_T(kl_sweep, k):
    sc, res = kl_sweep[k]
    cf = closed_form(sc)
    mean, std = moments_1d(res.grid.rho.values[-1], res.grid.x1.values)
    assert _rel(mean, cf.mT[0]) < 0.01, (mean, cf.mT[0])
    assert _rel(std, cf.sT[0]) < 0.01, (std, cf.sT[0])
    m = res.metrics
    assert _rel(m["objective"], cf.objective) < 0.01, (m["objective"], cf.objective)
    assert _rel(m["kinetic_energy"], cf.kinetic_energy) < 0.01
    assert _rel(m["terminal_cost"], cf.terminal_cost) < 0.01


def test_kl_same_tau_gives_the_same_solution_at_every_T(kl_sweep):
    """Terminal law, objective and value function are functions of τ: equal across T to
    rounding (1e-9), not only to the discretization error."""
    _, ref = kl_sweep[T_SWEEP.index(1.0)]
    for _, res in kl_sweep:
        np.testing.assert_allclose(res.grid.rho.values, ref.grid.rho.values, rtol=0, atol=1e-9)
        np.testing.assert_allclose(res.grid.U_cell.values, ref.grid.U_cell.values, atol=1e-7)
        assert res.metrics["objective"] == pytest.approx(ref.metrics["objective"], rel=1e-9)


@pytest.mark.parametrize("k", range(len(T_SWEEP)), ids=[f"T={T:g}" for T in T_SWEEP])
def test_fixed_objective_scales_as_one_over_T(fixed_sweep, k):
    """Dynamic OT: ρ_T = π and the objective is λ W2²/(2T), from 2e4 down to 2e-2."""
    sc, res = fixed_sweep[k]
    cf = closed_form(sc)
    mean, std = moments_1d(res.grid.rho.values[-1], res.grid.x1.values)
    assert _rel(mean, cf.mT[0]) < 0.01
    assert _rel(std, cf.sT[0]) < 0.01
    assert _rel(res.metrics["objective"], cf.objective) < 0.01, (res.metrics["objective"],
                                                                cf.objective)
    # the momenta carry the units: m = ρv with v of order 1/T
    _, ref = fixed_sweep[T_SWEEP.index(1.0)]
    np.testing.assert_allclose(res.grid.m1.values * sc.T, ref.grid.m1.values, atol=1e-9)
