"""Benchmarks of the neural solver (solvers/neural).

    python bench/neural.py [--dims 2 12 64] [--batch 512] [--repeats 10] [--device cpu|cuda]
    python bench/neural.py --pinwheel [--set solver.max_iter=...]

Timing (default): for each dimension d, the scenario N(0, I_d) -> pinwheel embedded in R^d by a
fixed isometry with the ``lipschitz_f`` (KL, L = 1) terminal cost, prints medians over
``--repeats`` runs of

* ``U``         the potential U_θ(x, t) on a batch (forward only);
* ``grad``      ∇U and ∂tU in closed form (Potential.derivatives);
* ``grad+lap``  the same with ΔU (exact for d <= 10, Hutchinson above);
* ``autograd``  ∇U by torch.autograd, the reference the closed form is measured against;
* ``iter``      one training iteration (critic steps + generator step), and samples/s = batch/iter.

``--pinwheel`` trains scenarios/neural_pinwheel_2d.yaml and prints the debiased Sinkhorn
divergence (geomloss, p = 2, blur 0.05) between 5,000 generated and 5,000 fresh target samples.
Threads: torch uses OMP_NUM_THREADS (set it; 1 on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mfg.scenario import load_scenario, parse_scenario  # noqa: E402
from solvers.neural.training import Trainer  # noqa: E402

SCENARIO = """
name: bench_d{dim}
dim: {dim}
lambda: 0.05
source: {{kind: gaussian, mean: {zeros}, std: 1.0}}
target: {{kind: dataset, name: pinwheel}}
terminal: {{kind: lipschitz_f, f: kl, L: 1.0}}
solver: {{kind: neural, batch_size: {batch}, device: {device}, nt: 4, progress: false}}
"""


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of fn() over ``repeats`` runs after one warm-up (synchronized on GPU)."""
    times = []
    for k in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_dim(dim: int, batch: int, repeats: int, device_name: str) -> dict[str, float]:
    sc = parse_scenario(SCENARIO.format(dim=dim, zeros=[0.0] * dim, batch=batch,
                                        device=device_name))
    device = torch.device(device_name)
    tr = Trainer(sc, device, torch.float32)
    pot = tr.potential
    x = torch.randn(batch, dim, device=device)
    t = torch.tensor(0.5, device=device)
    noise = None if dim <= 10 else torch.randn(batch, dim, device=device).sign()

    def autograd_grad() -> torch.Tensor:
        xr = x.clone().requires_grad_(True)
        return torch.autograd.grad(pot(xr, t).sum(), xr)[0]

    with torch.no_grad():
        out = {
            "U": median_time(lambda: pot(x, t), repeats, device),
            "grad": median_time(lambda: pot.derivatives(x, t), repeats, device),
            "grad+lap": median_time(lambda: pot.derivatives(x, t, True, noise), repeats, device),
        }
    out["autograd"] = median_time(autograd_grad, repeats, device)
    out["iter"] = median_time(tr.step, repeats, device)
    return out


def run_timing(args: argparse.Namespace) -> None:
    print(f"neural solver timing: batch {args.batch}, device {args.device}, "
          f"{torch.get_num_threads()} thread(s), float32, width 64, depth 2, rk4 with 4 steps, "
          "5 critic steps; medians in ms")
    head = f"{'dim':>4} {'U':>8} {'grad':>8} {'grad+lap':>9} {'autograd':>9} {'iter':>9} " \
           f"{'samples/s':>10} {'autograd/grad':>14}"
    print(head)
    for dim in args.dims:
        r = time_dim(dim, args.batch, args.repeats, args.device)
        print(f"{dim:>4} {1e3 * r['U']:>8.3f} {1e3 * r['grad']:>8.3f} "
              f"{1e3 * r['grad+lap']:>9.3f} {1e3 * r['autograd']:>9.3f} {1e3 * r['iter']:>9.2f} "
              f"{args.batch / r['iter']:>10.0f} {r['autograd'] / r['grad']:>14.2f}")


def run_pinwheel(args: argparse.Namespace) -> None:
    from solvers.neural import solve

    sc = load_scenario(REPO / "scenarios" / "neural_pinwheel_2d.yaml",
                       ["solver.progress=false", "solver.checkpoint_every=0", *args.set])
    t0 = time.perf_counter()
    res = solve(sc)
    wall = time.perf_counter() - t0
    m = res.metrics
    print(f"pinwheel 2-D, lipschitz_f (KL, L = {sc.terminal.L}), lambda {sc.lam}, "
          f"{sc.solver.max_iter} iterations, {torch.get_num_threads()} thread(s): "
          f"wall {wall:.0f} s")
    print(f"sinkhorn_to_target (geomloss, p=2, blur=0.05, {sc.solver.eval_samples} vs "
          f"{sc.solver.eval_samples} samples): {m['sinkhorn_to_target']:.3e}  "
          "(seed paper: 8.0e-3; target <= 1.0e-2)")
    print(f"kinetic_energy {m['kinetic_energy']:.4g}  terminal_cost {m['terminal_cost']:.4g}  "
          f"hj_residual {m['hj_residual']:.3g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dims", type=int, nargs="+", default=[2, 12, 64])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--pinwheel", action="store_true", help="train the pinwheel benchmark")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the pinwheel scenario (repeatable)")
    args = p.parse_args()
    if args.pinwheel:
        run_pinwheel(args)
    else:
        run_timing(args)


if __name__ == "__main__":
    main()
