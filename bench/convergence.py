"""Convergence studies of the grid solver under refinement (n and nt doubled together), against
the exact 1-D solutions: Gaussian → Gaussian with KL (closed form) and with L·W1 (the quantile
solution of mfg.analytic.w1_terminal_quantile). Prints the error tables with observed orders and
writes the log–log plots to results/.

    python bench/convergence.py [--n 32,64,128,256] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="32,64,128,256")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=8000)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import cli

    ns = [int(v) for v in args.n.split(",")]
    nts = ",".join(str(max(2, n // 4)) for n in ns)
    scenario = str(ROOT / "scenarios" / "gaussian_kl_1d.yaml")
    common = ["--n", args.n, "--nt", nts, "--set", "solver.tol=1e-9",
              "--set", f"solver.max_iter={args.max_iter}"]
    print(f"threads={args.threads}; nt = n/4; tol 1e-9, at most {args.max_iter} iterations\n")
    for label, extra in (("kl", []), ("w1", ["--set", "terminal={kind: w1, L: 0.5}"])):
        out = ROOT / "results" / f"convergence_{label}.png"
        rc = cli.main(["study", "convergence", scenario, *common, *extra, "-o", str(out)])
        if rc:
            sys.exit(rc)
        print()


if __name__ == "__main__":
    main()
