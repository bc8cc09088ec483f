"""Push-forward of a grid measure by a map, as an explicit transport plan between grid atoms.

A measure on a grid is the set of atoms a_i (mass, = density × cell volume) at the cell centres
x_i. Given a displacement field D (a vector per cell, physical units) the map x ↦ x + D(x) is
applied to s^d sub-points of every cell (D interpolated linearly between centres), and each
sub-point's share a_i/s^d is split between the 2^d centres around its image with linear
(cloud-in-cell) weights, after clipping the image into the hull of the centres. This is a plan

    γ_ij = a_i Σ_{sub-points p of i} (1/s^d) w_j(x_i + o_p + D(x_i + o_p))

whose first marginal is a exactly and whose second marginal is the push-forward on the grid
(mass conserved to rounding). Its cost Σ_ij γ_ij |x_i − y_j|² is therefore an upper bound of
W2² between a and that push-forward — which is what makes the primal bounds of the
back-and-forth method (solvers/grid/back_and_forth.py) rigorous. Sub-points (s > 1) reduce the
aliasing of cloud-in-cell deposits where the map compresses or expands.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


def _interp_shift(f: Array, axis: int, o: float) -> Array:
    """f linearly interpolated at i + o along ``axis`` (|o| < 1, constant beyond the ends)."""
    if o == 0.0:
        return f
    n = f.shape[axis]
    idx = np.clip(np.arange(n) + (1 if o > 0 else -1), 0, n - 1)
    return (1.0 - abs(o)) * f + abs(o) * np.take(f, idx, axis=axis)


@dataclass(frozen=True)
class GridPlan:
    """A transport plan from the atoms of one grid to the centres of the same grid.

    Entry k of source cell i (arrays of shape (M, N), N cells flattened in C order) sends the
    fraction ``frac[k, i]`` of atom i to cell ``dst[k, i]`` at squared distance ``dist2[k, i]``.
    """

    n: tuple[int, ...]
    dst: Array
    frac: Array
    dist2: Array

    @property
    def size(self) -> int:
        return int(np.prod(self.n))

    def push(self, a: Array) -> Array:
        """Second marginal Σ_i γ_ij of the plan applied to the atoms ``a`` (shape n)."""
        w = (self.frac * a.reshape(1, -1)).ravel()
        return np.bincount(self.dst.ravel(), weights=w, minlength=self.size).reshape(self.n)

    def cost(self, a: Array) -> float:
        """Σ_ij γ_ij |x_i − y_j|² for the atoms ``a``."""
        return float(np.sum(self.frac * self.dist2 * a.reshape(1, -1)))

    def rounded_cost(self, a: Array, b: Array, centres: Array) -> float:
        """Cost of a coupling of exactly (a, b) built from the plan.

        Where the push-forward b̃ exceeds b the flows into j are cut by the factor b_j/b̃_j
        (Altschuler–Weed–Rigollet rounding); the flows cut arrive at the over-filled cells as
        the excess e = b̃ − min(b̃, b) and are carried on, with a coupling of e and the shortfall
        q = b − min(b̃, b) on the target grid (:func:`match_deficits`, local since both are),
        to where b lacks mass. The cost of that glued plan is exact:
        C + B + 2 Σ_j (y_j − F_j/e_j)·D_j, with C the plan's cost, B the matching's, F_j the
        e-weighted sum of the sources of the cut flows into j and D_j the e-weighted sum of
        the displacements j → destinations. ``centres`` has shape (N, d)."""
        bt = self.push(a).ravel()
        b = b.ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(bt > b, b / bt, 1.0)
        cut = self.frac * (1.0 - scale[self.dst]) * a.reshape(1, -1)  # flows cut, (M, N)
        full = self.cost(a)
        e = np.maximum(bt - np.minimum(bt, b), 0.0)
        q = np.maximum(b - np.minimum(bt, b), 0.0)
        if e.sum() <= 0.0:
            return full
        match, moves = match_deficits(e, q, self.n, centres)
        dst = self.dst.ravel()
        cross = 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis, c in enumerate(centres.T):
                src = np.broadcast_to(c, cut.shape).ravel()
                f_j = np.bincount(dst, weights=(cut.ravel() * src), minlength=self.size)
                mean_src = np.where(e > 0, f_j / e, c)
                cross += float(np.sum((c - mean_src) * moves[:, axis]))
        return full + match + 2.0 * cross


def match_deficits(
    r: Array, q: Array, n: tuple[int, ...], centres: Array
) -> tuple[float, Array]:
    """A coupling γ of two grid measures r, q of equal mass built block by block: in every block
    of 2^ℓ cells per axis (ℓ = 0, 1, ...), the mass m = min(R_B, Q_B) left in the block is
    paired independently inside it, and the rest goes up a level; the last level is the whole
    grid. Returns its cost Σ γ_ij |x_i − x_j|² (exact per block:
    Σ r'|x|² + Σ q'|x|² − 2 (Σ r'x)·(Σ q'x)/m) and, per source cell i, Σ_j γ_ij (x_j − x_i)
    (shape (N, d)). Deficits of a rounding are local, so most mass pairs at small ℓ."""
    r, q = r.astype(np.float64).copy(), q.astype(np.float64).copy()
    idx = np.indices(n).reshape(len(n), -1)
    moves = np.zeros_like(centres)
    cost, size = 0.0, 1
    while r.sum() > 0 and q.sum() > 0:
        ids = np.ravel_multi_index([k // size for k in idx], [-(-k // size) for k in n])
        R, Q = np.bincount(ids, weights=r), np.bincount(ids, weights=q)
        m = np.minimum(R, Q)
        last = size >= max(n)
        if last:  # one block: pair all that is left
            m = np.maximum(R, Q) * (m > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rr = r * np.where(R > 0, np.minimum(m / R, 1.0), 0.0)[ids]
            qq = q * np.where(Q > 0, np.minimum(m / Q, 1.0), 0.0)[ids]
        mr, mq = np.bincount(ids, weights=rr), np.bincount(ids, weights=qq)
        ok = (mr > 0) & (mq > 0)
        for axis, c in enumerate(centres.T):
            cq = np.zeros_like(mq)
            cq[ok] = np.bincount(ids, weights=qq * c)[ok] / mq[ok]  # mean destination
            cr = np.bincount(ids, weights=rr * c)
            cost += float(np.sum(rr * c * c) + np.sum(qq * c * c) - 2.0 * np.sum(cr * cq))
            moves[:, axis] += rr * (cq[ids] - c)
        r -= rr
        q -= qq
        if last:
            break
        size *= 2
    return cost, moves


def map_plan(
    displacement: list[Array],
    dx: tuple[float, ...],
    subdivisions: int,
    density: Array | None = None,
) -> GridPlan:
    """The plan of x ↦ x + D(x) (``displacement`` = [D_1, ..., D_d], each of the grid's shape,
    physical units) with ``subdivisions`` sub-points per axis and cloud-in-cell deposits.

    The sub-points of a cell share its atom in proportion to ``density`` linearly interpolated
    at them (equal shares if None): second-order where the density varies across the cell."""
    n = displacement[0].shape
    d = len(n)
    s = subdivisions
    offsets = [(k + 0.5) / s - 0.5 for k in range(s)]  # sub-point offsets, in cells
    subs = list(itertools.product(offsets, repeat=d))
    shares = [np.full(n, 1.0 / s**d) for _ in subs]
    if density is not None and s > 1:
        vals = []
        for sub in subs:
            v = density
            for b in range(d):
                v = _interp_shift(v, b, sub[b])
            vals.append(v)
        total = sum(vals)
        with np.errstate(divide="ignore", invalid="ignore"):
            shares = [np.where(total > 0, v / total, 1.0 / s**d) for v in vals]
    centre_idx = np.meshgrid(*[np.arange(k, dtype=np.float64) for k in n], indexing="ij")
    dst, frac, dist2 = [], [], []
    for sub, share in zip(subs, shares, strict=True):
        # image of the sub-point in index units, clipped into the hull of the centres
        pos = []
        for a in range(d):
            disp = displacement[a]
            for b in range(d):
                disp = _interp_shift(disp, b, sub[b])
            pos.append(np.clip(centre_idx[a] + sub[a] + disp / dx[a], 0.0, n[a] - 1.0))
        lo = [np.minimum(np.floor(p), n[a] - 2).astype(np.intp) if n[a] > 1
              else np.zeros(p.shape, dtype=np.intp) for a, p in enumerate(pos)]
        t = [p - i0 for p, i0 in zip(pos, lo, strict=True)]
        for corner in itertools.product((0, 1), repeat=d):
            w = share
            idx = []
            d2 = np.zeros(n)
            for a in range(d):
                ia = lo[a] + corner[a]
                w = w * (t[a] if corner[a] else 1.0 - t[a])
                idx.append(ia)
                d2 += ((ia - centre_idx[a]) * dx[a]) ** 2
            dst.append(np.ravel_multi_index(idx, n).ravel())
            frac.append(w.ravel())
            dist2.append(d2.ravel())
    return GridPlan(tuple(n), np.stack(dst), np.stack(frac), np.stack(dist2))
