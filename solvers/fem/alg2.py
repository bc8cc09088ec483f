"""ALG2 (Benamou–Carlier 2015) on a P1 space-time mesh with dolfinx and PETSc, under MPI.

With φ the space-time potential (U = −φ, DESIGN.md §1), Λφ = (∇φ, ∂tφ) and the convex set
K = {(b, a) : a + |b|²/(2λ) ≤ 0}, dynamic transport with terminal cost G is the saddle point of

    L_r(φ, q, c; σ, ρ_T) = ∫ρ0 φ(0) + ∫∫ ι_K(q) + ∫ G*(−c) + ⟨σ, Λφ − q⟩ − ⟨ρ_T, φ(T) − c⟩
                            + r/2 ‖Λφ − q‖² + r/2 ‖φ(T) − c‖²_{Ω×{T}},

whose multipliers are σ = (m, ρ) (momentum and density on the space-time cells) and the
terminal density ρ_T. The terminal trace c ≈ φ(T) is split like q ≈ Λφ so that every
non-linearity is pointwise; the linear step then has a Robin term at t = T and no null space.
One iteration (q and c first, then φ, then the multipliers, so that the multipliers satisfy the
discrete continuity equation exactly after every iteration):

1. per cell, z = Λφ + σ/r, q = z − p with p = prox of the kinetic action λ|m|²/(2ρ) at z
   (Moreau: q is the projection of z onto K — the cubic per point of prox_kinetic);
   per terminal node, ρ̃ = prox_{r g}(ρ_T − rφ(T)) with g(s) = π f(s/π) (``fixed``: ρ̃ = π),
   c = φ(T) + (ρ̃ − ρ_T)/r;
2. the space-time Poisson problem with a Robin condition at T, for all P1 ψ:
       (Λφ, Λψ) + (φ(T), ψ(T))_T = (q − σ/r, Λψ) + (c + ρ_T/r, ψ(T))_T − (ρ0/r, ψ(0))_0,
   solved by CG + AMG (operator assembled once);
3. σ ← σ + r(Λφ − q),  ρ_T ← ρ_T − r(φ(T) − c).

Steps 2 and 3 use the over-relaxed q̂ = αq + (1 − α)Λφ_old (and ĉ likewise) with α =
``relaxation`` ∈ (0, 2) (Eckstein–Bertsekas; α = 1 is plain ALG2); the identities below hold for
any α.

Discretization: φ in P1; q, σ in DG0 (Λφ is constant per simplex); the boundary terms at t = 0
and t = T use the lumped (vertex-rule) P1 mass, so ρ0, ρ_T, π and c are nodal values on those
faces and the terminal prox is pointwise per node. With step 2 as written, ψ = 1 gives
Σ w_T ρ_T = Σ w_0 ρ0 and the time hats give equal mass in every slab (to the linear solver's
tolerance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from solvers.fem.mesh import SpaceTimeMesh
from solvers.grid.proximal import prox_kinetic

Array = np.ndarray

#: residual-balancing threshold of the adaptive augmentation parameter r
BALANCE = 10.0


@dataclass
class Gathered:
    """Fields of the final iterate on rank 0, in the numbering of the SpaceTimeMesh."""

    phi: Array  # (n_vertices,) P1 values of φ
    sigma: Array  # (n_cells, d + 1): (m_1, ..., m_d, ρ) after the multiplier update
    grad_phi: Array  # (n_cells, d + 1): Λφ = (∇φ, ∂tφ)
    rho_T: Array  # (n_vertices,) terminal density (nonzero only on the t = T level)


@dataclass
class Alg2Outcome:
    converged: bool
    diverged: bool
    iterations: int
    history: dict[str, list[float]] = field(default_factory=dict)
    fields: Gathered | None = None  # rank 0 only
    ksp_iterations: int = 0
    seconds_per_iteration: float = 0.0
    seconds_per_solve: float = 0.0


class SpaceTimeProblem:
    """The dolfinx/PETSc objects of one space-time mesh, assembled once.

    ``mesh`` is the global SpaceTimeMesh on rank 0 (None elsewhere): rank 0 hands all cells to
    dolfinx, which partitions them over ``comm``.
    """

    def __init__(self, comm, mesh: SpaceTimeMesh | None, pc: str = "gamg",
                 ksp_rtol: float = 1e-11) -> None:
        import basix.ufl
        import dolfinx.fem.petsc
        import ufl
        from dolfinx import fem
        from dolfinx import mesh as dmesh
        from petsc4py import PETSc

        self.comm = comm
        gdim = comm.bcast(mesh.points.shape[1] if comm.rank == 0 else None, root=0)
        T = comm.bcast(float(mesh.times[-1]) if comm.rank == 0 else None, root=0)
        self.d = gdim - 1  # spatial dimension; time is the last coordinate
        cell_name = {2: "triangle", 3: "tetrahedron"}[gdim]
        domain = ufl.Mesh(basix.ufl.element("Lagrange", cell_name, 1, shape=(gdim,)))
        if comm.rank == 0:
            cells, points = mesh.cells, mesh.points
        else:
            cells = np.empty((0, gdim + 1), dtype=np.int64)
            points = np.empty((0, gdim), dtype=np.float64)
        self.msh = msh = dmesh.create_mesh(comm, cells, domain, points)
        tdim = gdim
        msh.topology.create_connectivity(tdim - 1, tdim)
        tol = 1e-10 * max(T, 1.0)
        bottom = dmesh.locate_entities_boundary(msh, tdim - 1, lambda x: np.abs(x[gdim - 1]) < tol)
        top = dmesh.locate_entities_boundary(msh, tdim - 1, lambda x: np.abs(x[gdim - 1] - T) < tol)
        facets = np.concatenate([bottom, top]).astype(np.int32)
        values = np.concatenate([np.full(len(bottom), 1, np.int32),
                                 np.full(len(top), 2, np.int32)])
        order = np.argsort(facets)
        tags = dmesh.meshtags(msh, tdim - 1, facets[order], values[order])
        ds = ufl.Measure("ds", domain=msh, subdomain_data=tags)

        self.V = V = fem.functionspace(msh, ("Lagrange", 1))
        self.W = W = fem.functionspace(msh, ("DG", 0, (gdim,)))
        W0 = fem.functionspace(msh, ("DG", 0))
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        s = ufl.TrialFunction(W)
        # stiffness of the space-time Laplacian (+ the lumped Robin term below)
        self.A = dolfinx.fem.petsc.assemble_matrix(fem.form(ufl.inner(ufl.grad(u), ufl.grad(v))
                                                            * ufl.dx))
        self.A.assemble()
        # B[i, j] = ∫ s_j · Λψ_i: B σ is the weak divergence, Bᵀφ / |cell| the cell gradient
        self.B = dolfinx.fem.petsc.assemble_matrix(fem.form(ufl.inner(s, ufl.grad(v)) * ufl.dx))
        self.B.assemble()
        self.n_own = V.dofmap.index_map.size_local
        self.w0 = self._owned_vector(fem.form(v * ds(1)))
        self.wT = self._owned_vector(fem.form(v * ds(2)))
        w_cell = ufl.TestFunction(W0)
        vol_vec = dolfinx.fem.petsc.assemble_vector(fem.form(w_cell * ufl.dx))
        vol_vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        self.n_cells = W.dofmap.index_map.size_local
        self.vol = vol_vec.array[: self.n_cells].copy()
        vol_vec.destroy()
        diag = self.A.getDiagonal()
        diag.array[:] += self.wT  # lumped (φ(T), ψ(T)): the Robin term
        self.A.setDiagonal(diag)
        diag.destroy()

        self.ksp = ksp = PETSc.KSP().create(comm)
        ksp.setOperators(self.A)
        ksp.setType("cg")
        try:
            ksp.getPC().setType(pc)
            if pc == "hypre":
                ksp.getPC().setHYPREType("boomeramg")
        except PETSc.Error:
            from mfg.scenario import ScenarioError

            raise ScenarioError(f"solver.pc: this PETSc build has no {pc!r} preconditioner "
                                "(use gamg)") from None
        ksp.setTolerances(rtol=ksp_rtol, atol=1e-300, max_it=10_000)
        ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
        ksp.setInitialGuessNonzero(True)
        ksp.setFromOptions()

        # vectors: φ (P1, owned + ghosts), the right-hand side, cell fields in W layout
        self.phi = fem.Function(V)
        self.b = self.A.createVecLeft()
        self.cell_vec = self.B.createVecRight()
        self._index_maps()

    def _owned_vector(self, form) -> Array:
        """Owned entries of an assembled P1 vector (ghost contributions summed in)."""
        import dolfinx.fem.petsc
        from petsc4py import PETSc

        vec = dolfinx.fem.petsc.assemble_vector(form)
        vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        out = vec.array[: self.n_own].copy()
        vec.destroy()
        return out

    def _index_maps(self) -> None:
        """Original (SpaceTimeMesh) index of every owned P1 dof and owned cell; coordinates."""
        msh, V, W = self.msh, self.V, self.W
        geom = msh.geometry.dofmaps[0]
        dofs = V.dofmap.list
        orig_nodes = msh.geometry.input_global_indices
        n_local = V.dofmap.index_map.size_local + V.dofmap.index_map.num_ghosts
        dof_orig = np.full(n_local, -1, dtype=np.int64)
        dof_orig[dofs.ravel()] = np.asarray(orig_nodes)[geom.ravel()]
        self.dof_orig = dof_orig[: self.n_own]
        x = np.zeros((n_local, msh.geometry.dim))
        x[dofs.ravel()] = msh.geometry.x[geom.ravel(), : msh.geometry.dim]
        self.dof_x = x[: self.n_own]
        cell_dofs = W.dofmap.list[:, 0]
        tdim = msh.topology.dim
        n_own_cells = msh.topology.index_map(tdim).size_local
        orig_cells = np.asarray(msh.topology.original_cell_index)[:n_own_cells]
        cell_orig = np.full(self.n_cells, -1, dtype=np.int64)
        cell_orig[cell_dofs[:n_own_cells]] = orig_cells
        self.cell_orig = cell_orig

    # ------------------------------------------------------------------------------------------

    def cell_gradient(self) -> Array:
        """Λφ per owned cell, shape (n_cells, d + 1) (columns ∇φ then ∂tφ)."""
        self.phi.x.scatter_forward()
        self.B.multTranspose(self.phi.x.petsc_vec, self.cell_vec)
        return self.cell_vec.array.reshape(self.n_cells, -1) / self.vol[:, None]

    def solve_poisson(self, Q: Array, nodal: Array) -> int:
        """φ ← solution of (Λφ, Λψ) + (φ(T), ψ(T)) = (Q, Λψ) + Σ_i nodal_i ψ_i for owned P1
        dofs (``nodal`` holds the lumped boundary terms); returns the CG iterations."""
        self.cell_vec.array[:] = Q.ravel()
        self.B.mult(self.cell_vec, self.b)
        self.b.array[:] += nodal
        self.ksp.solve(self.b, self.phi.x.petsc_vec)
        self.phi.x.scatter_forward()
        return self.ksp.getIterationNumber()

    def gather(self, owned_orig: Array, values: Array, n_total: int) -> Array | None:
        """Rank 0: the global array with ``values`` placed at ``owned_orig`` from every rank."""
        parts = self.comm.gather((owned_orig, values), root=0)
        if self.comm.rank != 0:
            return None
        out = np.zeros((n_total,) + values.shape[1:])
        for idx, val in parts:
            out[idx] = val
        return out

    def destroy(self) -> None:
        for obj in (self.ksp, self.A, self.B, self.b, self.cell_vec):
            obj.destroy()


def run_alg2(
    problem: SpaceTimeProblem,
    lam: float,
    rho0: Array,
    terminal_prox: Callable[[Array, float], Array],
    r: float,
    tol: float,
    max_iter: int,
    n_vertices: int,
    n_cells: int,
    relaxation: float = 1.0,
    adapt_every: int = 0,
    progress: bool = False,
) -> Alg2Outcome:
    """Iterate ALG2 (module doc) until both relative residuals are below ``tol``.

    ``rho0``: nodal source density on the owned P1 dofs (used where w0 > 0);
    ``terminal_prox(z, r)``: ρ̃ = prox_{r g}(z) on the owned terminal nodes (``fixed``: π).
    Residuals (relative, global over ranks):
        primal = ‖(Λφ − q, φ(T) − c)‖ / ‖(Λφ, φ(T))‖,
        dual   = r‖(q − q_old, c − c_old)‖ / ‖(σ, ρ_T)‖,
    norms weighted by cell volumes and by the lumped terminal mass. Every ``adapt_every``
    iterations (0: never) r is doubled when primal > BALANCE·dual and halved when
    dual > BALANCE·primal.
    """
    import time

    from mpi4py import MPI

    p = problem
    d = p.d
    vol, w0, wT = p.vol, p.w0, p.wT
    on_T = wT > 0
    sigma = np.zeros((p.n_cells, d + 1))
    q = np.zeros_like(sigma)
    rho_T = np.zeros(p.n_own)
    c = np.zeros(p.n_own)
    p.phi.x.array[:] = 0.0
    grad = p.cell_gradient()
    history: dict[str, list[float]] = {"primal_residual": [], "dual_residual": [],
                                       "ksp_iterations": [], "r": []}
    bar = None
    if progress and p.comm.rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=max_iter, desc="fem ALG2", leave=False)
    converged = diverged = False
    it = 0
    ksp_total = 0
    t_solve = 0.0
    t0 = time.perf_counter()
    for it in range(1, max_iter + 1):  # noqa: B007
        # 1. pointwise: projection onto K (via the kinetic prox) and the terminal prox
        z = grad + sigma / r
        rho_p, m_p = prox_kinetic(z[:, d], [z[:, j] for j in range(d)], lam)
        q_old, c_old = q, c
        q = z - np.column_stack([*m_p, rho_p])
        phi_T = p.phi.x.array[: p.n_own]
        rho_new = np.zeros(p.n_own)
        rho_new[on_T] = terminal_prox(rho_T[on_T] - r * phi_T[on_T], r)
        c = np.where(on_T, phi_T + (rho_new - rho_T) / r, 0.0)
        # over-relaxation (Eckstein–Bertsekas): q̂ = αq + (1 − α)Λφ, the same for c
        q_hat = relaxation * q + (1.0 - relaxation) * grad
        c_hat = relaxation * c + (1.0 - relaxation) * np.where(on_T, phi_T, 0.0)
        # 2. the space-time Poisson solve
        nodal = wT * (c_hat + rho_T / r) - w0 * rho0 / r
        ts = time.perf_counter()
        ksp_it = p.solve_poisson(q_hat - sigma / r, nodal)
        t_solve += time.perf_counter() - ts
        ksp_total += ksp_it
        # 3. multipliers
        grad = p.cell_gradient()
        phi_T = p.phi.x.array[: p.n_own]
        sigma = sigma + r * (grad - q_hat)
        rho_T = rho_T - r * np.where(on_T, phi_T - c_hat, 0.0)
        # residuals
        sums = np.array([
            np.sum(vol[:, None] * (grad - q) ** 2) + np.sum(wT * (phi_T - c) ** 2),
            np.sum(vol[:, None] * grad**2) + np.sum(wT * phi_T**2),
            np.sum(vol[:, None] * (q - q_old) ** 2) + np.sum(wT * (c - c_old) ** 2),
            np.sum(vol[:, None] * sigma**2) + np.sum(wT * rho_T**2),
        ])
        sums = p.comm.allreduce(sums, op=MPI.SUM)
        primal = float(np.sqrt(sums[0] / max(sums[1], 1e-300)))
        dual = float(r * np.sqrt(sums[2] / max(sums[3], 1e-300)))
        history["primal_residual"].append(primal)
        history["dual_residual"].append(dual)
        history["ksp_iterations"].append(float(ksp_it))
        history["r"].append(r)
        if bar is not None:
            bar.update(1)
            if it % 10 == 0:
                bar.set_postfix(primal=f"{primal:.2e}", dual=f"{dual:.2e}")
        if primal < tol and dual < tol:
            converged = True
            break
        if not np.isfinite(primal + dual):
            diverged = True
            break
        if adapt_every and it % adapt_every == 0:
            # residual balancing (Boyd et al. 2011, §3.4.1): σ is the unscaled multiplier and
            # the operator does not depend on r, so changing r costs nothing
            if primal > BALANCE * dual:
                r *= 2.0
            elif dual > BALANCE * primal:
                r /= 2.0
    elapsed = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    phi_all = p.gather(p.dof_orig, p.phi.x.array[: p.n_own].copy(), n_vertices)
    sigma_all = p.gather(p.cell_orig, sigma, n_cells)
    grad_all = p.gather(p.cell_orig, grad, n_cells)
    rho_T_all = p.gather(p.dof_orig, rho_T, n_vertices)
    fields = None
    if p.comm.rank == 0:
        fields = Gathered(phi=phi_all, sigma=sigma_all, grad_phi=grad_all, rho_T=rho_T_all)
    return Alg2Outcome(
        converged=converged,
        diverged=diverged,
        iterations=it,
        history=history,
        fields=fields,
        ksp_iterations=ksp_total,
        seconds_per_iteration=elapsed / max(it, 1),
        seconds_per_solve=t_solve / max(it, 1),
    )
