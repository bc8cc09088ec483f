"""Planar domain geometry for mesh solvers: boxes, disks and polygons with holes (pure numpy).

A domain Ω ⊂ R^d is one of

* :class:`Box`      ``[lo_1, hi_1] × ... × [lo_d, hi_d]`` (any d),
* :class:`Disk`     ``{x ∈ R² : |x − centre| ≤ radius}``,
* :class:`Polygon`  a simple polygon (``vertices``, either orientation) minus simple polygonal
  ``holes`` that lie strictly inside it and do not touch each other.

Each has ``bounds`` (its bounding box, one ``(lo, hi)`` per axis), ``contains(x)`` for points of
shape (n, d) (the closed set: boundary points count as inside) and ``area``. :func:`mass_inside`
estimates the mass a distribution puts in Ω; :meth:`Polygon.shortest_path` is the exact geodesic
distance between two points of a polygonal domain (the shortest path is a polyline that bends only
at polygon vertices: Dijkstra on the visibility graph).

Invalid geometry raises :class:`GeometryError` whose ``field`` names the offending part
(``vertices``, ``holes.<i>``, ``radius``) relative to the domain mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray
Point = tuple[float, float]

#: points drawn to estimate the mass a distribution puts in a curved or polygonal domain; the
#: standard error at the 0.999 coverage threshold is sqrt(0.999·0.001/n) ≈ 7e-5
MASS_SAMPLES = 200_000
#: seed of those draws (the estimate is deterministic)
MASS_SEED = 12345


class GeometryError(ValueError):
    """Invalid domain geometry; ``field`` is the dotted field inside the domain mapping."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# ----------------------------------------------------------------------------------------------
# segment predicates


def _orient(p: Array, q: Array, r: Array) -> float:
    """Twice the signed area of the triangle (p, q, r): > 0 when r is left of p → q."""
    return float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))


def _on_segment(p: Array, q: Array, r: Array) -> bool:
    """r (collinear with p, q) lies on the closed segment [p, q]."""
    return (min(p[0], q[0]) <= r[0] <= max(p[0], q[0])) and (
        min(p[1], q[1]) <= r[1] <= max(p[1], q[1])
    )


def segments_intersect(p1: Array, p2: Array, q1: Array, q2: Array) -> bool:
    """The closed segments [p1, p2] and [q1, q2] share at least one point."""
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (
        (d1 == 0 and _on_segment(q1, q2, p1))
        or (d2 == 0 and _on_segment(q1, q2, p2))
        or (d3 == 0 and _on_segment(p1, p2, q1))
        or (d4 == 0 and _on_segment(p1, p2, q2))
    )


def segments_cross(p1: Array, p2: Array, q1: Array, q2: Array) -> bool:
    """The open segments cross properly (each one's endpoints strictly on both sides of the
    other's line): a path may touch a wall at a vertex or run along it, but not pass through."""
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    return ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4))


def _edges(ring: Array) -> list[tuple[Array, Array]]:
    return [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]


def signed_area(ring: Array) -> float:
    """Shoelace formula: positive for a counter-clockwise ring."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def check_simple(ring: Array, field: str) -> None:
    """A ring of >= 3 distinct points whose non-adjacent edges do not meet, and area > 0."""
    n = len(ring)
    if n < 3:
        raise GeometryError(field, f"a polygon needs at least 3 vertices (got {n})")
    if len({tuple(p) for p in ring.tolist()}) != n:
        raise GeometryError(field, "has repeated vertices")
    edges = _edges(ring)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex by construction
            if segments_intersect(*edges[i], *edges[j]):
                raise GeometryError(field, f"is self-intersecting (edges {i} and {j} meet)")
    if abs(signed_area(ring)) <= 0.0:
        raise GeometryError(field, "has zero area")


def points_in_ring(x: Array, ring: Array) -> Array:
    """Even–odd ray casting: x (n, 2) strictly inside the ring, or on its boundary (True)."""
    inside = np.zeros(len(x), dtype=bool)
    px, py = x[:, 0], x[:, 1]
    on_edge = np.zeros(len(x), dtype=bool)
    for a, b in _edges(ring):
        (ax, ay), (bx, by) = a, b
        cond = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = ax + (py - ay) * (bx - ax) / (by - ay)
        inside ^= cond & (px < xcross)
        cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
        within = (np.minimum(ax, bx) <= px) & (px <= np.maximum(ax, bx))
        within &= (np.minimum(ay, by) <= py) & (py <= np.maximum(ay, by))
        on_edge |= (np.abs(cross) <= 1e-12 * max(1.0, np.hypot(bx - ax, by - ay))) & within
    return inside | on_edge


# ----------------------------------------------------------------------------------------------
# shapes


@dataclass(frozen=True)
class Box:
    """Axis-aligned box, ``bounds = ((lo_1, hi_1), ...)``."""

    bounds: tuple[tuple[float, float], ...]

    kind = "box"

    @property
    def area(self) -> float:
        return float(np.prod([hi - lo for lo, hi in self.bounds]))

    def contains(self, x: Array) -> Array:
        x = np.asarray(x, dtype=np.float64).reshape(-1, len(self.bounds))
        lo = np.array([b[0] for b in self.bounds])
        hi = np.array([b[1] for b in self.bounds])
        return np.all((x >= lo) & (x <= hi), axis=1)


@dataclass(frozen=True)
class Disk:
    """Closed disk of ``radius`` around ``centre`` in R²."""

    centre: Point
    radius: float

    kind = "disk"

    def __post_init__(self) -> None:
        if not self.radius > 0:
            raise GeometryError("radius", f"must be > 0 (got {self.radius})")

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        return tuple((c - self.radius, c + self.radius) for c in self.centre)

    @property
    def area(self) -> float:
        return float(np.pi * self.radius**2)

    def contains(self, x: Array) -> Array:
        x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
        r2 = np.sum((x - np.asarray(self.centre)) ** 2, axis=1)
        return r2 <= self.radius**2 * (1.0 + 1e-12)


@dataclass(frozen=True)
class Polygon:
    """Simple polygon ``vertices`` minus the simple polygons ``holes`` (strictly inside, disjoint).

    Construction validates the geometry (:class:`GeometryError` naming ``vertices`` or
    ``holes.<i>``).
    """

    vertices: tuple[Point, ...]
    holes: tuple[tuple[Point, ...], ...] = ()

    kind = "polygon"

    def __post_init__(self) -> None:
        outer = self.outer
        check_simple(outer, "vertices")
        for i, hole in enumerate(self.hole_rings):
            field = f"holes.{i}"
            check_simple(hole, field)
            if not np.all(points_in_ring(hole, outer)) or any(
                segments_intersect(*e, *f) for e in _edges(hole) for f in _edges(outer)
            ):
                raise GeometryError(field, "must lie strictly inside the polygon's vertices")
            for j, other in enumerate(self.hole_rings[:i]):
                if (
                    any(segments_intersect(*e, *f) for e in _edges(hole) for f in _edges(other))
                    or np.any(points_in_ring(hole, other))
                    or np.any(points_in_ring(other, hole))
                ):
                    raise GeometryError(field, f"overlaps or touches hole {j}")

    @property
    def outer(self) -> Array:
        return np.asarray(self.vertices, dtype=np.float64)

    @property
    def hole_rings(self) -> list[Array]:
        return [np.asarray(h, dtype=np.float64) for h in self.holes]

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        v = self.outer
        return tuple((float(v[:, j].min()), float(v[:, j].max())) for j in range(2))

    @property
    def area(self) -> float:
        return abs(signed_area(self.outer)) - sum(abs(signed_area(h)) for h in self.hole_rings)

    def contains(self, x: Array) -> Array:
        """Closed domain: inside the outer ring (boundary included) and not strictly inside a
        hole (hole boundaries included)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
        inside = points_in_ring(x, self.outer)
        for hole in self.hole_rings:
            inside &= ~_strictly_in_ring(x, hole)
        return inside

    def _all_edges(self) -> list[tuple[Array, Array]]:
        out = _edges(self.outer)
        for hole in self.hole_rings:
            out += _edges(hole)
        return out

    def visible(self, p: Array, q: Array, samples: int = 64) -> bool:
        """The closed segment [p, q] lies in the closed domain: it crosses no wall properly and
        points along it are inside (catches segments through a vertex into a hole or outside)."""
        if any(segments_cross(p, q, a, b) for a, b in self._all_edges()):
            return False
        s = (np.arange(samples) + 0.5) / samples
        pts = p[None, :] + s[:, None] * (q - p)[None, :]
        return bool(np.all(self.contains(pts)))

    def shortest_path(self, a: Point, b: Point) -> float:
        """Length of the shortest path from ``a`` to ``b`` inside the closed domain (exact for a
        polygonal domain: Dijkstra on the visibility graph of {a, b} ∪ the vertices)."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import dijkstra

        pa, pb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if not (self.contains(pa[None])[0] and self.contains(pb[None])[0]):
            raise ValueError("both end points must lie in the domain")
        nodes = np.vstack([pa[None], pb[None], self.outer, *self.hole_rings])
        n = len(nodes)
        weights = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                if self.visible(nodes[i], nodes[j]):
                    weights[i, j] = weights[j, i] = max(
                        float(np.linalg.norm(nodes[i] - nodes[j])), 1e-300
                    )
        dist = dijkstra(csr_matrix(weights), directed=False, indices=0)
        return float(dist[1])


def _strictly_in_ring(x: Array, ring: Array) -> Array:
    """Inside the ring and not on its boundary."""
    inside = points_in_ring(x, ring)
    boundary = np.zeros(len(x), dtype=bool)
    for a, b in _edges(ring):
        cross = (b[0] - a[0]) * (x[:, 1] - a[1]) - (b[1] - a[1]) * (x[:, 0] - a[0])
        within = (np.minimum(a[0], b[0]) <= x[:, 0]) & (x[:, 0] <= np.maximum(a[0], b[0]))
        within &= (np.minimum(a[1], b[1]) <= x[:, 1]) & (x[:, 1] <= np.maximum(a[1], b[1]))
        boundary |= (np.abs(cross) <= 1e-12 * max(1.0, float(np.linalg.norm(b - a)))) & within
    return inside & ~boundary


Shape = Box | Disk | Polygon


def mass_inside(dist, shape: Shape) -> float:
    """Mass ``dist`` puts in the domain: exact (``mass_in_box``) for a box, else the fraction of
    MASS_SAMPLES draws (fixed seed) that fall inside."""
    if isinstance(shape, Box):
        return float(dist.mass_in_box(shape.bounds))
    x = dist.sample(MASS_SAMPLES, np.random.default_rng(MASS_SEED))
    return float(np.mean(shape.contains(x)))
