"""One result type for every solver, and its HDF5 file (written atomically).

The dataclass :class:`Result` is the contract between solvers and everything downstream (compare,
plot, show). :func:`write_result` / :func:`read_result` store it in one HDF5 file::

    /                      attributes: scenario (YAML text), solver, status, settings (JSON),
                           versions (JSON), git_revision, wall_time_s, device, format_version
    /grid                  the xarray Dataset (rho, U, ... over t, x1[, x2[, x3]]), written by
                           xarray/h5netcdf: xarray.open_dataset(path, group="grid",
                           engine="h5netcdf") reads it
    /samples/terminal      (n, d) terminal samples; /samples/trajectories (nt, n, d) if any
    /history/<key>         one 1-D array per history key (loss, residuals per iteration)
    /metrics               attributes: one float per metric
    /mesh/<key>            mesh solvers: points, cells and nodal fields (h5py-readable arrays)

A study's table is the other kind of file (:func:`write_table`, :func:`read_table`): root
attributes ``kind`` = TABLE_KIND and the study's provenance, ``/table/<column>`` a 1-D dataset
per column. :func:`is_table` tells the two kinds apart; :func:`read_result` refuses a table.

A file is first written to ``.<name>.tmp-<pid>`` in the same directory and renamed onto the final
path with :func:`os.replace` only when complete, so a crash or an interrupt never leaves a partial
result file (nor clobbers an earlier one). A process killed mid-write (SIGKILL) cannot remove its
temporary file; the next write to the same folder removes the temporaries of processes that no
longer run (:func:`clean_stale_temporaries`).

:func:`check_output_path` is the check made before a run (DESIGN.md §2b): the output is a file
name (not a folder, not one of the run's inputs) in a folder this process can write to.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

#: bumped when the layout changes incompatibly
FORMAT_VERSION = "1"


class ResultFileError(ValueError):
    """A path that is not a readable proxflow result file; ``str(err)`` is one line naming it."""


class OutputPathError(ValueError):
    """An output path that cannot or must not be written; ``str(err)`` is one line naming it."""


@dataclass
class Result:
    """What a solver returns, and what ``results.h5`` holds.

    Attributes
    ----------
    solver: solver kind, e.g. ``"grid"``.
    status: ``"converged"`` (tolerance met), ``"max_iter"`` (iteration limit reached first),
        ``"completed"`` (a fixed number of steps ran, no stopping rule), ``"stalled"`` (a particle
        flow whose divergence never fell: its field cannot reach the target) or ``"diverged"``.
    scenario_text: the scenario as YAML text (overrides applied).
    settings: solver settings actually used (JSON-serializable dict).
    grid: xarray Dataset with ``rho`` and ``U`` over dims ``("t", "x1"[, "x2"[, "x3"]])`` with
        coordinate values; may also hold momenta ``m1``.. and other fields (e.g. ``target``).
        None for grid-free solvers.
    samples: arrays: ``terminal`` (n, d), optional ``trajectories`` (nt, n, d).
    history: per-iteration arrays of equal length (objective, residuals, gap, ...).
    metrics: scalars: kinetic_energy, terminal_cost, objective, hj_residual,
        continuity_residual, mass_error (and any solver-specific extras).
    provenance: versions (dict), git_revision, wall_time_s, device, seed.
    """

    solver: str
    status: str
    scenario_text: str
    settings: dict
    grid: xr.Dataset | None = None
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    device: str = "cpu"
    versions: dict[str, str] = field(default_factory=dict)
    git_revision: str = "unknown"
    #: mesh solvers: ``points``, ``cells`` and nodal fields, stored as the ``/mesh`` group
    mesh: dict[str, np.ndarray] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# writing


def _json_default(obj: object) -> object:
    """JSON fallback for numpy scalars/arrays, tuples-in-sets, paths and the like."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    return str(obj)


def _to_json(obj: object) -> str:
    return json.dumps(obj, default=_json_default, sort_keys=True)


def _temp_path(path: Path) -> Path:
    """``<dir>/.<name>.tmp-<pid>``: same directory, so :func:`os.replace` is an atomic rename."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


#: temporary files of an atomic write (here, in mfg.plotting and in neural checkpoints)
_TEMP_RE = re.compile(r"\..+\.tmp-([0-9]{1,10})")


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0 checks without sending anything). A process of
    another user counts as alive (PermissionError). POSIX only."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the ``.<name>.tmp-<pid>`` files in ``folder`` whose process no longer runs (left by
    a kill during a write) and return them. Files of live processes (and of this one) are kept;
    an unreadable folder or a file that cannot be removed is skipped silently. A pid reused by
    an unrelated live process keeps its file until that process ends (the safe side)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name the same file: equal resolved paths, or hard links of one file."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: str | Path, role: str = "output",
                      inputs: Mapping[str, str | Path] | None = None) -> Path:
    """Check, before any work, that ``path`` can be written as a result (DESIGN.md §2b), and
    return it as a Path; :class:`OutputPathError` (one line naming ``role`` and the path) if not.

    Refused: a name ending with a path separator or naming a folder (or another non-regular
    file, e.g. a device), a file that is one of the run's ``inputs`` (``{what: path}``: the
    scenario file, a samples file, a checkpoint being resumed: it would be replaced), and a
    folder that cannot be created or written to. Writability is tested by creating and removing
    a temporary file in the nearest existing folder (permission bits alone do not tell, e.g.
    for root or a read-only mount); missing folders are not created here (the write creates
    them), so a refused or failed run leaves nothing behind.
    """
    text = str(path)
    if not text.strip():
        raise OutputPathError(f"{role} {text!r}: empty; give a file, e.g. results/result.h5")
    if text.endswith(("/", os.sep)):
        raise OutputPathError(f"{role} {text!r}: not a file name (it ends with a path "
                              "separator); give a file, e.g. DIR/result.h5")
    out = Path(text)
    if out.is_dir():
        raise OutputPathError(f"{role} {out}: is a folder; give a file, e.g. {out}/result.h5")
    if out.exists() and not out.is_file():
        raise OutputPathError(f"{role} {out}: exists and is not a regular file")
    for what, source in (inputs or {}).items():
        if _same_file(out, Path(source)):
            raise OutputPathError(f"{role} {out}: is the {what} this run reads; writing there "
                                  "would replace it (choose another output)")
    parent = out.parent.absolute()
    existing = parent  # the nearest folder that exists: the write creates the ones below it
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{role} {out}: {existing} is not a folder")
    probe = _temp_path(existing / out.name)  # unique to this process (no race under MPI)
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise OutputPathError(f"{role} {out}: cannot write in {existing} ({why})") from None
    return out


def _write_grid(grid: xr.Dataset, path: Path) -> None:
    """Create ``path`` with the Dataset as group ``grid`` (netCDF4/HDF5 via h5netcdf)."""
    grid.to_netcdf(path, mode="w", group="grid", engine="h5netcdf")


def _write_root(f: h5py.File, result: Result) -> None:
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["scenario"] = result.scenario_text
    f.attrs["solver"] = result.solver
    f.attrs["status"] = result.status
    f.attrs["settings"] = _to_json(result.settings)
    f.attrs["versions"] = _to_json(result.versions)
    f.attrs["git_revision"] = result.git_revision
    f.attrs["wall_time_s"] = float(result.wall_time_s)
    f.attrs["device"] = result.device


def _write_arrays(f: h5py.File, name: str, arrays: dict[str, np.ndarray]) -> None:
    group = f.create_group(name)
    for key, value in arrays.items():
        group.create_dataset(key, data=np.asarray(value))


def _write_metrics(f: h5py.File, metrics: dict[str, float]) -> None:
    group = f.create_group("metrics")
    for key, value in metrics.items():
        group.attrs[key] = float(value)


def _write_file(result: Result, path: Path) -> None:
    """Write the whole result to ``path`` (not atomic by itself)."""
    if result.grid is not None:
        _write_grid(result.grid, path)
        mode = "a"
    else:
        mode = "w"
    with h5py.File(path, mode) as f:
        _write_root(f, result)
        _write_arrays(f, "samples", result.samples)
        _write_arrays(f, "history", result.history)
        if result.mesh:
            _write_arrays(f, "mesh", result.mesh)
        _write_metrics(f, result.metrics)


def write_result(result: Result, path: str | Path) -> Path:
    """Write ``result`` to ``path`` atomically and return the path.

    The file is written to a temporary sibling and renamed onto ``path`` (``os.replace``) once
    closed; on any exception (KeyboardInterrupt included) the temporary file is removed and an
    existing ``path`` is left untouched. The parent directory must exist.
    """
    path = Path(path)
    tmp = _temp_path(path)
    clean_stale_temporaries(path.parent)
    try:
        _write_file(result, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------------------------
# reading


def _attr_str(attrs: h5py.AttributeManager, key: str, default: str = "") -> str:
    value = attrs.get(key, default)
    if isinstance(value, bytes | np.bytes_):
        return value.decode()
    return str(value)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _read_arrays(f: h5py.File, name: str) -> dict[str, np.ndarray]:
    if name not in f:
        return {}
    return {key: np.asarray(ds[()]) for key, ds in f[name].items()}


def _read_grid(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, group="grid", engine="h5netcdf") as ds:
        return ds.load()


def read_result(path: str | Path) -> Result:
    """Read a file written by :func:`write_result`; the grid is loaded into memory.

    Raises :class:`ResultFileError` (one line naming the file) when ``path`` is missing, is not
    HDF5, is HDF5 but not a proxflow result (no ``format_version`` attribute, or a study's table
    of :func:`write_table`, which :func:`read_table` reads), or is damaged (truncated, a
    temporary file of an interrupted write, unreadable).
    """
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(f"{path}: no such result file")
    if _TEMP_RE.fullmatch(path.name):
        # a leftover of an interrupted write, or a write still running: never a whole result
        raise ResultFileError(f"{path}: a temporary file of an unfinished write, not a result "
                              "(the finished file has the name without the leading '.' and "
                              "'.tmp-PID')")
    try:
        return _read_file(path)
    except ResultFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError) as err:
        # h5py reports damaged objects as KeyError/OSError, a wrong layout as the others
        raise ResultFileError(f"{path}: unreadable or damaged result file "
                              f"({type(err).__name__}: {_one_line(err)})") from None


def _read_file(path: Path) -> Result:
    """:func:`read_result` without the translation of low-level errors."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ResultFileError(f"{path}: not an HDF5 result file ({_one_line(err)})") from None
    with f:
        if "format_version" not in f.attrs:
            raise ResultFileError(f"{path}: not a proxflow result file (no format_version)")
        if _attr_str(f.attrs, "kind") == TABLE_KIND:
            study = _attr_str(f.attrs, "study", "?")
            raise ResultFileError(f"{path}: a table of study {study}, not a result (cli.py show "
                                  "prints it; mfg.results.read_table reads it)")
        result = Result(
            solver=_attr_str(f.attrs, "solver"),
            status=_attr_str(f.attrs, "status"),
            scenario_text=_attr_str(f.attrs, "scenario"),
            settings=json.loads(_attr_str(f.attrs, "settings", "{}")),
            samples=_read_arrays(f, "samples"),
            history=_read_arrays(f, "history"),
            mesh=_read_arrays(f, "mesh"),
            metrics={k: float(v) for k, v in f["metrics"].attrs.items()} if "metrics" in f else {},
            wall_time_s=float(f.attrs.get("wall_time_s", 0.0)),
            device=_attr_str(f.attrs, "device", "cpu"),
            versions=json.loads(_attr_str(f.attrs, "versions", "{}")),
            git_revision=_attr_str(f.attrs, "git_revision", "unknown"),
        )
        has_grid = "grid" in f
    if has_grid:
        try:
            result.grid = _read_grid(path)
        except (OSError, ValueError) as err:
            raise ResultFileError(f"{path}: unreadable grid group ({_one_line(err)})") from None
    return result


# ----------------------------------------------------------------------------------------------
# tables (studies: one row per run)

#: the ``kind`` attribute of a table file (a study's output, not a Result)
TABLE_KIND = "proxflow-table"


def write_table(columns: Mapping[str, np.ndarray | list], attrs: Mapping[str, str],
                path: str | Path) -> Path:
    """Write a table atomically (as :func:`write_result`): group ``/table`` with one 1-D dataset
    per column (equal lengths; numbers as float64/int64, text as UTF-8 strings) and the root
    attributes ``attrs`` (text) plus ``kind`` = TABLE_KIND and ``format_version``."""
    path = Path(path)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"table columns of unequal lengths {sorted(lengths)}")
    tmp = _temp_path(path)
    clean_stale_temporaries(path.parent)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["kind"] = TABLE_KIND
            f.attrs["format_version"] = FORMAT_VERSION
            for key, value in attrs.items():
                f.attrs[key] = str(value)
            group = f.create_group("table", track_order=True)  # columns keep their order
            for key, values in columns.items():
                values = list(values)
                if values and all(isinstance(v, str) for v in values):
                    group.create_dataset(key, data=values, dtype=h5py.string_dtype())
                else:
                    group.create_dataset(key, data=np.asarray(values))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(obj: object, path: str | Path) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary sibling renamed onto it)."""
    path = Path(path)
    tmp = _temp_path(path)
    try:
        tmp.write_text(_to_json(obj))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | Path) -> Any:
    """The object in a JSON file written by :func:`write_json`; None if the file is missing or
    not JSON (a cache to recompute, not an error)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_table(path: str | Path) -> bool:
    """Whether ``path`` is a file of :func:`write_table` (HDF5 whose ``kind`` is TABLE_KIND);
    False for anything else, unreadable files included."""
    try:
        with h5py.File(path, "r") as f:
            return _attr_str(f.attrs, "kind") == TABLE_KIND
    except (OSError, ValueError):
        return False


def read_table(path: str | Path) -> tuple[dict[str, np.ndarray | list[str]], dict[str, str]]:
    """(columns, attributes) of a file written by :func:`write_table`; text columns come back as
    lists of str. :class:`ResultFileError` (one line naming the file) if it is not one."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if _attr_str(f.attrs, "kind") != TABLE_KIND or "table" not in f:
                raise ResultFileError(f"{path}: not a proxflow table file")
            attrs = {k: _attr_str(f.attrs, k) for k in f.attrs}
            columns: dict[str, np.ndarray | list[str]] = {}
            for key, ds in f["table"].items():
                if h5py.check_string_dtype(ds.dtype) is not None:
                    columns[key] = [v.decode() if isinstance(v, bytes) else str(v)
                                    for v in ds[()]]
                else:
                    columns[key] = np.asarray(ds[()])
    except OSError as err:
        raise ResultFileError(f"{path}: not a readable table file ({_one_line(err)})") from None
    return columns, attrs
