"""What a trained potential yields: terminal samples, trajectories and metrics, and for dim <= 2
the fields U and ρ on the scenario's grid (DESIGN.md §3).

ρ on the grid: from a grid point x at time t the characteristic is integrated backwards to
x_0 = X(0; x, t) with ell(s) = ∫_t^s ΔU/λ, so that

    log ρ(x, t) = log ρ0(x_0) + ∫_0^t ΔU(X(s), s)/λ ds = log ρ0(x_0) − ell(0)

(the continuity equation along characteristics, ∇·v = −ΔU/λ; exact Laplacian as dim <= 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr

from mfg.metrics import EVAL_BLUR, EVAL_P, sinkhorn_divergence
from mfg.scenario import Scenario
from solvers.neural.dynamics import Dynamics, integrate
from solvers.neural.likelihood import LikelihoodTrainer, data_metrics, inversion_error
from solvers.neural.terminal import critic_objective
from solvers.neural.training import Trainer, rademacher

#: points per chunk when evaluating on a grid
CHUNK = 8192
#: largest number of trajectory points used for the HJ residual metric
HJ_POINTS = 1000
#: largest sample of each law in ``sinkhorn_to_target``: its cost grows as n² and its sampling
#: bias with 1/n, so a fixed size keeps it cheap and comparable between runs that evaluate more
#: samples (the manifold study asks for --draws × 5,000)
SINKHORN_POINTS = 5000


#: the stages of :func:`evaluate`, in order, as it announces them (``on_stage``)
EVALUATION_STAGES = ("terminal samples", "terminal cost and residuals", "Sinkhorn")


def evaluate(tr: Trainer, on_stage: Callable[[str], None] | None = None,
             ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Terminal samples (eval_samples, d), trajectories (nt + 1, n_trajectories, d) and metrics:
    kinetic_energy, terminal_cost, objective, hj_residual, terminal_residual,
    sinkhorn_to_target (on the first min(eval_samples, SINKHORN_POINTS) of each law). Uses its
    own random streams (seed, 1), so training is not disturbed. ``on_stage(name)`` is called as
    each of :data:`EVALUATION_STAGES` begins (the Sinkhorn stage's name with its size: in R^64
    it is minutes on one CPU core).

    Terminal samples always come forward from the source. For ``likelihood`` terminal_cost is the
    NLL E_π[−log ρ_T] of eval_samples fresh data (nats), ``kinetic_energy_data`` their kinetic
    energy along the pulled-back paths, objective = kinetic_energy_data + terminal_cost (the
    quantity OT-Flow minimizes; ``kinetic_energy`` stays the flow of ρ0's), and
    ``inversion_error`` how far the backward map is from inverting the forward one."""
    sc, cfg = tr.scenario, tr.cfg
    stage = on_stage if on_stage is not None else (lambda name: None)
    stage(EVALUATION_STAGES[0])
    rng = np.random.default_rng([sc.seed, 1])
    gen = torch.Generator(device=tr.device)
    gen.manual_seed(sc.seed + 1)
    n = cfg.eval_samples
    x0_np = sc.source.sample(n, rng)
    x0 = tr.tensor(x0_np)
    div = tr.divergence if sc.source.has_density else None
    dyn = Dynamics(tr.solution, tr.lam, div, hj=False, train=False)
    if div == "hutchinson":
        dyn.noise = rademacher(tuple(x0.shape), x0, gen)
    times = torch.linspace(0.0, tr.T, cfg.nt + 1, dtype=tr.dtype, device=tr.device)
    xs, ells, ks, _ = integrate(dyn, x0, times, tr.method, cfg.nt, False, cfg.rtol, cfg.atol)
    x_t = xs[-1]
    y_np = sc.target.sample(n, rng)
    y = tr.tensor(y_np)
    metrics: dict[str, float] = {"kinetic_energy": float(ks[-1].mean())}
    stage(EVALUATION_STAGES[1])
    g = None
    if tr.critic is not None:
        with torch.no_grad():
            metrics["terminal_cost"] = float(critic_objective(tr.term, tr.critic,
                                                              tr.critic(x_t), tr.critic(y)))
    elif tr.needs_logp:
        g = tr.tensor(sc.source.log_density(x0_np)) + ells[-1] - tr.log_pi(x_t)
        metrics["terminal_cost"] = float(g.mean())
    elif isinstance(tr, LikelihoodTrainer):
        metrics.update(data_metrics(tr, y, gen))  # NLL of the fresh data, their kinetic energy
        metrics["inversion_error"] = inversion_error(tr, x0, x_t, gen)
    else:
        with torch.no_grad():
            metrics["terminal_cost"] = float(tr.sample_div(x_t, y))
    # likelihood: the objective it minimizes, with the kinetic energy along the data's paths
    metrics["objective"] = (metrics.get("kinetic_energy_data", metrics["kinetic_energy"])
                            + metrics["terminal_cost"])
    metrics["hj_residual"] = hj_residual(tr, xs[:, : min(n, HJ_POINTS)], times)
    res = terminal_residual(tr, x_t[: min(n, HJ_POINTS)], None if g is None else g[:HJ_POINTS])
    if res is not None:
        metrics["terminal_residual"] = res
    m = min(n, SINKHORN_POINTS)
    stage(f"{EVALUATION_STAGES[2]}, {m} x {m} points")
    metrics["sinkhorn_to_target"] = sinkhorn_divergence(
        x_t[:m].detach().cpu().double(), torch.as_tensor(y_np[:m]), blur=EVAL_BLUR, p=EVAL_P)
    samples = {
        "terminal": x_t.detach().cpu().numpy().astype(np.float64),
        "trajectories": xs[:, : cfg.n_trajectories].detach().cpu().numpy().astype(np.float64),
    }
    return samples, metrics


def hj_residual(tr: Trainer, xs: torch.Tensor, times: torch.Tensor) -> float:
    """Relative HJ residual along trajectories xs (len(times), m, d):
    mean |−∂tU + |∇U|²/(2λ)| / mean (|∂tU| + |∇U|²/(2λ))."""
    num = den = 0.0
    for x, t in zip(xs, times, strict=True):
        with torch.no_grad():
            _, gx, gt, _ = tr.solution.derivatives(x, t)
        kin = (gx**2).sum(dim=1) / (2 * tr.lam)
        num += float((kin - gt).abs().mean())
        den += float((gt.abs() + kin).mean())
    return num / max(den, 1e-300)


def terminal_residual(tr: Trainer, x_t: torch.Tensor, g: torch.Tensor | None) -> float | None:
    """Critic kinds: mean |∇U(x_T, T) − ∇φ(x_T)| / mean |∇φ(x_T)|; KL: std(U(x_T, T) − g)/std(g)
    with g = log(ρ_T/π)(x_T) (U(T) = δG/δρ up to a constant). None for mmd/sinkhorn."""
    x = x_t.detach().requires_grad_(True)
    if tr.critic is not None:
        with torch.no_grad():
            _, gx, _, _ = tr.solution.derivatives(x, tr.T)
        (gphi,) = torch.autograd.grad(tr.critic(x).sum(), x)
        num = (gx - gphi).norm(dim=1).mean()
        return float(num / gphi.norm(dim=1).mean().clamp_min(1e-300))
    if g is not None:
        with torch.no_grad():
            u = tr.solution(x, torch.tensor(tr.T))
        return float(torch.std(u - g) / torch.std(g).clamp_min(1e-300))
    return None


def _cell_centres(bounds: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = bounds
    return lo + (np.arange(n) + 0.5) * (hi - lo) / n


def has_grid_fields(sc: Scenario) -> bool:
    """Whether :func:`fields_on_grid` has fields to give: dim <= 2 and a domain."""
    return sc.dim <= 2 and sc.domain is not None


def fields_on_grid(tr: Trainer) -> xr.Dataset | None:
    """U and ρ (dims ("t", "x1"[, "x2"])) at grid_nt + 1 times on grid_n cells per axis of the
    scenario's domain; None when dim > 2 or there is no domain. ρ is left out when the source
    has no density."""
    sc, cfg = tr.scenario, tr.cfg
    if not has_grid_fields(sc):
        return None
    axes = [_cell_centres(b, cfg.grid_n) for b in sc.domain.bounds]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, sc.dim)
    shape = tuple(len(a) for a in axes)
    times = np.linspace(0.0, sc.T, cfg.grid_nt + 1)
    space = tuple(f"x{k + 1}" for k in range(sc.dim))
    u_all = np.empty((len(times), *shape))
    rho_all = np.empty((len(times), *shape))
    dyn = Dynamics(tr.solution, tr.lam, "exact", hj=False, train=False)
    for i, t in enumerate(times):
        u_parts, logp_parts = [], []
        for start in range(0, len(mesh), CHUNK):
            xc = tr.tensor(mesh[start : start + CHUNK])
            with torch.no_grad():
                u_parts.append(tr.solution(xc, torch.tensor(t)).double().cpu().numpy())
            if not sc.source.has_density:
                continue
            if t == 0.0:
                logp_parts.append(sc.source.log_density(mesh[start : start + CHUNK]))
                continue
            steps = max(1, math.ceil(cfg.nt * t / sc.T - 1e-9))
            tt = torch.tensor([t, 0.0], dtype=tr.dtype, device=tr.device)
            xs, ells, _, _ = integrate(dyn, xc, tt, tr.method, steps, False, cfg.rtol,
                                       cfg.atol, span=t)
            x0 = xs[-1].double().cpu().numpy()
            logp_parts.append(sc.source.log_density(x0) - ells[-1].double().cpu().numpy())
        u_all[i] = np.concatenate(u_parts).reshape(shape)
        if sc.source.has_density:
            rho_all[i] = np.exp(np.concatenate(logp_parts)).reshape(shape)
    coords = {"t": times, **{name: ax for name, ax in zip(space, axes, strict=True)}}
    data = {"U": (("t", *space), u_all, {"long_name": "value function"})}
    if sc.source.has_density:
        data["rho"] = (("t", *space), rho_all,
                       {"long_name": "density", "method": "log-density along characteristics"})
    return xr.Dataset(data, coords=coords)
