"""Digits as a target (mfg.datasets.Digits), their measures (mfg.digits) and the sample grid PNG.

Checked against truth: the loader against scikit-learn's pixels and the documented map
x = p/4 − 2; the classifier's held-out accuracy; class coverage of the real digits against their
labels, and of a degenerate set (one image repeated) against that image's label; the floor of the
64-D Sinkhorn divergence against exact optimal transport (POT ``ot.emd2``: at blur 0.05 the
entropic bias is far below the cost scale); a scenario with dim ≠ 64 rejected with exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mfg.datasets import (
    DIGITS_DIM,
    Digits,
    coords_to_pixels,
    digits_pixels,
    digits_to_coords,
)
from mfg.digits import (
    class_coverage,
    digits_report,
    real_halves,
    train_classifier,
    write_digits_png,
)
from mfg.metrics import precision_recall
from mfg.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # cli.py lives at the repository root
    sys.path.insert(0, str(REPO))


def _scenario(dim: int, target_extra: str = "") -> str:
    mean = ", ".join(["0.0"] * dim)
    return f"""\
name: digits_case
dim: {dim}
lambda: 0.05
source: {{kind: gaussian, mean: [{mean}], std: 1.0}}
target: {{kind: dataset, name: digits{target_extra}}}
terminal: {{kind: lipschitz_f, f: kl, L: 1.0}}
solver: {{kind: neural, max_iter: 2}}
"""


# ---------------------------------------------------------------------------------------------
# loader


def test_loader_shape_and_range() -> None:
    pixels, labels = digits_pixels()
    assert pixels.shape == (1797, 64) and labels.shape == (1797,)
    assert set(np.unique(labels)) == set(range(10))
    assert pixels.min() == 0 and pixels.max() == 16
    np.testing.assert_array_equal(pixels, np.round(pixels))  # integer grey levels

    x = Digits().sample(3000, np.random.default_rng(0))
    assert x.shape == (3000, DIGITS_DIM) and x.dtype == np.float64
    assert x.min() == -2.0 and x.max() == 2.0
    # rows are real images (drawn with replacement), in the documented coordinates
    p = coords_to_pixels(x)
    real = {row.tobytes() for row in pixels}
    assert all(row.tobytes() in real for row in p)
    np.testing.assert_allclose(digits_to_coords(pixels[:1]), pixels[:1] / 4 - 2)
    # the empirical measure's moments
    np.testing.assert_allclose(Digits().mean(), pixels.mean(0) / 4 - 2)
    np.testing.assert_allclose(np.trace(Digits(noise=0.5).cov()),
                               np.trace(np.cov(pixels / 4, rowvar=False, bias=True)) + 64 * 0.25)


def test_dequantization_noise() -> None:
    """Same rows drawn (the row indices come first from the generator), plus N(0, 0.1²I)."""
    clean = Digits().sample(4000, np.random.default_rng(1))
    noise = Digits(noise=0.1).sample(4000, np.random.default_rng(1)) - clean
    assert abs(noise.mean()) < 0.002 and abs(noise.std() - 0.1) < 0.002


def test_scenario_loads_digits() -> None:
    sc = load_scenario(REPO / "scenarios" / "neural_digits.yaml")
    assert isinstance(sc.target, Digits) and sc.dim == 64
    assert sc.terminal.kind == "lipschitz_f"


@pytest.mark.parametrize(
    ("dim", "extra", "names"),
    [(12, "", "target.name"), (64, ", embedding: pad", "target.embedding")],
)
def test_bad_digits_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     dim: int, extra: str, names: str) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(_scenario(dim, extra))
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    assert names in str(info.value) and "\n" not in str(info.value)

    import cli

    before = sorted(tmp_path.iterdir())
    out = tmp_path / "out.h5"
    rc = cli.main(["solve", str(scenario), "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and names in err[0], err
    assert not out.exists() and sorted(tmp_path.iterdir()) == before


# ---------------------------------------------------------------------------------------------
# classifier and coverage


def test_classifier_held_out_accuracy() -> None:
    clf = train_classifier()
    assert clf.n_train + clf.n_test == 1797 and clf.n_test >= 400
    assert clf.accuracy > 0.9


def test_coverage_of_real_digits_matches_labels() -> None:
    pixels, labels = digits_pixels()
    cov = class_coverage(digits_to_coords(pixels))
    truth = np.bincount(labels, minlength=10) / len(labels)
    assert cov.shares.sum() == pytest.approx(1.0)
    np.testing.assert_array_less(np.abs(cov.shares - truth), 0.02)
    assert cov.unsure < 0.05


def test_coverage_of_one_repeated_image() -> None:
    pixels, labels = digits_pixels()
    i = int(np.flatnonzero(labels == 7)[0])
    cov = class_coverage(np.repeat(digits_to_coords(pixels[i: i + 1]), 500, axis=0))
    expected = np.zeros(10)
    expected[7] = 1.0
    np.testing.assert_array_equal(cov.shares, expected)


def test_coverage_of_one_class_subset() -> None:
    """Samples drawn only among the 3s and 8s: coverage lands on those two classes."""
    pixels, labels = digits_pixels()
    x = digits_to_coords(pixels[(labels == 3) | (labels == 8)])
    shares = class_coverage(x).shares
    assert shares[3] + shares[8] > 0.95
    assert 0.4 < shares[3] < 0.6


# ---------------------------------------------------------------------------------------------
# report


def test_sinkhorn_floor_against_exact_ot() -> None:
    """The floor is S_ε between the two real halves; at blur 0.05 (ε = 0.0025 against costs of
    order 75) S_ε is the exact OT cost W (|x − y|²/2, POT) up to ε·log n = 0.017 from above.
    From below it is not: geomloss's ε-scaling (scaling 0.5, as in mfg.metrics) stops before
    the potentials converge and reads 12.24 for W = 13.35 here (0.917·W; scaling 0.9: 12.86,
    0.99: 13.33 in 145 s). The lower bound 0.9·W pins that known bias, so that a change of the
    metric shows up here."""
    import ot

    a, b = real_halves()
    report = digits_report(b)  # |B| = 898 points: compared in full, so it equals the floor
    assert report["n_compared"] == len(b)
    assert report["sinkhorn"] == pytest.approx(report["sinkhorn_floor"], rel=1e-9)
    cost = ot.dist(b, a, metric="sqeuclidean") / 2
    exact = ot.emd2(np.full(len(b), 1 / len(b)), np.full(len(a), 1 / len(a)), cost)
    assert 0.9 * exact < report["sinkhorn_floor"] < exact + 0.0025 * np.log(len(a))


def test_report_separates_real_from_noise() -> None:
    rng = np.random.default_rng(3)
    _, b = real_halves()
    noise = digits_report(rng.standard_normal((2000, 64)))
    assert noise["n_samples"] == 2000 and noise["n_compared"] == len(b)
    assert noise["sinkhorn"] > 5 * noise["sinkhorn_floor"]
    assert noise["mmd2"] > 100 * noise["mmd2_floor"]
    assert noise["unsure"] > 0.1
    assert noise["precision"] == 0.0  # no noise image is within a 3-NN ball of a digit
    assert noise["classifier_accuracy"] > 0.9
    coverage = [noise[f"coverage_{k}"] for k in range(10)]
    assert sum(coverage) == pytest.approx(1.0)
    assert noise["coverage_min"] == min(coverage) and noise["coverage_max"] == max(coverage)


def test_precision_and_recall_tell_blurred_samples_from_lost_classes() -> None:
    """Precision and recall of the report (k = 3) on cases whose answer is known: half B read
    against A in full is the floor itself (0.91 and 0.90); the real digits with every pixel moved
    by ±3 grey levels (0.75 in x) leave the digits' support (precision 0.12) but cover all of it
    (recall 1); the real digits of one class (as the classifier labels them, 81-99 images) are
    on the support (precision 0.87-0.98) and cover little else (recall 0.08-0.22, against the
    floor's 0.90): a generator that lost nine classes."""
    a, b = real_halves()
    floor = digits_report(b)
    assert floor["precision"] == floor["precision_floor"]
    assert floor["recall"] == floor["recall_floor"]
    assert 0.85 < floor["precision_floor"] < 0.95 and 0.85 < floor["recall_floor"] < 0.95
    pixels, _ = digits_pixels()
    steps = np.random.default_rng(4).choice([-1.0, 1.0], (len(pixels), 64))
    blurred = digits_report(digits_to_coords(pixels) + 0.75 * steps)
    assert blurred["precision"] < 0.5 < floor["recall_floor"] < blurred["recall"]
    labels = train_classifier().model.predict(b)
    for k in range(10):
        precision, recall = precision_recall(b[labels == k], a)  # the report's own measure
        assert precision > 0.85 and recall < 0.25


def test_report_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(n, 64\)"):
        digits_report(np.zeros((10, 12)))
    with pytest.raises(ValueError, match="non-finite"):
        digits_report(np.full((10, 64), np.nan))
    with pytest.raises(ValueError, match="at least 4"):
        digits_report(np.zeros((3, 64)))


# ---------------------------------------------------------------------------------------------
# PNG


def test_png_grid_written(tmp_path: Path) -> None:
    from matplotlib.image import imread

    x = Digits().sample(100, np.random.default_rng(0))
    path = write_digits_png(x, tmp_path / "grid.png")
    assert path == tmp_path / "grid.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 2 * img.shape[0] * 0.8
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary left behind
    # fewer samples than cells: still written
    write_digits_png(x[:7], tmp_path / "few.png")
    assert (tmp_path / "few.png").stat().st_size > 0


def test_study_digits_reports_real_digits_at_the_floor(tmp_path: Path, capsys) -> None:
    """``cli.py study digits RESULT``: a result whose samples are 1,000 real digits covers every
    class within 5–15 % and sits near the Sinkhorn floor; the PNG and the one-row table (the
    report's numbers, with the result's scenario) are written beside it. A result of another
    target is bad input, and so is a PNG name whose table would replace the result (exit 2,
    nothing written)."""
    import cli
    from mfg.results import Result, read_table, write_result

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "scenarios" / "neural_digits.yaml").read_text()
    real = digits_to_coords(digits_pixels()[0])
    samples = real[np.random.default_rng(3).choice(len(real), 1000, replace=False)]
    res = Result(solver="neural", status="max_iter", scenario_text=text, settings={},
                 samples={"terminal": samples})
    path = write_result(res, tmp_path / "real.h5")
    assert cli.main(["study", "digits", str(path)]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "real_digits.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    columns, attrs = read_table(tmp_path / "real_digits.h5")
    report = {key: float(value[0]) for key, value in columns.items()}
    assert all(len(value) == 1 for value in columns.values())
    assert report == pytest.approx(digits_report(samples), rel=1e-12)
    assert 0.05 <= report["coverage_min"] <= report["coverage_max"] <= 0.15
    assert report["sinkhorn"] < 1.2 * report["sinkhorn_floor"]
    assert attrs["study"] == "digits" and attrs["scenario"] == text
    assert attrs["result"] == str(path) and attrs["figure"] == str(png)
    assert "coverage min / max" in out
    assert "precision (3-NN)" in out and "recall (3-NN)" in out
    # a PNG named like the result: its table would replace the input
    before = path.read_bytes()
    assert cli.main(["study", "digits", str(path), "-o", str(tmp_path / "real.png")]) == 2
    assert "table" in capsys.readouterr().err
    assert path.read_bytes() == before and not (tmp_path / "real.png").exists()
    other = Result(solver="neural", status="max_iter", settings={},
                   scenario_text=(repo / "scenarios" / "neural_pinwheel_2d.yaml").read_text(),
                   samples={"terminal": np.zeros((10, 2))})
    bad = write_result(other, tmp_path / "pinwheel.h5")
    assert cli.main(["study", "digits", str(bad)]) == 2
    assert "study digits needs" in capsys.readouterr().err
    assert not (tmp_path / "pinwheel_digits.png").exists()
    assert not (tmp_path / "pinwheel_digits.h5").exists()
    few = write_result(Result(solver="neural", status="max_iter", scenario_text=text, settings={},
                              samples={"terminal": samples[:3]}), tmp_path / "few.h5")
    assert cli.main(["study", "digits", str(few)]) == 2
    assert "holds 3 terminal samples; study digits needs at least 4" in capsys.readouterr().err
    assert not (tmp_path / "few_digits.png").exists()
