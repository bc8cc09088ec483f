"""Benchmark of the evaluation metrics (mfg.metrics): the debiased Sinkhorn divergence's two
geomloss backends, the choice :func:`mfg.metrics.sinkhorn_backend` makes between them.

For each d in ``--dims`` and n in ``--sizes``: S_ε (blur 0.05, p 2, ε-scaling 0.9, float64)
between two clouds of n points in R^d (N(0, 1.5² I) against the same shifted by 0.3 in every
coordinate), by KeOps's ``online`` reductions and by the dense ``tensorized`` backend; prints
each one's time, their ratio (tensorized ÷ online, < 1: dense is faster), the relative
difference of the two values (they are the same number computed in another order), and which
one sinkhorn_backend picks there. The first online call of each d compiles a KeOps formula
(seconds, cached after): a warm-up call on 100 points takes it out of the timing.

With ``--converged``, also for each d up to MULTISCALE_MAX_DIM: the converged S_ε by KeOps's
``multiscale`` backend (what sinkhorn_backend picks at a scaling other than the default
there), at ε-scaling 0.999 and 0.9995: each one's time over the online time at 0.9 of the
same row, and the relative change of S_ε from 0.999 to 0.9995 (small: converged).

    OMP_NUM_THREADS=1 .venv/bin/python bench/metrics.py [--dims 2 12 64] [--sizes 2000]
        [--device cpu|cuda] [--converged]

Threads: torch uses OMP_NUM_THREADS (set it; 1 on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mfg.metrics import (  # noqa: E402
    MULTISCALE_MAX_DIM,
    SINKHORN_SCALING,
    sinkhorn_backend,
    sinkhorn_divergence,
)

BACKENDS = ("online", "tensorized")


def clouds(n: int, d: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two n-point clouds in R^d (float64): N(0, 1.5² I) and N(0.3·1, 1.5² I), fixed seed."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)) * 1.5
    y = rng.standard_normal((n, d)) * 1.5 + 0.3
    return (torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))


def timed(x: torch.Tensor, y: torch.Tensor, backend: str,
          scaling: float = SINKHORN_SCALING) -> tuple[float, float]:
    """(seconds, S_ε) of one sinkhorn_divergence call with ``backend`` at ε-scaling ``scaling``."""
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = sinkhorn_divergence(x, y, backend=backend, scaling=scaling)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 12, 64])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--converged", action="store_true",
                   help=f"also the converged S_ε by the multiscale backend in d <= "
                   f"{MULTISCALE_MAX_DIM}")
    args = p.parse_args(argv)
    print(f"# Sinkhorn backends (blur 0.05, p 2, scaling 0.9); torch threads "
          f"{torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
          f"device {args.device}")
    print(f"{'d':>4} {'n':>6} {'online [s]':>11} {'tensorized [s]':>15} {'ratio':>6} "
          f"{'rel. diff':>10}  chosen")
    converged = []
    for d in args.dims:
        sinkhorn_divergence(*clouds(100, d, args.device), backend="online")  # compile
        for n in args.sizes:
            x, y = clouds(n, d, args.device)
            (t_on, s_on), (t_dense, s_dense) = (timed(x, y, b) for b in BACKENDS)
            print(f"{d:>4} {n:>6} {t_on:>11.2f} {t_dense:>15.2f} {t_dense / t_on:>6.2f} "
                  f"{abs(s_dense - s_on) / abs(s_on):>10.1e}  {sinkhorn_backend(n * n, d)}",
                  flush=True)
            if args.converged and d <= MULTISCALE_MAX_DIM:
                converged.append((d, n, t_on, *(timed(x, y, "multiscale", s)
                                                for s in (0.999, 0.9995))))
    if converged:
        print("# converged S_ε by the multiscale backend; times over the online time at "
              f"{SINKHORN_SCALING} of the same (d, n)")
        print(f"{'d':>4} {'n':>6} {'S at 0.999':>11} {'[s]':>8} {'÷ online':>9} "
              f"{'[s] 0.9995':>11} {'÷ online':>9} {'rel. change':>12}")
        for d, n, t_on, (t1, s1), (t2, s2) in converged:
            print(f"{d:>4} {n:>6} {s1:>11.5e} {t1:>8.2f} {t1 / t_on:>9.2f} {t2:>11.2f} "
                  f"{t2 / t_on:>9.2f} {abs(s2 - s1) / abs(s1):>12.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
