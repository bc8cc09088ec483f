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
    log_pi = np.log(pi)
    u = np.maximum(log_pi, np.log(np.maximum(c, 1e-300)))
    for _ in range(_NEWTON_MAX_ITER):
        eu = np.exp(u)
        step = (eu - c + t * (u - log_pi)) / (eu + t)
        u = u - step
        if np.all(np.abs(step) <= _NEWTON_RTOL * np.maximum(np.abs(u), 1.0)):
            break
    return np.exp(u)


#: pointwise prox of t·π f(s/π) for the f-divergences the grid solver supports
TERMINAL_PROX: dict[str, Callable[[Array, Array, float], Array]] = {"kl": prox_kl_terminal}


def terminal_prox(div: FDivergence) -> Callable[[Array, Array, float], Array]:
    """The pointwise prox of the f-divergence ``div`` on the grid."""
    try:
        return TERMINAL_PROX[div.name]
    except KeyError:
        raise ValueError(
            f"terminal.f: the grid solver has no proximal map for {div.name!r}"
        ) from None
