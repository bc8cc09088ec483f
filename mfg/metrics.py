"""Distances between measures given by samples or weighted points (DESIGN.md §3 "compare").

* :func:`w2`: exact W2 = (min_P Σ_ij P_ij |x_i − y_j|²)^{1/2} between discrete measures (quantile
  functions in 1-D, POT's network simplex ``ot.emd2`` otherwise).
* :func:`sinkhorn_divergence`: the debiased Sinkhorn divergence of geomloss,
  S_ε(α, β) = OT_ε(α, β) − ½OT_ε(α, α) − ½OT_ε(β, β), with cost |x − y|^p/p and blur = ε^{1/p}.
* :func:`mmd2`: MMD_k²(α, β) = E k(x, x') + E k(y, y') − 2 E k(x, y) (V-statistic).
* :func:`precision_recall`: the share of each sample inside the other's k-nearest-neighbour
  estimate of its support (Kynkäänniemi et al. 2019): mass where the data is not (precision)
  and data the samples miss (recall), which one number such as S_ε does not tell apart.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

Measure = tuple[np.ndarray, np.ndarray]  # points (n, d), weights (n,) summing to 1

#: blur and p of the ``sinkhorn_to_target`` metric every family reports (the seed paper's)
EVAL_BLUR, EVAL_P = 0.05, 2
#: geomloss's ε-scaling ratio for :func:`sinkhorn_divergence` (its own default, 0.5, is biased low)
SINKHORN_SCALING = 0.9
#: k of the k-nearest-neighbour support estimate of :func:`precision_recall` (the paper's)
SUPPORT_NEIGHBOURS = 3
#: rows per block of the pairwise distances in :func:`knn_radii` and :func:`support_share`
_ROWS = 512
#: n·m above which :func:`sinkhorn_divergence` uses KeOps (geomloss ``online``) when it can,
#: in dimensions up to ONLINE_MAX_DIM, and above it beyond TENSORIZED_MAX_PAIRS
#: (:func:`sinkhorn_backend`)
ONLINE_PAIRS = 2500**2
ONLINE_MAX_DIM = 12
TENSORIZED_MAX_PAIRS = 6000**2
#: dimensions up to which an ε-scaling other than SINKHORN_SCALING uses KeOps's multiscale
#: variant where KeOps would run (:func:`sinkhorn_backend`): geomloss clusters the points on a
#: grid, which only pays in low dimension
MULTISCALE_MAX_DIM = 3


def _import_ot() -> Any:
    """``import ot`` with stdout silenced: POT loads pykeops, which prints a warning on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        import ot
    return ot


def w2_1d(x: Measure, y: Measure) -> float:
    """Exact W2 in 1-D through the quantile functions: W2^2 = int_0^1 |F^-1(u) - G^-1(u)|^2 du,
    both piecewise constant between the merged cumulative weights."""
    (xp, xw), (yp, yw) = x, y
    ix, iy = np.argsort(xp[:, 0]), np.argsort(yp[:, 0])
    xs, ys = xp[ix, 0], yp[iy, 0]
    cx, cy = np.cumsum(xw[ix]), np.cumsum(yw[iy])
    cx, cy = cx / cx[-1], cy / cy[-1]
    u = np.union1d(cx, cy)
    du = np.diff(u, prepend=0.0)
    mid = u - du / 2
    qx = xs[np.minimum(np.searchsorted(cx, mid), len(xs) - 1)]
    qy = ys[np.minimum(np.searchsorted(cy, mid), len(ys) - 1)]
    return float(np.sqrt(np.sum(du * (qx - qy) ** 2)))


def w2(x: Measure, y: Measure) -> float:
    """Exact W2 = sqrt(min_P sum_ij P_ij |x_i - y_j|^2) between two discrete measures: by
    quantiles in 1-D (:func:`w2_1d`), else by the network simplex (POT ``ot.emd2``)."""
    if x[0].shape[1] == 1:
        return w2_1d(x, y)
    ot = _import_ot()
    cost = ot.dist(x[0], y[0], metric="sqeuclidean")
    return float(np.sqrt(max(ot.emd2(x[1], y[1], cost, numItermax=10_000_000), 0.0)))




def uniform(x: np.ndarray) -> Measure:
    """The empirical measure (1/n) Σ δ_{x_i} of samples x, shape (n, d)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x, np.full(len(x), 1.0 / len(x))


def _import_geomloss() -> Any:
    """``geomloss`` with stdout silenced (pykeops prints a warning on stdout without CUDA)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import geomloss
    return geomloss


def sinkhorn_backend(pairs: int, dim: int, scaling: float = SINKHORN_SCALING) -> str:
    """geomloss backend for n·m = ``pairs`` point pairs in R^dim at ε-scaling ``scaling``: the
    dense ``tensorized`` one (n × m cost matrices, about 72 bytes a pair at its peak: 1.8 GB at
    5,000 × 5,000) below ONLINE_PAIRS, and in more than ONLINE_MAX_DIM dimensions up to
    TENSORIZED_MAX_PAIRS (2.6 GB); else KeOps's ``online`` reductions when pykeops works here
    (O(n + m) memory; each dimension's formula is compiled once, a few seconds, then cached),
    else ``tensorized``. In up to MULTISCALE_MAX_DIM dimensions at a scaling other than
    SINKHORN_SCALING, KeOps's ``multiscale`` in place of ``online``.

    Why the dimension: KeOps recomputes the d-dimensional distances at every Sinkhorn iteration,
    the dense backend once. Measured at ε-scaling 0.9, one CPU thread, S_ε equal to 10 digits:
    5,000 × 5,000 points, online 55 s and tensorized 99 s in R^2, 113 s and 121 s in R^12;
    2,000 × 2,000 points, 105 s and 10 s in R^64 (the 5,000-point Sinkhorn figure of a digits
    evaluation: 702 s online, 132 s tensorized). bench/metrics.py measures it again.

    Why multiscale, and only off the default scaling: geomloss's multiscale backend runs the
    coarse ε of the annealing on clusters of the points and the fine ones on the cluster pairs
    whose cost is within reach of the kernel, which is what makes a converged S_ε (scaling
    0.999, 100× the iterations of 0.9) affordable on a CPU in 2-D: two 5,000-point pinwheel
    draws, one thread with other processes on the two cores, 136 s for 1.02033e-2, where the
    online backend would take about 100 × 55 s and an H200 gave 1.0203e-2. Before convergence its
    estimate is another one, since its schedule differs (the same pair at 0.9: 6.468e-3
    against 6.43e-3), so the default scaling keeps the backends every recorded figure was
    made with."""
    if pairs < ONLINE_PAIRS or (dim > ONLINE_MAX_DIM and pairs <= TENSORIZED_MAX_PAIRS):
        return "tensorized"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import pykeops  # noqa: F401
    except ImportError:
        return "tensorized"
    return "multiscale" if dim <= MULTISCALE_MAX_DIM and scaling != SINKHORN_SCALING else "online"


def sinkhorn_divergence(x: Any, y: Any, blur: float = EVAL_BLUR, p: int = EVAL_P,
                        scaling: float = SINKHORN_SCALING, a: Any = None,
                        b: Any = None, backend: str | None = None) -> float:
    """Debiased Sinkhorn divergence S_ε(α, β) = OT_ε(α, β) − ½OT_ε(α, α) − ½OT_ε(β, β) between
    the discrete measures α = Σ_i a_i δ_{x_i} and β = Σ_j b_j δ_{y_j} of points x (n, d) and
    y (m, d), with cost |x − y|^p/p and ε = blur^p. The weights a (n,) and b (m,) sum to 1;
    None: uniform (the empirical measures of samples). ``backend``: geomloss's
    (``tensorized``, ``online``, ``multiscale``); None: :func:`sinkhorn_backend`'s choice (the
    same number up to round-off, at another cost; ``multiscale``: the same once converged).

    geomloss ``SamplesLoss("sinkhorn", p, blur, debias=True, scaling)``, float64 on the points'
    device (numpy arrays are taken as CPU tensors). ``scaling`` is the ratio of geomloss's
    ε-annealing schedule (diameter^p down to blur^p): the closer to 1, the more iterations and
    the closer to the converged S_ε. geomloss's own default, 0.5, stops far from it: for two
    independent 5,000-point pinwheel draws it gives 2.1e-3 where 0.9 gives 8.8e-3 and 0.95
    1.0e-2, and across draws it even turns negative, which S_ε never is. 0.9 (SINKHORN_SCALING)
    costs about 3× as much as 0.5 and leaves the metric's floor positive. It is not converged
    either: on four pairs of independent 2,000-point moons draws, S_ε rises by 25–58% from 0.9 to
    0.99 (5× the cost), while the spread across the pairs (5.7e-3 to 1.1e-2 at 0.9, 8.5e-3 to
    1.4e-2 at 0.99) is the same: the spread is sampling, the bias is the schedule's. It lowers a
    floor more than a figure above it, so ratios to the floor read larger at 0.9 than converged
    (a trained 2-D pinwheel model against a 5,000-point draw: 1.42 at 0.9, 1.18 at 0.99, 1.12 at
    0.999 and 0.9995). 0.999 is converged: it matches POT's log-domain Sinkhorn to 1e-6 on a
    small case (tests/test_metrics.py), and moves S_ε by 2e-4 at most on to 0.9995 for 5,000
    pinwheel points; it costs 100× as much as 0.9 (measured on an H200 GPU at 5,000 × 5,000:
    12 s per figure against 0.12 s; at that ratio, hours on one CPU core with the dense or
    online backend, and a few minutes in up to three dimensions, where
    :func:`sinkhorn_backend` then takes the multiscale one).
    """
    import torch

    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64, device=xt.device)
    both = torch.cat((xt, yt))
    if torch.equal(both.amin(0), both.amax(0)):
        # every point of both at one place: the same Dirac mass, S_ε = 0; geomloss anneals ε
        # from the points' diameter, and raises on a diameter of 0
        return 0.0
    if backend is None:
        backend = sinkhorn_backend(len(xt) * len(yt), xt.shape[1], scaling)
    loss = _import_geomloss().SamplesLoss("sinkhorn", p=p, blur=blur, debias=True,
                                           scaling=scaling, backend=backend)
    at, bt = (torch.full((len(z),), 1.0 / len(z), dtype=torch.float64, device=xt.device)
              if w is None else torch.as_tensor(w, dtype=torch.float64, device=xt.device)
              for z, w in ((xt, a), (yt, b)))
    # KeOps announces each formula it compiles on stdout: not ours to print
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        return float(loss(at, xt, bt, yt))


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a_i − b_j|² for a (n, d), b (m, d): (n, m), clipped at 0 against rounding."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def _kernel(d2: np.ndarray, kernel: str, bandwidth: float) -> np.ndarray:
    """k(x, y) from squared distances: gaussian e^{−|x−y|²/(2h²)}, laplace e^{−|x−y|/h},
    energy −|x − y| (the conditionally positive definite energy-distance kernel)."""
    if kernel == "gaussian":
        return np.exp(-d2 / (2 * bandwidth**2))
    if kernel == "laplace":
        return np.exp(-np.sqrt(d2) / bandwidth)
    if kernel == "energy":
        return -np.sqrt(d2)
    raise ValueError(f"unknown kernel {kernel!r} (gaussian, laplace, energy)")


def mmd2(x: np.ndarray, y: np.ndarray, kernel: str = "gaussian", bandwidth: float = 1.0) -> float:
    """MMD_k² between the empirical measures of x (n, d) and y (m, d) (V-statistic, O(nm) memory:
    meant for evaluation on a few thousand points)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)

    def mean_k(a: np.ndarray, b: np.ndarray) -> float:
        return float(_kernel(_sq_distances(a, b), kernel, bandwidth).mean())

    return mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)


def knn_radii(y: np.ndarray, k: int = SUPPORT_NEIGHBOURS) -> np.ndarray:
    """r_k(y_j): the distance from each row y_j of y (m, d) to its k-th nearest other row, (m,)."""
    y = np.asarray(y, dtype=np.float64)
    if not 1 <= k < len(y):
        raise ValueError(f"k: expected 1 <= k < {len(y)} (the number of points), got {k}")
    out = np.empty(len(y))
    for i in range(0, len(y), _ROWS):
        d2 = _sq_distances(y[i:i + _ROWS], y)
        # the row's own point is at distance 0, so the k-th other one is the (k+1)-th smallest
        out[i:i + _ROWS] = np.sqrt(np.partition(d2, k, axis=1)[:, k])
    return out


def support_share(x: np.ndarray, y: np.ndarray, k: int = SUPPORT_NEIGHBOURS) -> float:
    """(1/n) Σ_i 1[∃ j: |x_i − y_j| <= r_k(y_j)]: the share of the rows of x (n, d) inside the
    union of the balls B(y_j, r_k(y_j)) (:func:`knn_radii`), the k-nearest-neighbour estimate
    of the support of the law of y (m, d). O(nm) time, O(512·m) memory."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    r2 = knn_radii(y, k) ** 2
    inside = sum(int(np.count_nonzero((_sq_distances(x[i:i + _ROWS], y) <= r2).any(axis=1)))
                 for i in range(0, len(x), _ROWS))
    return inside / len(x)


def precision_recall(x: np.ndarray, y: np.ndarray,
                     k: int = SUPPORT_NEIGHBOURS) -> tuple[float, float]:
    """(precision, recall) of generated samples x (n, d) against data y (m, d) (Kynkäänniemi et
    al. 2019, "Improved precision and recall metric for assessing generative models"):
    precision = :func:`support_share` (x, y, k), the share of the samples on the data's
    estimated support; recall = support_share(y, x, k), the share of the data on the samples'.
    Two draws of the same law give neither 1 (read them against that floor): on the 2-D
    pinwheel, 5,000 points each, k = 3, both are 0.975-0.979 (three pairs of draws)."""
    return support_share(x, y, k), support_share(y, x, k)
