"""Entropic polish of a JKO step (fixed or KL terminal): log-domain Sinkhorn on the tensor grid.

The back-and-forth potentials (solvers/grid/back_and_forth.py) converge to the continuum
Kantorovich potentials; the certified bracket of the atoms' problem

    W = min_γ Σ_ij γ_ij c_ij,   γ 1 = μ,  γᵀ1 = ν,   c_ij = |x_i − y_j|²/(2τ)

then stalls at the discretization error of smooth potentials (O(h): about 2.5e-3 at 64²). The
entropic problem at temperature ε,

    max_{f, g}  Σ f μ + Σ g ν − ε Σ_ij μ_i ν_j (e^{(f_i + g_j − c_ij)/ε} − 1),

is smooth and solved by Sinkhorn's alternating exact maximizations (log domain)

    f_i = −ε log Σ_j ν_j e^{(g_j − c_ij)/ε},      g_j = −ε log Σ_i μ_i e^{(f_i − c_ij)/ε},

each a separable soft-min on the grid: c is a sum over axes, so the sum over the d-dimensional
index j is d one-dimensional log-sum-exps, O(N·n) per axis (:meth:`EntropicGrid.softmin`).
Warm-started from the back-and-forth potentials at ε = h²/(4τ) (EPS_CELLS), a few hundred
iterations give both

* a lower bound: Σ μ g^c + Σ ν (g^c)^c, exact discrete c-transforms of Sinkhorn's g (feasible
  for the dual of W whatever g is), which tends to W as ε → 0 (the discrete potentials the
  smooth ascent cannot reach); and
* an upper bound: the plan P_ij = μ_i ν_j e^{(f_i + g_j − c_ij)/ε} after an f-update has rows μ
  exactly; the columns it over-fills carry their excess on to the columns it under-fills
  (:func:`solvers.grid.pushforward.match_deficits`), which glues into a coupling of exactly
  (μ, ν) whose cost is computed exactly (:func:`glued_plan_cost`). It exceeds W by the entropic
  blur, O(ε), plus the rerouting, which vanishes as Sinkhorn converges.

The terminal KL(ρ_T‖π) has the same polish with the unbalanced g-step (:func:`polish`).

Measured on the 64² mixture (emd2 = 2.58421; the back-and-forth ascent stalls at lower ÷ emd2
0.9989, upper 1.0013): from the stalled ascent, 150 iterations give lower 0.99974, upper 1.00064
(about 1.2 s). The iterations cost N·Σn_axis exponentials each (0.09 s at 128²), so the polish is
meant for the grids where the ascent's floor is above the tolerance (up to 128²:
back_and_forth.POLISH_MAX_WORK); ε = h²/(8τ) gives a better lower bound (0.99982) but a slower
upper one, hence the halving of ε only when the bracket stalls (COOL_RATIO).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from mfg.grid import Grid
from solvers.grid.pushforward import carry_on_cost

Array = np.ndarray


@numba.njit(cache=True)
def _lse_lines(a: Array, k: Array) -> Array:
    """out[l, i] = log Σ_j exp(a[l, j] − k[i, j]) for a (L, m), k (n, m) -> (L, n); −∞ where
    every term is −∞. One pass per output, rescaled whenever a larger term appears (the
    streaming log-sum-exp)."""
    L, m = a.shape
    n = k.shape[0]
    out = np.empty((L, n))
    for line in range(L):
        for i in range(n):
            top = -np.inf
            s = 0.0
            for j in range(m):
                v = a[line, j] - k[i, j]
                if v == -np.inf:
                    continue
                if v <= top:
                    s += np.exp(v - top)
                else:
                    s = s * np.exp(top - v) + 1.0
                    top = v
            out[line, i] = top + np.log(s) if s > 0.0 else -np.inf
    return out


def log_sum_exp(a: Array, kernels: Sequence[Array]) -> Array:
    """log Σ_j exp(a_j − Σ_axis K_axis[i_axis, j_axis]) for a of the grid's shape and one matrix
    K_axis (n_axis × n_axis) per axis: one log-sum-exp per axis, the axes in turn."""
    out = np.asarray(a, dtype=np.float64)
    for axis, k in enumerate(kernels):
        moved = np.ascontiguousarray(np.moveaxis(out, axis, -1))
        lines = _lse_lines(moved.reshape(-1, moved.shape[-1]), k)
        out = np.moveaxis(lines.reshape(*moved.shape[:-1], k.shape[0]), -1, axis)
    return out


def _log_weights(w: Array) -> Array:
    with np.errstate(divide="ignore"):
        return np.log(w)


class EntropicGrid:
    """Soft-min operators of the cost c(x, y) = |x − y|²/(2τ) on a tensor grid at temperature ε.
    Potentials and measures have the grid's shape; measures are atoms (masses)."""

    def __init__(self, grid: Grid, tau: float, eps: float):
        self.grid, self.tau, self.eps = grid, tau, eps
        self.x = [grid.centres(a) for a in range(grid.dim)]
        self.cost = [(x[:, None] - x[None, :]) ** 2 / (2.0 * tau) for x in self.x]  # per axis
        self.kernels = [c / eps for c in self.cost]

    def softmin(self, g: Array, weights: Array) -> Array:
        """f_i = −ε log Σ_j w_j e^{(g_j − c_ij)/ε} (an exact Sinkhorn half-step)."""
        return -self.eps * log_sum_exp(g / self.eps + _log_weights(weights), self.kernels)

    def plan_moments(self, f: Array, mu: Array, g: Array, nu: Array
                     ) -> tuple[Array, float, Array]:
        """For P_ij = μ_i ν_j e^{(f_i + g_j − c_ij)/ε}: column sums, the cost Σ P_ij c_ij, and
        the column barycentres Σ_i P_ij x_i / Σ_i P_ij, shape (d, *n)."""
        F = f / self.eps + _log_weights(mu)
        G = g / self.eps + _log_weights(nu)
        log_in = log_sum_exp(F, self.kernels)  # log Σ_i e^{F_i − c_ij/ε}: the matrix is symmetric
        cols = np.exp(G + log_in)
        cost = 0.0
        bary = np.empty((self.grid.dim, *self.grid.n))
        for a, c in enumerate(self.cost):
            with np.errstate(divide="ignore"):
                weighted = [k - np.log(c) if b == a else k for b, k in enumerate(self.kernels)]
            cost += float(np.sum(np.exp(G + log_sum_exp(F, weighted))))
            shift = self.x[a][0] - 1.0  # positive weights x_i − shift for the log domain
            xw = [k - np.log(self.x[a] - shift)[None, :] if b == a else k
                  for b, k in enumerate(self.kernels)]
            with np.errstate(invalid="ignore"):
                bary[a] = np.exp(log_sum_exp(F, xw) - log_in) + shift
        return cols, cost, bary


def glued_plan_cost(ent: EntropicGrid, f: Array, g: Array, mu: Array, nu: Array) -> float:
    """Σ c of a coupling of exactly (μ, ν) built from Sinkhorn's plan P (rows μ: f must be the
    soft-min of g): where the columns exceed ν the excess e_j (arrived with mean displacement
    v_j = y_j − x̄_j, x̄_j the column's barycentre) is carried on to the shortfall q = (ν − col)⁺
    by a coupling B of (e, q) on the grid, at the exact extra cost
    (B + 2 Σ_j v_j·D_j)/(2τ), D_j = Σ_k B_jk (y_k − y_j) (:func:`carry_on_cost`)."""
    cols, cost, bary = ent.plan_moments(f, mu, g, nu)
    e = np.maximum(cols - nu, 0.0).ravel()
    q = np.maximum(nu - cols, 0.0).ravel()
    if e.sum() <= 0.0:
        return cost
    grid = ent.grid
    centres = grid.mesh().reshape(-1, grid.dim)
    drift = centres - np.where(e[:, None] > 0, bary.reshape(grid.dim, -1).T, centres)
    q *= e.sum() / q.sum()  # equal masses to rounding (Σ cols = Σ μ = Σ ν)
    return cost + carry_on_cost(e, q, drift, grid.n, centres) / (2.0 * ent.tau)


#: temperature of the polish in cells: ε = EPS_CELLS · min(h_axis)²/(2τ) (larger converges faster,
#: smaller tightens the lower bound: 0.5 reaches a certified 1e-3 on the 64² and 128² mixtures)
EPS_CELLS = 0.5
#: ε is halved (at most COOLINGS times) when a certification gains less than a factor COOL_RATIO
#: on the gap (Gaussian KL at 64²: the gap stalls at 1.3e-3 with ε = h²/(4τ), 4.2e-4 at h²/(8τ))
COOL_RATIO, COOLINGS = 0.95, 2
#: the bounds of the polish are built every CERTIFY_EVERY Sinkhorn iterations (each costs about
#: three iterations)
CERTIFY_EVERY = 25


@dataclass
class PolishResult:
    """Best bounds of an entropic polish (the best upper's transport and terminal costs apart),
    its iterations and the last target potential g."""

    lower: float
    upper: float
    iterations: int
    g: Array
    upper_split: tuple[float, float] = (np.inf, np.inf)  # (transport, terminal cost)
    history: dict[str, list[float]] = field(default_factory=dict)


def polish(grid: Grid, tau: float, mu: Array, nu: Array, g: Array, tol: float, max_iter: int,
           lower_bound: Callable[[Array], float], lower: float = -np.inf, upper: float = np.inf,
           callback: Callable[[PolishResult], None] | None = None,
           terminal_cost: Callable[[Array], float] | None = None) -> PolishResult:
    """Sinkhorn iterations (module docstring) from the target potential ``g`` until the
    certified relative gap (upper − lower)/upper is <= ``tol`` or ``max_iter``; ``lower`` and
    ``upper`` are bounds already known (kept when better); ``lower_bound(g)`` is the dual of the
    JKO step at a target potential g with exact discrete c-transforms (a lower bound for any g:
    ``BackAndForth.exact_dual``).

    Fixed terminal ν (``terminal_cost`` None): the upper bound of the module docstring. Terminal
    cost KL(ρ_T‖π) instead (``terminal_cost`` = G on densities, ``nu`` = π's atoms): the
    terminal marginal is free, so the g-step is the proximal one of unbalanced Sinkhorn (Chizat,
    Peyré, Schmitzer & Vialard 2018), g_j = −ε/(1 + ε) log Σ_i μ_i e^{(f_i − c_ij)/ε} with
    reference π, and the plan P (rows μ exactly) is itself feasible: upper = Σ P c + G(Pᵀ1/h)."""
    ent = EntropicGrid(grid, tau, EPS_CELLS * min(grid.dx) ** 2 / (2.0 * tau))
    coolings = 0
    out = PolishResult(lower, upper, 0, g,
                       history={"lower": [], "upper": [], "relative_gap": []})
    for it in range(1, max_iter + 1):
        f = ent.softmin(g, nu)
        g = ent.softmin(f, mu) if terminal_cost is None else ent.softmin(f, mu) / (1.0 + ent.eps)
        if it % CERTIFY_EVERY and it != max_iter:
            continue
        f = ent.softmin(g, nu)  # rows exact for the plan
        out.lower = max(out.lower, lower_bound(g))
        if terminal_cost is None:
            split = (glued_plan_cost(ent, f, g, mu, nu), 0.0)
        else:
            cols, cost, _ = ent.plan_moments(f, mu, g, nu)
            split = (cost, terminal_cost(cols / grid.cell_volume))
        if sum(split) < out.upper:
            out.upper, out.upper_split = sum(split), split
        out.iterations, out.g = it, g
        gap = (out.upper - out.lower) / max(abs(out.upper), 1e-300)
        for key, value in (("lower", out.lower), ("upper", out.upper), ("relative_gap", gap)):
            out.history[key].append(value)
        if callback is not None:
            callback(out)
        if gap <= tol:
            break
        gaps = out.history["relative_gap"]
        if len(gaps) > 1 and gaps[-1] > COOL_RATIO * gaps[-2] and coolings < COOLINGS:
            # the bracket closes on the entropic optimum, O(ε) from W: halve ε (g stays a
            # fine warm start in the log domain)
            ent = EntropicGrid(grid, tau, ent.eps / 2.0)
            coolings += 1
    return out
