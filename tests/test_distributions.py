"""Distributions: moments of samples, normalization of densities, box masses, HDF5 samples."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from mfg.distributions import (
    Distribution,
    DistributionError,
    Gaussian,
    Mixture,
    Samples,
    Uniform,
)

N_SAMPLES = 200_000
SIGMAS = 5.0

MIX_2D = Mixture(
    weights=(0.3, 0.7),
    components=(
        Gaussian((1.2, 1.0), std=0.4),
        Gaussian((-0.5, -1.0), cov=((0.5, 0.2), (0.2, 0.3))),
    ),
)
TWO_1D = (Gaussian((0.0,), std=1.0), Gaussian((1.0,), std=1.0))
CASES: dict[str, Distribution] = {
    "gaussian_1d": Gaussian((-1.0,), std=(0.5,)),
    "gaussian_diag_2d": Gaussian((-1.0, 0.5), std=(0.5, 0.6)),
    "gaussian_cov_2d": Gaussian((0.3, -0.2), cov=((0.6, -0.25), (-0.25, 0.4))),
    "gaussian_3d": Gaussian((0.0, 1.0, -1.0), std=0.7),
    "mixture_1d": Mixture((0.5, 0.5), (Gaussian((-1.0,), std=0.3), Gaussian((2.0,), std=0.8))),
    "mixture_2d": MIX_2D,
    "uniform_2d": Uniform((-1.0, 0.0), (2.0, 0.5)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sample_moments_match_mean_and_cov(name: str) -> None:
    """Sample mean/cov within 5 standard errors (errors estimated from the samples)."""
    dist = CASES[name]
    x = dist.sample(N_SAMPLES, np.random.default_rng(1))
    assert x.shape == (N_SAMPLES, dist.dim) and x.dtype == np.float64
    m, c = dist.mean(), dist.cov()
    assert m.shape == (dist.dim,) and c.shape == (dist.dim, dist.dim)
    se_mean = x.std(axis=0) / math.sqrt(N_SAMPLES)
    assert np.all(np.abs(x.mean(axis=0) - m) <= SIGMAS * se_mean)
    r = x - m
    prod = r[:, :, None] * r[:, None, :]
    se_cov = prod.std(axis=0) / math.sqrt(N_SAMPLES)
    assert np.all(np.abs(prod.mean(axis=0) - c) <= SIGMAS * se_cov + 1e-12)


def _grid_integral_1d(dist: Distribution, lo: float, hi: float, n: int) -> float:
    """Trapezoid rule for ∫ exp(log p) on [lo, hi]."""
    x = np.linspace(lo, hi, n)
    return float(np.trapezoid(np.exp(dist.log_density(x[:, None])), x))


def _grid_integral_2d(dist: Distribution, box: tuple[tuple[float, float], ...], n: int) -> float:
    """Midpoint (cell) sum of exp(log p) over ``n x n`` cells of ``box``."""
    (a0, b0), (a1, b1) = box
    h0, h1 = (b0 - a0) / n, (b1 - a1) / n
    x0 = a0 + (np.arange(n) + 0.5) * h0
    x1 = a1 + (np.arange(n) + 0.5) * h1
    pts = np.stack(np.meshgrid(x0, x1, indexing="ij"), axis=-1)
    logp = dist.log_density(pts)
    assert logp.shape == (n, n)
    return float(np.exp(logp).sum() * h0 * h1)


@pytest.mark.parametrize("name", ["gaussian_1d", "mixture_1d"])
def test_log_density_integrates_to_one_1d(name: str) -> None:
    assert _grid_integral_1d(CASES[name], -10.0, 10.0, 4001) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["gaussian_diag_2d", "gaussian_cov_2d", "mixture_2d"])
def test_log_density_integrates_to_one_2d(name: str) -> None:
    box = ((-7.0, 7.0), (-7.0, 7.0))
    assert _grid_integral_2d(CASES[name], box, 400) == pytest.approx(1.0, abs=1e-6)


def test_uniform_log_density_integrates_to_one() -> None:
    """Cells aligned with the box edges: the midpoint sum is exact."""
    u = CASES["uniform_2d"]
    assert _grid_integral_2d(u, ((-2.0, 3.0), (-0.5, 1.0)), 300) == pytest.approx(1.0, abs=1e-9)
    assert u.log_density(np.array([0.0, 0.25])) == pytest.approx(-math.log(1.5))
    assert u.log_density(np.array([[2.5, 0.25]]))[0] == -np.inf


def test_gaussian_log_density_closed_form() -> None:
    g = Gaussian((1.0, -2.0), std=(0.5, 2.0))
    x = np.array([[0.3, 0.1], [1.0, -2.0]])
    z2 = ((x[:, 0] - 1.0) / 0.5) ** 2 + ((x[:, 1] + 2.0) / 2.0) ** 2
    expected = -0.5 * z2 - math.log(2 * math.pi * 0.5 * 2.0)
    np.testing.assert_allclose(g.log_density(x), expected, rtol=1e-13)
    full = Gaussian((1.0, -2.0), cov=((0.25, 0.0), (0.0, 4.0)))
    np.testing.assert_allclose(full.log_density(x), expected, rtol=1e-13)


def test_mixture_log_density_is_log_of_weighted_sum() -> None:
    x = np.random.default_rng(3).normal(size=(7, 5, 2)) * 2.0
    direct = sum(
        w * np.exp(c.log_density(x))
        for w, c in zip(MIX_2D.weights, MIX_2D.components, strict=True)
    )
    got = MIX_2D.log_density(x)
    assert got.shape == (7, 5)
    np.testing.assert_allclose(got, np.log(direct), rtol=1e-12)


def test_mixture_log_density_far_tail_is_finite() -> None:
    """logsumexp keeps log p finite where every component underflows exp."""
    far = np.array([[60.0, -60.0]])
    assert np.isfinite(MIX_2D.log_density(far)).all()


def _erf_box_mass(mean: list[float], std: list[float], box: list[tuple[float, float]]) -> float:
    out = 1.0
    for m, s, (lo, hi) in zip(mean, std, box, strict=True):
        a, b = (lo - m) / (s * math.sqrt(2)), (hi - m) / (s * math.sqrt(2))
        out *= 0.5 * (math.erf(b) - math.erf(a))
    return out


def test_gaussian_mass_in_box_matches_erf_formula() -> None:
    g = Gaussian((-1.0, 0.5), std=(0.5, 0.6))
    for box in ([(-3.0, 3.0), (-3.0, 3.0)], [(-1.0, 0.0), (0.0, 2.0)], [(0.5, 0.9), (-1.0, 0.1)]):
        expected = _erf_box_mass([-1.0, 0.5], [0.5, 0.6], box)
        assert g.mass_in_box(box) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_full_cov_mass_in_box_monte_carlo_is_close_and_deterministic() -> None:
    g = CASES["gaussian_cov_2d"]
    box = ((-0.5, 1.0), (-1.0, 0.2))
    reference = _grid_integral_2d(g, box, 600)
    assert g.mass_in_box(box) == pytest.approx(reference, abs=6e-3)
    assert g.mass_in_box(box) == g.mass_in_box(box)
    # a diagonal matrix given as ``cov`` takes the exact formula
    d = Gaussian((0.0, 0.0), cov=((0.25, 0.0), (0.0, 1.0)))
    assert d.mass_in_box(box) == pytest.approx(
        _erf_box_mass([0.0, 0.0], [0.5, 1.0], list(box)), rel=1e-12
    )


def test_mixture_and_uniform_mass_in_box() -> None:
    box = ((0.0, 2.0), (-3.0, 1.0))
    expected = sum(
        w * c.mass_in_box(box) for w, c in zip(MIX_2D.weights, MIX_2D.components, strict=True)
    )
    assert MIX_2D.mass_in_box(box) == pytest.approx(expected, rel=1e-14)
    u = Uniform((0.0, 0.0), (2.0, 1.0))
    assert u.mass_in_box(((1.0, 5.0), (-1.0, 0.5))) == pytest.approx(0.25)
    assert u.mass_in_box(((3.0, 5.0), (-1.0, 0.5))) == 0.0
    assert u.mass_in_box(((-1.0, 5.0), (-1.0, 2.0))) == 1.0


def test_gaussian_scalar_std_broadcasts_and_fields() -> None:
    g = Gaussian((1.0, 2.0, 3.0), std=2)
    assert g.std == (2.0, 2.0, 2.0) and g.loc == (1.0, 2.0, 3.0) and g.dim == 3
    np.testing.assert_array_equal(g.cov(), 4.0 * np.eye(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.std = (1.0,)  # type: ignore[misc]
    moved = dataclasses.replace(g, loc=(0.0, 0.0, 0.0))
    assert moved == Gaussian((0.0, 0.0, 0.0), std=2.0)
    full = dataclasses.replace(g, std=None, covariance=np.eye(3))
    assert full.covariance == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Gaussian((0.0,), std=(-1.0,)), "std"),
        (lambda: Gaussian((0.0, 0.0), std=(1.0,)), "std"),
        (lambda: Gaussian((0.0,)), "std"),
        (lambda: Gaussian((0.0,), std=1.0, cov=((1.0,),)), "std"),
        (lambda: Gaussian((0.0, 0.0), cov=((1.0, 2.0), (2.0, 1.0))), "cov"),
        (lambda: Gaussian((0.0, 0.0), cov=((1.0, 0.1), (0.0, 1.0))), "cov"),
        (lambda: Mixture((0.5, 0.4), TWO_1D), "weights"),
        (lambda: Mixture((1.5, -0.5), TWO_1D), "weights"),
        (lambda: Mixture((1.0,), TWO_1D), "weights"),
        (lambda: Uniform((0.0, 1.0), (1.0, 1.0)), "high"),
        (lambda: Samples("x.h5", "d", np.zeros((3,))), "dataset"),
        (lambda: Samples("x.h5", "d", np.array([[0.0, np.nan]])), "dataset"),
    ],
)
def test_invalid_parameters_name_the_field(build, field: str) -> None:
    with pytest.raises(DistributionError) as info:
        build()
    assert info.value.field == field


def _write_points(path: Path, name: str, points: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=points)


def test_samples_from_hdf5(tmp_path: Path) -> None:
    pts = np.random.default_rng(5).normal(size=(50, 2))
    file = tmp_path / "pts.h5"
    _write_points(file, "data/x", pts)
    s = Samples.from_hdf5(file, "data/x")
    assert s.dim == 2 and s.n == 50 and not s.has_density
    np.testing.assert_array_equal(s.points, pts)
    assert not s.points.flags.writeable
    np.testing.assert_allclose(s.mean(), pts.mean(axis=0))
    np.testing.assert_allclose(s.cov(), np.cov(pts.T, bias=True))
    draws = s.sample(1000, np.random.default_rng(0))
    assert draws.shape == (1000, 2)
    assert {tuple(p) for p in draws} <= {tuple(p) for p in pts}
    inside = np.all(np.abs(pts) <= 1.0, axis=1).mean()
    assert s.mass_in_box(((-1.0, 1.0), (-1.0, 1.0))) == pytest.approx(inside)
    with pytest.raises(TypeError):
        s.log_density(pts)
    assert s == Samples.from_hdf5(file, "data/x")
    assert hash(s) == hash(Samples.from_hdf5(file, "data/x"))


def test_samples_missing_file_and_dataset(tmp_path: Path) -> None:
    with pytest.raises(DistributionError) as info:
        Samples.from_hdf5(tmp_path / "none.h5", "x")
    assert info.value.field == "path" and "none.h5" in str(info.value)
    file = tmp_path / "pts.h5"
    _write_points(file, "x", np.zeros((4, 2)))
    with pytest.raises(DistributionError) as info:
        Samples.from_hdf5(file, "y")
    assert info.value.field == "dataset" and "'y'" in str(info.value)
