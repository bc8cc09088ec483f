"""Kernel sums over all pairs (x_i, y_j) in O(N) memory: chunked torch, or KeOps (pykeops).

Two primitives cover every kernel field of :mod:`solvers.particle.fields`:

* :func:`softmax_stats` — for logits l_ij = −c(x_i, y_j)/τ + b_j (c = |x − y| for the Laplace
  kernel, c = |x − y|²/2 with τ = h² for the Gaussian one; b an optional column offset; the pair
  i = j dropped when ``exclude_self``) it returns, per row,
  ``lse_i = log Σ_j exp(l_ij)`` (n,) and ``mean_i = Σ_j softmax_j(l_i·) y_j`` (n, d).
* :func:`kernel_grad_sum` — ``G_i = Σ_j w_j ∇_x k(x_i, y_j)`` (n, d) for the kernels
  gaussian e^{−r²/(2h²)}, laplace e^{−r/h}, energy −r and riesz −r^a (0 < a < 2), r = |x − y|.

Backends: ``"torch"`` loops over blocks of rows, so that no more than ``chunk`` × m entries live
at once (``chunk = 0``: as many rows as fit in :data:`CHUNK_ENTRIES` entries); ``"keops"`` builds
the same formula as symbolic LazyTensors (never materialized); ``"auto"`` is KeOps on CUDA when
pykeops imports, chunked torch otherwise. Both give the same answers to rounding
(tests/test_particle_fields.py).
"""

from __future__ import annotations

import contextlib
import functools
import io
from typing import Any

import torch

Tensor = torch.Tensor

#: entries (rows × columns) of one block of the chunked torch backend (2^22 ≈ 32 MiB in float64)
CHUNK_ENTRIES = 1 << 22
#: logit added to masked (self) pairs
_MASKED = -1e30
KERNELS = ("gaussian", "laplace", "energy", "riesz")
BACKENDS = ("auto", "torch", "keops")


@functools.cache
def _keops() -> Any:
    """``pykeops.torch`` (stdout silenced: pykeops prints a warning there without CUDA), or None."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import pykeops.torch as pkt
    except Exception:  # noqa: BLE001 - any failure to load means "not available"
        return None
    return pkt


def keops_available() -> bool:
    return _keops() is not None


def resolve_backend(backend: str, device: torch.device | str | None = None) -> str:
    """``auto`` -> ``keops`` on a CUDA device when pykeops loads, else chunked ``torch`` (on the
    CPU chunked torch was measured faster than KeOps: 0.8x the time at d = 2 and 0.06x at d = 64,
    bench/particles.py); ``keops`` must load."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown {backend!r} (one of: {', '.join(BACKENDS)})")
    if backend == "auto":
        on_cuda = device is not None and torch.device(device).type == "cuda"
        return "keops" if on_cuda and keops_available() else "torch"
    if backend == "keops" and not keops_available():
        raise RuntimeError("backend: keops requested but pykeops cannot be imported")
    return backend


def _rows(n: int, m: int, chunk: int) -> int:
    return chunk if chunk > 0 else max(1, CHUNK_ENTRIES // max(m, 1))


def _sqdist(x: Tensor, y: Tensor) -> Tensor:
    """|x_i − y_j|² (c, m), clamped at 0 (the expansion |x|² + |y|² − 2x·y)."""
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return d2.clamp_min_(0.0)


def _logits_torch(
    x: Tensor, y: Tensor, tau: float, kernel: str, offset: Tensor | None, row0: int,
    exclude_self: bool,
) -> Tensor:
    d2 = _sqdist(x, y)
    logits = -(d2.sqrt() if kernel == "laplace" else 0.5 * d2) / tau
    if offset is not None:
        logits = logits + offset[None, :]
    if exclude_self:
        rows = torch.arange(row0, row0 + len(x), device=x.device)
        logits[torch.arange(len(x), device=x.device), rows] = _MASKED
    return logits


def softmax_stats(
    x: Tensor,
    y: Tensor,
    tau: float,
    kernel: str = "laplace",
    offset: Tensor | None = None,
    exclude_self: bool = False,
    want_mean: bool = True,
    backend: str = "auto",
    chunk: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Row log-sum-exp and softmax mean of y for the logits l_ij = −c(x_i, y_j)/τ + b_j.

    x (n, d), y (m, d), offset b (m,) or None. ``kernel``: ``laplace`` (c = |x − y|) or
    ``gaussian`` (c = |x − y|²/2; pass τ = h²). ``exclude_self`` drops j = i (needs n = m: y is
    x). Returns ``lse`` (n,) and ``mean`` (n, d) = Σ_j e^{l_ij − lse_i} y_j (None unless
    ``want_mean``).
    """
    if kernel not in ("laplace", "gaussian"):
        raise ValueError(f"softmax_stats: kernel must be laplace or gaussian (got {kernel!r})")
    if exclude_self and len(x) != len(y):
        raise ValueError("softmax_stats: exclude_self needs y to be x (same length)")
    if resolve_backend(backend, x.device) == "keops":
        return _softmax_stats_keops(x, y, tau, kernel, offset, exclude_self, want_mean)
    lse = torch.empty(len(x), dtype=x.dtype, device=x.device)
    mean = torch.empty_like(x) if want_mean else None
    step = _rows(len(x), len(y), chunk)
    for start in range(0, len(x), step):
        stop = min(start + step, len(x))
        logits = _logits_torch(x[start:stop], y, tau, kernel, offset, start, exclude_self)
        lse_c = torch.logsumexp(logits, dim=1)
        lse[start:stop] = lse_c
        if mean is not None:
            mean[start:stop] = torch.exp(logits - lse_c[:, None]) @ y
    return lse, mean


def _softmax_stats_keops(
    x: Tensor, y: Tensor, tau: float, kernel: str, offset: Tensor | None, exclude_self: bool,
    want_mean: bool,
) -> tuple[Tensor, Tensor | None]:
    lazy = _keops().LazyTensor
    xi, yj = lazy(x.contiguous()[:, None, :]), lazy(y.contiguous()[None, :, :])
    d2 = ((xi - yj) ** 2).sum(-1)
    logits = -(d2.sqrt() if kernel == "laplace" else 0.5 * d2) / tau
    if offset is not None:
        logits = logits + lazy(offset.contiguous()[None, :, None])
    if exclude_self:
        idx = torch.arange(len(x), dtype=x.dtype, device=x.device)[:, None]
        ii, jj = lazy(idx[:, None, :]), lazy(idx.clone()[None, :, :])
        logits = logits + _MASKED * (0.5 - (ii - jj).abs()).step()
    lse = logits.logsumexp(dim=1).reshape(-1)
    mean = logits.sumsoftmaxweight(yj, dim=1) if want_mean else None
    return lse, mean


def _kernel_factor_torch(d2: Tensor, kernel: str, h: float, a: float, pos: Tensor) -> Tensor:
    """φ(r) with ∇_x k(x, y) = φ(|x − y|)·(x − y); 0 where not ``pos`` (coincident pairs) for the
    singular kernels."""
    if kernel == "gaussian":
        return -torch.exp(-0.5 * d2 / h**2) / h**2
    safe = torch.where(pos, d2, torch.ones_like(d2))
    if kernel == "laplace":
        r = safe.sqrt()
        f = -torch.exp(-r / h) / (h * r)
    elif kernel == "energy":
        f = -safe.rsqrt()
    elif kernel == "riesz":
        f = -a * safe ** (0.5 * a - 1.0)
    else:
        raise ValueError(f"unknown kernel {kernel!r} (one of: {', '.join(KERNELS)})")
    return torch.where(pos, f, torch.zeros_like(f))


def kernel_grad_sum(
    x: Tensor,
    y: Tensor,
    w: Tensor,
    kernel: str = "gaussian",
    bandwidth: float = 1.0,
    riesz_a: float = 1.0,
    backend: str = "auto",
    chunk: int = 0,
) -> Tensor:
    """G_i = Σ_j w_j ∇_x k(x_i, y_j), shape (n, d); x (n, d), y (m, d), w (m,).

    ∇_x k = φ(r)(x − y), r = |x − y|: gaussian φ = −e^{−r²/(2h²)}/h², laplace φ = −e^{−r/h}/(h r),
    energy (Riesz a = 1) φ = −1/r, riesz φ = −a r^{a−2}; the pair r = 0 contributes 0. The torch
    backend forms G_i = (Σ_j w_j φ_ij) x_i − Σ_j w_j φ_ij y_j from r² = |x|² + |y|² − 2x·y, so
    for the singular kernels it counts pairs with r² ≤ 8·eps·(|x|² + |y|²) (rounding level) as
    coincident (contributing 0); KeOps works with x − y directly.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r} (one of: {', '.join(KERNELS)})")
    if resolve_backend(backend, x.device) == "keops":
        return _kernel_grad_sum_keops(x, y, w, kernel, bandwidth, riesz_a)
    out = torch.empty_like(x)
    step = _rows(len(x), len(y), chunk)
    for start in range(0, len(x), step):
        xc = x[start:start + step]
        d2 = _sqdist(xc, y)
        scale = (xc * xc).sum(1)[:, None] + (y * y).sum(1)[None, :]
        pos = d2 > 8 * torch.finfo(x.dtype).eps * scale
        phi = _kernel_factor_torch(d2, kernel, bandwidth, riesz_a, pos) * w[None, :]
        out[start:start + step] = phi.sum(1)[:, None] * xc - phi @ y
    return out


def _kernel_grad_sum_keops(
    x: Tensor, y: Tensor, w: Tensor, kernel: str, h: float, a: float
) -> Tensor:
    lazy = _keops().LazyTensor
    xi, yj = lazy(x.contiguous()[:, None, :]), lazy(y.contiguous()[None, :, :])
    wj = lazy(w.contiguous()[None, :, None])
    diff = xi - yj
    d2 = (diff**2).sum(-1)
    if kernel == "gaussian":
        phi = -(-0.5 * d2 / h**2).exp() / h**2
    elif kernel == "laplace":  # KeOps: rsqrt(0) = 0, so the pair r = 0 gives 0
        phi = -(-d2.sqrt() / h).exp() * d2.rsqrt() / h
    elif kernel == "energy":
        phi = -d2.rsqrt()
    else:
        phi = -a * d2.rsqrt() ** (2.0 - a) if a != 1.0 else -d2.rsqrt()
    return (phi * wj * diff).sum(dim=1)


def kernel_sum(
    x: Tensor,
    y: Tensor,
    w: Tensor,
    kernel: str = "gaussian",
    bandwidth: float = 1.0,
    riesz_a: float = 1.0,
    backend: str = "auto",
    chunk: int = 0,
) -> Tensor:
    """S_i = Σ_j w_j k(x_i, y_j), shape (n,): gaussian e^{−r²/(2h²)}, laplace e^{−r/h},
    energy −r, riesz −r^a (chunked torch or KeOps, as above)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r} (one of: {', '.join(KERNELS)})")
    if resolve_backend(backend, x.device) == "keops":
        lazy = _keops().LazyTensor
        d2 = ((lazy(x.contiguous()[:, None, :]) - lazy(y.contiguous()[None, :, :])) ** 2).sum(-1)
        k = {
            "gaussian": lambda: (-0.5 * d2 / bandwidth**2).exp(),
            "laplace": lambda: (-d2.sqrt() / bandwidth).exp(),
            "energy": lambda: -d2.sqrt(),
            "riesz": lambda: -(d2.sqrt() ** riesz_a) if riesz_a != 1.0 else -d2.sqrt(),
        }[kernel]()
        return (k * lazy(w.contiguous()[None, :, None])).sum(dim=1).reshape(-1)
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    step = _rows(len(x), len(y), chunk)
    for start in range(0, len(x), step):
        r2 = _sqdist(x[start:start + step], y)
        k = {
            "gaussian": lambda r2=r2: torch.exp(-0.5 * r2 / bandwidth**2),
            "laplace": lambda r2=r2: torch.exp(-r2.sqrt() / bandwidth),
            "energy": lambda r2=r2: -r2.sqrt(),
            "riesz": lambda r2=r2: -(r2.sqrt() ** riesz_a),
        }[kernel]()
        out[start:start + step] = k @ w
    return out
