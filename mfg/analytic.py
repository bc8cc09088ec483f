"""Closed-form solutions for Gaussian → Gaussian with diagonal covariances (DESIGN.md §1).

The problem separates per coordinate. With τ = T/λ, source N(m0, s0²) and target N(m1, s1²):

* ``fixed``: ρ_T = N(m1, s1²).
* ``f: kl``: ρ_T = N(m, s²) minimizes (m − m0)²/(2τ) + (s − s0)²/(2τ) + KL(N(m, s²)‖N(m1, s1²)),
  so m = (m0/τ + m1/s1²)/(1/τ + 1/s1²) and s is the positive root of
  s²(1/τ + 1/s1²) − s·s0/τ − 1 = 0.

The path is McCann's interpolation: mean and standard deviation change linearly in t, and
particles move on straight lines with v(x, t) = ṁ + (ṡ/s(t))(x − m(t)). The value function solves
−∂tU + |∇U|²/(2λ) = 0 backwards from U(·, T) = g, so by the Hopf–Lax formula

    U(x, t) = min_y  g(y) + λ|x − y|²/(2(T − t)),

which for the quadratic g(y) = Σ_i A_i y_i²/2 + B_i y_i + C_i is again quadratic. For KL,
g = δG/δρ = log(ρ_T/π) exactly; for ``fixed``, g is the Kantorovich potential with
∇g(y) = −λ v(y, T), fixed up to a constant by g(m1) = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfg.distributions import Gaussian
from mfg.scenario import Scenario

Array = np.ndarray


def kl_terminal_gaussian(m0: Array, s0: Array, m1: Array, s1: Array, tau: Array | float):
    """(m, s) of the minimizer ρ_T = N(m, s²) of W2²(ρ0, ρ_T)/(2τ) + KL(ρ_T‖π), per coordinate."""
    a = 1.0 / tau + 1.0 / s1**2
    m = (m0 / tau + m1 / s1**2) / a
    s = (s0 / tau + np.sqrt((s0 / tau) ** 2 + 4.0 * a)) / (2.0 * a)
    return m, s


def kl_gaussian(m: Array, s: Array, m1: Array, s1: Array) -> float:
    """KL(N(m, diag s²) ‖ N(m1, diag s1²)) = Σ_i log(s1/s) + (s² + (m − m1)²)/(2 s1²) − ½."""
    return float(np.sum(np.log(s1 / s) + (s**2 + (m - m1) ** 2) / (2 * s1**2) - 0.5))


@dataclass(frozen=True)
class ClosedForm:
    """Gaussian path N(mean(t), diag std(t)²) on [0, T] and its value function U(x, t).

    Arrays have one entry per coordinate; the terminal potential is g(y) = Σ A y²/2 + B y + C.
    """

    m0: Array
    s0: Array
    mT: Array
    sT: Array
    A: Array
    B: Array
    C: float
    lam: float
    T: float
    terminal_cost: float

    def mean(self, t: float) -> Array:
        return self.m0 + (t / self.T) * (self.mT - self.m0)

    def std(self, t: float) -> Array:
        return self.s0 + (t / self.T) * (self.sT - self.s0)

    def log_density(self, x: Array, t: float) -> Array:
        """log N(x; mean(t), diag std(t)²), x of shape (..., d)."""
        m, s = self.mean(t), self.std(t)
        z = (np.asarray(x) - m) / s
        return -0.5 * np.sum(z**2 + np.log(2 * np.pi * s**2), axis=-1)

    def U(self, x: Array, t: float) -> Array:
        """Value function by Hopf–Lax, x of shape (..., d); U(·, T) = g."""
        x = np.asarray(x, dtype=np.float64)
        if t >= self.T:
            return np.sum(0.5 * self.A * x**2 + self.B * x, axis=-1) + self.C
        k = self.lam / (self.T - t)
        # min_y A y²/2 + B y + k (x − y)²/2: y* = (k x − B)/(A + k)
        val = 0.5 * k * x**2 - (k * x - self.B) ** 2 / (2.0 * (self.A + k))
        return np.sum(val, axis=-1) + self.C

    @property
    def kinetic_energy(self) -> float:
        """λ/(2T) Σ_i [(mT − m0)² + (sT − s0)²] = λ W2²(ρ0, ρ_T)/(2T)."""
        w2 = np.sum((self.mT - self.m0) ** 2 + (self.sT - self.s0) ** 2)
        return float(self.lam * w2 / (2.0 * self.T))

    @property
    def objective(self) -> float:
        return self.kinetic_energy + self.terminal_cost


def _diagonal_params(dist) -> tuple[Array, Array] | None:
    if not isinstance(dist, Gaussian) or not dist.is_diagonal:
        return None
    return dist.mean(), np.sqrt(np.diag(dist.cov()))


def closed_form(scenario: Scenario) -> ClosedForm | None:
    """The closed form of ``scenario``, or None when it has none (non-Gaussian or full covariance
    source/target, or a terminal cost other than ``fixed`` and ``f: kl``)."""
    src, tgt = _diagonal_params(scenario.source), _diagonal_params(scenario.target)
    if src is None or tgt is None:
        return None
    (m0, s0), (m1, s1) = src, tgt
    lam, T = scenario.lam, scenario.T
    tau = T / lam
    term = scenario.terminal
    if term.kind == "fixed":
        m, s = m1, s1
        # ∇g(y) = −λ v(y, T) = −(1/τ)[(m1 − m0) + (s1 − s0)(y − m1)/s1]
        A = -(s1 - s0) / (tau * s1)
        B = -(m1 - m0) / tau - A * m1
        C = float(-np.sum(0.5 * A * m1**2 + B * m1))
        return ClosedForm(m0, s0, m, s, A, B, C, lam, T, 0.0)
    if term.kind == "f" and term.f == "kl":
        m, s = kl_terminal_gaussian(m0, s0, m1, s1, tau)
        # g(y) = log N(y; m, s²) − log N(y; m1, s1²)
        A = 1.0 / s1**2 - 1.0 / s**2
        B = m / s**2 - m1 / s1**2
        C = float(np.sum(m1**2 / (2 * s1**2) - m**2 / (2 * s**2) + np.log(s1 / s)))
        return ClosedForm(m0, s0, m, s, A, B, C, lam, T, kl_gaussian(m, s, m1, s1))
    return None


def w1_terminal_quantile(q0, q_pi, tau: float, L: float):
    """Quantile function of the minimizer ρ_T of W2²(ρ0, ρ_T)/(2τ) + L·W1(ρ_T, π) in 1-D.

    In 1-D both distances are integrals over the quantile variable u ∈ (0, 1):
    W2² = ∫(Q − Q0)² du and W1 = ∫|Q − Qπ| du, so the problem separates pointwise in u:
    Q(u) = argmin_q (q − Q0(u))²/(2τ) + L|q − Qπ(u)| = clip(Qπ(u), Q0(u) − τL, Q0(u) + τL),
    the median of three nondecreasing functions, hence a quantile function. Each particle
    moves towards its target quantile by at most τL (speed ≤ L/λ over time T).
    ``q0`` and ``q_pi`` map u (array) to the quantiles of ρ0 and π.
    """

    def quantile(u):
        a, b = q0(u), q_pi(u)
        return np.clip(b, a - tau * L, a + tau * L)

    return quantile


def w1_1d_from_quantiles(density: Array, x: Array, quantile, n_u: int = 200_000) -> float:
    """W1 = ∫₀¹ |F⁻¹(u) − Q(u)| du between a 1-D grid density (cell averages at the cell centres
    ``x``, piecewise constant) and a measure given by its quantile function Q."""
    dx = x[1] - x[0]
    edges = np.concatenate([[x[0] - dx / 2], x + dx / 2])
    cdf = np.concatenate([[0.0], np.cumsum(np.maximum(density, 0.0)) * dx])
    cdf /= cdf[-1]
    u = (np.arange(n_u) + 0.5) / n_u
    inv = np.interp(u, cdf, edges)  # exact inverse of the piecewise-linear CDF where it rises
    return float(np.mean(np.abs(inv - quantile(u))))


def terminal_quantile(scenario: Scenario):
    """Exact quantile function u ↦ Q(u) of ρ_T in 1-D, when known: Gaussian source and target
    with terminal kind ``fixed``, ``f: kl`` (the closed form above) or ``w1``
    (:func:`w1_terminal_quantile`); None otherwise."""
    from scipy.stats import norm

    if scenario.dim != 1:
        return None
    src, tgt = _diagonal_params(scenario.source), _diagonal_params(scenario.target)
    if src is None or tgt is None:
        return None
    (m0, s0), (m1, s1) = (float(src[0][0]), float(src[1][0])), (float(tgt[0][0]), float(tgt[1][0]))
    if scenario.terminal.kind == "w1":
        return w1_terminal_quantile(
            lambda u: m0 + s0 * norm.ppf(u), lambda u: m1 + s1 * norm.ppf(u),
            scenario.T / scenario.lam, scenario.terminal.L,
        )
    cf = closed_form(scenario)
    if cf is None:
        return None
    m, s = float(cf.mT[0]), float(cf.sT[0])
    return lambda u: m + s * norm.ppf(u)
