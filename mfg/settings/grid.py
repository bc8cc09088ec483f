"""Settings of the grid solver (solvers/grid): ``solver: {kind: grid, ...}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from mfg.divergences import F_DIVERGENCES
from mfg.schema import FieldError, IntOrList, Loc, SolverSpec, broadcast


@dataclass(frozen=True)
class GridSolverConfig:
    """Tensor grid of ``n`` cells per axis and ``nt`` time steps; Douglas–Rachford splitting
    stopped when the KKT residual falls under ``tol`` or after ``max_iter`` iterations, with step
    ``gamma`` (None: the solver's default)."""

    kind: str = "grid"
    n: tuple[int, ...] = (64,)
    nt: int = 32
    max_iter: int = 5000
    tol: float = 1e-6
    gamma: float | None = None
    progress: bool = True


F_NAMES = tuple(F_DIVERGENCES)


class GridSolverSpec(SolverSpec):
    kind: Literal["grid"]
    n: IntOrList = GridSolverConfig.n[0]
    nt: int = Field(default=GridSolverConfig.nt, ge=2)
    max_iter: int = Field(default=GridSolverConfig.max_iter, ge=1)
    tol: float = Field(default=GridSolverConfig.tol, gt=0)
    gamma: float | None = Field(default=GridSolverConfig.gamma, gt=0)
    progress: bool = GridSolverConfig.progress

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
        """``n`` broadcast to one cell count per dimension, each >= MIN_CELLS; dim <= MAX_DIM."""
        if dim > self.MAX_DIM:
            raise FieldError(loc + ("kind",), f"the grid solver runs in 1-D to {self.MAX_DIM}-D "
                             f"(dim = {dim})")
        n = broadcast(self.n, dim, loc + ("n",))
        if min(n) < self.MIN_CELLS:
            raise FieldError(loc + ("n",), f"must be >= {self.MIN_CELLS} (got {self.n})")
        return GridSolverConfig(
            kind=self.kind,
            n=tuple(n),
            nt=self.nt,
            max_iter=self.max_iter,
            tol=self.tol,
            gamma=self.gamma,
            progress=self.progress,
        )
