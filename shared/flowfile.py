"""The flow file, `.tasuki.yml`: the jobs of a repository, read at the pushed commit.

    jobs:
      build:  {image: python:3.12-slim, run: ci/build, args: [--release], env: {MODE: fast}, timeout: 10m}
      test:   {image: python:3.12-slim, run: ci/test, needs: [build]}
      deploy: {plugin: example/notify, settings: {channel: ci}, needs: [test],
               when: {branch: [main], event: [push]}}

A job names an executable file that lives in the repository (`run`), or a plugin image
(`plugin`) whose settings reach it as `PLUGIN_<NAME>` variables. The service holds no scripts:
inline shell is refused. `needs` makes a DAG; `when` filters by event, branch, tag and paths.

`parse()` validates a file and raises `FlowFileError` naming the file, the line and the job.
`select()` is the pure planning step: which jobs a given event runs and which it skips.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import FlowFileError

FLOW_FILE = ".tasuki.yml"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_EXECUTABLE = re.compile(r"^[A-Za-z0-9_.@+-][A-Za-z0-9_.@+/-]*$")
_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_duration(value: Any) -> int:
    """Seconds from `90`, `"90s"`, `"10m"`, `"1h30m"`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 10m or 90s, found {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise ValueError(f"expected a duration like 10m, 1h30m or 90s, found {value!r}")
        h, m, s = (int(g or 0) for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError(f"a timeout must be positive, found {value!r}")
    return seconds


def check_executable(path: str) -> str:
    """A relative path to a file in the repository, with no `..` and nothing a shell would read."""
    if not path or not path.strip():
        raise ValueError("run must name an executable file in the repository, like ci/test")
    if path.startswith("/"):
        raise ValueError(
            f"run must be a path relative to the repository root, found the absolute path {path!r}"
        )
    if not _EXECUTABLE.match(path):
        raise ValueError(
            f"run must name an executable file in the repository (like ci/test), not a shell "
            f"command: found {path!r}. Tasuki runs no inline scripts: put the commands in a "
            f"script in the repository, make it executable and name it here"
        )
    if ".." in path.split("/"):
        raise ValueError(f"run must stay inside the repository, found {path!r} with '..'")
    return path.removeprefix("./")


class When(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event: list[Literal["push", "tag", "pull_request"]] = Field(default_factory=list)
    branch: list[str] = Field(default_factory=list)
    tag: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)

    @field_validator("event", "branch", "tag", "paths", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(
        self, *, event: str, branch: str = "", tag: str = "", changed: Iterable[str] | None = None
    ) -> bool:
        if self.event and event not in self.event:
            return False
        if self.branch and not (branch and any(fnmatch.fnmatchcase(branch, g) for g in self.branch)):
            return False
        if self.tag and not (tag and any(fnmatch.fnmatchcase(tag, g) for g in self.tag)):
            return False
        if self.paths and changed is not None:
            # Unknown changed paths (None: a new branch, a truncated push) run the job.
            if not any(fnmatch.fnmatchcase(p, g) for p in changed for g in self.paths):
                return False
        return True


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    image: str = ""
    run: str | None = None
    plugin: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    needs: list[str] = Field(default_factory=list)
    timeout: int | None = None  # seconds; None: the executor's default
    network: Literal["bridge", "none"] = "bridge"
    when: When = Field(default_factory=When)

    @field_validator("run")
    @classmethod
    def _run_is_a_file(cls, value: str | None) -> str | None:
        return None if value is None else check_executable(value)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> int | None:
        return None if value is None else parse_duration(value)

    @field_validator("needs", mode="before")
    @classmethod
    def _needs(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("args must be a list of strings (each one argument, no shell)")
        return [str(a) if isinstance(a, int | float) and not isinstance(a, bool) else a for a in value]

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for key in value:
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ValueError(f"env names must be like MODE or API_URL, found {key!r}")
        return {k: v if isinstance(v, str) else _scalar(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _run_or_plugin(self) -> Job:
        if (self.run is None) == (self.plugin is None):
            raise ValueError("a job needs either run (an executable in the repository) or plugin (an image)")
        if self.run is not None and not self.image:
            raise ValueError(f"a job that runs {self.run} needs an image to run it in")
        if self.plugin is not None and self.image:
            raise ValueError("a plugin job names its image in plugin, not image")
        return self

    @property
    def container_image(self) -> str:
        return self.plugin or self.image


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"env values must be strings or numbers, found {value!r}")


class Flow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: dict[str, Job]

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("jobs"), dict):
            jobs = {}
            for name, job in data["jobs"].items():
                if not isinstance(name, str) or not _NAME.match(name):
                    raise ValueError(f"job names are letters, digits, '-', '_' and '.', found {name!r}")
                jobs[name] = {**job, "name": name} if isinstance(job, dict) else job
            data = {**data, "jobs": jobs}
        return data

    @model_validator(mode="after")
    def _dag(self) -> Flow:
        if not self.jobs:
            raise ValueError("jobs is empty: name at least one job")
        for name, job in self.jobs.items():
            for need in job.needs:
                if need not in self.jobs:
                    raise ValueError(f"job {name!r} needs {need!r}, which is not a job in this file")
        order = topological_order({n: j.needs for n, j in self.jobs.items()})
        if order is None:
            raise ValueError(f"needs form a cycle: {' -> '.join(find_cycle({n: j.needs for n, j in self.jobs.items()}))}")
        return self


def topological_order(needs: dict[str, list[str]]) -> list[str] | None:
    """Jobs in an order where every job comes after its needs; None if there is a cycle."""
    order: list[str] = []
    done: set[str] = set()
    remaining = dict(needs)
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if all(d in done for d in deps))
        if not ready:
            return None
        for name in ready:
            order.append(name)
            done.add(name)
            del remaining[name]
    return order


def find_cycle(needs: dict[str, list[str]]) -> list[str]:
    """One cycle among the needs, its first name repeated at the end; [] if there is none."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str]:
        visiting.append(name)
        for need in needs.get(name, []):
            if need in visiting:
                return visiting[visiting.index(need) :] + [need]
            if need in needs and need not in done:
                cycle = visit(need)
                if cycle:
                    return cycle
        visiting.pop()
        done.add(name)
        return []

    for name in sorted(needs):
        if name not in done:
            cycle = visit(name)
            if cycle:
                return cycle
    return []


# --- parsing with line numbers ----------------------------------------------------------------


def parse(text: str | bytes, path: str = FLOW_FILE) -> Flow:
    """Validate a flow file; errors name the file, the line and the job."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise FlowFileError(f"{path}{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise FlowFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or "jobs" not in data:
        raise FlowFileError(f"{path}:1: expected a mapping with a 'jobs' key, found {type(data).__name__}")
    try:
        return Flow.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [p for p in first["loc"] if p not in ("function-after", "function-before")]
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else path
        job = f" job {loc[1]!r}" if len(loc) >= 2 and loc[0] == "jobs" else ""
        field = f" {'.'.join(str(p) for p in loc[2:])}" if len(loc) > 2 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif first["type"] == "missing":
            message = f"{loc[-1]!r} is required"
        raise FlowFileError(f"{where}:{job}{field}: {message}") from None


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """1-based line of the deepest node reachable along `loc` in the composed YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node = value
                    line = key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# --- planning ---------------------------------------------------------------------------------


def with_needs(flow: Flow, names: Iterable[str]) -> list[str]:
    """The named jobs and every job they need, transitively; unknown names are an error."""
    wanted: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in flow.jobs:
            known = ", ".join(sorted(flow.jobs))
            raise FlowFileError(f"there is no job {name!r}; the flow has: {known}")
        if name not in wanted:
            wanted.add(name)
            stack.extend(flow.jobs[name].needs)
    return sorted(wanted)


def select(
    flow: Flow,
    *,
    event: str,
    branch: str = "",
    tag: str = "",
    changed: Iterable[str] | None = None,
    names: Iterable[str] = (),
) -> tuple[dict[str, Job], list[str]]:
    """Which jobs run for this event, and which are skipped by their `when` (or a skipped need)."""
    chosen = with_needs(flow, names) if list(names) else sorted(flow.jobs)
    changed = list(changed) if changed is not None else None
    order = topological_order({n: flow.jobs[n].needs for n in chosen}) or chosen
    run: dict[str, Job] = {}
    skipped: list[str] = []
    for name in order:
        job = flow.jobs[name]
        if any(need in skipped for need in job.needs) or not job.when.matches(
            event=event, branch=branch, tag=tag, changed=changed
        ):
            skipped.append(name)
        else:
            run[name] = job
    return run, skipped
