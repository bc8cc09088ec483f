"""Degenerate and oversized grid runs (issue #11, defects 6 and 8): refused as bad input before
anything is allocated or written, or reported with residuals that mean something."""

from __future__ import annotations

import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from grid_cases import load

import mfg.settings.grid as grid_settings
from mfg.residuals import hj_residual, velocity_residual
from mfg.scenario import ScenarioError
from solvers.grid import solve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402

KL_1D = str(ROOT / "scenarios" / "gaussian_kl_1d.yaml")
SMALL = ("solver.n=32", "solver.nt=8")


# ------------------------------------------------------------------ targets the grid cannot see


def test_target_narrower_than_a_cell_is_bad_input_naming_the_estimate(tmp_path, capsys):
    """std 1e-6 on cells of 0.31: the run used to end with a NumPy warning, terminal_residual
    inf and exit 0; now exit 2 before solving, one line, nothing written."""
    out = tmp_path / "narrow.h5"
    rc = cli.main(["solve", KL_1D, "--out", str(out), "--quiet", "--set", "target.std=1e-6",
                   *[a for s in SMALL for a in ("--set", s)]])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "target: the grid does not resolve its density" in err
    assert "gives mass 0 instead of 1" in err  # the midpoint-rule estimate, named
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_resolved_narrow_target_still_runs():
    """The threshold is a third of a cell: std 0.12 on cells of 0.31 is accepted."""
    res = solve(load("gaussian_kl_1d.yaml", "target.std=0.12", *SMALL, "solver.max_iter=20"))
    assert res.metrics["iterations"] == 20


def test_target_with_empty_cells_gives_finite_terminal_residual_without_warning():
    """A uniform target leaves π = 0 on most cells, where f'(ρ_T/π) is infinite: the residual
    is measured on supp π and the mass outside it is reported apart (it was inf, with a
    RuntimeWarning, because ρ_T > 0 there to the splitting tolerance)."""
    sc = load("gaussian_kl_1d.yaml", "target={kind: uniform, low: [0.0], high: [2.0]}", *SMALL,
              "solver.max_iter=300")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = solve(sc)
    m = res.metrics
    assert np.isfinite(m["terminal_residual"]) and m["terminal_residual"] < 0.05
    rho_T = res.grid.rho.values[-1]
    outside = res.grid.target.values == 0
    dx = float(res.grid.x1[1] - res.grid.x1[0])
    assert m["mass_outside_target"] == pytest.approx(np.sum(np.maximum(rho_T[outside], 0)) * dx)
    assert 0 < m["mass_outside_target"] < 1e-3


# ------------------------------------------------------------------ a solution at rest


def test_identical_source_and_target_report_zero_residuals():
    """ρ0 = π: the solution is at rest (m = 0, U = 0). Relative residuals used to divide
    rounding by rounding (hj 1, velocity 1.3 to 2.4, and a dual residual of 1 that never let
    the run stop)."""
    sc = load("gaussian_kl_1d.yaml", "target.std=0.5", "target.mean=[-1.0]", *SMALL,
              "solver.max_iter=400")
    res = solve(sc)
    m = res.metrics
    assert m["hj_residual"] == 0.0
    assert m["velocity_residual"] == 0.0
    assert m["continuity_residual"] < 1e-3
    assert m["objective"] < 1e-20
    assert res.status == "converged"


def test_residual_floors_do_not_hide_a_wrong_solution():
    """Momentum zero but ∇U not (or the reverse) is a velocity residual of 1, and a U that is
    not constant keeps its HJ residual, whatever the floors."""
    x = np.linspace(-1, 1, 16)
    rho = np.ones((4, 16))
    U = np.tile(0.5 * x**2, (4, 1))
    zero = np.zeros_like(U)
    assert velocity_residual(rho, [zero], U, (x[1] - x[0],), 1.0, m_floor=1e-10) == 1.0
    assert velocity_residual(rho, [np.ones_like(U)], zero, (x[1] - x[0],), 1.0,
                             m_floor=1e-10) == 1.0
    # U(x, t) = x²/2 is not a solution of −∂tU + |∇U|²/2 = 0
    assert hj_residual(U, np.ones((5, 16)), 0.25, (x[1] - x[0],), 1.0, u_floor=1e-10) > 0.5


# ------------------------------------------------------------------ grids larger than memory


def test_grid_larger_than_memory_is_refused_at_load_time():
    """10¹⁰ cells: exit 1 MemoryError after allocating before; now a load-time error naming
    the estimate (nothing is allocated: the test only parses)."""
    with pytest.raises(ScenarioError, match=r"solver\.n: a 100000 x 100000 grid with nt = 16 "
                                            r"needs about .* GiB .* available"):
        load("gaussian_kl_2d.yaml", "solver.n=[100000, 100000]")


def test_memory_check_compares_with_available_memory(monkeypatch, tmp_path, capsys):
    """With 64 MiB available, 256² cells x 32 steps (8·N·nt·44 B + 16 MiB = 0.703 GiB) are
    refused by the CLI with exit 2 and nothing written; the shared 2-D scenario (64² x 16) still
    loads."""
    monkeypatch.setattr(grid_settings, "available_memory", lambda: 64.0 * 2**20)
    out = tmp_path / "big.h5"
    rc = cli.main(["solve", str(ROOT / "scenarios" / "gaussian_kl_2d.yaml"), "--out", str(out),
                   "--set", "solver.n=256", "--set", "solver.nt=32"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "solver.n: a 256 x 256 grid with nt = 32 needs about 0.703 GiB" in err
    assert "more than the 0.0625 GiB available" in err
    assert not out.exists()
    load("gaussian_kl_2d.yaml", "solver.n=64", "solver.nt=16")


@pytest.mark.parametrize(("name", "overrides"), [
    ("gaussian_kl_1d.yaml", ("solver.n=4096", "solver.nt=16")),
    ("gaussian_kl_2d.yaml", ("solver.n=96", "solver.nt=16")),
    ("circle_lipschitz_2d.yaml", ("solver.n=96", "solver.nt=16")),
    ("gaussian_kl_2d.yaml", ("solver.n=96", "solver.nt=16", "solver.method=bfm")),
    ("mixture_fixed_2d.yaml", ("solver.n=256", "solver.nt=8", "solver.method=bfm")),
])
def test_memory_estimate_bounds_the_measured_peak(name, overrides):
    """The estimate is above the real peak (tracemalloc, NumPy's allocations) and within 2x
    of it: a refusal means the run would not fit, not a guess."""
    sc = load(name, *overrides, "solver.max_iter=3")
    tracemalloc.start()
    try:
        solve(sc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = grid_settings.estimate_memory(sc.solver.n, sc.solver.nt, sc.solver.method)
    base = grid_settings.BASE_MIB[sc.solver.method] * 2**20
    assert peak < estimate < 2 * peak + base, (peak, estimate)
