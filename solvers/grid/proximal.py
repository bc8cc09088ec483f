"""Pointwise proximal maps used by the grid splitting.

prox_{tF}(y) = argmin_x F(x) + |x − y|²/(2t). All maps act elementwise on arrays of cell values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mfg.divergences import FDivergence

Array = np.ndarray

_NEWTON_MAX_ITER = 100
_NEWTON_RTOL = 1e-13


def prox_kinetic(rho: Array, ms: list[Array], beta: float) -> tuple[Array, list[Array]]:
    """Proximal map of β·|m|²/(2ρ) (the Benamou–Brenier kinetic action), cell by cell.

    Minimizes β|m|²/(2r) + ½(r − ρ)² + ½|q − m|² over (r, q) with r ≥ 0. The optimality conditions
    give q = r m/(r + β) and r the largest real root of the cubic

        P(r) = (r − ρ)(r + β)² − β|m|²/2 = 0,

    or (r, q) = (0, 0) when that root is ≤ 0. P is increasing and convex to the right of
    ρ⁺ = max(ρ, 0), and with c = β|m|²/2 both ρ⁺ + c^{1/3} and ρ⁺ + c/(ρ⁺ + β)² bound the root
    from above, so Newton started at the smaller of the two descends monotonically onto it.
    """
    m2 = sum(m * m for m in ms)
    c = 0.5 * beta * m2
    r_pos = np.maximum(rho, 0.0)
    r = r_pos + np.minimum(np.cbrt(c), c / (r_pos + beta) ** 2)
    for _ in range(_NEWTON_MAX_ITER):
        rb = r + beta
        p = (r - rho) * rb * rb - c
        dp = rb * rb + 2.0 * (r - rho) * rb
        step = p / np.where(dp > 0, dp, 1.0)
        r = r - step
        # a root at or below zero means the answer is r = 0: those cells are done
        r = np.maximum(r, 0.0)
        if np.all((np.abs(step) <= _NEWTON_RTOL * (r + beta)) | (r == 0.0)):
            break
    scale = r / (r + beta)
    return r, [scale * m for m in ms]


def prox_kl_terminal(c: Array, pi: Array, t: float) -> Array:
    """Proximal map of t·π f(s/π) with f(x) = x log x − x + 1 (KL), cell by cell.

    Solves s − c + t log(s/π) = 0 for s > 0 (π > 0). With u = log s the equation
    h(u) = eᵘ − c + t(u − log π) = 0 is increasing and convex, and h ≥ 0 at
    u₀ = max(log π, log c), so Newton from u₀ descends monotonically onto the root.
    """
    if np.any(pi <= 0):  # π = 0 forces s = 0
        out = np.zeros_like(np.asarray(c, dtype=np.float64))
        pos = pi > 0
        out[pos] = prox_kl_terminal(np.asarray(c)[pos], pi[pos], t)
        return out
    log_pi = np.log(pi)
    u = np.maximum(log_pi, np.log(np.maximum(c, 1e-300)))
    for _ in range(_NEWTON_MAX_ITER):
        eu = np.exp(u)
        step = (eu - c + t * (u - log_pi)) / (eu + t)
        u = u - step
        if np.all(np.abs(step) <= _NEWTON_RTOL * np.maximum(np.abs(u), 1.0)):
            break
    return np.exp(u)


def prox_f_terminal(div: FDivergence, c: Array, pi: Array, t: float) -> Array:
    """Proximal map of t·π f(s/π) for any generator f of mfg.divergences, cell by cell.

    Solves h(s) = s − c + t f'(s/π) = 0 on s ≥ 0. h is increasing (f convex); h(max(c, π)) ≥ 0
    since f' ≥ 0 on [1, ∞) for every generator here, and s = 0 when h(0⁺) ≥ 0. Safeguarded
    Newton: a Newton step that leaves the bracket [lo, hi] is replaced by bisection. Cells with
    π = 0 return 0 (the divergence is finite only for s ≪ π).
    """
    c = np.asarray(c, dtype=np.float64)
    pos = pi > 0
    out = np.zeros_like(c)
    cp, pp = c[pos], pi[pos]
    lo = np.zeros_like(cp)
    hi = np.maximum(cp, pp)
    s = np.clip(cp, 1e-12 * pp, hi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        at_zero = -cp + t * div.df(np.full_like(cp, 1e-300))
        zero = np.isfinite(at_zero) & (at_zero >= 0)
        for _ in range(_NEWTON_MAX_ITER):
            x = s / pp
            h = s - cp + t * div.df(x)
            lo = np.where(h < 0, s, lo)
            hi = np.where(h > 0, s, hi)
            newton = s - h / (1.0 + t * div.d2f(x) / pp)
            ok = np.isfinite(newton) & (newton > lo) & (newton < hi)
            s_new = np.where(ok, newton, 0.5 * (lo + hi))
            done = np.abs(s_new - s) <= _NEWTON_RTOL * np.maximum(s_new, 1e-300)
            s = s_new
            if np.all(done | zero):
                break
    out[pos] = np.where(zero, 0.0, s)
    return out


def terminal_prox(div: FDivergence) -> Callable[[Array, Array, float], Array]:
    """(c, π, t) -> the pointwise prox of t·π f(s/π) for the f-divergence ``div``."""
    if div.name == "kl":
        return prox_kl_terminal
    return lambda c, pi, t: prox_f_terminal(div, c, pi, t)


def shrink(ws: list[Array], threshold: float) -> list[Array]:
    """Proximal map of threshold·|w| (isotropic, |w| the Euclidean norm over the components):
    w ↦ w · max(0, 1 − threshold/|w|)."""
    norm = np.sqrt(sum(w * w for w in ws))
    scale = np.maximum(0.0, 1.0 - threshold / np.maximum(norm, 1e-300))
    return [scale * w for w in ws]
