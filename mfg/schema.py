"""Building blocks of the scenario schema, shared by mfg.scenario and the solver settings.

Every YAML mapping is validated by a :class:`Spec` (a strict pydantic model: unknown fields are
errors, no implicit type coercion); a failure is a :class:`FieldError` at a dotted location, which
mfg.scenario turns into one line ``<file>: <dotted.field>: <why>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

Loc = tuple[str | int, ...]


class FieldError(Exception):
    """A validation failure at the dotted location ``loc`` (converted to ScenarioError)."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message

    def dotted(self) -> str:
        return ".".join(str(p) for p in self.loc)


def short_repr(value: Any, limit: int = 40) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def fmt_number(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


TYPE_MESSAGES: dict[str, str] = {
    "float_type": "must be a number",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "finite_number": "must be a finite number",
    "literal_error": "has the wrong value",
}


def pydantic_message(err: Mapping[str, Any]) -> str:
    """Short wording of one pydantic error (``type``, ``ctx``, ``input``)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in TYPE_MESSAGES:
        return f"{TYPE_MESSAGES[kind]} (got {short_repr(err.get('input'))})"
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {fmt_number(limit)} (got {short_repr(err.get('input'))})"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} entries"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} entries"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def validate(model: type[Spec], data: Any, loc: Loc, kind: str | None = None) -> Any:
    """``model.model_validate(data)``; the first error becomes a FieldError under ``loc``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = pydantic_message(first)
        if first["type"] == "extra_forbidden" and kind is not None:
            message += f" (for kind {kind!r})"
        raise FieldError(loc + tuple(first["loc"]), message) from None




def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _finite_float(v: int | float) -> float | None:
    """``float(v)`` if finite, else None (NaN, infinities, integers beyond the float range)."""
    try:
        x = float(v)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def number_or_list(v: Any) -> float | list[float]:
    """A finite number, or a non-empty list of finite numbers (as floats); an integer too
    large for a float (> 1.8e308) is not finite either."""
    if is_number(v) and _finite_float(v) is not None:
        return float(v)
    if isinstance(v, list) and v and all(is_number(x) for x in v):
        out = [_finite_float(x) for x in v]
        if all(x is not None for x in out):
            return out
        raise ValueError(f"must hold finite numbers (got {short_repr(v)})")
    raise ValueError(f"must be a number or a list of numbers (got {short_repr(v)})")


def int_or_list(v: Any) -> int | list[int]:
    """An integer, or a non-empty list of integers."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return list(v)
    raise ValueError(f"must be an integer or a list of integers (got {short_repr(v)})")


NumberOrList = Annotated[Any, PlainValidator(number_or_list)]
IntOrList = Annotated[Any, PlainValidator(int_or_list)]
FloatList = Annotated[list[float], Field(min_length=1)]


class Spec(BaseModel):
    """Base of the YAML schema models: unknown fields are errors, types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def check_len(values: Sequence[Any], dim: int, loc: Loc) -> None:
    if len(values) != dim:
        raise FieldError(loc, f"must have {dim} entries (dim = {dim}), got {len(values)}")


def broadcast(value: float | int | list[Any], dim: int, loc: Loc) -> tuple[Any, ...]:
    """A scalar repeated ``dim`` times, or a list checked to have ``dim`` entries."""
    if isinstance(value, list):
        check_len(value, dim, loc)
        return tuple(value)
    return (value,) * dim




class SolverSpec(Spec):
    """Base of a solver family's settings schema; ``build`` returns its frozen config dataclass."""

    kind: str

    #: True when the family discretizes a box and needs the scenario's ``domain``.
    NEEDS_DOMAIN: ClassVar[bool] = False
    #: domain kinds (mfg.scenario DOMAIN_KINDS) the family can discretize
    DOMAIN_KINDS: ClassVar[tuple[str, ...]] = ("box",)

    def build(self, loc: Loc, dim: int) -> Any:
        raise NotImplementedError

    def for_problem(self, terminal: Any) -> SolverSpec:
        """The settings with the defaults that depend on the terminal cost filled in (a method
        chosen by the terminal kind); by default, the settings themselves."""
        return self

    def check_problem(self, source: Any, target: Any, terminal: Any) -> None:
        """Refuse (FieldError) a source/target/terminal combination the family cannot solve."""
