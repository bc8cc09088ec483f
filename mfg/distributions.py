"""Probability distributions on R^d used as sources ρ0 and targets π (DESIGN.md §1, §3).

Every kind is a frozen dataclass deriving from :class:`Distribution` and provides

- ``dim``: the dimension d;
- ``has_density``: whether ``log_density`` exists (False for an empirical measure);
- ``sample(n, rng)``: n independent draws, shape (n, d), float64;
- ``log_density(x)``: log p(x) for x of shape (..., d), result shape (...);
- ``mean()`` (d,) and ``cov()`` (d, d): the exact first two moments;
- ``mass_in_box(bounds)``: P(X ∈ [lo_1, hi_1] × ... × [lo_d, hi_d]).

The constructors validate their arguments and raise :class:`DistributionError`, whose ``field``
names the offending argument (``"std"``, ``"cov"``, ...), so that a scenario loader can report
it under its own dotted path.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import logsumexp, ndtr

#: Samples and seed of the Monte Carlo estimate of ``Gaussian.mass_in_box`` for a full covariance.
MC_BOX_SAMPLES = 100_000
MC_BOX_SEED = 20_240_711
#: Tolerance on ``sum(weights) == 1`` for a mixture.
WEIGHT_SUM_TOL = 1e-8
#: Relative tolerance on the symmetry of a covariance matrix.
SYMMETRY_RTOL = 1e-10

Bounds = Sequence[Sequence[float]]


class DistributionError(ValueError):
    """Invalid distribution parameters; ``field`` names the argument, ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class Distribution(ABC):
    """A probability distribution on R^d (see the module docstring for the interface)."""

    has_density: ClassVar[bool] = True

    @property
    @abstractmethod
    def dim(self) -> int:
        """The dimension d."""

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws, shape (n, d), float64."""

    @abstractmethod
    def log_density(self, x: np.ndarray) -> np.ndarray:
        """log p(x) for ``x`` of shape (..., d); returns shape (...)."""

    @abstractmethod
    def mean(self) -> np.ndarray:
        """E[X], shape (d,)."""

    @abstractmethod
    def cov(self) -> np.ndarray:
        """E[(X - E X)(X - E X)^T], shape (d, d)."""

    @abstractmethod
    def mass_in_box(self, bounds: Bounds) -> float:
        """P(X ∈ [lo_1, hi_1] × ... × [lo_d, hi_d]) for ``bounds = ((lo_1, hi_1), ...)``."""


# ---------------------------------------------------------------------------------------------
# helpers


def _box_arrays(bounds: Bounds, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` arrays of shape (dim,) from ``((lo_1, hi_1), ...)``, checked for length."""
    b = np.asarray(bounds, dtype=np.float64)
    if b.shape != (dim, 2):
        raise ValueError(f"bounds must have shape ({dim}, 2), got {b.shape}")
    return b[:, 0], b[:, 1]


def _points(x: np.ndarray, dim: int) -> np.ndarray:
    """``x`` as a float64 array whose last axis has length ``dim``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ValueError(f"points must have shape (..., {dim}), got {x.shape}")
    return x


def _inside(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Boolean mask, shape (...), of the points ``x`` (..., d) in the closed box [lo, hi]."""
    return np.all((x >= lo) & (x <= hi), axis=-1)


def _check_sample_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"sample count must be a non-negative integer, got {n!r}")


def _check_finite(name: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise DistributionError(name, "must be finite")


# ---------------------------------------------------------------------------------------------
# Gaussian


@dataclass(frozen=True, init=False)
class Gaussian(Distribution):
    """Normal distribution N(m, Σ) with Σ = diag(std²) or a full covariance; exactly one is given.

    log p(x) = -½ (x - m)^T Σ^{-1} (x - m) - ½ log det(2π Σ).

    Construct as ``Gaussian(mean, std=...)`` or ``Gaussian(mean, cov=...)``; a scalar ``std`` is
    broadcast to ``len(mean)``. The parameters are stored as tuples in the fields ``loc``
    (= m), ``std`` and ``covariance`` (the methods ``mean()`` and ``cov()`` return arrays).
    """

    loc: tuple[float, ...]
    std: tuple[float, ...] | None
    covariance: tuple[tuple[float, ...], ...] | None

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | float | None = None,
        cov: Sequence[Sequence[float]] | None = None,
        *,
        loc: Sequence[float] | None = None,
        covariance: Sequence[Sequence[float]] | None = None,
    ) -> None:
        # ``loc`` / ``covariance`` (the field names) make dataclasses.replace work
        if (mean is None) == (loc is None):
            raise TypeError("Gaussian: give the mean (as ``mean`` or ``loc``) exactly once")
        if cov is not None and covariance is not None:
            raise TypeError("Gaussian: give ``cov`` or ``covariance``, not both")
        cov = covariance if cov is None else cov
        mean = loc if mean is None else mean
        loc = tuple(float(v) for v in np.asarray(mean, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "loc", loc)
        if std is not None:
            s = np.asarray(std, dtype=np.float64)
            if s.ndim == 0:
                s = np.full(len(loc), float(s))
            std = tuple(float(v) for v in s.reshape(-1))
        object.__setattr__(self, "std", std)
        if cov is not None:
            cov = tuple(tuple(float(v) for v in row) for row in np.atleast_2d(cov))
        object.__setattr__(self, "covariance", cov)
        self._validate()

    def _validate(self) -> None:
        d = len(self.loc)
        if d == 0:
            raise DistributionError("mean", "must have at least one entry")
        _check_finite("mean", np.asarray(self.loc, dtype=np.float64))
        if (self.std is None) == (self.covariance is None):
            raise DistributionError("std", "give exactly one of std and cov")
        if self.std is not None:
            std = np.asarray(self.std, dtype=np.float64)
            if std.shape != (d,):
                raise DistributionError("std", f"must have {d} entries, got {std.size}")
            if not (np.all(std > 0) and np.all(np.isfinite(std))):
                raise DistributionError("std", f"must be > 0 and finite (got {list(self.std)})")
        else:
            c = np.asarray(self.covariance, dtype=np.float64)
            if c.shape != (d, d):
                raise DistributionError("cov", f"must be a {d}x{d} matrix, got shape {c.shape}")
            _check_finite("cov", c)
            if not _is_spd(c):
                raise DistributionError("cov", "must be symmetric positive definite")

    @property
    def dim(self) -> int:
        return len(self.loc)

    @property
    def is_diagonal(self) -> bool:
        """True when Σ is diagonal (given by ``std`` or a diagonal ``cov``)."""
        c = self.cov()
        return bool(np.all(c == np.diag(np.diag(c))))

    def mean(self) -> np.ndarray:
        return np.asarray(self.loc, dtype=np.float64)

    def cov(self) -> np.ndarray:
        """Σ = diag(std²) or the given ``cov``."""
        if self.std is not None:
            return np.diag(np.asarray(self.std, dtype=np.float64) ** 2)
        return np.asarray(self.covariance, dtype=np.float64)

    def _chol(self) -> np.ndarray:
        """Lower Cholesky factor L with L L^T = Σ."""
        return np.linalg.cholesky(self.cov())

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """x = m + L z with z ~ N(0, I) and L L^T = Σ."""
        _check_sample_count(n)
        z = rng.standard_normal((n, self.dim))
        return self.mean() + z @ self._chol().T

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """-½ |L^{-1}(x - m)|² - Σ_i log L_ii - (d/2) log 2π."""
        x = _points(x, self.dim)
        chol = self._chol()
        r = (x - self.mean()).reshape(-1, self.dim)
        z = solve_triangular(chol, r.T, lower=True).T  # L z = r
        quad = np.sum(z * z, axis=-1)
        log_norm = np.sum(np.log(np.diag(chol))) + 0.5 * self.dim * math.log(2.0 * math.pi)
        return (-0.5 * quad - log_norm).reshape(x.shape[:-1])

    def mass_in_box(self, bounds: Bounds) -> float:
        """Mass in the box.

        Diagonal Σ (exact): ∏_i ½ [erf((hi_i - m_i)/(σ_i √2)) - erf((lo_i - m_i)/(σ_i √2))].
        Full Σ: Monte Carlo with ``MC_BOX_SAMPLES`` draws from the fixed seed ``MC_BOX_SEED``
        (deterministic; standard error ≤ 0.5/√MC_BOX_SAMPLES ≈ 1.6e-3, about 1e-4 near mass 1).
        """
        lo, hi = _box_arrays(bounds, self.dim)
        if self.is_diagonal:
            m = self.mean()
            s = np.sqrt(np.diag(self.cov()))
            per_axis = ndtr((hi - m) / s) - ndtr((lo - m) / s)
            return float(np.prod(np.clip(per_axis, 0.0, 1.0)))
        x = self.sample(MC_BOX_SAMPLES, np.random.default_rng(MC_BOX_SEED))
        return float(np.mean(_inside(x, lo, hi)))


def _is_spd(c: np.ndarray) -> bool:
    """True if ``c`` is symmetric (relative tolerance ``SYMMETRY_RTOL``) and Cholesky succeeds."""
    scale = max(float(np.max(np.abs(c))), 1e-300)
    if np.max(np.abs(c - c.T)) > SYMMETRY_RTOL * scale:
        return False
    try:
        np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Mixture


@dataclass(frozen=True)
class Mixture(Distribution):
    """Gaussian mixture p(x) = Σ_k w_k N(x; m_k, Σ_k), w_k ≥ 0, Σ_k w_k = 1 (tol 1e-8).

    log p(x) = logsumexp_k (log w_k + log N(x; m_k, Σ_k)).
    """

    weights: tuple[float, ...]
    components: tuple[Gaussian, ...]

    def __post_init__(self) -> None:
        if len(self.components) == 0:
            raise DistributionError("components", "must have at least one component")
        if len(self.weights) != len(self.components):
            raise DistributionError(
                "weights", f"{len(self.weights)} weights for {len(self.components)} components"
            )
        w = np.asarray(self.weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DistributionError("weights", f"must be >= 0 (got {list(self.weights)})")
        if abs(float(w.sum()) - 1.0) > WEIGHT_SUM_TOL:
            raise DistributionError("weights", f"must sum to 1 (got {float(w.sum())!r})")
        dims = {c.dim for c in self.components}
        if len(dims) != 1:
            raise DistributionError("components", f"components differ in dimension: {dims}")

    @property
    def dim(self) -> int:
        return self.components[0].dim

    def _w(self) -> np.ndarray:
        return np.asarray(self.weights, dtype=np.float64)

    def mean(self) -> np.ndarray:
        """Σ_k w_k m_k."""
        return np.einsum("k,kd->d", self._w(), np.stack([c.mean() for c in self.components]))

    def cov(self) -> np.ndarray:
        """Σ_k w_k (Σ_k + m_k m_k^T) - m m^T with m the mixture mean."""
        w = self._w()
        m = self.mean()
        second = sum(
            wk * (c.cov() + np.outer(c.mean(), c.mean()))
            for wk, c in zip(w, self.components, strict=True)
        )
        return second - np.outer(m, m)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw component labels k ~ Categorical(w), then x ~ N(m_k, Σ_k)."""
        _check_sample_count(n)
        labels = rng.choice(len(self.components), size=n, p=self._w() / self._w().sum())
        out = np.empty((n, self.dim), dtype=np.float64)
        for k, comp in enumerate(self.components):
            idx = np.flatnonzero(labels == k)
            out[idx] = comp.sample(idx.size, rng)
        return out

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """logsumexp_k (log w_k + log N_k(x)); zero weights contribute nothing."""
        x = _points(x, self.dim)
        logs = np.stack([c.log_density(x) for c in self.components], axis=0)
        return logsumexp(logs, axis=0, b=self._w().reshape((-1,) + (1,) * (logs.ndim - 1)))

    def mass_in_box(self, bounds: Bounds) -> float:
        """Σ_k w_k P_k(box) (each component as in :meth:`Gaussian.mass_in_box`)."""
        return float(
            sum(w * c.mass_in_box(bounds) for w, c in zip(self._w(), self.components, strict=True))
        )


# ---------------------------------------------------------------------------------------------
# Uniform


@dataclass(frozen=True)
class Uniform(Distribution):
    """Uniform distribution on the box [low, high]: log p(x) = -log ∏_i (high_i - low_i) inside,
    -∞ outside (the closed box counts as inside)."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def __post_init__(self) -> None:
        lo = np.asarray(self.low, dtype=np.float64)
        hi = np.asarray(self.high, dtype=np.float64)
        if lo.ndim != 1 or lo.size == 0:
            raise DistributionError("low", "must have at least one entry")
        if hi.shape != lo.shape:
            raise DistributionError("high", f"must have {lo.size} entries, got {hi.size}")
        _check_finite("low", lo)
        _check_finite("high", hi)
        bad = np.flatnonzero(lo >= hi)
        if bad.size:
            i = int(bad[0])
            raise DistributionError(
                "high", f"must be > low in every coordinate (coordinate {i}: {lo[i]} >= {hi[i]})"
            )

    @property
    def dim(self) -> int:
        return len(self.low)

    def _lo_hi(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.low, dtype=np.float64), np.asarray(self.high, dtype=np.float64)

    def volume(self) -> float:
        """∏_i (high_i - low_i)."""
        lo, hi = self._lo_hi()
        return float(np.prod(hi - lo))

    def mean(self) -> np.ndarray:
        """(low + high) / 2."""
        lo, hi = self._lo_hi()
        return 0.5 * (lo + hi)

    def cov(self) -> np.ndarray:
        """diag((high - low)² / 12)."""
        lo, hi = self._lo_hi()
        return np.diag((hi - lo) ** 2 / 12.0)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_sample_count(n)
        lo, hi = self._lo_hi()
        return rng.uniform(lo, hi, size=(n, self.dim))

    def log_density(self, x: np.ndarray) -> np.ndarray:
        x = _points(x, self.dim)
        lo, hi = self._lo_hi()
        return np.where(_inside(x, lo, hi), -math.log(self.volume()), -np.inf)

    def mass_in_box(self, bounds: Bounds) -> float:
        """vol([low, high] ∩ box) / vol([low, high])."""
        blo, bhi = _box_arrays(bounds, self.dim)
        lo, hi = self._lo_hi()
        overlap = np.clip(np.minimum(hi, bhi) - np.maximum(lo, blo), 0.0, None)
        return float(np.prod(overlap / (hi - lo)))


# ---------------------------------------------------------------------------------------------
# Samples


@dataclass(frozen=True, eq=False)
class Samples(Distribution):
    """Empirical measure (1/n) Σ_j δ_{x_j} of points read from an HDF5 dataset of shape (n, d).

    It has no density. ``mean`` and ``cov`` are the moments of the empirical measure itself
    (``cov`` divides by n), i.e. of the law that :meth:`sample` draws from (with replacement).
    ``path`` is the resolved file name; ``points`` is a read-only float64 copy.
    """

    has_density: ClassVar[bool] = False

    path: str
    dataset: str
    points: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        pts = np.array(self.points, dtype=np.float64, copy=True)
        if pts.ndim != 2:
            raise DistributionError("dataset", f"must have shape (n, d), got {pts.shape}")
        if pts.shape[0] < 1 or pts.shape[1] < 1:
            raise DistributionError("dataset", f"must hold at least one point, got {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise DistributionError("dataset", "holds non-finite values (nan or inf)")
        pts.setflags(write=False)
        object.__setattr__(self, "points", pts)

    @classmethod
    def from_hdf5(cls, path: str | Path, dataset: str) -> Samples:
        """Read ``dataset`` from the HDF5 file ``path`` (errors name ``path`` or ``dataset``)."""
        import h5py  # local: only scenarios with samples need it

        p = Path(path)
        if not p.is_file():
            raise DistributionError("path", f"file not found: {p}")
        try:
            with h5py.File(p, "r") as f:
                if dataset not in f:
                    raise DistributionError("dataset", f"no dataset {dataset!r} in {p}")
                obj = f[dataset]
                if not isinstance(obj, h5py.Dataset):
                    raise DistributionError("dataset", f"{dataset!r} in {p} is not a dataset")
                try:
                    data = np.asarray(obj[()], dtype=np.float64)
                except (TypeError, ValueError) as err:
                    raise DistributionError(
                        "dataset", f"{dataset!r} in {p} is not numeric ({err})"
                    ) from err
        except OSError as err:
            raise DistributionError("path", f"cannot read HDF5 file {p}: {err}") from err
        return cls(str(p), dataset, data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Samples):
            return NotImplemented
        return (
            self.path == other.path
            and self.dataset == other.dataset
            and np.array_equal(self.points, other.points)
        )

    def __hash__(self) -> int:
        return hash((self.path, self.dataset, self.points.shape))

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.points.shape[0])

    def mean(self) -> np.ndarray:
        """(1/n) Σ_j x_j."""
        return self.points.mean(axis=0)

    def cov(self) -> np.ndarray:
        """(1/n) Σ_j (x_j - m)(x_j - m)^T."""
        r = self.points - self.mean()
        return (r.T @ r) / self.n

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points drawn uniformly with replacement."""
        _check_sample_count(n)
        return self.points[rng.integers(0, self.n, size=n)].copy()

    def log_density(self, x: np.ndarray) -> np.ndarray:
        raise TypeError("a samples distribution (empirical measure) has no density")

    def mass_in_box(self, bounds: Bounds) -> float:
        """Fraction of the points in the closed box."""
        lo, hi = _box_arrays(bounds, self.dim)
        return float(np.mean(_inside(self.points, lo, hi)))


# ---------------------------------------------------------------------------------------------
# Measures without a density (targets on low-dimensional sets)

#: Samples and seed of the Monte Carlo moments/box masses of measures known only by sampling.
MC_MEASURE_SAMPLES = 100_000
MC_MEASURE_SEED = 20_241_124


class SampledMeasure(Distribution):
    """A measure without density, known through :meth:`sample`.

    ``mean``, ``cov`` and ``mass_in_box`` are Monte Carlo estimates from MC_MEASURE_SAMPLES draws
    with the fixed seed MC_MEASURE_SEED (subclasses override them where exact forms are short).
    """

    has_density: ClassVar[bool] = False

    def log_density(self, x: np.ndarray) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} has no density")

    def quadrature(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Atoms (m, d) and weights (m,) approximating the measure with about ``n`` atoms
        (deterministic where the set is simple; else ``n`` samples of the fixed seed)."""
        x = self.sample(n, np.random.default_rng(MC_MEASURE_SEED))
        return x, np.full(n, 1.0 / n)

    def _reference_sample(self) -> np.ndarray:
        return self.sample(MC_MEASURE_SAMPLES, np.random.default_rng(MC_MEASURE_SEED))

    def mean(self) -> np.ndarray:
        return self._reference_sample().mean(axis=0)

    def cov(self) -> np.ndarray:
        return np.atleast_2d(np.cov(self._reference_sample(), rowvar=False, bias=True))

    def mass_in_box(self, bounds: Bounds) -> float:
        lo, hi = _box_arrays(bounds, self.dim)
        return float(np.mean(_inside(self._reference_sample(), lo, hi)))


@dataclass(frozen=True)
class Circle(SampledMeasure):
    """Uniform measure on the circle {c + r(cos θ, sin θ, 0, ..., 0)}: a 1-D set in R^d, d >= 2."""

    centre: tuple[float, ...]
    radius: float

    def __post_init__(self) -> None:
        if len(self.centre) < 2:
            raise DistributionError("centre", "a circle needs dim >= 2")
        if not (np.isfinite(self.radius) and self.radius > 0):
            raise DistributionError("radius", f"must be > 0 (got {self.radius})")

    @property
    def dim(self) -> int:
        return len(self.centre)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_sample_count(n)
        theta = rng.uniform(0.0, 2.0 * np.pi, n)
        x = np.tile(np.asarray(self.centre, dtype=np.float64), (n, 1))
        x[:, 0] += self.radius * np.cos(theta)
        x[:, 1] += self.radius * np.sin(theta)
        return x

    def quadrature(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n equally spaced points (midpoint rule in the angle), equal weights."""
        theta = 2.0 * np.pi * (np.arange(n) + 0.5) / n
        x = np.tile(np.asarray(self.centre, dtype=np.float64), (n, 1))
        x[:, 0] += self.radius * np.cos(theta)
        x[:, 1] += self.radius * np.sin(theta)
        return x, np.full(n, 1.0 / n)

    def mean(self) -> np.ndarray:
        return np.asarray(self.centre, dtype=np.float64)

    def cov(self) -> np.ndarray:
        """r²/2 on the circle's plane, 0 elsewhere."""
        c = np.zeros((self.dim, self.dim))
        c[0, 0] = c[1, 1] = 0.5 * self.radius**2
        return c


@dataclass(frozen=True)
class Segment(SampledMeasure):
    """Uniform measure on the segment [a, b] ⊂ R^d."""

    a: tuple[float, ...]
    b: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.a) != len(self.b):
            raise DistributionError("b", f"must have {len(self.a)} entries like a")
        if np.allclose(self.a, self.b):
            raise DistributionError("b", "must differ from a")

    @property
    def dim(self) -> int:
        return len(self.a)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_sample_count(n)
        s = rng.uniform(0.0, 1.0, (n, 1))
        a, b = np.asarray(self.a, dtype=np.float64), np.asarray(self.b, dtype=np.float64)
        return a + s * (b - a)

    def quadrature(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n equally spaced points (midpoint rule), equal weights."""
        s = ((np.arange(n) + 0.5) / n)[:, None]
        a, b = np.asarray(self.a, dtype=np.float64), np.asarray(self.b, dtype=np.float64)
        return a + s * (b - a), np.full(n, 1.0 / n)

    def mean(self) -> np.ndarray:
        return 0.5 * (np.asarray(self.a) + np.asarray(self.b))

    def cov(self) -> np.ndarray:
        """(b − a)(b − a)ᵀ/12."""
        d = np.asarray(self.b, dtype=np.float64) - np.asarray(self.a, dtype=np.float64)
        return np.outer(d, d) / 12.0


@dataclass(frozen=True)
class Points(SampledMeasure):
    """Atomic measure Σ_j w_j δ_{x_j} (weights default to uniform)."""

    atoms: tuple[tuple[float, ...], ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        x = np.asarray(self.atoms, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 1:
            raise DistributionError("atoms", "must be a non-empty list of points")
        _check_finite("atoms", x)
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (x.shape[0],):
            raise DistributionError("weights", f"must have {x.shape[0]} entries, one per atom")
        if np.any(w < 0) or abs(w.sum() - 1.0) > WEIGHT_SUM_TOL:
            raise DistributionError("weights", f"must be >= 0 and sum to 1 (sum {w.sum():.6g})")

    @property
    def dim(self) -> int:
        return len(self.atoms[0])

    @property
    def points(self) -> np.ndarray:
        return np.asarray(self.atoms, dtype=np.float64)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_sample_count(n)
        return self.points[rng.choice(len(self.atoms), size=n, p=np.asarray(self.weights))]

    def quadrature(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The atoms themselves."""
        return self.points, np.asarray(self.weights, dtype=np.float64)

    def mean(self) -> np.ndarray:
        return np.asarray(self.weights) @ self.points

    def cov(self) -> np.ndarray:
        d = self.points - self.mean()
        return (d * np.asarray(self.weights)[:, None]).T @ d

    def mass_in_box(self, bounds: Bounds) -> float:
        lo, hi = _box_arrays(bounds, self.dim)
        return float(np.asarray(self.weights) @ _inside(self.points, lo, hi))
