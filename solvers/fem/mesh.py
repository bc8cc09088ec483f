"""Meshes of Ω (1-D or 2-D) and of the space-time cylinder Ω × [0, T] (numpy arrays).

Spatial meshes: a uniform interval mesh in 1-D; in 2-D a structured triangulation of a box (so a
box case sits on the same nodes as a tensor grid) and gmsh (PyPI wheel) for disks and polygons
with holes — dolfinx's own constructors only make boxes, and gmsh is the FEniCS community's
mesher for curved and multiply connected domains.

The space-time mesh is the spatial mesh extruded over ``nt`` uniform time slabs: every
space-time simplex lies inside one slab [t_k, t_{k+1}], so the spatial fields at each time level
are the nodal values of one level of vertices, and slab averages of cell fields are spatial
densities with exact mass bookkeeping. A 1-D cell (segment) × slab is a quadrilateral cut into
2 triangles; a 2-D cell (triangle) × slab is a prism cut into 3 tetrahedra. The prism is cut
with its vertices sorted by global index (tetrahedra [a,b,c,c'], [a,b,b',c'], [a,a',b',c'] for
a < b < c), which puts each quadrilateral face's diagonal from its lower-index bottom vertex to
the top of the other: two prisms sharing a face cut it the same way, so the mesh is conforming.

Vertex (level k, spatial vertex i) has index k·nv + i; cell (slab k, spatial cell e, piece j)
has index (k·ne + e)·pieces + j. Coordinates are (x_1, ..., x_d, t): time is the last axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mfg.domains import Box, Disk, Polygon, Shape

Array = np.ndarray


@dataclass(frozen=True)
class SpaceMesh:
    """Simplicial mesh of Ω: ``points`` (nv, d) and ``cells`` (ne, d + 1) vertex indices."""

    points: Array
    cells: Array

    @property
    def dim(self) -> int:
        return self.points.shape[1]

    @property
    def volumes(self) -> Array:
        """Length (1-D) or area (2-D) of every cell, shape (ne,)."""
        return simplex_volumes(self.points, self.cells)

    @property
    def weights(self) -> Array:
        """Lumped P1 mass: w_i = Σ_{e ∋ i} |e|/(d + 1), shape (nv,). Σ_i w_i f_i is the
        vertex-rule quadrature of a P1 function, exact for its mass."""
        w = np.zeros(len(self.points))
        share = self.volumes / (self.dim + 1)
        for j in range(self.dim + 1):
            np.add.at(w, self.cells[:, j], share)
        return w

    @property
    def h_max(self) -> float:
        """Longest edge."""
        p = self.points[self.cells]
        k = self.cells.shape[1]
        return float(max(np.max(np.linalg.norm(p[:, i] - p[:, j], axis=1))
                         for i in range(k) for j in range(i + 1, k)))


@dataclass(frozen=True)
class SpaceTimeMesh:
    """The extrusion of ``space`` over ``times`` (nt + 1 levels); ``points`` (nv(nt+1), d+1),
    ``cells`` (nt·ne·pieces, d + 2)."""

    space: SpaceMesh
    times: Array
    points: Array
    cells: Array

    @property
    def nt(self) -> int:
        return len(self.times) - 1

    @property
    def pieces(self) -> int:
        """Simplices per spatial cell per slab (2 in 1-D, 3 in 2-D)."""
        return self.space.dim + 1

    @property
    def volumes(self) -> Array:
        return simplex_volumes(self.points, self.cells)


def simplex_volumes(points: Array, cells: Array) -> Array:
    """|det(x_1 − x_0, ..., x_k − x_0)| / k! for every k-simplex (k = the points' dimension)."""
    p = points[cells]
    k = points.shape[1]
    edges = p[:, 1:, :] - p[:, :1, :]
    return np.abs(np.linalg.det(edges)) / math.factorial(k)


# ----------------------------------------------------------------------------------------------
# spatial meshes


def interval_mesh(lo: float, hi: float, h: float) -> SpaceMesh:
    """ceil((hi − lo)/h) equal segments."""
    n = max(2, math.ceil((hi - lo) / h - 1e-9))
    x = np.linspace(lo, hi, n + 1)
    cells = np.stack([np.arange(n), np.arange(1, n + 1)], axis=1)
    return SpaceMesh(x[:, None], cells.astype(np.int64))


def box_mesh(bounds: tuple[tuple[float, float], ...], h: float) -> SpaceMesh:
    """Structured triangulation of a rectangle: ceil(side/h) squares per side, each cut along
    the same diagonal."""
    (x0, x1), (y0, y1) = bounds
    nx = max(2, math.ceil((x1 - x0) / h - 1e-9))
    ny = max(2, math.ceil((y1 - y0) / h - 1e-9))
    xs, ys = np.linspace(x0, x1, nx + 1), np.linspace(y0, y1, ny + 1)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    points = np.stack([X.ravel(), Y.ravel()], axis=1)
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    v00 = (i * (ny + 1) + j).ravel()
    v10, v01 = v00 + (ny + 1), v00 + 1
    v11 = v10 + 1
    cells = np.concatenate([np.stack([v00, v10, v11], 1), np.stack([v00, v11, v01], 1)])
    return SpaceMesh(points, cells.astype(np.int64))


def gmsh_mesh(shape: Disk | Polygon, h: float) -> SpaceMesh:
    """Triangulate a disk or a polygon with holes with gmsh (target edge length h)."""
    import gmsh

    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.NumThreads", 1)
        gmsh.model.add("domain")
        geo = gmsh.model.geo
        if isinstance(shape, Disk):
            (cx, cy), rad = shape.centre, shape.radius
            c = geo.addPoint(cx, cy, 0.0, h)
            pts = [geo.addPoint(cx + rad * np.cos(a), cy + rad * np.sin(a), 0.0, h)
                   for a in (0.0, 0.5 * np.pi, np.pi, 1.5 * np.pi)]
            arcs = [geo.addCircleArc(pts[i], c, pts[(i + 1) % 4]) for i in range(4)]
            loops = [geo.addCurveLoop(arcs)]
        else:
            loops = []
            for ring in [shape.outer, *shape.hole_rings]:
                pts = [geo.addPoint(float(x), float(y), 0.0, h) for x, y in ring]
                lines = [geo.addLine(pts[i], pts[(i + 1) % len(pts)]) for i in range(len(pts))]
                loops.append(geo.addCurveLoop(lines))
        geo.addPlaneSurface(loops)
        geo.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", h)
        gmsh.model.mesh.generate(2)
        tags, coords, _ = gmsh.model.mesh.getNodes()
        _, _, node_tags = gmsh.model.mesh.getElements(2)
    finally:
        gmsh.finalize()
    coords = coords.reshape(-1, 3)[:, :2]
    tri = np.asarray(node_tags[0], dtype=np.int64).reshape(-1, 3)
    # keep only the nodes the triangles use, renumbered 0..nv-1 in tag order
    used = np.unique(tri)
    index = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    index[tags.astype(np.int64)] = np.arange(len(tags))
    keep = index[used]
    renum = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    renum[used] = np.arange(len(used))
    return SpaceMesh(np.ascontiguousarray(coords[keep]), renum[tri])


def space_mesh(shape: Shape, h: float) -> SpaceMesh:
    """The spatial mesh of a box (1-D or 2-D), disk or polygon with mesh size ``h``."""
    if isinstance(shape, Box):
        if len(shape.bounds) == 1:
            return interval_mesh(*shape.bounds[0], h)
        return box_mesh(shape.bounds, h)
    return gmsh_mesh(shape, h)


# ----------------------------------------------------------------------------------------------
# extrusion


def extrude(space: SpaceMesh, T: float, nt: int) -> SpaceTimeMesh:
    """The conforming simplicial mesh of Ω × [0, T] with nt uniform slabs (module doc)."""
    nv = len(space.points)
    times = np.linspace(0.0, T, nt + 1)
    points = np.concatenate(
        [np.hstack([space.points, np.full((nv, 1), t)]) for t in times]
    )
    cells = np.sort(space.cells, axis=1)  # sorted vertex order: conforming cuts
    if space.dim == 1:
        a, b = cells[:, 0], cells[:, 1]
        def pieces(lo: int, up: int) -> list[Array]:  # noqa: E306
            a0, b0, a1, b1 = a + lo, b + lo, a + up, b + up
            return [np.stack([a0, b0, b1], 1), np.stack([a0, a1, b1], 1)]
    else:
        a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
        def pieces(lo: int, up: int) -> list[Array]:  # noqa: E306
            a0, b0, c0, a1, b1, c1 = a + lo, b + lo, c + lo, a + up, b + up, c + up
            return [np.stack([a0, b0, c0, c1], 1), np.stack([a0, b0, b1, c1], 1),
                    np.stack([a0, a1, b1, c1], 1)]
    slabs = []
    for k in range(nt):
        # (ne, pieces, d + 2): cell index (k·ne + e)·pieces + j
        slabs.append(np.stack(pieces(k * nv, (k + 1) * nv), axis=1).reshape(-1, space.dim + 2))
    return SpaceTimeMesh(space, times, points, np.concatenate(slabs).astype(np.int64))
