"""Issue 11, defects 2, 3, 5, 6 (reporting) and 7: where results are written, what is checked
before a solve, resuming a checkpoint of another run, stale temporary files, damaged result
files, and runs that did not converge. Each test fails on the code before the fix (the case it
reproduces is named in its docstring). Solves are replaced by a stub where the solver does not
matter; the resume tests train a tiny network for a few iterations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mfg.results import Result, read_result, write_result

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # cli.py lives at the repository root
    sys.path.insert(0, str(REPO))

import cli  # noqa: E402

QUICKSTART = (REPO / "scenarios" / "quickstart.yaml").read_text()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_error_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal" not in lines[0], err
    for word in words:
        assert word in lines[0], (word, err)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with the contents of files (None for folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def small_result(status: str = "converged") -> Result:
    return Result(solver="grid", status=status, scenario_text="name: s\ndim: 1\n", settings={},
                  samples={"terminal": np.zeros((4, 1))},
                  history={"objective": np.array([2.0, 1.0])},
                  metrics={"objective": 1.0, "hj_residual": 0.25, "iterations": 2.0})


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """solvers.solve replaced: counts calls, returns ``small_result(state["status"])``."""
    import solvers

    state: dict[str, object] = {"calls": 0, "status": "converged"}

    def solve(scenario: object) -> Result:
        state["calls"] = int(state["calls"]) + 1
        return small_result(str(state["status"]))

    monkeypatch.setattr(solvers, "solve", solve)
    monkeypatch.delenv("PROXFLOW_DEBUG", raising=False)
    return state


def dead_pid() -> int:
    """The pid of a process that has exited (a child started and reaped here)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ----------------------------------------------------------------------------------------------
# defect 2: writing where it should not


@pytest.mark.parametrize("name", ["../../escaped", "ABSOLUTE", "sub/escaped", "a\\b", "..",
                                  ".hidden", "-dash", "x" * 129, "a b", "é"])
def test_scenario_name_must_be_a_plain_file_stem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    stub: dict[str, object], name: str
) -> None:
    """Before: name ../../escaped wrote two folders above results/, an absolute name anywhere
    (here: inside tmp_path, whose tree must not change)."""
    if name == "ABSOLUTE":
        name = str(tmp_path / "abs" / "escaped")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    scenario = work / "s.yaml"
    scenario.write_text(QUICKSTART.replace("name: quickstart", f"name: {name!r}"))
    before = tree(tmp_path)
    rc, _, err = run(capsys, "solve", str(scenario), "--quiet")
    assert rc == 2
    one_error_line(err, "name: must be a plain file stem")
    assert stub["calls"] == 0 and tree(tmp_path) == before


def test_plain_names_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch,
                                  stub: dict[str, object]) -> None:
    monkeypatch.chdir(tmp_path)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(QUICKSTART.replace("name: quickstart", "name: run_1.v2-b+c"))
    assert run(capsys, "solve", str(scenario), "--quiet")[0] == 0
    assert (tmp_path / "results" / "run_1.v2-b+c.h5").is_file()


def samples_scenario(folder: Path) -> Path:
    with h5py.File(folder / "pts.h5", "w") as f:
        f["x"] = np.random.default_rng(0).normal(size=(50, 2))
    path = folder / "smp.yaml"
    path.write_text("name: smp\ndim: 2\nlambda: 1.0\n"
                    "source: {kind: gaussian, mean: [0, 0], std: 1.0}\n"
                    "target: {kind: samples, path: pts.h5, dataset: x}\n"
                    "terminal: {kind: sinkhorn}\n"
                    "solver: {kind: particle, field: sinkhorn, n: 50, steps: 2}\n")
    return path


def test_an_output_that_is_an_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub: dict[str, object]
) -> None:
    """Before: --out equal to the scenario file or to the samples file replaced it."""
    scenario = tmp_path / "q.yaml"
    scenario.write_text(QUICKSTART)
    smp = samples_scenario(tmp_path)
    before = tree(tmp_path)
    cases = [
        ([str(scenario), "--out", str(scenario)], "scenario file"),
        ([str(scenario), "--out", str(tmp_path / "." / "q.yaml")], "scenario file"),
        ([str(smp), "--out", str(tmp_path / "pts.h5")], "target samples file"),
        ([str(scenario), "--set", f"output={scenario}"], "scenario file"),
    ]
    for argv, what in cases:
        rc, _, err = run(capsys, "solve", *argv, "--quiet")
        assert rc == 2, argv
        one_error_line(err, f"is the {what} this run reads")
    assert stub["calls"] == 0 and tree(tmp_path) == before


def test_checkpoint_in_use_is_not_an_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub: dict[str, object]
) -> None:
    """A checkpoint being resumed cannot be the result; nor can the checkpoint overwrite the
    scenario (before: both accepted)."""
    scenario = tmp_path / "n.yaml"
    scenario.write_text(NEURAL)
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(b"a checkpoint")
    before = tree(tmp_path)
    rc, _, err = run(capsys, "solve", str(scenario), "--resume", "--out", str(ckpt),
                     "--set", f"solver.checkpoint={ckpt}")
    assert rc == 2
    one_error_line(err, "is the checkpoint resumed this run reads")
    rc, _, err = run(capsys, "solve", str(scenario), "--out", str(tmp_path / "r.h5"),
                     "--set", f"solver.checkpoint={scenario}", "--set", "solver.checkpoint_every=1")
    assert rc == 2
    one_error_line(err, "solver.checkpoint", "is the scenario file")
    assert stub["calls"] == 0 and tree(tmp_path) == before


def test_out_with_a_trailing_slash_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    stub: dict[str, object]
) -> None:
    """Before: --out newdir/ created newdir and wrote the file 'newdir' ... as a result."""
    monkeypatch.chdir(tmp_path)
    scenario = tmp_path / "q.yaml"
    scenario.write_text(QUICKSTART)
    rc, _, err = run(capsys, "solve", str(scenario), "--out", "newdir/", "--quiet")
    assert rc == 2
    one_error_line(err, "--out", "path separator")
    assert stub["calls"] == 0 and sorted(os.listdir(tmp_path)) == ["q.yaml"]


# ----------------------------------------------------------------------------------------------
# defect 3: checked too late


def test_unwritable_outputs_are_refused_before_solving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub: dict[str, object]
) -> None:
    """Before: a folder, a path under a regular file, or an unwritable place failed after the
    whole solve with exit 1 (internal)."""
    scenario = tmp_path / "q.yaml"
    scenario.write_text(QUICKSTART)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    cases = [(tmp_path / "adir", "is a folder"), (tmp_path / "afile" / "r.h5", "is not a folder"),
             (tmp_path / "afile" / "deeper" / "r.h5", "is not a folder")]
    if Path("/proc/self").is_dir():  # not writable even by root
        cases.append((Path("/proc/r.h5"), "cannot write"))
    before = tree(tmp_path)
    for out, why in cases:
        rc, _, err = run(capsys, "solve", str(scenario), "--out", str(out), "--quiet")
        assert rc == 2, out
        one_error_line(err, "--out", why)
    assert stub["calls"] == 0 and tree(tmp_path) == before


def test_new_output_folders_are_created_only_for_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub: dict[str, object]
) -> None:
    """The writability check creates and removes its folders: --check leaves nothing."""
    scenario = tmp_path / "q.yaml"
    scenario.write_text(QUICKSTART)
    out = tmp_path / "new" / "sub" / "r.h5"
    rc, stdout, _ = run(capsys, "solve", str(scenario), "--out", str(out), "--check")
    assert rc == 0 and str(out) in stdout
    assert stub["calls"] == 0 and not (tmp_path / "new").exists()
    assert run(capsys, "solve", str(scenario), "--out", str(out), "--quiet")[0] == 0
    assert out.is_file()


def test_plot_output_is_checked_before_plotting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: -o fig.xyz and -o under a regular file ended in exit 1 (internal)."""
    result = write_result(small_result(), tmp_path / "r.h5")
    odd = write_result(small_result(), tmp_path / "odd.png")  # a result with an image's name
    (tmp_path / "afile").write_text("x")
    before = tree(tmp_path)
    for out, why in [("fig.xyz", "matplotlib cannot write .xyz"),
                     ("afile/f.png", "is not a folder")]:
        rc, _, err = run(capsys, "plot", str(result), "-o", str(tmp_path / out))
        assert rc == 2, out
        one_error_line(err, "-o", why)
    rc, _, err = run(capsys, "plot", str(odd))  # default output: the same file
    assert rc == 2
    one_error_line(err, "output", "is the result file")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("where", ["yaml", "set"])
def test_an_integer_too_long_for_python_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub: dict[str, object], where: str
) -> None:
    """Before: a 5001-digit lambda gave exit 1 (ValueError from int())."""
    huge = "1" * 5001
    scenario = tmp_path / "q.yaml"
    text = QUICKSTART.replace("lambda: 1.0", f"lambda: {huge}") if where == "yaml" else QUICKSTART
    scenario.write_text(text)
    extra = ["--set", f"lambda={huge}"] if where == "set" else []
    rc, _, err = run(capsys, "solve", str(scenario), *extra, "--out", str(tmp_path / "r.h5"))
    assert rc == 2
    one_error_line(err, "integer with 5001 digits is too long")
    assert len(err) < 400 and stub["calls"] == 0


# ----------------------------------------------------------------------------------------------
# defect 5: resume accepts a different problem

NEURAL = """
name: tiny
dim: 2
lambda: 1.0
source: {kind: gaussian, mean: [0, 0], std: 1}
target: {kind: gaussian, mean: [1, 0], std: 0.5}
terminal: {kind: mmd, bandwidth: 1.0}
solver: {kind: neural, width: 4, depth: 1, batch_size: 16, nt: 1, method: euler, max_iter: 2,
         eval_samples: 16, n_trajectories: 2, grid_n: 4, grid_nt: 1, checkpoint_every: 1,
         progress: false}
seed: 1
"""


def test_resume_refuses_a_checkpoint_of_another_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a changed lambda, target, seed or lr resumed and mixed two problems (exit 0);
    max_iter below the checkpoint's iteration stored a result with more iterations than
    allowed; a changed width or a garbage checkpoint gave exit 1."""
    scenario = tmp_path / "n.yaml"
    scenario.write_text(NEURAL)
    out = tmp_path / "n.h5"
    base = ["solve", str(scenario), "--out", str(out), "--quiet"]
    assert run(capsys, *base)[0] == 0
    ckpt = Path(f"{out}.ckpt")
    saved = ckpt.read_bytes()
    result_before = out.read_bytes()
    for change, field in [("lambda=2.0", "lambda"), ("target.mean=[0.0, 0.0]", "target"),
                          ("seed=2", "seed"), ("solver.lr=0.5", "solver.lr"),
                          ("solver.width=5", "solver.width"), ("T=0.5", "T")]:
        rc, _, err = run(capsys, *base, "--resume", "--set", "solver.max_iter=4",
                         "--set", change)
        assert rc == 2, change
        one_error_line(err, "different run", f"differing: {field} (checkpoint")
    rc, _, err = run(capsys, *base, "--resume", "--set", "solver.max_iter=1")
    assert rc == 2
    one_error_line(err, "solver.max_iter: 1 is below the checkpoint's iteration 2")
    assert ckpt.read_bytes() == saved and out.read_bytes() == result_before
    # what only says how long to run and what to report may change
    rc, _, _ = run(capsys, *base, "--resume", "--set", "solver.max_iter=3",
                   "--set", "solver.eval_samples=20", "--set", "solver.grid_n=5")
    assert rc == 0 and read_result(out).metrics["iterations"] == 3
    ckpt.write_bytes(b"\x80\x02garbage")
    rc, _, err = run(capsys, *base, "--resume", "--set", "solver.max_iter=4")
    assert rc == 2
    one_error_line(err, "not a readable checkpoint")


def test_checkpoint_fingerprint_covers_the_problem_not_the_run_length() -> None:
    from mfg.scenario import parse_scenario
    from solvers.neural.fingerprint import fingerprint

    base = fingerprint(parse_scenario(NEURAL))
    same = fingerprint(parse_scenario(NEURAL, overrides=["solver.max_iter=9",
                                                         "solver.progress=true",
                                                         "solver.checkpoint=x.ckpt",
                                                         "output=elsewhere.h5", "name=other"]))
    assert same == base
    for change, key in [("terminal.bandwidth=2.0", "terminal"), ("solver.nt=3", "solver.nt"),
                        ("source.std=2.0", "source"), ("solver.dtype=float64", "solver.dtype")]:
        changed = fingerprint(parse_scenario(NEURAL, overrides=[change]))
        assert [k for k in base if base[k] != changed[k]] == [key], change


# ----------------------------------------------------------------------------------------------
# defect 6 (reporting): a run that did not converge says so


@pytest.mark.parametrize("status", ["max_iter", "diverged", "completed"])
def test_a_run_that_did_not_converge_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub: dict[str, object], status: str
) -> None:
    """Before: status max_iter/diverged was silent on stderr and plain in `show`."""
    scenario = tmp_path / "q.yaml"
    scenario.write_text(QUICKSTART)
    out = tmp_path / "r.h5"
    stub["status"] = status
    rc, stdout, err = run(capsys, "solve", str(scenario), "--out", str(out), "--quiet")
    assert rc == 0 and out.is_file()
    lines = err.strip().splitlines()
    assert lines == [f"warning: did not converge: status {status} after 2 iterations, "
                     "hj_residual 0.25"], err
    rc, stdout, _ = run(capsys, "show", str(out))
    assert rc == 0 and f"{status} (did not converge)" in stdout
    stub["status"] = "converged"
    rc, _, err = run(capsys, "solve", str(scenario), "--out", str(out), "--quiet")
    assert rc == 0 and err == ""
    assert "did not converge" not in run(capsys, "show", str(out))[1]


# ----------------------------------------------------------------------------------------------
# defect 7: stale temporary files, damaged result files


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """Before: a kill during the write left .NAME.h5.tmp-PID forever."""
    dead = dead_pid()
    stale = [tmp_path / f".r.h5.tmp-{dead}", tmp_path / f".other.h5.ckpt.tmp-{dead}"]
    live = tmp_path / f".r.h5.tmp-{os.getppid()}"  # a process that runs: kept
    unrelated = [tmp_path / "notes.tmp-1", tmp_path / f".r.h5.tmp-{dead}x"]
    for p in [*stale, live, *unrelated]:
        p.write_text("partial")
    write_result(small_result(), tmp_path / "r.h5")
    assert not any(p.exists() for p in stale)
    assert live.exists() and all(p.exists() for p in unrelated)
    assert sorted(os.listdir(tmp_path)) == sorted(["r.h5", live.name,
                                                   *(p.name for p in unrelated)])


def damaged_files(folder: Path) -> list[Path]:
    good = write_result(small_result(), folder / "good.h5")
    truncated = folder / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    layout = folder / "layout.h5"  # a dataset where a group belongs
    with h5py.File(layout, "w") as f:
        f.attrs["format_version"] = "1"
        f["samples"] = np.zeros(3)
    settings = folder / "settings.h5"  # attributes that are not JSON
    with h5py.File(settings, "w") as f:
        f.attrs["format_version"] = "1"
        f.attrs["settings"] = "{not json"
    partial = folder / f".run.h5.tmp-{dead_pid()}"  # what a kill mid-write leaves
    partial.write_bytes(good.read_bytes())
    return [truncated, layout, settings, partial]


@pytest.mark.parametrize("command", ["show", "plot", "compare"])
def test_damaged_result_files_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    command: str
) -> None:
    """Before: a dataset where a group belongs or settings that are not JSON gave exit 1; the
    temporary file of an interrupted write was shown as a result."""
    monkeypatch.delenv("PROXFLOW_DEBUG", raising=False)
    for path in damaged_files(tmp_path):
        argv = [command, str(path)] + ([str(tmp_path / "good.h5")] if command == "compare"
                                       else [])
        rc, out, err = run(capsys, *argv)
        assert rc == 2 and out == "", (path.name, err)
        one_error_line(err, path.name)
