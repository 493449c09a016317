"""A flow file's parameters: what a person may set when starting a run by hand (pure).

    params:
      target:  {default: staging, choices: [staging, production]}
      dry_run: {type: bool, default: true}
      retries: {type: number, default: 3}
      note:    {description: shown in the form}          # a string, required (no default)

Each parameter has a type (`string`, `bool`, `number`, `choice`; a parameter with `choices` is a
choice, one whose default is a bool or a number is one of those), an optional default (without
one the parameter is required) and a description. A job reads the value as the environment
variable `TASUKI_PARAM_<NAME>` (`variable()`): text, `true`/`false` for a bool.

`resolve()` checks the values a person gave against the declaration and fills in the defaults;
each refusal is a `ParamError` naming the parameter. Values come from a sender: they are bounded
(`MAX_VALUE` characters, no NUL, at most `MAX_PARAMS` of them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasuki.shared.errors import ParamError
from tasuki.shared.text import clip

MAX_PARAMS = 20
MAX_CHOICES = 50
MAX_VALUE = 1000
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})

ParamType = Literal["string", "bool", "number", "choice"]


class Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ParamType = "string"
    default: str | None = None  # canonical text; None: the parameter is required
    choices: list[str] = Field(default_factory=list, max_length=MAX_CHOICES)
    description: str = Field("", max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        """`choices` makes a choice, a bool or number default makes a bool or a number."""
        if not isinstance(data, dict) or "type" in data:
            return data
        default = data.get("default")
        kind = (
            "choice"
            if data.get("choices")
            else "bool"
            if isinstance(default, bool)
            else "number"
            if isinstance(default, int | float)
            else "string"
        )
        return {**data, "type": kind}

    @field_validator("default", mode="before")
    @classmethod
    def _default_text(cls, value: Any) -> Any:
        return None if value is None else text(value)

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [text(v) for v in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice parameter needs choices, like choices: [staging, production]")
        if self.choices and self.type != "choice":
            raise ValueError(f"choices apply to choice parameters; this one is a {self.type}")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("each choice is listed once")
        for choice in self.choices:
            if not choice or len(choice) > 200:
                raise ValueError(f"a choice is 1 to 200 characters, found {clip(choice, 40)!r}")
        if self.default is not None:
            object.__setattr__(self, "default", self.check(self.default))
        return self

    def check(self, value: str) -> str:
        """`value` in this parameter's type, as canonical text; ValueError saying what was expected."""
        if len(value) > MAX_VALUE or "\x00" in value:
            raise ValueError(f"expected at most {MAX_VALUE} characters and no NUL, found {len(value)} characters")
        if self.type == "bool":
            lowered = value.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(f"expected true or false, found {clip(value, 40)!r}")
            return "true" if lowered in _TRUE else "false"
        if self.type == "number":
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise ValueError(f"expected a number, found {clip(value, 40)!r}") from None
            return str(int(number)) if number.is_integer() and "." not in value else str(number)
        if self.type == "choice" and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, found {clip(value, 40)!r}")
        return value


def text(value: Any) -> str:
    """A value from YAML or JSON as text: booleans lower-case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"expected text, a number or true/false, found {clip(repr(value), 40)}")


def names_problem(params: Mapping[str, Any]) -> tuple[str, str] | None:
    """Parameter names become variable names: letters, digits and '_', distinct in upper case.
    The first problem as (the parameter, what is wrong), or None."""
    if len(params) > MAX_PARAMS:
        return "", f"a flow file declares at most {MAX_PARAMS} parameters, found {len(params)}"
    seen: dict[str, str] = {}
    for name in params:
        if not isinstance(name, str) or not NAME.match(name):
            return str(name), f"parameter names are a letter, then letters, digits and '_', found {name!r}"
        if name.upper() in seen:
            return name, f"parameters {seen[name.upper()]!r} and {name!r} would be the same variable"
        seen[name.upper()] = name
    return None


def variable(name: str) -> str:
    return f"TASUKI_PARAM_{name.upper()}"


def given(values: Mapping[str, Any]) -> dict[str, str]:
    """Values as a sender gave them (JSON, a form, `-p name=value`), bounded and as text."""
    if len(values) > MAX_PARAMS:
        raise ParamError(f"at most {MAX_PARAMS} parameters, found {len(values)}")
    out: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise ParamError(
                f"parameter names are a letter, then letters, digits and '_', found {clip(str(name), 40)!r}"
            )
        try:
            out[name] = text(value)
        except ValueError as exc:
            raise ParamError(f"parameter {name!r}: {exc}") from None
        if len(out[name]) > MAX_VALUE or "\x00" in out[name]:
            raise ParamError(f"parameter {name!r}: expected at most {MAX_VALUE} characters and no NUL")
    return out


def resolve(declared: Mapping[str, Param], values: Mapping[str, str]) -> dict[str, str]:
    """Every declared parameter's value: the one given (checked against its type and choices) or
    its default. A value for an undeclared parameter, or none for a required one, is refused."""
    for name in values:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ParamError(f"unknown parameter {name!r}; the flow file declares: {known}")
    out: dict[str, str] = {}
    for name, param in declared.items():
        if name in values:
            try:
                out[name] = param.check(values[name])
            except ValueError as exc:
                raise ParamError(f"parameter {name!r}: {exc}") from None
        elif param.default is not None:
            out[name] = param.default
        else:
            raise ParamError(f"parameter {name!r} is required (it has no default)")
    return out
