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


def _banded(diag: Array, off: float) -> Array:
    """Upper banded storage of the symmetric tridiagonal matrix (diag, off)."""
    ab = np.zeros((2, len(diag)))
    ab[0, 1:] = off
    ab[1] = diag
    return ab


def _solve_along(chol: Array, b: Array, axis: int) -> Array:
    """Solve the banded SPD system (Cholesky factor ``chol``) along ``axis`` of ``b``."""
    bm = np.moveaxis(b, axis, 0)
    shape = bm.shape
    x = scipy.linalg.cho_solve_banded((chol, False), bm.reshape(shape[0], -1), check_finite=False)
    return np.moveaxis(x.reshape(shape), 0, axis)


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
    _chol_t: Array = field(init=False, repr=False)
    _h: Array = field(init=False, repr=False)
    _a: float = field(init=False, repr=False)
    _chol_x: list[Array | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        diag = np.full(self.nt, 1.5)
        diag[0] = 1.25
        self._chol_t = scipy.linalg.cholesky_banded(_banded(diag, 0.25))
        coupling = np.zeros(self.nt)
        coupling[-1] = 0.25  # (Id + IᵀI) entry between ρ_{nt−1} and ρ_nt
        self._h = scipy.linalg.cho_solve_banded((self._chol_t, False), coupling)
        self._a = 1.25 - 0.25 * float(self._h[-1])
        self._chol_x = [
            scipy.linalg.cholesky_banded(_banded(np.full(nj - 1, 1.5), 0.25)) if nj > 1 else None
            for nj in self.n
        ]

    def apply(
        self, rho: Array, ms: list[Array], rho_bar: Array, m_bars: list[Array], out: list[Array]
    ) -> None:
        """Write the prox of (rho, ms, rho_bar, m_bars) into ``out`` = [ρ, m^1.., ρ̄, m̄^1..]."""
        d = len(self.n)
        zero = np.zeros((1, *self.n))
        r = rho + 0.5 * (np.concatenate([zero, rho_bar]) + np.concatenate([rho_bar, zero]))
        z = _solve_along(self._chol_t, r[:-1], 0)
        c = (r[-1] - 0.25 * z[-1]) / self._a
        s = self.terminal(c, 1.0 / self._a)
        rho_out = out[0]
        rho_out[:-1] = z - self._h.reshape(-1, *([1] * d)) * s
        rho_out[-1] = s
        out[1 + d][...] = interpolate_rho(rho_out)
        for j in range(d):
            chol = self._chol_x[j]
            if chol is None:  # a single cell along this axis: no interior face, no flux
                out[1 + j][...] = 0.0
                out[2 + d + j][...] = 0.0
                continue
            rhs = ms[j] + average_adjacent(m_bars[j], 1 + j)
            out[1 + j][...] = _solve_along(chol, rhs, 1 + j)
            out[2 + d + j][...] = interpolate_m(out[1 + j], j)
