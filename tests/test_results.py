"""Result files (HDF5 layout, atomic writes, errors), provenance and the comparison table."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import mfg.results as results
from mfg.compare import CompareError, compare, compare_with_closed_form, compare_with_target
from mfg.manifold import DRAWS
from mfg.metrics import sinkhorn_divergence
from mfg.provenance import git_revision, versions
from mfg.results import Result, ResultFileError, read_result, write_result

# ----------------------------------------------------------------------------------------------
# synthetic results: a Gaussian N(m(t), s(t)^2) per coordinate, m = -1 + 2t + shift, s = 1 - t/2


def mean_std(t: np.ndarray, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    return -1.0 + 2.0 * t + shift, 1.0 - 0.5 * t


def gaussian_dataset(dim: int, n: int = 40, nt: int = 5, shift: float = 0.0) -> xr.Dataset:
    """rho = prod_k N(x_k; m(t), s(t)^2) on n^dim cells of [-4, 4]^dim (normalized to mass 1 on
    the grid), U = |x|^2 t / 2."""
    t = np.linspace(0.0, 1.0, nt)
    edges = np.linspace(-4.0, 4.0, n + 1)
    x = 0.5 * (edges[1:] + edges[:-1])
    mesh = np.stack(np.meshgrid(*[x] * dim, indexing="ij"), axis=-1)
    m, s = mean_std(t, shift)
    rho = np.stack(
        [
            np.exp(-0.5 * np.sum((mesh - mi) ** 2, axis=-1) / si**2)
            for mi, si in zip(m, s, strict=True)
        ]
    )
    rho /= rho.sum(axis=tuple(range(1, dim + 1)), keepdims=True) * (x[1] - x[0]) ** dim
    u = np.stack([0.5 * np.sum(mesh**2, axis=-1) * ti for ti in t])
    dims = ("t", *[f"x{k + 1}" for k in range(dim)])
    coords = {"t": t, **{f"x{k + 1}": x for k in range(dim)}}
    return xr.Dataset({"rho": (dims, rho), "U": (dims, u)}, coords=coords)


def make_result(
    dim: int = 1, shift: float = 0.0, samples: bool = True, grid: bool = True
) -> Result:
    rng = np.random.default_rng(0)
    m, s = mean_std(np.array([1.0]), shift)
    out = Result(
        solver="grid",
        status="converged",
        scenario_text=f"name: synthetic\ndim: {dim}\n",
        settings={"n": (40,) * dim, "tol": np.float64(1e-6), "progress": False},
        grid=gaussian_dataset(dim, shift=shift) if grid else None,
        history={"objective": np.linspace(2.0, 1.0, 7), "hj_residual": np.logspace(0, -6, 7)},
        metrics={
            "kinetic_energy": 2.0 + shift,
            "terminal_cost": 0.5,
            "objective": 2.5 + shift,
            "hj_residual": 1e-6,
            "mass_error": 1e-12,
            "iterations": 7,
        },
        wall_time_s=1.25,
        device="cpu",
        versions={"python": "3.12.0", "numpy": "2.0"},
        git_revision="0123abc-dirty",
    )
    if samples:
        out.samples = {
            "terminal": rng.normal(m[0], s[0], size=(500, dim)),
            "trajectories": rng.normal(size=(3, 500, dim)),
        }
    return out


# ----------------------------------------------------------------------------------------------
# round trip and layout


@pytest.mark.parametrize("dim", [1, 2])
def test_roundtrip(tmp_path: Path, dim: int) -> None:
    original = make_result(dim)
    path = write_result(original, tmp_path / "r.h5")
    back = read_result(path)
    assert (back.solver, back.status, back.device) == ("grid", "converged", "cpu")
    assert back.scenario_text == original.scenario_text
    assert back.settings == {"n": [40] * dim, "tol": 1e-6, "progress": False}
    assert back.versions == original.versions
    assert back.git_revision == "0123abc-dirty"
    assert back.wall_time_s == pytest.approx(1.25)
    assert back.metrics == pytest.approx(original.metrics)
    assert set(back.history) == set(original.history)
    for key, value in original.history.items():
        np.testing.assert_array_equal(back.history[key], value)
    for key, value in original.samples.items():
        np.testing.assert_array_equal(back.samples[key], value)
    xr.testing.assert_allclose(back.grid, original.grid)
    assert back.grid["rho"].dims == original.grid["rho"].dims


def test_roundtrip_without_grid(tmp_path: Path) -> None:
    back = read_result(write_result(make_result(2, grid=False), tmp_path / "r.h5"))
    assert back.grid is None
    assert back.samples["terminal"].shape == (500, 2)


def test_layout_readable_by_xarray_and_h5py(tmp_path: Path) -> None:
    path = write_result(make_result(2), tmp_path / "r.h5")
    with xr.open_dataset(path, group="grid", engine="h5netcdf") as ds:
        assert ds["rho"].dims == ("t", "x1", "x2")
        assert ds["U"].dims == ("t", "x1", "x2")
        assert ds.sizes == {"t": 5, "x1": 40, "x2": 40}
        np.testing.assert_allclose(ds["t"].values, np.linspace(0, 1, 5))
    with h5py.File(path, "r") as f:
        for key in ("scenario", "solver", "settings", "versions", "git_revision", "wall_time_s",
                    "status", "device", "format_version"):  # fmt: skip
            assert key in f.attrs
        assert json.loads(f.attrs["settings"])["progress"] is False
        assert f["samples/terminal"].shape == (500, 2)
        assert f["samples/trajectories"].shape == (3, 500, 2)
        assert f["history/objective"].shape == (7,)
        assert float(f["metrics"].attrs["objective"]) == 2.5


# ----------------------------------------------------------------------------------------------
# atomic writes


def test_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_result(make_result(1), tmp_path / "r.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failed_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def explode(*args: object) -> None:
        raise error

    monkeypatch.setattr(results, "_write_metrics", explode)
    with pytest.raises(type(error)):
        write_result(make_result(2), tmp_path / "r.h5")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_result(make_result(1), tmp_path / "r.h5")
    before = path.read_bytes()

    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(results, "_write_metrics", explode)
    with pytest.raises(RuntimeError):
        write_result(make_result(1, shift=1.0), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]


# ----------------------------------------------------------------------------------------------
# errors


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="nope.h5") as info:
        read_result(tmp_path / "nope.h5")
    assert "\n" not in str(info.value)


def test_read_non_hdf5_file(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("not hdf5\n")
    with pytest.raises(ResultFileError, match="text.h5") as info:
        read_result(path)
    assert "\n" not in str(info.value)


def test_read_hdf5_that_is_not_a_result(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ResultFileError, match="not a proxflow result"):
        read_result(path)


# ----------------------------------------------------------------------------------------------
# provenance


def test_versions() -> None:
    found = versions()
    assert found["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "numpy" in found and "h5py" in found
    assert all(isinstance(v, str) for v in found.values())


def test_git_revision(tmp_path: Path) -> None:
    assert git_revision(tmp_path) == "unknown"  # not a repository
    assert git_revision(tmp_path / "missing") == "unknown"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    try:
        subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
        (tmp_path / "a.txt").write_text("a\n")
        subprocess.run([*git, "add", "a.txt"], cwd=tmp_path, check=True)
        subprocess.run([*git, "commit", "-q", "-m", "a"], cwd=tmp_path, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not usable here")
    clean = git_revision(tmp_path)
    assert len(clean) == 40 and all(c in "0123456789abcdef" for c in clean)
    (tmp_path / "a.txt").write_text("b\n")
    assert git_revision(tmp_path) == clean + "-dirty"


# ----------------------------------------------------------------------------------------------
# comparison table


def test_compare_with_itself_is_zero() -> None:
    table = compare(make_result(1, samples=False), make_result(1, samples=False))
    assert table["density_l1_max"] == pytest.approx(0.0, abs=1e-14)
    assert table["density_linf_max"] == pytest.approx(0.0, abs=1e-14)
    assert table["U_T_linf"] == pytest.approx(0.0, abs=1e-12)
    assert table["objective_rel_diff"] == 0.0
    assert "w2_terminal" not in table  # grid against grid is skipped
    assert sum(k.startswith("density_l1@t=") for k in table) == 5
    json.dumps(table)  # JSON-able


def test_compare_shifted_results() -> None:
    shift = 0.3
    a, b = make_result(1, samples=False), make_result(1, shift=shift)
    b.grid = gaussian_dataset(1, n=64, shift=shift)  # a different grid: interpolated onto a's
    b.grid["U"] = b.grid["U"] + 5.0  # U is compared up to a constant
    table = compare(a, b)
    assert table["mean_err"] == pytest.approx(shift, abs=1e-3)
    assert table["std_err"] == pytest.approx(0.0, abs=5e-3)
    assert table["U_T_shift"] == pytest.approx(-5.0, abs=0.05)
    assert table["U_T_linf"] < 0.1
    assert table["kinetic_energy_rel_diff"] == pytest.approx(shift / (2.0 + shift))
    assert table["b.hj_residual"] == 1e-6 and "a.mass_error" in table
    # b's 500 terminal samples of N(1.3, 0.5^2) against a's grid density N(1, 0.5^2)
    assert table["w2_terminal"] == pytest.approx(shift, abs=0.08)
    assert table["density_l1_max"] > 0.1


def test_compare_rejects_different_dimensions() -> None:
    with pytest.raises(CompareError, match="dimensions differ"):
        compare(make_result(1), make_result(2))


class FakeClosedForm:
    """The synthetic Gaussian path with U = |x|^2 t / 2 + 3 (an exact constant)."""

    kinetic_energy, terminal_cost, objective = 2.0, 0.5, 2.5

    def mean(self, t: float) -> np.ndarray:
        return np.full(self.dim, mean_std(np.array([t]))[0][0])

    def std(self, t: float) -> np.ndarray:
        return np.full(self.dim, mean_std(np.array([t]))[1][0])

    def log_density(self, x: np.ndarray, t: float) -> np.ndarray:
        return -0.5 * np.sum((x - self.mean(t)) ** 2, axis=-1) / self.std(t)[0] ** 2

    def U(self, x: np.ndarray, t: float) -> np.ndarray:  # noqa: N802 (the value function)
        return 0.5 * np.sum(x**2, axis=-1) * t + 3.0

    def __init__(self, dim: int) -> None:
        self.dim = dim


def fake_scenario(dim: int) -> types.SimpleNamespace:
    domain = types.SimpleNamespace(bounds=((-4.0, 4.0),) * dim)
    return types.SimpleNamespace(name="fake", dim=dim, T=1.0, text="name: fake\n", domain=domain)


@pytest.fixture
def fake_analytic(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("mfg.analytic")
    module.closed_form = lambda scenario: (
        None if scenario.name == "none" else FakeClosedForm(scenario.dim)
    )
    monkeypatch.setitem(sys.modules, "mfg.analytic", module)


@pytest.mark.usefixtures("fake_analytic")
def test_compare_with_closed_form() -> None:
    table = compare_with_closed_form(make_result(1), fake_scenario(1))
    assert table["exact.solver"] == "closed_form"
    assert table["density_l1_max"] < 1e-12  # same density, normalized on the grid
    assert table["exact.mean_x1"] == 1.0 and table["exact.std_x1"] == 0.5
    assert table["mean_err"] < 1e-6
    assert table["U_T_shift"] == pytest.approx(-3.0)
    assert table["U_T_linf"] < 1e-12
    assert table["objective_rel_diff"] == 0.0
    assert table["w2_terminal"] < 0.08  # a's samples against the exact density


@pytest.mark.usefixtures("fake_analytic")
def test_compare_grid_free_result_with_closed_form() -> None:
    table = compare_with_closed_form(make_result(1, grid=False), fake_scenario(1))
    assert "density_l1_max" not in table
    assert table["mean_err"] < 0.08
    assert table["w2_terminal"] < 0.08


@pytest.mark.usefixtures("fake_analytic")
def test_no_closed_form() -> None:
    scenario = fake_scenario(1)
    scenario.name = "none"
    with pytest.raises(CompareError, match="has no closed form"):
        compare_with_closed_form(make_result(1), scenario)


# ----------------------------------------------------------------------------------------------
# compare_with_target: S_ε of a translation by δ is |δ|²/2 exactly (tests/test_metrics.py)


def bump(x: np.ndarray, centre: tuple[float, float], std: float) -> np.ndarray:
    mesh = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1)
    return np.exp(-0.5 * np.sum((mesh - np.array(centre)) ** 2, axis=-1) / std**2)


def test_compare_with_target_on_cells() -> None:
    """ρ_T = the target moved by 2 cells (δ = 0.5) along x1, both well inside the grid: the
    exact cell measures give S_ε = δ²/2 = 0.125 and E|x|²(ρ_T) − E|x|²(π) = 2δ·m1 + δ² (m1 the
    target's mean on the cells, about −0.5), with no sampling floor."""
    edges = np.linspace(-3.0, 3.0, 25)
    x = 0.5 * (edges[1:] + edges[:-1])
    target = bump(x, (-0.5, 0.0), 0.5)
    rho_T = np.roll(target, 2, axis=0)  # what wraps round is below 1e-10
    source = bump(x, (0.0, 0.0), 1.0)
    rho = np.stack([source, rho_T])
    coords = {"t": [0.0, 1.0], "x1": x, "x2": x}
    grid = xr.Dataset({"rho": (("t", "x1", "x2"), rho), "target": (("x1", "x2"), target),
                       "source": (("x1", "x2"), source)}, coords=coords)
    result = Result(solver="grid", status="converged", scenario_text="", settings={}, grid=grid)
    table = compare_with_target(result, fake_scenario(2))
    assert table["sinkhorn_to_target"] == pytest.approx(0.125, rel=2e-3)
    assert table["sinkhorn_floor"] == 0.0
    m1 = float(np.sum(target.sum(axis=1) * x) / target.sum())  # −0.5 up to the grid's cut
    assert abs(m1 + 0.5) < 1e-5
    assert table["a.second_moment"] - table["target.second_moment"] == pytest.approx(
        2 * 0.5 * m1 + 0.25, rel=1e-8)  # the rows rolled round carry ~1e-10
    assert table["sinkhorn_source_to_target"] > 0.125


class ShiftedGaussian:
    """N(m, I) in 2-D, the sampler a scenario's source or target exposes."""

    def __init__(self, mean: tuple[float, float]) -> None:
        self.mean = np.array(mean)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(size=(n, 2)) + self.mean


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_compare_with_target_on_samples(shift: float) -> None:
    """Terminal samples of the target moved by δ: S_ε ≈ δ²/2 up to the sampling floor (two
    fresh target draws, reported beside it)."""
    scenario = types.SimpleNamespace(target=ShiftedGaussian((1.0, 0.0)),
                                     source=ShiftedGaussian((-2.0, 0.0)))
    x = scenario.target.sample(500, np.random.default_rng(7)) + np.array([shift, 0.0])
    result = Result(solver="neural", status="converged", scenario_text="", settings={},
                    samples={"terminal": x})
    table = compare_with_target(result, scenario)
    assert table["draws"] == DRAWS
    floor = table["sinkhorn_floor"]
    assert 0 < floor < 0.05
    assert abs(table["sinkhorn_to_target"] - shift**2 / 2) < 3 * floor
    assert table["sinkhorn_source_to_target"] == pytest.approx(4.5, rel=0.05)  # |δ|²/2, δ = 3


def test_compare_with_target_averages_independent_draws() -> None:
    """Each figure is (1/K) Σ_k of the figure on draw k, recomputed here from its definition on
    the documented streams: draw 0 = default_rng(seed) (the single draw of earlier versions,
    ``draws=1``), draw k = default_rng([seed, k]); the draws differ."""
    scenario = types.SimpleNamespace(target=ShiftedGaussian((1.0, 0.0)),
                                     source=ShiftedGaussian((-2.0, 0.0)))
    x = scenario.target.sample(300, np.random.default_rng(7)) + np.array([0.3, 0.0])
    result = Result(solver="neural", status="converged", scenario_text="", settings={},
                    samples={"terminal": x})
    per_draw = []
    for k in range(2):
        rng = np.random.default_rng([5, k] if k else 5)
        y, y2, x0 = (scenario.target.sample(300, rng), scenario.target.sample(300, rng),
                     scenario.source.sample(300, rng))
        per_draw.append([sinkhorn_divergence(u, y, blur=0.05, p=2) for u in (x, y2, x0)])
    keys = ("sinkhorn_to_target", "sinkhorn_floor", "sinkhorn_source_to_target")
    one = compare_with_target(result, scenario, seed=5, draws=1)
    two = compare_with_target(result, scenario, seed=5, draws=2)
    assert (one["draws"], two["draws"]) == (1, 2)
    for i, key in enumerate(keys):
        assert one[key] == pytest.approx(per_draw[0][i], rel=1e-9)
        assert two[key] == pytest.approx((per_draw[0][i] + per_draw[1][i]) / 2, rel=1e-9)
        assert abs(per_draw[0][i] - per_draw[1][i]) > 1e-6 * per_draw[0][i]
    with pytest.raises(CompareError, match="draws"):
        compare_with_target(result, scenario, draws=0)


def test_compare_with_target_needs_a_terminal_law() -> None:
    with pytest.raises(CompareError, match="neither terminal samples"):
        compare_with_target(make_result(1, samples=False), fake_scenario(1))
