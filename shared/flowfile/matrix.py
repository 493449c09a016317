"""Matrix jobs: one job of the flow file, one job of the run per combination of values (pure).

    test:
      image: python:${{ matrix.python }}-slim
      run: ci/test
      matrix:
        python: ["3.11", "3.12"]
        db: [postgres, sqlite]
        exclude: [{python: "3.11", db: sqlite}]
        include: [{python: "3.13", db: postgres}]

makes `test (python=3.11, db=postgres)`, `test (python=3.12, db=postgres)`,
`test (python=3.12, db=sqlite)` and `test (python=3.13, db=postgres)`. Each axis is a list of
values; the combinations are every choice of one value per axis (in the order written), less
those that match an `exclude` entry (every key it names equal), plus each `include` entry (a whole
combination: it names every axis). Each combination's values reach the job as environment
variables `MATRIX_<AXIS>` (upper-case) and replace `${{ matrix.<axis> }}` in `image`, `plugin`,
`env` values and `args`. A job that needs a matrix job needs every one of its combinations.

Bounded: at most `MAX_AXES` axes, `MAX_COMBINATIONS` combinations per job and `MAX_JOBS` jobs
in a flow once expanded; values are short words (they become parts of job names and images).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from tasuki.shared.flowfile.model import Job

MAX_AXES = 8
MAX_COMBINATIONS = 64
MAX_JOBS = 256
RESERVED = frozenset({"include", "exclude"})
_AXIS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PLACEHOLDER = re.compile(r"\$\{\{\s*matrix\.([^\s}]*)\s*\}\}")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not _VALUE.match(value):
        raise ValueError(
            f"matrix values are short words of letters, digits, '.', '-' and '_' (like 3.12 or "
            f"postgres), found {value!r}"
        )
    return value


def _combination(entry: Any, what: str) -> dict[str, str]:
    if not isinstance(entry, dict) or not entry:
        raise ValueError(f"each {what} entry is a mapping of axis to value, like {{python: '3.12'}}; found {entry!r}")
    return {str(k): _value(v) for k, v in entry.items()}


class Matrix(BaseModel):
    """`matrix:` as written: axes with their values, and the include/exclude entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axes: dict[str, list[str]] = Field(default_factory=dict)
    include: list[dict[str, str]] = Field(default_factory=list)
    exclude: list[dict[str, str]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(
                f"a matrix is a mapping of axis to values, like {{python: ['3.11', '3.12']}}; found {data!r}"
            )
        axes: dict[str, list[str]] = {}
        for key, values in data.items():
            if key in RESERVED:
                continue
            if not isinstance(key, str) or not _AXIS.match(key):
                raise ValueError(f"matrix axes are named like python or node_version, found {key!r}")
            values = values if isinstance(values, list) else [values]
            if not values:
                raise ValueError(f"axis {key!r} has no values")
            axes[key] = [_value(v) for v in values]
            if len(set(axes[key])) != len(axes[key]):
                raise ValueError(f"axis {key!r} lists a value twice")
        for what in RESERVED:
            if not isinstance(data.get(what, []), list):
                raise ValueError(f"matrix {what} is a list of combinations, like [{{python: '3.12'}}]")
        include = [_combination(e, "include") for e in data.get("include", [])]
        exclude = [_combination(e, "exclude") for e in data.get("exclude", [])]
        if len(axes) > MAX_AXES:
            raise ValueError(f"{len(axes)} axes; a matrix has at most {MAX_AXES}")
        names = list(axes) or (list(include[0]) if include else [])
        if not names:
            raise ValueError("an empty matrix: name at least one axis, like python: ['3.11', '3.12']")
        upper = [n.upper() for n in names]
        if len(set(upper)) != len(upper):
            raise ValueError(f"axes {names} differ only in case; each becomes the variable MATRIX_<AXIS>")
        for entry in include:
            if set(entry) != set(names):
                raise ValueError(f"an include entry names every axis ({', '.join(names)}); found {entry}")
        for entry in exclude:
            unknown = sorted(set(entry) - set(names))
            if unknown:
                raise ValueError(f"exclude names {', '.join(unknown)}, which is not an axis ({', '.join(names)})")
        size = math.prod(len(v) for v in axes.values()) if axes else 0
        if size + len(include) > MAX_COMBINATIONS:
            raise ValueError(f"{size + len(include)} combinations; a matrix makes at most {MAX_COMBINATIONS}")
        return {"axes": axes, "include": include, "exclude": exclude}

    @property
    def names(self) -> list[str]:
        return list(self.axes) or list(self.include[0])

    def combinations(self) -> list[dict[str, str]]:
        """Every combination, in the order written: the axes' product less the excluded ones,
        then the included ones (each once)."""
        combos: list[dict[str, str]] = [{}] if self.axes else []
        for axis, values in self.axes.items():
            combos = [{**c, axis: v} for c in combos for v in values]
        combos = [c for c in combos if not any(all(c.get(k) == v for k, v in e.items()) for e in self.exclude)]
        for entry in self.include:
            ordered = {n: entry[n] for n in self.names}
            if ordered not in combos:
                combos.append(ordered)
        return combos


def variant_name(job: str, combination: dict[str, str]) -> str:
    """`test (python=3.12, db=postgres)`."""
    return f"{job} ({', '.join(f'{k}={v}' for k, v in combination.items())})"


def group_of(name: str) -> str:
    """The flow file's job a run's job comes from: `test (python=3.12)` -> `test`."""
    return name.split(" (", 1)[0]


def variables(combination: dict[str, str]) -> dict[str, str]:
    return {f"MATRIX_{k.upper()}": v for k, v in combination.items()}


def placeholders(text: str) -> list[str]:
    """The axes `${{ matrix.<axis> }}` names in `text`."""
    return PLACEHOLDER.findall(text)


def substitute(text: str, combination: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: combination[m.group(1)], text)


def blank(text: str) -> str:
    """`text` with every placeholder replaced by a plain word, to check what it will look like."""
    return PLACEHOLDER.sub("x", text)


def check_placeholders(job: str, texts: dict[tuple[Any, ...], str], matrix: Matrix | None) -> None:
    """Every `${{ matrix.<axis> }}` names an axis of the job's matrix (`texts`: where -> text)."""
    for where, text in texts.items():
        for axis in placeholders(text):
            if matrix is None:
                message = f"uses ${{{{ matrix.{axis} }}}} but the job has no matrix"
            elif axis not in matrix.names:
                message = f"uses ${{{{ matrix.{axis} }}}} but the matrix has no axis {axis!r} (axes: {', '.join(matrix.names)})"
            else:
                continue
            raise PydanticCustomError("located", "{message}", {"message": message, "at": ("jobs", job, *where)})


def expand(jobs: dict[str, Job]) -> dict[str, Job]:
    """The run's jobs: each matrix job replaced by its combinations, in place, and every `needs`
    of a matrix job replaced by its combinations' names."""
    out: dict[str, Job] = {}
    made: dict[str, list[str]] = {}
    for name, job in jobs.items():
        if job.matrix is None:
            out[name] = job
            continue
        made[name] = []
        for combination in job.matrix.combinations():
            variant = variant_name(name, combination)
            made[name].append(variant)
            out[variant] = job.model_copy(
                update={
                    "name": variant,
                    "matrix": None,
                    "image": substitute(job.image, combination),
                    "plugin": None if job.plugin is None else substitute(job.plugin, combination),
                    "args": [substitute(a, combination) for a in job.args],
                    "env": {**{k: substitute(v, combination) for k, v in job.env.items()}, **variables(combination)},
                }
            )
    if not made:
        return out
    return {
        name: job.model_copy(update={"needs": [v for need in job.needs for v in made.get(need, [need])]})
        for name, job in out.items()
    }
