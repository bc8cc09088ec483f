"""Benchmark of the evaluation metrics (mfg.metrics): the debiased Sinkhorn divergence's two
geomloss backends, the choice :func:`mfg.metrics.sinkhorn_backend` makes between them.

For each d in ``--dims`` and n in ``--sizes``: S_ε (blur 0.05, p 2, ε-scaling 0.9, float64)
between two clouds of n points in R^d (N(0, 1.5² I) against the same shifted by 0.3 in every
coordinate), by KeOps's ``online`` reductions and by the dense ``tensorized`` backend; prints
each one's time, their ratio (tensorized ÷ online, < 1: dense is faster), the relative
difference of the two values (they are the same number computed in another order), and which
one sinkhorn_backend picks there. The first online call of each d compiles a KeOps formula
(seconds, cached after): a warm-up call on 100 points takes it out of the timing.

    OMP_NUM_THREADS=1 .venv/bin/python bench/metrics.py [--dims 2 12 64] [--sizes 2000]
        [--device cpu|cuda]

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

from mfg.metrics import sinkhorn_backend, sinkhorn_divergence  # noqa: E402

BACKENDS = ("online", "tensorized")


def clouds(n: int, d: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two n-point clouds in R^d (float64): N(0, 1.5² I) and N(0.3·1, 1.5² I), fixed seed."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)) * 1.5
    y = rng.standard_normal((n, d)) * 1.5 + 0.3
    return (torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))


def timed(x: torch.Tensor, y: torch.Tensor, backend: str) -> tuple[float, float]:
    """(seconds, S_ε) of one sinkhorn_divergence call with ``backend``."""
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = sinkhorn_divergence(x, y, backend=backend)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 12, 64])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    print(f"# Sinkhorn backends (blur 0.05, p 2, scaling 0.9); torch threads "
          f"{torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
          f"device {args.device}")
    print(f"{'d':>4} {'n':>6} {'online [s]':>11} {'tensorized [s]':>15} {'ratio':>6} "
          f"{'rel. diff':>10}  chosen")
    for d in args.dims:
        sinkhorn_divergence(*clouds(100, d, args.device), backend="online")  # compile
        for n in args.sizes:
            x, y = clouds(n, d, args.device)
            (t_on, s_on), (t_dense, s_dense) = (timed(x, y, b) for b in BACKENDS)
            print(f"{d:>4} {n:>6} {t_on:>11.2f} {t_dense:>15.2f} {t_dense / t_on:>6.2f} "
                  f"{abs(s_dense - s_on) / abs(s_on):>10.1e}  {sinkhorn_backend(n * n, d)}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
