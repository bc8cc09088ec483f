"""f-divergences D_f(ρ‖π) = ∫ f(ρ/π) π dx and their first variations (DESIGN.md §1).

Each generator f is convex on [0, ∞) with f(1) = 0. On a grid, with cell averages ``rho`` and
``pi`` and cell volume ``h``, D_f(ρ‖π) ≈ h Σ_i π_i f(ρ_i/π_i), and its first variation is
δD_f/δρ = f'(ρ/π).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class FDivergence:
    """A generator ``f`` with its derivative ``df`` and convex conjugate ``conjugate`` (f*)."""

    name: str
    f: Callable[[Array], Array]
    df: Callable[[Array], Array]
    conjugate: Callable[[Array], Array]


def _kl_f(x: Array) -> Array:
    # x log x - x + 1, with 0 log 0 = 0
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0) - x + 1.0


KL = FDivergence(
    name="kl",
    f=_kl_f,  # f(x) = x log x − x + 1
    df=lambda x: np.log(x),  # f'(x) = log x
    conjugate=lambda y: np.expm1(y),  # f*(y) = e^y − 1
)

#: f-divergences by the name used in scenarios (``terminal.f``).
F_DIVERGENCES: dict[str, FDivergence] = {"kl": KL}


def get_f_divergence(name: str) -> FDivergence:
    """The f-divergence called ``name`` (a key of ``F_DIVERGENCES``)."""
    try:
        return F_DIVERGENCES[name]
    except KeyError:
        known = ", ".join(F_DIVERGENCES)
        raise ValueError(f"unknown f-divergence {name!r} (known: {known})") from None


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
