"""Settings of the grid solver (solvers/grid): ``solver: {kind: grid, ...}``."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from mfg.divergences import F_DIVERGENCES
from mfg.schema import FieldError, IntOrList, Loc, SolverSpec, broadcast


@dataclass(frozen=True)
class GridSolverConfig:
    """Tensor grid of ``n`` cells per axis and ``nt`` time steps, solved by ``method``:

    - ``bfm`` (back-and-forth on the static JKO step, the path reconstructed; terminal kinds
      fixed and f, the default for them): ``tol`` is the certified relative accuracy of the
      objective, the run stops when (upper − lower)/upper <= tol for a dual value (lower) and a
      feasible plan's cost (upper); ``max_iter`` bounds the ascent and, for fixed and KL up to
      128² when the ascent stalls, the entropic polish that takes over
      (solvers/grid/entropic.py) gets as many again. It starts from the same step solved on
      ``levels`` coarser grids (every axis halved, at least 16 cells;
      None: as many as that allows, 0: none), whose bracket it then certifies from scratch;
      each coarse level runs the ascent alone, to ``tol`` or until it stalls, within
      ``max_iter`` iterations of its own.
    - ``douglas_rachford`` (the dynamic problem on a staggered grid; the only method for w1 and
      lipschitz_f, the certified dynamic reference for fixed and f): stopped when the KKT
      residual falls under ``tol`` or after ``max_iter`` iterations, with step ``gamma`` (None:
      the solver's default), started from the solution of the same problem on ``levels`` coarser
      grids (cells merged in pairs per axis, down to 16 cells and to cells no wider than the
      data's spread; None: all for the W1 kinds, none for fixed and f; 0: none).

    ``tol`` and ``max_iter`` left out of the scenario take the method's METHOD_DEFAULTS."""

    kind: str = "grid"
    n: tuple[int, ...] = (64,)
    nt: int = 32
    max_iter: int = 1000
    tol: float = 1e-3
    gamma: float | None = None
    progress: bool = True
    method: str = "bfm"
    #: coarse-to-fine warm start (Douglas–Rachford: solvers/grid/multilevel.py; back-and-forth:
    #: back_and_forth.coarse_potential)
    levels: int | None = None


F_NAMES = tuple(F_DIVERGENCES)

#: ``method: auto`` (the default): the fast method where it applies, else Douglas–Rachford
BFM_TERMINALS = ("fixed", "f")
#: (tol, max_iter) of each method when the scenario leaves them out: the two tolerances do not
#: measure the same thing (a certified relative gap of the objective; KKT residuals)
METHOD_DEFAULTS = {"bfm": (1e-3, 1000), "douglas_rachford": (1e-6, 5000)}

#: Peak memory of a grid run (``solve``: discretization, iterations, certificate, dataset) in
#: float64 arrays of N cells (N = Π n), calibrated with tracemalloc (solve with 3 iterations):
#: Douglas–Rachford keeps three packed iterates of ~2(1 + d)·nt·N values and the loop's
#: temporaries; measured 31–33 (1-D), 41–43 (2-D), 51–54 (3-D) times nt·N over the terminal
#: kinds, so 24 + 10·d per nt·N. Back-and-forth (static, plus the path at nt + 1 times): 2-D
#: 176·N at nt ≤ 8 and 14.5·nt·N at nt = 32, 3-D 291·N at nt = 16, 1-D up to 1021·N at nt = 64,
#: so 200 + 16·nt per N. BASE_MIB covers fixed costs (1-D back-and-forth: ~10 MiB at any N;
#: back-and-forth adds the path's push-forward plans, at most 2^22 entries of 24 bytes:
#: solvers/grid/reconstruction.py MAX_PLAN_ENTRIES).
MEMORY_PER_CELL_STEP = {"douglas_rachford": (0.0, 24.0, 10.0), "bfm": (200.0, 16.0, 0.0)}
BASE_MIB = {"douglas_rachford": 16.0, "bfm": 16.0 + 96.0}


def estimate_memory(n: tuple[int, ...], nt: int, method: str) -> float:
    """Bytes a grid run of ``n`` cells and ``nt`` time steps needs at its peak (see
    MEMORY_PER_CELL_STEP): 8·N·(a + nt·(b + c·d)) + BASE_MIB[method]."""
    a, b, c = MEMORY_PER_CELL_STEP[method]
    cells = math.prod(n)
    return 8.0 * cells * (a + nt * (b + c * len(n))) + BASE_MIB[method] * 2**20


def available_memory() -> float | None:
    """Bytes the system can give without swapping: MemAvailable of /proc/meminfo (Linux), else
    free physical pages (os.sysconf), else None (unknown: nothing is refused)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(loc: Loc, n: tuple[int, ...], nt: int, method: str) -> None:
    """Refuse at load time a grid whose run cannot fit in the memory available now (a grid too
    large failed with MemoryError after allocating, exit 1)."""
    need = estimate_memory(n, nt, method)
    have = available_memory()
    if have is not None and need > have:
        cells = " x ".join(str(k) for k in n)
        raise FieldError(loc + ("n",), f"a {cells} grid with nt = {nt} needs about "
                         f"{need / 2**30:.3g} GiB ({method}), more than the "
                         f"{have / 2**30:.3g} GiB available; reduce solver.n or solver.nt")


class GridSolverSpec(SolverSpec):
    kind: Literal["grid"]
    n: IntOrList = GridSolverConfig.n[0]
    nt: int = Field(default=GridSolverConfig.nt, ge=2)
    #: None: the method's default (METHOD_DEFAULTS)
    max_iter: int | None = Field(default=None, ge=1)
    tol: float | None = Field(default=None, gt=0)
    gamma: float | None = Field(default=GridSolverConfig.gamma, gt=0)
    progress: bool = GridSolverConfig.progress
    method: Literal["auto", "douglas_rachford", "bfm"] = "auto"
    levels: int | None = Field(default=GridSolverConfig.levels, ge=0)

    NEEDS_DOMAIN: ClassVar[bool] = True
    #: Fewest cells per axis.
    MIN_CELLS: ClassVar[int] = 2
    #: Largest dimension of a tensor grid.
    MAX_DIM: ClassVar[int] = 3

    #: terminal kinds the grid solver implements, with the f-divergences it has a prox for
    TERMINALS: ClassVar[dict[str, tuple[str, ...] | None]] = {
        "fixed": None,
        "f": F_NAMES,
        "w1": None,
        "lipschitz_f": F_NAMES,
    }
    #: terminal kinds that need a target with a density (elsewhere D_f(ρ_T‖π) is +∞)
    NEED_TARGET_DENSITY: ClassVar[tuple[str, ...]] = ("fixed", "f")

    def for_problem(self, terminal: Any) -> GridSolverSpec:
        """``method: auto`` resolved (bfm for the terminal kinds it solves, else
        douglas_rachford), then ``tol`` and ``max_iter`` left out given that method's defaults."""
        method = self.method
        if method == "auto":
            method = "bfm" if terminal.kind in BFM_TERMINALS else "douglas_rachford"
        tol, max_iter = METHOD_DEFAULTS[method]
        return self.model_copy(update={
            "method": method,
            "tol": tol if self.tol is None else self.tol,
            "max_iter": max_iter if self.max_iter is None else self.max_iter,
        })

    def check_problem(self, source: Any, target: Any, terminal: Any) -> None:
        """The source needs a density; the target too for ``fixed`` and ``f`` (a target on a
        low-dimensional set makes D_f infinite: ``lipschitz_f`` or ``w1`` are well posed)."""
        if terminal.kind not in self.TERMINALS:
            raise FieldError(("terminal", "kind"), f"the grid solver does not implement "
                             f"{terminal.kind!r} (it has: {', '.join(self.TERMINALS)})")
        fs = self.TERMINALS[terminal.kind]
        if fs is not None and terminal.f not in fs:
            raise FieldError(("terminal", "f"), f"the grid solver has no proximal map for "
                             f"{terminal.f!r} (it has: {', '.join(fs)})")
        if self.method == "bfm" and terminal.kind not in BFM_TERMINALS:
            raise FieldError(("solver", "method"), f"method 'bfm' solves terminal kinds fixed "
                             f"and f (got {terminal.kind!r}); use douglas_rachford")
        if not source.has_density:
            raise FieldError(("source", "kind"), "the grid solver needs a source with a density "
                             f"(got {type(source).__name__})")
        if terminal.kind in self.NEED_TARGET_DENSITY and not target.has_density:
            raise FieldError(
                ("target", "kind"),
                f"terminal kind {terminal.kind!r} needs a target with a density "
                f"(got {type(target).__name__}, which has none); use terminal "
                "{kind: lipschitz_f, L: ...} or {kind: w1, L: ...}",
            )

    def build(self, loc: Loc, dim: int) -> GridSolverConfig:
        """``n`` broadcast to one cell count per dimension, each >= MIN_CELLS; dim <= MAX_DIM.
        Called on the spec :meth:`for_problem` returned (method, tol, max_iter resolved)."""
        if self.method == "auto" or self.tol is None or self.max_iter is None:
            raise ValueError("GridSolverSpec.build: call for_problem(terminal) first")
        if dim > self.MAX_DIM:
            raise FieldError(loc + ("kind",), f"the grid solver runs in 1-D to {self.MAX_DIM}-D "
                             f"(dim = {dim})")
        n = broadcast(self.n, dim, loc + ("n",))
        if min(n) < self.MIN_CELLS:
            raise FieldError(loc + ("n",), f"must be >= {self.MIN_CELLS} (got {self.n})")
        check_memory(loc, tuple(n), self.nt, self.method)
        return GridSolverConfig(
            kind=self.kind,
            n=tuple(n),
            nt=self.nt,
            max_iter=self.max_iter,
            tol=self.tol,
            gamma=self.gamma,
            progress=self.progress,
            method=self.method,
            levels=self.levels,
        )
