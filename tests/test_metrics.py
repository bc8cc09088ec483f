"""mfg.metrics against exact identities."""

from __future__ import annotations

import numpy as np
import pytest

from mfg.datasets import pinwheel
from mfg.metrics import (
    SINKHORN_SCALING,
    knn_radii,
    precision_recall,
    sinkhorn_backend,
    sinkhorn_divergence,
    support_share,
)


def test_weighted_sinkhorn_equals_repeated_points() -> None:
    """Σ_i a_i δ_{x_i} with rational weights is the empirical measure of x_i repeated a_i·N
    times: the weighted S_ε must equal the unweighted one on the repeated points."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(3, 2)), rng.normal(1.0, 0.5, size=(4, 2))
    a, b = np.array([0.5, 0.25, 0.25]), np.array([0.125, 0.375, 0.25, 0.25])
    weighted = sinkhorn_divergence(x, y, a=a, b=b)
    repeated = sinkhorn_divergence(np.repeat(x, (a * 8).astype(int), axis=0),
                                   np.repeat(y, (b * 8).astype(int), axis=0))
    assert weighted == pytest.approx(repeated, rel=1e-9)
    # one side weighted, the other uniform
    assert sinkhorn_divergence(x, y, a=a) == pytest.approx(
        sinkhorn_divergence(np.repeat(x, (a * 4).astype(int), axis=0), y), rel=1e-9)


def test_sinkhorn_backend_is_dense_for_small_problems_and_high_dimensions() -> None:
    """The dense backend below 2,500² pairs, and in more than 12 dimensions up to 6,000² pairs
    (KeOps recomputes the distances every iteration: 10× slower in R^64, sinkhorn_backend's
    docstring); KeOps above, where pykeops imports (as here: the Makefile installs it)."""
    pytest.importorskip("pykeops")
    assert sinkhorn_backend(2499**2, 2) == "tensorized"
    assert sinkhorn_backend(5000**2, 2) == "online"
    assert sinkhorn_backend(5000**2, 12) == "online"
    assert sinkhorn_backend(5000**2, 13) == "tensorized"
    assert sinkhorn_backend(5000**2, 64) == "tensorized"
    assert sinkhorn_backend(6001**2, 64) == "online"  # memory: about 72 bytes a pair densely


def test_sinkhorn_backend_takes_multiscale_off_the_default_scaling_in_low_dimension() -> None:
    """Where KeOps runs, in up to three dimensions, a scaling other than the default takes its
    multiscale variant (a converged figure in minutes on a CPU); the default scaling keeps the
    backend its recorded figures were made with."""
    pytest.importorskip("pykeops")
    assert sinkhorn_backend(5000**2, 2, SINKHORN_SCALING) == "online"
    assert sinkhorn_backend(5000**2, 2, 0.999) == "multiscale"
    assert sinkhorn_backend(5000**2, 3, 0.99) == "multiscale"
    assert sinkhorn_backend(5000**2, 4, 0.999) == "online"
    assert sinkhorn_backend(2499**2, 2, 0.999) == "tensorized"


def test_multiscale_sinkhorn_converges_to_the_dense_one() -> None:
    """geomloss's multiscale backend anneals ε on clusters of the points (here of size
    diameter/(√2·2000^{1/2}) ≈ 0.17 for pinwheel points, above the blur 0.05, so the clusters
    and the truncated kernels act) and on another schedule than the dense backend: the two
    estimates differ before convergence (here by about 0.4% at the default scaling 0.9) and agree
    at 0.999, where both are S_ε (measured: 4e-6 relative at 600 points, 2.6e-5 at 1,000)."""
    pytest.importorskip("pykeops")
    rng = np.random.default_rng(6)
    x, y = pinwheel(400, rng), pinwheel(400, rng)
    dense, multi = (sinkhorn_divergence(x, y, scaling=0.999, backend=b)
                    for b in ("tensorized", "multiscale"))
    assert multi == pytest.approx(dense, rel=1e-4)
    coarse = [sinkhorn_divergence(x, y, backend=b) for b in ("tensorized", "multiscale")]
    assert abs(coarse[1] - coarse[0]) > 1e-3 * coarse[0]


@pytest.mark.parametrize("backend", [None, "tensorized", "multiscale"])
def test_sinkhorn_between_equal_dirac_masses_is_zero(backend: str | None) -> None:
    """Every point of both measures at one place: S_ε(δ_z, δ_z) = 0 (geomloss alone raises,
    its ε-annealing starting from the points' diameter, 0 here); one point apart, it is not."""
    if backend == "multiscale":
        pytest.importorskip("pykeops")
    z = np.tile([1.0, -2.0], (5, 1))
    assert sinkhorn_divergence(z, z[:3], scaling=0.999, backend=backend) == 0.0
    assert sinkhorn_divergence(z, z[:3] + [0.0, 0.5], backend=backend) == pytest.approx(0.125)


def test_sinkhorn_of_a_translation_is_half_the_squared_shift() -> None:
    """Quadratic cost |x − y|²/2: OT_ε(α, α(· − δ)) = OT_ε(α, α) + |δ|²/2 (the cross term
    integrates to 0 under any coupling of two measures with the same mean shift), so the
    debiased divergence is exactly |δ|²/2 for every ε."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 2))
    shift = np.array([0.3, -0.4])
    assert sinkhorn_divergence(x, x + shift) == pytest.approx(0.125, rel=1e-3)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_converges_to_pots_entropic_transport_as_scaling_tends_to_one() -> None:
    """S_ε = OT_ε(α, β) − ½OT_ε(α, α) − ½OT_ε(β, β), OT_ε(α, β) = min_P ⟨P, C⟩ + ε KL(P | α⊗β)
    with C = |x − y|²/2, ε = blur²: POT's log-domain Sinkhorn (``ot.solve(..., reg_type="KL")``,
    5,000 iterations: S_ε moves by 2e-8 (relative) from there to 20,000, though the two
    self-transport problems stay above POT's marginal tolerance, hence its warning, filtered
    here) against geomloss's ε-scaling estimate. The estimate is
    biased low, and the bias vanishes as the ratio tends to 1 (here 0.5: −4.7%, 0.9: −0.37%,
    0.999: −7.5e-7), which is why the metric's scaling is a setting (mfg.metrics.SINKHORN_SCALING,
    ``study manifold --sinkhorn-scaling``)."""
    import torch

    from mfg.metrics import _import_ot

    ot = _import_ot()
    rng = np.random.default_rng(5)
    n, blur = 150, 0.2
    x, y = rng.normal(size=(n, 2)), rng.normal(0.5, 0.8, size=(n, 2))
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)

    def ot_eps(a: np.ndarray, b: np.ndarray) -> float:
        a_t, b_t = torch.as_tensor(a), torch.as_tensor(b)
        res = ot.solve(ot.dist(a_t, b_t) / 2, w, w, reg=blur**2, reg_type="KL",
                       method="sinkhorn_log", max_iter=5000, tol=1e-9)
        return float(res.value)

    exact = ot_eps(x, y) - 0.5 * ot_eps(x, x) - 0.5 * ot_eps(y, y)
    estimate = {s: sinkhorn_divergence(x, y, blur=blur, scaling=s) for s in (0.5, 0.9, 0.999)}
    assert estimate[0.999] == pytest.approx(exact, rel=1e-5)
    assert estimate[0.5] < estimate[0.9] < exact * (1 - 1e-3)  # biased low, less so at 0.9
    assert estimate[0.5] < exact * (1 - 0.02)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_support_share_against_scipy(k: int) -> None:
    """Against scipy: the k-th neighbour radii by a k-d tree, the ball test by cdist (sizes
    above the 512-row blocks, so the blocks are joined too)."""
    from scipy.spatial import cKDTree
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(k)
    y = rng.standard_normal((700, 3))
    x = 1.3 * rng.standard_normal((600, 3)) + 0.2
    radii = cKDTree(y).query(y, k + 1)[0][:, k]
    np.testing.assert_allclose(knn_radii(y, k), radii, rtol=1e-12)
    inside = (cdist(x, y) <= radii[None, :]).any(axis=1)
    assert support_share(x, y, k) == inside.mean()
    back = (cdist(y, x) <= cKDTree(x).query(x, k + 1)[0][:, k][None, :]).any(axis=1)
    assert precision_recall(x, y, k) == (inside.mean(), back.mean())


def test_precision_counts_mass_off_the_data_and_recall_the_data_missed() -> None:
    rng = np.random.default_rng(0)
    blobs = np.array([[-5.0, 0.0], [5.0, 0.0]])
    y = 0.1 * rng.standard_normal((400, 2)) + blobs[rng.integers(0, 2, 400)]
    assert precision_recall(y, y) == (1.0, 1.0)
    assert precision_recall(y + 100.0, y) == (0.0, 0.0)
    x = 0.1 * rng.standard_normal((400, 2)) + blobs[rng.integers(0, 2, 400)]
    p, r = precision_recall(x, y)
    # a bridge of 40 points between the blobs, 5 from both (its k-NN balls are 1e-3 wide):
    # precision is diluted by exactly 400/440, and the data it covers does not change
    bridge = 1e-3 * rng.standard_normal((40, 2))
    assert precision_recall(np.vstack([x, bridge]), y) == (p * 400 / 440, r)
    # samples of one blob only (their neighbours, and so their balls, are those they had in
    # x): the data of the other blob is missed, the rest covered as before
    one, right = x[x[:, 0] > 0], y[y[:, 0] > 0]
    p1, r1 = precision_recall(one, y)
    assert p1 > 0.9
    assert r1 == support_share(right, x) * len(right) / len(y) < 0.6


def test_knn_radii_needs_more_points_than_neighbours() -> None:
    with pytest.raises(ValueError, match="k: expected 1 <= k < 3"):
        knn_radii(np.zeros((3, 2)), 3)
