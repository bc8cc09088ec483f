"""Measures of a generated sample against a target on a plane embedded in R^d (DESIGN.md §2,
neural: "manifold targets"), used by ``cli.py study manifold``.

A 2-D toy data set embedded in R^d (mfg.datasets.embed) lies in the plane P = range(Q), with
Q ∈ R^{d×2} orthonormal (QᵀQ = I): the first two axes for ``pad``, the isometry of
``mfg.datasets.isometry`` otherwise. For samples x_i (n, d) and fresh target samples y_j:

* full-dimension debiased Sinkhorn S_ε(x, y) (``mfg.metrics.sinkhorn_divergence``: cost |x−y|^p/p,
  blur ε^{1/p}; here p = 2, blur 0.05, the seed paper's setting);
* the same between the plane coordinates Qᵀx_i and Qᵀy_j (n, 2): how well the flow matches the
  data *within* the plane, whatever it does off it;
* the distance to the plane r_i = |x_i − QQᵀx_i|, summarized by its mean (1/n)Σ r_i, RMS
  ((1/n)Σ r_i²)^{1/2} and 99th percentile (exact: the plane is known);
* precision and recall (mfg.metrics.precision_recall, k = 3, in R^d): the share of the samples
  on the k-nearest-neighbour estimate of the data's support, and of the data on the samples'.
  S_ε mixes mass where the data is not (a flow of a connected source leaves bridges between the
  pieces of a target) with data the samples miss; these two tell them apart;
* the metric's floor: S_ε between two independent target draws of the same size (and in the plane
  coordinates), below which no sample of that size can be told from the data, and the precision
  and recall of the second draw against the first;
* the figure of the posed problem's own answer: at finite τ = T/λ the proximal's terminal law is
  not π, so even an exact solver sits above the floor. For KL and the Lipschitz-regularized KL
  (while its bound is slack) that law is solved exactly on a target draw by mfg.kl_proximal (POT's
  EMD), and S_ε between it and the second draw is what a run is read against
  (:func:`exact_metrics`).

Each S_ε is geomloss's ε-scaling estimate at ``scaling`` (mfg.metrics.SINKHORN_SCALING, 0.9, by
default: the ratios to the floor read high there, as both figures are biased low and the floor
more; 0.999 is converged, see mfg.metrics.sinkhorn_divergence).

One draw is a noisy reading: S_ε between two 5,000-point draws of the same toy set ranged over a
factor of 2.7 (pinwheel) to 8 (moons) in ten draws (DRAWS), so the study averages each Sinkhorn
figure and its floor over several independent draws (:func:`target_draws` with ``draw`` = 0, 1,
...; :func:`mean_over_draws`), pairing the k-th sample figure with the k-th floor. The generated
side is noisy too, and more so: one trained 2-D moons model read 3.9e-3 to 1.14e-2 against the
same target draw over twelve 5,000-point source draws pushed through it, where the floors of
its three target draws were 1.2e-3 to 1.3e-3. So each draw pairs a fresh target draw with a
fresh generated sample as well (:func:`generated_draws`).

Plain functions on numpy arrays; nothing here imports a solver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mfg.datasets import EMBEDDINGS, isometry
from mfg.metrics import SINKHORN_SCALING, precision_recall, sinkhorn_divergence

Array = np.ndarray

#: Sinkhorn settings of the study (DESIGN.md §5: debiased, p = 2, blur 0.05)
BLUR, P = 0.05, 2
#: the embedding label of runs at d = 2, where every embedding is the identity
ANY_EMBEDDING = "any"
#: per-sample metrics (:func:`sample_metrics`) and per-draw floors (:func:`floor_metrics`)
SAMPLE_KEYS = ("sinkhorn", "sinkhorn_plane", "precision", "recall", "plane_dist_mean",
               "plane_dist_rms", "plane_dist_p99")
#: the sample metrics that depend on the target draw (the distances to the plane do not)
DRAW_KEYS = ("sinkhorn", "sinkhorn_plane", "precision", "recall")
FLOOR_KEYS = ("sinkhorn_floor", "sinkhorn_plane_floor", "precision_floor", "recall_floor")
#: per-draw measures of the problem's exact answer (:func:`exact_metrics`)
EXACT_KEYS = ("sinkhorn_exact", "exact_lipschitz_needed")
#: the largest draw the exact answer is computed for: its EMD holds two n × n float64 arrays
#: (1.6 GB at 10,000) and takes minutes per step beyond a few thousand points
EXACT_MAX_SAMPLES = 10_000
#: the certified ℓ1 distance of the exact answer's weights from the minimizer's
#: (mfg.kl_proximal.kl_proximal_weights ``tol``): 0.01% of the mass
EXACT_TOL = 1e-4
#: how the exact answer is solved, in its cache stamp: a cache of another method is recomputed
EXACT_SOLVER = "dual conditional gradient, certified"
#: target draws per run by default (``study manifold --draws``). Measured with 10 pairs of
#: 5,000-point draws: the floor S_ε(y, y') has mean 3.5e-3, standard deviation 1.9e-3 and range
#: 1.0e-3 to 8.2e-3 on the moons, mean 5.9e-3, sd 1.8e-3, range 3.5e-3 to 9.5e-3 on the pinwheel;
#: averaging DRAWS draws divides the spread by about DRAWS^½.
DRAWS = 3


def plane_basis(dim: int, embedding: str, seed: int = 0) -> Array:
    """Q (dim, 2) with orthonormal columns spanning the plane the 2-D data is embedded in, so that
    ``mfg.datasets.embed(z, dim, embedding, seed) == z @ Q.T`` for z (n, 2): the identity at
    dim = 2, the first two axes for ``pad``, ``mfg.datasets.isometry(dim, seed)`` otherwise."""
    if dim < 2:
        raise ValueError(f"dim: the data plane needs dim >= 2 (got {dim})")
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding: unknown {embedding!r} (one of: {', '.join(EMBEDDINGS)})")
    if dim == 2 or embedding == "pad":
        return np.eye(dim, 2)
    return isometry(dim, seed)


def plane_coordinates(x: Array, q: Array) -> Array:
    """Coordinates Qᵀx of the orthogonal projection of the rows of x (n, d) on range(Q): (n, 2)."""
    return np.asarray(x, dtype=np.float64) @ q


def plane_distance(x: Array, q: Array) -> Array:
    """r_i = |x_i − QQᵀx_i|, the Euclidean distance of each row of x (n, d) to range(Q): (n,)."""
    x = np.asarray(x, dtype=np.float64)
    return np.linalg.norm(x - plane_coordinates(x, q) @ q.T, axis=1)


def distance_stats(x: Array, q: Array) -> dict[str, float]:
    """Mean (1/n)Σ r_i, RMS ((1/n)Σ r_i²)^{1/2} and 99th percentile (numpy's linear
    interpolation) of r = :func:`plane_distance` (x, q)."""
    r = plane_distance(x, q)
    return {"plane_dist_mean": float(r.mean()),
            "plane_dist_rms": float(np.sqrt(np.mean(r * r))),
            "plane_dist_p99": float(np.percentile(r, 99))}


def _sinkhorn(x: Array, y: Array, device: str, scaling: float, a: Array | None = None) -> float:
    """S_ε(Σ a_i δ_{x_i}, y) with the study's settings (BLUR, P) at ε-scaling ``scaling``,
    computed on ``device``; a (n,) weights summing to 1, None: uniform."""
    import torch

    xt = torch.as_tensor(np.asarray(x, dtype=np.float64), device=device)
    at = None if a is None else torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)
    return sinkhorn_divergence(xt, np.asarray(y, dtype=np.float64), blur=BLUR, p=P,
                               scaling=scaling, a=at)


def sample_metrics(x: Array, y: Array, q: Array, device: str = "cpu",
                   scaling: float = SINKHORN_SCALING) -> dict[str, float]:
    """Metrics of generated samples x (n, d) against target samples y (m, d) on the plane of
    Q (d, 2): ``sinkhorn`` S_ε(x, y), ``sinkhorn_plane`` S_ε(Qᵀx, Qᵀy), ``precision`` and
    ``recall`` (mfg.metrics.precision_recall in R^d) and the distance statistics of
    :func:`distance_stats`. Samples with a non-finite entry give NaN for all."""
    if not np.all(np.isfinite(x)):
        return dict.fromkeys(SAMPLE_KEYS, float("nan"))
    full = _sinkhorn(x, y, device, scaling)
    plane = full if _is_identity(q) else _sinkhorn(plane_coordinates(x, q),
                                                   plane_coordinates(y, q), device, scaling)
    precision, recall = precision_recall(x, y)
    return ({"sinkhorn": full, "sinkhorn_plane": plane, "precision": precision,
             "recall": recall} | distance_stats(x, q))


def floor_metrics(y1: Array, y2: Array, q: Array, device: str = "cpu",
                  plane_floor: float | None = None,
                  scaling: float = SINKHORN_SCALING) -> dict[str, float]:
    """The floors of the two Sinkhorn metrics: S_ε(y1, y2) and S_ε(Qᵀy1, Qᵀy2) between two
    independent target draws y1, y2 (n, d) of the size the samples have, and the precision and
    recall of y2 against y1 (as :func:`sample_metrics` reads samples x against y1).
    ``plane_floor``: the second when already known (embedded draws of the same 2-D points have
    the same plane coordinates whatever d and the embedding)."""
    full = _sinkhorn(y1, y2, device, scaling)
    if plane_floor is None:
        plane_floor = full if _is_identity(q) else _sinkhorn(
            plane_coordinates(y1, q), plane_coordinates(y2, q), device, scaling)
    precision, recall = precision_recall(y2, y1)
    return {"sinkhorn_floor": full, "sinkhorn_plane_floor": plane_floor,
            "precision_floor": precision, "recall_floor": recall}


def kl_proximal_problem(terminal: Any, lam: float,
                        T: float) -> tuple[float, float | None] | None:
    """(τ, L) when the terminal cost's answer is the KL proximal's (mfg.kl_proximal): τ = T/λ,
    L None (no bound) for ``f: kl``, the Lipschitz bound for ``lipschitz_f`` with f = kl (the
    answer is then exact only while ``lipschitz_needed`` <= L); None for every other cost."""
    if terminal.kind == "f" and terminal.f == "kl":
        return T / lam, None
    if terminal.kind == "lipschitz_f" and terminal.f == "kl":
        return T / lam, float(terminal.L)
    return None


def exact_metrics(x0: Array, y1: Array, y2: Array, tau: float, L: float | None,
                  device: str = "cpu", scaling: float = SINKHORN_SCALING) -> dict[str, float]:
    """The figure of the posed problem's exact answer: ρ_T = Σ w_j δ_{y1_j}, the minimizer of
    W2²(μ0, ρ)/(2τ) + KL(ρ‖π) on the target draw y1 (n, d) from the source draw x0 (m, d)
    (mfg.kl_proximal.kl_proximal_weights), measured like a run: ``sinkhorn_exact`` =
    S_ε(ρ_T, y2) against the independent draw y2, so that with τ → ∞ it is the floor
    S_ε(y1, y2). NaN when the weights are not certified within EXACT_TOL (ℓ1) of the exact
    minimizer's or when the answer needs a critic steeper than L (``exact_lipschitz_needed`` > L:
    then it is not D_L's answer; None: KL, no bound)."""
    from mfg.kl_proximal import kl_proximal_weights

    sol = kl_proximal_weights(x0, y1, tau, tol=EXACT_TOL)
    ok = sol.converged and (L is None or sol.lipschitz_needed <= L)
    figure = _sinkhorn(y1, y2, device, scaling, a=sol.weights) if ok else float("nan")
    return {"sinkhorn_exact": figure, "exact_lipschitz_needed": sol.lipschitz_needed}


def _is_identity(q: Array) -> bool:
    """Whether Q is the identity of R² (d = 2: the plane coordinates are the samples)."""
    return q.shape == (2, 2) and bool(np.array_equal(q, np.eye(2)))


def target_draws(target: Any, n: int, seed: int, draw: int = 0) -> tuple[Array, Array]:
    """The ``draw``-th pair of independent draws of n target samples (``target.sample(n, rng)``),
    from the streams default_rng([seed, 7]) and default_rng([seed, 8]) for draw 0 and
    default_rng([seed, 7, draw]) and default_rng([seed, 8, draw]) for draw >= 1: separate from each
    other and from every stream a solver draws from (training: default_rng(seed); the neural
    solver's evaluation: [seed, 1]). Draw 0 is the study's single draw of earlier versions."""
    if draw < 0:
        raise ValueError(f"draw: a draw index is >= 0 (got {draw})")
    tail = [draw] if draw else []
    return (target.sample(n, np.random.default_rng([seed, 7, *tail])),
            target.sample(n, np.random.default_rng([seed, 8, *tail])))


def source_draw(source: Any, n: int, seed: int, draw: int = 0) -> Array:
    """The ``draw``-th draw of n source samples for :func:`exact_metrics`, from the stream
    default_rng([seed, 9, draw]): apart from the target draws' and from the solvers'."""
    if draw < 0:
        raise ValueError(f"draw: a draw index is >= 0 (got {draw})")
    return source.sample(n, np.random.default_rng([seed, 9, draw]))


def generated_draws(x: Array, draws: int, per_draw: int | None) -> list[Array]:
    """The generated samples read against each of ``draws`` target draws: the k-th block
    x[k·n : (k+1)·n] of n = ``per_draw`` points when x (N, d) holds draws·n independent samples of
    the generated law (the study asks the solver for that many), so that each draw is a fresh
    sample of both laws; the whole x for every draw when ``per_draw`` is None (a solver whose
    sample size the study does not set)."""
    if draws < 1:
        raise ValueError(f"draws: at least one draw (got {draws})")
    if per_draw is None:
        return [x] * draws
    if len(x) < draws * per_draw:
        raise ValueError(f"{len(x)} generated samples for {draws} draws of {per_draw}")
    return [x[k * per_draw:(k + 1) * per_draw] for k in range(draws)]


def mean_over_draws(per_draw: Sequence[Mapping[str, float]],
                    keys: Iterable[str] | None = None) -> dict[str, float]:
    """(1/K) Σ_k m_k[key] over the K metric mappings ``per_draw`` (one per target draw) for each
    of ``keys`` (None: every key of the first); NaN stays NaN."""
    if not per_draw:
        raise ValueError("per_draw: no draws to average")
    keys = per_draw[0].keys() if keys is None else keys
    return {key: float(np.mean([m[key] for m in per_draw])) for key in keys}


def summarize(rows: Sequence[Mapping[str, Any]], keys: Iterable[str],
              by: Sequence[str] = ("method", "embedding", "dim")) -> list[dict[str, Any]]:
    """Group ``rows`` (one per run) by the fields ``by`` (in order of first appearance) and give,
    for each of ``keys``, the mean, min and max over the group's runs with a finite value, with
    ``n`` (runs) and ``n_finite`` (runs with a finite value of the first key)."""
    keys = list(keys)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    out = []
    for label, members in groups.items():
        entry: dict[str, Any] = dict(zip(by, label, strict=True)) | {"n": len(members)}
        for key in keys:
            values = np.array([float(m[key]) for m in members])
            finite = values[np.isfinite(values)]
            if key == keys[0]:
                entry["n_finite"] = int(finite.size)
            entry[key] = ((float(finite.mean()), float(finite.min()), float(finite.max()))
                          if finite.size else (float("nan"),) * 3)
        out.append(entry)
    return out
