"""Solver families. Each subpackage exposes ``solve(scenario) -> Result``.

``solve`` dispatches on ``scenario.solver.kind`` and imports the family lazily, so that a family's
heavy dependencies (torch, dolfinx) are loaded only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mfg.results import Result
    from mfg.scenario import Scenario

#: solver kind (the scenario's ``solver.kind``) -> module exposing ``solve``
FAMILIES: dict[str, str] = {
    "grid": "solvers.grid",
    "neural": "solvers.neural",
    "particle": "solvers.particle",
    "generator": "solvers.particle",
    "jko": "solvers.particle",
    "fem": "solvers.fem",
}


def solve(scenario: Scenario) -> Result:
    """Solve ``scenario`` with the family its ``solver.kind`` names."""
    kind = scenario.solver.kind
    if kind not in FAMILIES:
        raise ValueError(f"solver.kind: unknown solver {kind!r} (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[kind]).solve(scenario)
