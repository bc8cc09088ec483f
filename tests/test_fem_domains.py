"""Domain geometry (mfg.domains) and the space-time meshes (solvers.fem.mesh) against exact
values: areas, point location, shortest paths around walls, conformity of the extrusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfg.domains import Box, Disk, GeometryError, Polygon
from solvers.fem.mesh import extrude, space_mesh

#: two rooms [0, 0.95] x [0, 1] and [1.05, 2] x [0, 1] joined by a door above y = 0.6
TWO_ROOMS = ((0.0, 0.0), (0.95, 0.0), (0.95, 0.6), (1.05, 0.6), (1.05, 0.0), (2.0, 0.0),
             (2.0, 1.0), (0.0, 1.0))


def test_shortest_path_goes_around_the_wall() -> None:
    poly = Polygon(TWO_ROOMS)
    # (0.5, 0.3) -> corner (0.95, 0.6) -> corner (1.05, 0.6) -> (1.5, 0.3)
    exact = 2 * math.hypot(0.45, 0.3) + 0.1
    assert poly.shortest_path((0.5, 0.3), (1.5, 0.3)) == pytest.approx(exact, rel=1e-12)
    # in sight of each other: the straight line
    assert poly.shortest_path((0.2, 0.8), (1.8, 0.9)) == pytest.approx(math.hypot(1.6, 0.1))


def test_shortest_path_around_a_hole() -> None:
    square = ((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0))
    hole = ((1.5, 1.0), (2.5, 1.0), (2.5, 3.0), (1.5, 3.0))
    poly = Polygon(square, (hole,))
    # (0.5, 2) -> (1.5, 3) -> (2.5, 3) -> (3.5, 2) (or the mirror path below: same length)
    exact = 2 * math.hypot(1.0, 1.0) + 1.0
    assert poly.shortest_path((0.5, 2.0), (3.5, 2.0)) == pytest.approx(exact, rel=1e-12)
    assert poly.area == pytest.approx(16.0 - 2.0)


def test_contains_and_areas() -> None:
    poly = Polygon(TWO_ROOMS)
    pts = np.array([[0.5, 0.5], [1.0, 0.3], [1.0, 0.8], [2.5, 0.5], [0.95, 0.3]])
    assert poly.contains(pts).tolist() == [True, False, True, False, True]
    assert poly.area == pytest.approx(2.0 - 0.1 * 0.6)
    disk = Disk((1.0, -1.0), 2.0)
    assert disk.contains(np.array([[1.0, 0.9], [1.0, 1.1]])).tolist() == [True, False]
    assert Box(((0.0, 1.0),)).contains(np.array([[0.5], [1.5]])).tolist() == [True, False]


def test_invalid_polygons_name_the_part() -> None:
    with pytest.raises(GeometryError) as info:
        Polygon(((0, 0), (1, 1), (1, 0), (0, 1)))  # a bow tie
    assert info.value.field == "vertices" and "self-intersecting" in info.value.message
    with pytest.raises(GeometryError) as info:
        Polygon(((0, 0), (1, 0), (1, 1), (0, 1)), (((2, 2), (3, 2), (3, 3)),))
    assert info.value.field == "holes.0"


@pytest.mark.parametrize("shape", [Box(((-1.0, 1.0),)), Box(((-1.0, 1.0), (0.0, 2.0))),
                                   Disk((0.0, 0.0), 1.0), Polygon(TWO_ROOMS)])
def test_space_time_mesh_volumes_and_conformity(shape) -> None:
    """The extruded cells fill Ω_h × [0, T] exactly and every interior facet is shared by
    exactly two cells (a non-conforming cut would leave facets with one cell inside)."""
    space = space_mesh(shape, 0.2)
    st = extrude(space, 2.0, 3)
    assert np.all(st.volumes > 0)
    assert st.volumes.sum() == pytest.approx(2.0 * space.volumes.sum(), rel=1e-12)
    if not isinstance(shape, Disk):  # polygons are meshed exactly
        assert space.volumes.sum() == pytest.approx(shape.area, rel=1e-12)
    assert space.weights.sum() == pytest.approx(space.volumes.sum(), rel=1e-12)
    k = st.cells.shape[1]
    facets = np.sort(np.concatenate([np.delete(st.cells, j, axis=1) for j in range(k)]), axis=1)
    unique, counts = np.unique(facets, axis=0, return_counts=True)
    assert counts.max() == 2
    # the boundary facets at t = 0 are exactly the cells of Ω_h (one each), likewise at t = T
    boundary = unique[counts == 1]
    nv = len(space.points)
    assert np.sum(np.all(boundary < nv, axis=1)) == len(space.cells)
    assert np.sum(np.all(boundary >= 3 * nv, axis=1)) == len(space.cells)
