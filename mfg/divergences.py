"""f-divergences D_f(ρ‖π) = ∫ f(ρ/π) π dx and their first variations (DESIGN.md §1).

Each generator f is convex on [0, ∞) with f(1) = 0. On a grid, with cell averages ``rho`` and
``pi`` and cell volume ``h``, D_f(ρ‖π) ≈ h Σ_i π_i f(ρ_i/π_i), and its first variation is
δD_f/δρ = f'(ρ/π). The generators (with f' and the convex conjugate f*(y) = sup_x xy − f(x)):

=============  ==================================  ====================  =========================
name           f(x)                                f'(x)                 f*(y)
=============  ==================================  ====================  =========================
kl             x log x − x + 1                     log x                 e^y − 1
reverse_kl     x − 1 − log x                       1 − 1/x               −log(1 − y), y < 1
chi2           (x − 1)²                            2(x − 1)              y + y²/4 (y ≥ −2), else −1
alpha (α > 1)  (x^α − 1)/(α(α − 1))                x^{α−1}/(α − 1)       :func:`alpha_divergence`
js             x log x − (1 + x) log((1 + x)/2)    log(2x/(1 + x))       −log(2 − e^y), y < log 2
=============  ==================================  ====================  =========================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class FDivergence:
    """A generator ``f`` with its derivatives ``df``, ``d2f`` and convex conjugate ``conjugate``."""

    name: str
    f: Callable[[Array], Array]
    df: Callable[[Array], Array]
    d2f: Callable[[Array], Array]
    conjugate: Callable[[Array], Array]
    alpha: float | None = None


def _xlogx(x: Array) -> Array:
    """x log x with 0 log 0 = 0."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


KL = FDivergence(
    name="kl",
    f=lambda x: _xlogx(x) - x + 1.0,
    df=lambda x: np.log(x),
    d2f=lambda x: 1.0 / x,
    conjugate=lambda y: np.expm1(y),
)

REVERSE_KL = FDivergence(
    name="reverse_kl",
    f=lambda x: x - 1.0 - np.log(x),
    df=lambda x: 1.0 - 1.0 / x,
    d2f=lambda x: 1.0 / x**2,
    conjugate=lambda y: np.where(y < 1, -np.log(np.where(y < 1, 1.0 - y, 1.0)), np.inf),
)

CHI2 = FDivergence(
    name="chi2",
    f=lambda x: (x - 1.0) ** 2,
    df=lambda x: 2.0 * (x - 1.0),
    d2f=lambda x: 2.0 + 0.0 * x,
    conjugate=lambda y: np.where(y >= -2.0, y + 0.25 * y**2, -1.0),
)

JS = FDivergence(
    name="js",
    f=lambda x: _xlogx(x) - (1.0 + x) * np.log((1.0 + x) / 2.0),
    df=lambda x: np.log(2.0 * x / (1.0 + x)),
    d2f=lambda x: 1.0 / (x * (1.0 + x)),
    conjugate=lambda y: np.where(
        y < np.log(2.0), -np.log(np.where(y < np.log(2.0), 2.0 - np.exp(y), 1.0)), np.inf
    ),
)


def alpha_divergence(alpha: float) -> FDivergence:
    """f_α(x) = (x^α − 1)/(α(α − 1)), α > 1; f*(y) = x*y − f_α(x*) with x* = ((α−1)y)^{1/(α−1)}
    for y > 0 and f*(y) = 1/(α(α − 1)) for y ≤ 0."""
    if not alpha > 1:
        raise ValueError(f"alpha-divergence needs alpha > 1 (got {alpha})")
    a = float(alpha)

    def conjugate(y: Array) -> Array:
        y = np.asarray(y, dtype=np.float64)
        xs = np.where(y > 0, (a - 1.0) * np.maximum(y, 0.0), 0.0) ** (1.0 / (a - 1.0))
        return xs * y - (xs**a - 1.0) / (a * (a - 1.0))

    return FDivergence(
        name="alpha",
        f=lambda x: (np.asarray(x, dtype=np.float64) ** a - 1.0) / (a * (a - 1.0)),
        df=lambda x: np.asarray(x, dtype=np.float64) ** (a - 1.0) / (a - 1.0),
        d2f=lambda x: np.asarray(x, dtype=np.float64) ** (a - 2.0),
        conjugate=conjugate,
        alpha=a,
    )


#: f-divergences by the name used in scenarios (``terminal.f``); ``alpha`` takes a parameter.
F_DIVERGENCES: dict[str, FDivergence | Callable[[float], FDivergence]] = {
    "kl": KL,
    "reverse_kl": REVERSE_KL,
    "chi2": CHI2,
    "alpha": alpha_divergence,
    "js": JS,
}


def get_f_divergence(name: str, alpha: float | None = None) -> FDivergence:
    """The f-divergence called ``name`` (a key of ``F_DIVERGENCES``; ``alpha`` for "alpha")."""
    try:
        entry = F_DIVERGENCES[name]
    except KeyError:
        known = ", ".join(F_DIVERGENCES)
        raise ValueError(f"unknown f-divergence {name!r} (known: {known})") from None
    if isinstance(entry, FDivergence):
        return entry
    if alpha is None:
        raise ValueError(f"f-divergence {name!r} needs alpha")
    return entry(alpha)


def f_divergence_on_grid(div: FDivergence, rho: Array, pi: Array, cell_volume: float) -> float:
    """D_f(ρ‖π) ≈ h Σ_i π_i f(ρ_i/π_i) for cell averages on a grid of cell volume h.

    Cells with π_i = 0 contribute 0 if ρ_i = 0 and +∞ otherwise (ρ must be ≪ π).
    """
    rho = np.asarray(rho, dtype=np.float64)
    pi = np.asarray(pi, dtype=np.float64)
    outside = (pi <= 0) & (rho > 0)
    if np.any(outside):
        return float("inf")
    pos = pi > 0
    return float(cell_volume * np.sum(pi[pos] * div.f(rho[pos] / pi[pos])))
