"""proxflow command line: solve, compare, show, list, plot (a thin shell over mfg/ and solvers/).

    python cli.py solve scenarios/quickstart.yaml [--out PATH] [--set key=value ...] [--quiet]
                        [--device cpu|cuda] [--resume] [--check]
    python cli.py compare A.h5 B.h5 [--json]       python cli.py compare A.h5 --analytic
    python cli.py show RESULT.h5                   python cli.py list
    python cli.py plot RESULT.h5 [-o PNG]
    python cli.py study convergence SCENARIO [--n 32,64,128] [--nt 8,16,32] [-o PNG]

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
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
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


def mpi_rank() -> int:
    """This process's rank under mpiexec (MPICH/Hydra or Open MPI environment), else 0. Under
    MPI (the fem solver) only rank 0 prints and writes the result."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
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
    checked before solving (mfg.results.check_output_path); returns the result path."""
    from mfg.results import OutputPathError, check_output_path

    inputs = run_inputs(scenario, scenario_file)
    try:
        path = check_output_path(out, role, inputs)
        cfg = scenario.solver
        checkpoint = getattr(cfg, "checkpoint", None)
        if checkpoint and (getattr(cfg, "checkpoint_every", 0) or getattr(cfg, "resume", False)):
            others = {k: v for k, v in inputs.items() if k != "checkpoint resumed"}
            check_output_path(checkpoint, "solver.checkpoint", {**others, "output": path})
    except OutputPathError as err:
        raise CliError(one_line(err)) from None
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
    if mpi_rank() != 0:  # rank 0 holds the gathered result and writes it
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(result, out)
    warning = convergence_warning(result)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    rows: list[tuple[str, Any]] = [("status", result.status), ("iterations", iterations(result))]
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
    from mfg.compare import CompareError, compare, compare_with_closed_form

    if args.analytic == (args.b is not None):
        raise CliError("compare needs exactly one of B.h5 and --analytic")
    a = read(args.a)
    try:
        if args.analytic:
            table = compare_with_closed_form(a, stored_scenario(a, args.a))
            header = [("a", args.a), ("exact", "closed form")]
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
    and a writable file name that is not one of ``inputs`` (mfg.results.check_output_path)."""
    from matplotlib.figure import Figure

    from mfg.results import OutputPathError, check_output_path

    suffix = Path(path).suffix.lower().lstrip(".")
    formats = Figure().canvas.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise CliError(f"{role} {path}: matplotlib cannot write .{suffix} images "
                       f"(supported: {', '.join(sorted(formats))})")
    try:
        return check_output_path(path, role, inputs)
    except OutputPathError as err:
        raise CliError(one_line(err)) from None


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


# ----------------------------------------------------------------------------------------------
# entry point


def build_parser() -> argparse.ArgumentParser:
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

    p = sub.add_parser("compare", help="compare two results, or one with the closed form")
    p.add_argument("a", help="result file")
    p.add_argument("b", nargs="?", help="reference result file")
    p.add_argument("--analytic", action="store_true", help="compare A with its closed form")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("show", help="provenance, status and metrics of a result")
    p.add_argument("result")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("list", help="the shared scenarios")
    p.add_argument("--dir", default=str(SCENARIO_DIR), help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("study", help="convergence study under grid refinement")
    p.add_argument("what", choices=("convergence",))
    p.add_argument("scenario", help="scenario YAML file (a grid scenario)")
    p.add_argument("--n", default="32,64,128", help="cells per axis, e.g. 32,64,128")
    p.add_argument("--nt", help="time steps per level (default: keep the scenario's nt/n)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field (repeatable)")
    p.add_argument("-o", "--output", help="log-log PNG (default results/<name>_convergence.png)")
    p.set_defaults(func=cmd_study)

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
    if mpi_rank() != 0:  # under mpiexec one rank speaks: bad input is still one line
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the process)
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
