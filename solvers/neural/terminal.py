"""Terminal-cost estimators G(ρ_T) from samples (DESIGN.md §1 table).

* ``f`` (KL): G = E_{ρ_T}[log ρ_T(x) − log π(x)], with log ρ_T along characteristics and log π
  in torch (:func:`torch_log_density`).
* ``lipschitz_f`` / ``w1``: the variational form over a critic φ with Lip(φ) <= L,
  G = sup_φ E_P[φ] − Λ_Q(φ) with P = ρ_T, Q = π and (:func:`critic_objective`)
      KL (Donsker–Varadhan):  Λ_Q(φ) = log E_Q[e^φ]
      alpha:                  Λ_Q(φ) = ν + E_Q[f*(φ − ν)],
                              f*(y) = ((α − 1) y_+)^{α/(α−1)}/α + 1/(α(α − 1))
      w1:                     Λ_Q(φ) = E_Q[φ]
  The generator's share is E_P[φ(x_T)] (the rest does not depend on θ).
* ``mmd``: MMD_k²(ρ_T, π), V-statistic; ``sinkhorn``: debiased S_ε (geomloss).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable

import numpy as np
import torch

from mfg.distributions import Distribution, Gaussian, Mixture
from mfg.scenario import TerminalCost
from solvers.neural.networks import Critic

CRITIC_KINDS = ("lipschitz_f", "w1")


def _gaussian_log_density(g: Gaussian, x: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(g.mean(), dtype=x.dtype, device=x.device)
    chol = torch.as_tensor(np.linalg.cholesky(g.cov()), dtype=x.dtype, device=x.device)
    z = torch.linalg.solve_triangular(chol, (x - m).T, upper=False).T
    logdet = 2.0 * torch.log(torch.diagonal(chol)).sum()
    return -0.5 * (z**2).sum(dim=1) - 0.5 * logdet - 0.5 * x.shape[1] * math.log(2 * math.pi)


def torch_log_density(dist: Distribution) -> Callable[[torch.Tensor], torch.Tensor]:
    """log π(x) for x (n, d) -> (n,), differentiable: Gaussian or mixture of Gaussians."""
    if isinstance(dist, Gaussian):
        return lambda x: _gaussian_log_density(dist, x)
    if isinstance(dist, Mixture):
        def logp(x: torch.Tensor) -> torch.Tensor:
            terms = [math.log(w) + _gaussian_log_density(c, x)
                     for w, c in zip(dist.weights, dist.components, strict=True) if w > 0]
            return torch.logsumexp(torch.stack(terms), dim=0)
        return logp
    raise TypeError(f"no torch log-density for {type(dist).__name__}")


def critic_objective(term: TerminalCost, critic: Critic, phi_p: torch.Tensor,
                     phi_q: torch.Tensor) -> torch.Tensor:
    """E_P[φ] − Λ_Q(φ) (module docstring) from φ on P-samples (n,) and Q-samples (m,)."""
    if term.kind == "w1":
        return phi_p.mean() - phi_q.mean()
    if term.f == "kl":
        return phi_p.mean() - (torch.logsumexp(phi_q, dim=0) - math.log(phi_q.shape[0]))
    if term.f == "alpha":
        a = term.alpha
        y = torch.relu((a - 1.0) * (phi_q - critic.nu))
        fstar = y ** (a / (a - 1.0)) / a + 1.0 / (a * (a - 1.0))
        return phi_p.mean() - critic.nu - fstar.mean()
    raise ValueError(f"no variational form for {term.kind}/{term.f}")


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: str, bandwidth: float) -> torch.Tensor:
    """MMD_k² (V-statistic) between the samples x (n, d) and y (m, d); kernels as mfg.metrics."""
    def mean_k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        if kernel == "gaussian":
            return torch.exp(-d2 / (2 * bandwidth**2)).mean()
        if kernel == "laplace":
            return torch.exp(-torch.sqrt(d2 + 1e-12) / bandwidth).mean()
        return -torch.sqrt(d2 + 1e-12).mean()  # energy
    return mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)


def sinkhorn_loss(blur: float, p: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """geomloss debiased Sinkhorn divergence with cost |x − y|^p/p."""
    with contextlib.redirect_stdout(io.StringIO()):  # pykeops prints on stdout without CUDA
        import geomloss
    return geomloss.SamplesLoss("sinkhorn", p=p, blur=blur, debias=True, backend="tensorized")


def sample_divergence(term: TerminalCost) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """G(x, y) for the sample-based kinds ``mmd`` and ``sinkhorn``."""
    if term.kind == "mmd":
        return lambda x, y: mmd2(x, y, term.kernel, term.bandwidth)
    if term.kind == "sinkhorn":
        return sinkhorn_loss(term.blur, term.p)
    raise ValueError(f"{term.kind} is not a sample-based terminal cost")
