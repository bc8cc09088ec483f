"""Toy data sets that need no download, in 2-D and embedded in R^D (DESIGN.md §2, neural/particle).

Each generator maps (n, rng) to an (n, 2) float64 array. Parameters follow the conventions of the
generative-flow literature's 2-D benchmarks (scale of a few units around the origin):

* ``8gaussians``: eight N(c_k, 0.2²I), c_k = 2(cos kπ/4, sin kπ/4), equal weights.
* ``ring``: five N(c_k, 0.2²I), c_k = 2(cos 2πk/5, sin 2πk/5), equal weights (the 5-mode ring).
* ``pinwheel``: five arms; (r, s) ~ N((1, 0), diag(0.3², 0.1²)) in arm k is rotated by the
  angle 2πk/5 + 0.25·e^r, then scaled by 2.
* ``moons``: two interleaving half circles with N(0, 0.05²) noise, centred and scaled by 2.
* ``checkerboard``: uniform on the black squares of a 4×4 board of unit squares on [−2, 2]².
* ``swissroll``: t ~ U(1.5π, 4.5π), x = (t cos t, t sin t)/5 + N(0, 0.1²).
* ``circle``: uniform on the unit circle scaled by 2 (a 1-D manifold), plus optional noise.

:func:`embed` puts 2-D data into R^D by zero padding or by a fixed random isometry x ↦ Qx with
Q ∈ R^{D×2}, QᵀQ = I (from the QR factorization of a Gaussian matrix drawn with ``seed``).

``digits`` (:class:`Digits`) is not a toy: scikit-learn's 8×8 handwritten digits (1,797 images,
shipped with the package, no download) as vectors of R^64, pixel p ∈ {0, ..., 16} mapped to
x = p/4 − 2 ∈ [−2, 2] (:func:`digits_to_coords`). One affine map for every pixel, so an image
decodes by p = 4(x + 2); it puts the data at the scale of the N(0, I) source (the per-pixel
variance averages 1.17, the mean pixel is −0.78), so the flow has no large translation or
dilation to learn and a critic with L = 1 sees differences of order one, as on the toys.
Sampling draws images uniformly with replacement (the empirical measure), plus N(0, noise²I) when
``noise`` > 0 (a Gaussian dequantization; 0 by default).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mfg.distributions import DistributionError, SampledMeasure

Array = np.ndarray


def gaussian_ring(n: int, rng: np.random.Generator, modes: int, radius: float = 2.0,
                  std: float = 0.2) -> Array:
    """Equal mixture of N(c_k, std²I), c_k = radius·(cos 2πk/modes, sin 2πk/modes), (n, 2)."""
    k = rng.integers(0, modes, n)
    angle = 2 * np.pi * k / modes
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + std * rng.standard_normal((n, 2))


def eight_gaussians(n: int, rng: np.random.Generator) -> Array:
    return gaussian_ring(n, rng, 8)


def ring(n: int, rng: np.random.Generator) -> Array:
    return gaussian_ring(n, rng, 5)


def pinwheel(n: int, rng: np.random.Generator) -> Array:
    arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    k = rng.integers(0, arms, n)
    feats = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angle = 2 * np.pi * k / arms + rate * np.exp(feats[:, 0])
    c, s = np.cos(angle), np.sin(angle)
    x = np.stack([c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], axis=1)
    return 2.0 * x


def moons(n: int, rng: np.random.Generator) -> Array:
    upper = rng.random(n) < 0.5
    t = rng.uniform(0.0, np.pi, n)
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x - 0.5, y - 0.25], axis=1) + 0.05 * rng.standard_normal((n, 2))
    return 2.0 * pts


def checkerboard(n: int, rng: np.random.Generator) -> Array:
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n)
    x2 = x2 + (np.floor(x1) % 2)
    return np.stack([x1, x2], axis=1)


def swissroll(n: int, rng: np.random.Generator) -> Array:
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    roll = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5.0
    return roll + 0.1 * rng.standard_normal((n, 2))


def unit_circle(n: int, rng: np.random.Generator) -> Array:
    t = rng.uniform(0.0, 2 * np.pi, n)
    return 2.0 * np.stack([np.cos(t), np.sin(t)], axis=1)


#: 2-D generators by name (``target: {kind: dataset, name: ...}``).
TOY_2D: dict[str, Callable[[int, np.random.Generator], Array]] = {
    "8gaussians": eight_gaussians,
    "ring": ring,
    "pinwheel": pinwheel,
    "moons": moons,
    "checkerboard": checkerboard,
    "swissroll": swissroll,
    "circle": unit_circle,
}

EMBEDDINGS = ("pad", "isometry")

#: every ``target: {kind: dataset, name: ...}``: the 2-D toys and the 64-D digits
DATASET_NAMES = (*TOY_2D, "digits")


def isometry(embed_dim: int, seed: int) -> Array:
    """Q ∈ R^{D×2} with orthonormal columns, fixed by ``seed``."""
    g = np.random.default_rng(seed).standard_normal((embed_dim, 2))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))  # unique: positive diagonal of R


def embed(x: Array, embed_dim: int, how: str, seed: int = 0) -> Array:
    """2-D points (n, 2) into R^D: zero padding, or x ↦ Qx for the isometry Q of ``seed``."""
    if embed_dim == 2:
        return x
    if how == "pad":
        return np.concatenate([x, np.zeros((x.shape[0], embed_dim - 2))], axis=1)
    if how == "isometry":
        return x @ isometry(embed_dim, seed).T
    raise ValueError(f"embedding: unknown {how!r} (one of: {', '.join(EMBEDDINGS)})")


@dataclass(frozen=True)
class ToyData(SampledMeasure):
    """A 2-D toy data set, optionally with Gaussian noise, embedded in R^embed_dim."""

    has_density: ClassVar[bool] = False

    name: str
    embed_dim: int = 2
    embedding: str = "isometry"
    embedding_seed: int = 0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in TOY_2D:
            raise DistributionError("name", f"unknown data set {self.name!r} "
                                    f"(one of: {', '.join(DATASET_NAMES)})")
        if self.embed_dim < 2:
            raise DistributionError("embed_dim", f"must be >= 2 (got {self.embed_dim})")
        if self.embedding not in EMBEDDINGS:
            raise DistributionError("embedding", f"must be one of {', '.join(EMBEDDINGS)}")
        if not self.noise >= 0:
            raise DistributionError("noise", f"must be >= 0 (got {self.noise})")

    @property
    def dim(self) -> int:
        return self.embed_dim

    def sample(self, n: int, rng: np.random.Generator) -> Array:
        x = embed(TOY_2D[self.name](n, rng), self.embed_dim, self.embedding, self.embedding_seed)
        if self.noise > 0:
            x = x + self.noise * rng.standard_normal(x.shape)
        return x


# ---------------------------------------------------------------------------------------------
# digits: scikit-learn's 8×8 images in R^64 (module docstring)

DIGITS_IMAGE_SHAPE = (8, 8)
DIGITS_DIM = 64
DIGITS_CLASSES = 10
#: pixel values run over {0, ..., DIGITS_MAX_PIXEL}
DIGITS_MAX_PIXEL = 16.0


@functools.cache
def digits_pixels() -> tuple[Array, Array]:
    """scikit-learn's digits: pixels (1797, 64) float64 in {0, ..., 16} (row-major 8×8 images)
    and labels (1797,) int64 in {0, ..., 9}; read-only arrays, loaded once per process."""
    from sklearn.datasets import load_digits  # local: only digits scenarios need scikit-learn

    data = load_digits()
    pixels = np.array(data.data, dtype=np.float64)
    labels = np.array(data.target, dtype=np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def digits_to_coords(pixels: Array) -> Array:
    """Pixels p ∈ [0, 16] (..., 64) to coordinates x = p/4 − 2 ∈ [−2, 2] (same shape)."""
    return np.asarray(pixels, dtype=np.float64) / 4.0 - 2.0


def coords_to_pixels(x: Array) -> Array:
    """Inverse of :func:`digits_to_coords`: p = 4(x + 2) (not clipped: generated samples may
    leave [0, 16])."""
    return 4.0 * (np.asarray(x, dtype=np.float64) + 2.0)


@dataclass(frozen=True)
class Digits(SampledMeasure):
    """The empirical measure of the 1,797 digits in R^64 (module docstring), convolved with
    N(0, noise²I) when ``noise`` > 0."""

    has_density: ClassVar[bool] = False

    noise: float = 0.0

    def __post_init__(self) -> None:
        if not self.noise >= 0:
            raise DistributionError("noise", f"must be >= 0 (got {self.noise})")

    @property
    def dim(self) -> int:
        return DIGITS_DIM

    @property
    def points(self) -> Array:
        """The images as coordinates, (1797, 64)."""
        return digits_to_coords(digits_pixels()[0])

    def sample(self, n: int, rng: np.random.Generator) -> Array:
        """``n`` images drawn uniformly with replacement, plus noise·N(0, I) if noise > 0."""
        pts = self.points
        x = pts[rng.integers(0, len(pts), size=n)]
        if self.noise > 0:
            x = x + self.noise * rng.standard_normal(x.shape)
        return x

    def mean(self) -> Array:
        return self.points.mean(axis=0)

    def cov(self) -> Array:
        """Covariance of the empirical measure (divided by n) plus noise²·I."""
        r = self.points - self.mean()
        return (r.T @ r) / len(r) + self.noise**2 * np.eye(DIGITS_DIM)
