"""Benchmarks of the neural solver (solvers/neural).

    python bench/neural.py [--dims 2 12 64] [--batch 512] [--nt 4] [--repeats 10]
                           [--device cpu|cuda]
    python bench/neural.py --pinwheel [--dims 2 12] [--eval-every N] [--device cpu|cuda]
                           [--methods w1w2 likelihood] [--set solver.max_iter=...]

Timing (default): for each dimension d, the scenario N(0, I_d) -> pinwheel embedded in R^d by a
fixed isometry with the ``lipschitz_f`` (KL, L = 1) terminal cost, prints medians over
``--repeats`` runs of

* ``U``         the potential U_θ(x, t) on a batch (forward only);
* ``grad``      ∇U and ∂tU in closed form (Potential.derivatives);
* ``grad+lap``  the same with ΔU (exact for d <= 10, Hutchinson above);
* ``autograd``  ∇U by torch.autograd, the reference the closed form is measured against;
* ``iter``      one training iteration (critic steps + generator step), and samples/s = batch/iter;
* ``adj iter``  the same iteration with ``adjoint: true`` (torchdiffeq's odeint_adjoint);
* ``MiB``, ``adj MiB``  on CUDA, the peak memory one iteration allocates beyond what the trainer
  holds already (torch.cuda.max_memory_allocated), without and with the adjoint.

``--nt`` sets the number of time steps (4): the adjoint's memory is O(1) in it, the direct
backward pass's O(nt).

``--pinwheel`` (time to accuracy) trains scenarios/neural_pinwheel_2d.yaml in each of ``--dims``
(the pinwheel embedded by a fixed isometry above 2-D), evaluating the debiased Sinkhorn divergence
(geomloss, p = 2, blur 0.05, ε-scaling 0.9: mfg.metrics) between the generated samples of 5,000
fixed source points and 5,000 fixed target samples every ``--eval-every`` iterations (by default
100 for ``w1w2`` and 20 for ``likelihood``, which gets there within 80–160 iterations in 2-D at
about 5 times ours per iteration; a coarse interval overstates its time), and prints
the training time (evaluations excluded) at which it first falls within ``--factor`` (1.5) times
its floor, the mean divergence between ``--floor-draws`` (3) pairs of target draws, for each of
``--methods``: ``w1w2`` (the scenario as it is) and ``likelihood`` (the likelihood flow, OT-Flow's
objective, ``terminal: {kind: likelihood}``), both by default. Training and evaluation run on
``--device``.
Threads: torch uses OMP_NUM_THREADS (set it; 1 on a shared machine).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mfg.scenario import Scenario, load_scenario, parse_scenario  # noqa: E402
from solvers.neural.dynamics import resolve_method  # noqa: E402
from solvers.neural.solver import trainer_class_for  # noqa: E402
from solvers.neural.training import NeuralTrainingError, Trainer  # noqa: E402

SCENARIO = """
name: bench_d{dim}
dim: {dim}
lambda: 0.05
source: {{kind: gaussian, mean: {zeros}, std: 1.0}}
target: {{kind: dataset, name: pinwheel}}
terminal: {{kind: lipschitz_f, f: kl, L: 1.0}}
solver: {{kind: neural, batch_size: {batch}, device: {device}, nt: {nt}, adjoint: {adjoint},
          progress: false}}
"""


#: default evaluation interval of ``--pinwheel`` per method (iterations)
EVAL_EVERY = {"w1w2": 100, "likelihood": 20}


def device_label(device_name: str) -> str:
    """What a timing ran on: the GPU's name, or ``cpu`` and torch's thread count."""
    if device_name == "cuda":
        return torch.cuda.get_device_name(device_name)
    return f"cpu, {torch.get_num_threads()} thread(s)"


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


def bench_scenario(dim: int, batch: int, nt: int, device_name: str,
                   adjoint: bool = False) -> Scenario:
    """The timing scenario: N(0, I_dim) -> pinwheel by isometry, lipschitz_f."""
    return parse_scenario(SCENARIO.format(dim=dim, zeros=[0.0] * dim, batch=batch, nt=nt,
                                          device=device_name, adjoint=str(adjoint).lower()))


def bench_trainer(dim: int, batch: int, nt: int, device_name: str,
                  adjoint: bool = False) -> Trainer:
    """A trainer of :func:`bench_scenario`."""
    sc = bench_scenario(dim, batch, nt, device_name, adjoint)
    return Trainer(sc, torch.device(device_name), torch.float32)


def peak_step_mib(tr: Trainer, device: torch.device) -> float:
    """Peak memory (MiB) one training iteration allocates on a CUDA device beyond what is held
    before it (parameters, optimizer state); NaN on CPU, where torch keeps no such count."""
    if device.type != "cuda":
        return math.nan
    tr.step()  # the optimizer's state exists from here on
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    held = torch.cuda.memory_allocated(device)
    tr.step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - held) / 2**20


def time_dim(dim: int, batch: int, nt: int, repeats: int,
             device_name: str) -> dict[str, float]:
    device = torch.device(device_name)
    tr = bench_trainer(dim, batch, nt, device_name)
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
    out["mib"] = peak_step_mib(tr, device)
    adj = bench_trainer(dim, batch, nt, device_name, adjoint=True)
    out["adj_iter"] = median_time(adj.step, repeats, device)
    out["adj_mib"] = peak_step_mib(adj, device)
    return out


def run_timing(args: argparse.Namespace) -> None:
    sc = bench_scenario(2, args.batch, args.nt, args.device)
    cfg = sc.solver
    method = resolve_method(cfg.method, sc.terminal.kind)
    where = device_label(args.device)
    print(f"neural solver timing: batch {args.batch}, {where}, float32, width {cfg.width}, "
          f"depth {cfg.depth}, {method} with {cfg.nt} steps, {cfg.critic_steps} critic steps; "
          "medians in ms; MiB: peak CUDA memory of one iteration (adj: adjoint: true)")
    head = f"{'dim':>4} {'U':>8} {'grad':>8} {'grad+lap':>9} {'autograd':>9} {'iter':>9} " \
           f"{'samples/s':>10} {'autograd/grad':>14} {'adj iter':>9} {'MiB':>8} {'adj MiB':>8}"
    print(head)
    for dim in args.dims:
        r = time_dim(dim, args.batch, args.nt, args.repeats, args.device)
        print(f"{dim:>4} {1e3 * r['U']:>8.3f} {1e3 * r['grad']:>8.3f} "
              f"{1e3 * r['grad+lap']:>9.3f} {1e3 * r['autograd']:>9.3f} {1e3 * r['iter']:>9.2f} "
              f"{args.batch / r['iter']:>10.0f} {r['autograd'] / r['grad']:>14.2f} "
              f"{1e3 * r['adj_iter']:>9.2f} {r['mib']:>8.1f} {r['adj_mib']:>8.1f}", flush=True)


def embedded_overrides(dim: int, embedding: str) -> list[str]:
    """--set overrides putting the 2-D pinwheel scenario in R^dim (source N(0, I_dim), target
    embedded by ``embedding``, no domain above 2-D)."""
    if dim == 2:
        return []
    return [f"dim={dim}", f"source.mean={[0.0] * dim}", f"target.embedding={embedding}",
            "domain=null"]


def time_to_floor(sc, eval_every: int, factor: float, eval_n: int,
                  floor_draws: int = 3) -> dict[str, float]:
    """Train ``sc`` and evaluate the debiased Sinkhorn divergence (p = 2, blur 0.05) between
    the generated samples of a fixed source set and a fixed target set (``eval_n`` each) every
    ``eval_every`` iterations; returns the floor, the training time (evaluations excluded) and
    iteration at which S first falls below ``factor``·floor, and the last S.

    The floor is the mean of S over ``floor_draws`` pairs of fresh target draws (their min and
    max are returned too): one pair is a noisy reference (at 5,000 points the pinwheel's ranges
    over 4.7e-3 to 8.8e-3 across six seeds). Source and target sets come from separate streams,
    so the target sets, and the floor, are the same 2-D points in every dimension (the metric
    is invariant under the embedding: tests/test_study_manifold.py)."""
    from mfg.metrics import sinkhorn_divergence
    from solvers.neural.dynamics import Dynamics, integrate

    device = torch.device(sc.solver.device)
    tr = trainer_class_for(sc)(sc, device, torch.float32)
    x0 = tr.tensor(sc.source.sample(eval_n, np.random.default_rng([sc.seed, 99, 0])))
    rng = np.random.default_rng([sc.seed, 99, 1])
    def draw() -> torch.Tensor:  # float64 on the training device, where S is evaluated
        return torch.as_tensor(sc.target.sample(eval_n, rng), device=device)

    y = draw()
    floors = [sinkhorn_divergence(draw(), draw()) for _ in range(floor_draws)]
    floor = statistics.fmean(floors)
    times = torch.tensor([0.0, sc.T], dtype=tr.dtype, device=device)
    out = {"floor": floor, "floor_min": min(floors), "floor_max": max(floors),
           "time_to_target": math.nan, "iter_to_target": math.nan}
    train_s = 0.0
    while tr.iteration < sc.solver.max_iter:
        t0 = time.perf_counter()
        tr.step()
        train_s += time.perf_counter() - t0
        if tr.iteration % eval_every and tr.iteration != sc.solver.max_iter:
            continue
        dyn = Dynamics(tr.solution, tr.lam, None, hj=False, train=False)
        x_t = integrate(dyn, x0, times, tr.method, sc.solver.nt)[0][-1]
        s = sinkhorn_divergence(x_t.detach().double(), y)
        out.update(last=s, iterations=tr.iteration, train_s=train_s)
        print(f"  it {tr.iteration:>6} train {train_s:7.1f} s  S {s:.3e}  S/floor {s / floor:.2f}",
              file=sys.stderr, flush=True)
        if s <= factor * floor and math.isnan(out["time_to_target"]):
            out.update(time_to_target=train_s, iter_to_target=tr.iteration)
            break
    return out


def run_pinwheel(args: argparse.Namespace) -> None:
    """Time to accuracy: training seconds until S <= factor·floor, per dimension and method."""
    overrides = {"w1w2": [], "likelihood": ["terminal={kind: likelihood}"]}
    methods = {m: overrides[m] for m in args.methods}
    every = {m: args.eval_every or EVAL_EVERY[m] for m in args.methods}  # None: per method
    where = device_label(args.device)
    intervals = ", ".join(f"{m} {n}" for m, n in every.items())
    print(f"pinwheel time to {args.factor} x floor: {where}, "
          f"evaluation every N iterations ({intervals}) on {args.eval_n} vs {args.eval_n} "
          "fixed samples (debiased Sinkhorn, p=2, blur 0.05); training time excludes evaluation")
    print(f"floor: mean (min-max) of S over {args.floor_draws} pairs of fresh target draws")
    print(f"{'dim':>4} {'method':>11} {'floor':>9} {'floor range':>19} {'S last':>9} {'iters':>7} "
          f"{'train s':>8} {'to target s':>12} {'at iter':>8}")
    for dim in args.dims:
        for method, extra in methods.items():
            sc = load_scenario(REPO / "scenarios" / "neural_pinwheel_2d.yaml",
                               ["solver.progress=false", "solver.checkpoint_every=0",
                               f"solver.device={args.device}",
                                *embedded_overrides(dim, args.embedding), *extra, *args.set])
            try:
                r = time_to_floor(sc, every[method], args.factor, args.eval_n,
                                  args.floor_draws)
            except NeuralTrainingError as err:
                print(f"{dim:>4} {method:>11} diverged: {' '.join(str(err).split())[:100]}")
                continue
            span = f"{r['floor_min']:.2e}-{r['floor_max']:.2e}"
            print(f"{dim:>4} {method:>11} {r['floor']:>9.2e} {span:>19} {r['last']:>9.2e} "
                  f"{r['iterations']:>7d} {r['train_s']:>8.1f} {r['time_to_target']:>12.1f} "
                  f"{r['iter_to_target']:>8}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dims", type=int, nargs="+", default=None)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--nt", type=int, default=4, help="time steps of the timing scenario")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--pinwheel", action="store_true",
                   help="time to accuracy on the pinwheel (dims from --dims, default 2 12)")
    p.add_argument("--embedding", choices=("pad", "isometry"), default="isometry")
    p.add_argument("--eval-every", type=int, default=None,
                   help="evaluation interval for every method (default: w1w2 100, likelihood 20)")
    p.add_argument("--eval-n", type=int, default=5000)
    p.add_argument("--factor", type=float, default=1.5)
    p.add_argument("--floor-draws", type=int, default=3,
                   help="pairs of target draws whose mean S is the floor")
    p.add_argument("--methods", nargs="+", choices=("w1w2", "likelihood"),
                   default=["w1w2", "likelihood"],
                   help="w1w2: the scenario's own terminal cost; likelihood: OT-Flow's objective")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the pinwheel scenario (repeatable)")
    args = p.parse_args()
    if args.eval_every is not None and args.eval_every < 1:
        p.error(f"--eval-every: {args.eval_every} is not a positive number of iterations")
    if args.pinwheel:
        args.dims = args.dims or [2, 12]
        run_pinwheel(args)
    else:
        args.dims = args.dims or [2, 12, 64]
        run_timing(args)


if __name__ == "__main__":
    main()
