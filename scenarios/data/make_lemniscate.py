"""Write lemniscate_12d.h5: a 2-D data set of our own (a noisy lemniscate of Bernoulli) embedded
in R^12 by a random isometry, as a user would bring their own data (``kind: samples``).

    python scenarios/data/make_lemniscate.py      # rewrites scenarios/data/lemniscate_12d.h5

Points: t ~ U(0, 2π), c(t) = a·(cos t, sin t cos t)/(1 + sin² t) with a = 3, plus N(0, 0.08²I)
in the plane; then x = Q c ∈ R^12 with Q (12×2, QᵀQ = I) from the QR factorization of a Gaussian
matrix of seed 2026. Datasets: ``points`` (10000, 12) and ``basis`` Q (12, 2), so that the
distance of generated samples to the data plane, |x − QQᵀx|, can be computed exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

N, DIM, SCALE, NOISE, SEED = 10_000, 12, 3.0, 0.08, 2026


def lemniscate(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points (n, 2) of the noisy lemniscate (module docstring)."""
    t = rng.uniform(0.0, 2 * np.pi, n)
    s, c = np.sin(t), np.cos(t)
    curve = SCALE * np.stack([c, s * c], axis=1) / (1.0 + s**2)[:, None]
    return curve + NOISE * rng.standard_normal((n, 2))


def main() -> None:
    rng = np.random.default_rng(SEED)
    q, r = np.linalg.qr(rng.standard_normal((DIM, 2)))
    basis = q * np.sign(np.diag(r))
    points = lemniscate(N, rng) @ basis.T
    out = Path(__file__).with_name("lemniscate_12d.h5")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("points", data=points)
        f.create_dataset("basis", data=basis)
        f.attrs["description"] = __doc__.split("\n\n")[2]
    os.replace(tmp, out)
    print(f"wrote {out}: points {points.shape}, basis {basis.shape}")


if __name__ == "__main__":
    main()
