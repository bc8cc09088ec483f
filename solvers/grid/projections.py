"""Linear steps of the grid splitting: the projection onto the continuity equation and the
proximal map of the interpolation constraint ρ̄ = I ρ coupled with the terminal cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.linalg

from solvers.grid.staggered import average_adjacent, divergence, interpolate_m, interpolate_rho

Array = np.ndarray


def _neumann_eigenvalues(n: int) -> Array:
    """Eigenvalues 2 − 2cos(πk/n) of the Neumann Laplacian tridiag(−1, 2, −1), ends 1
    (diagonalized by the orthonormal DCT-II)."""
    return 2.0 - 2.0 * np.cos(np.pi * np.arange(n) / n)


@dataclass
class ContinuityProjection:
    """Euclidean projection of staggered (ρ, m) onto {∂tρ + ∇·m = 0, ρ(0) = ρ0, no flux}.

    ρ_0 is set to ρ0; the remaining unknowns x = (ρ_1..ρ_nt, m) are projected onto {A x = b}
    (A the discrete divergence of :func:`divergence`) by x ← x − Aᵀp with A Aᵀ p = A x − b.
    A Aᵀ = L_t/dt² ⊗ Id + Σ_j Id ⊗ L_j/dx_j², where L_j is the Neumann Laplacian (zero flux) and
    L_t has a Neumann end at t = 0 (ρ_0 is given) and a Dirichlet end at t = T (ρ_T is free), so
    A Aᵀ is invertible. It is diagonalized by a DCT-II in space and the eigenvectors of L_t
    in time: one space-time Poisson solve costs O(N log N) plus an nt × nt product.
    """

    nt: int
    dt: float
    n: tuple[int, ...]
    dx: tuple[float, ...]
    rho0: Array
    _q: Array = field(init=False, repr=False)
    _denom: Array = field(init=False, repr=False)

    def __post_init__(self) -> None:
        diag = np.full(self.nt, 2.0)
        diag[0] = 1.0
        lam_t, self._q = scipy.linalg.eigh_tridiagonal(diag, -np.ones(self.nt - 1))
        denom = lam_t.reshape(-1, *([1] * len(self.n))) / self.dt**2
        for j, (nj, dxj) in enumerate(zip(self.n, self.dx, strict=True)):
            shape = [1] * (1 + len(self.n))
            shape[1 + j] = nj
            denom = denom + (_neumann_eigenvalues(nj) / dxj**2).reshape(shape)
        self._denom = denom

    def solve_poisson(self, r: Array) -> Array:
        """p with A Aᵀ p = r, r of shape (nt, *n)."""
        axes = tuple(range(1, 1 + len(self.n)))
        rh = scipy.fft.dctn(r, type=2, axes=axes, norm="ortho")
        rh = np.tensordot(self._q.T, rh, axes=1) / self._denom
        rh = np.tensordot(self._q, rh, axes=1)
        return scipy.fft.idctn(rh, type=2, axes=axes, norm="ortho")

    def project(self, rho: Array, ms: list[Array]) -> Array:
        """Project in place and return the multiplier p, shape (nt, *n): the step was −Aᵀp."""
        rho[0] = self.rho0
        p = self.solve_poisson(divergence(rho, ms, self.dt, self.dx))
        # Aᵀp on ρ_k (k ≥ 1) is (p_{k−1} − p_k)/dt with p_nt = 0
        rho[1:-1] -= (p[:-1] - p[1:]) / self.dt
        rho[-1] -= p[-1] / self.dt
        # Aᵀp on the interior face between cells i−1 and i of axis j is (p_{i−1} − p_i)/dx_j
        for j, m in enumerate(ms):
            m += np.diff(p, axis=1 + j) / self.dx[j]
        return p


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
    SPD tridiagonal system (Id + IᵀI) u = U' + IᵀV'. In time, the last unknown ρ_T carries the
    pointwise terminal cost: eliminating ρ_0..ρ_{nt−1} leaves, per cell,
    a/2 (s − c)² + G(s), i.e. s = prox_{G/a}(c) with the Schur complement a.
    """

    nt: int
    n: tuple[int, ...]
    #: (c, t) -> argmin_s ½(s − c)² + t·g(s), the pointwise prox of the terminal cost g
    terminal: Callable[[Array, float], Array]
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

    def apply(
        self, rho: Array, ms: list[Array], rho_bar: Array, m_bars: list[Array], out: list[Array]
    ) -> None:
        """Write the prox of (rho, ms, rho_bar, m_bars) into ``out`` = [ρ, m^1.., ρ̄, m̄^1..]."""
        d = len(self.n)
        zero = np.zeros((1, *self.n))
        r = rho + 0.5 * (np.concatenate([zero, rho_bar]) + np.concatenate([rho_bar, zero]))
        z = (self._inv_t @ r[:-1].reshape(self.nt, -1)).reshape(r[:-1].shape)
        c = (r[-1] - 0.25 * z[-1]) / self._a
        s = self.terminal(c, 1.0 / self._a)
        rho_out = out[0]
        rho_out[:-1] = z - self._h.reshape(-1, *([1] * d)) * s
        rho_out[-1] = s
        out[1 + d][...] = interpolate_rho(rho_out)
        for j in range(d):
            if self.n[j] == 1:  # a single cell along this axis: no interior face, no flux
                out[1 + j][...] = 0.0
                out[2 + d + j][...] = 0.0
                continue
            rhs = ms[j] + average_adjacent(m_bars[j], 1 + j)
            out[1 + j][...] = _solve_faces(rhs, self._eig_x[j], 1 + j)
            out[2 + d + j][...] = interpolate_m(out[1 + j], j)
