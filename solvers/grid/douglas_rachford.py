"""Douglas–Rachford splitting for the discrete dynamic transport problem on a staggered grid.

Per unit cell volume and time step, the discrete problem is (DESIGN.md §2)

    min over (U, V)   Σ_cells λ |m̄|²/(2ρ̄)  +  (1/dt) Σ_i π_i f(ρ_T,i/π_i)
    subject to        ∂tρ + ∇·m = 0 on every cell, ρ(0) = ρ0, no flux;   V = I U,

with U = (ρ, m) staggered and V = (ρ̄, m̄) centred (Papadakis, Peyré, Oudet 2014). It is split as
F1(U, V) = ι_continuity(U) + kinetic(V) and F2(U, V) = ι{V = I U} + G(ρ_T); both have cheap
proximal maps (a space-time Poisson solve and pointwise cubic roots; tridiagonal solves and a
pointwise terminal prox). The iteration (relaxation α ∈ (0, 2))

    x = prox_{γF2}(z),   y = prox_{γF1}(2x − z),   z ← z + α (y − x)

converges for any γ > 0. The multiplier of the continuity constraint gives the value function:
the projection step moves U by −Aᵀp, and at the fixed point U(t_{k+½}, x_i) = −p/γ solves the
discrete Hamilton–Jacobi equation −∂tU + |∇U|²/(2λ) = 0 with U(T) = δG/δρ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from mfg.divergences import FDivergence, f_divergence_on_grid
from mfg.grid import Grid
from solvers.grid.projections import ContinuityProjection, InterpolationProx
from solvers.grid.proximal import prox_kinetic, terminal_prox
from solvers.grid.staggered import Layout, interpolate_m, interpolate_rho

Array = np.ndarray


@dataclass(frozen=True)
class GridProblem:
    """A discretized transport problem: densities on ``grid``, ``nt`` time steps on [0, T].

    ``divergence`` is None for a fixed endpoint (ρ_T = ``rho1``), else the terminal cost is
    D_f(ρ_T‖π) with π = ``rho1``.
    """

    grid: Grid
    nt: int
    T: float
    lam: float
    rho0: Array
    rho1: Array
    divergence: FDivergence | None

    @property
    def dt(self) -> float:
        return self.T / self.nt

    @property
    def times(self) -> Array:
        return np.linspace(0.0, self.T, self.nt + 1)

    @property
    def cell_times(self) -> Array:
        return (np.arange(self.nt) + 0.5) * self.dt

    def kinetic_energy(self, rho_bar: Array, m_bars: list[Array]) -> float:
        """λ ∫∫ |m|²/(2ρ) dx dt on the centred grid (0 where m = 0, +∞ where ρ = 0 < |m|)."""
        m2 = sum(m * m for m in m_bars)
        pos = rho_bar > 0
        if np.any((~pos) & (m2 > 0)):
            return float("inf")
        action = np.sum(m2[pos] / rho_bar[pos])
        return float(0.5 * self.lam * action * self.dt * self.grid.cell_volume)

    def terminal_cost(self, rho_T: Array) -> float:
        """G(ρ_T): D_f(ρ_T‖π) on the grid, 0 for a fixed endpoint."""
        if self.divergence is None:
            return 0.0
        return f_divergence_on_grid(self.divergence, rho_T, self.rho1, self.grid.cell_volume)


@dataclass
class SplittingState:
    """Iterates of the splitting and its per-iteration history."""

    layout: Layout
    z: Array
    x: Array  # prox_{γF2}(z): satisfies V = I U and carries the terminal prox
    y: Array  # prox_{γF1}(2x − z): satisfies the continuity equation exactly, V ≥ 0
    p: Array  # multiplier of the continuity projection, shape (nt, *n)
    gamma: float
    iterations: int = 0
    converged: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def value_function(self) -> Array:
        """U at the cell centres (t_{k+½}, x_i): U = −p/γ."""
        return -self.p / self.gamma


def initial_guess(problem: GridProblem, layout: Layout) -> Array:
    """Linear interpolation in time between ρ0 and ρ1, zero momentum, V = I U."""
    z = layout.zeros()
    rho, _, rho_bar, _ = layout.views(z)
    s = (problem.times / problem.T).reshape(-1, *([1] * problem.grid.dim))
    rho[...] = (1 - s) * problem.rho0 + s * problem.rho1
    rho_bar[...] = interpolate_rho(rho)
    return z


def _terminal_map(problem: GridProblem, gamma: float) -> Callable[[Array, float], Array]:
    """(c, t) -> pointwise prox of t·γ/dt·π f(s/π), or the fixed endpoint."""
    if problem.divergence is None:
        return lambda c, t: problem.rho1
    prox = terminal_prox(problem.divergence)
    scale = gamma / problem.dt
    return lambda c, t: prox(c, problem.rho1, t * scale)


def douglas_rachford(
    problem: GridProblem,
    *,
    gamma: float,
    max_iter: int,
    tol: float,
    relaxation: float = 1.0,
    progress: bool = False,
    callback: Callable[[SplittingState], None] | None = None,
) -> SplittingState:
    """Run the splitting until the KKT residual max(primal, dual) < ``tol`` or ``max_iter``.

    primal residual: ‖y − x‖/‖y‖ (distance between the two constraint sets' iterates);
    dual residual: ‖U_k − U_{k−1}‖/‖U_k‖ for the value function U = −p/γ.
    """
    grid = problem.grid
    layout = Layout(problem.nt, grid.n)
    projection = ContinuityProjection(problem.nt, problem.dt, grid.n, grid.dx, problem.rho0)
    interp = InterpolationProx(problem.nt, grid.n, _terminal_map(problem, gamma))
    beta = gamma * problem.lam
    d = grid.dim

    z = initial_guess(problem, layout)
    x = layout.zeros()
    y = layout.zeros()
    state = SplittingState(layout, z, x, y, np.zeros((problem.nt, *grid.n)), gamma)
    hist = state.history
    for key in ("primal_residual", "dual_residual", "kinetic_energy", "terminal_cost", "objective"):
        hist[key] = []
    x_views = layout.views(x)
    out_x = [x_views[0], *x_views[1], x_views[2], *x_views[3]]
    u_prev = None
    # disable=None: no bar when stderr is not a terminal (CI logs, pipes)
    bar = tqdm(total=max_iter, disable=None if progress else True, desc="grid", unit="it")
    try:
        for it in range(1, max_iter + 1):
            zr, zm, zrb, zmb = layout.views(z)
            interp.apply(zr, zm, zrb, zmb, out_x)
            np.subtract(2.0 * x, z, out=y)
            yr, ym, yrb, ymb = layout.views(y)
            state.p = projection.project(yr, ym)
            rb, mbs = prox_kinetic(yrb, ymb, beta)
            yrb[...] = rb
            for j in range(d):
                ymb[j][...] = mbs[j]
            diff = y - x
            z += relaxation * diff

            u = state.value_function
            primal = float(np.linalg.norm(diff) / max(np.linalg.norm(y), 1e-300))
            dual = (
                float(np.linalg.norm(u - u_prev) / max(np.linalg.norm(u), 1e-300))
                if u_prev is not None
                else 1.0
            )
            u_prev = u
            ke = problem.kinetic_energy(yrb, ymb)
            tc = problem.terminal_cost(x_views[0][-1])
            hist["primal_residual"].append(primal)
            hist["dual_residual"].append(dual)
            hist["kinetic_energy"].append(ke)
            hist["terminal_cost"].append(tc)
            hist["objective"].append(ke + tc)
            state.iterations = it
            bar.update()
            if it % 25 == 0:
                bar.set_postfix(primal=f"{primal:.1e}", dual=f"{dual:.1e}", obj=f"{ke + tc:.5g}")
            if callback is not None:
                callback(state)
            if max(primal, dual) < tol:
                state.converged = True
                break
    finally:
        bar.close()
    return state


def centred_fields(layout: Layout, v: Array) -> tuple[Array, list[Array]]:
    """(ρ̄, [m̄^j]) of the packed vector ``v``."""
    _, _, rb, mbs = layout.views(v)
    return rb, mbs


def staggered_to_centred(rho: Array, ms: list[Array]) -> tuple[Array, list[Array]]:
    """I U: centred interpolation of staggered (ρ, m)."""
    return interpolate_rho(rho), [interpolate_m(m, j) for j, m in enumerate(ms)]
