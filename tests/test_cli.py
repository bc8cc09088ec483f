"""The command line shell: list, show, plot, compare on synthetic results; solve's exit statuses
with the solver replaced by a stub (the real end-to-end solves are tested elsewhere)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mfg.results import Result, read_result, write_result

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # cli.py lives at the repository root
    sys.path.insert(0, str(REPO))

import cli  # noqa: E402

QUICKSTART = REPO / "scenarios" / "quickstart.yaml"


def synthetic(shift: float = 0.0, n: int = 32) -> Result:
    """A 1-D result: rho = N(m(t), 0.5^2) with m = -1 + 2t + shift, U = x^2 t / 2."""
    t = np.linspace(0.0, 1.0, 4)
    x = np.linspace(-4.0, 4.0, n)
    rho = np.exp(-0.5 * ((x[None] - (-1 + 2 * t[:, None] + shift)) / 0.5) ** 2)
    rho /= rho.sum(axis=1, keepdims=True) * (x[1] - x[0])
    grid = xr.Dataset(
        {"rho": (("t", "x1"), rho), "U": (("t", "x1"), 0.5 * x[None] ** 2 * t[:, None])},
        coords={"t": t, "x1": x},
    )
    return Result(
        solver="grid",
        status="converged",
        scenario_text="name: synthetic\ndim: 1\n",
        settings={"n": [n]},
        grid=grid,
        history={"objective": np.array([3.0, 2.0, 1.5])},
        metrics={"objective": 1.5 + shift, "kinetic_energy": 1.0, "hj_residual": 1e-7},
        versions={"python": "3.12.0"},
        git_revision="feedbeef",
    )


@pytest.fixture
def two_results(tmp_path: Path) -> tuple[Path, Path]:
    a = write_result(synthetic(), tmp_path / "a.h5")
    b = write_result(synthetic(shift=0.2, n=48), tmp_path / "b.h5")
    return a, b


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0]


# ----------------------------------------------------------------------------------------------
# list


def test_list_shows_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted((REPO / "scenarios").glob("*.yaml"))
    if not files:
        pytest.skip("no scenarios yet")
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == len(files) + 1  # header + one line each
    for path in files:
        assert any(line.startswith(path.name) for line in lines), path.name


def test_list_line_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "demo.yaml").write_text(
        "# demo: a Gaussian to a mixture\nname: demo\ndim: 2\nsource: {kind: gaussian}\n"
        "target: {kind: mixture}\nterminal: {kind: f, f: kl}\nsolver: {kind: grid}\n"
    )
    rc, out, _ = run(capsys, "list", "--dir", str(tmp_path))
    assert rc == 0
    line = out.splitlines()[1].split()
    assert line[:7] == ["demo.yaml", "2", "gaussian", "->", "mixture", "f(kl)", "grid"]
    assert out.splitlines()[1].endswith("a Gaussian to a mixture")


# ----------------------------------------------------------------------------------------------
# show, plot, compare


def test_show(two_results: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "show", str(two_results[0]))
    assert rc == 0
    for text in ("converged", "feedbeef", "python=3.12.0", "t: 4, x1: 32", "history.objective",
                 "metrics.hj_residual", "synthetic"):  # fmt: skip
        assert text in out


def test_plot(two_results: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = two_results
    rc, out, _ = run(capsys, "plot", str(a))
    assert rc == 0 and "a.png" in out
    assert a.with_suffix(".png").stat().st_size > 1000
    other = a.parent / "figs" / "other.png"
    assert run(capsys, "plot", str(a), "-o", str(other))[0] == 0
    assert other.stat().st_size > 1000


def test_plot_nothing_to_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_result(Result("x", "done", "", {}), tmp_path / "empty.h5")
    rc, _, err = run(capsys, "plot", str(path))
    assert rc == 2
    assert_one_line_error(err, "empty.h5")


def test_compare_table(two_results: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_results
    rc, out, _ = run(capsys, "compare", str(a), str(b))
    assert rc == 0
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert float(rows["mean_err"]) == pytest.approx(0.2, abs=1e-3)
    assert float(rows["density_l1_max"]) > 0
    assert rows["b"].strip() == str(b)


def test_compare_json(two_results: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_results
    rc, out, _ = run(capsys, "compare", str(a), str(b), "--json")
    assert rc == 0
    table = json.loads(out)
    assert table["a.solver"] == "grid"
    assert table["objective_rel_diff"] == pytest.approx(0.2 / 1.7)


def test_compare_needs_one_reference(
    two_results: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_results
    assert run(capsys, "compare", str(a))[0] == 2
    for extra in ([str(b), "--analytic"], [str(b), "--target"], ["--analytic", "--target"]):
        rc, _, err = run(capsys, "compare", str(a), *extra)
        assert rc == 2
        assert_one_line_error(err)


def test_compare_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``compare A --target``: terminal samples of the quickstart's target moved by δ = (0.4, 0)
    against fresh target draws from A's stored scenario: S_ε ≈ |δ|²/2 = 0.08 up to the floor."""
    from mfg.scenario import parse_scenario

    text = QUICKSTART.read_text()
    y = parse_scenario(text).target.sample(800, np.random.default_rng(11))
    path = write_result(Result("neural", "converged", text, {},
                               samples={"terminal": y + np.array([0.4, 0.0])}), tmp_path / "a.h5")
    rc, out, _ = run(capsys, "compare", str(path), "--target", "--json")
    assert rc == 0
    table = json.loads(out)
    assert 0 < table["sinkhorn_floor"] < 0.02
    assert abs(table["sinkhorn_to_target"] - 0.08) < 3 * table["sinkhorn_floor"], table
    rc, out, _ = run(capsys, "compare", str(path), "--target", "--draws", "1", "--json")
    assert rc == 0 and json.loads(out)["draws"] == 1 and table["draws"] == 3
    for extra in (["--target", "--draws", "0"], [str(path), "--draws", "2"],
                  ["--analytic", "--draws", "2"]):
        rc, out, err = run(capsys, "compare", str(path), *extra)
        assert rc == 2 and out == ""
        assert_one_line_error(err, "--draws")


@pytest.mark.parametrize("command", ["show", "plot", "compare"])
def test_missing_result_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    missing = tmp_path / "missing.h5"
    argv = [command, str(missing)] + ([str(missing)] if command == "compare" else [])
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert_one_line_error(err, "missing.h5")
    assert list(tmp_path.iterdir()) == []


def test_not_a_result_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("hello\n")
    rc, _, err = run(capsys, "show", str(path))
    assert rc == 2
    assert_one_line_error(err, "notes.h5")


# ----------------------------------------------------------------------------------------------
# solve: exit statuses around a stub solver


@pytest.fixture
def quickstart() -> Path:
    if not QUICKSTART.is_file():
        pytest.skip("scenarios/quickstart.yaml not there yet")
    return QUICKSTART


def stub_solver(monkeypatch: pytest.MonkeyPatch, behaviour: object) -> list:
    """Replace solvers.solve: return a synthetic result, or raise ``behaviour``."""
    import solvers

    seen: list = []

    def solve(scenario: object) -> Result:
        seen.append(scenario)
        if isinstance(behaviour, BaseException):
            raise behaviour
        result = synthetic()
        result.versions, result.git_revision = {}, "unknown"
        return result

    monkeypatch.setattr(solvers, "solve", solve)
    return seen


def test_solve_writes_result(
    quickstart: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = stub_solver(monkeypatch, None)
    out = tmp_path / "sub" / "q.h5"
    rc, stdout, _ = run(
        capsys, "solve", str(quickstart), "--out", str(out), "--quiet", "--set", "T=2.0"
    )
    assert rc == 0
    assert seen[0].solver.progress is False and seen[0].T == 2.0
    assert "converged" in stdout and str(out) in stdout
    back = read_result(out)
    assert back.versions["python"]  # provenance filled in by the CLI
    assert [p.name for p in out.parent.iterdir()] == ["q.h5"]


@pytest.mark.parametrize(
    ("error", "rc", "words"),
    [
        (RuntimeError("boom"), 1, ("internal", "RuntimeError", "boom")),
        (KeyboardInterrupt(), 130, ()),
    ],
)
def test_solve_failures_write_nothing(
    quickstart: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    rc: int,
    words: tuple[str, ...],
) -> None:
    stub_solver(monkeypatch, error)
    monkeypatch.delenv("PROXFLOW_DEBUG", raising=False)
    out = tmp_path / "q.h5"
    got, _, err = run(capsys, "solve", str(quickstart), "--out", str(out))
    assert got == rc
    assert_one_line_error(err, *words)
    assert list(tmp_path.iterdir()) == []


def test_solve_debug_reraises(
    quickstart: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_solver(monkeypatch, RuntimeError("boom"))
    monkeypatch.setenv("PROXFLOW_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["solve", str(quickstart), "--out", str(tmp_path / "q.h5")])


def test_solve_bad_input(
    quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.h5"
    rc, _, err = run(capsys, "solve", str(quickstart), "--out", str(out), "--set", "solver.bogus=1")
    assert rc == 2
    assert_one_line_error(err, "solver.bogus")
    rc, _, err = run(capsys, "solve", str(tmp_path / "none.yaml"), "--out", str(out))
    assert rc == 2
    assert_one_line_error(err, "none.yaml")
    assert list(tmp_path.iterdir()) == []
