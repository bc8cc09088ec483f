"""Scenario loading: valid files, overrides, text round trip, one-line field-named errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mfg.distributions import Gaussian, Mixture, Samples, Uniform
from mfg.scenario import (
    Domain,
    Scenario,
    ScenarioError,
    TerminalCost,
    distribution_from_dict,
    load_scenario,
    parse_scenario,
)
from mfg.settings.grid import GridSolverConfig

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

BASE = """\
# a small valid scenario
name: base
dim: 2
lambda: 1
source: {kind: gaussian, mean: [-1.0, 0.0], std: 0.5}
target:
  kind: mixture
  components:
    - {weight: 0.5, mean: [1.2, 1.0], std: 0.4}
    - {weight: 0.5, mean: [1.2, -1.0], std: 0.4}
terminal: {kind: fixed}
domain: {bounds: [[-3, 3], [-3, 3]]}
solver: {kind: grid, n: 32, nt: 8, max_iter: 10, tol: 1e-5}
"""


def _fields(s: Scenario) -> dict[str, object]:
    return {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}


# --------------------------------------------------------------------------------- valid input


def test_valid_scenario_loads() -> None:
    s = parse_scenario(BASE)
    assert (s.name, s.dim, s.T, s.lam, s.seed, s.output) == ("base", 2, 1.0, 1.0, 0, None)
    assert s.source == Gaussian((-1.0, 0.0), std=(0.5, 0.5))
    assert isinstance(s.target, Mixture) and s.target.weights == (0.5, 0.5)
    assert s.terminal == TerminalCost(kind="fixed")
    assert s.domain == Domain(bounds=((-3.0, 3.0), (-3.0, 3.0)))
    assert s.solver == GridSolverConfig(n=(32, 32), nt=8, max_iter=10, tol=1e-5)
    assert isinstance(s.solver.tol, float)  # "1e-5" is a float, not YAML 1.1's string


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_shared_scenarios_load(path: Path) -> None:
    assert path.read_text().startswith("#"), "each shared scenario starts with a comment header"
    s = load_scenario(path)
    assert s.name == path.stem
    if s.solver.kind == "grid":
        assert len(s.solver.n) == s.dim == len(s.domain.bounds)
    if s.domain is not None:
        assert s.source.mass_in_box(s.domain.bounds) >= 0.999


def test_expected_shared_scenarios_exist() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.yaml")}
    assert {
        "quickstart", "gaussian_kl_1d", "gaussian_fixed_1d", "gaussian_kl_2d", "mixture_fixed_2d",
        "circle_lipschitz_2d",
    } <= names


def test_quickstart_contents() -> None:
    s = load_scenario(SCENARIOS / "quickstart.yaml")
    assert s.terminal == TerminalCost(kind="f", f="kl")
    assert s.source == Gaussian((-1.0, 0.0), std=0.5)
    assert s.target == Mixture(
        (0.5, 0.5), (Gaussian((1.2, 1.0), std=0.4), Gaussian((1.2, -1.0), std=0.4))
    )
    assert s.solver.n == (48, 48)


def test_int_std_broadcasts() -> None:
    wide = "domain.bounds=[[-6, 6], [-6, 6]]"
    s = parse_scenario(BASE, overrides=["source.std=1", wide])
    assert s.source.std == (1.0, 1.0) and all(isinstance(v, float) for v in s.source.std)
    s = parse_scenario(BASE, overrides=["source.std=[0.3, 1]", wide])
    assert s.source.std == (0.3, 1.0)


def test_defaults() -> None:
    raw = yaml.safe_load(BASE)
    del raw["solver"]
    s = parse_scenario(yaml.safe_dump(raw))
    assert s.T == 1.0 and s.seed == 0
    assert s.solver == GridSolverConfig(n=(64, 64))


@pytest.mark.parametrize(("overrides", "expected"), [
    # method auto: back-and-forth where it applies, its tol a certified relative gap
    ([], ("bfm", 1e-3, 1000)),
    (["terminal={kind: f, f: chi2}"], ("bfm", 1e-3, 1000)),
    # ... Douglas–Rachford for the W1 kinds, its tol a KKT residual
    (["terminal={kind: w1, L: 1}"], ("douglas_rachford", 1e-6, 5000)),
    (["terminal={kind: lipschitz_f, L: 1, f: kl}"], ("douglas_rachford", 1e-6, 5000)),
    # a method named, or a tol or max_iter given, is kept
    (["solver.method=douglas_rachford"], ("douglas_rachford", 1e-6, 5000)),
    (["solver.tol=1e-4"], ("bfm", 1e-4, 1000)),
    (["solver.max_iter=7", "solver.method=douglas_rachford"], ("douglas_rachford", 1e-6, 7)),
])
def test_grid_method_and_its_defaults_follow_the_terminal(overrides, expected) -> None:
    raw = yaml.safe_load(BASE)
    raw["solver"] = {"kind": "grid", "n": 16}
    s = parse_scenario(yaml.safe_dump(raw), overrides=overrides)
    assert (s.solver.method, s.solver.tol, s.solver.max_iter) == expected


def test_other_distribution_kinds() -> None:
    s = parse_scenario(
        BASE,
        overrides=[
            "source={kind: uniform, low: [-1, -1], high: [1, 0.5]}",
            "target={kind: gaussian, mean: [0, 0], cov: [[0.3, 0.1], [0.1, 0.2]]}",
        ],
    )
    assert s.source == Uniform((-1.0, -1.0), (1.0, 0.5))
    assert s.target == Gaussian((0.0, 0.0), cov=((0.3, 0.1), (0.1, 0.2)))


def test_scenario_is_frozen() -> None:
    s = parse_scenario(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lam = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.solver.n = (8, 8)  # type: ignore[misc]


# ---------------------------------------------------------------------------------- overrides


def test_overrides() -> None:
    s = parse_scenario(BASE, overrides=["solver.n=128", "lambda=2", "T=0.5", "seed=7"])
    assert s.solver.n == (128, 128)
    assert (s.lam, s.T, s.seed) == (2.0, 0.5, 7)
    assert parse_scenario(BASE, overrides=["solver.n=[64,32]"]).solver.n == (64, 32)
    kl = parse_scenario(BASE, overrides=["terminal.kind=f", "terminal.f=kl"])
    assert kl.terminal == TerminalCost(kind="f", f="kl")
    q = load_scenario(SCENARIOS / "quickstart.yaml", overrides=["terminal.f=kl"])
    assert q.terminal == TerminalCost(kind="f", f="kl")


def test_overrides_nested_and_new_fields() -> None:
    s = parse_scenario(
        BASE,
        overrides=[
            "target.components.1.std=0.3",
            "domain.bounds.0=[-4, 4]",
            "solver.gamma=0.5",
            "solver.progress=false",
            "output=out.h5",
        ],
    )
    assert s.target.components[1].std == (0.3, 0.3)
    assert s.domain.bounds[0] == (-4.0, 4.0)
    assert (s.solver.gamma, s.solver.progress, s.output) == (0.5, False, "out.h5")
    assert "gamma: 0.5" in s.text and "output: out.h5" in s.text


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("solver.foo=1", "solver.foo"),
        ("nope=1", "nope"),
        ("source.mean.5=1", "source.mean.5"),
        ("solver.n.x=1", "solver.n"),
        ("missing-equals", "missing-equals"),
    ],
)
def test_bad_override_names_the_path(override: str, field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BASE, origin="base.yaml", overrides=[override])
    msg = str(info.value)
    assert msg.startswith("base.yaml: ") and field in msg and "\n" not in msg


# --------------------------------------------------------------------------------- round trip


def test_text_roundtrips() -> None:
    s = parse_scenario(BASE, overrides=["solver.n=[40, 24]", "terminal={kind: f, f: kl}"])
    again = parse_scenario(s.text)
    assert _fields(again) == _fields(s)
    assert "n: [40, 24]" in s.text  # overrides applied, leaf lists in flow style
    assert "# a small valid scenario" not in s.text


@settings(max_examples=25, deadline=None)
@given(
    mean=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=2),
    std=st.floats(0.05, 0.5),
    lam=st.floats(0.01, 100.0),
    n=st.integers(2, 200),
)
def test_text_roundtrips_property(mean: list[float], std: float, lam: float, n: int) -> None:
    s = parse_scenario(
        BASE,
        overrides=[
            f"source.mean={mean}", f"source.std={std!r}", f"lambda={lam!r}", f"solver.n={n}"
        ],
    )
    assert s.source.loc == tuple(mean) and s.lam == lam
    assert _fields(parse_scenario(s.text)) == _fields(s)


# ------------------------------------------------------------------------------------ samples


def _write(path: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=data)


SAMPLES_TARGET = "target={kind: samples, path: data/pts.h5, dataset: x}"


def test_samples_path_is_relative_to_scenario_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    pts = np.random.default_rng(0).normal(size=(20, 2))
    _write(tmp_path / "data" / "pts.h5", "x", pts)
    monkeypatch.chdir(SCENARIOS)  # somewhere else
    spec = {"kind": "samples", "path": "data/pts.h5", "dataset": "x"}
    target = distribution_from_dict(spec, 2, "target", tmp_path)
    assert isinstance(target, Samples)
    np.testing.assert_array_equal(target.points, pts)
    assert Path(target.path) == (tmp_path / "data" / "pts.h5").resolve()


def test_grid_solver_refuses_a_target_without_density(tmp_path: Path) -> None:
    _write(tmp_path / "pts.h5", "x", np.zeros((5, 2)))
    (tmp_path / "s.yaml").write_text(BASE)
    msg = "target.kind: terminal kind .fixed. needs a target with"
    with pytest.raises(ScenarioError, match=msg):
        load_scenario(tmp_path / "s.yaml", overrides=[SAMPLES_TARGET.replace("data/pts", "pts")])


@pytest.mark.parametrize(
    ("data", "dataset", "expect"),
    [
        (np.zeros((5, 3)), "x", "dimension 3"),
        (np.zeros((5,)), "x", "shape"),
        (np.zeros((0, 2)), "x", "at least one point"),
        (np.array([[0.0, np.inf]]), "x", "non-finite"),
        (np.zeros((5, 2)), "y", "'x'"),
    ],
)
def test_bad_samples(tmp_path: Path, data: np.ndarray, dataset: str, expect: str) -> None:
    _write(tmp_path / "p.h5", dataset, data)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(
            BASE,
            origin="s.yaml",
            base_dir=tmp_path,
            overrides=["target={kind: samples, path: p.h5, dataset: x}"],
        )
    msg = str(info.value)
    assert msg.startswith("s.yaml: target.dataset: ") and expect in msg, msg


def test_distribution_from_dict(tmp_path: Path) -> None:
    d = distribution_from_dict({"kind": "gaussian", "mean": [0, 1], "std": 2}, 2, "prior", tmp_path)
    assert d == Gaussian((0.0, 1.0), std=2.0)
    with pytest.raises(ScenarioError, match=r"^prior\.std: must be > 0"):
        distribution_from_dict({"kind": "gaussian", "mean": [0], "std": 0}, 1, "prior", tmp_path)


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("overrides", "start"),
    [
        (["T=0"], "T: must be > 0"),
        (["lambda=-1"], "lambda: must be > 0"),
        (["dim=0"], "dim: must be >= 1"),
        (["name=3"], "name: must be a string"),
        (["source.std=null", "source.cov=[[1, 2], [2, 1]]"], "source.cov: must be symmetric"),
        (["source.std=null", "source.cov=[[1, 0]]"], "source.cov: must be a 2x2"),
        (["source.cov=[[1, 0], [0, 1]]"], "source.cov: give exactly one"),
        (["source.std=null"], "source.std: missing"),
        (["source.std=[1, 2, 3]"], "source.std: must have 2 entries"),
        (["source.std=[0.5, -1]"], "source.std: must be > 0"),
        (["source.std=abc"], "source.std: must be a number or a list"),
        (["source.kind=normal"], "source.kind: unknown kind 'normal'"),
        (["source={kind: uniform, low: [0, 0], high: [1, 0]}"], "source.high: must be > low"),
        (["source={kind: uniform, low: [0], high: [1, 1]}"], "source.low: must have 2"),
        (["target.components.0.weight=-0.5", "target.components.1.weight=1.5"],
         "target.components.0.weight: must be >= 0"),
        (["target.components.0.mean=[1.2]"], "target.components.0.mean: must have 2"),
        (["target.components=[]"], "target.components: must have at least 1"),
        (["target.components.0.mean.1=0.0", "target.components.1.mean=[2.9, 0]"],
         "domain.bounds: does not cover the target"),
        (["domain.bounds=[[-3, 3]]"], "domain.bounds: must have 2"),
        (["domain.bounds.1=[3, -3]"], "domain.bounds.1: lo must be < hi"),
        (["domain.bounds.1=[-3, 3, 4]"], "domain.bounds.1: must be a pair"),
        (["domain.bounds.0=[-1, 1]"], "domain.bounds: does not cover the source"),
        (["terminal.kind=w9"], "terminal.kind: unknown kind"),
        (["terminal.f=kl"], "terminal.f: unknown field (for kind 'fixed')"),
        (["terminal={kind: f, f: hellinger}"], "terminal.f: unknown f-divergence"),
        (["terminal={}"], "terminal.kind: missing required field"),
        (["solver.n=[32, 32, 32]"], "solver.n: must have 2 entries"),
        (["solver.n=1"], "solver.n: must be >= 2"),
        (["solver.n=32.0"], "solver.n: must be an integer or a list"),
        (["solver.nt=1"], "solver.nt: must be >= 2"),
        (["solver.max_iter=0"], "solver.max_iter: must be >= 1"),
        (["solver.tol=0"], "solver.tol: must be > 0"),
        (["solver.gamma=-1"], "solver.gamma: must be > 0"),
        (["solver.progress=yes please"], "solver.progress: must be true or false"),
        (["solver.kind=spectral"], "solver.kind: unknown kind"),
        (["seed=1.5"], "seed: must be an integer"),
        (["source=[1, 2]"], "source: must be a mapping"),
    ],
)
def test_invalid_values_give_one_line_naming_the_field(overrides: list[str], start: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BASE, origin="base.yaml", overrides=overrides)
    msg = str(info.value)
    assert msg.startswith(f"base.yaml: {start}"), msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("name: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("", "empty scenario"),
        (BASE + "lambda: 2\n", "not valid YAML: duplicate key 'lambda'"),
        (BASE.replace("name: base\n", ""), "name: missing required field"),
        (BASE + "extra: 1\n", "extra: unknown field"),
    ],
)
def test_invalid_documents(text: str, start: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, origin="x.yaml")
    msg = str(info.value)
    assert msg.startswith(f"x.yaml: {start}"), msg
    assert "\n" not in msg


def test_missing_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ScenarioError, match=r"absent\.yaml: scenario file not found$"):
        load_scenario(path)


def test_grid_solver_refuses_more_than_three_dimensions():
    text = """
name: g4
dim: 4
lambda: 1
source: {kind: gaussian, mean: [0, 0, 0, 0], std: 0.5}
target: {kind: gaussian, mean: [1, 0, 0, 0], std: 0.5}
terminal: {kind: fixed}
domain: {bounds: [[-4, 4], [-4, 4], [-4, 4], [-4, 4]]}
solver: {kind: grid, n: 8}
"""
    with pytest.raises(ScenarioError, match=r"solver.kind: the grid solver runs in 1-D to 3-D"):
        parse_scenario(text, origin="g4.yaml")
