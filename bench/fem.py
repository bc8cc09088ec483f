"""fem solver benchmark: cost of one ALG2 iteration against one AMG-preconditioned solve of the
same space-time Poisson system, iterations to tolerance under mesh refinement (next to the grid
solver's), the observed order of the kinetic-energy error against POT, and 1 vs 2 MPI ranks.

    python bench/fem.py [--hs 0.2,0.1,0.05] [--tol 1e-4] [--max-iter 6000] [--mpi-h 0.25]

1. Refinement (1-D, ``fem_mixture_fixed_1d``: fixed terminal, exact W2 by ``ot.emd2``): at each
   h the number of slabs is scaled with 1/h (nt = 1.6/h, the space-time aspect ratio kept), and
   the row holds ALG2 iterations to ``tol``, seconds per iteration ÷ seconds of one cold CG+AMG
   solve of the same Poisson operator (zero initial guess, the solver's default rtol, timed in
   the same run), |(2T/λ)·KE − W2²|/W2² and its observed order log2(e(h)/e(h/2)); next to it
   the grid solver's iterations to the same tolerance on the same box with dx ≈ h and same nt.
2. MPI: ``fem_disk_kl`` (gmsh disk) at h = ``--mpi-h`` solved by ``cli.py solve`` with 1 and 2
   ranks (``mpiexec`` from the venv): wall time ratio and max |Δρ| between the two results.

Timings are ratios measured in the same run (the machine may be loaded: say so when quoting).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cold_solve_seconds(st, repeats: int = 3) -> float:
    """Seconds of one CG + AMG solve (zero initial guess) of the ALG2 Poisson operator on ``st``
    with a fixed right-hand side (the best of ``repeats``)."""
    import numpy as np
    from mpi4py import MPI

    from solvers.fem.alg2 import SpaceTimeProblem

    p = SpaceTimeProblem(MPI.COMM_WORLD, st)
    rng = np.random.default_rng(0)
    Q = rng.standard_normal((p.n_cells, p.d + 1))
    nodal = rng.standard_normal(p.n_own) * p.wT
    best = math.inf
    for _ in range(repeats):
        p.phi.x.array[:] = 0.0
        t0 = time.perf_counter()
        p.solve_poisson(Q, nodal)
        best = min(best, time.perf_counter() - t0)
    p.destroy()
    return best


def refinement(hs: list[float], tol: float, max_iter: int) -> None:
    import ot

    from mfg.scenario import load_scenario
    from solvers.fem import solve as fem_solve
    from solvers.fem.mesh import extrude, space_mesh
    from solvers.fem.solver import domain_shape
    from solvers.grid import solve as grid_solve

    path = ROOT / "scenarios" / "fem_mixture_fixed_1d.yaml"
    print("1. refinement, fem_mixture_fixed_1d (fixed terminal, 1-D)")
    print(f"{'h':>7} {'nt':>4} {'fem it':>7} {'it/solve':>9} {'KE err':>10} {'order':>6} "
          f"{'grid n':>7} {'grid it':>8}")
    prev = None
    for h in hs:
        nt = max(4, round(1.6 / h))
        sc = load_scenario(path, [f"solver.h={h}", f"solver.nt={nt}", f"solver.tol={tol}",
                                  f"solver.max_iter={max_iter}", "solver.progress=false"])
        res = fem_solve(sc)
        x, w = res.mesh["points"], res.mesh["weights"]
        a, b = w * res.mesh["source"], w * res.mesh["target"]
        w2sq = ot.emd2(a / a.sum(), b / b.sum(), ot.dist(x, x))
        err = abs(2 * sc.T / sc.lam * res.metrics["kinetic_energy"] - w2sq) / w2sq
        order = "" if prev is None else f"{math.log2(prev / err):6.2f}"
        prev = err
        st = extrude(space_mesh(domain_shape(sc.domain), h), sc.T, nt)
        ratio = res.metrics["seconds_per_iteration"] / cold_solve_seconds(st)
        lo, hi = sc.domain.bounds[0]
        n = round((hi - lo) / h)
        gs = load_scenario(path, ["solver={kind: grid}", f"solver.n={n}", f"solver.nt={nt}",
                                  f"solver.tol={tol}", f"solver.max_iter={max_iter}",
                                  "solver.progress=false"])
        g = grid_solve(gs)
        fem_it = f"{int(res.metrics['iterations'])}{'' if res.status == 'converged' else '+'}"
        grid_it = f"{int(g.metrics['iterations'])}{'' if g.status == 'converged' else '+'}"
        print(f"{h:7.3f} {nt:4d} {fem_it:>7} {ratio:9.2f} {err:10.2e} {order:>6} {n:7d} "
              f"{grid_it:>8}", flush=True)
    print("   (+: stopped at max_iter; it/solve: seconds per ALG2 iteration ÷ one cold AMG solve)")


def mpi(h: float) -> None:
    import h5py
    import numpy as np

    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    print(f"2. MPI, fem_disk_kl at h = {h}")
    if mpiexec is None:
        print("   skipped: mpiexec not found next to the Python executable")
        return
    env = dict(os.environ, OMP_NUM_THREADS="1")
    scenario = str(ROOT / "scenarios" / "fem_disk_kl.yaml")
    walls, rhos = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            out = Path(tmp) / f"r{n}.h5"
            cmd = [mpiexec, "-n", str(n), sys.executable, str(ROOT / "cli.py"), "solve",
                   scenario, "--out", str(out), "--quiet", "--set", f"solver.h={h}"]
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            with h5py.File(out, "r") as f:
                walls.append(float(f.attrs["wall_time_s"]))
                rhos.append(f["mesh/rho"][()])
    diff = float(np.max(np.abs(rhos[0] - rhos[1])))
    print(f"   wall time 1 rank {walls[0]:.1f} s, 2 ranks {walls[1]:.1f} s, "
          f"ratio 1/2 = {walls[0] / walls[1]:.2f}; max |Δρ| = {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hs", default="0.2,0.1,0.05")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=6000)
    parser.add_argument("--mpi-h", type=float, default=0.25)
    parser.add_argument("--skip-mpi", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import dolfinx_solver  # noqa: F401  (orders MPI ahead of dolfinx)

    refinement([float(h) for h in args.hs.split(",")], args.tol, args.max_iter)
    if not args.skip_mpi:
        mpi(args.mpi_h)


if __name__ == "__main__":
    main()
