"""Test-wide settings: two cores on CI, so numerical libraries are pinned to at most two threads
(torch reads OMP_NUM_THREADS too; the Makefile exports it)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")


def pytest_configure(config) -> None:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
