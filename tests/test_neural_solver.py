"""The neural solver end to end: the Gaussian KL scenario against its closed form (moments,
kinetic energy, density and value function at T), checkpoints and resume (bit-identical on CPU),
the non-finite guard, the settings schema, the CLI flags, and CUDA when a GPU is lent."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from neural_cases import interrupt_at, poison_potential_at

import cli
from mfg.analytic import closed_form
from mfg.compare import final_snapshot, grid_moments
from mfg.results import read_result
from mfg.scenario import ScenarioError, load_scenario, parse_scenario
from solvers.neural import NeuralTrainingError, solve
from solvers.neural.training import Trainer

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
KL_2D = SCENARIOS / "neural_gaussian_kl_2d.yaml"
#: a faster version of the shared scenario (the file's own settings are for the CLI)
KL_FAST = ["solver.progress=false", "solver.width=16", "solver.depth=1", "solver.batch_size=256",
           "solver.nt=4", "solver.max_iter=300", "solver.lr=2e-2", "solver.lr_decay=0.02",
           "solver.eval_samples=1000", "solver.grid_nt=2", "solver.checkpoint_every=0"]

TINY = """
name: tiny
dim: 2
lambda: 0.5
source: {kind: gaussian, mean: [0, 0], std: 1}
target: {kind: dataset, name: pinwheel}
terminal: {kind: lipschitz_f, f: kl, L: 1.0}
solver: {kind: neural, width: 8, depth: 1, critic_width: 8, critic_steps: 2, batch_size: 32,
         nt: 2, max_iter: 6, eval_samples: 64, n_trajectories: 4, progress: false}
seed: 3
"""



def tiny(tmp_path: Path, *overrides: str):
    return parse_scenario(TINY, overrides=[f"solver.checkpoint={tmp_path / 'run.ckpt'}",
                                           *overrides])


def parameters(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=False)
    return {**{f"U.{k}": v for k, v in state["potential"].items()},
            **{f"avg.{k}": v for k, v in state["average"].items()},
            **{f"phi.{k}": v for k, v in state["critic"].items()}}


def test_the_returned_potential_is_the_moving_average_of_the_iterates(tmp_path):
    """θ̄_k = δ_k θ̄_{k−1} + (1 − δ_k) θ_k from θ̄_0 = θ_0 with δ_k = min(ema, (1+k)/(10+k)),
    recomputed here from the iterates the optimizer produced; ema = 0 returns the last one."""
    sc = tiny(tmp_path, "solver.ema=0.5")
    trainer = Trainer(sc, torch.device("cpu"), torch.float32)
    assert trainer.solution is trainer.average
    expected = [p.detach().clone() for p in trainer.potential.parameters()]
    for k in range(4):
        trainer.step()
        delta = min(0.5, (1 + k) / (10 + k))
        expected = [delta * e + (1 - delta) * p.detach()
                    for e, p in zip(expected, trainer.potential.parameters(), strict=True)]
    got = list(trainer.solution.parameters())
    assert all(torch.allclose(g, e, rtol=1e-6, atol=1e-7) for g, e in zip(got, expected,
                                                                         strict=True))
    # it is an average, not the last iterate
    assert not torch.allclose(got[0], next(trainer.potential.parameters()))
    last = Trainer(tiny(tmp_path, "solver.ema=0"), torch.device("cpu"), torch.float32)
    assert last.average is None and last.solution is last.potential


@pytest.fixture(scope="module")
def kl_2d():
    sc = load_scenario(KL_2D, KL_FAST)
    return sc, solve(sc)


def test_gaussian_kl_terminal_moments_and_energy_match_closed_form(kl_2d):
    sc, res = kl_2d
    cf = closed_form(sc)
    _, mean, std = grid_moments(final_snapshot(res.grid["rho"])[0])  # quadrature of ρ(·, T)
    assert np.all(np.abs(mean - cf.mT) <= 0.03 * np.abs(cf.mT)), (mean, cf.mT)
    assert np.all(np.abs(std - cf.sT) <= 0.03 * cf.sT), (std, cf.sT)
    ke = res.metrics["kinetic_energy"]
    assert abs(ke - cf.kinetic_energy) <= 0.05 * cf.kinetic_energy, (ke, cf.kinetic_energy)
    assert abs(res.metrics["terminal_cost"] - cf.terminal_cost) <= 0.05 * cf.terminal_cost
    x = res.samples["terminal"]  # the samples agree within their Monte Carlo error
    assert np.all(np.abs(x.mean(0) - cf.mT) <= 4 * cf.sT / np.sqrt(len(x)))
    assert res.samples["trajectories"].shape == (sc.solver.nt + 1, sc.solver.n_trajectories, 2)
    assert set(res.history) >= {"loss", "kinetic_energy", "terminal_cost"}
    assert len({len(v) for v in res.history.values()}) == 1


def test_gaussian_kl_density_and_value_function_match_closed_form(kl_2d):
    sc, res = kl_2d
    cf = closed_form(sc)
    grid = res.grid
    x1, x2 = np.meshgrid(grid.x1.values, grid.x2.values, indexing="ij")
    pts = np.stack([x1, x2], axis=-1)
    dv = float(np.diff(grid.x1.values[:2])[0] * np.diff(grid.x2.values[:2])[0])
    l1 = [float(np.abs(grid["rho"].values[k] - np.exp(cf.log_density(pts, float(t)))).sum() * dv)
          for k, t in enumerate(grid.t.values)]
    assert l1[0] < 1e-12  # ρ0 itself
    assert l1[-1] < 0.05, l1  # at T (the target)
    assert max(l1) < 0.1, l1  # on the way: the path is less constrained than its end
    # U(·, T) up to a constant, weighted by ρ_T, relative to the spread of U there
    u, u_exact = grid["U"].values[-1], cf.U(pts, sc.T)
    w = np.exp(cf.log_density(pts, sc.T))
    d = u - u_exact
    d -= np.sum(w * d) / np.sum(w)
    spread = np.sqrt(np.sum(w * (u_exact - np.sum(w * u_exact) / np.sum(w)) ** 2) / np.sum(w))
    rms = np.sqrt(np.sum(w * d**2) / np.sum(w))
    assert rms < 0.15 * spread, (rms, spread)  # 0.106 measured (fast settings)


def test_resume_after_interruption_gives_the_same_parameters(tmp_path):
    full = tiny(tmp_path / "a", "solver.checkpoint_every=3")
    solve(full)

    part = tiny(tmp_path / "b", "solver.checkpoint_every=3")
    with pytest.raises(KeyboardInterrupt):
        solve(part, callback=interrupt_at(3))
    assert torch.load(tmp_path / "b" / "run.ckpt", weights_only=False)["iteration"] == 3
    resumed = solve(dataclasses.replace(part, solver=dataclasses.replace(part.solver,
                                                                         resume=True)))
    a, b = parameters(tmp_path / "a" / "run.ckpt"), parameters(tmp_path / "b" / "run.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert len(resumed.history["loss"]) == 6


def test_by_default_a_run_leaves_a_checkpoint_to_train_on_from(tmp_path):
    """``checkpoint_every`` defaults to 500 (0: no checkpoint), and a checkpoint is also
    written at the end: a run shorter than that (6 iterations here) leaves its final state,
    from which it can be trained longer; with 0 nothing is written."""
    assert tiny(tmp_path).solver.checkpoint_every == 500
    solve(tiny(tmp_path))
    assert torch.load(tmp_path / "run.ckpt", weights_only=False)["iteration"] == 6
    longer = solve(tiny(tmp_path, "solver.resume=true", "solver.max_iter=8"))
    assert len(longer.history["loss"]) == 8
    assert torch.load(tmp_path / "run.ckpt", weights_only=False)["iteration"] == 8
    (tmp_path / "none").mkdir()
    solve(tiny(tmp_path / "none", "solver.checkpoint_every=0"))
    assert list((tmp_path / "none").iterdir()) == []


def test_a_checkpoint_records_its_schedule_and_training_time(tmp_path, capsys):
    """A checkpoint records the max_iter it was written under (the learning rate
    lr·lr_decay^(k/max_iter) depends on it) and the training seconds so far. ``continuation``
    accepts only a checkpoint of the same run under the same max_iter; resuming under another
    one is allowed and said on stderr; a resumed run's times count the earlier sessions'
    training (here a recorded 1000 s)."""
    from solvers.neural.training import continuation

    part = tiny(tmp_path, "solver.checkpoint_every=3")
    with pytest.raises(KeyboardInterrupt):
        solve(part, callback=interrupt_at(3))
    ckpt = tmp_path / "run.ckpt"
    state = torch.load(ckpt, weights_only=False)
    assert state["max_iter"] == 6 and state["iteration"] == 3 and state["train_seconds"] > 0
    assert continuation(ckpt, part) == 3
    longer = tiny(tmp_path, "solver.checkpoint_every=3", "solver.max_iter=9")
    assert continuation(ckpt, longer) is None  # the schedule would change
    assert continuation(ckpt, tiny(tmp_path, "solver.lr=1e-3")) is None  # another training
    assert continuation(tmp_path / "none.ckpt", part) is None
    older = {k: v for k, v in state.items() if k not in ("max_iter", "train_seconds")}
    torch.save(older, tmp_path / "older.ckpt")  # written before max_iter was recorded
    assert continuation(tmp_path / "older.ckpt", part) is None
    state["train_seconds"] = 1000.0
    torch.save(state, ckpt)
    capsys.readouterr()
    start = time.perf_counter()
    res = solve(dataclasses.replace(longer, solver=dataclasses.replace(longer.solver,
                                                                       resume=True)))
    elapsed = time.perf_counter() - start
    assert "warning: solver.max_iter: resuming" in capsys.readouterr().err
    assert len(res.history["loss"]) == 9
    assert 1000.0 < res.metrics["train_time_s"] < res.wall_time_s < 1000.0 + elapsed
    assert torch.load(ckpt, weights_only=False)["train_seconds"] == res.metrics["train_time_s"]
    # the same max_iter says nothing
    solve(dataclasses.replace(longer, solver=dataclasses.replace(longer.solver, resume=True)))
    assert "warning" not in capsys.readouterr().err


def test_sinkhorn_to_target_reads_a_fixed_number_of_samples(tmp_path, monkeypatch):
    """sinkhorn_to_target is S_ε (mfg.metrics, checked against geomloss and POT there) between
    the first SINKHORN_POINTS terminal samples and as many target points of the evaluation's
    own stream (seed, 1), whatever eval_samples is: the study asks for more samples than it
    measures at once."""
    import solvers.neural.fields as fields
    from mfg.metrics import EVAL_BLUR, EVAL_P, sinkhorn_divergence

    monkeypatch.setattr(fields, "SINKHORN_POINTS", 40)
    sc = tiny(tmp_path, "solver.checkpoint_every=0")
    res = solve(sc)
    x = res.samples["terminal"]
    assert len(x) == 64
    rng = np.random.default_rng([sc.seed, 1])
    sc.source.sample(64, rng)
    y = sc.target.sample(64, rng)
    expected = sinkhorn_divergence(torch.as_tensor(x[:40]), torch.as_tensor(y[:40]),
                                   blur=EVAL_BLUR, p=EVAL_P)
    assert res.metrics["sinkhorn_to_target"] == pytest.approx(expected, rel=1e-6)
    whole = sinkhorn_divergence(torch.as_tensor(x), torch.as_tensor(y), blur=EVAL_BLUR, p=EVAL_P)
    assert abs(whole - expected) > 1e-3 * expected  # the cap is what was read


def test_the_evaluation_after_training_shows_its_stages(tmp_path, monkeypatch):
    """solve shows the evaluation a stage at a time (StageBar, tqdm on stderr, as the training's
    bar: on with ``progress``, off without): fields.evaluate's three stages in order, the
    Sinkhorn one with its size, and the bar ends full. TINY has no domain, so no grid stage."""
    import io

    import solvers.neural.solver as solver_module

    bars = []

    class Recording(solver_module.StageBar):
        def __init__(self, total: int, disable: bool | None, file=None):
            self.asked, self.text = disable, io.StringIO()
            super().__init__(total, disable=False, file=self.text)
            bars.append(self)

    monkeypatch.setattr(solver_module, "StageBar", Recording)
    solve(tiny(tmp_path, "solver.checkpoint_every=0", "solver.progress=true"))
    solve(tiny(tmp_path, "solver.checkpoint_every=0"))  # TINY's progress: false
    assert [bar.asked for bar in bars] == [None, True]
    text = bars[0].text.getvalue()
    where = [text.find(name) for name in ("terminal samples", "terminal cost and residuals",
                                          "Sinkhorn, 64 x 64 points")]
    assert -1 not in where and where == sorted(where)
    assert "3/3" in text and "fields on the grid" not in text


def test_non_finite_values_stop_training_and_keep_the_last_good_checkpoint(tmp_path):
    sc = tiny(tmp_path, "solver.checkpoint_every=2")
    with pytest.raises(NeuralTrainingError, match=r"non-finite .* iteration 5 .*run\.ckpt"):
        solve(sc, callback=poison_potential_at(4))
    state = torch.load(tmp_path / "run.ckpt", weights_only=False)
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["potential"].values())


def test_quadratic_rank_setting_reaches_the_potential(tmp_path):
    """``solver.quadratic_rank``: None (default) is full rank d + 1, a number caps it, 0 is
    refused naming the field."""
    full = Trainer(tiny(tmp_path), torch.device("cpu"), torch.float32)
    assert tuple(full.potential.A.shape) == (3, 3)
    capped = Trainer(tiny(tmp_path, "solver.quadratic_rank=1"), torch.device("cpu"),
                     torch.float32)
    assert tuple(capped.potential.A.shape) == (1, 3)
    with pytest.raises(ScenarioError, match="solver.quadratic_rank"):
        tiny(tmp_path, "solver.quadratic_rank=0")


def test_schema_refuses_what_the_solver_cannot_do():
    with pytest.raises(ScenarioError, match="terminal.kind: the neural solver does not"):
        parse_scenario(TINY.replace("{kind: lipschitz_f, f: kl, L: 1.0}", "{kind: fixed}"))
    with pytest.raises(ScenarioError, match="target.kind: terminal kind f needs a target with a "
                                            "log-density"):
        parse_scenario(TINY.replace("{kind: lipschitz_f, f: kl, L: 1.0}", "{kind: f, f: kl}"))
    with pytest.raises(ScenarioError, match="solver.method"):
        parse_scenario(TINY, overrides=["solver.method=heun"])
    with pytest.raises(ScenarioError, match="solver.widht"):
        parse_scenario(TINY.replace("width: 8,", "widht: 8,"))


def test_cli_solve_resume_and_device(tmp_path, capsys):
    out = tmp_path / "tiny.h5"
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY)
    args = ["solve", str(scenario), "--out", str(out), "--quiet", "--set",
            "solver.checkpoint_every=3"]
    assert cli.main(args) == 0
    assert Path(f"{out}.ckpt").is_file()
    assert cli.main([*args, "--resume", "--set", "solver.max_iter=9"]) == 0
    res = read_result(out)
    assert res.solver == "neural" and len(res.history["loss"]) == 9
    assert res.samples["terminal"].shape == (64, 2)
    assert cli.main(["solve", str(SCENARIOS / "gaussian_kl_1d.yaml"), "--out",
                     str(tmp_path / "g.h5"), "--resume"]) == 2
    assert "--resume: the grid solver has no resume setting" in capsys.readouterr().err
    if not torch.cuda.is_available():
        # bad input, not an internal failure: exit 2, one line, nothing written
        assert cli.main([*args, "--device", "cuda"]) == 2
        assert "cuda requested but torch sees no CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_runs_and_agrees_with_cpu(tmp_path):
    cpu = solve(tiny(tmp_path / "cpu", "solver.dtype=float64"))
    gpu = solve(tiny(tmp_path / "gpu", "solver.dtype=float64", "solver.device=cuda"))
    assert gpu.device.startswith("cuda")
    # same initial network and numpy batches: the first step agrees (later ones differ, as the
    # torch random streams of the two devices differ)
    np.testing.assert_allclose(gpu.history["kinetic_energy"][:1],
                               cpu.history["kinetic_energy"][:1], rtol=1e-6)
    assert all(np.isfinite(v).all() for v in gpu.history.values() if v.dtype.kind == "f")
    assert np.isfinite(gpu.samples["terminal"]).all()
