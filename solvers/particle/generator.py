"""One-step generators (issue #5 item 4): g_θ(z) = z + MLP_θ(z), z ~ the source μ.

* :func:`train_generator` — drifting-style training against any field V of
  :mod:`solvers.particle.fields`: loss ‖g_θ(z) − stopgrad(g_θ(z) + η V(g_θ(z)))‖² (whose value is
  η²|V|² and whose gradient moves g_θ(z) along V).
* :func:`train_jko` (in :mod:`solvers.particle.jko`) — parametric JKO steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from solvers.particle.common import snapshot_steps
from solvers.particle.fields import Field, FieldState, mlp

Tensor = torch.Tensor


class ResidualGenerator(nn.Module):
    """g(z) = z + MLP(z) (SiLU, ``depth`` hidden layers of ``width``); the last layer starts at
    zero, so the initial generator is the identity and g_0#μ = μ."""

    def __init__(self, dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.net = mlp(dim, dim, width, depth)
        last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, z: Tensor) -> Tensor:
        return z + self.net(z)


@dataclass
class TrainRun:
    """The trained generator, snapshots g(z_fix) (k, n_show, d) at the recorded steps, history."""

    generator: ResidualGenerator
    snapshots: np.ndarray
    history: dict[str, list[float]] = field(default_factory=dict)
    finite: bool = True


def train_generator(
    gen: ResidualGenerator,
    sample_z: Callable[[int], Tensor],
    bank: Tensor,
    velocity: Field,
    cfg: Any,
    state: FieldState,
    z_fix: Tensor,
    evaluate: Callable[[Tensor], float],
    bar: Any = None,
) -> TrainRun:
    """``cfg.train_steps`` Adam steps on mean_b ‖g(z_b) − stopgrad(g(z_b) + η V(g(z_b)))‖², V
    against ``cfg.batch`` samples of the target bank (drawn with ``state.generator``).

    History (every ``eval_every`` steps and at the end): step, mean loss since the last record,
    Sinkhorn divergence of g(z_fix) to fresh target samples.
    """
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    keep = set(snapshot_steps(cfg.train_steps, cfg.n_snapshots))
    n_show = min(len(z_fix), cfg.n_traj if hasattr(cfg, "n_traj") else 1000)
    with torch.no_grad():
        x_fix = gen(z_fix)
    snaps = [x_fix[:n_show].double().cpu().numpy()]
    hist: dict[str, list[float]] = {"step": [0.0], "loss": [math.nan],
                                    "sinkhorn": [evaluate(x_fix)]}
    running, count, finite = 0.0, 0, True
    for k in range(1, cfg.train_steps + 1):
        idx = torch.randint(0, len(bank), (cfg.batch,), generator=state.generator)
        x = gen(sample_z(cfg.batch))
        v = velocity(x.detach(), bank[idx.to(bank.device)], cfg, state)
        loss = (x - (x + cfg.eta * v).detach()).pow(2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running, count = running + float(loss.detach()), count + 1
        if not math.isfinite(running):
            finite = False
            break
        if bar is not None:
            bar.update(1)
        record = k % cfg.eval_every == 0 or k == cfg.train_steps
        if record or k in keep:
            with torch.no_grad():
                x_fix = gen(z_fix)
        if k in keep:
            snaps.append(x_fix[:n_show].double().cpu().numpy())
        if record:
            hist["step"].append(float(k))
            hist["loss"].append(running / max(count, 1))
            hist["sinkhorn"].append(evaluate(x_fix))
            running, count = 0.0, 0
    return TrainRun(gen, np.stack(snaps), hist, finite)
