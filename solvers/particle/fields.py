"""Velocity fields estimated from samples (DESIGN.md §2 "particle"; issue #5).

Every field is ``field(x, y, cfg, state) -> v``: particles x (n, d), target samples y (m, d), the
solver settings ``cfg`` (mfg.settings.particle) and a :class:`FieldState` (random generator, the
critic of ``lipschitz_f``, a cached geomloss loss); it returns velocities v (n, d) and does not
modify x or y. Given the state, each is a pure function; only ``sliced_w`` (fresh directions) and
``lipschitz_f`` (critic refitted, warm-started) advance the state.

q denotes the particles' empirical measure (1/n) Σ δ_{x_i}, p the target's (1/m) Σ δ_{y_j}.

=============  ==================================================================================
``kde_kl``     v = h²(∇log p_h − ∇log q_h) = m_p(x) − m_q(x), Gaussian KDEs p_h = p * N(0, h²I),
               m_p(x) = Σ_j k(x, y_j) y_j / Σ_j k(x, y_j) (mean shift): the Wasserstein gradient
               flow of KL(q_h‖p_h), time rescaled by h² (Cao et al., "Gradient Flow Drifting").
``mmd``        v = −∇w(x), w(x) = (1/n) Σ_j k(x, x_j) − (1/m) Σ_j k(y_j, x) the witness of MMD²/2
               (Arbel et al. 2019); k gaussian, laplace, energy (−|x − y|) or riesz (−|x − y|^a).
``sinkhorn``   v_i = −n ∇_{x_i} S_ε(q, p), the debiased Sinkhorn divergence of geomloss (cost
               |x − y|^p/p, blur = ε^{1/p}); for p = 2, v ≈ T_ε(x) − x, an entropic OT map.
``sliced_w``   v = (d/L) Σ_l (F_{θ_l#p}^{-1}(F_{θ_l#q}(⟨θ_l, x⟩)) − ⟨θ_l, x⟩) θ_l, L random unit
               directions drawn afresh at each call, 1-D quantile matching along each.
``lipschitz_f``  v = −∇φ*(x), clipped to |v| ≤ L, φ* the critic of the Lipschitz-regularized KL
               (GPA, Gu et al.): φ* ≈ argmax E_q φ − log E_p e^φ over |∇φ| ≤ L (one-sided
               gradient penalty), refitted for ``critic_steps`` Adam steps at each call.
``drift``      Deng et al. Algorithm 2: logits l_ij = −|x_i − y_j|/τ (Laplace kernel e^{−r/τ}; or
               −|x_i − y_j|²/(2τ²) with ``kernel: gaussian``) against the data y⁺ (attraction) and
               the particles y⁻ = x (repulsion, self-pairs masked). ``normalization: rowcol``:
               A = sqrt(softmax_row(l) ⊙ softmax_col(l)) over the concatenated columns [y⁺, y⁻],
               W⁺ = A⁺ ⊙ (A⁻ 1), W⁻ = A⁻ ⊙ (A⁺ 1), V_τ = W⁺y⁺ − W⁻y⁻; ``none``:
               V_τ = m_{y⁺} − m_{y⁻} (row softmax means). v = Σ_τ V_τ over ``temperatures``
               (each V_τ divided by (mean_i |V_τ,i|²/d)^{1/2} when ``normalize_drift``).
=============  ==================================================================================
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from solvers.particle.kernels import kernel_grad_sum, resolve_backend, softmax_stats

Tensor = torch.Tensor

#: default kernel per field when the settings leave ``kernel`` unset
DEFAULT_KERNEL = {"mmd": "gaussian", "drift": "laplace"}


def kernel_of(cfg: Any, name: str) -> str:
    """The kernel a field uses: ``cfg.kernel`` or the field's default."""
    return cfg.kernel or DEFAULT_KERNEL.get(name, "gaussian")


@dataclass
class FieldState:
    """Mutable companions of a field: the random stream of ``sliced_w``, the critic and its
    optimizer of ``lipschitz_f``, the geomloss loss of ``sinkhorn`` (built on first use)."""

    generator: torch.Generator
    critic: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    cache: dict[str, Any] = field(default_factory=dict)


def make_state(seed: int) -> FieldState:
    """A FieldState whose CPU generator is seeded with ``seed``."""
    return FieldState(generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# kernel fields


def mean_shift(
    x: Tensor, y: Tensor, h: float, exclude_self: bool = False, backend: str = "auto",
    chunk: int = 0,
) -> Tensor:
    """m_y(x_i) = Σ_j e^{−|x_i−y_j|²/(2h²)} y_j / Σ_j e^{−|x_i−y_j|²/(2h²)}, (n, d); equals
    x_i + h² ∇log p_h(x_i) for the Gaussian KDE p_h of y."""
    return softmax_stats(x, y, h * h, "gaussian", exclude_self=exclude_self, backend=backend,
                         chunk=chunk)[1]


def kde_kl(x: Tensor, y: Tensor, cfg: Any, state: FieldState) -> Tensor:
    """v = h²(∇log p_h − ∇log q_h)(x) = m_p(x) − m_q(x) with h = ``cfg.bandwidth``; q_h is the
    KDE of the particles themselves (self-pair included). (n, d)."""
    h = cfg.bandwidth
    return (mean_shift(x, y, h, backend=cfg.backend, chunk=cfg.chunk)
            - mean_shift(x, x, h, backend=cfg.backend, chunk=cfg.chunk))


def mmd_velocity(
    x: Tensor, y: Tensor, kernel: str, bandwidth: float, riesz_a: float = 1.0,
    backend: str = "auto", chunk: int = 0,
) -> Tensor:
    """v(x_i) = −(1/n) Σ_j ∇_1 k(x_i, x_j) + (1/m) Σ_j ∇_1 k(x_i, y_j), (n, d)."""
    wx = torch.full((len(x),), 1.0 / len(x), dtype=x.dtype, device=x.device)
    wy = torch.full((len(y),), 1.0 / len(y), dtype=x.dtype, device=x.device)
    kw = {"kernel": kernel, "bandwidth": bandwidth, "riesz_a": riesz_a, "backend": backend,
          "chunk": chunk}
    return kernel_grad_sum(x, y, wy, **kw) - kernel_grad_sum(x, x, wx, **kw)


def mmd(x: Tensor, y: Tensor, cfg: Any, state: FieldState) -> Tensor:
    """The MMD flow velocity :func:`mmd_velocity` with the settings' kernel and bandwidth."""
    return mmd_velocity(x, y, kernel_of(cfg, "mmd"), cfg.bandwidth, cfg.riesz_a, cfg.backend,
                        cfg.chunk)


def drift_field(
    x: Tensor,
    y_pos: Tensor,
    y_neg: Tensor,
    temperatures: tuple[float, ...] = (0.02, 0.05, 0.2),
    kernel: str = "laplace",
    normalization: str = "rowcol",
    mask_pos: bool = False,
    mask_neg: bool = True,
    normalize_drift: bool = False,
    backend: str = "auto",
    chunk: int = 0,
) -> Tensor:
    """Deng et al.'s drifting field V_{p,q}(x) (module docstring), (n, d).

    ``mask_pos`` / ``mask_neg`` drop the pairs (x_i, y_i) of a set that *is* x (needs equal
    length). With ``normalization = "rowcol"`` the affinities are computed in the log domain, in
    O(n + m) memory: C_j = log Σ_i e^{l_ij} (column normalizers), R_i = log Σ_{j ∈ +,−} e^{l_ij},
    P_i = log Σ_{j∈+} e^{l_ij − C_j/2}, N_i likewise; then Σ_j A⁺_ij = e^{P_i − R_i/2} and
    V_i = e^{P_i + N_i − R_i} (m⁺_i − m⁻_i) with m^± the softmax means of y^± under l − C/2.
    """
    if normalization not in ("rowcol", "none"):
        raise ValueError(f"normalization: must be rowcol or none (got {normalization!r})")
    kw = {"kernel": kernel, "backend": backend, "chunk": chunk}
    total = torch.zeros_like(x)
    for temp in temperatures:
        tau = temp if kernel == "laplace" else temp * temp
        if normalization == "none":
            _, m_pos = softmax_stats(x, y_pos, tau, exclude_self=mask_pos, **kw)
            _, m_neg = softmax_stats(x, y_neg, tau, exclude_self=mask_neg, **kw)
            v = m_pos - m_neg
        else:
            c_pos = softmax_stats(y_pos, x, tau, exclude_self=mask_pos, want_mean=False, **kw)[0]
            c_neg = softmax_stats(y_neg, x, tau, exclude_self=mask_neg, want_mean=False, **kw)[0]
            r_pos = softmax_stats(x, y_pos, tau, exclude_self=mask_pos, want_mean=False, **kw)[0]
            r_neg = softmax_stats(x, y_neg, tau, exclude_self=mask_neg, want_mean=False, **kw)[0]
            p, m_pos = softmax_stats(x, y_pos, tau, offset=-0.5 * c_pos, exclude_self=mask_pos,
                                     **kw)
            q, m_neg = softmax_stats(x, y_neg, tau, offset=-0.5 * c_neg, exclude_self=mask_neg,
                                     **kw)
            scale = torch.exp(p + q - torch.logaddexp(r_pos, r_neg))
            v = scale[:, None] * (m_pos - m_neg)
        if normalize_drift:
            v = v / (v.pow(2).sum(1).mean() / x.shape[1]).sqrt().clamp_min(1e-30)
        total = total + v
    return total


def drift(x: Tensor, y: Tensor, cfg: Any, state: FieldState) -> Tensor:
    """:func:`drift_field` with y⁺ = the target samples, y⁻ = the particles (self masked; the
    target's self pairs are masked too when y is the very tensor x, so that V_{q,q} = 0)."""
    same = y.shape == x.shape and y.data_ptr() == x.data_ptr()
    return drift_field(
        x, y, x, tuple(cfg.temperatures), kernel_of(cfg, "drift"), cfg.normalization,
        mask_pos=same, mask_neg=True, normalize_drift=cfg.normalize_drift,
        backend=cfg.backend, chunk=cfg.chunk,
    )


# ----------------------------------------------------------------------------------------------
# transport fields


def _samples_loss(cfg: Any, state: FieldState) -> Any:
    if "sinkhorn" not in state.cache:
        with contextlib.redirect_stdout(io.StringIO()):  # pykeops' CPU warning
            import geomloss
        backend = {"torch": "tensorized", "keops": "online"}.get(cfg.backend, "auto")
        if backend != "tensorized" and resolve_backend(cfg.backend) == "torch":
            backend = "tensorized"
        state.cache["sinkhorn"] = geomloss.SamplesLoss(
            "sinkhorn", p=cfg.p, blur=cfg.blur, scaling=cfg.scaling, debias=True, backend=backend
        )
    return state.cache["sinkhorn"]


def sinkhorn_velocity(x: Tensor, y: Tensor, loss: Any) -> Tensor:
    """v_i = −n ∇_{x_i} S_ε(q, p) for a geomloss ``SamplesLoss`` ``loss``, (n, d)."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(xg, y.detach()), xg)
    return -len(x) * grad


def sinkhorn(x: Tensor, y: Tensor, cfg: Any, state: FieldState) -> Tensor:
    """:func:`sinkhorn_velocity` with geomloss SamplesLoss("sinkhorn", p, blur, debias=True)."""
    return sinkhorn_velocity(x, y, _samples_loss(cfg, state))


def sliced_velocity(x: Tensor, y: Tensor, theta: Tensor) -> Tensor:
    """(d/L) Σ_l (Q_{θ_l#p}(u_il) − ⟨θ_l, x_i⟩) θ_l for unit directions θ (L, d), (n, d).

    u_il = (rank of ⟨θ_l, x_i⟩ among the n projections + ½)/n; Q_{θ#p} the target's empirical
    quantile function along θ, linearly interpolated between the sorted projections.
    """
    n, d = x.shape
    m = len(y)
    px, py = x @ theta.T, y @ theta.T  # (n, L), (m, L)
    ys, _ = torch.sort(py, dim=0)
    order = torch.argsort(px, dim=0)
    ranks = torch.empty_like(order)
    ranks.scatter_(0, order, torch.arange(n, device=x.device)[:, None].expand_as(order))
    pos = ((ranks.to(x.dtype) + 0.5) * (m / n) - 0.5).clamp(0.0, m - 1.0)
    lo = pos.floor().long().clamp(max=m - 1)
    hi = (lo + 1).clamp(max=m - 1)
    frac = pos - lo.to(x.dtype)
    q = torch.gather(ys, 0, lo) * (1 - frac) + torch.gather(ys, 0, hi) * frac
    return (d / theta.shape[0]) * (q - px) @ theta


def sliced_w(x: Tensor, y: Tensor, cfg: Any, state: FieldState) -> Tensor:
    """:func:`sliced_velocity` with ``cfg.n_directions`` fresh directions from ``state``."""
    theta = torch.randn(cfg.n_directions, x.shape[1], generator=state.generator, dtype=x.dtype)
    theta = (theta / theta.norm(dim=1, keepdim=True)).to(x.device)
    return sliced_velocity(x, y, theta)


# ----------------------------------------------------------------------------------------------
# Lipschitz-regularized KL (GPA)


def mlp(d_in: int, d_out: int, width: int, depth: int) -> nn.Sequential:
    """Linear–SiLU ×``depth`` hidden layers of ``width``, then Linear to ``d_out``."""
    layers: list[nn.Module] = []
    size = d_in
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.SiLU()]
        size = width
    layers.append(nn.Linear(size, d_out))
    return nn.Sequential(*layers)


def dv_objective(phi_x: Tensor, phi_y: Tensor) -> Tensor:
    """Donsker–Varadhan E_q φ − log E_p e^φ from critic values on q- and p-samples."""
    return phi_x.mean() - (torch.logsumexp(phi_y, 0) - math.log(len(phi_y)))


def gradient_penalty(critic: nn.Module, x: Tensor, y: Tensor, L: float,
                     generator: torch.Generator) -> Tensor:
    """E relu(|∇φ(z)|² − L²) at z = (1 − s)x + s y' (s ~ U(0, 1), y' a random pairing)."""
    k = min(len(x), len(y))
    s = torch.rand(k, 1, generator=generator, dtype=x.dtype).to(x.device)
    idx = torch.randperm(len(y), generator=generator)[:k].to(x.device)
    z = ((1 - s) * x[:k] + s * y[idx]).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(z).sum(), z, create_graph=True)
    return torch.relu(g.pow(2).sum(1) - L * L).mean()


def fit_critic(x: Tensor, y: Tensor, cfg: Any, state: FieldState, lipschitz: bool) -> nn.Module:
    """Refit the state's critic φ for ``cfg.critic_steps`` Adam steps on
    max E_q φ − log E_p e^φ (− ``gp_weight`` · penalty when ``lipschitz``); built on first use."""
    if state.critic is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=state.generator))
        with torch.random.fork_rng(devices=[]):  # initialization from the state's stream only
            torch.manual_seed(seed)
            state.critic = mlp(x.shape[1], 1, cfg.critic_width, 2).to(x.device, x.dtype)
        state.optimizer = torch.optim.Adam(state.critic.parameters(), lr=cfg.critic_lr,
                                           betas=(0.5, 0.9))
    critic, opt = state.critic, state.optimizer
    x, y = x.detach(), y.detach()
    with torch.enable_grad():
        for _ in range(cfg.critic_steps):
            loss = -dv_objective(critic(x)[:, 0], critic(y)[:, 0])
            if lipschitz:
                loss = loss + cfg.gp_weight * gradient_penalty(critic, x, y, cfg.L,
                                                               state.generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return critic


def lipschitz_f(x: Tensor, y: Tensor, cfg: Any, state: FieldState) -> Tensor:
    """v = −∇φ*(x) with |v| clipped to L (critic refitted by :func:`fit_critic`), (n, d)."""
    critic = fit_critic(x, y, cfg, state, lipschitz=True)
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(xg).sum(), xg)
    v = -g.detach()
    norm = v.norm(dim=1, keepdim=True)
    return v * torch.clamp(cfg.L / norm.clamp_min(1e-30), max=1.0)


Field = Callable[[Tensor, Tensor, Any, FieldState], Tensor]

#: field name (the settings' ``field``) -> velocity function
FIELDS: dict[str, Field] = {
    "kde_kl": kde_kl,
    "mmd": mmd,
    "sinkhorn": sinkhorn,
    "sliced_w": sliced_w,
    "lipschitz_f": lipschitz_f,
    "drift": drift,
}
