"""Bad input fails at load time: exit status 2, one line naming the field or file, nothing written.

Each case writes a small bad scenario into ``tmp_path`` and checks both ``load_scenario``
(a one-line ScenarioError naming the field) and ``cli.main(["solve", ...])`` (rc 2, exactly one
stderr line ``error: ...`` naming it, no output file and no temporary file left behind).
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mfg.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # cli.py lives at the repository root
    sys.path.insert(0, str(REPO))

GOOD = """\
name: bad_input
dim: 2
lambda: 1.0
source: {kind: gaussian, mean: [-1.0, 0.0], std: 0.5}
target:
  kind: mixture
  components:
    - {weight: 0.5, mean: [1.2, 1.0], std: 0.4}
    - {weight: 0.5, mean: [1.2, -1.0], std: 0.4}
terminal: {kind: f, f: kl}
domain: {bounds: [[-3, 3], [-3, 3]]}
solver: {kind: grid, n: 16, nt: 4, max_iter: 5, tol: 1.0e-5}
"""


def _bad(old: str, new: str) -> str:
    """GOOD with ``old`` replaced by ``new`` (exactly once)."""
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


def _assert_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, names: str
) -> None:
    """Write ``text`` (None: no file) to bad.yaml and check that both entry points reject it."""
    scenario = tmp_path / "bad.yaml"
    if text is not None:
        scenario.write_text(text)
    before = sorted(tmp_path.iterdir())

    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    message = str(info.value)
    assert "\n" not in message and names in message, message

    import cli  # imported late: written concurrently, and the checks above run without it

    out = tmp_path / "out.h5"
    rc = cli.main(["solve", str(scenario), "--out", str(out)])
    err_lines = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert len(err_lines) == 1, err_lines
    assert err_lines[0].startswith("error: ") and err_lines[0].strip() != "error:"
    assert names in err_lines[0], err_lines[0]
    assert not out.exists()
    assert sorted(tmp_path.iterdir()) == before  # no temporary file left behind


def test_unknown_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _bad("max_iter: 5,", "max_iter: 5, foo: 1,")
    _assert_rejected(tmp_path, capsys, text, "solver.foo")


def test_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_rejected(tmp_path, capsys, _bad("lambda: 1.0", "lambda: fast"), "lambda")


def test_lambda_not_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_rejected(tmp_path, capsys, _bad("lambda: 1.0", "lambda: 0"), "lambda")


def test_std_not_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_rejected(tmp_path, capsys, _bad("std: 0.5}", "std: -0.5}"), "source.std")


def test_weights_not_summing_to_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _bad("{weight: 0.5, mean: [1.2, 1.0]", "{weight: 0.6, mean: [1.2, 1.0]")
    _assert_rejected(tmp_path, capsys, text, "target.components")


def test_mean_of_wrong_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _bad("mean: [-1.0, 0.0]", "mean: [-1.0, 0.0, 0.5]")
    _assert_rejected(tmp_path, capsys, text, "source.mean")


def test_domain_not_covering_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _bad("bounds: [[-3, 3], [-3, 3]]", "bounds: [[-1, 3], [-3, 3]]")
    _assert_rejected(tmp_path, capsys, text, "domain")


def test_missing_samples_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _bad(
        "source: {kind: gaussian, mean: [-1.0, 0.0], std: 0.5}",
        "source: {kind: samples, path: no_such_points.h5, dataset: x}",
    )
    _assert_rejected(tmp_path, capsys, text, "no_such_points.h5")


def test_missing_samples_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(tmp_path / "points.h5", "w") as f:
        f.create_dataset("x", data=np.zeros((10, 2)))
    text = _bad(
        "source: {kind: gaussian, mean: [-1.0, 0.0], std: 0.5}",
        "source: {kind: samples, path: points.h5, dataset: y}",
    )
    _assert_rejected(tmp_path, capsys, text, "source.dataset")


def test_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_rejected(tmp_path, capsys, "name: [unclosed\ndim: {2\n", "bad.yaml")


def test_missing_scenario_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_rejected(tmp_path, capsys, None, "bad.yaml")
