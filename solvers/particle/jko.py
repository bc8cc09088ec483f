"""Parametric JKO steps (Caucheteux, Bonet, Korba; issue #5 item 4).

g_{k+1} = argmin_θ D(g_θ#μ ‖ π) + E_z ‖g_θ(z) − g_k(z)‖² / (2τ), g_k frozen, g_0 = identity,
solved by ``inner_steps`` Adam steps warm-started at g_k. D is estimated on mini-batches:

* ``mmd``: MMD_k²(g_θ#μ, π), V-statistic, differentiable in θ.
* ``kl_dv``: KL by Donsker–Varadhan, D = sup_φ E_{g#μ} φ − log E_π e^φ; the critic φ is refitted
  (``critic_steps`` Adam steps) before each generator step, whose loss is then E_z φ(g_θ(z)) (the
  first variation of D in its first argument).
* ``lipschitz_f``: the same with the one-sided gradient penalty |∇φ| ≤ L (the (f, Γ_L) KL).

``tau = None`` drops the proximal term: plain minimization of D for outer × inner steps (the
baseline the issue compares against).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from solvers.particle.fields import FieldState, fit_critic
from solvers.particle.generator import ResidualGenerator, TrainRun

Tensor = torch.Tensor


def mmd2_torch(x: Tensor, y: Tensor, kernel: str, h: float, a: float = 1.0) -> Tensor:
    """MMD_k²(x, y) = mean k(x, x') + mean k(y, y') − 2 mean k(x, y) (V-statistic), dense and
    differentiable (meant for batches); k as in :mod:`solvers.particle.kernels`."""

    def k(u: Tensor, v: Tensor) -> Tensor:
        d2 = ((u * u).sum(1)[:, None] + (v * v).sum(1)[None, :] - 2 * u @ v.T).clamp_min(1e-12)
        if kernel == "gaussian":
            return torch.exp(-0.5 * d2 / h**2)
        if kernel == "laplace":
            return torch.exp(-d2.sqrt() / h)
        if kernel == "energy":
            return -d2.sqrt()
        return -(d2 ** (0.5 * a))

    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def train_jko(
    gen: ResidualGenerator,
    sample_z: Callable[[int], Tensor],
    bank: Tensor,
    cfg: Any,
    state: FieldState,
    z_fix: Tensor,
    evaluate: Callable[[Tensor], float],
    bar: Any = None,
) -> tuple[TrainRun, float]:
    """Run ``cfg.outer_steps`` JKO steps; returns the run (snapshots g_k(z_fix) for k = 0..K,
    history per outer step: step, divergence estimate, proximal term, Sinkhorn to fresh target)
    and Σ_k E‖g_{k+1}(z_fix) − g_k(z_fix)‖²/Δt with Δt = τ (1 when τ is None)."""
    kernel = cfg.kernel or "gaussian"
    dt = cfg.tau if cfg.tau is not None else 1.0
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    with torch.no_grad():
        x_prev_fix = gen(z_fix)
    snaps = [x_prev_fix[:1000].double().cpu().numpy()]
    hist: dict[str, list[float]] = {"step": [0.0], "divergence": [math.nan],
                                    "proximal": [0.0], "sinkhorn": [evaluate(x_prev_fix)]}
    action, finite = 0.0, True
    for k in range(1, cfg.outer_steps + 1):
        frozen = copy.deepcopy(gen).requires_grad_(False)
        div_sum = prox_sum = 0.0
        for _ in range(cfg.inner_steps):
            z = sample_z(cfg.batch)
            idx = torch.randint(0, len(bank), (cfg.batch,), generator=state.generator)
            y = bank[idx.to(bank.device)]
            x = gen(z)
            if cfg.divergence == "mmd":
                div = mmd2_torch(x, y, kernel, cfg.bandwidth, cfg.riesz_a)
                gen_loss = div
            else:
                critic = fit_critic(x, y, cfg, state, lipschitz=cfg.divergence == "lipschitz_f")
                phi_x = critic(x)[:, 0]
                with torch.no_grad():
                    phi_y = critic(y)[:, 0]
                    div = phi_x.mean() - (torch.logsumexp(phi_y, 0) - math.log(len(phi_y)))
                gen_loss = phi_x.mean()
            loss = gen_loss
            if cfg.tau is not None:
                with torch.no_grad():
                    x_old = frozen(z)
                prox = (x - x_old).pow(2).sum(1).mean() / (2 * cfg.tau)
                loss = loss + prox
                prox_sum += float(prox.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            div_sum += float(div.detach())
            if bar is not None:
                bar.update(1)
        if not math.isfinite(div_sum):
            finite = False
            break
        with torch.no_grad():
            x_fix = gen(z_fix)
        action += float((x_fix - x_prev_fix).pow(2).sum(1).mean()) / dt
        x_prev_fix = x_fix
        snaps.append(x_fix[:1000].double().cpu().numpy())
        hist["step"].append(float(k))
        hist["divergence"].append(div_sum / cfg.inner_steps)
        hist["proximal"].append(prox_sum / cfg.inner_steps)
        last = k == cfg.outer_steps
        record = last or (k * cfg.inner_steps) % cfg.eval_every < cfg.inner_steps
        hist["sinkhorn"].append(evaluate(x_fix) if record else math.nan)
    return TrainRun(gen, np.stack(snaps), hist, finite), action
