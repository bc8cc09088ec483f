"""Douglas–Rachford splitting for the discrete dynamic transport problem on a staggered grid.

Per unit cell volume and time step, the discrete problem is (DESIGN.md §2)

    min over (U, V)   Σ_cells λ |m̄|²/(2ρ̄)  +  G(ρ_T)/dt
    subject to        ∂tρ + ∇·m = 0 on every cell, ρ(0) = ρ0, no flux;   V = I U,

with G(ρ_T) = Σ_i π_i f(ρ_T,i/π_i) (``f``), ι{ρ_T = π} (``fixed``), or, through Beckmann's flux
form W1(a, b) = min{Σ|w̄| : ∇·w = b − a}, G = L Σ_i |w̄_i| with ∇·w + ρ_T = π (``w1``) or
G = Σ_i π_i f(σ_i/π_i) + L Σ_i |w̄_i| with ∇·w + ρ_T = σ (``lipschitz_f``): the W1 proximal of
D_f, whose minimizer σ is the measure the flow is really pulled towards.

with U = (ρ, m) staggered and V = (ρ̄, m̄) centred (Papadakis, Peyré, Oudet 2014). It is split as
F1(U, V) = ι_continuity(U) + kinetic(V) and F2(U, V) = ι{V = I U} + G(ρ_T); both have cheap
proximal maps (a space-time Poisson solve and pointwise cubic roots; tridiagonal solves and a
pointwise terminal prox). The iteration (relaxation α ∈ (0, 2))

    x = prox_{γF2}(z),   y = prox_{γF1}(2x − z),   z ← z + α (y − x)

converges for any γ > 0. The multiplier of the continuity constraint gives the value function:
the projection step moves U by −Aᵀp, and at the fixed point U(t_{k+½}, x_i) = −p/γ solves the
discrete Hamilton–Jacobi equation −∂tU + |∇U|²/(2λ) = 0 with U(T) = δG/δρ. The multiplier q of
Beckmann's constraint gives the Kantorovich–Lipschitz potential φ* = dt·q/γ, |∇φ*| ≤ L.

Units of time. The splitting is not invariant to a change of metric: its steps are Euclidean
projections, so how far each iteration moves ρ versus m depends on their units. In physical time
the continuity rows weigh ρ by 1/dt and m by 1/dx_j; for T ≪ 1 (dt ≪ dx) the projection
satisfies ∂tρ + ∇·m = 0 almost only by moving ρ, the momenta (of size 1/T) barely move, and the
run stalls far from the optimum (1-D KL case at τ = 1, 3000 iterations: terminal mean 390% off
for T = 1e-4, terminal standard deviation 5% off for T = 100). The iteration therefore runs in
*reference time* t' = t/T ∈ [0, 1]: with m' = T m (∂t'ρ + ∇·m' = 0) and λ' = λ/T = 1/τ,

    λ ∫0^T ∫ |m|²/(2ρ) dx dt = λ' ∫0^1 ∫ |m'|²/(2ρ) dx dt',

G and the value function are unchanged (−∂t'U + |∇U|²/(2λ') = 0 is the same equation), so the
iterates depend on (T, λ) only through τ, exactly as the continuous problem does; the objective
is the same number in both units. :func:`douglas_rachford` converts back at the end.

Step size. Scaling the objective by c > 0 is the same iteration as the step cγ, so the step
given (``gamma``, tuned at τ = 1) is applied to the reference problem divided by the smaller of
its two weights, λ' = 1/τ on the kinetic term and 1 on G: the step used is γ·max(1, τ). For
``fixed`` G has no weight (the minimizer does not depend on λ at all) and the step is γ·τ, which
makes the iterates independent of (T, λ) altogether. Measured on the 1-D KL case (64 cells,
16 steps, 3000 iterations): the objective is within 2e-4 of the closed form for τ from 1e-6 to
1e4 this way, while a step of γ at every τ leaves it 8% off at τ = 100.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm.auto import tqdm

from mfg.divergences import FDivergence, f_divergence_on_grid
from mfg.grid import Grid
from mfg.residuals import ZERO_FRACTION
from solvers.grid.multilevel import (
    axis_spreads,
    coarsenable,
    inject,
    prolong,
    resolves,
    restrict,
)
from solvers.grid.projections import ContinuityProjection, InterpolationProx
from solvers.grid.proximal import prox_kinetic, shrink, terminal_prox
from solvers.grid.staggered import Fields, Layout, interpolate_rho

Array = np.ndarray


@dataclass(frozen=True)
class GridProblem:
    """A discretized transport problem: densities on ``grid``, ``nt`` time steps on [0, T].

    ``terminal`` is one of TERMINAL_KINDS; π = ``rho1``; ``divergence`` is the f of ``f`` and
    ``lipschitz_f`` (None otherwise) and ``L`` the Lipschitz bound of ``w1`` and ``lipschitz_f``.
    """

    grid: Grid
    nt: int
    T: float
    lam: float
    rho0: Array
    rho1: Array
    terminal: str
    divergence: FDivergence | None = None
    L: float | None = None

    @property
    def beckmann(self) -> bool:
        return self.terminal in ("w1", "lipschitz_f")

    @property
    def dt(self) -> float:
        return self.T / self.nt

    @property
    def times(self) -> Array:
        return np.linspace(0.0, self.T, self.nt + 1)

    @property
    def cell_times(self) -> Array:
        return (np.arange(self.nt) + 0.5) * self.dt

    @property
    def velocity_scale(self) -> float:
        """diam/T: the speed that crosses the domain (its diagonal) in time T."""
        return float(np.hypot.reduce([hi - lo for lo, hi in self.grid.bounds])) / self.T

    @property
    def value_scale(self) -> float:
        """λ·diam²/T: the value function of moving mass across the domain in time T
        (|∇U| = λ|v|, integrated over diam); the same number in reference time."""
        return self.lam * self.velocity_scale**2 * self.T

    def in_reference_time(self) -> GridProblem:
        """The same problem with time in units of T: T' = 1, λ' = λ/T = 1/τ (module docstring);
        momenta of its solution are m' = T m, densities and the value function are unchanged."""
        return replace(self, T=1.0, lam=self.lam / self.T)

    def kinetic_energy(self, rho_bar: Array, m_bars: list[Array]) -> float:
        """λ ∫∫ |m|²/(2ρ) dx dt on the centred grid (0 where m = 0, +∞ where ρ = 0 < |m|)."""
        m2 = sum(m * m for m in m_bars)
        pos = rho_bar > 0
        if np.any((~pos) & (m2 > 0)):
            return float("inf")
        action = np.sum(m2[pos] / rho_bar[pos])
        return float(0.5 * self.lam * action * self.dt * self.grid.cell_volume)

    def terminal_cost(self, f: Fields) -> float:
        """G of the iterate ``f``: D_f(ρ_T‖π) (``f``), 0 (``fixed``), L Σ|w̄| h (``w1``), or
        D_f(σ‖π) + L Σ|w̄| h (``lipschitz_f``), h the cell volume."""
        h = self.grid.cell_volume
        if self.terminal == "fixed":
            return 0.0
        if self.terminal == "f":
            return f_divergence_on_grid(self.divergence, f.rho[-1], self.rho1, h)
        cost = self.L * self.w1_flux_norm(f.w_bar)
        if f.sigma is not None:
            cost += f_divergence_on_grid(self.divergence, f.sigma, self.rho1, h)
        return cost

    def w1_flux_norm(self, w_bar: list[Array]) -> float:
        """∫|w| dx ≈ Σ_i |w̄_i| h: W1 between the two ends of the flux at the optimum."""
        return float(np.sum(np.sqrt(sum(w * w for w in w_bar))) * self.grid.cell_volume)


@dataclass
class SplittingState:
    """Iterates of the splitting and its per-iteration history."""

    layout: Layout
    z: Array
    x: Array  # prox_{γF2}(z): satisfies V = I U and carries the terminal prox
    y: Array  # prox_{γF1}(2x − z): satisfies the continuity equation exactly, V ≥ 0
    p: Array  # multiplier of the continuity projection, shape (nt, *n)
    gamma: float
    dt: float
    q: Array | None = None  # multiplier of Beckmann's constraint, shape (*n)
    iterations: int = 0
    converged: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)
    coarse_iterations: list[int] = field(default_factory=list)  # of the warm-start levels

    @property
    def value_function(self) -> Array:
        """U at the cell centres (t_{k+½}, x_i): U = −p/γ."""
        return -self.p / self.gamma

    @property
    def potential(self) -> Array | None:
        """φ* = dt·q/γ at t = T (W1 terminal costs), None otherwise; at the fixed point it equals
        U(·, T) up to a constant, with |∇φ*| ≤ L."""
        return None if self.q is None else self.dt * self.q / self.gamma


def initial_guess(problem: GridProblem, layout: Layout) -> Array:
    """Linear interpolation in time between ρ0 and ρ1, zero momentum and flux, σ = π, V = I U."""
    z = layout.zeros()
    f = layout.views(z)
    s = (problem.times / problem.T).reshape(-1, *([1] * problem.grid.dim))
    f.rho[...] = (1 - s) * problem.rho0 + s * problem.rho1
    f.rho_bar[...] = interpolate_rho(f.rho)
    if f.sigma is not None:
        f.sigma[...] = problem.rho1
    return z


def _terminal_map(problem: GridProblem, gamma: float) -> Callable[[Array, float], Array]:
    """(c, t) -> prox of t·γ/dt·G on ρ_T: pointwise f, the fixed endpoint, or free (W1 kinds,
    whose cost sits on w and σ)."""
    if problem.terminal == "fixed":
        return lambda c, t: problem.rho1
    if problem.beckmann:
        return lambda c, t: c
    prox = terminal_prox(problem.divergence)
    scale = gamma / problem.dt
    return lambda c, t: prox(c, problem.rho1, t * scale)


def _sigma_prox(problem: GridProblem, gamma: float) -> Callable[[Array], Array] | None:
    """σ' -> prox of γ/dt·Σ π f(σ/π) (``lipschitz_f``)."""
    if problem.terminal != "lipschitz_f":
        return None
    prox = terminal_prox(problem.divergence)
    return lambda c: prox(c, problem.rho1, gamma / problem.dt)


def douglas_rachford(
    problem: GridProblem,
    *,
    gamma: float,
    max_iter: int,
    tol: float,
    relaxation: float = 1.0,
    progress: bool = False,
    callback: Callable[[SplittingState], None] | None = None,
    levels: int = 0,
) -> SplittingState:
    """Run the splitting until the KKT residual max(primal, dual) < ``tol`` or ``max_iter``.

    primal residual: ‖y − x‖/‖y‖ (distance between the two constraint sets' iterates);
    dual residual: ‖U_k − U_{k−1}‖/‖U_k‖ for the value function U = −p/γ, with ‖U_k‖ floored
    at ZERO_FRACTION of the value scale (a solution at rest, U ≈ 0, stops instead of comparing
    rounding with rounding until ``max_iter``).

    The iteration runs on ``problem.in_reference_time()`` (T' = 1, λ' = 1/τ; ``callback`` sees
    those iterates, momenta m' = T m); the returned state is in ``problem``'s units of time.
    With ``levels`` > 0 it starts from the solution of the problem on the grid with half the
    cells per axis, itself solved so with ``levels`` − 1 (:func:`_multilevel`); ``tol`` and
    ``max_iter`` apply on every level (a coarse level stopped early starts the fine one farther
    from its solution: 1-D KL on 128 cells at tol 1e-6 with 64-, 32- and 16-cell levels, coarse
    levels stopped at 1e-5 left the fine one unconverged after 20,000 iterations, converged ones
    let it stop after 5,213).
    """
    state = _multilevel(problem.in_reference_time(), levels, gamma=reference_step(problem, gamma),
                        max_iter=max_iter, tol=tol, relaxation=relaxation, progress=progress,
                        callback=callback)
    _to_physical_time(state, problem)
    return state


def coarse_problem(problem: GridProblem) -> GridProblem:
    """The same problem on the grid with the cells of every axis merged in pairs (densities
    averaged over the pairs, so masses are kept; same time steps)."""
    grid = problem.grid
    coarse = Grid(grid.bounds, tuple(k // 2 for k in grid.n))
    return replace(problem, grid=coarse, rho0=restrict(problem.rho0, grid.dim),
                   rho1=restrict(problem.rho1, grid.dim))


def _multilevel(problem: GridProblem, levels: int, **kwargs) -> SplittingState:
    """:func:`_split` on ``problem`` started from the prolonged solution of its coarse level,
    itself solved the same way with ``levels − 1`` (solvers/grid/multilevel.py); ``levels`` is
    cut where the grid stops being coarsenable or the coarse cells would be wider than the
    smaller standard deviation of ρ0 and π along an axis. The fine state's
    ``coarse_iterations`` lists the iterations of the coarser levels, finest first."""
    if levels <= 0 or not coarsenable(problem.grid.n):
        return _split(problem, **kwargs)
    coarse = coarse_problem(problem)
    grid = problem.grid
    centres = [grid.centres(k) for k in range(grid.dim)]
    spreads = np.minimum(axis_spreads(problem.rho0, centres), axis_spreads(problem.rho1, centres))
    if not resolves(coarse.grid.dx, spreads):
        return _split(problem, **kwargs)
    low = _multilevel(coarse, levels - 1, **(kwargs | {"callback": None, "progress": False}))
    fine = Layout(problem.nt, problem.grid.n, problem.beckmann, problem.terminal == "lipschitz_f")
    z0 = prolong(low.z, low.layout, fine)
    f = fine.views(z0)
    # what the coarse grid averaged away of ρ0, on every density of the path: ρ(0) is then the
    # fine ρ0, and ∂tρ + ∇·m = 0 still holds (the same detail at every time)
    detail = problem.rho0 - inject(coarse.rho0, problem.grid.dim)
    f.rho[...] += detail
    f.rho_bar[...] += detail
    del f
    coarse_iterations = [low.iterations, *low.coarse_iterations]
    del low  # the fine level's memory peak does not include the coarse iterates
    state = _split(problem, z0=z0, **kwargs)
    state.coarse_iterations = coarse_iterations
    return state


def reference_step(problem: GridProblem, gamma: float) -> float:
    """The step of the reference-time iteration for the step ``gamma`` given at τ = 1:
    γ·τ for ``fixed``, γ·max(1, τ) otherwise (module docstring, "Step size")."""
    tau = problem.T / problem.lam
    return gamma * (tau if problem.terminal == "fixed" else max(1.0, tau))


def _to_physical_time(state: SplittingState, problem: GridProblem) -> None:
    """Convert a state of ``problem.in_reference_time()`` to ``problem``'s time in place:
    m = m'/T on every iterate; dt = T dt' with q = q'/T so that φ* = dt·q/γ is unchanged. U = −p/γ,
    the densities, Beckmann's flux (a spatial quantity) and σ need no change."""
    scale = 1.0 / problem.T
    for vec in (state.z, state.x, state.y):
        f = state.layout.views(vec)
        for block in (*f.m, *f.m_bar):
            block *= scale
    if state.q is not None:
        state.q = state.q * scale
    state.dt = problem.dt


def _split(
    problem: GridProblem,
    *,
    gamma: float,
    max_iter: int,
    tol: float,
    relaxation: float,
    progress: bool,
    callback: Callable[[SplittingState], None] | None,
    z0: Array | None = None,
) -> SplittingState:
    """The Douglas–Rachford loop on ``problem`` as given (see :func:`douglas_rachford`)."""
    grid = problem.grid
    layout = Layout(problem.nt, grid.n, problem.beckmann, problem.terminal == "lipschitz_f")
    projection = ContinuityProjection(
        problem.nt, problem.dt, grid.n, grid.dx, problem.rho0,
        beckmann=problem.beckmann, sigma_free=problem.terminal == "lipschitz_f",
        target=problem.rho1,
    )
    interp = InterpolationProx(
        problem.nt, grid.n, _terminal_map(problem, gamma), _sigma_prox(problem, gamma)
    )
    beta = gamma * problem.lam
    shrink_threshold = gamma * (problem.L or 0.0) / problem.dt

    z = initial_guess(problem, layout) if z0 is None else z0  # z0: the caller's to give
    x = layout.zeros()
    y = layout.zeros()
    state = SplittingState(layout, z, x, y, np.zeros((problem.nt, *grid.n)), gamma, problem.dt)
    hist = state.history
    for key in ("primal_residual", "dual_residual", "kinetic_energy", "terminal_cost", "objective"):
        hist[key] = []
    xf, yf = layout.views(x), layout.views(y)
    u_prev = None
    u_floor = max(ZERO_FRACTION * problem.value_scale * np.sqrt(state.p.size), 1e-300)
    # disable=None: no bar when stderr is not a terminal (CI logs, pipes)
    bar = tqdm(total=max_iter, disable=None if progress else True, desc="grid", unit="it")
    try:
        for it in range(1, max_iter + 1):
            interp.apply(layout.views(z), xf)
            np.subtract(2.0 * x, z, out=y)
            state.p, state.q = projection.project(yf)
            rb, mbs = prox_kinetic(yf.rho_bar, yf.m_bar, beta)
            yf.rho_bar[...] = rb
            for j, mb in enumerate(mbs):
                yf.m_bar[j][...] = mb
            for j, wb in enumerate(shrink(yf.w_bar, shrink_threshold) if yf.w_bar else []):
                yf.w_bar[j][...] = wb
            diff = y - x
            z += relaxation * diff

            u = state.value_function
            primal = float(np.linalg.norm(diff) / max(np.linalg.norm(y), 1e-300))
            dual = (
                float(np.linalg.norm(u - u_prev) / max(np.linalg.norm(u), u_floor))
                if u_prev is not None
                else 1.0
            )
            u_prev = u
            ke = problem.kinetic_energy(yf.rho_bar, yf.m_bar)
            # the terminal cost on x: its ρ_T and σ come out of the pointwise proxes (feasible
            # for D_f), its flux w̄ is the interpolation of w
            tc = problem.terminal_cost(xf)
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
