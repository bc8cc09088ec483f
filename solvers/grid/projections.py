"""Linear steps of the grid splitting: the projection onto the continuity equation and the
proximal map of the interpolation constraint ρ̄ = I ρ coupled with the terminal cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.linalg

from solvers.grid.staggered import (
    Fields,
    average_adjacent,
    divergence,
    interpolate_faces,
    interpolate_m,
    interpolate_rho,
    spatial_divergence,
)

Array = np.ndarray


def _neumann_eigenvalues(n: int) -> Array:
    """Eigenvalues 2 − 2cos(πk/n) of the Neumann Laplacian tridiag(−1, 2, −1), ends 1
    (diagonalized by the orthonormal DCT-II)."""
    return 2.0 - 2.0 * np.cos(np.pi * np.arange(n) / n)


@dataclass
class ContinuityProjection:
    """Euclidean projection onto {∂tρ + ∇·m = 0, ρ(0) = ρ0, no flux} (and, for a W1 terminal
    cost, Beckmann's constraint ∇·w + ρ_T − σ = 0 at t = T).

    ρ_0 is set to ρ0; the remaining unknowns x = (ρ_1..ρ_nt, m[, w, σ]) are projected onto
    {K x = b} by x ← x − Kᵀ(p, q) with K Kᵀ (p, q) = K x − b. For the continuity rows A,
    A Aᵀ = L_t/dt² ⊗ Id + Id ⊗ Λ_x, with Λ_x = Σ_j L_j/dx_j² the Neumann Laplacian (zero flux)
    and L_t the time Laplacian with a Neumann end at t = 0 (ρ_0 is given) and a Dirichlet end at
    t = T (ρ_T is free), so A Aᵀ is invertible; a DCT-II in space and the eigenvectors of L_t in
    time diagonalize it (one space-time Poisson solve: O(N log N) plus an nt × nt product).

    Beckmann's rows B (spatial, at t = T; σ a variable for ``lipschitz_f``, σ = π for ``w1``)
    couple to A only through ρ_T, which enters the last time cell with weight 1/dt: per spatial
    frequency μ the system is [[T_μ, e/dt], [eᵀ/dt, μ + c]] with c = 1 + [σ is a variable].
    Eliminating p leaves the scalar Schur complement S(μ) = μ + c − (T_μ⁻¹)_{last,last}/dt².
    For ``w1`` S(0) = 0: B's mean is implied by mass conservation, and its multiplier's mean is
    set to 0 (the pseudo-inverse; consistent since ρ0 and π have equal mass).
    """

    nt: int
    dt: float
    n: tuple[int, ...]
    dx: tuple[float, ...]
    rho0: Array
    beckmann: bool = False
    sigma_free: bool = False
    target: Array | None = None  # π, the right-hand side of B when σ is not a variable
    _q: Array = field(init=False, repr=False)
    _denom: Array = field(init=False, repr=False)
    _mu: Array = field(init=False, repr=False)
    _g: Array = field(init=False, repr=False)
    _schur: Array = field(init=False, repr=False)

    def __post_init__(self) -> None:
        diag = np.full(self.nt, 2.0)
        diag[0] = 1.0
        lam_t, self._q = scipy.linalg.eigh_tridiagonal(diag, -np.ones(self.nt - 1))
        mu = np.zeros(self.n)
        for j, (nj, dxj) in enumerate(zip(self.n, self.dx, strict=True)):
            shape = [1] * len(self.n)
            shape[j] = nj
            mu = mu + (_neumann_eigenvalues(nj) / dxj**2).reshape(shape)
        self._mu = mu
        self._denom = lam_t.reshape(-1, *([1] * len(self.n))) / self.dt**2 + mu
        if self.beckmann:
            # g = T_μ⁻¹ e_last for every spatial frequency, in the DCT basis
            self._g = np.tensordot(self._q, self._q[-1].reshape(-1, *([1] * len(self.n)))
                                   / self._denom, axes=1)
            c = 2.0 if self.sigma_free else 1.0
            schur = mu + c - self._g[-1] / self.dt**2
            self._schur = np.where(np.abs(schur) > 1e-12 * (1.0 + mu), schur, np.inf)

    def _dct(self, r: Array, axes: tuple[int, ...]) -> Array:
        return scipy.fft.dctn(r, type=2, axes=axes, norm="ortho")

    def _idct(self, r: Array, axes: tuple[int, ...]) -> Array:
        return scipy.fft.idctn(r, type=2, axes=axes, norm="ortho")

    def solve_poisson(self, r: Array) -> Array:
        """p with A Aᵀ p = r, r of shape (nt, *n)."""
        axes = tuple(range(1, 1 + len(self.n)))
        rh = np.tensordot(self._q.T, self._dct(r, axes), axes=1) / self._denom
        return self._idct(np.tensordot(self._q, rh, axes=1), axes)

    def project(self, f: Fields) -> tuple[Array, Array | None]:
        """Project ``f``'s staggered blocks in place; return the multipliers (p, q): the step
        was −Kᵀ(p, q). p has shape (nt, *n); q (*n) or None without Beckmann's rows."""
        rho, ms = f.rho, f.m
        rho[0] = self.rho0
        r = divergence(rho, ms, self.dt, self.dx)
        q = None
        if not self.beckmann:
            p = self.solve_poisson(r)
        else:
            axes = tuple(range(1, 1 + len(self.n)))
            rb = spatial_divergence(f.w, self.dx) + rho[-1]
            rb = rb - (f.sigma if self.sigma_free else self.target)
            z = np.tensordot(self._q.T, self._dct(r, axes), axes=1) / self._denom
            z = np.tensordot(self._q, z, axes=1)
            qh = (self._dct(rb, tuple(range(len(self.n)))) - z[-1] / self.dt) / self._schur
            p = self._idct(z - self._g * qh / self.dt, axes)
            q = self._idct(qh, tuple(range(len(self.n))))
        # Aᵀp on ρ_k (k ≥ 1) is (p_{k−1} − p_k)/dt with p_nt = 0
        rho[1:-1] -= (p[:-1] - p[1:]) / self.dt
        rho[-1] -= p[-1] / self.dt
        # Aᵀp on the interior face between cells i−1 and i of axis j is (p_{i−1} − p_i)/dx_j
        for j, m in enumerate(ms):
            m += np.diff(p, axis=1 + j) / self.dx[j]
        if q is not None:
            rho[-1] -= q
            for j, w in enumerate(f.w):
                w += np.diff(q, axis=j) / self.dx[j]
            if self.sigma_free:
                f.sigma += q
        return p, q


def _face_eigenvalues(n: int) -> Array:
    """Eigenvalues 3/2 + ½cos(πk/n), k = 1..n−1, of Id + IᵀI = tridiag(¼, 3/2, ¼) on the n − 1
    interior faces of a line of n cells (a symmetric Toeplitz matrix: diagonalized by DST-I)."""
    return 1.5 + 0.5 * np.cos(np.pi * np.arange(1, n) / n)


def _solve_faces(rhs: Array, eig: Array, axis: int) -> Array:
    """(Id + IᵀI) x = rhs along ``axis`` by the orthonormal DST-I (its own inverse)."""
    shape = [1] * rhs.ndim
    shape[axis] = len(eig)
    x = scipy.fft.dst(rhs, type=1, axis=axis, norm="ortho") / eig.reshape(shape)
    return scipy.fft.dst(x, type=1, axis=axis, norm="ortho")


@dataclass
class InterpolationProx:
    """Proximal map of ι{V = I U} + G(ρ_T) on the pair (staggered U, centred V).

    Minimizes ½|U − U'|² + ½|I U − V'|² + G(ρ_T) over U, then sets V = I U. Each line is a small
    SPD tridiagonal system (Id + IᵀI) u = U' + IᵀV' (DST-I along space; a dense nt × nt inverse
    in time). In time, the last unknown ρ_T carries a pointwise terminal cost: eliminating
    ρ_0..ρ_{nt−1} leaves, per cell, a/2 (s − c)² + G(s), i.e. s = prox_{G/a}(c) with the Schur
    complement a. For W1 terminal costs, ρ_T is free here (G = 0), the Beckmann flux w is
    interpolated like m, and σ gets the pointwise prox of D_f(σ‖π).
    """

    nt: int
    n: tuple[int, ...]
    #: (c, t) -> argmin_s ½(s − c)² + t·g(s), the pointwise prox of the terminal cost g of ρ_T
    terminal: Callable[[Array, float], Array]
    #: σ' -> argmin_σ ½|σ − σ'|² + γ·D_f(σ‖π)/dt (``lipschitz_f``), None otherwise
    sigma_prox: Callable[[Array], Array] | None = None
    _inv_t: Array = field(init=False, repr=False)
    _h: Array = field(init=False, repr=False)
    _a: float = field(init=False, repr=False)
    _eig_x: list[Array] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # (Id + IᵀI) on ρ_0..ρ_{nt−1}: tridiag(¼, 3/2, ¼) with 5/4 in the corner (ρ_0 is an end);
        # nt is small, so a dense inverse applied by one matrix product is cheapest.
        m = np.diag(np.full(self.nt, 1.5)) + np.diag(np.full(self.nt - 1, 0.25), 1)
        m += np.diag(np.full(self.nt - 1, 0.25), -1)
        m[0, 0] = 1.25
        self._inv_t = np.linalg.inv(m)
        coupling = np.zeros(self.nt)
        coupling[-1] = 0.25  # (Id + IᵀI) entry between ρ_{nt−1} and ρ_nt
        self._h = self._inv_t @ coupling
        self._a = 1.25 - 0.25 * float(self._h[-1])
        self._eig_x = [_face_eigenvalues(nj) for nj in self.n]

    def apply(self, f: Fields, out: Fields) -> None:
        """Write the prox of ``f`` into ``out`` (same layout)."""
        d = len(self.n)
        zero = np.zeros((1, *self.n))
        r = f.rho + 0.5 * (np.concatenate([zero, f.rho_bar]) + np.concatenate([f.rho_bar, zero]))
        z = (self._inv_t @ r[:-1].reshape(self.nt, -1)).reshape(r[:-1].shape)
        c = (r[-1] - 0.25 * z[-1]) / self._a
        s = self.terminal(c, 1.0 / self._a)
        out.rho[:-1] = z - self._h.reshape(-1, *([1] * d)) * s
        out.rho[-1] = s
        out.rho_bar[...] = interpolate_rho(out.rho)
        for j in range(d):
            if self.n[j] == 1:  # a single cell along this axis: no interior face, no flux
                out.m[j][...] = 0.0
                out.m_bar[j][...] = 0.0
                continue
            rhs = f.m[j] + average_adjacent(f.m_bar[j], 1 + j)
            out.m[j][...] = _solve_faces(rhs, self._eig_x[j], 1 + j)
            out.m_bar[j][...] = interpolate_m(out.m[j], j)
        for j, w in enumerate(f.w):
            rhs = w + average_adjacent(f.w_bar[j], j)
            out.w[j][...] = _solve_faces(rhs, self._eig_x[j], j)
            out.w_bar[j][...] = interpolate_faces(out.w[j], j)
        if f.sigma is not None:
            out.sigma[...] = self.sigma_prox(f.sigma)
