"""``solve(scenario) -> Result`` for the fem family: mesh, ALG2, post-process, package.

Runs under MPI (``mpiexec -n N python cli.py solve ...``): every rank builds the same numpy
meshes (deterministic), rank 0 hands the space-time cells to dolfinx, which partitions them; the
final fields are gathered on rank 0, which alone builds the full Result (other ranks return the
same status, history and metrics without grid or mesh; only rank 0 writes the file).

Outputs (rank 0), all in the numbering of :mod:`solvers.fem.mesh`:

* time-level densities ρ(t_k) as nodal values on the spatial mesh: ρ0 at k = 0, the terminal
  multiplier ρ_T at k = nt, and inside the mean of the two neighbouring slab densities, each slab
  density being the slab average of the cell multiplier σ_ρ on each spatial cell mapped to the
  nodes by the lumped P1 mass (which preserves Σ_i w_i ρ_i, the discrete mass);
* U = −φ at every vertex level;
* ``/grid``: those fields linearly interpolated at the cell centres of a tensor grid of
  ``grid_n`` cells per axis over the bounding box, NaN outside Ω;
* ``/mesh``: the spatial mesh (points, cells), lumped weights, times, and the nodal fields.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import xarray as xr

from mfg.divergences import FDivergence, get_f_divergence
from mfg.domains import Box, Shape
from mfg.provenance import git_revision, versions
from mfg.residuals import terminal_residual
from mfg.results import Result
from mfg.scenario import Domain, Scenario
from solvers.fem.alg2 import Alg2Outcome, Gathered, SpaceTimeProblem, run_alg2
from solvers.fem.mesh import SpaceMesh, SpaceTimeMesh, extrude, space_mesh
from solvers.grid.proximal import terminal_prox

Array = np.ndarray


def domain_shape(domain: Domain) -> Shape:
    """The mfg.domains geometry of a scenario domain (a Box for ``bounds`` only)."""
    return Box(tuple(tuple(b) for b in domain.bounds)) if domain.shape is None else domain.shape


def nodal_density(dist, space: SpaceMesh) -> Array:
    """Vertex values of ``dist``'s density restricted to the mesh and renormalized so that the
    discrete mass Σ_i w_i ρ_i is 1 (the load-time check guarantees Ω holds >= 99.9%)."""
    p = np.exp(dist.log_density(space.points))
    return p / np.sum(space.weights * p)


# ----------------------------------------------------------------------------------------------
# post-processing (rank 0, numpy only)


@dataclasses.dataclass
class NodalFields:
    """Spatial nodal fields per time level and slab densities."""

    rho: Array  # (nt + 1, nv)
    U: Array  # (nt + 1, nv)
    rho_slab: Array  # (nt, ne) slab-average density per spatial cell
    slab_mass: Array  # (nt,)
    level_mass: Array  # (nt + 1,)


def cell_to_nodes(values: Array, space: SpaceMesh) -> Array:
    """Lumped L2 projection of a per-cell field onto P1: ρ_i = Σ_{e∋i} ρ_e|e|/(d+1) / w_i
    (keeps Σ_i w_i ρ_i = Σ_e ρ_e |e|)."""
    share = values * space.volumes / (space.dim + 1)
    out = np.zeros(len(space.points))
    for j in range(space.dim + 1):
        np.add.at(out, space.cells[:, j], share)
    return out / space.weights


def nodal_fields(st: SpaceTimeMesh, f: Gathered, rho0: Array) -> NodalFields:
    space, nt, d = st.space, st.nt, st.space.dim
    nv, ne = len(space.points), len(space.cells)
    dt = st.times[1] - st.times[0]
    vol = st.volumes.reshape(nt, ne, st.pieces)
    sig_rho = f.sigma[:, d].reshape(nt, ne, st.pieces)
    rho_slab = np.sum(sig_rho * vol, axis=2) / (dt * space.volumes[None, :])
    slab_mass = np.sum(rho_slab * space.volumes[None, :], axis=1)
    slab_nodes = np.array([cell_to_nodes(rho_slab[k], space) for k in range(nt)])
    rho = np.empty((nt + 1, nv))
    rho[0] = rho0
    rho[1:nt] = 0.5 * (slab_nodes[:-1] + slab_nodes[1:])
    rho[nt] = f.rho_T[nt * nv:]
    U = -f.phi.reshape(nt + 1, nv)
    level_mass = rho @ space.weights
    return NodalFields(rho, U, rho_slab, slab_mass, level_mass)


def tensor_grid(bounds: tuple[tuple[float, float], ...], n: int) -> list[Array]:
    """Cell centres of n cells per axis over ``bounds``."""
    return [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in bounds]


def sample_on_grid(space: SpaceMesh, values: Array, axes: list[Array]) -> Array:
    """Linear interpolation of nodal ``values`` (..., nv) at the tensor grid ``axes``; NaN
    outside the mesh. Shape (..., n1[, n2])."""
    values = np.atleast_2d(values)
    if space.dim == 1:
        x = space.points[:, 0]
        out = np.array([np.interp(axes[0], x, v, left=np.nan, right=np.nan) for v in values])
    else:
        import matplotlib.tri as mtri

        tri = mtri.Triangulation(space.points[:, 0], space.points[:, 1], space.cells)
        finder = tri.get_trifinder()
        X, Y = np.meshgrid(axes[0], axes[1], indexing="ij")
        out = np.array([
            np.ma.filled(mtri.LinearTriInterpolator(tri, v, trifinder=finder)(X, Y), np.nan)
            for v in values
        ])
    return out


def metrics_of(st: SpaceTimeMesh, f: Gathered, nf: NodalFields, pi: Array, lam: float,
               div: FDivergence | None, outcome: Alg2Outcome) -> dict[str, float]:
    """Objective split, residuals of the optimality system, mass bookkeeping, costs."""
    d = st.space.dim
    vol = st.volumes
    rho = f.sigma[:, d]
    m2 = np.sum(f.sigma[:, :d] ** 2, axis=1)
    pos = rho > 0
    ke = float(np.sum(vol[pos] * lam * m2[pos] / (2.0 * rho[pos])))
    w = st.space.weights
    rho_T = np.maximum(nf.rho[-1], 0.0)
    if div is None:
        tc = 0.0
    else:
        tc = float(np.sum(w * pi * div.f(rho_T / pi)))
    a, b2 = f.grad_phi[:, d], np.sum(f.grad_phi[:, :d] ** 2, axis=1)
    rp = np.maximum(rho, 0.0) * vol
    hj_den = np.sum(rp * (np.abs(a) + b2 / (2 * lam)))
    metrics = {
        "kinetic_energy": ke,
        "terminal_cost": tc,
        "objective": ke + tc,
        "hj_residual": float(np.sum(rp * np.abs(a + b2 / (2 * lam))) / max(hj_den, 1e-300)),
        "mass_error": float(max(np.max(np.abs(nf.level_mass - 1.0)),
                                np.max(np.abs(nf.slab_mass - 1.0)))),
        "rho_min_relative": float(nf.rho_slab.min() / nf.rho_slab.max()),
        "primal_residual": outcome.history["primal_residual"][-1],
        "dual_residual": outcome.history["dual_residual"][-1],
        "iterations": float(outcome.iterations),
        "ksp_iterations_mean": outcome.ksp_iterations / max(outcome.iterations, 1),
        "seconds_per_iteration": outcome.seconds_per_iteration,
        "seconds_per_solve": outcome.seconds_per_solve,
        "n_vertices": float(len(st.points)),
        "n_cells": float(len(st.cells)),
        "h_max": st.space.h_max,
    }
    if div is not None:
        with np.errstate(divide="ignore"):
            g = div.df(rho_T / pi)
        metrics["terminal_residual"] = terminal_residual(nf.U[-1], g, rho_T * w, 1.0)
    return metrics


def to_dataset(st: SpaceTimeMesh, nf: NodalFields, rho0: Array, pi: Array,
               bounds: tuple[tuple[float, float], ...], n: int) -> xr.Dataset:
    axes = tensor_grid(bounds, n)
    space = tuple(f"x{j + 1}" for j in range(st.space.dim))
    data = {
        "rho": (("t", *space), sample_on_grid(st.space, nf.rho, axes),
                {"long_name": "density", "grid": "time nodes; NaN outside the domain"}),
        "U": (("t", *space), sample_on_grid(st.space, nf.U, axes),
              {"long_name": "value function"}),
        "source": (space, sample_on_grid(st.space, rho0, axes)[0]),
        "target": (space, sample_on_grid(st.space, pi, axes)[0]),
    }
    coords = {"t": st.times} | {name: ax for name, ax in zip(space, axes, strict=True)}
    return xr.Dataset(data, coords=coords)


def mesh_arrays(st: SpaceTimeMesh, nf: NodalFields, rho0: Array, pi: Array) -> dict[str, Array]:
    """The ``/mesh`` group: spatial ``points`` (nv, d), ``cells`` (ne, d+1), lumped ``weights``
    (nv,), ``times`` (nt+1,), nodal ``rho`` and ``U`` (nt+1, nv), ``rho_slab`` (nt, ne), and the
    nodal ``source`` and ``target`` (nv,) used by the solver (mass Σ w ρ = 1)."""
    return {
        "points": st.space.points,
        "cells": st.space.cells,
        "weights": st.space.weights,
        "times": st.times,
        "rho": nf.rho,
        "U": nf.U,
        "rho_slab": nf.rho_slab,
        "source": rho0,
        "target": pi,
    }


# ----------------------------------------------------------------------------------------------


def solve(scenario: Scenario) -> Result:
    """Solve ``scenario`` by ALG2 on a P1 space-time mesh (module doc)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    t0 = time.perf_counter()
    cfg = scenario.solver
    shape = domain_shape(scenario.domain)
    # gmsh runs on rank 0 only; every rank gets the same arrays
    st = extrude(space_mesh(shape, cfg.h), scenario.T, cfg.nt) if comm.rank == 0 else None
    st = comm.bcast(st, root=0)
    rho0 = nodal_density(scenario.source, st.space)
    pi = nodal_density(scenario.target, st.space)
    term = scenario.terminal
    div = get_f_divergence(term.f, term.alpha) if term.kind == "f" else None

    problem = SpaceTimeProblem(comm, st if comm.rank == 0 else None, cfg.pc, cfg.ksp_rtol)
    nv = len(st.space.points)
    space_index = problem.dof_orig % nv
    rho0_own = rho0[space_index]
    on_T = problem.wT > 0
    pi_T = pi[space_index[on_T]]
    if div is None:
        def prox(z: Array, r: float) -> Array:  # ``fixed``: ρ_T = π
            return pi_T
    else:
        prox_f = terminal_prox(div)

        def prox(z: Array, r: float) -> Array:
            return prox_f(z, pi_T, r)

    outcome = run_alg2(problem, scenario.lam, rho0_own, prox, cfg.r, cfg.tol, cfg.max_iter,
                       len(st.points), len(st.cells), relaxation=cfg.relaxation,
                       adapt_every=cfg.adapt_every, progress=cfg.progress)
    problem.destroy()
    settings = dataclasses.asdict(cfg) | {"mpi_ranks": comm.size, "mesher": (
        "structured" if isinstance(shape, Box) else "gmsh")}
    status = ("converged" if outcome.converged else
              "diverged" if outcome.diverged else "max_iter")
    history = {k: np.asarray(v) for k, v in outcome.history.items()}
    grid = mesh = None
    metrics: dict[str, float] = {}
    if comm.rank == 0:
        nf = nodal_fields(st, outcome.fields, rho0)
        metrics = metrics_of(st, outcome.fields, nf, pi, scenario.lam, div, outcome)
        metrics["mpi_ranks"] = float(comm.size)
        grid = to_dataset(st, nf, rho0, pi, scenario.domain.bounds, cfg.grid_n)
        mesh = mesh_arrays(st, nf, rho0, pi)
    metrics = comm.bcast(metrics, root=0)
    return Result(
        solver="fem",
        status=status,
        scenario_text=scenario.text,
        settings=settings,
        grid=grid,
        history=history,
        metrics=metrics,
        wall_time_s=time.perf_counter() - t0,
        device=f"cpu (MPI x{comm.size})",
        versions=versions(),
        git_revision=git_revision(),
        mesh=mesh or {},
    )
