"""Fingerprint of a neural run: what a checkpoint must agree on before ``--resume`` continues it.

A checkpoint continued under another problem (λ, T, source, target, terminal cost, seed) or
another training (learning rate, network, integrator, batch, penalties, ...) would store a
result that mixes two runs. The fingerprint is ``{field: text}`` over everything that defines
the problem and the training; it leaves out what only says how long to run, what to report and
where to write (:data:`RUN_ONLY_KEYS`), and the scenario's ``domain``, which the neural solver
uses only to evaluate fields on a grid after training.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from mfg.distributions import Distribution, Samples
from mfg.scenario import Scenario

#: solver settings a resumed run may change: run length, reporting, evaluation, file names
RUN_ONLY_KEYS = ("max_iter", "progress", "checkpoint", "checkpoint_every", "resume",
                 "eval_samples", "n_trajectories", "grid_n", "grid_nt")


def describe(dist: Distribution) -> str:
    """The distribution's dataclass repr (its parameters); for ``samples`` also a SHA-256 of the
    points, so that a data file rewritten in place is a different target."""
    text = repr(dist)
    if isinstance(dist, Samples):
        digest = hashlib.sha256(np.ascontiguousarray(dist.points).tobytes()).hexdigest()
        text += f" sha256={digest[:16]}"
    return text


def fingerprint(scenario: Scenario) -> dict[str, str]:
    """``{field: repr}``: dim, T, lambda, source, target, terminal, seed and every
    ``solver.<setting>`` but :data:`RUN_ONLY_KEYS` (``solver.device`` included: the random
    generators' states are per device, so a run moved to another device does not continue)."""
    found = {
        "dim": repr(scenario.dim),
        "T": repr(float(scenario.T)),
        "lambda": repr(float(scenario.lam)),
        "source": describe(scenario.source),
        "target": describe(scenario.target),
        "terminal": repr(scenario.terminal),
        "seed": repr(scenario.seed),
    }
    for key, value in dataclasses.asdict(scenario.solver).items():
        if key not in RUN_ONLY_KEYS:
            found[f"solver.{key}"] = repr(value)
    return found


def _around(text: str, start: int, width: int = 40) -> str:
    """``text`` from ``start`` - 8 on, at most ``width`` characters, with ``...`` where cut."""
    lo = max(0, start - 8)
    cut = text[lo: lo + width]
    return ("..." if lo > 0 else "") + cut + ("..." if lo + width < len(text) else "")


def differences(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """``field (checkpoint A, this run B)`` for each field whose value differs (or is missing on
    one side), in the order of ``current``; long values are shown around their first
    difference."""
    keys = list(current) + [k for k in stored if k not in current]
    out = []
    for key in keys:
        a, b = str(stored.get(key, "(absent)")), str(current.get(key, "(absent)"))
        if a == b:
            continue
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                     min(len(a), len(b)))
        out.append(f"{key} (checkpoint {_around(a, first)}, this run {_around(b, first)})")
    return out
