"""Exact discrete inf-convolution with the quadratic cost on a tensor grid (c-transforms).

For g on the cell centres x_i of a grid and τ > 0, this module computes

    (g □ c_τ)(x_i) = min_j  g(x_j) + |x_i − x_j|² / (2τ)              (min over all centres)

exactly, in O(N) per axis: the cost is a sum over axes, so the minimum is taken one axis after
the other, and along one axis it is the lower envelope of the parabolas j ↦ g_j + a(i − j)²
(Felzenszwalb & Huttenlocher 2012, the distance transform of sampled functions; equivalently
Lucet's linear-time discrete Legendre transform). The c-transform of the back-and-forth method is

    φ^c(x) = min_y |x − y|²/(2τ) − φ(y) = ((−φ) □ c_τ)(x),

and the Hopf–Lax formula U(x, t) = min_y U(y, T) + λ|x − y|²/(2(T − t)) is (U_T □ c_{(T−t)/λ}).

The envelope of each line is built and evaluated in one compiled pass (numba; compiled once and
cached on disk).
"""

from __future__ import annotations

import numba
import numpy as np

Array = np.ndarray


@numba.njit(cache=True)
def _envelope_lines(f: Array, vertex: bool = False) -> Array:
    """min_j f[l, j] + (i − j)² for every line l and index i, shape (L, n) -> (L, n); with
    ``vertex``, also over the vertices of the local parabolic interpolants (see below).

    Per line, the lower envelope of the parabolas P_j(i) = (i − j)² + f_j (j = 0..n−1):
    ``v[:k+1]`` are the parabolas of the envelope, ``z[k]`` the abscissa from which parabola
    ``v[k]`` is the lowest (z[0] = −∞); the intersection of P_q and P_v is at
    ((f_q + q²) − (f_v + v²)) / (2(q − v)). Compiled (numba): the loop is sequential per line.
    """
    L, n = f.shape
    out = np.empty((L, n))
    v = np.zeros(n, dtype=np.int64)
    z = np.empty(n + 1)
    arg = np.empty(n, dtype=np.int64)
    for line in range(L):
        fl = f[line]
        k = 0
        v[0] = 0
        z[0] = -np.inf
        z[1] = np.inf
        for q in range(1, n):
            fq = fl[q] + q * q
            while True:
                vk = v[k]
                s = (fq - (fl[vk] + vk * vk)) / (2.0 * (q - vk))
                if s > z[k]:
                    break
                k -= 1  # z[0] = −∞ never pops, so k stays >= 0
            k += 1
            v[k] = q
            z[k] = s
            z[k + 1] = np.inf
        k = 0
        for i in range(n):
            while z[k + 1] < i:
                k += 1
            j = v[k]
            arg[i] = j
            out[line, i] = (i - j) * (i - j) + fl[j]
        if not vertex or n < 3:
            continue
        # the vertex of the parabola through the minimizer and its two neighbours: a candidate
        # between the samples (so never above the exact minimum), exact where f is locally
        # quadratic, which makes the result smooth in i where the argmin jumps between samples
        for i in range(n):
            c = min(max(arg[i], 1), n - 2)
            fm = (i - c + 1) * (i - c + 1) + fl[c - 1]
            f0 = (i - c) * (i - c) + fl[c]
            fp = (i - c - 1) * (i - c - 1) + fl[c + 1]
            d1 = 0.5 * (fp - fm)
            d2 = fp - 2.0 * f0 + fm
            if d2 > 0 and abs(d1) <= d2:  # the vertex lies within one sample of the centre
                out[line, i] = min(out[line, i], f0 - 0.5 * d1 * d1 / d2)
    return out


def inf_convolution(
    g: Array, dx: tuple[float, ...], tau: float, smooth: bool = False
) -> Array:
    """(g □ c_τ)(x_i) = min_j g_j + |x_i − x_j|²/(2τ) over the cell centres, exactly; with
    ``smooth``, per axis also over the vertex of the parabola through the minimizing sample and
    its two neighbours.

    The smooth minimum is never above the exact one, so a c-transform computed with it still
    gives a feasible (φ, ψ) pair of the discrete dual; but it is not piecewise linear in g and
    second-order accurate in its derivatives where g is smooth, which the maps x − τ∇ψ(x) and
    their push-forwards need. ``g`` has the grid's shape (finite values), ``dx`` its cell widths,
    τ > 0. Returns an array of the same shape; cost O(N) per axis.
    """
    out = np.asarray(g, dtype=np.float64)
    for axis, h in enumerate(dx):
        a = h * h / (2.0 * tau)  # cost between cells i and j along this axis: a (i − j)²
        moved = np.moveaxis(out, axis, -1)
        shape = moved.shape
        env = a * _envelope_lines(moved.reshape(-1, shape[-1]) / a, smooth)
        out = np.moveaxis(env.reshape(shape), -1, axis)
    return np.ascontiguousarray(out)


def c_transform(phi: Array, dx: tuple[float, ...], tau: float, smooth: bool = False) -> Array:
    """φ^c(x) = min_y |x − y|²/(2τ) − φ(y) on the grid (see :func:`inf_convolution`)."""
    return inf_convolution(-phi, dx, tau, smooth)


def inf_convolution_brute(g: Array, dx: tuple[float, ...], tau: float) -> Array:
    """Reference O(N²) evaluation of :func:`inf_convolution` (for tests; small grids only)."""
    n = g.shape
    axes = [np.arange(k) * h for k, h in zip(n, dx, strict=True)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(n))
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    return (g.ravel()[None, :] + d2 / (2.0 * tau)).min(axis=1).reshape(n)
