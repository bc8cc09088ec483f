"""Quality of generated digits (``target: {kind: dataset, name: digits}``, DESIGN.md §2 neural).

Samples live in the coordinates of mfg.datasets (x = p/4 − 2 ∈ [−2, 2]^64 for pixels p). The
measures of :func:`digits_report`:

* **class coverage**: a multinomial logistic regression trained, in the same run, on a stratified
  75 % of the real digits (fixed seed), its accuracy measured on the other 25 %; it assigns each
  generated sample the most probable class. Coverage is the share of samples per class (the
  target: every class between 5 % and 15 %; the real digits have 9.7–10.2 %), and ``unsure`` the
  share whose largest class probability is below 0.5 (blurred or off-manifold samples).
* **Sinkhorn**: the debiased Sinkhorn divergence S_ε (p = 2, blur 0.05, cost |x − y|²/2, in the
  64-D coordinates) between the generated samples and one half A of the real digits, read against
  its **floor**: the same divergence between the two disjoint halves B and A of the real digits
  (a random split with a fixed seed). Both use as many points: the generated set is subsampled
  (without replacement, fixed seed) to |B| = 898 when larger. A generator that only copies
  training images can go below the floor; one that generalizes sits at about the floor.
* **MMD²** with a Gaussian kernel e^{−|x−y|²/(2h²)}, h = :data:`MMD_BANDWIDTH` = 12 (close to the
  median distance between two real digits, 12.3 in these coordinates), against A, with the same
  floor construction.
* **precision and recall** (mfg.metrics.precision_recall, k = 3 nearest neighbours): the share of
  the compared samples inside the k-NN balls of A (samples where no digit is: blurred or
  off-manifold images), and the share of A inside the samples' balls (digits the generator
  misses: lost modes or styles). Floors: B against A, the same construction. Unlike the class
  coverage they need no classifier, and unlike S_ε they say which of the two failures it is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfg.datasets import (
    DIGITS_CLASSES,
    DIGITS_DIM,
    DIGITS_IMAGE_SHAPE,
    DIGITS_MAX_PIXEL,
    coords_to_pixels,
    digits_pixels,
    digits_to_coords,
)
from mfg.metrics import SUPPORT_NEIGHBOURS, mmd2, precision_recall, sinkhorn_divergence

Array = np.ndarray

#: share of the real digits the classifier is trained on (the rest measures its accuracy)
TRAIN_SHARE = 0.75
#: a sample is "unsure" when its largest class probability is below this
UNSURE_BELOW = 0.5
#: Sinkhorn divergence settings (the study's: p = 2, blur 0.05)
SINKHORN_BLUR = 0.05
SINKHORN_P = 2
#: Gaussian-kernel bandwidth of the MMD, in the x = p/4 − 2 coordinates (module docstring)
MMD_BANDWIDTH = 12.0


@dataclass(frozen=True)
class DigitClassifier:
    """A classifier of the real digits: ``model`` (scikit-learn, on x coordinates), its accuracy
    on the ``n_test`` held-out images after training on ``n_train``."""

    model: Any
    accuracy: float
    n_train: int
    n_test: int

    def probabilities(self, x: Array) -> Array:
        """Class probabilities (n, 10) of samples x (n, 64)."""
        return self.model.predict_proba(_check_samples(x))


@dataclass(frozen=True)
class Coverage:
    """``shares[k]``: fraction of samples assigned to class k (sums to 1); ``unsure``: fraction
    whose largest class probability is below :data:`UNSURE_BELOW`."""

    shares: Array
    unsure: float


def _check_samples(x: Array) -> Array:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != DIGITS_DIM or len(x) == 0:
        raise ValueError(f"digit samples must have shape (n, {DIGITS_DIM}) with n >= 1, "
                         f"got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("digit samples hold non-finite values (nan or inf)")
    return x


def _split(labels: Array, seed: int) -> tuple[Array, Array]:
    """Stratified split of the indices of ``labels``: TRAIN_SHARE of each class, the rest."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in range(DIGITS_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == k))
        cut = int(round(TRAIN_SHARE * len(idx)))
        train.append(idx[:cut])
        test.append(idx[cut:])
    return np.concatenate(train), np.concatenate(test)


@functools.cache
def train_classifier(seed: int = 0) -> DigitClassifier:
    """Multinomial logistic regression (L2, C = 1, lbfgs) on a stratified TRAIN_SHARE of the real
    digits, with its held-out accuracy; cached per seed (a second call in a run is free)."""
    from sklearn.linear_model import LogisticRegression  # local: only digits need scikit-learn

    pixels, labels = digits_pixels()
    x = digits_to_coords(pixels)
    train, test = _split(labels, seed)
    model = LogisticRegression(C=1.0, max_iter=5000)
    model.fit(x[train], labels[train])
    accuracy = float(np.mean(model.predict(x[test]) == labels[test]))
    return DigitClassifier(model, accuracy, len(train), len(test))


def class_coverage(samples: Array, classifier: DigitClassifier | None = None) -> Coverage:
    """Class shares of ``samples`` (n, 64) under ``classifier`` (default: train_classifier())."""
    clf = classifier if classifier is not None else train_classifier()
    prob = clf.probabilities(samples)
    shares = np.bincount(prob.argmax(axis=1), minlength=DIGITS_CLASSES) / len(prob)
    return Coverage(shares, float(np.mean(prob.max(axis=1) < UNSURE_BELOW)))


def real_halves(seed: int = 0) -> tuple[Array, Array]:
    """The real digits (coordinates) split at random into two disjoint halves (A, B),
    |A| = 899, |B| = 898."""
    x = digits_to_coords(digits_pixels()[0])
    perm = np.random.default_rng(seed).permutation(len(x))
    half = (len(x) + 1) // 2
    return x[perm[:half]], x[perm[half:]]


def digits_report(samples: Array, seed: int = 0) -> dict[str, float]:
    """Measures of generated digits ``samples`` (n, 64) in the x = p/4 − 2 coordinates (module
    docstring). Keys: ``coverage_0`` .. ``coverage_9``, ``coverage_min``, ``coverage_max``,
    ``unsure``, ``classifier_accuracy`` (held out), ``sinkhorn``, ``sinkhorn_floor``, ``mmd2``,
    ``mmd2_floor``, ``mmd_bandwidth``, ``precision``, ``recall``, ``precision_floor``,
    ``recall_floor``, ``n_samples``, ``n_compared``. ValueError if the samples are not (n, 64)
    finite numbers, or fewer than 4 (k + 1 for the k-NN balls of the recall)."""
    x = _check_samples(samples)
    if len(x) <= SUPPORT_NEIGHBOURS:
        raise ValueError(f"digit samples: at least {SUPPORT_NEIGHBOURS + 1} needed for the "
                         f"{SUPPORT_NEIGHBOURS}-NN balls of the recall, got {len(x)}")
    clf = train_classifier(seed)
    cov = class_coverage(x, clf)
    ref_a, ref_b = real_halves(seed)
    if len(x) > len(ref_b):
        x_cmp = x[np.random.default_rng(seed).choice(len(x), size=len(ref_b), replace=False)]
    else:
        x_cmp = x
    precision, recall = precision_recall(x_cmp, ref_a)
    precision_floor, recall_floor = precision_recall(ref_b, ref_a)
    report = {f"coverage_{k}": float(s) for k, s in enumerate(cov.shares)}
    report |= {
        "coverage_min": float(cov.shares.min()),
        "coverage_max": float(cov.shares.max()),
        "unsure": cov.unsure,
        "classifier_accuracy": clf.accuracy,
        "sinkhorn": sinkhorn_divergence(x_cmp, ref_a, SINKHORN_BLUR, SINKHORN_P),
        "sinkhorn_floor": sinkhorn_divergence(ref_b, ref_a, SINKHORN_BLUR, SINKHORN_P),
        "mmd2": mmd2(x_cmp, ref_a, "gaussian", MMD_BANDWIDTH),
        "mmd2_floor": mmd2(ref_b, ref_a, "gaussian", MMD_BANDWIDTH),
        "mmd_bandwidth": MMD_BANDWIDTH,
        "precision": precision,
        "recall": recall,
        "precision_floor": precision_floor,
        "recall_floor": recall_floor,
        "n_samples": float(len(x)),
        "n_compared": float(len(x_cmp)),
    }
    return report


def write_digits_png(samples: Array, path: str | Path, n_rows: int = 10, n_cols: int = 10,
                     seed: int = 0) -> Path:
    """PNG of the first n_rows·n_cols ``samples`` (n, 64) as 8×8 images beside as many real
    digits drawn at random (fixed ``seed``), pixels p = 4(x + 2) on the grey scale [0, 16]."""
    from mfg.plotting import plot_image_grids  # local: matplotlib only when a figure is drawn

    x = _check_samples(samples)[: n_rows * n_cols]
    pixels = digits_pixels()[0]
    real = pixels[np.random.default_rng(seed).choice(len(pixels), n_rows * n_cols,
                                                      replace=False)]
    return plot_image_grids(
        {"generated": coords_to_pixels(x), "real digits": real}, path,
        image_shape=DIGITS_IMAGE_SHAPE, n_rows=n_rows, n_cols=n_cols,
        value_range=(0.0, DIGITS_MAX_PIXEL),
    )
