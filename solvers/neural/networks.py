"""Networks of the neural solver: the potential U_θ(x, t) and the critic φ_ω(x).

Shapes: ``x`` is (n, d), ``t`` a scalar tensor or (n,); outputs are (n,).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def log_cosh(s: torch.Tensor) -> torch.Tensor:
    """log cosh(s) = |s| + log(1 + e^{−2|s|}) − log 2: smooth, its derivative is tanh (OT-Flow).

    log(1 + e) rather than log1p(e): torch's CPU log1p is not vectorized (on 1024 × 128 float32,
    one thread: 1.1 ms against 0.15 ms for log, 16% of a training iteration), and with
    e = e^{−2|s|} ∈ (0, 1] the rounding of 1 + e costs no more than the − log 2 that cancels
    the sum near s = 0 (the same maximum error against float64, 2.1e-7, on N(0, 1) inputs)."""
    a = s.abs()
    return a + torch.log(1.0 + torch.exp(-2.0 * a)) - math.log(2.0)


class Potential(nn.Module):
    """U_θ(x, t) = scale·[w·N(z) + ½ Σ_k c_k (a_k·z)² + b·z],  z = (x, t) ∈ R^{d+1}.

    N is a ResNet with log-cosh activation: h_0 = σ(K_0 z + b_0),
    h_{i+1} = h_i + σ(K_i h_i + b_i)/depth. The quadratic term (``quadratic``) has rank
    ``rank`` (None: d + 1, full) with coefficients c_k of either sign, so Gaussian-to-Gaussian
    potentials (quadratic in x) are representable. ``scale`` = λ makes the network learn the
    velocity potential U/λ, whose size does not depend on λ. U = 0 at initialization.

    Why full rank by default (OT-Flow takes min(10, d)): a target on a k-dimensional plane of
    R^d needs the d − k directions off it contracted and any quadratic form in the other k, which
    the term holds exactly only when its rank allows; with rank 10 in R^12 the ResNet has to make
    up for it. Measured on the pinwheel zero-padded into R^12 (lipschitz_f, 4,000 iterations,
    seeds 0-2, Sinkhorn divergence against a floor of 5.6e-3): 1.60e-2, 1.58e-2, 2.12e-2 at rank
    10, 1.35e-2, 1.77e-2, 1.73e-2 at full rank (13); a gain within the spread over seeds.
    The term costs O(d·rank) per sample against O(d·width) for the opening layer.
    """

    def __init__(self, dim: int, width: int = 64, depth: int = 2, quadratic: bool = True,
                 scale: float = 1.0, rank: int | None = None):
        super().__init__()
        self.dim = dim
        self.scale = float(scale)
        self.opening = nn.Linear(dim + 1, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.w = nn.Linear(width, 1, bias=False)
        self.b = nn.Linear(dim + 1, 1)
        self.quadratic = quadratic
        if quadratic:
            rank = dim + 1 if rank is None else min(dim + 1, rank)
            self.A = nn.Parameter(torch.randn(rank, dim + 1) / math.sqrt(dim + 1))
            self.c = nn.Parameter(torch.zeros(rank))
        nn.init.zeros_(self.w.weight)  # U = 0 at start: the flow starts at rest
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.b.bias)

    def _z(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return torch.cat([x, t.expand(x.shape[0]).reshape(-1, 1)], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """U_θ(x, t), shape (n,)."""
        z = self._z(x, t)
        h = log_cosh(self.opening(z))
        scale = 1.0 / max(len(self.blocks), 1)
        for block in self.blocks:
            h = h + scale * log_cosh(block(h))
        u = self.w(h)[:, 0] + self.b(z)[:, 0]
        if self.quadratic:
            u = u + 0.5 * ((z @ self.A.T) ** 2 * self.c).sum(dim=1)
        return self.scale * u

    def derivatives(
        self, x: torch.Tensor, t: torch.Tensor | float, laplacian: bool = False,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(U, ∇_x U, ∂_t U, Δ_x U) at (x, t), shapes (n,), (n, d), (n,), (n,), in closed form
        (OT-Flow's exact trace): no nested autograd, so training backpropagates once.

        Backward pass: g_M = w, g_{i−1} = g_i + s K_iᵀ(σ'(a_i) ⊙ g_i), ∇_z N = K_0ᵀ(σ'(a_0) ⊙ g_0).
        Laplacian: Σ over the layers of Σ_j s_i g_ij σ''(a_ij) |(K_i J_{i−1})_j|² with J the
        Jacobian of the hidden state in x (J_0 = diag σ'(a_0) K_0,x), plus Σ_k c_k |A_k,x|².
        With ``noise`` ε (n, d), J is taken along ε only, giving Hutchinson's εᵀ∇²U ε.
        ``laplacian`` False returns None for ΔU.
        """
        d = self.dim
        z = self._z(x, t)
        scale = 1.0 / max(len(self.blocks), 1)
        a0 = self.opening(z)
        h = log_cosh(a0)
        pre = []
        for block in self.blocks:
            a = block(h)
            pre.append(a)
            h = h + scale * log_cosh(a)
        u = self.w(h)[:, 0] + self.b(z)[:, 0]
        grad = self.b.weight[0].expand_as(z)
        if self.quadratic:
            az = z @ self.A.T
            u = u + 0.5 * (az**2 * self.c).sum(dim=1)
            grad = grad + (az * self.c) @ self.A
        g = self.w.weight[0].expand(z.shape[0], -1)
        ups = [g] * len(self.blocks)
        tanhs = [torch.tanh(a) for a in pre]
        for i in reversed(range(len(self.blocks))):
            ups[i] = g
            g = g + scale * (tanhs[i] * g) @ self.blocks[i].weight
        tanh0 = torch.tanh(a0)
        grad = grad + (tanh0 * g) @ self.opening.weight
        lap = None
        if laplacian:
            k0 = self.opening.weight[:, :d]  # (m, d)
            jac = k0.unsqueeze(0) if noise is None else (noise @ k0.T).unsqueeze(-1)
            lap = ((1 - tanh0**2) * g).unsqueeze(-1).mul(jac**2).sum(dim=(1, 2))
            jac = tanh0.unsqueeze(-1) * jac
            for i, block in enumerate(self.blocks):
                kj = torch.einsum("pm,nmk->npk", block.weight, jac)
                sig2 = (1 - tanhs[i] ** 2) * ups[i]
                lap = lap + scale * (sig2.unsqueeze(-1) * kj**2).sum(dim=(1, 2))
                jac = jac + scale * tanhs[i].unsqueeze(-1) * kj
            if self.quadratic:
                ax = self.A[:, :d]
                if noise is None:
                    lap = lap + (self.c * (ax**2).sum(dim=1)).sum()
                else:
                    lap = lap + ((noise @ ax.T) ** 2 * self.c).sum(dim=1)
        k = self.scale
        return k * u, k * grad[:, :d], k * grad[:, d], None if lap is None else k * lap


#: critic activations σ with |σ'| <= 1 (SiLU is rescaled by 1/1.1, the bound of its slope)
CRITIC_ACTIVATIONS = ("relu", "silu")


class Critic(nn.Module):
    """φ_ω(x) = L·MLP(x) with ``depth`` hidden layers of ``width`` units and 1-Lipschitz activation
    σ (``relu``, or ``silu``/1.1).

    ReLU gives piecewise-linear critics that can follow the cone L·dist(x, M) of a target on a
    manifold M to any resolution; a smooth σ rounds the cone off at the scale of its
    pre-activations, so its pull towards M fades near M (samples stall off the manifold).
    With ``spectral`` every layer is spectrally normalized, so Lip(φ) <= L; otherwise the bound is
    enforced by the one-sided gradient penalty of :func:`gradient_penalty`. ``nu`` is the scalar
    ν of the variational form of f-divergences other than KL (unused otherwise).
    """

    def __init__(self, dim: int, L: float, width: int = 64, depth: int = 2,
                 spectral: bool = False, activation: str = "silu"):
        super().__init__()
        if activation not in CRITIC_ACTIVATIONS:
            raise ValueError(f"critic activation {activation!r} not in {CRITIC_ACTIVATIONS}")
        self.activation = activation
        sizes = [dim] + [width] * depth + [1]
        layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        if spectral:
            layers = [spectral_norm(layer) for layer in layers]
        self.layers = nn.ModuleList(layers)
        self.L = float(L)
        self.nu = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            a = layer(h)
            h = torch.relu(a) if self.activation == "relu" else nn.functional.silu(a) / 1.1
        return self.L * self.layers[-1](h)[:, 0]


def gradient_penalty_terms(critic: Critic, x: torch.Tensor, y: torch.Tensor,
                           u: torch.Tensor) -> torch.Tensor:
    """Per-sample one-sided penalty max(|∇φ(x̂)|² − L², 0), shape (n,), at x̂ = u x + (1 − u) y
    for x, y (n, d) and u (n, 1). ∇φ by torch.autograd.grad with create_graph: out of place, so
    DistributedDataParallel's gradient hooks see only the outer backward."""
    xh = (u * x + (1 - u) * y).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(xh).sum(), xh, create_graph=True)
    return torch.relu((g**2).sum(dim=1) - critic.L**2)


def gradient_penalty(critic: Critic, x: torch.Tensor, y: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """One-sided penalty E[max(|∇φ(x̂)|² − L², 0)] at x̂ = u x + (1 − u) y, u ~ U(0, 1);
    x and y of shape (n, d) (the shorter length is used)."""
    n = min(len(x), len(y))
    u = torch.rand(n, 1, dtype=x.dtype, device=x.device, generator=generator)
    return gradient_penalty_terms(critic, x[:n], y[:n], u).mean()
