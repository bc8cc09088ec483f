"""Grid solver benchmark: cost per iteration against one DCT, iterations to tolerance, and the
whole solve against POT's exact network simplex on the same fixed-endpoint problem.

    python bench/grid.py [--sizes 32,64,128] [--nt 16] [--tol 1e-5] [--threads 1]

For each n: the shared scenario ``mixture_fixed_2d`` (two-component mixture → Gaussian, fixed
endpoint) on an n × n grid with nt time steps. Printed ratios are measured in the same run:
seconds per iteration ÷ seconds of one ``scipy.fft.dctn`` of the (nt, n, n) space-time array,
and total solve time ÷ time of ``ot.emd2`` between the two discrete densities (n² atoms each),
with the agreement (2T/λ)·KE vs W2² alongside.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,64,128")
    parser.add_argument("--nt", type=int, default=16)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iter", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "mixture_fixed_2d.yaml"))
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import scipy.fft

    with contextlib.redirect_stdout(io.StringIO()):
        import ot

    from mfg.grid import Grid
    from mfg.scenario import load_scenario
    from solvers.grid.douglas_rachford import douglas_rachford
    from solvers.grid.solver import DEFAULT_GAMMA, RELAXATION, discretize

    print(f"grid benchmark: threads={args.threads} nt={args.nt} tol={args.tol:g} "
          f"gamma={DEFAULT_GAMMA} relaxation={RELAXATION}")
    header = (f"{'n':>5} {'iters':>6} {'conv':>5} {'s/iter':>9} {'s/dctn':>9} {'iter/dctn':>9} "
              f"{'solve s':>8} {'emd2 s':>8} {'solve/emd2':>10} {'2T/λ·KE':>9} {'W2²':>9}")
    print(header)
    for n in (int(s) for s in args.sizes.split(",")):
        sc = load_scenario(args.scenario, [f"solver.n={n}", f"solver.nt={args.nt}",
                                           "solver.progress=false"])
        problem = discretize(sc)
        x = np.random.default_rng(0).standard_normal((args.nt, n, n))
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            scipy.fft.dctn(x, type=2, norm="ortho")
        t_dct = (time.perf_counter() - t0) / reps

        t0 = time.perf_counter()
        state = douglas_rachford(problem, gamma=DEFAULT_GAMMA, max_iter=args.max_iter,
                                 tol=args.tol, relaxation=RELAXATION)
        t_solve = time.perf_counter() - t0
        ke = state.history["kinetic_energy"][-1]

        grid = Grid(sc.domain.bounds, (n, n))
        pts = grid.mesh().reshape(-1, 2)
        a = problem.rho0.ravel() * grid.cell_volume
        b = problem.rho1.ravel() * grid.cell_volume
        t0 = time.perf_counter()
        w2_sq = ot.emd2(a / a.sum(), b / b.sum(), ot.dist(pts, pts), numItermax=10**8)
        t_emd = time.perf_counter() - t0
        per_iter = t_solve / state.iterations
        print(f"{n:>5} {state.iterations:>6} {str(state.converged):>5} {per_iter:>9.2e} "
              f"{t_dct:>9.2e} {per_iter / t_dct:>9.1f} {t_solve:>8.1f} {t_emd:>8.1f} "
              f"{t_solve / t_emd:>10.2f} {2 * sc.T / sc.lam * ke:>9.5f} {w2_sq:>9.5f}",
              flush=True)


if __name__ == "__main__":
    main()
