"""Test-wide settings for a 2-core machine.

`make test` runs two pytest-xdist workers (one per core, whole files each, so a module's
fixtures are computed once) with one BLAS/numba thread each; run alone (plain `pytest`), NumPy/SciPy
BLAS may use two threads (OMP_NUM_THREADS, exported by the Makefile). torch runs
with one intra-op thread: its tests run many small ops, and on a loaded 2-core machine a second
thread made them 50–100x slower (OpenMP barriers waiting on a descheduled thread: a neural step
measured 6.7 s instead of 0.07 s).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")


def pytest_configure(config) -> None:
    import torch

    torch.set_num_threads(1)
