"""The neural solver's building blocks against exact references: the closed-form derivatives of
the potential against torch autograd, the ODE integration against a potential with a known flow,
and the terminal estimators against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mfg.distributions import Gaussian, Mixture
from mfg.scenario import TerminalCost
from solvers.neural.dynamics import Dynamics, integrate
from solvers.neural.networks import Critic, Potential, log_cosh
from solvers.neural.terminal import critic_objective, torch_log_density


def random_potential(dim: int, seed: int = 0) -> Potential:
    torch.manual_seed(seed)
    pot = Potential(dim, width=16, depth=2, quadratic=True, scale=0.7).double()
    with torch.no_grad():  # leave the zero initialization so that every term is exercised
        for p in pot.parameters():
            p.normal_(0.0, 0.5)
    return pot


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_cosh_against_numpy_in_float64(dtype):
    """log cosh(s) to a few units of roundoff of its size over |s| <= 100 (the naive
    log(cosh(s)) overflows in float32 from |s| ~ 89), and its derivative tanh(s)."""
    s64 = np.concatenate([np.linspace(-100.0, 100.0, 8001), [0.0, 1e-8, -1e-3, 1e-2]])
    s = torch.tensor(s64, dtype=dtype, requires_grad=True)
    exact = np.log(np.cosh(s.detach().double().numpy()))
    value = log_cosh(s)
    eps = torch.finfo(dtype).eps
    np.testing.assert_allclose(value.detach().double().numpy(), exact, rtol=4 * eps,
                               atol=4 * eps)
    (grad,) = torch.autograd.grad(value.sum(), s)
    np.testing.assert_allclose(grad.double().numpy(), np.tanh(s.detach().double().numpy()),
                               rtol=4 * eps, atol=4 * eps)


@pytest.mark.parametrize("dim", [1, 3, 12])
def test_closed_form_derivatives_match_autograd(dim):
    pot = random_potential(dim)
    x = torch.randn(7, dim, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    u, gx, gt, lap = pot.derivatives(x, t, laplacian=True)
    xr = x.clone().requires_grad_(True)
    tr = t.expand(7).clone().requires_grad_(True)
    ur = pot(xr, tr)
    gxr, gtr = torch.autograd.grad(ur.sum(), (xr, tr), create_graph=True)
    lapr = sum(torch.autograd.grad(gxr[:, i].sum(), xr, retain_graph=True)[0][:, i]
               for i in range(dim))
    torch.testing.assert_close(u, ur, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gxr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gt, gtr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lap, lapr, rtol=1e-10, atol=1e-10)
    # Hutchinson along ε: exactly εᵀ ∇²U ε
    eps = torch.randn(7, dim, dtype=torch.float64)
    _, _, _, quad = pot.derivatives(x, t, laplacian=True, noise=eps)
    (hv,) = torch.autograd.grad((gxr * eps).sum(), xr)
    torch.testing.assert_close(quad, (hv * eps).sum(dim=1), rtol=1e-10, atol=1e-10)


def test_default_quadratic_term_represents_any_quadratic_form_in_r12():
    """U(x, t) = λ xᵀSx/2 for a symmetric S of full rank 12 (eigenvalues of both signs) is in the
    default potential's span with the ResNet switched off (A: S's eigenvectors, c: its
    eigenvalues), so ∇U = λSx and ΔU = λ tr S exactly; OT-Flow's rank min(10, d) cannot hold it
    (S has 12 nonzero eigenvalues). ``rank`` caps it."""
    dim, lam = 12, 0.3
    gen = torch.Generator().manual_seed(4)
    m = torch.randn(dim, dim, dtype=torch.float64, generator=gen)
    s = (m + m.T) / 2
    evals, evecs = torch.linalg.eigh(s)
    assert bool((evals.abs() > 1e-3).all())
    pot = Potential(dim, width=4, depth=1, quadratic=True, scale=lam).double()
    assert tuple(pot.A.shape) == (dim + 1, dim + 1)
    with torch.no_grad():
        pot.A.zero_()
        pot.A[:dim, :dim] = evecs.T
        pot.c.zero_()
        pot.c[:dim] = evals
    x = torch.randn(5, dim, dtype=torch.float64, generator=gen)
    u, gx, gt, lap = pot.derivatives(x, 0.4, laplacian=True)
    torch.testing.assert_close(u, lam * 0.5 * ((x @ s) * x).sum(dim=1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, lam * x @ s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lap, torch.full((5,), lam * float(torch.trace(s)),
                                               dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert float(gt.detach().abs().max()) == 0.0
    assert tuple(Potential(dim, quadratic=True, rank=10).A.shape) == (10, dim + 1)


def quadratic_potential(a: float, lam: float) -> Potential:
    """U(x, t) = λ a |x|²/2 (the ResNet part switched off): v = −a x, so x(t) = e^{−at} x0 and
    log ρ(x_t, t) = log ρ0(x0) + a d t."""
    pot = Potential(2, width=4, depth=1, quadratic=True, scale=lam).double()
    with torch.no_grad():
        pot.A.zero_()
        pot.A[0, 0] = pot.A[1, 1] = 1.0
        pot.c.zero_()
        pot.c[:2] = a
    return pot


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_characteristics_kinetic_energy_and_log_density_of_a_linear_flow(method):
    a, lam, T = 0.8, 0.5, 1.5
    dyn = Dynamics(quadratic_potential(a, lam), lam, "exact", hj=True, train=False)
    x0 = torch.randn(50, 2, dtype=torch.float64)
    times = torch.tensor([0.0, T], dtype=torch.float64)
    xs, ells, ks, hs = integrate(dyn, x0, times, method, 32, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(xs[-1], x0 * math.exp(-a * T), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(ells[-1], torch.full((50,), 2 * a * T / lam * lam,
                                                    dtype=torch.float64), rtol=1e-9, atol=1e-9)
    # K = ∫ |∇U|²/(2λ) dt = λ a² |x0|² (1 − e^{−2aT})/(4a)
    k_exact = lam * a**2 * (x0**2).sum(1) * (1 - math.exp(-2 * a * T)) / (4 * a)
    torch.testing.assert_close(ks[-1], k_exact, rtol=1e-7, atol=1e-9)
    # this U does not solve HJ: −∂tU + |∇U|²/(2λ) = λ a²|x|²/2, so H = ∫ (λa²|x(t)|²/2)² dt
    h_exact = (lam * a**2 / 2) ** 2 * ((x0**2).sum(1)) ** 2 * (1 - math.exp(-4 * a * T)) / (4 * a)
    torch.testing.assert_close(hs[-1], h_exact, rtol=1e-6, atol=1e-9)


def test_torch_log_density_matches_numpy():
    g = Gaussian([0.5, -1.0], cov=[[1.0, 0.3], [0.3, 0.5]])
    mix = Mixture((0.3, 0.7), (g, Gaussian([2.0, 0.0], std=[0.4, 1.5])))
    x = np.random.default_rng(0).normal(size=(20, 2))
    for dist in (g, mix):
        got = torch_log_density(dist)(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(got, dist.log_density(x), rtol=1e-12)


def test_donsker_varadhan_at_the_optimal_critic_is_the_kl():
    """For P = N(μ, 1), Q = N(0, 1): φ* = log dP/dQ = μx − μ²/2 and E_P φ − log E_Q e^φ = μ²/2."""
    mu = 0.6
    rng = np.random.default_rng(1)
    xp = torch.as_tensor(rng.normal(mu, 1.0, 200_000))
    xq = torch.as_tensor(rng.normal(0.0, 1.0, 200_000))
    critic = Critic(1, L=1.0)
    obj = critic_objective(TerminalCost("lipschitz_f", f="kl", L=1.0), critic,
                           mu * xp - mu**2 / 2, mu * xq - mu**2 / 2)
    assert abs(float(obj) - mu**2 / 2) < 0.01


def test_adjoint_gradients_match_direct_backpropagation():
    pot = random_potential(2, seed=1)
    x0 = torch.randn(16, 2, dtype=torch.float64)
    times = torch.tensor([0.0, 1.0], dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        dyn = Dynamics(pot, 0.7, "exact", hj=True, train=True)
        xs, ells, ks, hs = integrate(dyn, x0, times, "dopri5", 4, adjoint, rtol=1e-10,
                                     atol=1e-10)
        loss = (xs[-1] ** 2).sum() + ells[-1].sum() + ks[-1].sum() + hs[-1].sum()
        grads.append(torch.autograd.grad(loss, list(pot.parameters()), allow_unused=True))
    for g_direct, g_adjoint in zip(*grads, strict=True):
        if g_direct is None:  # the constant of U moves nothing
            assert g_adjoint is None or not g_adjoint.any()
            continue
        torch.testing.assert_close(g_adjoint, g_direct, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backward", [False, True])
def test_euler_hj_penalty_with_endpoints_is_the_trapezoid_rule_over_the_nodes(backward):
    """H from Euler steps is the sum h Σ_k r²(x_k, t_k) over all nodes but the last; with
    hj_path_integral it is the trapezoid rule h[r²_0/2 + Σ_{0<k<nt} r²_k + r²_nt/2] over the Euler
    nodes, forwards (0 -> T) and backwards (T -> 0, the likelihood's pull-back)."""
    from solvers.neural.dynamics import hj_path_integral, hj_residual_squared

    pot, lam, T, nt = random_potential(3, seed=4), 0.7, 1.5, 5
    x_start = torch.randn(9, 3, dtype=torch.float64)
    nodes = torch.linspace(0.0, T, nt + 1, dtype=torch.float64)
    if backward:
        nodes = nodes.flip(0)
    dyn = Dynamics(pot, lam, None, hj=True, train=False)
    xs, _, _, hs = integrate(dyn, x_start, nodes, "euler", nt)
    r2 = torch.stack([hj_residual_squared(pot, lam, x, t) for x, t in zip(xs, nodes,
                                                                               strict=True)])
    trapezoid = (T / nt) * (r2[0] / 2 + r2[1:-1].sum(dim=0) + r2[-1] / 2)
    got = hj_path_integral(dyn, hs[-1], x_start, float(nodes[0]), xs[-1], float(nodes[-1]),
                           "euler", nt)
    torch.testing.assert_close(got.detach(), trapezoid.detach(), rtol=1e-10, atol=1e-12)
