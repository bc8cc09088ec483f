"""The neural solver under torchrun + DistributedDataParallel (solvers/neural/distributed.py):
2 CPU ranks (gloo) against 1 rank with the same global batch, resume under torchrun, rank 0 alone
writing, and the refusals (batch not divisible by the process count, trainers that bypass DDP).

Truth here is the one-process run: with the batch split and the batch statistics taken on the
gathered global batch, 2 ranks compute the same losses and, after DDP's averaging, the same
gradients up to the order of the float sums."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
from mfg.results import read_result
from mfg.scenario import ScenarioError, parse_scenario
from solvers.neural import solve
from solvers.neural.distributed import Group, Ranks, check_batch, launch_ranks
from solvers.neural.training import Trainer, distributable

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
#: the slow test's scenario exercises every batch statistic of a critic run: log E_Q[e^φ]
#: (Donsker–Varadhan), the gradient penalty (double backward), the HJ and terminal penalties;
#: a constant learning rate, because lr·lr_decay^(k/max_iter) changes with max_iter and the
#: resume test stops at max_iter 15 before resuming to 30
TINY = """
name: tiny_ddp
dim: 2
lambda: 0.5
source: {kind: gaussian, mean: [0, 0], std: 1}
target: {kind: dataset, name: pinwheel}
terminal: {kind: lipschitz_f, f: kl, L: 1.0}
solver: {kind: neural, width: 8, depth: 1, critic_width: 8, critic_steps: 2, batch_size: 32,
         nt: 2, max_iter: 3, eval_samples: 64, n_trajectories: 4, grid_n: 8, grid_nt: 2,
         progress: false, hj_weight: 0.5, terminal_weight: 0.2, lr: 0.01, critic_lr: 0.001,
         lr_decay: 1.0}
seed: 3
"""
#: the curves compared (terminal_cost is the critic's objective here)
CURVES = ("loss", "kinetic_energy", "terminal_cost", "hj_penalty", "terminal_penalty")


def torchrun(tmp_path: Path, nproc: int, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc cli.py solve tiny.yaml ARGS`` (rendezvous on
    a free localhost port; one thread per rank; no inherited rank variables)."""
    scenario = tmp_path / "tiny_ddp.yaml"
    if not scenario.exists():
        scenario.write_text(TINY)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", str(REPO / "cli.py"),
           "solve", str(scenario), "--quiet", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)


needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason="no torchrun in the venv")


@needs_torchrun
def test_torchrun_two_ranks_write_one_result_and_one_checkpoint(tmp_path):
    out = tmp_path / "out" / "two.h5"
    proc = torchrun(tmp_path, 2, "--out", str(out), "--set", "solver.checkpoint_every=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("output ") == 1  # one rank prints the summary
    assert sorted(p.name for p in out.parent.iterdir()) == ["two.h5", "two.h5.ckpt"]
    res = read_result(out)
    assert "2 processes" in res.device and res.settings["processes"] == 2
    assert len(res.history["loss"]) == 3 and np.isfinite(res.history["loss"]).all()
    assert res.samples["terminal"].shape == (64, 2)  # rank 0 evaluated
    assert torch.load(f"{out}.ckpt", weights_only=True)["iteration"] == 3


def test_batch_not_divisible_by_the_process_count_is_bad_input(tmp_path, monkeypatch, capsys):
    """Refused before joining any process group: exit 2 and one line naming the field (under
    torchrun each worker exits 2 this way; torchrun itself then exits 1, its own rule)."""
    (tmp_path / "tiny_ddp.yaml").write_text(TINY)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    out = tmp_path / "r.h5"
    assert cli.main(["solve", str(tmp_path / "tiny_ddp.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: solver.batch_size: 32 is not divisible by the 3 processes")
    assert "\n" not in err and not out.exists()
    check_batch(33, 1)
    with pytest.raises(ScenarioError, match="multiple of 4"):
        check_batch(30, 4)


def test_ranks_come_from_torchrun_variables(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_RANK",
                "PMIX_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RANK", "1")  # a lone RANK is not torchrun's
    assert launch_ranks() == Ranks() and cli.process_rank() == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_ranks() == Ranks(1, 1, 2) and cli.process_rank() == 1
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ScenarioError, match="RANK='x'"):
        launch_ranks()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ScenarioError, match="not below WORLD_SIZE=2"):
        launch_ranks()


def test_one_process_group_is_the_identity_and_shards_partition_the_batch():
    one = Group(Ranks(), torch.device("cpu"))
    a = torch.arange(12.0).reshape(6, 2)
    assert one.shard(a) is a and one.gather(a) is a
    module = torch.nn.Linear(2, 1)
    assert one.wrap(module) is module
    shards = [Group(Ranks(r, r, 3), torch.device("cpu")).shard(a.numpy()) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(shards), a.numpy())


def test_trainers_that_bypass_ddp_are_not_distributable():
    class OwnStep(Trainer):
        def step(self) -> None:  # its own optimizer step: DDP would not see it
            raise NotImplementedError

    assert distributable(Trainer) and not distributable(OwnStep)


def two_ranks_against_one(tmp_path: Path, n: int, dtype: str, rtol: float,
                          atol: float):  # -> mfg.results.Result
    """The 2-rank result after n iterations, checked against the 1-rank run: every curve to
    rtol of its scale (max |value|), the terminal samples to atol."""
    overrides = [f"solver.max_iter={n}", f"solver.dtype={dtype}"]
    one = solve(parse_scenario(TINY, overrides=overrides))
    path = tmp_path / f"two_{dtype}.h5"
    proc = torchrun(tmp_path, 2, "--out", str(path), *(a for o in overrides for a in ("--set", o)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = read_result(path)
    for key in CURVES:
        a, b = one.history[key], two.history[key]
        assert len(a) == len(b) == n
        scale = np.abs(a).max()
        assert np.abs(a - b).max() <= rtol * scale, (key, np.abs(a - b).max(), scale)
    np.testing.assert_allclose(two.samples["terminal"], one.samples["terminal"], atol=atol)
    return two


@pytest.mark.slow
@needs_torchrun
def test_two_ranks_follow_one_rank_and_resume_under_torchrun(tmp_path):
    """30 iterations, global batch 32: 2 ranks against 1 (float32: agreement to 1e-5 of each
    curve's scale; float64: 1e-9, so the agreement is the mathematics, not a loose tolerance),
    then a 2-rank run stopped at 15 and resumed to 30 under torchrun equals the uninterrupted
    2-rank run bit for bit."""
    n = 30
    two = two_ranks_against_one(tmp_path, n, "float32", rtol=1e-5, atol=1e-5)
    two_ranks_against_one(tmp_path, n, "float64", rtol=1e-9, atol=1e-9)

    part = tmp_path / "part.h5"
    common = ["--out", str(part), "--set", "solver.checkpoint_every=5", "--set",
              "solver.dtype=float32"]
    proc = torchrun(tmp_path, 2, *common, "--set", f"solver.max_iter={n // 2}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = torchrun(tmp_path, 2, *common, "--set", f"solver.max_iter={n}", "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = read_result(part)
    for key in CURVES:
        np.testing.assert_array_equal(resumed.history[key], two.history[key])
    np.testing.assert_array_equal(resumed.samples["terminal"], two.samples["terminal"])
