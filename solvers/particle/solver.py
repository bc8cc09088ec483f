"""``solve(scenario) -> Result`` for the particle family (kinds particle, generator, jko).

Result contents (all kinds):

* ``samples["terminal"]`` (n, d): the final particles / n samples of the trained generator;
  ``samples["trajectories"]`` (k, n_traj, d): particle states at ``n_snapshots`` times, or
  g(z) for fixed latents z at the recorded training steps (generator) / after each JKO step.
* ``history``: ``step``, ``sinkhorn`` (S_ε, blur 0.05, p 2, to ``eval_n`` fresh target samples,
  never used for training) and kind-specific keys, equal-length arrays.
* ``metrics``: ``sinkhorn_to_target`` (final), ``sinkhorn_initial``, ``sinkhorn_floor`` (the
  same divergence between two fresh target sample sets: what a perfect sampler gets),
  ``terminal_cost`` (the scenario's G on the same fresh samples), ``kinetic_energy`` and
  ``objective`` = kinetic_energy + terminal_cost, where kinetic_energy is
  particle: λ/2 Σ_k mean_i |v_i^k|² Δt (the discrete action of the velocities used; the flow's
  pseudo-time steps·Δt is unrelated to the scenario's T);
  generator: λ/(2T) E|g(z) − z|² (straight lines from z to g(z) over [0, T]);
  jko: λ/2 Σ_k E|g_{k+1}(z) − g_k(z)|²/τ (τ = 1 when None);
  and ``map_cost`` = ½ E|x_T − x_0|² (½ E|g(z) − z|²), the cost of the start-to-end map, an upper
  bound of W2²/2 between source and result, comparable across kinds.
  Particle kind also: ``iterations`` (steps taken), ``max_steps`` (the cap ``steps``),
  ``pseudo_time`` (iterations·Δt), ``sinkhorn_over_floor`` (sinkhorn_to_target/sinkhorn_floor).

Status: generator and jko ``completed`` (a fixed number of training steps) or ``diverged``.
Particle kind, why the run stopped (solvers/particle/stopping.py): ``converged`` (the Sinkhorn
divergence reached its floor, or stopped improving after having fallen), ``stalled`` (it stopped
improving without ever having fallen: the field cannot move the particles towards the target),
``max_iter`` (the cap ``steps`` came first), ``completed`` (the rule was off: ``stop_patience =
0`` or ``eval_every`` ≥ ``steps``, exactly ``steps`` steps ran) or ``diverged`` (non-finite).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from mfg.provenance import git_revision, versions
from mfg.results import Result
from mfg.scenario import Scenario
from solvers.particle.common import (
    Evaluator,
    progress_bar,
    streams,
    to_tensor,
    torch_device,
    torch_dtype,
)
from solvers.particle.fields import FIELDS, make_state
from solvers.particle.generator import ResidualGenerator, train_generator
from solvers.particle.jko import train_jko
from solvers.particle.particles import integrate
from solvers.particle.stopping import StopRule


def _history(hist: dict[str, list[float]]) -> dict[str, Any]:
    import numpy as np

    return {k: np.asarray(v, dtype=np.float64) for k, v in hist.items()}


def _result(scenario: Scenario, status: str, samples: dict[str, Any], hist: dict[str, Any],
            metrics: dict[str, float], start: float, device: torch.device) -> Result:
    return Result(
        solver=scenario.solver.kind,
        status=status,
        scenario_text=scenario.text,
        settings=dataclasses.asdict(scenario.solver),
        samples=samples,
        history=_history(hist),
        metrics=metrics,
        wall_time_s=time.perf_counter() - start,
        device=str(device),
        versions=versions(),
        git_revision=git_revision(),
    )


def _finish(scenario: Scenario, ev: Evaluator, x_final: Any, hist: dict[str, list[float]],
            kinetic: float) -> dict[str, float]:
    g = ev.terminal_cost(x_final)
    return {
        "sinkhorn_to_target": hist["sinkhorn"][-1] if hist["sinkhorn"] else float("nan"),
        "sinkhorn_initial": hist["sinkhorn"][0],
        "sinkhorn_floor": ev.floor(),
        "terminal_cost": g,
        "kinetic_energy": kinetic,
        "objective": kinetic + g,
    }


def solve_particles(scenario: Scenario) -> Result:
    """Integrate the particle flow of ``scenario.solver`` (a ParticleSolverConfig)."""
    start = time.perf_counter()
    cfg = scenario.solver
    dev, dtype = torch_device(cfg.device), torch_dtype(cfg.dtype)
    rs = streams(scenario.seed)
    x0 = to_tensor(scenario.source.sample(cfg.n, rs.source), dev, dtype)
    y = to_tensor(scenario.target.sample(cfg.n_target or cfg.n, rs.target), dev, dtype)
    ev = Evaluator(scenario, min(cfg.eval_n, cfg.n), rs.eval)
    state = make_state(rs.torch_seed)
    rule = StopRule(ev.floor(), cfg.stop_rtol, cfg.stop_patience) if cfg.stop_patience else None
    with progress_bar(cfg.steps, cfg.progress, f"particle/{cfg.field}") as bar:
        run = integrate(x0, y, FIELDS[cfg.field], cfg, state, ev.sinkhorn, rule, bar)
    hist = run.history
    metrics = _finish(scenario, ev, run.x, hist, 0.5 * scenario.lam * run.action)
    metrics["map_cost"] = 0.5 * float((run.x - x0).pow(2).sum(1).mean())
    steps = float(hist["step"][-1])
    metrics.update({"pseudo_time": steps * cfg.dt, "n_particles": float(cfg.n),
                    "iterations": steps, "max_steps": float(cfg.steps),
                    "sinkhorn_over_floor": metrics["sinkhorn_to_target"]
                    / metrics["sinkhorn_floor"]})
    samples = {"terminal": run.x.double().cpu().numpy(), "trajectories": run.snapshots,
               "trajectory_times": run.snapshot_times}
    return _result(scenario, run.stop, samples, hist, metrics, start, dev)


def _latents(scenario: Scenario, rng: Any, dev: torch.device, dtype: torch.dtype) -> Any:
    def sample_z(n: int) -> torch.Tensor:
        return to_tensor(scenario.source.sample(n, rng), dev, dtype)

    return sample_z


def solve_generator(scenario: Scenario) -> Result:
    """Train a one-step generator (GeneratorSolverConfig) or run parametric JKO
    (JKOSolverConfig)."""
    start = time.perf_counter()
    cfg = scenario.solver
    dev, dtype = torch_device(cfg.device), torch_dtype(cfg.dtype)
    rs = streams(scenario.seed)
    state = make_state(rs.torch_seed)
    with torch.random.fork_rng(devices=[]):  # seeded initialization, global RNG untouched
        torch.manual_seed(rs.torch_seed)
        gen = ResidualGenerator(scenario.dim, cfg.width, cfg.depth).to(dev, dtype)
    bank = to_tensor(scenario.target.sample(cfg.n_target or 10 * cfg.batch, rs.target), dev, dtype)
    ev = Evaluator(scenario, min(cfg.eval_n, cfg.n), rs.eval)
    z_fix = to_tensor(scenario.source.sample(cfg.n, rs.source), dev, dtype)
    sample_z = _latents(scenario, rs.source, dev, dtype)
    if cfg.kind == "jko":
        total = cfg.outer_steps * cfg.inner_steps
        with progress_bar(total, cfg.progress, f"jko/{cfg.divergence}") as bar:
            run, action = train_jko(gen, sample_z, bank, cfg, state, z_fix, ev.sinkhorn, bar)
        kinetic = 0.5 * scenario.lam * action
    else:
        with progress_bar(cfg.train_steps, cfg.progress, f"generator/{cfg.field}") as bar:
            run = train_generator(gen, sample_z, bank, FIELDS[cfg.field], cfg, state, z_fix,
                                  ev.sinkhorn, bar)
    with torch.no_grad():
        x = gen(z_fix)
    if cfg.kind != "jko":
        kinetic = 0.5 * scenario.lam / scenario.T * float((x - z_fix).pow(2).sum(1).mean())
    hist = run.history
    metrics = _finish(scenario, ev, x, hist, kinetic)
    metrics["map_cost"] = 0.5 * float((x - z_fix).pow(2).sum(1).mean())
    metrics["iterations"] = float(hist["step"][-1]) * (cfg.inner_steps if cfg.kind == "jko" else 1)
    samples = {"terminal": x.double().cpu().numpy(), "trajectories": run.snapshots}
    status = "completed" if run.finite else "diverged"
    return _result(scenario, status, samples, hist, metrics, start, dev)


def solve(scenario: Scenario) -> Result:
    """Dispatch on ``scenario.solver.kind``: particle, generator or jko."""
    kind = scenario.solver.kind
    if kind == "particle":
        return solve_particles(scenario)
    if kind in ("generator", "jko"):
        return solve_generator(scenario)
    raise ValueError(f"solver.kind: the particle family does not solve {kind!r}")
