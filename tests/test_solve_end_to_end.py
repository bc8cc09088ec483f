"""`cli.py solve / compare / plot / show` with the real grid solver, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from mfg.results import read_result
from mfg.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402


def test_solve_writes_a_complete_result(tmp_path, capsys):
    out = tmp_path / "q.h5"
    rc = cli.main([
        "solve", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(out), "--quiet",
        "--set", "solver.n=16", "--set", "solver.nt=4", "--set", "solver.max_iter=40",
    ])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.h5"]  # no temporary left behind
    res = read_result(out)
    assert res.status == "max_iter"  # 40 iterations do not reach tol: reported, not hidden
    assert res.settings["method"] == "bfm"  # the default for an f terminal
    assert len(res.history["relative_gap"]) == 40
    assert res.git_revision and res.versions["numpy"]
    assert parse_scenario(res.scenario_text).solver.n == (16, 16)
    ds = xr.open_dataset(out, group="grid", engine="h5netcdf")
    assert ds["rho"].dims == ("t", "x1", "x2") and ds["U"].dims == ("t", "x1", "x2")
    assert ds["rho"].shape == (5, 16, 16)
    for key in ("kinetic_energy", "terminal_cost", "objective", "hj_residual",
                "continuity_residual", "mass_error"):
        assert np.isfinite(res.metrics[key]), key
    ds.close()
    png = tmp_path / "q.png"
    assert cli.main(["plot", str(out), "-o", str(png)]) == 0
    assert png.stat().st_size > 10_000


def test_compare_against_the_closed_form(tmp_path, capsys):
    out = tmp_path / "kl1d.h5"
    rc = cli.main([
        "solve", str(ROOT / "scenarios" / "gaussian_kl_1d.yaml"), "--out", str(out), "--quiet",
        "--set", "solver.n=64", "--set", "solver.nt=16", "--set", "solver.max_iter=1500",
    ])
    assert rc == 0
    capsys.readouterr()
    assert cli.main(["compare", str(out), "--analytic", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["density_l1_max"] < 0.02
    assert table["kinetic_energy_rel_diff"] < 0.01


def test_study_convergence_prints_orders_and_writes_a_plot(tmp_path, capsys):
    png = tmp_path / "conv.png"
    rc = cli.main([
        "study", "convergence", str(ROOT / "scenarios" / "gaussian_kl_1d.yaml"),
        "--n", "16,32", "--nt", "4,8", "--set", "solver.max_iter=1500", "-o", str(png),
    ])
    assert rc == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:2] in ("16", "32")]
    assert len(rows) == 2
    w1_coarse, w1_fine = float(rows[0][2]), float(rows[1][2])
    order = float(rows[1][3])
    assert w1_fine < w1_coarse and order > 1.0
    assert png.stat().st_size > 10_000
