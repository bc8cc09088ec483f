"""`cli.py study manifold` and its measures (mfg/manifold.py) against exact values.

Truths used: an embedded 2-D sample lies on the plane (distance 0); a sample moved by known
offsets along normal directions is at exactly those distances; the debiased Sinkhorn divergence
with cost |x − y|²/2 between a measure and its translate by δ is exactly |δ|²/2 (the cross term
of the cost is separable and integrates to −⟨E x − E y, δ⟩ = 0, the debiasing terms are equal),
and a translation off the plane leaves the plane coordinates unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mfg.datasets import EMBEDDINGS, ToyData, embed, pinwheel
from mfg.manifold import (
    DRAWS,
    EXACT_KEYS,
    FLOOR_KEYS,
    SAMPLE_KEYS,
    distance_stats,
    exact_metrics,
    floor_metrics,
    generated_draws,
    mean_over_draws,
    plane_basis,
    plane_coordinates,
    plane_distance,
    sample_metrics,
    source_draw,
    summarize,
    target_draws,
)
from mfg.metrics import SINKHORN_SCALING
from mfg.results import (
    Result,
    ResultFileError,
    is_table,
    read_result,
    read_table,
    write_result,
    write_table,
)
from mfg.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402

PINWHEEL = str(ROOT / "scenarios" / "neural_pinwheel_2d.yaml")
#: a neural run of a second or two: 10 iterations, small networks, 300 evaluation samples
TINY = ["--set", "solver.max_iter=10", "--set", "solver.eval_samples=300",
        "--set", "solver.width=16", "--set", "solver.critic_width=16",
        "--set", "solver.batch_size=64", "--set", "solver.critic_steps=1",
        "--set", "solver.grid_n=16", "--set", "solver.checkpoint_every=0"]


def normal_directions(q: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors orthogonal to range(q) (d, 2), random."""
    v = rng.standard_normal((n, q.shape[0]))
    v -= (v @ q) @ q.T
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# the measures


@pytest.mark.parametrize("dim", [2, 3, 7, 12])
@pytest.mark.parametrize("how", EMBEDDINGS)
def test_plane_basis_is_orthonormal_and_is_the_embedding(dim, how):
    q = plane_basis(dim, how, seed=5)
    assert q.shape == (dim, 2)
    np.testing.assert_allclose(q.T @ q, np.eye(2), atol=1e-13)
    z = np.random.default_rng(0).standard_normal((50, 2))
    np.testing.assert_allclose(embed(z, dim, how, seed=5), z @ q.T, atol=1e-13)
    np.testing.assert_allclose(plane_coordinates(embed(z, dim, how, seed=5), q), z, atol=1e-12)
    if how == "pad":
        np.testing.assert_array_equal(q, np.eye(dim, 2))


def test_plane_basis_refuses_what_has_no_plane():
    with pytest.raises(ValueError, match="embedding"):
        plane_basis(5, "rotate")
    with pytest.raises(ValueError, match="dim"):
        plane_basis(1, "pad")


@pytest.mark.parametrize("how", EMBEDDINGS)
def test_distance_to_the_plane_is_exact(how):
    rng = np.random.default_rng(1)
    q = plane_basis(7, how, seed=2)
    on_plane = embed(pinwheel(101, rng), 7, how, seed=2)
    assert np.max(plane_distance(on_plane, q)) < 1e-12
    # offsets 0, 1, ..., 100 along random normal directions: mean 50, RMS √3350
    # (Σ i² / 101 = 100·201/6), 99th percentile 99 (linear interpolation at rank 99 of 0..100)
    r = np.arange(101.0)
    moved = on_plane + r[:, None] * normal_directions(q, 101, rng)
    np.testing.assert_allclose(plane_distance(moved, q), r, atol=1e-11)
    stats = distance_stats(moved, q)
    assert stats["plane_dist_mean"] == pytest.approx(50.0, rel=1e-12)
    assert stats["plane_dist_rms"] == pytest.approx(np.sqrt(3350.0), rel=1e-12)
    assert stats["plane_dist_p99"] == pytest.approx(99.0, rel=1e-12)
    # off-plane offsets do not move the plane coordinates
    np.testing.assert_allclose(plane_coordinates(moved, q), plane_coordinates(on_plane, q),
                               atol=1e-11)


@pytest.mark.parametrize("how", EMBEDDINGS)
def test_sinkhorn_metrics_against_translations(how):
    rng = np.random.default_rng(3)
    q = plane_basis(5, how, seed=1)
    y = embed(pinwheel(300, rng), 5, how, seed=1)
    same = sample_metrics(y, y, q)
    assert set(same) == set(SAMPLE_KEYS)
    assert abs(same["sinkhorn"]) < 1e-9 and abs(same["sinkhorn_plane"]) < 1e-9
    assert same["plane_dist_p99"] < 1e-12
    assert same["precision"] == same["recall"] == 1.0  # each point is in its own ball
    # in-plane translation by δ: S = |δ|²/2 in full dimension and on the plane
    delta = np.array([0.3, -0.2])
    shifted = sample_metrics(y + delta @ q.T, y, q)
    assert shifted["sinkhorn"] == pytest.approx(0.065, rel=1e-4)
    assert shifted["sinkhorn_plane"] == pytest.approx(0.065, rel=1e-4)
    # translation by 0.5 along one normal: full S = 0.125, plane S unchanged (0), distance 0.5
    normal = normal_directions(q, 1, rng)[0]
    off = sample_metrics(y + 0.5 * normal, y, q)
    assert off["sinkhorn"] == pytest.approx(0.125, rel=1e-4)
    assert abs(off["sinkhorn_plane"]) < 1e-9
    assert off["plane_dist_mean"] == pytest.approx(0.5, rel=1e-12)
    assert off["plane_dist_p99"] == pytest.approx(0.5, rel=1e-12)


def test_non_finite_samples_give_nan_metrics():
    q = plane_basis(3, "pad")
    x = np.zeros((10, 3))
    x[4, 1] = np.inf
    assert all(np.isnan(v) for v in sample_metrics(x, np.zeros((10, 3)), q).values())


def test_floor_and_target_draws():
    target = ToyData("pinwheel", 4, "isometry", 3)
    y1, y2 = target_draws(target, 300, seed=2)
    assert y1.shape == y2.shape == (300, 4)
    again = target_draws(target, 300, seed=2)
    np.testing.assert_array_equal(again[0], y1)  # reproducible ...
    assert not np.allclose(y1, y2)  # ... independent of each other ...
    training = target.sample(300, np.random.default_rng(2))
    assert not np.allclose(y1, training)  # ... and of the training stream default_rng(seed)
    q = plane_basis(4, "isometry", 3)
    floors = floor_metrics(y1, y2, q)
    assert set(floors) == set(FLOOR_KEYS)
    # the data lies in the plane, so projecting is an isometry on it: equal floors, up to
    # geomloss's ε-scaling, whose schedule starts from the bounding box's diagonal (not
    # rotation invariant: measured 3e-5 relative here)
    assert floors["sinkhorn_floor"] == pytest.approx(floors["sinkhorn_plane_floor"], rel=1e-3)
    assert 0 < floors["sinkhorn_floor"] < 0.5
    assert 0.8 < floors["precision_floor"] < 1 and 0.8 < floors["recall_floor"] < 1


def test_summarize_mean_min_max_over_finite_runs():
    rows = [{"method": "a", "dim": 2, "s": 1.0}, {"method": "a", "dim": 2, "s": 3.0},
            {"method": "a", "dim": 2, "s": float("nan")}, {"method": "b", "dim": 2, "s": 5.0}]
    out = summarize(rows, ["s"], by=("method", "dim"))
    assert out[0] == {"method": "a", "dim": 2, "n": 3, "n_finite": 2, "s": (2.0, 1.0, 3.0)}
    assert out[1]["s"] == (5.0, 5.0, 5.0) and out[1]["n_finite"] == 1


def test_table_round_trip(tmp_path):
    path = write_table({"name": ["x", "y"], "dim": [2, 7], "s": [0.5, float("nan")]},
                       {"command": "cli.py study"}, tmp_path / "t.h5")
    columns, attrs = read_table(path)
    assert list(columns) == ["name", "dim", "s"]  # the order written
    assert columns["name"] == ["x", "y"] and list(columns["dim"]) == [2, 7]
    assert columns["s"][0] == 0.5 and np.isnan(columns["s"][1])
    assert attrs["command"] == "cli.py study"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.h5"]


def test_a_table_is_shown_and_refused_as_a_result(tmp_path, capsys):
    """``show`` prints a study's table (provenance, then a line per column, a value per row);
    every command that reads a result refuses it with one line naming the file (exit 2), where
    it was read as an empty result before."""
    path = write_table({"name": ["x", "y"], "s": [0.5, float("nan")]},
                       {"study": "manifold", "command": "cli.py study",
                        "versions": json.dumps({"numpy": "2"})}, tmp_path / "t.h5")
    assert is_table(path)
    run = write_result(Result(solver="neural", status="converged", scenario_text="name: r\n",
                              settings={}), tmp_path / "r.h5")
    assert not is_table(run) and not is_table(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not HDF5")
    assert not is_table(tmp_path / "text.h5")
    with pytest.raises(ResultFileError, match="t.h5: a table of study manifold, not a result"):
        read_result(path)
    assert cli.main(["show", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["study", "manifold"] and lines[3].split() == ["rows", "2"]
    assert ["versions", "numpy=2"] in [line.split() for line in lines]
    assert lines[-2:] == [line for line in lines if line.startswith("table.")]
    assert lines[-2].split() == ["table.name", "x", "y"]
    assert lines[-1].split() == ["table.s", "0.5", "nan"]
    for argv in (["compare", str(path), "--target"], ["plot", str(path)],
                 ["study", "digits", str(path)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "a table of study manifold, not a result" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5", "t.h5", "text.h5"]


# ---------------------------------------------------------------------------------------------
# the command


def study(tmp_path: Path, *extra: str, out: str = "m.h5") -> int:
    return cli.main(["study", "manifold", PINWHEEL, "--dims", "2,3", "--seeds", "1", *TINY,
                     *extra, "-o", str(tmp_path / out)])


def test_study_end_to_end_then_resume(tmp_path, capsys, monkeypatch):
    assert study(tmp_path) == 0
    first = capsys.readouterr()
    columns, attrs = read_table(tmp_path / "m.h5")
    # d = 2 once ("any"), d = 3 per embedding; the scenario's lipschitz_f and the baseline
    assert list(zip(columns["dim"], columns["embedding"], columns["method"], strict=True)) == [
        (2, "any", "lipschitz_f"), (2, "any", "likelihood"),
        (3, "pad", "lipschitz_f"), (3, "pad", "likelihood"),
        (3, "isometry", "lipschitz_f"), (3, "isometry", "likelihood")]
    for key in ("name", "seed", "status", *SAMPLE_KEYS, *FLOOR_KEYS, "n_samples",
                "wall_time_s", "kinetic_energy", "hj_residual", "terminal_residual"):
        assert key in columns, key
    assert list(columns["n_samples"]) == [300] * 6
    assert "neural_pinwheel_2d" in attrs["scenario"] and "--dims 2,3" in attrs["command"]
    assert attrs["git_revision"] and "numpy" in attrs["versions"]
    assert (tmp_path / "m.png").stat().st_size > 10_000
    runs = sorted(p.name for p in (tmp_path / "m_runs").iterdir() if p.suffix != ".json")
    assert runs == sorted(f"{n}.h5" for n in columns["name"])  # no checkpoint, no temporary
    # the measures' cache, per target draw: one per run, one per floor (dimension, embedding,
    # seed, size)
    cached = sorted(p.name for p in (tmp_path / "m_runs").glob("*.json"))
    assert len(cached) == DRAWS * (6 + 3 + 3)  # and one per exact answer, as the floors
    assert all(f"{n}.metrics.json" in cached for n in columns["name"])
    assert list(columns["draws"]) == [DRAWS] * 6 and int(attrs["draws"]) == DRAWS
    # the table's figures are the measures of the stored samples, each Sinkhorn figure and its
    # floor the mean over the DRAWS independent target draws
    i = columns["name"].index("neural_pinwheel_2d_d3_isometry_s0_lipschitz_f")
    res = read_result(tmp_path / "m_runs" / f"{columns['name'][i]}.h5")
    q = plane_basis(3, "isometry", 0)
    target = parse_scenario(res.scenario_text).target
    pairs = [target_draws(target, 300, seed=0, draw=k) for k in range(DRAWS)]
    # each draw reads a fresh block of 300 generated samples: the study asked for DRAWS × 300
    x = res.samples["terminal"]
    assert x.shape == (DRAWS * 300, 3) and "eval_samples: 900" in res.scenario_text
    blocks = [x[300 * k:300 * (k + 1)] for k in range(DRAWS)]
    by_draw = [sample_metrics(b, y1, q) for b, (y1, _) in zip(blocks, pairs, strict=True)]
    floors = [floor_metrics(y1, y2, q) for y1, y2 in pairs]
    for key in ("sinkhorn", "sinkhorn_plane"):
        assert columns[key][i] == pytest.approx(np.mean([m[key] for m in by_draw]), rel=1e-9)
    for key in FLOOR_KEYS:
        assert columns[key][i] == pytest.approx(np.mean([m[key] for m in floors]), rel=1e-9)
    for key in ("sinkhorn", "sinkhorn_plane"):  # each run read against its own floor
        np.testing.assert_allclose(columns[f"{key}_over_floor"],
                                   np.divide(columns[key], columns[f"{key}_floor"]), rtol=1e-12)
    # the posed problem's exact answer (the scenario's lipschitz_f with f = kl, τ = T/λ = 20) on
    # the same draws from source draws of its own; the likelihood baseline solves another problem
    sc = parse_scenario(res.scenario_text)
    exact = [exact_metrics(source_draw(sc.source, 300, 0, k), y1, y2, sc.T / sc.lam,
                           sc.terminal.L) for k, (y1, y2) in enumerate(pairs)]
    for key in EXACT_KEYS:
        assert columns[key][i] == pytest.approx(np.mean([m[key] for m in exact]), rel=1e-9)
    assert columns["sinkhorn_over_exact"][i] == pytest.approx(
        columns["sinkhorn"][i] / columns["sinkhorn_exact"][i], rel=1e-12)
    ours = np.array(columns["method"]) == "lipschitz_f"
    assert np.all(np.isfinite(columns["sinkhorn_exact"][ours]))
    assert np.all(np.isnan(columns["sinkhorn_exact"][~ours]))
    assert columns["plane_dist_p99"][i] == pytest.approx(
        distance_stats(blocks[0], q)["plane_dist_p99"], rel=1e-12)
    assert columns["wall_time_s"][i] == pytest.approx(res.wall_time_s)
    assert columns["plane_dist_mean"][0] < 1e-12  # d = 2: on the plane by construction
    # the target draws are the same 2-D points embedded by the run's own isometry, so the
    # floor on the plane does not depend on d or the embedding (geomloss's ε-scaling: 1e-3)
    np.testing.assert_allclose(columns["sinkhorn_plane_floor"],
                               columns["sinkhorn_plane_floor"][0], rtol=1e-3)
    np.testing.assert_allclose(columns["sinkhorn_floor"], columns["sinkhorn_plane_floor"],
                               rtol=1e-3)
    assert first.err.count("solved") == 6 and "run 6/6" in first.err
    assert "sinkhorn on plane" in first.out and "sinkhorn/floor" in first.out
    assert "sinkhorn/exact" in first.out
    # resume: every run file holds the same scenario, so nothing is solved again, and every
    # measure of an unchanged run file against the same draws is read back, not recomputed
    import mfg.manifold

    def no_sinkhorn(*args, **kwargs):
        raise AssertionError("a cached Sinkhorn divergence was computed again")

    monkeypatch.setattr(mfg.manifold, "_sinkhorn", no_sinkhorn)
    assert study(tmp_path) == 0
    second = capsys.readouterr()
    assert second.err.count("reused") == 6 and "solved" not in second.err
    again, _ = read_table(tmp_path / "m.h5")
    for key in (*SAMPLE_KEYS, *FLOOR_KEYS):
        np.testing.assert_array_equal(again[key], columns[key])
    # a run file that changed is measured again
    monkeypatch.undo()
    run_file = tmp_path / "m_runs" / f"{columns['name'][0]}.h5"
    res = read_result(run_file)
    res.samples["terminal"] = res.samples["terminal"] + 1.0
    write_result(res, run_file)
    assert study(tmp_path) == 0
    third, _ = read_table(tmp_path / "m.h5")
    assert third["sinkhorn"][0] > columns["sinkhorn"][0] + 0.4  # shifted by (1, 1): +|δ|²/2 = 1
    np.testing.assert_array_equal(third["sinkhorn"][1:], columns["sinkhorn"][1:])


#: checkpoints, which the study evaluates again from when only eval_samples changes
CHECKPOINTS = ["--set", "solver.checkpoint_every=5"]


def test_more_draws_evaluate_the_runs_again_and_reuse_the_floors(tmp_path, capsys, monkeypatch):
    """--draws 1, then --draws 2 on the same runs: each draw needs generated samples of its own,
    so each run is evaluated again on twice the samples from its final checkpoint, without
    training (its first samples, history and wall time are the first study's), and measured on
    both draws, while the floors and exact answers of draw 0 are read back (4 runs: d = 2 one
    Sinkhorn per draw, d = 3 two, full and on the plane; the floors of d = 2 one, of d = 3 one,
    its plane floor being d = 2's; the exact answers of d = 2 and d = 3). The figures are the
    means of the two draws', each on its own block of generated samples."""
    import mfg.manifold
    from solvers.neural.training import Trainer

    assert study(tmp_path, "--embedding", "pad", "--draws", "1", *CHECKPOINTS) == 0
    one, _ = read_table(tmp_path / "m.h5")
    before = {n: read_result(tmp_path / "m_runs" / f"{n}.h5") for n in one["name"]}
    capsys.readouterr()
    calls, steps = [], []
    real = mfg.manifold._sinkhorn

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    real_step = Trainer.step
    monkeypatch.setattr(mfg.manifold, "_sinkhorn", counted)
    monkeypatch.setattr(Trainer, "step", lambda self: steps.append(1) or real_step(self))
    assert study(tmp_path, "--embedding", "pad", "--draws", "2", *CHECKPOINTS) == 0
    assert capsys.readouterr().err.count("evaluated again on 600 samples") == 4 and not steps
    assert len(calls) == 2 * (2 * 1 + 2 * 2) + 1 + 1 + 2
    two, _ = read_table(tmp_path / "m.h5")
    assert list(one["draws"]) == [1] * 4 and list(two["draws"]) == [2] * 4
    assert list(two["n_samples"]) == [300] * 4
    monkeypatch.undo()
    for i, name in enumerate(two["name"]):
        res = read_result(tmp_path / "m_runs" / f"{name}.h5")
        sc = parse_scenario(res.scenario_text)
        x = res.samples["terminal"]
        assert len(x) == 600 and sc.solver.eval_samples == 600
        # the same trained model: the evaluation's streams are its own, so its first samples
        # are the first study's
        np.testing.assert_array_equal(x[:300], before[name].samples["terminal"])
        np.testing.assert_array_equal(res.history["loss"], before[name].history["loss"])
        assert res.wall_time_s == before[name].wall_time_s == two["wall_time_s"][i]
        q = plane_basis(sc.dim, "pad", 0)
        figures = [sample_metrics(x[300 * k:300 * (k + 1)], target_draws(sc.target, 300, 0, k)[0],
                                  q)["sinkhorn"] for k in range(2)]
        assert two["sinkhorn"][i] == pytest.approx(np.mean(figures), rel=1e-9)
        floors = [floor_metrics(*target_draws(sc.target, 300, 0, k), q)["sinkhorn_floor"]
                  for k in range(2)]
        assert two["sinkhorn_floor"][i] == pytest.approx(np.mean(floors), rel=1e-9)
        assert one["sinkhorn_floor"][i] == pytest.approx(floors[0], rel=1e-9)


@pytest.mark.parametrize("other", ["solver.max_iter=5", "solver.lr=1e-3"])
def test_a_checkpoint_not_of_the_finished_run_is_not_evaluated_again(tmp_path, capsys, other):
    """A run's checkpoint replaced by one of the same run stopped earlier (the learning-rate
    schedule depends on max_iter: it must not be continued) or of another training (the
    fingerprint differs): raising --draws solves the run afresh, to the same model."""
    tiny = ["--dims", "2", "--baselines", "none", *CHECKPOINTS]
    assert study(tmp_path, *tiny, "--draws", "1") == 0
    assert study(tmp_path, *tiny, "--draws", "1", "--set", other, out="other.h5") == 0
    name = "neural_pinwheel_2d_d2_any_s0_lipschitz_f"
    before = read_result(tmp_path / "m_runs" / f"{name}.h5")
    ckpt = tmp_path / "m_runs" / f"{name}.h5.ckpt"
    ckpt.write_bytes((tmp_path / "other_runs" / f"{name}.h5.ckpt").read_bytes())
    capsys.readouterr()
    assert study(tmp_path, *tiny, "--draws", "2") == 0
    assert "solved (replacing a run of another" in capsys.readouterr().err
    after = read_result(tmp_path / "m_runs" / f"{name}.h5")
    np.testing.assert_array_equal(after.samples["terminal"][:300], before.samples["terminal"])
    assert len(after.history["loss"]) == 10


def test_an_interrupted_study_resumes_its_run_from_the_checkpoint(tmp_path, capsys,
                                                                  monkeypatch):
    """A study stopped at iteration 7 of 10 (checkpoints every 5) and run again goes on from
    iteration 5, training 5 steps, not 10, to the model of an uninterrupted study (bit for bit
    on CPU): the same samples and loss history."""
    from solvers.neural.training import Trainer

    tiny = ["--dims", "2", "--baselines", "none", "--draws", "1", *CHECKPOINTS]
    assert study(tmp_path, *tiny, out="whole.h5") == 0
    real_step = Trainer.step

    def stop_at_7(self):
        if self.iteration == 7:
            raise KeyboardInterrupt
        real_step(self)

    monkeypatch.setattr(Trainer, "step", stop_at_7)
    assert study(tmp_path, *tiny) == 130
    name = "neural_pinwheel_2d_d2_any_s0_lipschitz_f"
    assert not (tmp_path / "m_runs" / f"{name}.h5").exists()
    steps: list[int] = []
    monkeypatch.setattr(Trainer, "step", lambda self: steps.append(1) or real_step(self))
    capsys.readouterr()
    assert study(tmp_path, *tiny) == 0
    assert "resumed from its checkpoint at iteration 5 of 10" in capsys.readouterr().err
    assert len(steps) == 5
    whole = read_result(tmp_path / "whole_runs" / f"{name}.h5")
    resumed = read_result(tmp_path / "m_runs" / f"{name}.h5")
    np.testing.assert_array_equal(resumed.samples["terminal"], whole.samples["terminal"])
    np.testing.assert_array_equal(resumed.history["loss"], whole.history["loss"])
    # and a study run once more reuses it
    assert study(tmp_path, *tiny) == 0
    assert "reused" in capsys.readouterr().err and len(steps) == 5


def test_another_sinkhorn_scaling_measures_again(tmp_path, monkeypatch):
    """--sinkhorn-scaling 0.99 on runs measured at the default: every Sinkhorn figure and floor is
    computed again at 0.99 (none is read from the 0.9 cache), equals mfg.manifold's measures at
    that scaling, and the table records the scaling and the option; the cache keeps both
    scalings, so reading either again computes nothing."""
    import mfg.manifold

    opts = ("--embedding", "pad", "--draws", "1", "--baselines", "none")
    assert study(tmp_path, *opts) == 0
    default, attrs = read_table(tmp_path / "m.h5")
    assert float(attrs["sinkhorn_scaling"]) == SINKHORN_SCALING
    calls = []
    real = mfg.manifold._sinkhorn

    def counted(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(mfg.manifold, "_sinkhorn", counted)
    assert study(tmp_path, *opts, "--sinkhorn-scaling", "0.99") == 0
    # d = 2: the run, its floor and exact answer; d = 3 (pad): the run and its floor, full and on
    # the plane, the plane floor being d = 2's, and its exact answer
    assert calls == [0.99] * (3 + 4)
    finer, attrs = read_table(tmp_path / "m.h5")
    assert float(attrs["sinkhorn_scaling"]) == 0.99
    assert "--sinkhorn-scaling 0.99" in attrs["command"]
    i = finer["name"].index("neural_pinwheel_2d_d3_pad_s0_lipschitz_f")
    res = read_result(tmp_path / "m_runs" / f"{finer['name'][i]}.h5")
    q = plane_basis(3, "pad", 0)
    y1, y2 = target_draws(parse_scenario(res.scenario_text).target, 300, seed=0)
    assert finer["sinkhorn"][i] == pytest.approx(
        sample_metrics(res.samples["terminal"], y1, q, scaling=0.99)["sinkhorn"], rel=1e-9)
    assert finer["sinkhorn_floor"][i] == pytest.approx(
        floor_metrics(y1, y2, q, scaling=0.99)["sinkhorn_floor"], rel=1e-9)
    assert all(f != d for f, d in zip(finer["sinkhorn"], default["sinkhorn"], strict=True))
    np.testing.assert_array_equal(finer["plane_dist_mean"], default["plane_dist_mean"])
    # back at the default scaling: the cache kept the first reading beside the second, so
    # nothing is computed and the table is the first one's; and 0.99 again reads its own
    calls.clear()
    assert study(tmp_path, *opts) == 0
    again, _ = read_table(tmp_path / "m.h5")
    assert calls == []
    for key in ("sinkhorn", "sinkhorn_floor", "sinkhorn_plane", "sinkhorn_exact"):
        np.testing.assert_array_equal(again[key], default[key])
    assert study(tmp_path, *opts, "--sinkhorn-scaling", "0.99") == 0
    assert calls == []
    np.testing.assert_array_equal(read_table(tmp_path / "m.h5")[0]["sinkhorn"],
                                  finer["sinkhorn"])


def test_measure_cache_keeps_each_scaling_and_drops_stale_entries(tmp_path):
    """cli.cached_metrics: a second ε-scaling of the same stamp is stored beside the first (each
    read back without computing); another stamp replaces both; a file of the earlier
    single-entry format is read."""
    path, computed = tmp_path / "m.json", []

    def measure(value):
        def compute():
            computed.append(value)
            return {"sinkhorn": value}
        return compute

    def cached(stamp, value, scaling):
        return cli.cached_metrics(path, stamp, measure(value), scaling)["sinkhorn"]

    a, b = {"result": "a"}, {"result": "b"}
    assert cached(a, 1.0, 0.9) == 1.0 and cached(a, 2.0, 0.99) == 2.0
    assert cached(a, -1.0, 0.9) == 1.0 and cached(a, -1.0, 0.99) == 2.0
    assert computed == [1.0, 2.0]
    assert cached(b, 3.0, 0.99) == 3.0  # a new run file: the entries of the old one are stale
    assert len(json.loads(path.read_text())["entries"]) == 1
    assert cached(a, 4.0, 0.9) == 4.0 and computed == [1.0, 2.0, 3.0, 4.0]
    old = json.loads(path.read_text())["entries"][0]
    path.write_text(json.dumps(old))  # the format of earlier versions: one entry
    assert cached(a, -1.0, 0.9) == 4.0 and len(computed) == 4


def test_no_exact_answer_beyond_its_sample_cap(tmp_path, capsys, monkeypatch):
    """Draws larger than EXACT_MAX_SAMPLES get no exact answer (an n × n EMD): NaN, and stderr
    says why."""
    import mfg.manifold

    monkeypatch.setattr(mfg.manifold, "EXACT_MAX_SAMPLES", 299)  # the study's TINY runs: 300
    assert cli.main(["study", "manifold", PINWHEEL, "--dims", "2", "--seeds", "1", *TINY,
                     "--draws", "1", "--baselines", "none", "-o", str(tmp_path / "m.h5")]) == 0
    columns, _ = read_table(tmp_path / "m.h5")
    assert np.isnan(columns["sinkhorn_exact"][0]) and np.isfinite(columns["sinkhorn"][0])
    assert "no exact answer for 300 samples" in capsys.readouterr().err
    assert not list((tmp_path / "m_runs").glob("exact_*.json"))


def test_an_uncertified_exact_answer_is_nan_and_said_and_not_reused(tmp_path, capsys,
                                                                   monkeypatch):
    """A tolerance below round-off (the certified ℓ1 distance cannot reach 1e-12): the exact
    figure is NaN and stderr says why; the cache is stamped with the tolerance, so the study at
    the default one computes it again, finite."""
    import mfg.manifold

    args = ["study", "manifold", PINWHEEL, "--dims", "2", "--seeds", "1", *TINY, "--draws", "1",
            "--baselines", "none", "-o", str(tmp_path / "m.h5")]
    monkeypatch.setattr(mfg.manifold, "EXACT_TOL", 1e-12)
    assert cli.main(args) == 0
    assert np.isnan(read_table(tmp_path / "m.h5")[0]["sinkhorn_exact"][0])
    err = capsys.readouterr().err
    assert "no exact answer on draw 0: its weights are not certified within 1e-12" in err
    monkeypatch.undo()
    assert cli.main(args) == 0
    assert np.isfinite(read_table(tmp_path / "m.h5")[0]["sinkhorn_exact"][0])
    assert "no exact answer" not in capsys.readouterr().err


def test_target_draws_are_reproducible_independent_streams():
    """Draw 0 is the earlier single draw (streams [seed, 7] and [seed, 8]); draw k >= 1 comes
    from [seed, 7, k] and [seed, 8, k]."""
    target = ToyData("moons", 2, "pad", 0)
    y1, y2 = target_draws(target, 200, seed=4)
    np.testing.assert_array_equal(y1, target.sample(200, np.random.default_rng([4, 7])))
    np.testing.assert_array_equal(y2, target.sample(200, np.random.default_rng([4, 8])))
    z1, z2 = target_draws(target, 200, seed=4, draw=1)
    np.testing.assert_array_equal(z1, target.sample(200, np.random.default_rng([4, 7, 1])))
    assert not np.allclose(z1, y1) and not np.allclose(z1, z2)
    np.testing.assert_array_equal(target_draws(target, 200, seed=4, draw=1)[0], z1)
    with pytest.raises(ValueError, match="draw"):
        target_draws(target, 200, seed=4, draw=-1)


def test_mean_over_draws():
    draws = [{"a": 1.0, "b": 2.0, "c": 5.0}, {"a": 3.0, "b": float("nan"), "c": 5.0}]
    assert mean_over_draws(draws) == pytest.approx({"a": 2.0, "b": float("nan"), "c": 5.0},
                                                   nan_ok=True)
    assert mean_over_draws(draws, ["a"]) == {"a": 2.0}
    with pytest.raises(ValueError, match="no draws"):
        mean_over_draws([])


def test_generated_draws_are_disjoint_blocks():
    x = np.arange(14.0).reshape(7, 2)
    blocks = generated_draws(x, 3, 2)  # the seventh point is left over
    assert [b.tolist() for b in blocks] == [[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[8, 9], [10, 11]]]
    assert all(b is x for b in generated_draws(x, 2, None))  # a sample the study did not size
    with pytest.raises(ValueError, match="7 generated samples for 3 draws of 3"):
        generated_draws(x, 3, 3)


def test_a_diverged_run_is_recorded_and_the_study_goes_on(tmp_path, capsys, monkeypatch):
    import solvers
    from solvers.neural.training import NeuralTrainingError

    real = solvers.solve

    def fake(sc):
        if sc.terminal.kind == "likelihood" and sc.dim == 3:
            raise NeuralTrainingError("non-finite loss at iteration 3")
        return real(sc)

    monkeypatch.setattr(solvers, "solve", fake)
    assert study(tmp_path, "--embedding", "pad") == 0
    err = capsys.readouterr().err
    assert "diverged (non-finite loss at iteration 3)" in err
    columns, _ = read_table(tmp_path / "m.h5")
    assert list(columns["status"]) == ["max_iter", "max_iter", "max_iter", "diverged"]
    assert np.isnan(columns["sinkhorn"][3]) and np.isnan(columns["hj_residual"][3])
    assert np.isfinite(columns["sinkhorn_floor"][3])
    assert read_result(tmp_path / "m_runs" / f"{columns['name'][3]}.h5").status == "diverged"
    monkeypatch.setattr(solvers, "solve", real)  # a rerun reuses the diverged record too
    assert study(tmp_path, "--embedding", "pad") == 0
    assert capsys.readouterr().err.count("reused") == 4


def test_a_setting_the_solver_refuses_is_bad_input(tmp_path, capsys, monkeypatch):
    import solvers
    from solvers.neural.training import NeuralTrainingError

    def refuse(sc):
        raise NeuralTrainingError("solver.something: not for this run")

    monkeypatch.setattr(solvers, "solve", refuse)
    assert study(tmp_path) == 2  # not recorded as a divergence
    err = capsys.readouterr().err
    assert err.startswith("error: neural_pinwheel_2d_d2_any_s0_lipschitz_f: solver.something")
    assert list((tmp_path / "m_runs").iterdir()) == [] and not (tmp_path / "m.h5").exists()


def test_a_changed_scenario_is_solved_again(tmp_path, capsys):
    assert study(tmp_path, "--baselines", "none", "--dims", "3", "--embedding", "pad") == 0
    capsys.readouterr()
    assert study(tmp_path, "--baselines", "none", "--dims", "3", "--embedding", "pad",
                 "--set", "solver.lr=1e-3") == 0
    err = capsys.readouterr().err
    assert "solved" in err and "reused" not in err


def test_a_run_made_under_other_solver_defaults_is_not_reused():
    """The scenario text alone does not fix the problem solved: a run file written by a version
    with other defaults (here a narrower critic) must be solved again."""
    import dataclasses

    from mfg.settings.neural import NeuralSolverConfig

    cfg = NeuralSolverConfig()
    recorded = dataclasses.asdict(cfg) | {"method": "euler", "divergence": "exact",
                                          "processes": 1}
    assert cli.same_settings(recorded, cfg)  # "auto" fields recorded as what they resolved to
    moved = recorded | {"checkpoint": "/elsewhere.ckpt", "progress": False, "resume": True}
    assert cli.same_settings(moved, cfg)  # where and how it was written: not the problem
    assert cli.same_settings(recorded | {"gp_weight": int(cfg.gp_weight)}, cfg)  # 10 == 10.0
    assert not cli.same_settings(recorded | {"critic_width": cfg.critic_width // 2}, cfg)
    assert not cli.same_settings(recorded | {"hj_weight": cfg.hj_weight + 1}, cfg)
    assert not cli.same_settings(recorded | {"critic_activation": "silu"}, cfg)


def test_baseline_set_reaches_the_baseline_runs_only(tmp_path):
    """``--set`` goes to every run, ``--baseline-set`` (after it) to the likelihood runs alone,
    and the study's recorded command line carries both (arguments through the CLI's parser)."""
    args = cli.build_parser().parse_args([
        "study", "manifold", PINWHEEL, "--dims", "2,3", "--embedding", "pad", "--seeds", "2",
        "--draws", "1", "--set", "solver.batch_size=128", "--baseline-set",
        "solver.batch_size=64", "--baseline-set", "solver.lr=0.01"])
    runs = cli.manifold_runs(args, cli.load(PINWHEEL, args.set), tmp_path)
    assert len(runs) == 2 * 2 * 2
    for run in runs:
        ours = run.method == "lipschitz_f"
        assert run.scenario.solver.batch_size == (128 if ours else 64), run.scenario.name
        assert run.scenario.solver.lr == (cli.load(PINWHEEL, []).solver.lr if ours else 0.01)
        assert run.scenario.terminal.kind == run.method
    command = cli.manifold_command(args, tmp_path / "m.h5")
    assert ("--set solver.batch_size=128 --baseline-set solver.batch_size=64 "
            "--baseline-set solver.lr=0.01") in command


@pytest.mark.parametrize(("args", "message"), [
    (["study", "manifold", str(ROOT / "scenarios" / "gaussian_kl_2d.yaml")], "target"),
    (["study", "manifold", PINWHEEL, "--set", "source.std=[1.0,2.0]"], "source"),
    (["study", "manifold", PINWHEEL, "--set", "source.mean=[0.0,0.0,0.0]", "--set", "dim=3",
      "--set", "domain=null"], "dim"),
    (["study", "manifold", PINWHEEL, "--embedding", "pad,rotate"], "--embedding"),
    (["study", "manifold", PINWHEEL, "--dims", "1,2"], "integers >= 2"),
    (["study", "manifold", PINWHEEL, "--seeds", "0"], "--seeds"),
    (["study", "manifold", PINWHEEL, "--draws", "0"], "--draws"),
    (["study", "manifold", PINWHEEL, "--sinkhorn-scaling", "1"], "--sinkhorn-scaling"),
    (["study", "manifold", PINWHEEL, "--sinkhorn-scaling", "nan"], "--sinkhorn-scaling"),
    (["study", "manifold", PINWHEEL, "--set", "solver.nope=1"], "nope"),
    (["study", "manifold", PINWHEEL, "--set", "solver.width=0"], "width"),
    (["study", "manifold", PINWHEEL, "--baselines", "none", "--baseline-set",
      "solver.batch_size=32"], "--baseline-set"),
    (["study", "manifold", PINWHEEL, "--baseline-set", "seed=3"], "--baseline-set seed=3"),
    (["study", "manifold", PINWHEEL, "--baseline-set", "solver.nope=1"], "nope"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    rc = cli.main([*args, "-o", str(tmp_path / "sub" / "m.h5")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_bad_outputs_exit_2_and_write_nothing(tmp_path, capsys):
    (tmp_path / "m_runs").write_text("a file where the runs' folder goes")
    for out in ("m.png", "m.h5", "dir/"):
        rc = cli.main(["study", "manifold", PINWHEEL, "-o", str(tmp_path / out)])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: "), (out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_runs"]


@pytest.mark.slow
def test_study_in_7_and_12_dimensions(tmp_path, capsys):
    """The default dimensions (2, 7, 12) with 200 iterations and 1,000 samples per run: the
    table is complete, the floors do not depend on d or the embedding, and every run that did
    not diverge has finite measures."""
    rc = cli.main(["study", "manifold", PINWHEEL, "--seeds", "1", "--draws", "1",
                   "--set", "solver.max_iter=200", "--set", "solver.eval_samples=1000",
                   "--set", "solver.checkpoint_every=0", "-o", str(tmp_path / "m.h5")])
    assert rc == 0, capsys.readouterr().err
    columns, _ = read_table(tmp_path / "m.h5")
    assert len(columns["name"]) == 2 + 2 * 2 * 2  # d = 2 once, 7 and 12 per embedding
    with h5py.File(tmp_path / "m.h5") as f:
        assert f["table"]["sinkhorn"].dtype == np.float64
    np.testing.assert_allclose(columns["sinkhorn_plane_floor"],
                               columns["sinkhorn_plane_floor"][0], rtol=1e-3)
    for i, status in enumerate(columns["status"]):
        if status != "diverged":
            for key in (*SAMPLE_KEYS, "hj_residual", "kinetic_energy"):
                assert np.isfinite(columns[key][i]), (columns["name"][i], key)
