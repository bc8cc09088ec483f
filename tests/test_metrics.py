"""mfg.metrics against exact identities."""

from __future__ import annotations

import numpy as np
import pytest

from mfg.metrics import sinkhorn_divergence


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


def test_sinkhorn_of_a_translation_is_half_the_squared_shift() -> None:
    """Quadratic cost |x − y|²/2: OT_ε(α, α(· − δ)) = OT_ε(α, α) + |δ|²/2 (the cross term
    integrates to 0 under any coupling of two measures with the same mean shift), so the
    debiased divergence is exactly |δ|²/2 for every ε."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 2))
    shift = np.array([0.3, -0.4])
    assert sinkhorn_divergence(x, x + shift) == pytest.approx(0.125, rel=1e-3)
