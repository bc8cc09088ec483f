"""The interacting-particle solver: x_{k+1} = x_k + Δt v(x_k) (Euler) or the Heun average of
v(x_k) and v(x_k + Δt v(x_k)), v a field of :mod:`solvers.particle.fields` against a fixed bank
of target samples, for at most ``steps`` steps: the run stops earlier when the stopping rule of
:mod:`solvers.particle.stopping` fires on the evaluated divergence."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from solvers.particle.fields import Field, FieldState
from solvers.particle.stopping import StopRule

Tensor = torch.Tensor


@dataclass
class ParticleRun:
    """Final particles (n, d), snapshots (k, n_traj, d) at ``snapshot_times``, the action
    Σ_k mean_i |Δx_i/Δt|² Δt, the history (equal-length lists) at evaluation steps, and why the
    run stopped: ``stop`` is ``"converged"`` or ``"stalled"`` (the stopping rule),
    ``"max_iter"`` (``steps`` reached while the rule was active), ``"completed"`` (``steps``
    reached with the rule off: ``stop_patience = 0``, or ``eval_every`` ≥ ``steps``, so that no
    evaluation falls inside the run) or ``"diverged"`` (a particle became NaN or infinite)."""

    x: Tensor
    snapshots: np.ndarray
    snapshot_times: np.ndarray
    action: float
    history: dict[str, list[float]] = field(default_factory=dict)
    stop: str = "completed"

    @property
    def finite(self) -> bool:
        return self.stop != "diverged"


class Snapshots:
    """States of the first ``n_traj`` particles at evenly spaced steps of a run whose length is
    not known in advance, in O(count) memory: states are kept every ``stride`` steps, and when
    more than 2·count are held every other one is dropped and the stride doubled; :meth:`pick`
    returns at most ``count`` of them, evenly spread from step 0 to the last."""

    def __init__(self, count: int, n_traj: int, stride: int = 1) -> None:
        self.count, self.n_traj, self.stride = max(count, 2), n_traj, max(stride, 1)
        self.steps: list[int] = []
        self.states: list[np.ndarray] = []

    def offer(self, k: int, x: Tensor, force: bool = False) -> None:
        if k % self.stride and not force:
            return
        if self.steps and self.steps[-1] == k:
            return
        self.steps.append(k)
        self.states.append(x[: self.n_traj].double().cpu().numpy())
        if len(self.steps) > 2 * self.count:
            keep = [i for i, s in enumerate(self.steps) if s % (2 * self.stride) == 0]
            keep += [] if keep[-1] == len(self.steps) - 1 else [len(self.steps) - 1]
            self.steps = [self.steps[i] for i in keep]
            self.states = [self.states[i] for i in keep]
            self.stride *= 2

    def pick(self) -> tuple[np.ndarray, np.ndarray]:
        """(states (k, n_traj, d), steps (k,)), the first and last always included."""
        idx = sorted({int(round(i)) for i in np.linspace(0, len(self.steps) - 1, self.count)})
        return np.stack([self.states[i] for i in idx]), np.asarray([self.steps[i] for i in idx])


def integrate(
    x0: Tensor,
    y: Tensor,
    velocity: Field,
    cfg: object,
    state: FieldState,
    evaluate: Callable[[Tensor], float],
    rule: StopRule | None = None,
    bar: object | None = None,
) -> ParticleRun:
    """Move x0 (n, d) for at most ``cfg.steps`` steps of ``cfg.dt`` with ``cfg.integrator``.

    ``evaluate(x)`` (the divergence to fresh target samples) is recorded at step 0, every
    ``cfg.eval_every`` steps and at the end, with the mean squared speed of the last step; after
    each evaluation ``rule`` (None: never) may stop the run (ParticleRun.stop says why).
    """
    dt, steps = cfg.dt, cfg.steps
    snaps = Snapshots(cfg.n_snapshots, min(cfg.n_traj, len(x0)))
    x = x0.clone()
    snaps.offer(0, x, force=True)
    hist: dict[str, list[float]] = {"step": [0.0], "time": [0.0], "sinkhorn": [evaluate(x)],
                                    "mean_speed2": [math.nan]}
    active = rule is not None and cfg.eval_every < steps
    action, stop = 0.0, "max_iter" if active else "completed"
    for k in range(1, steps + 1):
        v = velocity(x, y, cfg, state)
        if cfg.integrator == "heun":
            v = 0.5 * (v + velocity(x + dt * v, y, cfg, state))
        x_new = x + dt * v
        speed2 = float(v.pow(2).sum(1).mean())
        if not (math.isfinite(speed2) and bool(torch.isfinite(x_new).all())):
            stop = "diverged"
            break
        action += speed2 * dt
        x = x_new
        if bar is not None:
            bar.update(1)
        snaps.offer(k, x)
        if k % cfg.eval_every == 0 or k == steps:
            hist["step"].append(float(k))
            hist["time"].append(k * dt)
            hist["sinkhorn"].append(evaluate(x))
            hist["mean_speed2"].append(speed2)
            verdict = rule.check(hist["sinkhorn"]) if active else None
            if verdict is not None:
                stop = verdict
                break
    snaps.offer(int(hist["step"][-1]) if stop != "diverged" else k - 1, x, force=True)
    states, at = snaps.pick()
    return ParticleRun(x, states, at * dt, action, hist, stop)
