"""proxflow command line: solve, compare, show, list, plot (a thin shell over mfg/ and solvers/).

    python cli.py solve scenarios/quickstart.yaml [--out PATH] [--set key=value ...] [--quiet]
                        [--device cpu|cuda] [--resume] [--check]
    python cli.py compare A.h5 B.h5 [--json]       python cli.py compare A.h5 --analytic
    python cli.py compare A.h5 --target [--draws 3] [--json]
    python cli.py show RESULT.h5                   python cli.py list
    python cli.py plot RESULT.h5 [-o PNG]
    python cli.py study convergence SCENARIO [--n 32,64,128] [--nt 8,16,32] [-o PNG]
    python cli.py study manifold SCENARIO [--dims 2,7,12] [--embedding pad,isometry] [--seeds 3]
                        [--draws 3] [--baselines likelihood|none] [--set k=v ...]
                        [--baseline-set solver.k=v ...] [-o OUT.h5]
    python cli.py study digits RESULT [-o PNG]

Exit status: 0 success, 2 bad input (one line ``error: ...`` on stderr, nothing written),
1 internal failure (one line; ``PROXFLOW_DEBUG=1`` shows the traceback), 130 interrupted.

Before solving, ``solve`` checks the output (DESIGN.md §2b): a file name, not a folder, not one
of the run's inputs (scenario file, samples files, the checkpoint resumed), in a folder it can
write; ``--check`` stops there (nothing written). A run whose status is not ``converged``
(``max_iter``, ``diverged``, ``completed``: a fixed number of steps, ...) still writes its result
and exits 0, and says so in one ``warning: did not converge: ...`` line on stderr; ``show``
marks it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

REPO_DIR = Path(__file__).resolve().parent
SCENARIO_DIR = REPO_DIR / "scenarios"
if str(REPO_DIR) not in sys.path:  # run as `python cli.py` from anywhere
    sys.path.insert(0, str(REPO_DIR))

#: metric names holding one of these are residuals in summaries
RESIDUAL_WORDS = ("residual", "error", "gap")


class CliError(Exception):
    """Bad user input: printed as one line, exit status 2."""


def one_line(err: BaseException | str) -> str:
    """The message with all whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(err).split())


def process_rank() -> int:
    """This process's rank under mpiexec (MPICH/Hydra or Open MPI environment: the fem solver)
    or torchrun (RANK with WORLD_SIZE: the neural solver), else 0. Only rank 0 prints and writes
    the result."""
    variables = ["PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"]
    if "WORLD_SIZE" in os.environ:  # torchrun's; a lone RANK may be anyone's variable
        variables.append("RANK")
    for var in variables:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def fmt(value: Any) -> str:
    """Floats with 6 significant digits, everything else with str()."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_rows(rows: Iterable[tuple[str, Any]], indent: str = "") -> str:
    """Two aligned columns: name, value."""
    rows = list(rows)
    if not rows:
        return ""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{indent}{name:<{width}}  {fmt(value)}" for name, value in rows)


# ----------------------------------------------------------------------------------------------
# helpers shared by the commands


def read(path: str | Path):  # -> mfg.results.Result
    """read_result, with a bad path turned into a one-line CliError."""
    from mfg.results import ResultFileError, read_result

    try:
        return read_result(path)
    except ResultFileError as err:
        raise CliError(one_line(err)) from None


def checked_output(path: str | Path, role: str, inputs: dict[str, Path]) -> Path:
    """mfg.results.check_output_path, its refusal turned into a one-line CliError."""
    from mfg.results import OutputPathError, check_output_path

    try:
        return check_output_path(path, role, inputs)
    except OutputPathError as err:
        raise CliError(one_line(err)) from None


def iterations(result: Any) -> int | None:
    """``metrics["iterations"]`` if present, else the length of the history."""
    if "iterations" in result.metrics:
        return int(result.metrics["iterations"])
    lengths = [len(v) for v in result.history.values()]
    return max(lengths) if lengths else None


def residuals(metrics: dict[str, float]) -> list[tuple[str, float]]:
    return [(k, v) for k, v in metrics.items() if any(w in k for w in RESIDUAL_WORDS)]


def output_path(scenario: Any, out: str | None) -> tuple[str, str]:
    """(role, path): --out, else the scenario's ``output``, else ``results/<name>.h5`` (relative
    to the cwd). The path is a string, so that a trailing separator can still be refused."""
    if out is not None:
        return "--out", out
    if scenario.output is not None:
        return "output", scenario.output
    return "output", str(Path("results") / f"{scenario.name}.h5")


def run_inputs(scenario: Any, scenario_file: str) -> dict[str, Path]:
    """The files a solve reads, by what they are: the scenario file, the samples files of the
    source and the target, and the checkpoint when resuming (none may be an output)."""
    inputs = {"scenario file": Path(scenario_file)}
    for role in ("source", "target"):
        dist_path = getattr(getattr(scenario, role), "path", None)
        if isinstance(dist_path, str):  # a samples distribution
            inputs[f"{role} samples file"] = Path(dist_path)
    cfg = scenario.solver
    if getattr(cfg, "resume", False) and getattr(cfg, "checkpoint", None):
        inputs["checkpoint resumed"] = Path(cfg.checkpoint)
    return inputs


def check_outputs(scenario: Any, scenario_file: str, role: str, out: str) -> Path:
    """Every file the run will write (the result, and a solver's checkpoint when it writes one)
    checked before solving (:func:`checked_output`); returns the result path."""
    inputs = run_inputs(scenario, scenario_file)
    path = checked_output(out, role, inputs)
    cfg = scenario.solver
    checkpoint = getattr(cfg, "checkpoint", None)
    if checkpoint and (getattr(cfg, "checkpoint_every", 0) or getattr(cfg, "resume", False)):
        others = {k: v for k, v in inputs.items() if k != "checkpoint resumed"}
        checked_output(checkpoint, "solver.checkpoint", {**others, "output": path})
    return path


def convergence_warning(result: Any) -> str | None:
    """One line for a run whose status is not ``converged`` (None when it is): the status, the
    iterations and the residuals reached."""
    if result.status == "converged":
        return None
    its = iterations(result)
    parts = [f"status {result.status}" + (f" after {its} iterations" if its is not None else "")]
    parts += [f"{k} {fmt(float(v))}" for k, v in residuals(result.metrics)]
    return "did not converge: " + ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# solve


def load(path: str, overrides: list[str]):  # -> mfg.scenario.Scenario
    """load_scenario with every input error turned into a one-line CliError."""
    from mfg.scenario import ScenarioError, load_scenario

    if not Path(path).is_file():
        raise CliError(f"{path}: no such scenario file")
    try:
        return load_scenario(path, tuple(overrides))
    except (ScenarioError, OSError, yaml.YAMLError) as err:
        raise CliError(one_line(err)) from None


def fill_provenance(result: Any, wall_time_s: float) -> None:
    """Versions, git revision and wall time, where the solver left them empty."""
    from mfg.provenance import git_revision, versions

    if not result.versions:
        result.versions = versions()
    if not result.git_revision or result.git_revision == "unknown":
        result.git_revision = git_revision(REPO_DIR)
    if not result.wall_time_s:
        result.wall_time_s = wall_time_s


def solver_options(scenario: Any, args: argparse.Namespace, out: Path) -> Any:
    """``--device`` and ``--resume`` onto the solver settings of families that have them; an
    unset ``checkpoint`` setting defaults to the result path with ``.ckpt`` appended."""
    cfg = scenario.solver
    names = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for flag, name, value in (("--device", "device", args.device),
                              ("--resume", "resume", True if args.resume else None)):
        if value is None:
            continue
        if name not in names:
            raise CliError(f"{flag}: the {cfg.kind} solver has no {name} setting")
        changes[name] = value
    if "checkpoint" in names and cfg.checkpoint is None:
        changes["checkpoint"] = f"{out}.ckpt"
    checkpoint = changes.get("checkpoint", getattr(cfg, "checkpoint", None))
    if changes.get("resume") and not Path(checkpoint).is_file():
        raise CliError(f"--resume: no checkpoint at {checkpoint}")
    if changes.get("device", getattr(cfg, "device", None)) == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CliError("solver.device: cuda requested but torch sees no CUDA GPU here")
    if not changes:
        return scenario
    return dataclasses.replace(scenario, solver=dataclasses.replace(cfg, **changes))


def cmd_solve(args: argparse.Namespace) -> int:
    import solvers
    from mfg.results import write_result
    from mfg.scenario import ScenarioError

    scenario = load(args.scenario, args.set)
    if args.quiet:
        solver = dataclasses.replace(scenario.solver, progress=False)
        scenario = dataclasses.replace(scenario, solver=solver)
    role, out_text = output_path(scenario, args.out)
    scenario = solver_options(scenario, args, Path(out_text))
    out = check_outputs(scenario, args.scenario, role, out_text)
    if args.check:
        print(f"ok: {args.scenario} is valid; the result would be written to {out}")
        return 0
    start = time.perf_counter()
    try:
        result = solvers.solve(scenario)
    except ScenarioError as err:  # bad input found by the solver (e.g. a checkpoint mismatch)
        raise CliError(one_line(err)) from None
    fill_provenance(result, time.perf_counter() - start)
    if process_rank() != 0:  # rank 0 holds the gathered result and writes it
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(result, out)
    warning = convergence_warning(result)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    rows: list[tuple[str, Any]] = [("status", result.status), ("iterations", iterations(result))]
    if "method" in result.settings:  # the method a default ("auto") resolved to
        rows.insert(0, ("method", str(result.settings["method"])))
    if "objective" in result.metrics:
        rows.append(("objective", float(result.metrics["objective"])))
    rows += [(k, float(v)) for k, v in residuals(result.metrics)]
    rows += [("wall time [s]", float(result.wall_time_s)), ("output", str(out))]
    print(format_rows(rows))
    return 0


# ----------------------------------------------------------------------------------------------
# compare


def json_safe(table: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities become null (strict JSON)."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in table.items()
    }


def cmd_compare(args: argparse.Namespace) -> int:
    from mfg.compare import CompareError, compare, compare_with_closed_form, compare_with_target
    from mfg.manifold import DRAWS

    if (args.b is not None) + args.analytic + args.target != 1:
        raise CliError("compare needs exactly one of B.h5, --analytic and --target")
    if args.draws is not None and not args.target:
        raise CliError("--draws: only with --target (the target draws S_ε is averaged over)")
    if args.draws is not None and args.draws < 1:
        raise CliError(f"--draws: expected a number of target draws >= 1, got {args.draws}")
    a = read(args.a)
    try:
        if args.analytic:
            table = compare_with_closed_form(a, stored_scenario(a, args.a))
            header = [("a", args.a), ("exact", "closed form")]
        elif args.target:
            table = compare_with_target(a, stored_scenario(a, args.a),
                                        draws=DRAWS if args.draws is None else args.draws)
            header = [("a", args.a), ("target", "the scenario's target")]
        else:
            table = compare(a, read(args.b))
            header = [("a", args.a), ("b", args.b)]
    except CompareError as err:
        raise CliError(one_line(err)) from None
    if args.json:
        print(json.dumps(json_safe(table), indent=2))
    else:
        print(format_rows(header + compare_rows(table)))
    return 0


def compare_rows(table: dict[str, Any]) -> list[tuple[str, Any]]:
    """The table's rows, with ``density_l1@t=X`` and ``density_linf@t=X`` merged into one row
    ``density@t=X   L1 ...  Linf ...``."""
    rows: list[tuple[str, Any]] = []
    for key, value in table.items():
        if key.startswith("density_linf@t="):
            continue
        if key.startswith("density_l1@t="):
            t = key.removeprefix("density_l1@t=")
            linf = table.get(f"density_linf@t={t}", float("nan"))
            rows.append((f"density@t={t}", f"L1 {fmt(value):<12} Linf {fmt(linf)}"))
        else:
            rows.append((key, value))
    return rows


def stored_scenario(result: Any, origin: str):  # -> mfg.scenario.Scenario
    """The scenario stored in a result file, parsed and validated again."""
    from mfg.scenario import ScenarioError, parse_scenario

    try:
        return parse_scenario(result.scenario_text, origin=origin)
    except (ScenarioError, yaml.YAMLError) as err:
        raise CliError(f"{origin}: stored scenario: {one_line(err)}") from None


# ----------------------------------------------------------------------------------------------
# show


def scenario_name(text: str) -> str:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return "?"
    return str(data.get("name", "?")) if isinstance(data, dict) else "?"


def grid_summary(grid: Any) -> str:
    if grid is None:
        return "none"
    dims = ", ".join(f"{d}: {n}" for d, n in grid.sizes.items())
    return f"{dims}  (variables: {', '.join(map(str, grid.data_vars))})"


def history_rows(history: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, values in history.items():
        last = float(values[-1]) if len(values) else float("nan")
        rows.append((f"history.{key}", f"{len(values)} values, last {fmt(last)}"))
    return rows


def cmd_show(args: argparse.Namespace) -> int:
    """``show FILE``: a result's provenance, status, settings, arrays and metrics; or, for a
    study's table (``study manifold``, ``study digits``), :func:`show_table`."""
    from mfg.results import is_table

    if is_table(args.result):
        return show_table(args.result)
    r = read(args.result)
    rows: list[tuple[str, Any]] = [
        ("file", args.result),
        ("scenario", scenario_name(r.scenario_text)),
        ("solver", r.solver),
        ("status", r.status if r.status == "converged"
         else f"{r.status} (did not converge)"),
        ("iterations", iterations(r)),
        ("git revision", r.git_revision),
        ("wall time [s]", float(r.wall_time_s)),
        ("device", r.device),
        ("versions", " ".join(f"{k}={v}" for k, v in r.versions.items()) or "none"),
        ("settings", json.dumps(r.settings, sort_keys=True)),
        ("grid", grid_summary(r.grid)),
    ]
    rows += [(f"samples.{k}", f"shape {tuple(v.shape)}") for k, v in r.samples.items()]
    rows += history_rows(r.history)
    rows += [(f"metrics.{k}", float(v)) for k, v in r.metrics.items()]
    print(format_rows(rows))
    return 0


def show_table(path: str) -> int:
    """``show`` of a study's table: its provenance (the root attributes; the scenario by name,
    the versions as key=value), then one line per column with its values, one per row."""
    from mfg.results import ResultFileError, read_table

    try:
        columns, attrs = read_table(path)
    except ResultFileError as err:
        raise CliError(one_line(err)) from None
    n_rows = len(next(iter(columns.values()), []))
    rows: list[tuple[str, Any]] = [("file", path), ("study", attrs.get("study", "?")),
                                   ("scenario", scenario_name(attrs.get("scenario", ""))),
                                   ("rows", n_rows)]
    for key, value in attrs.items():
        if key in ("study", "scenario", "kind", "format_version"):
            continue
        if key == "versions":
            value = " ".join(f"{k}={v}" for k, v in json.loads(value or "{}").items()) or "none"
        rows.append((key.replace("_", " "), value))
    rows += [(f"table.{key}", "  ".join(fmt(v) for v in values)) for key, values in columns.items()]
    print(format_rows(rows))
    return 0


# ----------------------------------------------------------------------------------------------
# list


def description(text: str, stem: str = "") -> str:
    """The first comment line of a YAML file, without its '#' and a leading ``<stem>:``."""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            line = line.strip().lstrip("#").strip()
            return line.removeprefix(f"{stem}:").strip() if stem else line
    return ""


def _kind(data: dict, key: str) -> str:
    section = data.get(key)
    if isinstance(section, dict):
        kind = str(section.get("kind", "?"))
        return f"{kind}({section['f']})" if section.get("f") else kind
    return "?" if section is None else str(section)


def scenario_line(path: Path) -> tuple[str, ...]:
    """file, dim, source -> target, terminal, solver, description of one scenario file."""
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return (path.name, "?", "(not a YAML mapping)", "", "", description(text, path.stem))
    flow = f"{_kind(data, 'source')} -> {_kind(data, 'target')}"
    dim = str(data.get("dim", "?"))
    terminal, solver = _kind(data, "terminal"), _kind(data, "solver")
    return (path.name, dim, flow, terminal, solver, description(text, path.stem))


def cmd_list(args: argparse.Namespace) -> int:
    paths = sorted(Path(args.dir).glob("*.yaml"))
    if not paths:
        raise CliError(f"{args.dir}: no scenario files (*.yaml)")
    lines = [("file", "dim", "source -> target", "terminal", "solver", "description")]
    lines += [scenario_line(p) for p in paths]
    widths = [max(len(line[k]) for line in lines) for k in range(len(lines[0]) - 1)]
    for line in lines:
        cells = [c.ljust(w) for c, w in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip())
    return 0


# ----------------------------------------------------------------------------------------------
# plot


def check_image_path(path: str, role: str, inputs: dict[str, Path]) -> Path:
    """An image output checked before any work: an extension matplotlib can write (none: png)
    and a writable file name that is not one of ``inputs`` (:func:`checked_output`)."""
    from matplotlib.figure import Figure

    suffix = Path(path).suffix.lower().lstrip(".")
    formats = Figure().canvas.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise CliError(f"{role} {path}: matplotlib cannot write .{suffix} images "
                       f"(supported: {', '.join(sorted(formats))})")
    return checked_output(path, role, inputs)


def cmd_plot(args: argparse.Namespace) -> int:
    from mfg.plotting import PlotError, plot_result
    from mfg.results import clean_stale_temporaries

    result = read(args.result)
    role = "-o" if args.output is not None else "output"
    target = args.output if args.output is not None else str(Path(args.result).with_suffix(".png"))
    out = check_image_path(target, role, {"result file": Path(args.result)})
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out.parent)  # images are written through .NAME.tmp-PID files too
    try:
        plot_result(result, out)
    except PlotError as err:
        raise CliError(f"{args.result}: {one_line(err)}") from None
    print(f"wrote {out}")
    return 0


# ----------------------------------------------------------------------------------------------
# study


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CliError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 2:
        raise CliError(f"expected integers >= 2, got {text!r}")
    return values


def cmd_study(args: argparse.Namespace) -> int:
    """``study convergence``: solve at each resolution, print errors and observed orders."""
    import solvers
    from mfg.convergence import FINEST_SUFFIX, errors, observed_orders, plot_convergence

    ns = int_list(args.n)
    base = load(args.scenario, args.set)
    out = check_image_path(args.output or f"results/{base.name}_convergence.png",
                           "-o" if args.output else "output",
                           {"scenario file": Path(args.scenario)})
    if base.solver.kind != "grid":
        raise CliError(f"{args.scenario}: study convergence needs solver.kind grid")
    if args.nt:
        nts = int_list(args.nt)
        if len(nts) != len(ns):
            raise CliError(f"--nt: {len(nts)} values for {len(ns)} values of --n")
    else:  # keep the scenario's ratio nt/n
        ratio = base.solver.nt / base.solver.n[0]
        nts = [max(2, round(ratio * n)) for n in ns]
    results, scenarios = [], []
    for n, nt in zip(ns, nts, strict=True):
        sc = load(args.scenario, [*args.set, f"solver.n={n}", f"solver.nt={nt}",
                                  "solver.progress=false"])
        start = time.perf_counter()
        res = solvers.solve(sc)
        print(f"solved n={n} nt={nt}: {res.status} after {iterations(res)} iterations "
              f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
        results.append(res)
        scenarios.append(sc)
    reference = results[-1]
    rows = [errors(r, sc, reference) for r, sc in zip(results, scenarios, strict=True)]
    keys = list(rows[0])
    # errors against the finest level are not errors of the finest level itself
    table = {k: [row[k] if not (k.endswith(FINEST_SUFFIX) and i == len(rows) - 1)
                 else float("nan") for i, row in enumerate(rows)] for k in keys}
    print(f"convergence of {base.name} (suffix {FINEST_SUFFIX}: against the finest level, "
          "otherwise against the exact solution)")
    print(f"{'n':>6} {'nt':>5} " + " ".join(f"{k:>26} {'order':>6}" for k in keys))
    orders = {k: [float("nan"), *observed_orders(ns, table[k])] for k in keys}
    for i, (n, nt) in enumerate(zip(ns, nts, strict=True)):
        cells = " ".join(f"{table[k][i]:>26.4e} {orders[k][i]:>6.2f}" for k in keys)
        print(f"{n:>6} {nt:>5} {cells}")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_convergence(ns, table, out, title=f"{base.name}: error vs n")
    print(f"wrote {out}")
    return 0


#: the likelihood-trained baseline of ``study manifold`` (OT-Flow's objective)
BASELINES = ("likelihood", "none")


@dataclasses.dataclass
class ManifoldRun:
    """One run of ``study manifold``: its labels, its scenario and its result file."""

    dim: int
    embedding: str  # mfg.manifold.ANY_EMBEDDING at dim 2
    seed: int
    method: str
    scenario: Any  # mfg.scenario.Scenario
    path: Path
    #: generated samples per target draw when the study set the solver's sample size to draws
    #: times it (mfg.manifold.generated_draws); None: the solver's whole sample for every draw
    per_draw: int | None = None


def name_list(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    """Comma-separated names, each one of ``allowed``, without repeats."""
    names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    bad = [v for v in names if v not in allowed]
    if not names or bad:
        raise CliError(f"{flag}: expected a comma-separated list of {', '.join(allowed)}, "
                       f"got {text!r}")
    return names


def check_manifold_base(base: Any, path: str) -> None:
    """``study manifold`` takes a 2-D scenario whose target is a 2-D toy data set and whose
    source is a Gaussian with one scalar std (it is re-centred at 0 in every dimension)."""
    from mfg.datasets import ToyData

    if not isinstance(base.target, ToyData):
        raise CliError(f"{path}: target: study manifold needs a 2-D toy data set "
                       f"(target kind dataset, e.g. pinwheel), got {type(base.target).__name__}")
    if base.dim != 2:
        raise CliError(f"{path}: dim: study manifold needs a 2-D scenario (it sets dim itself), "
                       f"got {base.dim}")
    source = yaml.safe_load(base.text)["source"]
    std = source.get("std")
    if (source.get("kind") != "gaussian" or "cov" in source or isinstance(std, bool)
            or not isinstance(std, int | float)):
        raise CliError(f"{path}: source: study manifold needs a gaussian with a scalar std "
                       "(it becomes N(0, std²I) in every dimension)")


def manifold_runs(args: argparse.Namespace, base: Any, runs_dir: Path) -> list[ManifoldRun]:
    """Every run of the study, loaded (and so validated) before anything is solved: the base
    scenario with ``--set``, then dim, a zero source mean, the embedding, ``domain: null``
    (d > 2), the seed, the name ``<name>_d{d}_{e}_s{s}_{method}``, no progress bar and, for the
    likelihood baseline, ``terminal: {kind: likelihood}`` with ``solver.terminal_weight=0``, then
    ``--baseline-set`` (solver settings only: the two methods solve the same problem). A solver
    with ``eval_samples`` n is asked for ``--draws`` times n, so that each target draw is read
    against n generated samples of its own (mfg.manifold.generated_draws); the scenario text
    records it."""
    from mfg.datasets import EMBEDDINGS
    from mfg.manifold import ANY_EMBEDDING

    dims = list(dict.fromkeys(int_list(args.dims)))
    embeddings = name_list(args.embedding, EMBEDDINGS, "--embedding")
    if args.seeds < 1:
        raise CliError(f"--seeds: expected a number of seeds >= 1, got {args.seeds}")
    if args.draws < 1:
        raise CliError(f"--draws: expected a number of target draws >= 1, got {args.draws}")
    if not 0 < args.sinkhorn_scaling < 1:
        raise CliError("--sinkhorn-scaling: expected an ε-scaling ratio in (0, 1), got "
                       f"{args.sinkhorn_scaling}")
    methods = [base.terminal.kind] + ([] if args.baselines == "none" else [args.baselines])
    if len(set(methods)) < len(methods):
        raise CliError(f"--baselines: the scenario's own terminal kind is {methods[0]}")
    if args.baseline_set and len(methods) == 1:
        raise CliError("--baseline-set: there is no baseline to set (--baselines none)")
    for item in args.baseline_set:
        if not item.startswith("solver."):
            raise CliError(f"--baseline-set {item}: only solver settings (solver.KEY=VALUE) may "
                           "differ between the methods; the problem is the same for both")
    runs = []
    for d in dims:
        for emb in [ANY_EMBEDDING] if d == 2 else embeddings:
            for s in range(args.seeds):
                for m in methods:
                    name = f"{base.name}_d{d}_{emb}_s{s}_{m}"
                    sets = [*args.set, f"dim={d}", f"source.mean={[0.0] * d}", f"seed={s}",
                            f"name={name}", "solver.progress=false"]
                    if d > 2:
                        sets += [f"target.embedding={emb}", "domain=null"]
                    if m != methods[0]:
                        sets += [f"terminal={{kind: {m}}}", "solver.terminal_weight=0",
                                 *args.baseline_set]
                    sc = load(args.scenario, sets)
                    per_draw = getattr(sc.solver, "eval_samples", None)
                    if per_draw is not None and args.draws > 1:
                        sc = load(args.scenario,
                                  [*sets, f"solver.eval_samples={per_draw * args.draws}"])
                    path = runs_dir / f"{name}.h5"
                    if "checkpoint" in {f.name for f in dataclasses.fields(sc.solver)}:
                        # checkpoints beside the run's file, not in results/ (not in sc.text)
                        sc = dataclasses.replace(sc, solver=dataclasses.replace(
                            sc.solver, checkpoint=f"{path}.ckpt"))
                    runs.append(ManifoldRun(d, emb, s, m, sc, path, per_draw))
    return runs


#: solver settings that do not change the problem or its solution (where, how and on what it
#: runs: a study solved on a GPU is reused on a CPU)
RUN_ONLY_SETTINGS = frozenset({"checkpoint", "checkpoint_every", "progress", "resume",
                               "processes", "device"})


def same_settings(recorded: dict[str, Any], config: Any) -> bool:
    """Whether a result's recorded solver settings are those ``config`` (a solver dataclass)
    resolves to: every field both have must agree, except RUN_ONLY_SETTINGS and fields the
    config leaves to the solver (``"auto"``, recorded as what it resolved to). A run made
    under other defaults (an older version) is thus solved again, not silently reused."""
    for field in dataclasses.fields(config):
        mine = getattr(config, field.name)
        if field.name in RUN_ONLY_SETTINGS or mine == "auto" or field.name not in recorded:
            continue
        theirs = recorded[field.name]
        if isinstance(mine, float) or isinstance(theirs, float):
            if not isinstance(theirs, int | float) or float(theirs) != float(mine):
                return False
        elif theirs != mine:
            return False
    return True


def without_eval_samples(text: str) -> Any:
    """A scenario's text as parsed YAML without ``solver.eval_samples`` (how many samples the
    trained model is evaluated on, not what it is trained for)."""
    data = yaml.safe_load(text)
    if isinstance(data, dict) and isinstance(data.get("solver"), dict):
        data["solver"] = {k: v for k, v in data["solver"].items() if k != "eval_samples"}
    return data


class TrainingNeeded(Exception):
    """Raised by :func:`evaluate_only` when the checkpoint is not at the run's last iteration."""


def evaluate_only(trainer: Any) -> None:
    """Training callback of :func:`evaluate_again`: a step taken means the checkpoint was not
    the finished run's."""
    raise TrainingNeeded


def evaluate_again(run: ManifoldRun, old: Any) -> Any | None:  # -> mfg.results.Result | None
    """The finished neural run ``old`` evaluated on the run's ``eval_samples`` from its final
    checkpoint, without training: its scenario and settings must be the run's but for
    ``eval_samples`` (a study with more ``--draws`` asks for more samples), its checkpoint must
    be there, of the same run (the solver checks the fingerprint) and at its last iteration
    (:func:`evaluate_only`: the learning-rate schedule depends on ``max_iter``, so a run must
    not go on from another run's checkpoint). The evaluation has its own random streams, so
    the first samples are those of ``old``. The Result keeps ``old``'s wall time (the training
    it reuses). None when any condition fails: the caller solves afresh."""
    from solvers.neural.solver import solve as neural_solve
    from solvers.neural.training import CheckpointError

    sc = run.scenario
    cfg = sc.solver
    if (cfg.kind != "neural" or old.status == "diverged" or not cfg.checkpoint
            or not Path(cfg.checkpoint).is_file()
            or without_eval_samples(old.scenario_text) != without_eval_samples(sc.text)
            or not same_settings(old.settings,
                                 dataclasses.replace(cfg, eval_samples=old.settings.get(
                                     "eval_samples", cfg.eval_samples)))):
        return None
    try:
        result = neural_solve(dataclasses.replace(sc, solver=dataclasses.replace(
            cfg, resume=True)), callback=evaluate_only)
    except (CheckpointError, TrainingNeeded):
        return None
    result.wall_time_s = old.wall_time_s
    return result


def continued(run: ManifoldRun) -> tuple[Any, str] | None:  # -> (Scenario, how) | None
    """The run's scenario set to resume, and what that does, when its checkpoint is of this very
    run (solvers.neural.training.continuation: the same problem and training, written under the
    same ``max_iter``), so that resuming gives what an uninterrupted run would have (bit for bit
    on CPU): a study stopped by Ctrl-C, a crash or a lost machine goes on from the last
    checkpoint instead of training again. None for a run with no such checkpoint."""
    sc = run.scenario
    cfg = sc.solver
    if cfg.kind != "neural" or not cfg.checkpoint:
        return None
    from solvers.neural.training import continuation

    done = continuation(cfg.checkpoint, sc)
    if done is None:
        return None
    how = (f"evaluated from its finished checkpoint (iteration {done})" if done == cfg.max_iter
           else f"resumed from its checkpoint at iteration {done} of {cfg.max_iter}")
    return dataclasses.replace(sc, solver=dataclasses.replace(cfg, resume=True)), how


def solve_or_reuse(run: ManifoldRun) -> tuple[Any, str]:  # -> (mfg.results.Result, how)
    """The run's Result: its file when that holds the same scenario text and solver settings
    (:func:`same_settings`; "reused"); the same run evaluated on another number of samples from
    its final checkpoint when only ``eval_samples`` differs (:func:`evaluate_again`; "evaluated
    again"); the run resumed from its checkpoint when that is of the same run (:func:`continued`:
    a study interrupted goes on where it stopped); else a fresh solve written there ("solved").
    A neural run whose loss turned non-finite becomes a Result with status ``diverged`` (its
    message in ``settings["error"]``), written as well; any other NeuralTrainingError is a
    setting the solver refused (bad input, exit 2)."""
    import solvers
    from mfg.results import Result, ResultFileError, read_result, write_result
    from mfg.scenario import ScenarioError
    from solvers.neural.training import NeuralTrainingError

    sc = run.scenario
    how = "solved"
    if run.path.is_file():
        try:
            old = read_result(run.path)
            if old.scenario_text == sc.text and same_settings(old.settings, sc.solver):
                return old, "reused"
            again = evaluate_again(run, old)
            if again is not None:
                fill_provenance(again, again.wall_time_s)
                write_result(again, run.path)
                return again, (f"evaluated again on {sc.solver.eval_samples} samples from its "
                               "checkpoint")
            how = "solved (replacing a run of another scenario or solver settings)"
        except ResultFileError:
            how = "solved (replacing an unreadable run file)"
    resumed = continued(run)
    if resumed is not None:
        sc, how = resumed
    start = time.perf_counter()
    try:
        result = solvers.solve(sc)
        fill_provenance(result, time.perf_counter() - start)
    except ScenarioError as err:  # bad input found by the solver (e.g. a checkpoint)
        raise CliError(one_line(err)) from None
    except NeuralTrainingError as err:
        if not str(err).startswith("non-finite"):  # a setting the solver refused: bad input
            raise CliError(f"{sc.name}: {one_line(err)}") from None
        result = Result(solver=sc.solver.kind, status="diverged", scenario_text=sc.text,
                        settings={"error": one_line(err)})
        fill_provenance(result, time.perf_counter() - start)
    write_result(result, run.path)
    return result, how


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached_metrics(path: Path, stamp: dict[str, Any], compute: Callable[[], dict[str, float]],
                   scaling: float) -> dict[str, float]:
    """``compute()``, or the metrics stored at ``path`` (JSON) by an earlier call with the same
    ``stamp`` and the same metric settings (mfg.manifold BLUR, P; the ε-scaling ``scaling``
    compute uses). A study's evaluations (minutes each on CPU) are thus made once per run
    file: a rerun, or one that adds seeds or dimensions, reuses them. The file keeps one entry
    per ε-scaling of the same stamp, so a study read converged (``--sinkhorn-scaling 0.999``)
    and then at the default again computes nothing the second time; an entry whose stamp
    differs otherwise (another run file, other draws) is stale and dropped when one is
    written. A file of earlier versions, one ``{"stamp", "metrics"}`` object, is read as one
    entry."""
    from mfg.manifold import BLUR, P
    from mfg.results import read_json, write_json

    stamp = stamp | {"blur": BLUR, "p": P, "scaling": scaling}
    old = read_json(path)
    entries = old.get("entries", [old]) if isinstance(old, dict) else []
    entries = [e for e in (entries if isinstance(entries, list) else [])
               if isinstance(e, dict) and isinstance(e.get("stamp"), dict)
               and isinstance(e.get("metrics"), dict)]
    for entry in entries:
        if entry["stamp"] == stamp:
            return {k: float(v) for k, v in entry["metrics"].items()}
    metrics = compute()
    unscaled = {k: v for k, v in stamp.items() if k != "scaling"}
    kept = [e for e in entries
            if {k: v for k, v in e["stamp"].items() if k != "scaling"} == unscaled]
    write_json({"entries": [*kept, {"stamp": stamp, "metrics": metrics}]}, path)
    return metrics


def manifold_row(run: ManifoldRun, result: Any, floors: dict[tuple, Any], draws: int,
                 scaling: float | None = None) -> tuple[dict[str, Any], Any]:
    """The table row of one run: mfg.manifold metrics (Sinkhorn at ε-scaling ``scaling``, None:
    mfg.metrics.SINKHORN_SCALING) on its terminal samples against ``draws``
    independent target draws, each Sinkhorn figure and its floor the mean over the draws
    (mfg.manifold.mean_over_draws; the k-th figure, of the k-th block of generated samples when
    the run holds one per draw (``run.per_draw``, mfg.manifold.generated_draws), against the k-th
    draw's floor; the distances to the plane are draw 0's); and the plane coordinates of the
    generated samples and of the target of draw 0 (None when it diverged). Every measure is
    cached per draw (draw 0 under the names of single-draw studies, draw k as ``..._k<k>``), so
    a study with more draws computes only the new ones; floors are kept per dim, embedding, seed,
    size and draw, the plane floor per seed, size and draw (the draws' plane coordinates do not
    depend on d). For the scenario's own terminal cost, when it is KL or the Lipschitz-regularized
    KL, the row also has the figure of the problem's exact answer on the same draws
    (mfg.manifold.exact_metrics, cached like a floor as ``exact_*.json``) and the run's ratio to
    it; NaN otherwise."""
    import numpy as np

    from mfg.manifold import (
        DRAW_KEYS,
        EXACT_KEYS,
        EXACT_MAX_SAMPLES,
        EXACT_SOLVER,
        EXACT_TOL,
        exact_metrics,
        floor_metrics,
        generated_draws,
        kl_proximal_problem,
        mean_over_draws,
        plane_basis,
        sample_metrics,
        source_draw,
        target_draws,
    )
    from mfg.metrics import SINKHORN_SCALING, SUPPORT_NEIGHBOURS

    scaling = SINKHORN_SCALING if scaling is None else scaling
    sc = run.scenario
    x = result.samples.get("terminal")
    status = result.status
    if x is None or not np.all(np.isfinite(x)):
        status, x = "diverged", None
    n = run.per_draw or (len(x) if x is not None else getattr(sc.solver, "eval_samples", 5000))
    q = plane_basis(sc.dim, sc.target.embedding, sc.target.embedding_seed)
    device = "cuda" if getattr(sc.solver, "device", "cpu") == "cuda" else "cpu"
    digest = file_digest(run.path)
    measured = (generated_draws(x, draws, run.per_draw) if x is not None
                else [np.full((n, sc.dim), np.nan)] * draws)
    # the posed problem's exact answer, for the scenario's own terminal cost only (a baseline
    # such as the likelihood flow solves another problem)
    problem = kl_proximal_problem(sc.terminal, sc.lam, sc.T)
    if problem is not None and n > EXACT_MAX_SAMPLES:
        print(f"{sc.name}: no exact answer for {n} samples (an n × n EMD; at most "
              f"{EXACT_MAX_SAMPLES})", file=sys.stderr)
        problem = None
    per_floor, per_sample, per_exact = [], [], []
    for k in range(draws):
        y1, y2 = target_draws(sc.target, n, sc.seed, k)
        tag = f"_k{k}" if k else ""
        key, plane_key = (run.dim, run.embedding, run.seed, n, k), ("plane", run.seed, n, k)
        stamp = {"draws": hashlib.sha256(np.ascontiguousarray(y1).tobytes()
                                         + np.ascontiguousarray(y2).tobytes()).hexdigest()}
        # caches from before precision and recall were measured lack them: computed again
        with_support = stamp | {"neighbours": SUPPORT_NEIGHBOURS}
        if key not in floors:
            name = f"floors_d{run.dim}_{run.embedding}_s{run.seed}_n{n}{tag}.json"
            floors[key] = cached_metrics(
                run.path.with_name(name), with_support,
                partial(floor_metrics, y1, y2, q, device, floors.get(plane_key), scaling),
                scaling)
            floors.setdefault(plane_key, floors[key]["sinkhorn_plane_floor"])
        per_floor.append(floors[key])
        if problem is not None:
            exact_key = ("exact", run.dim, run.embedding, run.seed, n, k, *problem)
            if exact_key not in floors:
                x0 = source_draw(sc.source, n, sc.seed, k)
                floors[exact_key] = cached_metrics(
                    run.path.with_name(f"exact_d{run.dim}_{run.embedding}_s{run.seed}_n{n}"
                                       f"{tag}.json"),
                    stamp | {"source": hashlib.sha256(np.ascontiguousarray(x0).tobytes())
                             .hexdigest(), "tau": problem[0], "L": problem[1],
                             "solver": EXACT_SOLVER, "tol": EXACT_TOL},
                    partial(exact_metrics, x0, y1, y2, *problem, device, scaling), scaling)
                exact = floors[exact_key]
                if not np.isfinite(exact["sinkhorn_exact"]):
                    steep = problem[1] is not None and exact["exact_lipschitz_needed"] > problem[1]
                    why = (f"it needs a critic of slope {exact['exact_lipschitz_needed']:.3g} > "
                           f"L = {problem[1]:g}" if steep else
                           f"its weights are not certified within {EXACT_TOL:g} (ℓ1) of the "
                           "minimizer's")
                    print(f"{sc.name}: no exact answer on draw {k}: {why}", file=sys.stderr)
            per_exact.append(floors[exact_key])
        per_sample.append(cached_metrics(
            run.path.with_suffix(f".metrics{tag}.json"),
            with_support | {"result": digest, "per_draw": run.per_draw},
            partial(sample_metrics, measured[k], y1, q, device, scaling), scaling))
        if k == 0:
            y_plane = y1 @ q
    nan = float("nan")
    row = {"name": sc.name, "dim": run.dim, "embedding": run.embedding, "seed": run.seed,
           "method": run.method, "status": status,
           **per_sample[0], **mean_over_draws(per_sample, DRAW_KEYS),
           **mean_over_draws(per_floor),
           **(mean_over_draws(per_exact) if per_exact else dict.fromkeys(EXACT_KEYS, nan)),
           "n_samples": n, "draws": draws,
           "wall_time_s": float(result.wall_time_s) if status != "diverged" else nan}
    for k in ("kinetic_energy", "hj_residual", "terminal_residual"):
        row[k] = float(result.metrics.get(k, nan)) if status != "diverged" else nan
    # the figures as read: each run against its own floor (the floors vary by draw and seed)
    for k in ("sinkhorn", "sinkhorn_plane"):
        row[f"{k}_over_floor"] = float(np.divide(row[k], row[f"{k}_floor"]))
    # and against the figure of the problem's exact answer: what is left is the solver's
    row["sinkhorn_over_exact"] = float(np.divide(row["sinkhorn"], row["sinkhorn_exact"]))
    return row, None if x is None else (measured[0] @ q, y_plane)


def manifold_command(args: argparse.Namespace, out: Path) -> str:
    """The study's command line with every option explicit (stored as provenance)."""
    parts = ["cli.py", "study", "manifold", args.scenario, "--dims", args.dims, "--embedding",
             args.embedding, "--seeds", str(args.seeds), "--draws", str(args.draws),
             "--sinkhorn-scaling", repr(args.sinkhorn_scaling), "--baselines", args.baselines]
    for item in args.set:
        parts += ["--set", item]
    for item in args.baseline_set:
        parts += ["--baseline-set", item]
    parts += ["-o", str(out)]
    return shlex.join(parts)


def print_manifold_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print mean [min–max] over seeds per (method, embedding, dim), each Sinkhorn figure beside
    its floor (the full-dimension one also as each run's ratio to its own floor, and to the
    figure of the posed problem's exact answer, "exact": NaN where the method's terminal cost has
    none, mfg.manifold.exact_metrics), and the precision and recall beside theirs (the second
    target draw's against the first); return the summary (mfg.manifold.summarize)."""
    from mfg.manifold import summarize

    keys = ("sinkhorn", "sinkhorn_floor", "sinkhorn_over_floor", "sinkhorn_exact",
            "sinkhorn_over_exact", "sinkhorn_plane", "sinkhorn_plane_floor", "precision",
            "precision_floor", "recall", "recall_floor", "plane_dist_mean",
            "plane_dist_rms", "plane_dist_p99", "hj_residual", "wall_time_s")
    summary = summarize(rows, keys)

    def spread(triple: tuple[float, float, float], fmt: str = ".2e") -> str:
        mean, lo, hi = triple
        return f"{mean:{fmt}} [{lo:{fmt}}–{hi:{fmt}}]"

    head = (f"{'method':<12} {'embedding':<9} {'dim':>4} {'ok':>5}  {'sinkhorn':<29} "
            f"{'floor':<9} {'sinkhorn/floor':<17} {'exact':<9} {'sinkhorn/exact':<17} "
            f"{'sinkhorn on plane':<29} {'floor':<9} {'precision':<23} {'floor':<6} "
            f"{'recall':<23} {'floor':<6} {'dist mean':<9} {'dist rms':<9} {'dist p99':<9} "
            f"{'hj_resid':<9} {'time [s]':<8}")
    print("study manifold: mean [min–max] over seeds (ok: runs that did not diverge / runs; "
          "statistics over the ones that did not); each run's Sinkhorn figures and floors: "
          f"means over {rows[0]['draws']} target draws")
    print(head)
    for g in summary:
        print(f"{g['method']:<12} {g['embedding']:<9} {g['dim']:>4} "
              f"{g['n_finite']:>2}/{g['n']:<2}  {spread(g['sinkhorn']):<29} "
              f"{g['sinkhorn_floor'][0]:<9.2e} {spread(g['sinkhorn_over_floor'], '.2f'):<17} "
              f"{g['sinkhorn_exact'][0]:<9.2e} {spread(g['sinkhorn_over_exact'], '.2f'):<17} "
              f"{spread(g['sinkhorn_plane']):<29} "
              f"{g['sinkhorn_plane_floor'][0]:<9.2e} {spread(g['precision'], '.4f'):<23} "
              f"{g['precision_floor'][0]:<6.4f} {spread(g['recall'], '.4f'):<23} "
              f"{g['recall_floor'][0]:<6.4f} {g['plane_dist_mean'][0]:<9.2e} "
              f"{g['plane_dist_rms'][0]:<9.2e} {g['plane_dist_p99'][0]:<9.2e} "
              f"{g['hj_residual'][0]:<9.2e} {g['wall_time_s'][0]:<8.1f}")
    return summary


def cmd_study_digits(args: argparse.Namespace) -> int:
    """``study digits RESULT``: the samples of a solved digits scenario measured by
    mfg.digits.digits_report (class coverage by a classifier trained on the real digits in this
    run, 64-D Sinkhorn and MMD² against the floor of two halves of the real digits, precision
    and recall), printed and written as a one-row HDF5 table (the PNG's name with ``.h5``: the
    report's numbers with the result's scenario and revision and this run's), and a PNG of
    generated beside real digits."""
    from mfg.datasets import Digits
    from mfg.digits import MMD_BANDWIDTH, SINKHORN_BLUR, SINKHORN_P, digits_report, write_digits_png
    from mfg.metrics import SUPPORT_NEIGHBOURS
    from mfg.provenance import git_revision, versions
    from mfg.results import clean_stale_temporaries, write_table

    result = read(args.result)
    sc = stored_scenario(result, args.result)
    if not isinstance(sc.target, Digits):
        raise CliError(f"{args.result}: study digits needs a result of a scenario with target "
                       "{kind: dataset, name: digits}")
    samples = result.samples.get("terminal")
    if samples is None or len(samples) <= SUPPORT_NEIGHBOURS:
        raise CliError(f"{args.result}: holds {0 if samples is None else len(samples)} terminal "
                       f"samples; study digits needs at least {SUPPORT_NEIGHBOURS + 1}")
    role = "-o" if args.output is not None else "output"
    target = args.output or str(Path(args.result).with_name(Path(args.result).stem + "_digits.png"))
    inputs = {"result file": Path(args.result)}
    out = check_image_path(target, role, inputs)
    table = checked_output(out.with_suffix(".h5"), "table", inputs)
    report = digits_report(samples, seed=sc.seed)
    cover = " ".join(f"{k}:{100 * report[f'coverage_{k}']:.1f}%" for k in range(10))
    print(f"digits from {args.result} ({int(report['n_samples'])} samples; "
          f"{int(report['n_compared'])} compared with as many real digits)")
    print(format_rows([
        ("class coverage", cover),
        ("coverage min / max", f"{100 * report['coverage_min']:.1f}% / "
                               f"{100 * report['coverage_max']:.1f}% (target 5%-15%)"),
        ("unsure (max prob < 0.5)", f"{100 * report['unsure']:.1f}%"),
        ("classifier accuracy", report["classifier_accuracy"]),
        ("sinkhorn (64-D)", report["sinkhorn"]),
        ("sinkhorn floor", report["sinkhorn_floor"]),
        ("mmd2", report["mmd2"]),
        ("mmd2 floor", report["mmd2_floor"]),
        (f"precision ({SUPPORT_NEIGHBOURS}-NN)", f"{report['precision']:.4f} (floor "
                                                f"{report['precision_floor']:.4f})"),
        (f"recall ({SUPPORT_NEIGHBOURS}-NN)", f"{report['recall']:.4f} (floor "
                                             f"{report['recall_floor']:.4f})"),
    ]))
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out.parent)
    attrs = {"study": "digits", "result": str(args.result), "scenario": result.scenario_text,
             "result_git_revision": result.git_revision, "seed": sc.seed,
             "command": shlex.join(["cli.py", "study", "digits", str(args.result), "-o", str(out)]),
             "versions": json.dumps(versions(), sort_keys=True),
             "git_revision": git_revision(REPO_DIR), "figure": str(out),
             "sinkhorn": f"debiased, p={SINKHORN_P}, blur={SINKHORN_BLUR}, 64-D",
             "mmd2": f"gaussian kernel, bandwidth {MMD_BANDWIDTH}",
             "neighbours": SUPPORT_NEIGHBOURS}
    write_table({key: [value] for key, value in report.items()}, attrs, table)
    write_digits_png(samples, out)
    print(f"wrote {table} and {out}")
    return 0


def cmd_study_manifold(args: argparse.Namespace) -> int:
    """``study manifold``: the scenario's terminal cost and a likelihood baseline on its 2-D toy
    data embedded in each dimension (mfg.manifold); one table (HDF5), a summary and a PNG."""
    from mfg.manifold import plane_basis, target_draws
    from mfg.plotting import plot_manifold_study
    from mfg.provenance import git_revision, versions
    from mfg.results import write_table

    base = load(args.scenario, args.set)
    check_manifold_base(base, args.scenario)
    if getattr(base.solver, "device", None) == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CliError("solver.device: cuda requested but torch sees no CUDA GPU here")
    role = "-o" if args.output else "output"
    out_text = args.output or str(Path("results") / f"{base.name}_manifold.h5")
    if Path(out_text).suffix.lower() not in (".h5", ".hdf5"):
        raise CliError(f"{role} {out_text}: the study's table is an HDF5 file (.h5)")
    inputs = {"scenario file": Path(args.scenario)}
    out = checked_output(out_text, role, inputs)
    png = check_image_path(str(out.with_suffix(".png")), "figure", inputs)
    runs_dir = out.with_name(f"{out.stem}_runs")
    if runs_dir.exists() and not runs_dir.is_dir():
        raise CliError(f"{role} {out}: {runs_dir} (the runs' folder) exists and is not a folder")
    runs = manifold_runs(args, base, runs_dir)
    for run in runs:
        checked_output(run.path, "run file", inputs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    rows, floors, scatter = [], {}, {}
    top = max(r.dim for r in runs)
    top_embedding = [r.embedding for r in runs if r.dim == top][-1]
    for i, run in enumerate(runs, 1):
        start = time.perf_counter()
        result, how = solve_or_reuse(run)
        row, planes = manifold_row(run, result, floors, args.draws, args.sinkhorn_scaling)
        rows.append(row)
        if run.dim == top and run.embedding == top_embedding and planes is not None:
            scatter.setdefault(run.method, planes)  # the first seed that did not diverge
        why = f" ({result.settings.get('error', 'non-finite samples')})" \
            if row["status"] == "diverged" else ""
        print(f"run {i}/{len(runs)}: d={run.dim} {run.embedding} s={run.seed} {run.method}: "
              f"{how}, {row['status']}{why}, S={row['sinkhorn']:.3g} "
              f"(floor {row['sinkhorn_floor']:.3g}), on plane S={row['sinkhorn_plane']:.3g}, "
              f"distance to plane mean {row['plane_dist_mean']:.3g} "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    columns = {k: [row[k] for row in rows] for k in rows[0]}
    attrs = {"study": "manifold", "scenario": base.text, "command": manifold_command(args, out),
             "versions": json.dumps(versions(), sort_keys=True),
             "git_revision": git_revision(REPO_DIR), "runs_folder": str(runs_dir),
             "spread": "min-max over seeds", "sinkhorn": "debiased, p=2, blur=0.05",
             "sinkhorn_scaling": args.sinkhorn_scaling, "draws": args.draws}
    write_table(columns, attrs, out)
    summary = print_manifold_summary(rows)
    methods = list(dict.fromkeys(r.method for r in runs))
    last = [r for r in runs if r.dim == top][-1]
    target_plane = next((p[1] for p in scatter.values()), None)
    if target_plane is None:  # every run at the top dimension diverged: the target alone
        q_sc = last.scenario
        q = plane_basis(q_sc.dim, q_sc.target.embedding, q_sc.target.embedding_seed)
        target_plane = target_draws(q_sc.target, 2000, 0)[0] @ q
    plot_manifold_study(summary, {m: scatter[m][0] if m in scatter else None for m in methods},
                        target_plane, png, f"{base.name}: {' vs '.join(methods)}",
                        f"d = {top} ({last.embedding}): samples "
                        "projected on the data plane, target in grey")
    print(f"wrote {out} ({len(rows)} runs; run files in {runs_dir}) and {png}")
    statuses = [row["status"] for row in rows]
    if any(st != "converged" for st in statuses):
        counts = ", ".join(f"{st} {statuses.count(st)}" for st in dict.fromkeys(statuses))
        print(f"warning: did not converge: {len(rows) - statuses.count('converged')} of "
              f"{len(rows)} runs ({counts})", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------
# entry point


def build_parser() -> argparse.ArgumentParser:
    from mfg.manifold import DRAWS
    from mfg.metrics import SINKHORN_SCALING

    parser = argparse.ArgumentParser(
        prog="cli.py", description="proxflow: generative flows as mean-field games"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("solve", help="solve a scenario and write a result file")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--out", help="result file (default: scenario output, else results/<name>.h5)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario field, e.g. --set solver.max_iter=200 (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", choices=("cpu", "cuda"), help="device (solvers with a device "
                   "setting, e.g. neural)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint "
                   "(default: the output path + .ckpt; solvers with checkpoints, e.g. neural)")
    p.add_argument("--check", action="store_true", help="validate the scenario and the output "
                   "path, then stop (solve nothing, write nothing)")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("compare", help="compare two results, or one with the closed form or "
                       "its target")
    p.add_argument("a", help="result file")
    p.add_argument("b", nargs="?", help="reference result file")
    p.add_argument("--analytic", action="store_true", help="compare A with its closed form")
    p.add_argument("--target", action="store_true", help="A's terminal law against its target "
                   "(debiased Sinkhorn; exact cell measures for grid results)")
    p.add_argument("--draws", type=int, help="with --target: independent target draws the "
                   f"Sinkhorn figures and their floor are averaged over (default {DRAWS})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("show", help="provenance, status and metrics of a result")
    p.add_argument("result")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("list", help="the shared scenarios")
    p.add_argument("--dir", default=str(SCENARIO_DIR), help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_list)

    study = sub.add_parser("study", help="studies: convergence under grid refinement, "
                           "manifold targets in growing dimension")
    studies = study.add_subparsers(dest="what", required=True)
    p = studies.add_parser("convergence", help="convergence study under grid refinement")
    p.add_argument("scenario", help="scenario YAML file (a grid scenario)")
    p.add_argument("--n", default="32,64,128", help="cells per axis, e.g. 32,64,128")
    p.add_argument("--nt", help="time steps per level (default: keep the scenario's nt/n)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field (repeatable)")
    p.add_argument("-o", "--output", help="log-log PNG (default results/<name>_convergence.png)")
    p.set_defaults(func=cmd_study)
    p = studies.add_parser("manifold", help="a 2-D toy target embedded in R^d: the scenario's "
                           "terminal cost and a likelihood baseline, per dim, embedding, seed")
    p.add_argument("scenario", help="a 2-D scenario with target kind dataset and a gaussian "
                   "source with scalar std")
    p.add_argument("--dims", default="2,7,12", help="dimensions, e.g. 2,7,12")
    p.add_argument("--embedding", default="pad,isometry", help="embeddings (d > 2): pad, "
                   "isometry or both")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per case (default 3)")
    p.add_argument("--draws", type=int, default=DRAWS,
                   help="independent draws each Sinkhorn figure and its floor are averaged "
                   "over, each a fresh target sample and (for a solver with eval_samples n, "
                   f"which is asked for draws x n) fresh generated samples (default {DRAWS})")
    p.add_argument("--sinkhorn-scaling", type=float, default=SINKHORN_SCALING,
                   help="geomloss's ε-scaling ratio for every Sinkhorn figure and floor, in "
                   f"(0, 1) (default {SINKHORN_SCALING}; 0.999 is converged and costs about 100x "
                   "as much, meant for a GPU, but for figures in up to 3 dimensions, which then "
                   "take KeOps's multiscale backend: a few minutes each on one CPU thread)")
    p.add_argument("--baselines", choices=BASELINES, default="likelihood",
                   help="the baseline beside the scenario's terminal cost (default likelihood)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, for every method (repeatable)")
    p.add_argument("--baseline-set", action="append", default=[], metavar="solver.KEY=VALUE",
                   help="override a solver setting of the baseline's runs only, after --set "
                   "(repeatable), e.g. solver.batch_size=512")
    p.add_argument("-o", "--output", help="table, HDF5 (default results/<name>_manifold.h5; "
                   "the PNG beside it, the runs in <stem>_runs/)")
    p.set_defaults(func=cmd_study_manifold)
    p = studies.add_parser("digits", help="class coverage, 64-D Sinkhorn/MMD vs floor, "
                           "precision and recall of a solved digits scenario: a one-row HDF5 "
                           "table and a PNG of the samples")
    p.add_argument("result", help="result file of a scenario with target {kind: dataset, "
                   "name: digits} (cli.py solve scenarios/neural_digits.yaml)")
    p.add_argument("-o", "--output", help="PNG (default RESULT stem + _digits.png); the "
                   "table beside it, its name with .h5")
    p.set_defaults(func=cmd_study_digits)

    p = sub.add_parser("plot", help="plot a result to PNG")
    p.add_argument("result")
    p.add_argument("-o", "--output", help="image file (default: RESULT with .png suffix)")
    p.set_defaults(func=cmd_plot)
    return parser


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command, mapping exceptions to exit statuses (see the module docstring)."""
    try:
        return func(args)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cli.py compare ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:
        if os.environ.get("PROXFLOW_DEBUG") == "1":
            raise
        print(f"error: internal: {type(err).__name__}: {one_line(err)}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if process_rank() != 0:  # under mpiexec/torchrun one rank speaks: bad input is still one line
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the process)
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
