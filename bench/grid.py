"""Grid solver benchmark: cost per iteration against one DCT, iterations to tolerance, the whole
solve against POT's exact network simplex, the W1 terminal cost, and 3-D memory and time.

    python bench/grid.py [--bfm-only] [--bfm-sizes 64,128,256,512] [--bfm-kl-sizes 256,512]
                         [--bfm-tol 1e-3] [--bfm-max-iter 1000]
                         [--sizes 32,64,128] [--nt 16] [--tol 1e-5] [--threads 1]
                         [--w1-sizes 32,64] [--sizes-3d 16,32] [--nt-3d 8]

1. Fixed endpoint: the shared scenario ``mixture_fixed_2d`` (two-component mixture → Gaussian)
   on n × n cells with nt time steps, cold and coarse-to-fine warm started (solver.levels; the
   iterations of the fine grid, then of each coarse level). Ratios measured in the same run:
   seconds per iteration ÷ seconds of one ``scipy.fft.dctn`` of the (nt, n, n) space-time
   array, and total solve time ÷ time of ``ot.emd2`` between the two discrete densities (n²
   atoms each), with (2T/λ)·KE vs W2².
2. W1 proximal: ``circle_lipschitz_2d`` (Gaussian → circle, lipschitz_f with KL), cold start
   and coarse-to-fine warm start (solver.levels) in turn: iterations (fine, and per coarse level),
   seconds, objective, seconds per iteration ÷ one DCT, max |∇φ*| against L.
0. Back-and-forth (solver.method: bfm; run first, alone with --bfm-only): for n² fixed
   mixtures, n² and n³ Gaussian KL cases, iterations until the certified relative gap is
   <= --bfm-tol (or --bfm-max-iter), seconds, seconds ÷ one dctn of the spatial grid, ÷ ot.emd2
   where the n² × n² cost matrix fits (n <= 128), both bounds ÷ emd2's value, peak traced
   memory, and the iterations and seconds to the gaps 1e-2, 5e-3, 2e-3, 1e-3. First, the
   defaults: ``solver: {kind: grid, n: N}`` on the fixed mixture (method auto = bfm, tol 1e-3),
   the whole ``solve`` (path reconstruction and residuals included) ÷ ``ot.emd2`` in the same
   run, and (2T/λ)·KE ÷ W2².
3. 3-D: the Gaussian KL case on n³ cells: seconds per iteration ÷ one DCT, and the peak memory
   of the iteration (tracemalloc, which sees numpy's buffers) against the size of one iterate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import tracemalloc
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
    parser.add_argument("--w1-sizes", default="32,64")
    parser.add_argument("--sizes-3d", default="16,32")
    parser.add_argument("--nt-3d", type=int, default=8)
    parser.add_argument("--iters-3d", type=int, default=30)
    parser.add_argument("--bfm-sizes", default="64,128,256,512",
                        help="2-D sizes of the back-and-forth section (fixed mixture)")
    parser.add_argument("--bfm-kl-sizes", default="256,512",
                        help="2-D sizes of the back-and-forth section (Gaussian KL)")
    parser.add_argument("--bfm-size-3d", type=int, default=32)
    parser.add_argument("--bfm-tol", type=float, default=1e-3)
    parser.add_argument("--bfm-max-iter", type=int, default=1000)
    parser.add_argument("--defaults-size", type=int, default=128,
                        help="n of the defaults case (solver: {kind: grid, n: N}); 0: skip")
    parser.add_argument("--bfm-only", action="store_true", help="only the back-and-forth section")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numba
    import numpy as np
    import scipy.fft

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))

    with contextlib.redirect_stdout(io.StringIO()):
        import ot

    from mfg.grid import Grid
    from mfg.scenario import load_scenario
    from solvers.grid.douglas_rachford import douglas_rachford
    from solvers.grid.solver import (
        ALL_LEVELS,
        DEFAULT_GAMMA,
        RELAXATION,
        discretize,
        lipschitz_constant,
    )

    bfm_section(args, np, scipy.fft, ot, load_scenario, discretize)
    if args.bfm_only:
        return
    print(f"grid benchmark: threads={args.threads} nt={args.nt} tol={args.tol:g} "
          f"gamma={DEFAULT_GAMMA} relaxation={RELAXATION}")
    header = (f"{'n':>5} {'levels':>6} {'iters':>6} {'coarse':>15} {'conv':>5} {'s/iter':>9} "
              f"{'s/dctn':>9} {'iter/dctn':>9} {'solve s':>8} {'emd2 s':>8} {'solve/emd2':>10} "
              f"{'2T/λ·KE':>9} {'W2²':>9}")
    print(header)

    def cold_and_warm(problem):
        """(state, seconds, "levels iters coarse conv" columns) of a cold and a warm-started
        (all coarse levels) Douglas–Rachford solve of ``problem``."""
        for levels in (0, ALL_LEVELS):
            t0 = time.perf_counter()
            state = douglas_rachford(problem, gamma=DEFAULT_GAMMA, max_iter=args.max_iter,
                                     tol=args.tol, relaxation=RELAXATION, levels=levels)
            t_solve = time.perf_counter() - t0
            coarse = "/".join(str(k) for k in state.coarse_iterations) or "-"
            yield state, t_solve, (f"{len(state.coarse_iterations):>6} {state.iterations:>6} "
                                   f"{coarse:>15} {str(state.converged):>5}")

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

        grid = Grid(sc.domain.bounds, (n, n))
        pts = grid.mesh().reshape(-1, 2)
        a = problem.rho0.ravel() * grid.cell_volume
        b = problem.rho1.ravel() * grid.cell_volume
        t0 = time.perf_counter()
        w2_sq = ot.emd2(a / a.sum(), b / b.sum(), ot.dist(pts, pts), numItermax=10**8)
        t_emd = time.perf_counter() - t0
        for state, t_solve, counts in cold_and_warm(problem):
            ke = state.history["kinetic_energy"][-1]
            per_iter = t_solve / state.iterations
            print(f"{n:>5} {counts} {per_iter:>9.2e} "
                  f"{t_dct:>9.2e} {per_iter / t_dct:>9.1f} {t_solve:>8.1f} {t_emd:>8.1f} "
                  f"{t_solve / t_emd:>10.2f} {2 * sc.T / sc.lam * ke:>9.5f} {w2_sq:>9.5f}",
                  flush=True)

    def dct_seconds(shape: tuple[int, ...]) -> float:
        x = np.random.default_rng(0).standard_normal(shape)
        t0 = time.perf_counter()
        for _ in range(10):
            scipy.fft.dctn(x, type=2, norm="ortho")
        return (time.perf_counter() - t0) / 10

    print("\nW1 proximal (circle_lipschitz_2d, lipschitz_f KL): cold start against the "
          "coarse-to-fine warm start (levels down to 16 cells per axis)")
    print(f"{'n':>5} {'levels':>6} {'iters':>6} {'coarse':>15} {'conv':>5} {'s/iter':>9} "
          f"{'iter/dctn':>9} {'solve s':>8} {'objective':>11} {'|∇φ*|':>7} {'L':>5}")
    circle = ROOT / "scenarios" / "circle_lipschitz_2d.yaml"
    for n in (int(s) for s in args.w1_sizes.split(",")):
        sc = load_scenario(circle, [f"solver.n={n}", f"solver.nt={args.nt}",
                                    "solver.progress=false"])
        problem = discretize(sc)
        t_dct = dct_seconds((args.nt, n, n))
        for state, t_solve, counts in cold_and_warm(problem):
            per_iter = t_solve / state.iterations
            lip = lipschitz_constant(state.potential, problem.grid.dx)
            print(f"{n:>5} {counts} {per_iter:>9.2e} "
                  f"{per_iter / t_dct:>9.1f} {t_solve:>8.1f} "
                  f"{state.history['objective'][-1]:>11.7f} {lip:>7.4f} {sc.terminal.L:>5.2f}",
                  flush=True)

    print(f"\n3-D (Gaussian KL, nt={args.nt_3d}, {args.iters_3d} iterations)")
    print(f"{'n':>5} {'cells':>9} {'s/iter':>9} {'iter/dctn':>9} {'peak MiB':>9} "
          f"{'iterate MiB':>11} {'peak/iterate':>12}")
    kl2d = ROOT / "scenarios" / "gaussian_kl_2d.yaml"
    for n in (int(s) for s in args.sizes_3d.split(",")):
        sc = load_scenario(kl2d, [
            "dim=3", "source.mean=[-1, 0.5, 0]", "source.std=[0.5, 0.6, 0.5]",
            "target.mean=[1, -0.5, 0]", "target.std=[0.7, 0.4, 0.5]",
            "domain.bounds=[[-4, 4], [-4, 4], [-3, 3]]", f"solver.n={n}",
            f"solver.nt={args.nt_3d}", "solver.progress=false",
        ])
        problem = discretize(sc)
        tracemalloc.start()
        t0 = time.perf_counter()
        state = douglas_rachford(problem, gamma=DEFAULT_GAMMA, max_iter=args.iters_3d, tol=0.0,
                                 relaxation=RELAXATION)
        per_iter = (time.perf_counter() - t0) / state.iterations
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        iterate = state.z.nbytes
        print(f"{n:>5} {args.nt_3d * n**3:>9} {per_iter:>9.2e} "
              f"{per_iter / dct_seconds((args.nt_3d, n, n, n)):>9.1f} {peak / 2**20:>9.1f} "
              f"{iterate / 2**20:>11.1f} {peak / iterate:>12.1f}", flush=True)


def bfm_section(args, np, fft, ot, load_scenario, discretize) -> None:
    """Back-and-forth (static JKO step, certified bounds; ``fixed`` and KL up to 128² hand over
    to the entropic polish when the ascent stalls, its iterations counted in ``iters`` and
    shown in ``polish``; from 256² warm-started from coarser grids as ``solve`` does, the
    iterations of each level, finest first, in ``coarse`` and their time in ``solve s``):
    iterations and seconds until the relative gap (upper − lower)/upper <= --bfm-tol (or
    --bfm-max-iter), seconds ÷ one dctn of the spatial grid, ÷ ot.emd2 on the same densities
    (n <= 128), peak traced memory, and the first iteration (and seconds) at which the gap fell
    under 1e-2, 5e-3, 2e-3 and 1e-3."""
    from solvers.grid.back_and_forth import (
        CERTIFY_EVERY,
        BackAndForth,
        TerminalDual,
        warm_start_levels,
    )

    if args.defaults_size:
        defaults_case(args, np, ot, load_scenario)
    marks = (1e-2, 5e-3, 2e-3, 1e-3)
    import numba

    print(f"back-and-forth: tol={args.bfm_tol:g} max_iter={args.bfm_max_iter} (upper bounds "
          f"every {CERTIFY_EVERY} iterations), threads: numba {numba.get_num_threads()}, "
          f"BLAS/OpenMP {args.threads}")
    print(f"{'case':>14} {'iters':>5} {'polish':>6} {'coarse':>11} {'gap':>9} {'solve s':>8} "
          f"{'solve/dctn':>10} "
          f"{'emd2 s':>7} {'solve/emd2':>10} {'lower/W':>9} {'upper/W':>9} {'peak MiB':>8}  "
          + "  ".join(f"its,s to {g:g}" for g in marks))
    cases = [("mixture_fixed_2d.yaml", [f"solver.n={n}"], f"fixed {n}^2")
             for n in (int(s) for s in args.bfm_sizes.split(","))]
    cases += [("gaussian_kl_2d.yaml", [f"solver.n={n}"], f"kl {n}^2")
              for n in (int(s) for s in args.bfm_kl_sizes.split(",") if s)]
    n3 = args.bfm_size_3d
    cases.append(("gaussian_kl_2d.yaml", [
        "dim=3", "source.mean=[-1, 0.5, 0]", "source.std=[0.5, 0.6, 0.5]",
        "target.mean=[1, -0.5, 0]", "target.std=[0.7, 0.4, 0.5]",
        "domain.bounds=[[-4, 4], [-4, 4], [-3, 3]]", f"solver.n={n3}"], f"kl {n3}^3"))
    for name, overrides, label in cases:
        sc = load_scenario(ROOT / "scenarios" / name, [*overrides, "solver.progress=false"])
        p = discretize(sc)
        x = np.random.default_rng(0).standard_normal(p.grid.n)
        t0 = time.perf_counter()
        for _ in range(10):
            fft.dctn(x, type=2, norm="ortho")
        t_dct = (time.perf_counter() - t0) / 10
        term = TerminalDual(p.terminal, p.rho1, p.grid.cell_volume, p.divergence)
        first: dict[float, str] = {}
        start = time.perf_counter()

        def mark(state, start=start, first=first):
            for g in marks:
                if state.relative_gap <= g and g not in first:
                    first[g] = f"{state.iterations},{time.perf_counter() - start:.1f}"

        st = BackAndForth(p.grid, p.T / p.lam, p.rho0, term).run_multilevel(
            args.bfm_tol, args.bfm_max_iter, warm_start_levels(p.grid.n), callback=mark)
        t_solve = time.perf_counter() - start
        # memory: a separate 1-iteration run under tracemalloc (which slows numpy down)
        tracemalloc.start()
        BackAndForth(p.grid, p.T / p.lam, p.rho0, term).run(args.bfm_tol, 1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t_emd, ref = float("nan"), float("nan")
        if p.terminal == "fixed" and np.prod(p.grid.n) <= 128**2:
            pts = p.grid.mesh().reshape(-1, p.grid.dim)
            h = p.grid.cell_volume
            t0 = time.perf_counter()
            ref = ot.emd2(p.rho0.ravel() * h, p.rho1.ravel() * h, ot.dist(pts, pts),
                          numItermax=10**8) / (2 * p.T / p.lam)
            t_emd = time.perf_counter() - t0
        coarse = "+".join(str(k) for k in st.coarse_iterations) or "-"
        print(f"{label:>14} {st.iterations:>5} {st.polish_iterations:>6} {coarse:>11} "
              f"{st.relative_gap:>9.2e} "
              f"{t_solve:>8.2f} "
              f"{t_solve / t_dct:>10.0f} {t_emd:>7.2f} {t_solve / t_emd:>10.2f} "
              f"{st.lower / ref:>9.5f} {st.upper / ref:>9.5f} {peak / 2**20:>8.1f}  "
              + "  ".join(f"{first.get(g, '-'):>12}" for g in marks), flush=True)
    print(f"numba threading layer: {numba.threading_layer()}\n")


def defaults_case(args, np, ot, load_scenario) -> None:
    """The whole solve with the grid solver's defaults, ``solver: {kind: grid, n: N}`` on the
    fixed mixture, against ``ot.emd2`` on the same densities in the same run."""
    from mfg.grid import Grid
    from solvers.grid import solve

    n = args.defaults_size
    sc = load_scenario(ROOT / "scenarios" / "mixture_fixed_2d.yaml",
                       [f"solver={{kind: grid, n: {n}, progress: false}}"])
    t0 = time.perf_counter()
    res = solve(sc)
    t_solve = time.perf_counter() - t0
    grid = Grid(sc.domain.bounds, sc.solver.n)
    pts, h = grid.mesh().reshape(-1, 2), grid.cell_volume
    t0 = time.perf_counter()
    w2_sq = ot.emd2(res.grid.source.values.ravel() * h, res.grid.target.values.ravel() * h,
                    ot.dist(pts, pts), numItermax=10**8)
    t_emd = time.perf_counter() - t0
    ke = 2 * sc.T / sc.lam * res.metrics["kinetic_energy"]
    print(f"defaults, fixed {n}^2 (method {sc.solver.method}, tol {sc.solver.tol:g}, "
          f"nt {sc.solver.nt}): status {res.status}, {res.metrics['iterations']:.0f} iterations "
          f"({res.metrics['polish_iterations']:.0f} polish), solve {t_solve:.1f} s, emd2 "
          f"{t_emd:.1f} s, solve/emd2 {t_solve / t_emd:.2f}, (2T/lambda)KE / W2^2 "
          f"{ke / w2_sq:.5f}\n", flush=True)


if __name__ == "__main__":
    main()
