"""Likelihood-trained baseline for the neural solver (``terminal: {kind: likelihood}``): the same
potential network U_θ, trained by OT-Flow's objective (Onken et al. 2021) instead of a terminal
cost of the mean-field game.

The data y ~ π are pulled back along the characteristics dx/dt = −∇U_θ/λ from t = T to 0,
X_t(y) = X(t; y, T), and the objective is

    J(θ) = E_{y~π}[ −log ρ_T(y) ]  +  E_{y~π}[ ∫_0^T |∇U_θ(X_t(y), t)|²/(2λ) dt ]

with, by the continuity equation along characteristics (∇·v = −ΔU_θ/λ),

    log ρ_T(y) = log ρ0(X_0(y)) + ∫_0^T ΔU_θ(X_t(y), t)/λ dt.

The augmented state of dynamics.py integrated from (y, 0, 0, 0) at T down to 0 returns every
time integral negated: ell(0) = −∫_0^T ΔU/λ, K(0) = −∫_0^T |∇U|²/(2λ) and H(0) = −∫_0^T (HJ
residual)²; so log ρ_T(y) = log ρ0(x_0) − ell(0), the kinetic energy is −K(0), and the HJ
penalty −H(0)/T. ΔU is exact for dim <= 10 and Hutchinson's estimate above
(dynamics.resolve_divergence).

The kinetic term is OT-Flow's: it is measured along the *data's* trajectories, so J is not the
MFG objective λ∫∫½|v|²ρ + G(ρ_T) of the flow started at ρ0 (which is what ``kinetic_energy``
reports); the two agree only where ρ_T = π. Its minimizer is known for Gaussians (per
coordinate, ρ0 = N(m0, s0²), π = N(m1, s1²), τ = T/λ): for a flow whose time-0 map S = X_0
pushes π to μ = S#π, E_π[−log ρ_T] = H(π) + KL(μ‖ρ0) and the data's kinetic energy is at least
E_π|S(y) − y|²/(2τ) (straight lines), so

    min J = H(π) + min_μ [ KL(μ‖ρ0) + W2²(π, μ)/(2τ) ],

one JKO step of KL(·‖ρ0) started at π: μ = N(m, s²) with (m, s) = mfg.analytic.
kl_terminal_gaussian(m1, s1, m0, s0, τ), and ρ_T = S⁻¹#ρ0 = N(m1 + (s1/s)(m0 − m), (s1·s0/s)²),
which tends to π as λ → 0 but is not π.

``hj_weight`` adds OT-Flow's HJ regularizer, the mean of −H(0)/(Tλ) over the data. For data on a
k < d dimensional set, inf J = −∞ (a flow that contracts the normal directions around the set
makes ρ_T arbitrarily large on it while the data barely move): the likelihood has no minimizer
and the NLL can fall without bound; where it or its gradients overflow, the non-finite guard
stops the run (NeuralTrainingError).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mfg.scenario import Scenario
from solvers.neural.distributed import Group
from solvers.neural.dynamics import Dynamics, hj_path_integral, integrate
from solvers.neural.terminal import torch_log_density
from solvers.neural.training import Trainer, rademacher

LogDensity = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PullBack:
    """The data y (n, d) pulled back to t = 0: ``x0`` (n, d), ``log_density`` log ρ_T(y) (n,),
    ``kinetic`` ∫_0^T |∇U|²/(2λ) dt along X_t(y) (n,), ``hj`` ∫_0^T (−∂tU + |∇U|²/(2λ))² dt
    (n,; zeros unless the dynamics integrate it)."""

    x0: torch.Tensor
    log_density: torch.Tensor
    kinetic: torch.Tensor
    hj: torch.Tensor


def pull_back(dyn: Dynamics, y: torch.Tensor, T: float, log_rho0: LogDensity, method: str,
              nt: int, adjoint: bool = False, rtol: float = 1e-5,
              atol: float = 1e-5) -> PullBack:
    """Integrate the characteristics of ``dyn`` (which must integrate ell: ``divergence`` set)
    backwards from the data y (n, d) at time T to 0 and return :class:`PullBack` (module
    docstring: each backward integral comes back negated). ``log_rho0`` maps (n, d) -> (n,)
    in torch (the gradient flows through x_0)."""
    if dyn.divergence is None:
        raise ValueError("pull_back needs dynamics that integrate the divergence")
    times = torch.tensor([T, 0.0], dtype=y.dtype, device=y.device)
    xs, ells, ks, hs = integrate(dyn, y, times, method, nt, adjoint, rtol, atol)
    x0 = xs[-1]
    hj = hj_path_integral(dyn, hs[-1], y, T, x0, 0.0, method, nt) if dyn.hj else -hs[-1]
    return PullBack(x0=x0, log_density=log_rho0(x0) - ells[-1], kinetic=-ks[-1], hj=hj)


class LikelihoodTrainer(Trainer):
    """:class:`Trainer` whose generator loss is OT-Flow's objective (module docstring) on global
    batches of ``batch_size`` data points from the target's sampler; no critic, no terminal
    residual. It overrides only :meth:`draw_batch` and :meth:`generator_loss`, so the base
    class's step (DDP under torchrun), checkpoints, resume and non-finite guard apply. The
    history's ``terminal_cost`` is the batch NLL (nats), ``kinetic_energy`` the data's kinetic
    energy."""

    def __init__(self, scenario: Scenario, device: torch.device, dtype: torch.dtype,
                 group: Group | None = None):
        super().__init__(scenario, device, dtype, group)
        self.log_rho0 = torch_log_density(scenario.source)
        self.dyn = Dynamics(self.potential, self.lam, self.divergence,
                            hj=self.cfg.hj_weight > 0, train=True)

    def pull_back(self, y: torch.Tensor, dyn: Dynamics, noise: torch.Tensor | None,
                  adjoint: bool) -> PullBack:
        """:func:`pull_back` of y (n, d) with this run's integrator; ``noise`` is Hutchinson's
        ε (n, d) (used only when the divergence is ``hutchinson``)."""
        dyn.noise = noise if self.divergence == "hutchinson" else None
        cfg = self.cfg
        return pull_back(dyn, y, self.T, self.log_rho0, self.method, cfg.nt, adjoint,
                         cfg.rtol, cfg.atol)

    def draw_batch(self) -> np.ndarray:
        """This process's shard (B/N, d) of a global batch of B = ``batch_size`` data points."""
        return self.group.shard(self.scenario.target.sample(self.cfg.batch_size, self.rng))

    def generator_loss(self, y_np: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        """J_B = mean data kinetic energy − mean log ρ_T(y) (+ hj_weight · HJ penalty along the
        data's paths) over the global batch whose shard y_np (n, d) this process holds; parts as
        :meth:`Trainer.generator_loss` (``terminal_cost``: the batch NLL)."""
        cfg, gather = self.cfg, self.group.gather
        y = self.tensor(y_np)
        noise = None
        if self.divergence == "hutchinson":  # a draw of the global batch, as in the base class
            noise = self.group.shard(rademacher((cfg.batch_size, self.dim), y, self.gen))
        pb = self.pull_back(y, self.dyn, noise, cfg.adjoint)
        ke = gather(pb.kinetic).mean()
        nll = -gather(pb.log_density).mean()
        hj_pen = gather(pb.hj).mean() / (self.T * self.lam)
        loss = ke + nll
        if cfg.hj_weight > 0:
            loss = loss + cfg.hj_weight * hj_pen
        parts = {"kinetic_energy": ke.detach(), "terminal_cost": float(nll.detach()),
                 "generator_terminal": nll.detach(), "hj_penalty": hj_pen.detach(),
                 "terminal_penalty": torch.zeros((), dtype=self.dtype, device=self.device),
                 "critic_objective": math.nan}
        return loss, parts


def inversion_error(tr: LikelihoodTrainer, x0: torch.Tensor, x_t: torch.Tensor,
                    gen: torch.Generator) -> float:
    """RMS |X_0(x_T) − x_0| / RMS |x_0 − mean x_0|: the source samples x0 (n, d), moved
    forward to x_t (n, d), pulled back with the same integrator. The likelihood is that of the
    discrete backward map; where it is not the inverse of the forward one (steps too coarse for
    the field), the trained NLL can fall below that of any density and the samples drawn
    forward do not follow it (seen with midpoint, nt = 2, λ = 0.05: NLL −30 where the exact
    minimum is 1.9)."""
    dyn = Dynamics(tr.solution, tr.lam, tr.divergence, hj=False, train=False)
    noise = rademacher(tuple(x_t.shape), x_t, gen) if tr.divergence == "hutchinson" else None
    back = tr.pull_back(x_t, dyn, noise, adjoint=False).x0
    err = ((back - x0) ** 2).sum(dim=1).mean().sqrt()
    spread = ((x0 - x0.mean(dim=0)) ** 2).sum(dim=1).mean().sqrt().clamp_min(1e-300)
    return float(err / spread)


def data_metrics(tr: LikelihoodTrainer, y: torch.Tensor,
                 gen: torch.Generator) -> dict[str, float]:
    """On fresh data y (n, d), without gradients: ``terminal_cost`` the NLL E_π[−log ρ_T]
    (nats) and ``kinetic_energy_data`` the data's kinetic energy (module docstring)."""
    dyn = Dynamics(tr.solution, tr.lam, tr.divergence, hj=False, train=False)
    noise = rademacher(tuple(y.shape), y, gen) if tr.divergence == "hutchinson" else None
    pb = tr.pull_back(y, dyn, noise, adjoint=False)
    nll = -pb.log_density.detach().double().cpu().numpy()
    return {"terminal_cost": float(np.mean(nll)),
            "kinetic_energy_data": float(pb.kinetic.detach().double().mean())}
