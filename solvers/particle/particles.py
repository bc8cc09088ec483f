"""The interacting-particle solver: x_{k+1} = x_k + Δt v(x_k) (Euler) or the Heun average of
v(x_k) and v(x_k + Δt v(x_k)), v a field of :mod:`solvers.particle.fields` against a fixed bank
of target samples."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from solvers.particle.common import snapshot_steps
from solvers.particle.fields import Field, FieldState

Tensor = torch.Tensor


@dataclass
class ParticleRun:
    """Final particles (n, d), snapshots (k, n_traj, d) at ``snapshot_times``, the action
    Σ_k mean_i |Δx_i/Δt|² Δt, and the history (equal-length lists) at evaluation steps."""

    x: Tensor
    snapshots: np.ndarray
    snapshot_times: np.ndarray
    action: float
    history: dict[str, list[float]] = field(default_factory=dict)
    finite: bool = True


def integrate(
    x0: Tensor,
    y: Tensor,
    velocity: Field,
    cfg: object,
    state: FieldState,
    evaluate: Callable[[Tensor], float],
    bar: object | None = None,
) -> ParticleRun:
    """Move x0 (n, d) for ``cfg.steps`` steps of ``cfg.dt`` with ``cfg.integrator``.

    ``evaluate(x)`` (the divergence to fresh target samples) is recorded at step 0, every
    ``cfg.eval_every`` steps and at the end, with the mean squared speed of the last step. The
    run stops early (``finite = False``) when a particle becomes NaN or infinite.
    """
    dt, steps = cfg.dt, cfg.steps
    n_traj = min(cfg.n_traj, len(x0))
    keep = set(snapshot_steps(steps, cfg.n_snapshots))
    x = x0.clone()
    snaps, times = [x[:n_traj].double().cpu().numpy()], [0.0]
    hist: dict[str, list[float]] = {"step": [0.0], "time": [0.0], "sinkhorn": [evaluate(x)],
                                    "mean_speed2": [math.nan]}
    action, finite = 0.0, True
    for k in range(1, steps + 1):
        v = velocity(x, y, cfg, state)
        if cfg.integrator == "heun":
            v = 0.5 * (v + velocity(x + dt * v, y, cfg, state))
        x_new = x + dt * v
        speed2 = float(v.pow(2).sum(1).mean())
        if not (math.isfinite(speed2) and bool(torch.isfinite(x_new).all())):
            finite = False
            break
        action += speed2 * dt
        x = x_new
        if bar is not None:
            bar.update(1)
        if k in keep:
            snaps.append(x[:n_traj].double().cpu().numpy())
            times.append(k * dt)
        if k % cfg.eval_every == 0 or k == steps:
            hist["step"].append(float(k))
            hist["time"].append(k * dt)
            hist["sinkhorn"].append(evaluate(x))
            hist["mean_speed2"].append(speed2)
    return ParticleRun(x, np.stack(snaps), np.asarray(times), action, hist, finite)
