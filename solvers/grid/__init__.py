"""Grid solver: proximal splitting on a staggered space-time tensor grid (1-D to 3-D, float64).

Public surface: :func:`solve`. See :mod:`solvers.grid.douglas_rachford` for the iteration.
"""

from solvers.grid.solver import solve

__all__ = ["solve"]
