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

A flow file comes from whoever can push or open a pull request, so reading one is bounded: at
most `MAX_BYTES`, `MAX_ALIASES` aliases (`*name`), `MAX_DEPTH` levels of nesting, `MAX_VALUES`
values and `MAX_TEXT` bytes of text once its aliases are expanded (a few hundred bytes of
aliases cannot make a plan of megabytes), and `MAX_SECONDS` of reading; each refusal names the
file and the line. A job's `timeout` may be capped by the operator (`parse(max_timeout=...)`).
Nothing but `FlowFileError` comes out of `parse()`, whatever the text.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

import msgpack
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError, to_jsonable_python

from tasuki.shared.errors import FlowFileError
from tasuki.shared.text import clip

FLOW_FILE = ".tasuki.yml"

# Bounds on reading a flow file (see the module's docstring).
MAX_BYTES = 256 * 1024
MAX_ALIASES = 100
MAX_DEPTH = 32
MAX_VALUES = 20_000
MAX_TEXT = 1024 * 1024
MAX_SECONDS = 2.0
# At most this many problems are listed when a file has many.
MAX_PROBLEMS = 20

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_EXECUTABLE = re.compile(r"^[A-Za-z0-9_.@+-][A-Za-z0-9_.@+/-]*$")
_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHELL = re.compile(r"[;&|$`<>(){}*?!~'\"\\]")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")
# Keys other CI services use for inline shell; named in the error, since Tasuki refuses them.
_SCRIPT_KEYS = frozenset({"script", "scripts", "steps", "commands", "command", "shell", "cmd", "sh", "before_script"})


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


def duration(seconds: float) -> str:
    """`90` -> `1m30s`, `3600` -> `1h`, `0.4` -> `0.4s`."""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"


def check_executable(path: str) -> str:
    """A relative path to a file in the repository, with no `..` and nothing a shell would read."""
    if not path or not path.strip():
        raise ValueError("expected an executable file in the repository, like ci/test")
    if "\n" in path.strip():
        raise ValueError(
            "this is an inline script, and Tasuki runs no inline scripts: put the commands in an "
            "executable file in the repository (like ci/test) and name that file in run"
        )
    if path.startswith("/"):
        raise ValueError(f"expected a path relative to the repository root, found the absolute path {path!r}")
    first, _, rest = path.strip().partition(" ")
    if rest and _EXECUTABLE.match(first) and not _SHELL.search(path):
        raise ValueError(
            f"expected one executable file, found {path!r}; put its arguments in args, "
            f"like run: {first} and args: {rest.split()}"
        )
    if not _EXECUTABLE.match(path):
        raise ValueError(
            f"expected an executable file in the repository (like ci/test), not a shell "
            f"command: found {path!r}. Tasuki runs no inline scripts: put the commands in a "
            f"script in the repository, make it executable and name it here"
        )
    if ".." in path.split("/"):
        raise ValueError(f"expected a file inside the repository, found {path!r} with '..'")
    return path.removeprefix("./")


def check_image(value: str | None) -> str | None:
    """An image reference (`python:3.12-slim`, `ghcr.io/acme/tool@sha256:...`), nothing more."""
    if value and not _IMAGE.match(value):
        raise ValueError(f"expected an image name like python:3.12-slim, found {value!r}")
    return value


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

    def matches(self, *, event: str, branch: str = "", tag: str = "", changed: Iterable[str] | None = None) -> bool:
        if self.event and event not in self.event:
            return False
        if self.branch and not (branch and any(fnmatch.fnmatchcase(branch, g) for g in self.branch)):
            return False
        if self.tag and not (tag and any(fnmatch.fnmatchcase(tag, g) for g in self.tag)):
            return False
        # Unknown changed paths (None: a new branch, a truncated push) run the job.
        return not (
            self.paths
            and changed is not None
            and not any(fnmatch.fnmatchcase(p, g) for p in changed for g in self.paths)
        )


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

    @field_validator("image", "plugin")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return check_image(value)

    @field_validator("settings")
    @classmethod
    def _settings_travel(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Settings travel in messages (msgpack): plain values only."""
        try:
            msgpack.packb(to_jsonable_python(value), use_bin_type=True)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(
                f"settings are text, numbers that fit in 64 bits, true or false, lists and maps ({clip(str(exc), 80)})"
            ) from None
        return value

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
        if self.run is not None and self.plugin is not None:
            raise ValueError("a job has run (an executable in the repository) or plugin (an image), not both")
        if self.run is None and self.plugin is None:
            raise ValueError("a job needs run (an executable in the repository, with image) or plugin (an image)")
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
                    raise PydanticCustomError(
                        "located",
                        "job names are letters, digits, '-', '_' and '.', found {name}",
                        {"name": repr(name), "at": ("jobs", str(name))},
                    )
                jobs[name] = {**job, "name": name} if isinstance(job, dict) else job
            data = {**data, "jobs": jobs}
        return data

    @model_validator(mode="after")
    def _dag(self) -> Flow:
        problem = dag_problem({n: j.needs for n, j in self.jobs.items()})
        if problem:
            where, message = problem
            # The location travels in the error's context, so that `parse` can name its line.
            raise PydanticCustomError("located", "{message}", {"message": message, "at": where})
        return self


def dag_problem(needs: dict[str, list[str]]) -> tuple[tuple[Any, ...], str] | None:
    """The first thing wrong with the jobs' needs, with where it is: (location, message)."""
    if not needs:
        return ("jobs",), "empty: name at least one job"
    for name, deps in needs.items():
        for index, need in enumerate(deps):
            if need == name:
                return ("jobs", name, "needs", index), "a job cannot need itself"
            if need not in needs:
                known = ", ".join(sorted(n for n in needs if n != name))
                return (
                    ("jobs", name, "needs", index),
                    f"needs {need!r}, which is not a job in this file (jobs: {known})",
                )
    if topological_order(needs) is None:
        cycle = find_cycle(needs)
        return ("jobs", cycle[0], "needs"), f"these needs form a cycle: {' -> '.join(cycle)}"
    return None


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
                return [*visiting[visiting.index(need) :], need]
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


def parse(text: str | bytes, path: str = FLOW_FILE, *, max_timeout: int | None = None) -> Flow:
    """Validate a flow file; every error names the file, the line and (where there is one) the
    job. A job's timeout over `max_timeout` seconds is an error too. Only `FlowFileError` comes
    out, whatever the text: anything unexpected is reported as the file being unreadable."""
    try:
        return _parse(text, path, max_timeout)
    except FlowFileError:
        raise
    except Exception as exc:  # a bound this module missed: still the flow file's fault, said so
        raise FlowFileError(f"{path}:1: cannot be read: {type(exc).__name__}: {clip(str(exc), 300)}") from None


def _parse(text: str | bytes, path: str, max_timeout: int | None) -> Flow:
    size = len(text.encode("utf-8", "replace") if isinstance(text, str) else text)
    if size > MAX_BYTES:
        raise FlowFileError(f"{path}:1: {size} bytes; a flow file has at most {MAX_BYTES}")
    loader = _BoundedLoader(text, path)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_expansion(root, path)
            _refuse_duplicate_keys(root, path)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        # The parser notices a problem where it stops (problem_mark), often a line after the
        # mistake; the construct it was reading (context_mark) tells whose entry is broken.
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        started = exc.context_mark.line + 1 if exc.context_mark else line
        job = _job_near(text, started)
        where = f"{path}:{line}: job {job!r}" if job else f"{path}:{line}"
        context = f" ({exc.context} that starts on line {started})" if exc.context and started != line else ""
        raise FlowFileError(f"{where}: not valid YAML: {exc.problem or exc}{context}") from None
    except yaml.YAMLError as exc:
        raise FlowFileError(f"{path}:1: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise FlowFileError(f"{path}:1: expected a mapping with a 'jobs' key, found {found}")
    if "jobs" not in data:
        raise FlowFileError(f"{path}:1: no 'jobs' key: a flow file is 'jobs:' and one entry per job")
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        problems = sorted({_problem(error, root, path) for error in exc.errors()[:1000]})
        listed = [message for _, message in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            listed.append(f"{path}: and {len(problems) - MAX_PROBLEMS} more problems")
        raise FlowFileError("\n".join(listed)) from None
    if max_timeout is not None:
        for name, spec in flow.jobs.items():
            if spec.timeout is not None and spec.timeout > max_timeout:
                line = _line_of(root, ["jobs", name, "timeout"]) or 1
                raise FlowFileError(
                    f"{path}:{line}: job {name!r}: timeout: {duration(spec.timeout)} is longer than this Tasuki "
                    f"allows ({duration(max_timeout)}, TASUKI_JOB_TIMEOUT_MAX)"
                )
    return flow


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stopping at `MAX_ALIASES` aliases, `MAX_DEPTH` levels of nesting
    and `MAX_SECONDS` of composing (the composer is recursive: depth must be bounded there)."""

    def __init__(self, text: str | bytes, path: str) -> None:
        super().__init__(text)
        self.path = path
        self.aliases = 0
        self.depth = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else 1
        if time.monotonic() > self.deadline:
            raise FlowFileError(f"{self.path}:{line}: took longer than {MAX_SECONDS:g}s to read; make it simpler")
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise FlowFileError(f"{self.path}:{line}: more than {MAX_ALIASES} aliases (*name) in one flow file")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise FlowFileError(f"{self.path}:{line}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_expansion(root: yaml.Node, path: str) -> None:
    """Refuse a document that, its aliases expanded, nests deeper than `MAX_DEPTH` or holds more
    than `MAX_VALUES` values or `MAX_TEXT` bytes of text, or whose alias refers to the value that
    holds it. Each distinct node is weighed once (its weight remembered), so this is quick."""
    weights: dict[int, tuple[int, int, int]] = {}  # node -> (values, text, depth) of its expansion
    open_nodes: set[int] = set()

    def refuse(node: yaml.Node, what: str) -> FlowFileError:
        return FlowFileError(f"{path}:{node.start_mark.line + 1}: {what}")

    def weigh(node: yaml.Node, level: int) -> tuple[int, int, int]:
        known = weights.get(id(node))
        if known is None:
            if id(node) in open_nodes:
                raise refuse(node, "an alias refers to the value that holds it")
            if level > MAX_DEPTH:
                raise refuse(node, f"nested deeper than {MAX_DEPTH} levels (its aliases expanded)")
            open_nodes.add(id(node))
            values, text, depth = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0, 1
            if isinstance(node, yaml.SequenceNode):
                children: list[yaml.Node] = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            else:
                children = []
            for child in children:
                more_values, more_text, child_depth = weigh(child, level + 1)
                values, text, depth = values + more_values, text + more_text, max(depth, child_depth + 1)
                if values > MAX_VALUES or text > MAX_TEXT:
                    what = f"{MAX_VALUES} values" if values > MAX_VALUES else f"{MAX_TEXT} bytes of text"
                    raise refuse(node, f"its aliases expand to more than {what}; repeat less")
            open_nodes.discard(id(node))
            known = weights[id(node)] = (values, text, depth)
        if level + known[2] - 1 > MAX_DEPTH:
            raise refuse(node, f"nested deeper than {MAX_DEPTH} levels (its aliases expanded)")
        return known

    weigh(root, 1)


def _problem(error: Any, root: yaml.Node | None, path: str) -> tuple[int, str]:
    """One pydantic error as (line, "file:line: job 'x': field: message")."""
    loc = [p for p in error["loc"] if p not in ("function-after", "function-before")]
    if error["type"] == "located":
        loc = list(error["ctx"]["at"])
    line = _line_of(root, loc) or 1
    job = f" job {loc[1]!r}:" if len(loc) >= 2 and loc[0] == "jobs" else ""
    inner = loc[2:] if job else loc
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inner).lstrip(".")
    message = _message(error, loc)
    return line, f"{path}:{line}:{job}{' ' + field + ':' if field else ''} {message}"


def _message(error: Any, loc: list[Any]) -> str:
    kind, found = error["type"], error.get("input")
    if kind == "extra_forbidden":
        key = loc[-1]
        if key in _SCRIPT_KEYS:
            return (
                f"unknown key {key!r}: Tasuki runs no inline scripts; put the commands in an "
                f"executable file in the repository and name it in run"
            )
        model = Flow if len(loc) == 1 else When if "when" in loc[2:3] else Job
        known = ", ".join(k for k in model.model_fields if k != "name")
        return f"unknown key {key!r}; expected one of: {known}"
    if kind == "missing":
        return f"{loc[-1]!r} is required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        what = "a job is a mapping like {image: ..., run: ci/test}" if len(loc) == 2 else "expected a mapping"
        return f"{what}, found {found!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind not in ("value_error", "located") and isinstance(found, str | int | float | bool | None):
        message += f", found {found!r}"
    return message


def _refuse_duplicate_keys(
    node: yaml.Node | None, path: str, loc: tuple[Any, ...] = (), seen_nodes: set[int] | None = None
) -> None:
    """YAML keeps the last of two equal keys silently; a job defined twice is a mistake to report.
    A node an alias repeats is looked at once."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                where = (*loc, key.value)
                job = f" job {where[1]!r}:" if len(where) >= 2 and where[0] == "jobs" else ""
                what = "this job is defined twice" if len(where) == 2 and job else f"{key.value!r} appears twice"
                raise FlowFileError(f"{path}:{key.start_mark.line + 1}:{job} {what}")
            seen.add(key.value)
            _refuse_duplicate_keys(value, path, (*loc, key.value), seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, path, (*loc, index), seen_nodes)


def _job_near(text: str | bytes, line: int) -> str:
    """The job whose entry holds `line` (1-based), reading the text (YAML that did not parse)."""
    lines = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).splitlines()
    job, indent, in_jobs = "", None, False
    for _number, content in enumerate(lines[:line], start=1):
        stripped = content.strip()
        if not stripped or stripped.startswith("#"):
            continue
        depth = len(content) - len(content.lstrip())
        if depth == 0:
            in_jobs, job = stripped.startswith("jobs:"), ""
            continue
        if in_jobs and (indent is None or depth == indent):
            indent = depth
            match = re.match(r"([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:", stripped)
            job = match.group(1) if match else job
    return job


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
    names = list(names)
    chosen = with_needs(flow, names) if names else sorted(flow.jobs)
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
