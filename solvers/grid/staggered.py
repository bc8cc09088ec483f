"""Staggered space-time grid of Papadakis–Peyré–Oudet (2014) and its linear operators.

Time [0, T] has ``nt`` cells of width dt; space is a box with ``n = (n_1, ..., n_d)`` cells of
widths dx_j. The unknowns live in two places:

* staggered (``U``): densities ρ_k at the time nodes t_k = k dt (k = 0..nt), shape (nt+1, *n), and
  momenta m^j at the *interior* faces normal to axis j, shape (nt, ..., n_j − 1, ...); the momenta
  on the boundary of the box are zero (no flux).
* centred (``V``): ρ̄ and m̄^j at the cell centres (t_{k+½}, x_i), each of shape (nt, *n).

Both are packed into one flat float64 vector so that the splitting works on plain arrays; a
:class:`Layout` hands out zero-copy views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Layout:
    """Shapes and offsets of the packed vector ``[ρ, m^1..m^d, ρ̄, m̄^1..m̄^d]``."""

    nt: int
    n: tuple[int, ...]

    @property
    def dim(self) -> int:
        return len(self.n)

    def shapes(self) -> list[tuple[int, ...]]:
        """Shapes of ρ, m^1..m^d (staggered), then ρ̄, m̄^1..m̄^d (centred)."""
        stag = [(self.nt + 1, *self.n)]
        for j in range(self.dim):
            s = list(self.n)
            s[j] -= 1
            stag.append((self.nt, *s))
        cent = [(self.nt, *self.n)] * (1 + self.dim)
        return stag + cent

    @property
    def size(self) -> int:
        return int(sum(np.prod(s) for s in self.shapes()))

    @property
    def staggered_size(self) -> int:
        return int(sum(np.prod(s) for s in self.shapes()[: 1 + self.dim]))

    def views(self, z: Array) -> tuple[Array, list[Array], Array, list[Array]]:
        """Views ``(rho, [m^j], rho_bar, [m_bar^j])`` into the packed vector ``z``."""
        out, start = [], 0
        for s in self.shapes():
            size = int(np.prod(s))
            out.append(z[start : start + size].reshape(s))
            start += size
        d = self.dim
        return out[0], out[1 : 1 + d], out[1 + d], out[2 + d :]

    def zeros(self) -> Array:
        return np.zeros(self.size)


def pad_faces(m: Array, axis: int) -> Array:
    """Momentum on all faces along ``axis`` (zero flux on the two boundary faces)."""
    width = [(0, 0)] * m.ndim
    width[axis] = (1, 1)
    return np.pad(m, width)


def average_adjacent(a: Array, axis: int) -> Array:
    """(a_i + a_{i+1}) / 2 along ``axis``: length shrinks by one."""
    lo = [slice(None)] * a.ndim
    hi = [slice(None)] * a.ndim
    lo[axis] = slice(None, -1)
    hi[axis] = slice(1, None)
    return 0.5 * (a[tuple(lo)] + a[tuple(hi)])


def interpolate_rho(rho: Array) -> Array:
    """ρ̄_k = (ρ_k + ρ_{k+1}) / 2: time nodes → cell centres."""
    return average_adjacent(rho, 0)


def interpolate_m(m: Array, j: int) -> Array:
    """m̄^j_i = (m^j_{i−½} + m^j_{i+½}) / 2 along spatial axis j, boundary fluxes zero."""
    return average_adjacent(pad_faces(m, 1 + j), 1 + j)


def divergence(rho: Array, ms: list[Array], dt: float, dx: tuple[float, ...]) -> Array:
    """Space-time divergence per cell: (ρ_{k+1} − ρ_k)/dt + Σ_j (m^j_{i+½} − m^j_{i−½})/dx_j.

    Shape (nt, *n); zero for a discrete solution of ∂tρ + ∇·m = 0 with no flux through the box.
    """
    div = np.diff(rho, axis=0) / dt
    for j, m in enumerate(ms):
        div += np.diff(pad_faces(m, 1 + j), axis=1 + j) / dx[j]
    return div
