"""Benchmarks of the particle family (issue #5).

``table``: every field moves ``--n`` (2000) particles from N(0, I) to the 8-Gaussian mixture in
2-D (scenarios/particles_8gaussians.yaml with the per-field settings of FIELD_SETTINGS); prints
the debiased Sinkhorn divergence (blur 0.05, p 2) to 1000 fresh target samples at the start and
the end, the sampling floor (two fresh target sets), and the wall time.

``stopping``: every field with its *default* settings (step size, cap, stopping rule; issue
#11) from N(0, I) to the 8-Gaussian mixture and to the 5-mode ring, ``--n`` particles: the steps
taken of the cap, why the run stopped (its status), the final Sinkhorn divergence to fresh
target samples over its sampling floor (two fresh target sets) — the acceptance bound is 1.5 —
and the wall time.

``timing``: one evaluation of the kernel drift (Deng's field, Laplace kernel, row–column
normalized, one temperature: six O(N²) kernel passes; N particles against N data points) by the
chunked torch backend, divided by the same evaluation by KeOps, at each N and d; and the peak
resident memory added by the call (a fresh subprocess per measurement, ru_maxrss after minus
before). Above ``--max-rows`` query points the time is extrapolated linearly (see timing()).

    OMP_NUM_THREADS=1 .venv/bin/python bench/particles.py table
    OMP_NUM_THREADS=1 .venv/bin/python bench/particles.py stopping --seeds 0 1
    OMP_NUM_THREADS=1 .venv/bin/python bench/particles.py timing --sizes 10000 100000 \
        --dims 2 64 --max-rows 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: overrides per field for the 8-Gaussian table (step sizes chosen for each field's speed scale)
FIELD_SETTINGS: dict[str, list[str]] = {
    "kde_kl": ["solver.bandwidth=0.3", "solver.dt=0.2", "solver.steps=200"],
    "mmd": ["solver.kernel=gaussian", "solver.bandwidth=0.5", "solver.dt=1.0",
            "solver.steps=200"],
    "sinkhorn": ["solver.dt=0.5", "solver.steps=30", "solver.scaling=0.8"],
    "sliced_w": ["solver.dt=0.2", "solver.steps=200"],
    "lipschitz_f": ["solver.L=1.0", "solver.dt=0.1", "solver.steps=200"],
    "drift": ["solver.temperatures=[0.1,0.2,0.5]", "solver.dt=0.5", "solver.steps=200"],
}


def table(n: int, fields: list[str]) -> None:
    import torch

    from mfg.scenario import load_scenario
    from solvers.particle import solve

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"| field | S_eps start | S_eps end | floor | steps x dt | wall [s] |   (n = {n})")
    print("|---|---|---|---|---|---|")
    for field in fields:
        sc = load_scenario(ROOT / "scenarios/particles_8gaussians.yaml", [
            "solver.progress=false", f"solver.field={field}", f"solver.n={n}",
            *FIELD_SETTINGS[field]])
        start = time.perf_counter()
        res = solve(sc)
        wall = time.perf_counter() - start
        m = res.metrics
        print(f"| {field} | {m['sinkhorn_initial']:.4f} | {m['sinkhorn_to_target']:.4f} | "
              f"{m['sinkhorn_floor']:.4f} | {sc.solver.steps} x {sc.solver.dt:g} | {wall:.1f} |",
              flush=True)


#: the stopping table's scenario: only the field and the target vary, all else is default
STOPPING_SCENARIO = """\
name: stopping
dim: 2
lambda: 1.0
source: {kind: gaussian, mean: [0.0, 0.0], std: 1.0}
target: {kind: dataset, name: TARGET}
terminal: {kind: sinkhorn, blur: 0.05, p: 2}
solver: {kind: particle, field: FIELD, progress: false}
"""


def stopping(n: int, fields: list[str], targets: list[str], seeds: list[int]) -> None:
    """Default settings per field and target (see the module docstring)."""
    import torch

    from mfg.scenario import parse_scenario
    from solvers.particle import solve

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"| field | target | seed | steps / cap | stopped | S_eps end | floor | end / floor "
          f"| wall [s] |   (n = {n}, default dt, eval_every and stopping rule)")
    print("|---|---|---|---|---|---|---|---|---|")
    for field in fields:
        for target in targets:
            for seed in seeds:
                text = STOPPING_SCENARIO.replace("TARGET", target).replace("FIELD", field)
                sc = parse_scenario(text, origin="stopping", overrides=[
                    f"solver.n={n}", f"seed={seed}"])
                start = time.perf_counter()
                res = solve(sc)
                wall = time.perf_counter() - start
                m = res.metrics
                print(f"| {field} | {target} | {seed} | {m['iterations']:.0f} / "
                      f"{sc.solver.steps} | {res.status} | {m['sinkhorn_to_target']:.4f} | "
                      f"{m['sinkhorn_floor']:.4f} | {m['sinkhorn_over_floor']:.2f} | "
                      f"{wall:.1f} |", flush=True)


_CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from solvers.particle.fields import drift_field
n, d, backend, rows = {n}, {d}, {backend!r}, {rows}
g = torch.Generator().manual_seed(0)
x = torch.randn(n, d, generator=g, dtype=torch.{dtype})
y = torch.randn(n, d, generator=g, dtype=torch.{dtype}) + 1.0
xq = x[:rows]
def run():  # 6 passes of rows x n pairs: column and row normalizers, weighted means
    return drift_field(xq, y, x, (1.0,), "laplace", "rowcol", mask_neg=False, backend=backend)
if backend == "keops":  # compile (cached) outside the timing
    drift_field(x[:8], y[:8], x[:8], (1.0,), "laplace", "rowcol", mask_neg=False,
                backend=backend)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); v = run(); wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"wall": wall * n / rows, "peak_mib": (peak - before) / 1024,
                   "norm": float(v.norm())}}))
"""


def timing(sizes: list[int], dims: list[int], dtype: str, timeout: float,
           max_rows: int) -> None:
    """Deng's drift (Laplace kernel, row-column normalized, one temperature) for N particles
    against N data points; when N > ``max_rows`` only ``max_rows`` particles are evaluated and
    the time is scaled by N / max_rows (every pass costs rows × N pair evaluations)."""
    print(f"| N | d | torch [s] | keops [s] | torch/keops | torch peak [MiB] | keops peak [MiB] |"
          f"   ({dtype}, 1 thread; * = extrapolated from {max_rows} query rows)")
    print("|---|---|---|---|---|---|---|")
    for d in dims:
        for n in sizes:
            rows = min(n, max_rows)
            out = {}
            for backend in ("torch", "keops"):
                code = _CHILD.format(root=str(ROOT), n=n, d=d, backend=backend, dtype=dtype,
                                     rows=rows)
                try:
                    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                          text=True, timeout=timeout,
                                          env={**os.environ, "OMP_NUM_THREADS": "1"})
                    line = [s for s in done.stdout.splitlines() if s.startswith("{")]
                    out[backend] = json.loads(line[-1]) if line else None
                except subprocess.TimeoutExpired:
                    out[backend] = None
            t, k = out["torch"], out["keops"]
            star = "*" if rows < n else ""

            def cell(r: dict | None, key: str, star: str = "") -> str:
                return "timeout" if r is None else f"{r[key]:.3g}{star}"

            ratio = f"{t['wall'] / k['wall']:.2f}" if t and k else "-"
            print(f"| {n} | {d} | {cell(t, 'wall', star)} | {cell(k, 'wall', star)} | {ratio} | "
                  f"{cell(t, 'peak_mib')} | {cell(k, 'peak_mib')} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("--n", type=int, default=2000)
    t.add_argument("--fields", nargs="+", default=list(FIELD_SETTINGS))
    st = sub.add_parser("stopping")
    st.add_argument("--n", type=int, default=2000)
    st.add_argument("--fields", nargs="+", default=list(FIELD_SETTINGS))
    st.add_argument("--targets", nargs="+", default=["8gaussians", "ring"])
    st.add_argument("--seeds", type=int, nargs="+", default=[0])
    b = sub.add_parser("timing")
    b.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    b.add_argument("--dims", type=int, nargs="+", default=[2, 64])
    b.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    b.add_argument("--timeout", type=float, default=1800.0)
    b.add_argument("--max-rows", type=int, default=10_000)
    args = p.parse_args()
    if args.cmd == "table":
        table(args.n, args.fields)
    elif args.cmd == "stopping":
        stopping(args.n, args.fields, args.targets, args.seeds)
    else:
        timing(args.sizes, args.dims, args.dtype, args.timeout, args.max_rows)


if __name__ == "__main__":
    main()
