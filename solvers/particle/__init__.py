"""Particle family (DESIGN.md §2 "particle", issue #5): interacting-particle flows driven by
velocity fields estimated from samples (kde_kl, mmd, sinkhorn, sliced_w, lipschitz_f, drift),
one-step generators trained against those fields, and parametric JKO steps.

Public surface: :func:`solve` (kinds ``particle``, ``generator``, ``jko``); the fields are in
:mod:`solvers.particle.fields` (``FIELDS``), the O(N)-memory kernel sums in
:mod:`solvers.particle.kernels`.
"""

from solvers.particle.solver import solve

__all__ = ["solve"]
