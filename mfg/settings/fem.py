"""Settings of the finite-element solver (solvers/fem): ``solver: {kind: fem, ...}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from mfg.divergences import F_DIVERGENCES
from mfg.schema import FieldError, Loc, SolverSpec


@dataclass(frozen=True)
class FemSolverConfig:
    """ALG2 (Benamou–Carlier) on a space-time mesh of Ω × [0, T].

    ``h``: spatial mesh size; ``nt``: time slabs; ``r``: augmentation parameter of the augmented
    Lagrangian, ``relaxation`` α ∈ (0, 2) its over-relaxation; ``r`` is rebalanced every
    ``adapt_every`` iterations (0: fixed r); stop when the relative primal and dual residuals
    are both below ``tol`` or after ``max_iter`` iterations. The space-time Poisson system is
    solved by PETSc CG preconditioned by ``pc`` (gamg or hypre BoomerAMG) to relative tolerance
    ``ksp_rtol``. Results are also sampled on a tensor grid of ``grid_n`` cells per axis over
    the domain's bounding box.
    """

    kind: str = "fem"
    h: float = 0.1
    nt: int = 16
    r: float = 0.1
    relaxation: float = 1.6
    adapt_every: int = 20
    max_iter: int = 3000
    tol: float = 1e-4
    ksp_rtol: float = 1e-11
    pc: str = "gamg"
    grid_n: int = 64
    progress: bool = True


class FemSolverSpec(SolverSpec):
    kind: Literal["fem"]
    h: float = Field(default=FemSolverConfig.h, gt=0)
    nt: int = Field(default=FemSolverConfig.nt, ge=2)
    r: float = Field(default=FemSolverConfig.r, gt=0)
    relaxation: float = Field(default=FemSolverConfig.relaxation, gt=0, lt=2)
    adapt_every: int = Field(default=FemSolverConfig.adapt_every, ge=0)
    max_iter: int = Field(default=FemSolverConfig.max_iter, ge=1)
    tol: float = Field(default=FemSolverConfig.tol, gt=0)
    ksp_rtol: float = Field(default=FemSolverConfig.ksp_rtol, gt=0, lt=1)
    pc: Literal["gamg", "hypre"] = "gamg"
    grid_n: int = Field(default=FemSolverConfig.grid_n, ge=2)
    progress: bool = FemSolverConfig.progress

    NEEDS_DOMAIN: ClassVar[bool] = True
    DOMAIN_KINDS: ClassVar[tuple[str, ...]] = ("box", "disk", "polygon")
    #: spatial dimensions: the space-time mesh is (dim + 1)-D and dolfinx meshes are <= 3-D
    MAX_DIM: ClassVar[int] = 2
    #: terminal kinds ALG2 implements here, with the f-divergences (all have a prox in mfg/)
    TERMINALS: ClassVar[dict[str, tuple[str, ...] | None]] = {
        "fixed": None,
        "f": tuple(F_DIVERGENCES),
    }

    def check_problem(self, source: Any, target: Any, terminal: Any) -> None:
        """Terminal ``fixed`` or ``f``; source and target with densities."""
        if terminal.kind not in self.TERMINALS:
            raise FieldError(("terminal", "kind"), f"the fem solver does not implement "
                             f"{terminal.kind!r} (it has: {', '.join(self.TERMINALS)})")
        for role, dist in (("source", source), ("target", target)):
            if not dist.has_density:
                raise FieldError((role, "kind"), f"the fem solver needs a {role} with a density "
                                 f"(got {type(dist).__name__})")

    def build(self, loc: Loc, dim: int) -> FemSolverConfig:
        if dim > self.MAX_DIM:
            raise FieldError(loc + ("kind",), f"the fem solver runs in 1-D and 2-D (dim = {dim})")
        return FemSolverConfig(
            kind=self.kind, h=self.h, nt=self.nt, r=self.r, relaxation=self.relaxation,
            adapt_every=self.adapt_every, max_iter=self.max_iter, tol=self.tol,
            ksp_rtol=self.ksp_rtol, pc=self.pc, grid_n=self.grid_n,
            progress=self.progress,
        )
