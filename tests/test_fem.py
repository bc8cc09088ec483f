"""The fem solver (ALG2 on space-time meshes) against truth: closed forms, POT's exact W2, the
grid solver, exact shortest paths around walls, mass conservation, 1 vs 2 MPI ranks, bad input.

Fast tests use coarse 1-D meshes (seconds); the 2-D cases are marked slow.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import ot
import pytest

pytest.importorskip("dolfinx_solver")  # loads MPI before dolfinx

from mfg.analytic import closed_form  # noqa: E402
from mfg.compare import compare  # noqa: E402
from mfg.results import read_result, write_result  # noqa: E402
from mfg.scenario import ScenarioError, load_scenario  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"
PYTHON = sys.executable
MPIEXEC = shutil.which("mpiexec", path=str(Path(PYTHON).parent)) or shutil.which("mpiexec")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: coarse 1-D settings: h = 0.1 on [-5, 5] (100 cells), 16 slabs
COARSE = ("solver.h=0.1", "solver.nt=16", "solver.progress=false")


def fem_solve(name: str, *overrides: str):
    from solvers.fem import solve

    sc = load_scenario(SCENARIOS / name, [*COARSE, *overrides])
    return sc, solve(sc)


def mesh_moments(result) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per coordinate of ρ_T from the /mesh nodal fields (lumped quadrature)."""
    w, x, rho = result.mesh["weights"], result.mesh["points"], result.mesh["rho"][-1]
    p = w * rho / np.sum(w * rho)
    mean = p @ x
    return mean, np.sqrt(p @ (x - mean) ** 2)


@pytest.fixture(scope="module")
def kl_1d():
    return fem_solve("fem_gaussian_kl_1d.yaml", "solver.max_iter=600", "solver.grid_n=128")


def test_kl_1d_terminal_moments_within_1pc_of_closed_form(kl_1d) -> None:
    sc, res = kl_1d
    cf = closed_form(sc)
    mean, std = mesh_moments(res)
    assert abs(mean[0] - cf.mT[0]) / abs(cf.mT[0]) < 0.01
    assert abs(std[0] - cf.sT[0]) / cf.sT[0] < 0.01
    # the value function is the first variation: U(T) = log(ρ_T/π) where ρ_T lives
    assert res.metrics["terminal_residual"] < 1e-2


def test_kl_1d_mass_conserved_and_saved_mesh(kl_1d, tmp_path: Path) -> None:
    sc, res = kl_1d
    assert res.metrics["mass_error"] < 1e-10
    path = write_result(res, tmp_path / "fem.h5")
    with h5py.File(path, "r") as f:  # readable without dolfinx
        w, rho = f["mesh/weights"][()], f["mesh/rho"][()]
        assert f["mesh/points"].shape[0] == w.shape[0] == rho.shape[1]
        assert f["mesh/cells"].shape[1] == 2
    assert np.max(np.abs(rho @ w - 1.0)) < 1e-10
    back = read_result(path)
    assert set(back.mesh) == set(res.mesh) and back.grid is not None


def test_kl_1d_matches_grid_solver(kl_1d) -> None:
    """cli.py compare's density L1 at T between fem (h = 0.1) and grid (128 cells, dx = 0.078)."""
    from solvers.grid import solve as grid_solve

    _, fem = kl_1d
    sc = load_scenario(SCENARIOS / "gaussian_kl_1d.yaml",
                       ["solver.n=128", "solver.nt=16", "solver.max_iter=1500",
                        "solver.progress=false"])
    table = compare(fem, grid_solve(sc))
    l1_T = [v for k, v in table.items() if k.startswith("density_l1@t=1")]
    assert len(l1_T) == 1 and l1_T[0] < 0.02, table
    assert table["kinetic_energy_rel_diff"] < 0.01


def test_fixed_1d_kinetic_energy_matches_emd2() -> None:
    """(2T/λ)·kinetic energy = W2²(ρ0, π), W2 by POT's exact emd2 on the same nodal densities."""
    sc, res = fem_solve("fem_mixture_fixed_1d.yaml", "solver.max_iter=1500")
    x, w = res.mesh["points"], res.mesh["weights"]
    a, b = w * res.mesh["source"], w * res.mesh["target"]
    w2sq = ot.emd2(a / a.sum(), b / b.sum(), ot.dist(x, x))
    ke = res.metrics["kinetic_energy"]
    assert abs(2 * sc.T / sc.lam * ke - w2sq) / w2sq < 0.02
    assert res.metrics["mass_error"] < 1e-10
    # ρ_T = π (the terminal multiplier equals the target up to the splitting tolerance)
    assert np.sum(w * np.abs(res.mesh["rho"][-1] - res.mesh["target"])) < 1e-2


def _run_cli(args: list[str], env_extra: dict | None = None, nproc: int = 0):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.update(env_extra or {})
    cmd = [PYTHON, str(REPO / "cli.py"), *args]
    if nproc:
        cmd = [MPIEXEC, "-n", str(nproc), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


def test_mpi_two_ranks_equal_one_rank(tmp_path: Path) -> None:
    if MPIEXEC is None:
        pytest.skip("mpiexec not found (it ships in the venv with the dolfinx wheel)")
    sets = ["--set", "solver.h=0.2", "--set", "solver.nt=8", "--set", "solver.max_iter=150",
            "--quiet"]
    scenario = str(SCENARIOS / "fem_gaussian_kl_1d.yaml")
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    r1 = _run_cli(["solve", scenario, "--out", str(one), *sets])
    r2 = _run_cli(["solve", scenario, "--out", str(two), *sets], nproc=2)
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr, r2.stderr)
    a, b = read_result(one), read_result(two)
    assert b.metrics["mpi_ranks"] == 2.0 and a.metrics["mpi_ranks"] == 1.0
    assert np.max(np.abs(a.mesh["rho"] - b.mesh["rho"])) < 1e-8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.h5", "two.h5"]  # no temporaries
    # bad input under MPI: one line, exit 2, nothing written
    bad = _run_cli(["solve", scenario, "--out", str(tmp_path / "bad.h5"), "--set",
                    "solver.h=-1"], nproc=2)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "solver.h" in bad.stderr
    assert not (tmp_path / "bad.h5").exists()


# ----------------------------------------------------------------------------------------------
# bad input: exit 2, one line naming the field, nothing written

GOOD = """\
name: fem_bad
dim: 2
lambda: 1.0
source: {kind: gaussian, mean: [0.5, 0.5], std: 0.1}
target: {kind: gaussian, mean: [1.5, 0.5], std: 0.1}
terminal: {kind: fixed}
domain:
  kind: polygon
  vertices: [[0, 0], [2, 0], [2, 1], [0, 1]]
solver: {kind: fem, h: 0.2, nt: 4, max_iter: 5}
"""


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("kind: polygon", "kind: ellipse", "domain.kind"),
        ("[[0, 0], [2, 0], [2, 1], [0, 1]]", "[[0, 0], [2, 1], [2, 0], [0, 1]]",
         "domain.vertices"),
        ("[[0, 0], [2, 0], [2, 1], [0, 1]]",
         "[[0, 0], [2, 0], [2, 1], [0, 1]]\n  holes: [[[3, 3], [4, 3], [4, 4]]]",
         "domain.holes.0"),
        ("h: 0.2", "h: 0", "solver.h"),
        ("{kind: fixed}", "{kind: w1, L: 1.0}", "terminal.kind"),
        ("mean: [0.5, 0.5], std: 0.1", "mean: [0.05, 0.5], std: 0.1", "domain"),
    ],
    ids=["unknown-domain-kind", "self-intersecting", "hole-outside", "h-not-positive",
         "terminal-it-cannot-do", "domain-not-covering-source"],
)
def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str,
                   names: str) -> None:
    import cli

    assert GOOD.count(old) == 1
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(GOOD.replace(old, new))
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    assert "\n" not in str(info.value) and names in str(info.value), str(info.value)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "out.h5"
    rc = cli.main(["solve", str(scenario), "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and names in err[0], err
    assert not out.exists() and sorted(tmp_path.iterdir()) == before


def test_non_box_domain_refused_by_grid_solver() -> None:
    text = GOOD.replace("solver: {kind: fem, h: 0.2, nt: 4, max_iter: 5}", "solver: {kind: grid}")
    with pytest.raises(ScenarioError, match="domain.kind"):
        from mfg.scenario import parse_scenario

        parse_scenario(text)


# ----------------------------------------------------------------------------------------------
# 2-D (slow)


@pytest.mark.slow
def test_two_rooms_kinetic_energy_matches_shortest_path() -> None:
    """A narrow blob (std 0.08, door 0.4 wide) goes around the wall: kinetic energy within 5%
    of λ d²/(2T), d the exact shortest path between the centres; the mass goes through the
    door (half way, its centre of mass is at the door); mass conserved."""
    sc = load_scenario(SCENARIOS / "fem_two_rooms.yaml", ["solver.progress=false"])
    from solvers.fem import solve

    res = solve(sc)
    d = sc.domain.shape.shortest_path(tuple(sc.source.mean()), tuple(sc.target.mean()))
    assert d == pytest.approx(2 * math.hypot(0.45, 0.3) + 0.1)
    exact = sc.lam * d**2 / (2 * sc.T)
    assert abs(res.metrics["kinetic_energy"] - exact) / exact < 0.05, res.metrics
    assert res.metrics["mass_error"] < 1e-10
    grid = res.grid
    wall = ((np.abs(grid.x1 - 1.0) < 0.04) & (grid.x2 < 0.58)).values  # inside the wall
    assert wall.any() and np.isnan(grid.rho.values[:, wall]).all()
    assert sc.domain.shape.contains(res.mesh["points"]).all()
    # half way, the centre of mass is at the door (x = 1), lifted from y = 0.3 towards the
    # corners at y = 0.6 (a straight path would keep y = 0.3 and cross the wall)
    x, w, rho = res.mesh["points"], res.mesh["weights"], res.mesh["rho"]
    k = len(res.mesh["times"]) // 2
    centre = (w * rho[k]) @ x / np.sum(w * rho[k])
    assert abs(centre[0] - 1.0) < 0.02 and centre[1] > 0.5, centre


@pytest.mark.slow
def test_disk_kl_moments_close_to_closed_form() -> None:
    """In a disk of radius 2.5 (Gaussians well inside) the terminal law is the closed form's."""
    sc = load_scenario(SCENARIOS / "fem_disk_kl.yaml", ["solver.progress=false"])
    from solvers.fem import solve

    res = solve(sc)
    cf = closed_form(sc)
    mean, std = mesh_moments(res)
    assert np.max(np.abs(mean - cf.mT)) < 0.01 * np.max(np.abs(cf.mT - cf.m0))
    assert np.max(np.abs(std - cf.sT) / cf.sT) < 0.05
    assert res.metrics["mass_error"] < 1e-10
    assert np.isnan(res.grid.rho.values[:, 0, 0]).all()  # the box corner is outside the disk
