"""Scenario: the whole, validated description of one problem (DESIGN.md §3).

CONTRACT: the frozen dataclasses below (:class:`Scenario`, :class:`TerminalCost`,
:class:`Domain`, and the solver family's config from :mod:`mfg.settings`) are what solvers and
the CLI consume.

Loading is :func:`load_scenario` (a file) or :func:`parse_scenario` (text). The YAML mapping is

    name: str                     # required
    dim: int                      # >= 1 (each solver family states its own range: grid 1-3)
    T: float > 0                  # default 1
    lambda: float > 0             # required; the kinetic weight λ (Scenario.lam)
    source: <distribution>        # required
    target: <distribution>        # required
    terminal: {kind: fixed} | {kind: f, f: kl}
    domain: {bounds: [[lo, hi], ...]}          # one pair per dimension, lo < hi
    solver: {kind: grid, n: int | [int, ...], nt: int >= 2, max_iter: int >= 1,
             tol: float > 0, gamma: float > 0 (optional), progress: bool}   # default {kind: grid}
    seed: int >= 0                # default 0
    output: str                   # optional

with ``<distribution>`` one of

    {kind: gaussian, mean: [...], std: x | [...]}      {kind: gaussian, mean: [...], cov: [[...]]}
    {kind: mixture, components: [{weight, mean, std | cov}, ...]}
    {kind: uniform, low: [...], high: [...]}
    {kind: samples, path: file.h5, dataset: name}      # path relative to the scenario's folder

Validation is two-staged: pydantic models (``extra="forbid"``, strict types) check the structure
and types; builders then check what needs ``dim`` or several fields together and construct the
dataclasses of :mod:`mfg.distributions`. Every failure is a :class:`ScenarioError` whose message
is one line ``<origin>: <dotted.field>: <why>``. The domain must hold at least
``MIN_DOMAIN_MASS`` (0.999) of the source's and of the target's mass (for ``samples``, the
fraction of the points inside: data outside the box are never dropped silently).

Kinds are looked up in registries (``DISTRIBUTION_KINDS``, ``TERMINAL_KINDS``, ``SOLVER_KINDS``,
``F_DIVERGENCES``): a new kind is one spec model with a ``build`` method plus one registry entry.

Overrides ``key.path=value`` (``value`` parsed as YAML) are applied to the raw mapping before
validation; a path that the schema does not know is an error. ``Scenario.text`` is the final
mapping (overrides applied, a ``samples`` path made absolute) dumped as YAML.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field

from mfg.datasets import DIGITS_DIM, Digits, ToyData
from mfg.distributions import (
    WEIGHT_SUM_TOL,
    Circle,
    Distribution,
    DistributionError,
    Gaussian,
    Mixture,
    Points,
    Samples,
    Segment,
    Uniform,
)
from mfg.divergences import F_DIVERGENCES
from mfg.domains import Disk, GeometryError, Polygon, mass_inside
from mfg.schema import (
    FieldError,
    FloatList,
    Loc,
    NumberOrList,
    SolverSpec,
    Spec,
    broadcast,
    check_len,
    short_repr,
    validate,
)
from mfg.settings.fem import FemSolverSpec
from mfg.settings.grid import GridSolverSpec
from mfg.settings.neural import NeuralSolverSpec
from mfg.settings.particle import GeneratorSolverSpec, JKOSolverSpec, ParticleSolverSpec

#: Largest supported dimension.
MAX_DIM = 4096
#: Seeds must fit torch.manual_seed (a signed 64-bit integer).
MAX_SEED = 2**63 - 1
#: Any solver family's frozen config dataclass (see mfg.settings).
SolverConfig = Any
#: The domain must hold at least this much of the source's (and a density target's) mass.
MIN_DOMAIN_MASS = 0.999


class ScenarioError(ValueError):
    """Bad scenario input; ``str(err)`` is one line naming the file and the field."""


@dataclass(frozen=True)
class TerminalCost:
    """Terminal cost G (DESIGN.md §1). ``kind`` is one of TERMINAL_KINDS; the other fields are
    set only for the kinds that use them:

    * ``fixed``: ρ_T = π.
    * ``f``: D_f(ρ_T‖π) with ``f`` in F_DIVERGENCES (``alpha`` > 1 for f = alpha).
    * ``w1``: L·W1(ρ_T, π), ``L`` > 0.
    * ``lipschitz_f``: D_f^{Γ_L}(ρ_T‖π) = inf_σ D_f(σ‖π) + L·W1(ρ_T, σ), ``f`` and ``L``.
    * ``mmd``: MMD_k²(ρ_T, π) with ``kernel`` (gaussian, laplace, energy) and ``bandwidth``.
    * ``sinkhorn``: debiased Sinkhorn divergence S_ε(ρ_T, π) with ``blur`` = ε^{1/p} and ``p``.
    * ``likelihood``: no parameters; the likelihood-trained baseline (OT-Flow's objective,
      neural solver only): G = E_π[−log ρ_T], with the kinetic energy taken along the data's
      backward characteristics (solvers/neural/likelihood.py). Needs a gaussian or mixture
      source (its log-density in torch).
    """

    kind: str
    f: str | None = None
    alpha: float | None = None
    L: float | None = None
    kernel: str | None = None
    bandwidth: float | None = None
    blur: float | None = None
    p: int | None = None


@dataclass(frozen=True)
class Domain:
    """Box ``bounds = ((lo_1, hi_1), ..., (lo_d, hi_d))``; for a disk or a polygon (mesh solvers
    only) ``shape`` is its :mod:`mfg.domains` geometry and ``bounds`` its bounding box."""

    bounds: tuple[tuple[float, float], ...]
    shape: Disk | Polygon | None = None  # None: the box itself

    @property
    def kind(self) -> str:
        return "box" if self.shape is None else self.shape.kind


@dataclass(frozen=True)
class Scenario:
    name: str
    dim: int
    T: float
    lam: float  # YAML key "lambda"
    source: Distribution
    target: Distribution
    terminal: TerminalCost
    domain: Domain | None  # None: unbounded (solvers that need a box say so)
    solver: SolverConfig
    seed: int = 0
    output: str | None = None
    text: str = ""  # the scenario as YAML text, overrides applied


# =============================================================================================
# errors

def _one_line(text: str) -> str:
    """``text`` with every run of whitespace containing a newline replaced by one space."""
    return re.sub(r"\s*\n\s*", " ", text).strip()


def _scenario_error(origin: str, err: FieldError) -> ScenarioError:
    where = f"{err.dotted()}: " if err.loc else ""
    return ScenarioError(_one_line(f"{origin}: {where}{err.message}"))



# =============================================================================================
# YAML


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-5`` as a float and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 wants a dot in floats ("1.0e-5"); also accept the common "1e-5".
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    """YAML int; one with more digits than Python converts (``sys.get_int_max_str_digits``,
    4300) is a YAML error at its line instead of a bare ValueError."""
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"integer with {len(str(node.value))} digits is too long",
            node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _load_yaml(text: str, origin: str) -> Any:
    """Parse ``text``; a syntax error is a one-line ScenarioError with line and column."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ScenarioError(_one_line(f"{origin}: not valid YAML: {exc.problem}{where}")) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(_one_line(f"{origin}: not valid YAML: {exc}")) from None


def _parse_value(text: str) -> Any:
    """An override's value: a YAML scalar or flow list/mapping (``""`` is null)."""
    return yaml.load(text, Loader=_Loader)


def _distribution_error(loc: Loc, err: DistributionError) -> FieldError:
    """A DistributionError (field relative to the distribution) under the scenario ``loc``."""
    sub: Loc = tuple(err.field.split(".")) if err.field else ()
    return FieldError(loc + sub, err.message)


# =============================================================================================
# schema: distributions


def _gaussian(
    mean: list[float], std: Any, cov: list[list[float]] | None, loc: Loc, dim: int
) -> Gaussian:
    """Gaussian from YAML fields: ``mean`` of length dim and exactly one of ``std`` / ``cov``."""
    check_len(mean, dim, loc + ("mean",))
    if std is None and cov is None:
        raise FieldError(loc + ("std",), "missing required field (give std or cov)")
    if std is not None and cov is not None:
        raise FieldError(loc + ("cov",), "give exactly one of std and cov, not both")
    stds = None if std is None else broadcast(std, dim, loc + ("std",))
    if stds is not None and min(stds) <= 0:
        raise FieldError(loc + ("std",), f"must be > 0 (got {short_repr(std)})")
    if cov is not None and (len(cov) != dim or any(len(row) != dim for row in cov)):
        raise FieldError(loc + ("cov",), f"must be a {dim}x{dim} matrix (dim = {dim})")
    try:
        return Gaussian(mean, std=stds, cov=cov)
    except DistributionError as err:
        raise _distribution_error(loc, err) from None


class _DistributionSpec(Spec):
    kind: str

    def build(self, loc: Loc, dim: int, base_dir: Path) -> Distribution:
        raise NotImplementedError


class _GaussianSpec(_DistributionSpec):
    kind: Literal["gaussian"]
    mean: FloatList
    std: NumberOrList | None = None
    cov: list[FloatList] | None = None

    def build(self, loc: Loc, dim: int, base_dir: Path) -> Gaussian:
        return _gaussian(self.mean, self.std, self.cov, loc, dim)


class _ComponentSpec(Spec):
    weight: float = Field(ge=0)
    mean: FloatList
    std: NumberOrList | None = None
    cov: list[FloatList] | None = None


class _MixtureSpec(_DistributionSpec):
    kind: Literal["mixture"]
    components: list[_ComponentSpec] = Field(min_length=1)

    def build(self, loc: Loc, dim: int, base_dir: Path) -> Mixture:
        """Σ_k w_k N(m_k, Σ_k); the weights must sum to 1 within WEIGHT_SUM_TOL."""
        comps = tuple(
            _gaussian(c.mean, c.std, c.cov, loc + ("components", i), dim)
            for i, c in enumerate(self.components)
        )
        weights = tuple(c.weight for c in self.components)
        total = sum(weights)
        if abs(total - 1.0) > WEIGHT_SUM_TOL:
            raise FieldError(
                loc + ("components",), f"weights must sum to 1 (got {total:.12g})"
            )
        try:
            return Mixture(weights, comps)
        except DistributionError as err:
            raise _distribution_error(loc, err) from None


class _UniformSpec(_DistributionSpec):
    kind: Literal["uniform"]
    low: FloatList
    high: FloatList

    def build(self, loc: Loc, dim: int, base_dir: Path) -> Uniform:
        check_len(self.low, dim, loc + ("low",))
        check_len(self.high, dim, loc + ("high",))
        try:
            return Uniform(tuple(self.low), tuple(self.high))
        except DistributionError as err:
            raise _distribution_error(loc, err) from None


class _SamplesSpec(_DistributionSpec):
    kind: Literal["samples"]
    path: str = Field(min_length=1)
    dataset: str = Field(min_length=1)

    def build(self, loc: Loc, dim: int, base_dir: Path) -> Samples:
        """Points of shape (n, dim) from ``path`` (relative to ``base_dir``) / ``dataset``."""
        file = Path(self.path).expanduser()
        file = (file if file.is_absolute() else base_dir / file).resolve()
        try:
            samples = Samples.from_hdf5(file, self.dataset)
        except DistributionError as err:
            raise _distribution_error(loc, err) from None
        if samples.dim != dim:
            raise FieldError(
                loc + ("dataset",),
                f"points have dimension {samples.dim} (shape {samples.points.shape}), "
                f"but dim = {dim}",
            )
        return samples


class _CircleSpec(_DistributionSpec):
    kind: Literal["circle"]
    radius: float = Field(gt=0)
    centre: FloatList | None = None

    def build(self, loc: Loc, dim: int, base_dir: Path) -> Circle:
        """Uniform on a circle in the (x1, x2) plane; ``centre`` defaults to the origin."""
        centre = self.centre if self.centre is not None else [0.0] * dim
        check_len(centre, dim, loc + ("centre",))
        try:
            return Circle(tuple(centre), self.radius)
        except DistributionError as err:
            raise _distribution_error(loc, err) from None


class _SegmentSpec(_DistributionSpec):
    kind: Literal["segment"]
    a: FloatList
    b: FloatList

    def build(self, loc: Loc, dim: int, base_dir: Path) -> Segment:
        check_len(self.a, dim, loc + ("a",))
        check_len(self.b, dim, loc + ("b",))
        try:
            return Segment(tuple(self.a), tuple(self.b))
        except DistributionError as err:
            raise _distribution_error(loc, err) from None


class _PointsSpec(_DistributionSpec):
    kind: Literal["points"]
    atoms: list[FloatList] = Field(min_length=1)
    weights: FloatList | None = None

    def build(self, loc: Loc, dim: int, base_dir: Path) -> Points:
        for i, atom in enumerate(self.atoms):
            check_len(atom, dim, loc + ("atoms", i))
        n = len(self.atoms)
        weights = self.weights if self.weights is not None else [1.0 / n] * n
        try:
            return Points(tuple(tuple(a) for a in self.atoms), tuple(weights))
        except DistributionError as err:
            raise _distribution_error(loc, err) from None


class _DatasetSpec(_DistributionSpec):
    kind: Literal["dataset"]
    name: str
    embedding: str = "isometry"
    embedding_seed: int = Field(default=0, ge=0)
    noise: float = Field(default=0.0, ge=0)

    def build(self, loc: Loc, dim: int, base_dir: Path) -> ToyData | Digits:
        """A 2-D toy data set (mfg.datasets), embedded in R^dim when dim > 2; or ``digits``,
        the 8×8 images in R^64 (dim must be 64; no embedding)."""
        if self.name == "digits":
            if dim != DIGITS_DIM:
                raise FieldError(loc + ("name",), f"digits are {DIGITS_DIM}-D (8×8 images): "
                                 f"dim must be {DIGITS_DIM} (got {dim})")
            for key in ("embedding", "embedding_seed"):
                if key in self.model_fields_set:
                    raise FieldError(loc + (key,), "digits are 64-D images, not embedded 2-D "
                                     "data: remove this field")
            try:
                return Digits(self.noise)
            except DistributionError as err:
                raise _distribution_error(loc, err) from None
        if dim < 2:
            raise FieldError(loc + ("kind",), f"toy data sets are 2-D or embedded (dim = {dim})")
        try:
            return ToyData(self.name, dim, self.embedding, self.embedding_seed, self.noise)
        except DistributionError as err:
            raise _distribution_error(loc, err) from None


#: Distribution kinds: YAML ``kind`` -> spec model (with a ``build`` method).
DISTRIBUTION_KINDS: dict[str, type[_DistributionSpec]] = {
    "gaussian": _GaussianSpec,
    "mixture": _MixtureSpec,
    "uniform": _UniformSpec,
    "samples": _SamplesSpec,
    "circle": _CircleSpec,
    "segment": _SegmentSpec,
    "points": _PointsSpec,
    "dataset": _DatasetSpec,
}


# =============================================================================================
# schema: terminal cost, domain, solver


class _TerminalSpec(Spec):
    kind: str

    def build(self, loc: Loc) -> TerminalCost:
        return TerminalCost(kind=self.kind)


class _FixedTerminalSpec(_TerminalSpec):
    """G = 0 if ρ_T = π else +∞."""

    kind: Literal["fixed"]


def _check_f(f: str, alpha: float | None, loc: Loc) -> None:
    if f not in F_DIVERGENCES:
        raise FieldError(
            loc + ("f",), f"unknown f-divergence {f!r} (supported: {', '.join(F_DIVERGENCES)})"
        )
    if f == "alpha" and (alpha is None or not alpha > 1):
        raise FieldError(loc + ("alpha",), f"f = alpha needs alpha > 1 (got {alpha})")
    if f != "alpha" and alpha is not None:
        raise FieldError(loc + ("alpha",), f"only used with f = alpha (f = {f})")


class _FTerminalSpec(_TerminalSpec):
    """G = D_f(ρ_T ‖ π) with f from F_DIVERGENCES."""

    kind: Literal["f"]
    f: str
    alpha: float | None = None

    def build(self, loc: Loc) -> TerminalCost:
        _check_f(self.f, self.alpha, loc)
        return TerminalCost(kind=self.kind, f=self.f, alpha=self.alpha)


class _W1TerminalSpec(_TerminalSpec):
    """G = L·W1(ρ_T, π)."""

    kind: Literal["w1"]
    L: float = Field(gt=0)

    def build(self, loc: Loc) -> TerminalCost:
        return TerminalCost(kind=self.kind, L=self.L)


class _LipschitzFTerminalSpec(_TerminalSpec):
    """G = D_f^{Γ_L}(ρ_T ‖ π), the W1 proximal of D_f."""

    kind: Literal["lipschitz_f"]
    f: str = "kl"
    alpha: float | None = None
    L: float = Field(gt=0)

    def build(self, loc: Loc) -> TerminalCost:
        _check_f(self.f, self.alpha, loc)
        return TerminalCost(kind=self.kind, f=self.f, alpha=self.alpha, L=self.L)


class _MMDTerminalSpec(_TerminalSpec):
    """G = MMD_k²(ρ_T, π)."""

    kind: Literal["mmd"]
    kernel: Literal["gaussian", "laplace", "energy"] = "gaussian"
    bandwidth: float = Field(default=1.0, gt=0)

    def build(self, loc: Loc) -> TerminalCost:
        return TerminalCost(kind=self.kind, kernel=self.kernel, bandwidth=self.bandwidth)


class _SinkhornTerminalSpec(_TerminalSpec):
    """G = S_ε(ρ_T, π), debiased Sinkhorn divergence (geomloss) with blur = ε^{1/p}."""

    kind: Literal["sinkhorn"]
    blur: float = Field(default=0.05, gt=0)
    p: Literal[1, 2] = 2

    def build(self, loc: Loc) -> TerminalCost:
        return TerminalCost(kind=self.kind, blur=self.blur, p=self.p)


class _LikelihoodTerminalSpec(_TerminalSpec):
    """G = E_π[−log ρ_T] (negative log-likelihood of the data, OT-Flow's objective)."""

    kind: Literal["likelihood"]


#: Terminal-cost kinds: YAML ``kind`` -> spec model (with a ``build`` method).
TERMINAL_KINDS: dict[str, type[_TerminalSpec]] = {
    "fixed": _FixedTerminalSpec,
    "f": _FTerminalSpec,
    "w1": _W1TerminalSpec,
    "lipschitz_f": _LipschitzFTerminalSpec,
    "mmd": _MMDTerminalSpec,
    "sinkhorn": _SinkhornTerminalSpec,
    "likelihood": _LikelihoodTerminalSpec,
}


class _DomainSpec(Spec):
    kind: Literal["box"] = "box"
    bounds: list[FloatList] = Field(min_length=1)

    def build(self, loc: Loc, dim: int) -> Domain:
        """One ``[lo, hi]`` pair per dimension with lo < hi."""
        if len(self.bounds) != dim:
            raise FieldError(
                loc + ("bounds",),
                f"must have {dim} [lo, hi] pairs (dim = {dim}), got {len(self.bounds)}",
            )
        for i, pair in enumerate(self.bounds):
            if len(pair) != 2:
                raise FieldError(loc + ("bounds", i), f"must be a pair [lo, hi], got {pair}")
            if not pair[0] < pair[1]:
                raise FieldError(loc + ("bounds", i), f"lo must be < hi (got {pair})")
        return Domain(bounds=tuple((lo, hi) for lo, hi in self.bounds))


def _geometry_error(loc: Loc, err: GeometryError) -> FieldError:
    return FieldError(loc + tuple(err.field.split(".")), err.message)


class _DiskDomainSpec(Spec):
    """{kind: disk, centre: [x, y], radius: r} (2-D; mesh solvers)."""

    kind: Literal["disk"]
    centre: FloatList
    radius: float = Field(gt=0)

    def build(self, loc: Loc, dim: int) -> Domain:
        if dim != 2:
            raise FieldError(loc + ("kind",), f"a disk is a 2-D domain (dim = {dim})")
        check_len(self.centre, 2, loc + ("centre",))
        shape = Disk(tuple(self.centre), self.radius)
        return Domain(bounds=shape.bounds, shape=shape)


class _PolygonDomainSpec(Spec):
    """{kind: polygon, vertices: [[x, y], ...], holes: [[[x, y], ...], ...]} (2-D; mesh solvers)."""

    kind: Literal["polygon"]
    vertices: list[FloatList] = Field(min_length=3)
    holes: list[list[FloatList]] = Field(default_factory=list)

    def build(self, loc: Loc, dim: int) -> Domain:
        if dim != 2:
            raise FieldError(loc + ("kind",), f"a polygon is a 2-D domain (dim = {dim})")
        for i, v in enumerate(self.vertices):
            check_len(v, 2, loc + ("vertices", i))
        for i, hole in enumerate(self.holes):
            for j, v in enumerate(hole):
                check_len(v, 2, loc + ("holes", i, j))
        try:
            shape = Polygon(tuple(map(tuple, self.vertices)),
                            tuple(tuple(map(tuple, h)) for h in self.holes))
        except GeometryError as err:
            raise _geometry_error(loc, err) from None
        return Domain(bounds=shape.bounds, shape=shape)


#: Domain kinds: YAML ``kind`` (default ``box``) -> spec model (with a ``build`` method).
DOMAIN_KINDS: dict[str, type[Spec]] = {
    "box": _DomainSpec,
    "disk": _DiskDomainSpec,
    "polygon": _PolygonDomainSpec,
}


#: Solver kinds: YAML ``kind`` -> spec model (with a ``build`` method).
SOLVER_KINDS: dict[str, type[SolverSpec]] = {
    "grid": GridSolverSpec,
    "neural": NeuralSolverSpec,
    "particle": ParticleSolverSpec,
    "generator": GeneratorSolverSpec,
    "jko": JKOSolverSpec,
    "fem": FemSolverSpec,
}
#: ``kind`` assumed where a ``solver`` mapping has none.
DEFAULT_SOLVER_KIND = "grid"


class _ScenarioSpec(Spec):
    name: str = Field(min_length=1)
    dim: int = Field(ge=1, le=MAX_DIM)
    T: float = Field(default=1.0, gt=0)
    lam: float = Field(alias="lambda", gt=0)
    source: dict[str, Any]
    target: dict[str, Any]
    terminal: dict[str, Any]
    domain: dict[str, Any] | None = None
    solver: dict[str, Any] = Field(default_factory=lambda: {"kind": DEFAULT_SOLVER_KIND})
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    output: str | None = None


#: A scenario ``name`` is a plain file stem: results/<name>.h5 must stay inside results/.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


def _check_name(name: str) -> None:
    """``name`` must be a plain file stem (DESIGN.md §2b): no path separators, no ``..``, not
    hidden, ASCII letters, digits and ``_ . + -`` only, at most 128 characters."""
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise FieldError(("name",), "must be a plain file stem (letters, digits, _ . + -; not "
                         "starting with '.' or '-', no '..', at most 128 characters), got "
                         f"{short_repr(name)}")


#: Fields of the top-level mapping whose sub-schema is chosen by their ``kind``.
_DISPATCHED: dict[str, Mapping[str, type[Spec]]] = {
    "source": DISTRIBUTION_KINDS,
    "target": DISTRIBUTION_KINDS,
    "terminal": TERMINAL_KINDS,
    "solver": SOLVER_KINDS,
    "domain": DOMAIN_KINDS,
}


def _validate_kind(
    raw: Mapping[str, Any],
    loc: Loc,
    registry: Mapping[str, type[Spec]],
    default: str | None = None,
) -> Any:
    """Validate ``raw`` with the spec model that ``registry`` holds for ``raw["kind"]``."""
    kind = raw.get("kind", default)
    if kind is None:
        raise FieldError(
            loc + ("kind",), f"missing required field (one of: {', '.join(registry)})"
        )
    if not isinstance(kind, str) or kind not in registry:
        raise FieldError(
            loc + ("kind",),
            f"unknown kind {short_repr(kind)} (one of: {', '.join(registry)})",
        )
    return validate(registry[kind], {**raw, "kind": kind}, loc, kind=kind)


# =============================================================================================
# building


def _check_covers(dist: Distribution, domain: Domain, role: str) -> None:
    """The domain must hold at least MIN_DOMAIN_MASS of ``dist`` (``mass_in_box``; a disk or a
    polygon: :func:`mfg.domains.mass_inside`)."""
    if domain.shape is not None:
        mass = mass_inside(dist, domain.shape)
        if mass < MIN_DOMAIN_MASS:
            raise FieldError(("domain",), f"does not cover the {role}: the {domain.kind} holds "
                             f"{mass:.4f} of its mass, must hold >= {MIN_DOMAIN_MASS}")
        return
    mass = dist.mass_in_box(domain.bounds)
    if mass < MIN_DOMAIN_MASS:
        # samples: also the count and the file, so the user can find the points outside
        points = (f" ({round(mass * dist.n)} of {dist.n} points of {dist.path})"
                  if isinstance(dist, Samples) else "")
        raise FieldError(
            ("domain", "bounds"),
            f"does not cover the {role}: it holds {mass:.4f} of its mass{points}, "
            f"must hold >= {MIN_DOMAIN_MASS}",
        )


def _build_distribution(raw: Any, loc: Loc, dim: int, base_dir: Path) -> Distribution:
    if not isinstance(raw, dict):
        raise FieldError(loc, f"must be a mapping (got {short_repr(raw)})")
    return _validate_kind(raw, loc, DISTRIBUTION_KINDS).build(loc, dim, base_dir)


def _build_scenario(raw: dict[str, Any], base_dir: Path) -> Scenario:
    """Validate the raw mapping and build the Scenario (``text`` left empty)."""
    spec: _ScenarioSpec = validate(_ScenarioSpec, raw, ())
    _check_name(spec.name)
    dim = spec.dim
    source = _build_distribution(spec.source, ("source",), dim, base_dir)
    target = _build_distribution(spec.target, ("target",), dim, base_dir)
    terminal = _validate_kind(spec.terminal, ("terminal",), TERMINAL_KINDS).build(("terminal",))
    solver_spec = _validate_kind(spec.solver, ("solver",), SOLVER_KINDS, DEFAULT_SOLVER_KIND)
    solver_spec = solver_spec.for_problem(terminal)
    solver = solver_spec.build(("solver",), dim)
    solver_spec.check_problem(source, target, terminal)
    if spec.domain is None:
        if solver_spec.NEEDS_DOMAIN:
            raise FieldError(("domain",), f"missing required field (the {solver.kind} solver "
                             "needs a box)")
        domain = None
    else:
        domain_spec = _validate_kind(spec.domain, ("domain",), DOMAIN_KINDS, "box")
        domain = domain_spec.build(("domain",), dim)
        if domain.kind not in solver_spec.DOMAIN_KINDS:
            raise FieldError(("domain", "kind"), f"the {solver.kind} solver handles "
                             f"{', '.join(solver_spec.DOMAIN_KINDS)} domains, not "
                             f"{domain.kind!r} (use solver kind fem)")
        _check_covers(source, domain, "source")
        _check_covers(target, domain, "target")
    return Scenario(
        name=spec.name,
        dim=dim,
        T=spec.T,
        lam=spec.lam,
        source=source,
        target=target,
        terminal=terminal,
        domain=domain,
        solver=solver,
        seed=spec.seed,
        output=spec.output,
    )


def distribution_from_dict(
    spec: Mapping[str, Any], dim: int, field: str, base_dir: Path
) -> Distribution:
    """Build a distribution from its YAML mapping (``{kind: gaussian, ...}``, see module doc).

    ``field`` is the dotted name used in error messages (``ScenarioError("<field>.std: ...")``);
    a ``samples`` path is resolved relative to ``base_dir``.
    """
    loc: Loc = tuple(field.split(".")) if field else ()
    try:
        return _build_distribution(dict(spec), loc, dim, Path(base_dir))
    except FieldError as err:
        raise ScenarioError(_one_line(f"{err.dotted()}: {err.message}")) from None


# =============================================================================================
# overrides

_LEAF = object()  # schema node without sub-fields


def _annotation_node(annotation: Any) -> Any:
    """Schema node of a field annotation: a model class, ("list", node) or _LEAF."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _annotation_node(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        nodes = [_annotation_node(a) for a in typing.get_args(annotation) if a is not type(None)]
        return next((n for n in nodes if n is not _LEAF), _LEAF)
    if origin is list:
        return ("list", _annotation_node(typing.get_args(annotation)[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return _LEAF


def _model_child(model: type[BaseModel], key: str) -> Any:
    """Schema node of the field ``key`` (alias or name) of ``model``; None if unknown."""
    for name, info in model.model_fields.items():
        if key == (info.alias or name):
            if model is _ScenarioSpec and key in _DISPATCHED:
                return _DISPATCHED[key]
            return _annotation_node(info.annotation)
    return None


def _child(node: Any, key: str, container: Any) -> tuple[Any, str | int] | None:
    """(child node, key or index into ``container``) for one path segment; None if unknown."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        child = _model_child(node, key)
        return None if child is None else (child, key)
    if isinstance(node, Mapping):  # a kind registry: any of its models may hold ``key``
        for model in node.values():
            child = _model_child(model, key)
            if child is not None:
                return child, key
        return None
    if isinstance(node, tuple) and node[0] == "list":
        if not re.fullmatch(r"\d+", key):
            return None
        size = len(container) if isinstance(container, list) else 0
        if int(key) >= size:
            raise _IndexOutOfRange(size)
        return node[1], int(key)
    return None


class _IndexOutOfRange(Exception):
    """An override indexes past the end of a list of ``size`` entries."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``key.path=value`` to ``raw`` in place (intermediate mappings are created)."""
    key, sep, value_text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FieldError((), f"override {item!r}: expected key.path=value")
    try:
        value = _parse_value(value_text)
    except yaml.YAMLError as exc:
        why = f" ({exc.problem})" if getattr(exc, "problem", None) else ""
        raise FieldError((key,), f"override value {short_repr(value_text)} is not valid "
                         f"YAML{why}") from None
    parts = key.split(".")
    node: Any = _ScenarioSpec
    container: Any = raw
    for depth, part in enumerate(parts):
        try:
            found = _child(node, part, container)
        except _IndexOutOfRange as exc:
            raise FieldError(
                tuple(parts[: depth + 1]),
                f"no such entry (the list has {exc.size}; in override {item!r})",
            ) from None
        if found is None:
            raise FieldError(tuple(parts[: depth + 1]), f"unknown field (in override {item!r})")
        child, index = found
        if depth == len(parts) - 1:
            container[index] = value
            return
        here = tuple(parts[: depth + 1])
        if isinstance(container, dict) and container.get(index) is None and child is not _LEAF:
            if isinstance(child, tuple):
                raise FieldError(here, f"no list to index (in override {item!r})")
            container[index] = {}
        nxt = container[index]
        if child is _LEAF or (isinstance(child, tuple) and not isinstance(nxt, list)):
            raise FieldError(here, f"has no sub-fields (in override {item!r})")
        if not isinstance(child, tuple) and not isinstance(nxt, dict):
            raise FieldError(here, f"must be a mapping (in override {item!r})")
        node, container = child, nxt


# =============================================================================================
# public entry points


def parse_scenario(
    text: str,
    *,
    origin: str = "<string>",
    overrides: Sequence[str] = (),
    base_dir: Path | None = None,
) -> Scenario:
    """Parse and validate scenario YAML ``text``; errors name ``origin`` and the field.

    ``overrides`` are ``key.path=value`` strings applied in order before validation;
    ``base_dir`` (default: the current directory) resolves relative ``samples`` paths.
    """
    raw = _load_yaml(text, origin)
    if raw is None:
        raise ScenarioError(f"{origin}: empty scenario (expected a mapping of fields)")
    if not isinstance(raw, dict):
        raise ScenarioError(
            f"{origin}: must be a mapping of fields, got {type(raw).__name__} "
            f"({short_repr(raw)})"
        )
    base = Path.cwd() if base_dir is None else Path(base_dir)
    try:
        for item in overrides:
            _apply_override(raw, item)
        scenario = _build_scenario(raw, base)
    except FieldError as err:
        raise _scenario_error(origin, err) from None
    for role in ("source", "target"):
        dist = getattr(scenario, role)
        if isinstance(dist, Samples):  # make Scenario.text independent of base_dir
            raw[role] = {**raw[role], "path": dist.path}
    text_out = yaml.safe_dump(raw, sort_keys=False, default_flow_style=None)
    return dataclasses.replace(scenario, text=text_out)


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read the YAML file ``path`` and :func:`parse_scenario` it (origin = ``path``).

    Relative ``samples`` paths are resolved against the file's folder.
    """
    origin = str(path)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{origin}: scenario file not found") from None
    except IsADirectoryError:
        raise ScenarioError(f"{origin}: is a directory, not a scenario file") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{origin}: not valid YAML: not UTF-8 text") from None
    except OSError as exc:
        raise ScenarioError(_one_line(f"{origin}: cannot read: {exc.strerror}")) from None
    return parse_scenario(
        text, origin=origin, overrides=overrides, base_dir=file.resolve().parent
    )
