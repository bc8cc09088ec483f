"""Finite elements (dolfinx): ALG2 of Benamou–Carlier on a space-time mesh of Ω × [0, T]."""

from solvers.fem.solver import solve

__all__ = ["solve"]
