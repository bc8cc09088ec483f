"""The particle fields against their formulas (issue #5): KDE scores by autograd, a dense
transcription of Deng et al.'s Algorithm 2, MMD² gradients by autograd, exact OT assignments,
1-D quantiles; the two kernel-sum backends against each other; the separated-modes experiment.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from solvers.particle.fields import (
    FIELDS,
    drift_field,
    kde_kl,
    make_state,
    mmd_velocity,
    sinkhorn_velocity,
    sliced_velocity,
)
from solvers.particle.kernels import keops_available, kernel_grad_sum, softmax_stats

F64 = torch.float64



def cfg(**kw: object) -> SimpleNamespace:
    """Field settings with the defaults of mfg.settings.particle (torch backend)."""
    base = dict(bandwidth=0.5, kernel=None, riesz_a=1.0, backend="torch", chunk=0, blur=0.05, p=2,
                scaling=0.9, n_directions=64, temperatures=(0.02, 0.05, 0.2),
                normalization="rowcol", normalize_drift=False, L=1.0, critic_steps=5,
                critic_lr=1e-3, critic_width=64, gp_weight=10.0)
    base.update(kw)
    return SimpleNamespace(**base)


def points(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64) + shift


def kde_score(x: torch.Tensor, y: torch.Tensor, h: float) -> torch.Tensor:
    """∇_x log Σ_j exp(−|x − y_j|²/(2h²)) by autograd (dense)."""
    xg = x.clone().requires_grad_(True)
    d2 = ((xg[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    (g,) = torch.autograd.grad(torch.logsumexp(-d2 / (2 * h * h), 1).sum(), xg)
    return g


def mmd2_dense(x, y, kernel, h, a):
    """MMD² (V-statistic) from explicit differences; r = 0 pairs contribute a constant."""

    def mean_k(u, v):
        d2 = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        r = torch.where(d2 > 0, d2, torch.ones_like(d2)).sqrt()
        k = {"gaussian": torch.exp(-d2 / (2 * h * h)), "laplace": torch.exp(-r / h),
             "energy": -r, "riesz": -(r**a)}[kernel]
        return torch.where(d2 > 0, k, k.detach()).mean()

    return mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)


def deng_dense(x, y_pos, y_neg, temp, mask_neg=True):
    """Algorithm 2 of Deng et al. transcribed literally (dense, one temperature)."""
    dist_pos = torch.cdist(x, y_pos)
    dist_neg = torch.cdist(x, y_neg)
    if mask_neg:
        dist_neg = dist_neg + torch.eye(len(x), dtype=x.dtype) * 1e6
    logit = torch.cat([-dist_pos / temp, -dist_neg / temp], dim=1)
    a = torch.sqrt(logit.softmax(dim=-1) * logit.softmax(dim=-2))
    a_pos, a_neg = a[:, : len(y_pos)], a[:, len(y_pos):]
    w_pos = a_pos * a_neg.sum(dim=1, keepdim=True)
    w_neg = a_neg * a_pos.sum(dim=1, keepdim=True)
    return w_pos @ y_pos - w_neg @ y_neg


# ----------------------------------------------------------------------------------------------
# identities


@pytest.mark.parametrize("h", [0.3, 1.0])
def test_gaussian_drift_without_normalization_is_kde_score_difference(h: float) -> None:
    x, yp, yn = points(50, 2, 0), points(60, 2, 1, 0.5), points(40, 2, 2, -0.3)
    v = drift_field(x, yp, yn, (h,), "gaussian", "none", mask_neg=False, backend="torch")
    expected = h * h * (kde_score(x, yp, h) - kde_score(x, yn, h))
    torch.testing.assert_close(v, expected, atol=1e-10, rtol=0)
    # kde_kl is the same field with the particles as the negatives (self pair included)
    v_kde = kde_kl(x, yp, cfg(bandwidth=h), make_state(0))
    expected = h * h * (kde_score(x, yp, h) - kde_score(x, x, h))
    torch.testing.assert_close(v_kde, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("normalization", ["rowcol", "none"])
@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
def test_drift_is_antisymmetric(normalization: str, kernel: str) -> None:
    x, yp, yn = points(40, 3, 3), points(50, 3, 4, 1.0), points(30, 3, 5)
    kw = dict(temperatures=(0.2, 0.5, 1.0), kernel=kernel, normalization=normalization,
              mask_pos=False, mask_neg=False, backend="torch")
    v_pq = drift_field(x, yp, yn, **kw)
    v_qp = drift_field(x, yn, yp, **kw)
    assert v_pq.abs().max() > 1e-3
    torch.testing.assert_close(v_pq, -v_qp, atol=1e-13, rtol=0)


@pytest.mark.parametrize("normalization", ["rowcol", "none"])
def test_drift_vanishes_when_particles_are_the_target(normalization: str) -> None:
    x = points(64, 2, 6)
    c = cfg(normalization=normalization, temperatures=(0.1, 0.3))
    v = FIELDS["drift"](x, x, c, make_state(0))
    assert float(v.abs().max()) == 0.0
    # but not when the target is a different sample of the same law
    assert float(FIELDS["drift"](x, points(64, 2, 7), c, make_state(0)).abs().max()) > 1e-3


@pytest.mark.parametrize("temp", [0.05, 0.5])
def test_rowcol_drift_matches_dense_algorithm_2(temp: float) -> None:
    x, yp = points(48, 2, 8), points(56, 2, 9, 0.7)
    v = drift_field(x, yp, x, (temp,), "laplace", "rowcol", mask_neg=True, backend="torch",
                    chunk=7)
    torch.testing.assert_close(v, deng_dense(x, yp, x, temp), atol=1e-12, rtol=1e-9)
    # multi-temperature: the sum over temperatures
    v2 = drift_field(x, yp, x, (temp, 2 * temp), "laplace", "rowcol", backend="torch")
    dense = deng_dense(x, yp, x, temp) + deng_dense(x, yp, x, 2 * temp)
    torch.testing.assert_close(v2, dense, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "energy", "riesz"])
def test_mmd_velocity_is_minus_half_n_gradient_of_mmd2(kernel: str) -> None:
    x, y = points(30, 2, 10), points(40, 2, 11, 0.5)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(mmd2_dense(xg, y, kernel, 0.7, 1.5), xg)
    v = mmd_velocity(x, y, kernel, 0.7, 1.5, backend="torch", chunk=11)
    torch.testing.assert_close(v, -len(x) / 2 * g, atol=1e-10, rtol=1e-8)


def test_sinkhorn_velocity_is_the_ot_displacement_for_small_blur() -> None:
    """p = 2, blur ≪ spacing: v_i = −n ∇_i S_ε ≈ y_σ(i) − x_i, σ the exact OT assignment."""
    import geomloss

    x, y = points(30, 2, 12), points(30, 2, 13, 3.0)
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.005, scaling=0.95, debias=True,
                                backend="tensorized")
    v = sinkhorn_velocity(x, y, loss)
    cost = torch.cdist(x, y) ** 2
    rows, cols = linear_sum_assignment(cost.numpy())
    expected = y[cols] - x[rows]
    assert float((v - expected).norm(dim=1).max()) < 1e-2  # measured 2e-4


def test_sliced_velocity_is_quantile_matching() -> None:
    x, y = points(50, 2, 14), points(50, 2, 15, 2.0) * torch.tensor([1.0, 3.0], dtype=F64)
    theta = torch.eye(2, dtype=F64)  # the coordinate axes: per-coordinate quantile matching
    v = sliced_velocity(x, y, theta)
    expected = torch.empty_like(x)
    for k in range(2):
        rank = torch.argsort(torch.argsort(x[:, k]))
        expected[:, k] = torch.sort(y[:, k]).values[rank] - x[:, k]
    torch.testing.assert_close(v, expected, atol=1e-12, rtol=0)
    # unequal sizes: the target's quantile function at the particles' levels (i + ½)/n
    x1, y1 = points(4, 1, 16), torch.linspace(0.0, 1.0, 9, dtype=F64)[:, None]
    v1 = sliced_velocity(x1, y1, torch.ones(1, 1, dtype=F64))
    rank = torch.argsort(torch.argsort(x1[:, 0])).to(F64)
    levels = (rank + 0.5) / 4  # quantile of U-spaced points 0, 1/8, ..., 1 at level u: 9u/8 − 1/16
    torch.testing.assert_close(v1[:, 0], levels * 9 / 8 - 1 / 16 - x1[:, 0], atol=1e-12, rtol=0)


def test_lipschitz_velocity_is_bounded_and_points_to_the_target() -> None:
    torch.manual_seed(0)
    x, y = points(400, 2, 17).float(), points(400, 2, 18, 3.0).float()
    state = make_state(0)
    c = cfg(L=0.5, critic_steps=100, critic_lr=1e-2)
    v = FIELDS["lipschitz_f"](x, y, c, state)
    assert float(v.norm(dim=1).max()) <= 0.5 + 1e-6
    direction = torch.tensor([1.0, 1.0]) / math.sqrt(2)
    assert float((v @ direction).mean()) > 0.4  # measured 0.49 (speed bound 0.5)


# ----------------------------------------------------------------------------------------------
# backends


@pytest.mark.slow  # about 2 min on 2 cores with a cold KeOps cache (8 float64 formulas)
@pytest.mark.skipif(not keops_available(), reason="pykeops not installed")
def test_keops_and_chunked_torch_agree() -> None:
    x, y = points(300, 2, 19), points(257, 2, 20, 0.5)
    for kernel, tau in (("laplace", 0.3), ("gaussian", 0.2)):
        off = torch.linspace(-1, 1, len(y), dtype=F64)
        a = softmax_stats(x, y, tau, kernel, offset=off, backend="torch", chunk=64)
        b = softmax_stats(x, y, tau, kernel, offset=off, backend="keops")
        torch.testing.assert_close(a[0], b[0], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(a[1], b[1], atol=1e-10, rtol=1e-10)
    a = softmax_stats(x, x, 0.3, "laplace", exclude_self=True, backend="torch", chunk=64)
    b = softmax_stats(x, x, 0.3, "laplace", exclude_self=True, backend="keops")
    torch.testing.assert_close(a[1], b[1], atol=1e-10, rtol=1e-10)
    w = torch.full((len(y),), 1.0 / len(y), dtype=F64)
    a = kernel_grad_sum(x, y, w, "gaussian", 0.5, backend="torch", chunk=50)
    b = kernel_grad_sum(x, y, w, "gaussian", 0.5, backend="keops")
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


@pytest.mark.slow
@pytest.mark.skipif(not keops_available(), reason="pykeops not installed")
@pytest.mark.parametrize("kernel", ["laplace", "energy", "riesz"])
def test_keops_and_torch_agree_on_singular_kernels(kernel: str) -> None:
    x = points(200, 3, 21)
    w = torch.full((200,), 1 / 200, dtype=F64)
    a = kernel_grad_sum(x, x, w, kernel, 0.5, 1.5, backend="torch", chunk=33)
    b = kernel_grad_sum(x, x, w, kernel, 0.5, 1.5, backend="keops")
    torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


# ----------------------------------------------------------------------------------------------
# separated modes (Gretton et al.): kernel fields cannot move mass to a far mode, Sinkhorn can

A = 3.0


def two_modes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Particles N((−a, 0), 0.3²I); target ½(δ_{(−a,0)} + δ_{(a,0)}) as 100 + 100 atoms."""
    x = points(200, 2, 22) * 0.3 + torch.tensor([-A, 0.0], dtype=F64)
    left = torch.tensor([[-A, 0.0]], dtype=F64).repeat(100, 1)
    right = torch.tensor([[A, 0.0]], dtype=F64).repeat(100, 1)
    return x, torch.cat([left, right]), left


KERNEL_FIELDS = {
    # h = 0.5: the +a mode's weight relative to −a's is exp(−(|x−a|² − |x+a|²)/(2h²)) ≈ e^{−70}
    "kde_kl": cfg(bandwidth=0.5),
    # Laplace, τ ≤ 0.2: the row-column normalization takes the square root of row and column
    # softmaxes, so the relative weight is ≈ exp(−(|x−a| − |x+a|)/(2τ)) ≈ e^{−a/τ} = e^{−15}
    # (not e^{−2a/τ}: with τ = 0.5 the far mode still adds 16 % to the velocity, measured)
    "drift": cfg(temperatures=(0.05, 0.1, 0.2)),
}


@pytest.mark.parametrize("name", list(KERNEL_FIELDS))
def test_kernel_fields_leave_the_far_mode_empty(name: str) -> None:
    x, target, left = two_modes()
    c = KERNEL_FIELDS[name]
    field = FIELDS[name]
    v_full = field(x, target, c, make_state(0))
    v_left = field(x, left, c, make_state(0))
    # what the +a mode adds to the velocities is exponentially small
    bound = {"kde_kl": 1e-12, "drift": 1e-3}[name]  # measured (relative): 0.0 and 2.4e-4
    assert float((v_full - v_left).norm(dim=1).max()) < bound * float(v_full.norm(dim=1).max())
    for _ in range(100):
        x = x + 0.5 * field(x, target, c, make_state(0))
    assert float((x[:, 0] > 0).sum()) == 0  # nobody crossed over
    assert float((x[:, 0] + A).abs().max()) < 1.0


def test_sinkhorn_sends_half_the_particles_to_the_far_mode() -> None:
    x, target, _ = two_modes()
    c = cfg(blur=0.05, scaling=0.9)
    state = make_state(0)
    for _ in range(30):
        x = x + 0.5 * FIELDS["sinkhorn"](x, target, c, state)
    right = float(((x - torch.tensor([A, 0.0], dtype=F64)).norm(dim=1) < 0.5).double().mean())
    left = float(((x - torch.tensor([-A, 0.0], dtype=F64)).norm(dim=1) < 0.5).double().mean())
    assert abs(right - 0.5) < 0.05 and abs(left - 0.5) < 0.05  # measured 0.5 / 0.5


def test_sliced_directions_are_reproducible() -> None:
    x, y = points(100, 2, 23), points(120, 2, 24, 1.0)
    v1 = FIELDS["sliced_w"](x, y, cfg(n_directions=8), make_state(5))
    v2 = FIELDS["sliced_w"](x, y, cfg(n_directions=8), make_state(5))
    assert torch.equal(v1, v2)
    assert np.isfinite(v1.numpy()).all()
