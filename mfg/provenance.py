"""Provenance of a run: package versions and the git revision of the code that produced it."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

#: result key -> distribution name (as pip knows it)
PACKAGES: dict[str, str] = {
    "proxflow": "proxflow",
    "numpy": "numpy",
    "scipy": "scipy",
    "torch": "torch",
    "torchdiffeq": "torchdiffeq",
    "pot": "POT",
    "geomloss": "geomloss",
    "pykeops": "pykeops",
    "h5py": "h5py",
    "h5netcdf": "h5netcdf",
    "xarray": "xarray",
    "matplotlib": "matplotlib",
    "dolfinx": "fenics-dolfinx",
}

#: the repository root (the folder holding cli.py and mfg/)
REPO_DIR = Path(__file__).resolve().parent.parent


def versions() -> dict[str, str]:
    """``{"python": ..., package: version, ...}`` for the packages in :data:`PACKAGES` that are
    installed (looked up with importlib.metadata, so nothing is imported); missing ones are skipped.
    """
    found = {"python": platform.python_version()}
    for key, dist in PACKAGES.items():
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def _git(args: list[str], repo_dir: Path) -> str:
    """stdout of ``git <args>`` run in ``repo_dir``; raises on failure."""
    done = subprocess.run(
        ["git", *args], cwd=repo_dir, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout


def git_revision(repo_dir: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of ``repo_dir`` (default: this repository), with ``-dirty`` appended
    when ``git status --porcelain`` lists changes; ``"unknown"`` when it is not a git repository,
    has no commit yet, or git is missing. Never raises.
    """
    where = Path(repo_dir) if repo_dir is not None else REPO_DIR
    try:
        revision = _git(["rev-parse", "HEAD"], where).strip()
        if not revision:
            return "unknown"
        if _git(["status", "--porcelain"], where).strip():
            revision += "-dirty"
        return revision
    except (OSError, subprocess.SubprocessError, ValueError):
        return "unknown"
