"""The back-and-forth method (Jacobs & Léger 2020; Jacobs, Lee & Léger 2021) for one JKO step.

The dynamic problem (DESIGN.md §1) equals the static JKO step of size τ = T/λ,

    min over ρ_T   W2²(ρ0, ρ_T)/(2τ) + G(ρ_T),

posed here between the atoms of the grid (masses μ_i = ρ0_i h at the cell centres; h the cell
volume), the problem POT's ``ot.emd2`` solves for ``fixed``. Its dual, with c(x, y) = |x−y|²/(2τ),

    J(φ) = Σ_i μ_i φ^c(x_i) − G*(−φ),      φ^c(x) = min_y c(x, y) − φ(y)   (exact on the grid)
    I(ψ) = Σ_i μ_i ψ(x_i) − G*(−ψ^c),

is maximized by alternating H¹ gradient ascent steps on φ (target side) and on ψ (source side),
each followed by a c-transform (solvers/grid/c_transform.py): the steps

    φ ← φ + σ_φ (−Δ)⁻¹ (ρ_G(φ) − T_ψ#μ),          T_ψ(x) = x − τ∇ψ(x),  ψ = φ^c
    ψ ← ψ + σ_ψ (−Δ)⁻¹ (μ − S_φ#ρ_G(φ)),          S_φ(y) = y − τ∇φ(y),  φ = ψ^c

with ρ_G(φ) = ∇G*(−φ) the terminal density the dual asks for (π for ``fixed``; for
G = D_f(·‖π) with mass 1, ρ_G = π (f*)'(−φ − ν), ν fixing the mass) and (−Δ)⁻¹ the Neumann
inverse Laplacian (one DCT pair). Steps σ adapt to the observed increase of the dual.

Certificate (the stopping rule): every evaluated dual value is a lower bound of the optimum
(the pair (φ, φ^c) is feasible for the discrete dual); every push-forward gives a feasible plan
(solvers/grid/pushforward.py), rounded to the exact marginals where the problem fixes them, whose
cost plus G is an upper bound. The run stops when (best upper − best lower) ≤ tol·|best lower|:
``tol`` is the certified relative accuracy of the objective.

What the bracket can reach: the optimum bracketed is the one of the grid atoms (POT's emd2 for
``fixed``). The potentials the ascent produces are smooth, so its lower bound tends to the
continuum value, which lies below the atoms' optimum by a discretization error that is O(h) on
the mixture case (lower ÷ emd2 = 0.99885 at 64², 0.99941 at 128²), and its upper bound carries
the spread of the cloud-in-cell plans and of the matching that rounds them (1.0013 at 64²): the
ascent's gap stalls near 2.5e-3 at 64², 1.3e-3 at 128², under 1e-3 from 256². For ``fixed``
and KL on grids up to POLISH_MAX_WORK, once the ascent stalls (:func:`_stalled`), an entropic
polish takes over (solvers/grid/entropic.py: log-domain Sinkhorn at ε = h²/(4τ), halved when
it stalls, warm-started from φ; exact c-transforms for the lower bound, a real coupling for the
upper one); it reaches the discrete potentials the ascent cannot, and the bracket goes under
1e-3 (cold starts, ``levels: 0``): fixed 64² in 135 ascent + 150 polish iterations (1.8 s;
lower ÷ emd2 0.99974, upper 1.00064), 128² in 132 + 175 (12 s); Gaussian KL 64² in 100 + 100
(1.2 s), 128² in 153 + 50 (5 s) (two numba threads). The other f kinds have no polish.

Every grid starts from coarser ones (:func:`coarse_potential`, ``solver.levels``; by default
every halving that keeps 16 cells per axis): the coarse step's φ, interpolated, is a warm start
whose bracket the fine grid certifies from scratch. At 512² the fine bracket closes in a few
iterations (the atoms' floor and the cloud-in-cell spread shrink with h); at 64² and 128² the
warm start is what makes the fields accurate: the ascent's slowest mode (the translation along
the transport) is solved on the coarse grids, where the bracket alone would have stopped it
early (Gaussian KL 64², ρ_T 9.9e-4 from the closed form in L1 against 2.1e-3 cold). One
thread, `bench/grid.py --bfm-only`: fixed 64² 1.2 s (107 fine iterations), 128² 12.4 s
(107), 256² 4.5 s (12), 512² 7.4 s (4); Gaussian KL 256² 15.9 s, 512² 8.1 s (1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from scipy.interpolate import RegularGridInterpolator
from scipy.optimize import brentq

from mfg.divergences import FDivergence, f_divergence_on_grid
from mfg.grid import Grid
from mfg.residuals import spatial_gradient
from solvers.grid.c_transform import c_transform
from solvers.grid.entropic import PolishResult, polish
from solvers.grid.multilevel import restrict
from solvers.grid.projections import _neumann_eigenvalues
from solvers.grid.pushforward import map_plan

Array = np.ndarray

#: sub-points per axis and cell of the push-forwards (fewer in 3-D, where each costs 2^d more)
SUBDIVISIONS = {1: 8, 2: 2, 3: 1}
#: step adaptation: grow when the dual rose by more than UPPER of the first-order prediction,
#: shrink when by less than LOWER (Jacobs–Léger's rule); a step that lowers the dual is redone
UPPER, LOWER, GROW, SHRINK = 0.75, 0.25, 1.25, 0.8
#: the upper bounds (rounded plans: two thirds of an iteration's time at 256²) are built on every
#: CERTIFY_EVERY-th iteration only, so a run may stop up to CERTIFY_EVERY − 1 iterations late
CERTIFY_EVERY = 4
#: ``fixed`` and KL: the ascent hands over to the entropic polish (solvers/grid/entropic.py) when
#: its gap fell by less than a factor STALL_RATIO over the last STALL_WINDOW iterations and would
#: need, at that rate, more than 2·STALL_WINDOW more iterations (:func:`_stalled`)
STALL_WINDOW, STALL_RATIO = 24, 0.9
#: no polish above this many exponentials per Sinkhorn half-step (N·Σ n_axis: 128² is 4.2e6,
#: 256² 3.4e7: there, Gaussian KL with the polish took 231 s to a gap of 1.3e-3, the ascent
#: alone 35 s to 1.45e-3)
POLISH_MAX_WORK = 2**24
#: coarse-to-fine warm start (:func:`coarse_potential`): coarse grids keep at least WARM_MIN_CELLS
#: cells per axis and run to COARSE_TOL·tol (Gaussian KL: 512² from a 256² potential at a gap of
#: 1.2e-3 was certified to 1e-3 in one iteration, 396 cold; 256² from 128² in 252 against 536).
#: 16 rather than 128: at 64² the levels 32² and 16² halve ρ_T's L1 to the closed form and the
#: solve time (Gaussian KL), at 128² they save 30% of it (fixed)
WARM_MIN_CELLS, COARSE_TOL = 16, 1.0
#: ... or until their gap stalls over this many iterations (a warm-started ascent can gain less
#: than 10% in its first STALL_WINDOW iterations and still be far from its floor: Gaussian KL,
#: a 256² level stopped after 25 iterations left 228 to do at 512²)
COARSE_STALL_WINDOW = 96


def conjugate_derivative(div: FDivergence) -> tuple[Callable[[Array], Array], float]:
    """(f*)' = (f')⁻¹ of ``div`` and the sup of its domain (+∞, or the pole of f*)."""
    name = div.name
    if name == "kl":
        return np.exp, np.inf
    if name == "reverse_kl":
        return lambda y: 1.0 / (1.0 - y), 1.0
    if name == "chi2":
        return lambda y: np.maximum(1.0 + 0.5 * y, 0.0), np.inf
    if name == "js":
        return lambda y: np.exp(y) / (2.0 - np.exp(y)), float(np.log(2.0))
    if name == "alpha":
        a = float(div.alpha)
        return lambda y: ((a - 1.0) * np.maximum(y, 0.0)) ** (1.0 / (a - 1.0)), np.inf
    raise ValueError(f"back-and-forth: no (f*)' for f-divergence {name!r}")


@dataclass(frozen=True)
class TerminalDual:
    """The terminal cost G on mass-1 densities and its dual map φ ↦ (ρ_G, ν, −G*(−φ))."""

    terminal: str
    rho1: Array
    h: float
    divergence: FDivergence | None = None

    def cost(self, rho: Array) -> float:
        """G(ρ): 0 for ``fixed`` (ρ = π is imposed elsewhere), D_f(ρ‖π) for ``f``."""
        if self.terminal == "fixed":
            return 0.0
        return f_divergence_on_grid(self.divergence, rho, self.rho1, self.h)

    def density(self, phi: Array) -> tuple[Array, float]:
        """ρ_G = argmin_ρ Σ h φ ρ + G(ρ) over mass-1 densities, and the multiplier ν of the mass
        (ρ_G = π (f*)'(−φ − ν) for ``f``; π and 0 for ``fixed``)."""
        if self.terminal == "fixed":
            return self.rho1, 0.0
        dfs, ymax = conjugate_derivative(self.divergence)
        pos = self.rho1 > 0
        pi = self.rho1[pos]
        top = float(np.max(-phi[pos]))
        y0 = -phi[pos] - top  # y = −φ − ν with ν = top − t: the largest y is t

        def mass(t: float) -> float:
            return float(self.h * np.sum(pi * dfs(y0 + t))) - 1.0

        deficit = 0.0
        if self.divergence.name == "kl":  # closed form: e^t Σ h π e^{y0} = 1
            t = -float(np.log(self.h * np.sum(pi * np.exp(y0))))
        else:
            hi = ymax - 1e-15 * max(1.0, abs(ymax)) if np.isfinite(ymax) else 1.0
            while np.isinf(ymax) and mass(hi) < 0:
                hi = 2.0 * hi + 1.0
            if mass(hi) < 0:
                # f* has a pole and the cell at it has so little π that the root is within
                # rounding of the pole: that cell takes the missing mass (the limit ν → pole)
                t, deficit = hi, -mass(hi)
            else:
                lo = min(hi - 1.0, 0.0)
                while mass(lo) > 0:
                    lo = 2.0 * lo - 1.0
                t = brentq(mass, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=200)
        rho = np.zeros_like(self.rho1)
        vals = pi * dfs(y0 + t)
        vals[np.argmax(y0)] += deficit / self.h
        rho[pos] = vals
        rho /= rho.sum() * self.h  # the root is exact to ~1e-14; make the mass 1 to rounding
        return rho, top - t

    def value(self, phi: Array, rho_g: Array) -> float:
        """−G*(−φ) = Σ h φ ρ_G + G(ρ_G)."""
        return float(self.h * np.sum(phi * rho_g)) + self.cost(rho_g)


@dataclass
class BFMState:
    """Potentials, certified bounds and history of a back-and-forth run."""

    phi: Array  # target-side potential (U(·, T) = −φ − ν)
    nu: float
    lower: float = -np.inf  # best dual value: a lower bound of the optimum
    upper: float = np.inf  # best primal value: an upper bound
    upper_split: tuple[float, float] = (np.inf, np.inf)  # (transport, G) of the best upper
    iterations: int = 0  # ascent iterations plus polish iterations
    polish_iterations: int = 0
    coarse_iterations: list[int] = field(default_factory=list)  # per warm-start level, finest first
    converged: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def relative_gap(self) -> float:
        """(upper − lower)/max(|lower|, |upper|): the certified relative accuracy."""
        return (self.upper - self.lower) / max(abs(self.lower), abs(self.upper), 1e-300)


class BackAndForth:
    """One JKO step between grid densities ρ0 (source) and, through G, π (target)."""

    def __init__(self, grid: Grid, tau: float, rho0: Array, terminal: TerminalDual,
                 polish: bool = True):
        self.grid, self.tau, self.rho0, self.terminal = grid, tau, rho0, terminal
        work = int(np.prod(grid.n)) * sum(grid.n)
        polishable = terminal.terminal == "fixed" or (
            terminal.divergence is not None and terminal.divergence.name == "kl")
        self.polish = polish and polishable and work <= POLISH_MAX_WORK
        self.h = grid.cell_volume
        self.mu = rho0 * self.h  # atoms
        self.subdivisions = SUBDIVISIONS[grid.dim]
        self.centres = grid.mesh().reshape(-1, grid.dim)
        eig = sum(
            np.reshape(_neumann_eigenvalues(k) / d**2, [-1 if a == j else 1
                                                        for a in range(grid.dim)])
            for j, (k, d) in enumerate(zip(grid.n, grid.dx, strict=True))
        )
        eig = np.asarray(eig, dtype=np.float64) * np.ones(grid.n)
        eig.flat[0] = np.inf  # the constant mode: the dual does not depend on it
        self._inv_eig = 1.0 / eig

    # -- building blocks ------------------------------------------------------------------
    def c(self, f: Array) -> Array:
        return c_transform(f, self.grid.dx, self.tau, smooth=True)

    def inverse_laplacian(self, g: Array) -> Array:
        """(−Δ)⁻¹ g with homogeneous Neumann conditions (cell-centred, DCT-II), mean-free."""
        gh = scipy.fft.dctn(g, type=2, norm="ortho") * self._inv_eig
        return scipy.fft.idctn(gh, type=2, norm="ortho")

    def plan(self, potential: Array, density: Array, fraction: float = 1.0,
             subdivisions: int | None = None):
        """Plan of x ↦ x − fraction·τ∇potential(x) for atoms distributed like ``density``
        (``subdivisions`` sub-points per axis and cell; the iteration's by default)."""
        grads = spatial_gradient(potential, self.grid.dx)
        return map_plan([-fraction * self.tau * g for g in grads], self.grid.dx,
                        subdivisions or self.subdivisions, density)

    def dual(self, psi: Array, phi: Array) -> tuple[float, Array, float]:
        """Σ μ ψ − G*(−φ) for a pair with ψ ≤ φ^c (a lower bound), with ρ_G(φ) and ν."""
        rho_g, nu = self.terminal.density(phi)
        return float(np.sum(self.mu * psi)) + self.terminal.value(phi, rho_g), rho_g, nu

    def exact_dual(self, phi: Array) -> float:
        """J at the exact discrete pair ψ = φ^c, φ' = ψ^c (≥ φ): a tighter lower bound than the
        smooth transforms give (by a small part of the gap between the atoms' optimum and the
        continuum)."""
        psi = c_transform(phi, self.grid.dx, self.tau)
        return self.dual(psi, c_transform(psi, self.grid.dx, self.tau))[0]

    def _sq_norm(self, g: Array, d: Array) -> float:
        return float(self.h * np.sum(g * d))

    def _ascend(
        self,
        x: Array,
        d: Array,
        step: float,
        val: float,
        predicted: float,
        min_step: float,
        pair: Callable[[Array], tuple[Array, Array]],
    ) -> tuple[Array, Array, float, Array, float, float]:
        """One preconditioned ascent step x + σd of the dual with backtracking: σ is halved until
        the dual value does not fall (or σ < ``min_step``), then adapted (:func:`_adapt`).
        ``pair(x)`` gives the (ψ, φ) at which the dual is evaluated. Returns the new
        (ψ, φ, value, ρ_G, ν, σ)."""
        while True:
            x_new = x + step * d
            psi, phi = pair(x_new)
            val_new, rho_new, nu_new = self.dual(psi, phi)
            gain = val_new - val
            if gain >= 0 or step < min_step:
                break
            step *= 0.5
        return psi, phi, val_new, rho_new, nu_new, _adapt(step, gain, predicted)

    # -- the iteration --------------------------------------------------------------------
    def run(self, tol: float, max_iter: int, callback=None, phi0: Array | None = None,
            stall_window: int | None = None) -> BFMState:
        """Alternate φ- and ψ-steps until the certified relative gap is under ``tol``, from the
        target potential ``phi0`` (zero if None); with ``stall_window``, also when the gap stalls
        over that many iterations (:func:`_stalled`) and there is no polish to hand over to."""
        term = self.terminal
        two_tau = 2.0 * self.tau
        phi = np.zeros(self.grid.n) if phi0 is None else np.array(phi0, dtype=np.float64)
        psi = self.c(phi)
        val, rho_g, nu = self.dual(psi, phi)
        state = BFMState(phi, nu)
        hist = state.history
        for key in ("lower", "upper", "relative_gap", "sigma_phi", "sigma_psi"):
            hist[key] = []
        sigma0 = 1.0 / (self.tau * max(float(self.rho0.max()), float(rho_g.max())))
        s_phi = s_psi = sigma0

        def record_upper(transport: float, g_cost: float) -> None:
            if transport + g_cost < state.upper:
                state.upper = transport + g_cost
                state.upper_split = (transport, g_cost)

        for it in range(1, max_iter + 1):
            certify = it == 1 or it % CERTIFY_EVERY == 0 or it == max_iter
            # φ-step: ascend J at φ (ψ = φ^c, value val)
            state.lower = max(state.lower, val)
            plan = self.plan(psi, self.rho0)
            pushed = plan.push(self.mu)
            # upper bounds (module docstring): one rounding per certified iteration, on the side
            # that gives the lower cost; ``fixed``: this plan of μ rounded onto π (lower than the
            # ψ-step's rounding at 49 of 51 certifications on the mixture, 64² and 256²); ``f``:
            # the push-forward itself here (no rounding), the ψ-step's rounding below (lower
            # than this plan rounded onto ρ_G at 51 of 51, Gaussian KL 64² and 256²)
            if certify and term.terminal == "fixed":
                record_upper(plan.rounded_cost(self.mu, term.rho1 * self.h, self.centres)
                             / two_tau, 0.0)
            elif certify:
                record_upper(plan.cost(self.mu) / two_tau, term.cost(pushed / self.h))
            g = rho_g - pushed / self.h
            d = self.inverse_laplacian(g)
            pred = self._sq_norm(g, d)
            psi, phi, val, rho_g, nu, s_phi = self._ascend(
                phi, d, s_phi, val, pred, 1e-8 * sigma0, lambda f: (self.c(f), f))
            state.lower = max(state.lower, val)

            # ψ-step: ascend I at ψ (φ̂ = ψ^c ≥ φ, so I(ψ) ≥ J(φ))
            phi_hat = self.c(psi)
            val, rho_g, nu = self.dual(psi, phi_hat)
            state.lower = max(state.lower, val)
            plan = self.plan(phi_hat, rho_g)
            atoms = rho_g * self.h
            back = plan.push(atoms)
            if certify and term.terminal != "fixed":
                record_upper(plan.rounded_cost(atoms, self.mu, self.centres) / two_tau,
                             term.cost(rho_g))
            g = self.rho0 - back / self.h
            d = self.inverse_laplacian(g)
            pred = self._sq_norm(g, d)
            _, phi, val, rho_g, nu, s_psi = self._ascend(
                psi, d, s_psi, val, pred, 1e-8 * sigma0, lambda f: (f, self.c(f)))
            psi = self.c(phi)  # φ = ψ^c, and the next φ-step needs φ^c ≥ ψ
            val, rho_g, nu = self.dual(psi, phi)
            state.lower = max(state.lower, val, self.exact_dual(phi))

            state.phi, state.nu, state.iterations = phi, nu, it
            hist["lower"].append(state.lower)
            hist["upper"].append(state.upper)
            hist["relative_gap"].append(state.relative_gap)
            hist["sigma_phi"].append(s_phi)
            hist["sigma_psi"].append(s_psi)
            if callback is not None:
                callback(state)
            if state.relative_gap <= tol:
                state.converged = True
                break
            if self.polish and _stalled(hist["relative_gap"], tol, STALL_WINDOW):
                self._polish(state, tol, max_iter, callback)
                break
            if stall_window and _stalled(hist["relative_gap"], tol, stall_window):
                break
        return state

    def run_multilevel(self, tol: float, max_iter: int, levels: int, callback=None) -> BFMState:
        """:meth:`run` started from the potential of the same step on ``levels`` coarser grids
        (:func:`coarse_potential`); their iterations in ``coarse_iterations``."""
        phi0, coarse = coarse_potential(self, tol, max_iter, levels)
        state = self.run(tol, max_iter, callback, phi0=phi0)
        state.coarse_iterations = coarse
        return state

    def _polish(self, state: BFMState, tol: float, max_iter: int, callback=None) -> None:
        """Entropic polish (solvers/grid/entropic.py) from the ascent's φ, for at most
        ``max_iter`` Sinkhorn iterations; the bounds and the iteration counts of ``state`` are
        updated, its potential (φ, ν) is kept."""
        ascent = state.iterations

        def record(res: PolishResult) -> None:
            state.lower = res.lower
            if res.upper < state.upper:
                state.upper, state.upper_split = res.upper, res.upper_split
            state.polish_iterations = res.iterations
            state.iterations = ascent + res.iterations
            for key in ("lower", "upper", "relative_gap"):
                state.history[f"polish_{key}"] = res.history[key]
            if callback is not None:
                callback(state)

        kl = self.terminal.terminal == "f"
        polish(self.grid, self.tau, self.mu, self.terminal.rho1 * self.h, state.phi, tol,
               max_iter, self.exact_dual, state.lower, state.upper, callback=record,
               terminal_cost=self.terminal.cost if kl else None)
        # the terminal law and the path stay with the ascent's φ: the polish closes the bracket
        # on the atoms' optimum, O(h) from the continuum solution, and its g is no nearer to
        # the continuum than φ. Gaussian KL 64², at the hand-over (100 ascent iterations), L1
        # to the closed form: ρ_T 2.1e-3 from φ or g; ρ(T/2) 0.024 from φ, 0.030 from g. (1-D,
        # 128 cells: ρ_T's mean 1.2e-3 off from φ, 8.8e-4 from g; 64 cells, g 4.3e-3.)
        state.converged = state.relative_gap <= tol


def warm_start_levels(n: tuple[int, ...]) -> int:
    """Coarse warm-start levels of ``levels: None``: halvings of every axis that keep at least
    WARM_MIN_CELLS cells per axis (64² two, 512² five, 32³ one; none at 16² or with an odd
    axis)."""
    levels, m = 0, np.array(n)
    while np.all(m % 2 == 0) and np.all(m // 2 >= WARM_MIN_CELLS):
        levels, m = levels + 1, m // 2
    return levels


def coarse_potential(bfm: BackAndForth, tol: float, max_iter: int, levels: int
                     ) -> tuple[Array | None, list[int]]:
    """The target potential φ of ``bfm``'s step solved on the grid with every axis halved (ρ0
    and π averaged over blocks of 2^d cells, mass kept; itself warm-started from ``levels − 1``
    coarser grids), ascent only, until its gap is under COARSE_TOL·``tol`` or stalls; linearly
    interpolated (extrapolated at the edges) to ``bfm``'s cell centres. None and no iterations
    when ``levels`` is 0 or an axis is odd. The finer grid's bracket is then certified from
    scratch: the warm start saves iterations, it is not trusted."""
    grid = bfm.grid
    if levels <= 0 or any(k % 2 for k in grid.n):
        return None, []
    coarse = Grid(grid.bounds, tuple(k // 2 for k in grid.n))
    term = bfm.terminal
    lower = BackAndForth(
        coarse, bfm.tau, restrict(bfm.rho0, grid.dim),
        TerminalDual(term.terminal, restrict(term.rho1, grid.dim), coarse.cell_volume,
                     term.divergence),
        polish=False)
    phi0, below = coarse_potential(lower, tol, max_iter, levels - 1)
    state = lower.run(COARSE_TOL * tol, max_iter, phi0=phi0, stall_window=COARSE_STALL_WINDOW)
    axes = [coarse.centres(a) for a in range(grid.dim)]
    interp = RegularGridInterpolator(axes, state.phi, bounds_error=False, fill_value=None)
    phi = interp(grid.mesh().reshape(-1, grid.dim)).reshape(grid.n)
    return phi, [state.iterations, *below]


def _stalled(gaps: list[float], tol: float, window: int) -> bool:
    """The gap fell by less than a factor STALL_RATIO over the last ``window`` iterations, and
    at that rate would need more than 2·``window`` more to reach ``tol``."""
    if len(gaps) <= window or not np.isfinite(gaps[-1 - window]):
        return False
    ratio = gaps[-1] / gaps[-1 - window]
    if ratio <= STALL_RATIO:
        return False
    return ratio >= 1.0 or np.log(tol / gaps[-1]) / np.log(ratio) > 2.0


def _adapt(sigma: float, gain: float, predicted: float) -> float:
    """Grow σ when the dual rose by more than UPPER·σ‖g‖², shrink it when by less than LOWER."""
    if predicted <= 0:
        return sigma
    ratio = gain / (sigma * predicted)
    if ratio > UPPER:
        return sigma * GROW
    if ratio < LOWER:
        return sigma * SHRINK
    return sigma
