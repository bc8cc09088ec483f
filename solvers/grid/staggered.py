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


@dataclass
class Fields:
    """Zero-copy views into a packed vector (see :class:`Layout`).

    Staggered: ``rho`` (nt+1, *n), ``m[j]`` (nt, interior faces of axis j), and for a W1 terminal
    cost the Beckmann flux ``w[j]`` at t = T (interior faces of axis j) and, for ``lipschitz_f``,
    the intermediate measure ``sigma`` (*n). Centred: ``rho_bar``, ``m_bar[j]`` (nt, *n) and
    ``w_bar[j]`` (*n).
    """

    rho: Array
    m: list[Array]
    w: list[Array]
    sigma: Array | None
    rho_bar: Array
    m_bar: list[Array]
    w_bar: list[Array]


@dataclass(frozen=True)
class Layout:
    """Shapes and offsets of the packed vector [ρ, m, w, σ | ρ̄, m̄, w̄] (w, σ optional)."""

    nt: int
    n: tuple[int, ...]
    beckmann: bool = False  # a W1 flux w at t = T (terminal kinds w1, lipschitz_f)
    sigma: bool = False  # the intermediate measure σ (lipschitz_f)

    @property
    def dim(self) -> int:
        return len(self.n)

    def _faces(self, j: int) -> tuple[int, ...]:
        s = list(self.n)
        s[j] -= 1
        return tuple(s)

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every block in packing order; staggered blocks come first."""
        d = self.dim
        out = [("rho", (self.nt + 1, *self.n))]
        out += [("m", (self.nt, *self._faces(j))) for j in range(d)]
        if self.beckmann:
            out += [("w", self._faces(j)) for j in range(d)]
        if self.sigma:
            out.append(("sigma", self.n))
        out.append(("rho_bar", (self.nt, *self.n)))
        out += [("m_bar", (self.nt, *self.n)) for _ in range(d)]
        if self.beckmann:
            out += [("w_bar", self.n) for _ in range(d)]
        return out

    @property
    def size(self) -> int:
        return int(sum(np.prod(s) for _, s in self.shapes()))

    def views(self, z: Array) -> Fields:
        """Named zero-copy views into the packed vector ``z``."""
        parts: dict[str, list[Array]] = {}
        start = 0
        for name, shape in self.shapes():
            size = int(np.prod(shape))
            parts.setdefault(name, []).append(z[start : start + size].reshape(shape))
            start += size
        return Fields(
            rho=parts["rho"][0],
            m=parts.get("m", []),
            w=parts.get("w", []),
            sigma=parts["sigma"][0] if "sigma" in parts else None,
            rho_bar=parts["rho_bar"][0],
            m_bar=parts.get("m_bar", []),
            w_bar=parts.get("w_bar", []),
        )

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
    """m̄^j_i = (m^j_{i−½} + m^j_{i+½}) / 2 along spatial axis j, boundary fluxes zero.

    ``m`` has a leading time axis; see :func:`interpolate_faces` for purely spatial fluxes."""
    return average_adjacent(pad_faces(m, 1 + j), 1 + j)


def interpolate_faces(w: Array, j: int) -> Array:
    """w̄_i = (w_{i−½} + w_{i+½}) / 2 along spatial axis j of a flux with no time axis."""
    return average_adjacent(pad_faces(w, j), j)


def spatial_divergence(ws: list[Array], dx: tuple[float, ...]) -> Array:
    """Σ_j (w^j_{i+½} − w^j_{i−½})/dx_j per cell for fluxes on interior faces (no time axis)."""
    div = 0.0
    for j, w in enumerate(ws):
        div = div + np.diff(pad_faces(w, j), axis=j) / dx[j]
    return np.asarray(div)


def divergence(rho: Array, ms: list[Array], dt: float, dx: tuple[float, ...]) -> Array:
    """Space-time divergence per cell: (ρ_{k+1} − ρ_k)/dt + Σ_j (m^j_{i+½} − m^j_{i−½})/dx_j.

    Shape (nt, *n); zero for a discrete solution of ∂tρ + ∇·m = 0 with no flux through the box.
    """
    div = np.diff(rho, axis=0) / dt
    for j, m in enumerate(ms):
        div += np.diff(pad_faces(m, 1 + j), axis=1 + j) / dx[j]
    return div
