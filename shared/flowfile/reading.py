"""Reading a flow file: YAML with bounds (size, aliases, nesting, values, text, time), every
problem named by file, line and job. Nothing but `FlowFileError` comes out of `parse()`."""

from __future__ import annotations

import re
import time
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tasuki.shared.errors import FlowFileError
from tasuki.shared.flowfile.matrix import Matrix
from tasuki.shared.flowfile.model import (
    FLOW_FILE,
    SCRIPT_KEYS,
    Flow,
    Job,
    Ready,
    Retry,
    SecretRef,
    Service,
    When,
    duration,
)
from tasuki.shared.flowfile.params import Param
from tasuki.shared.text import clip

# Bounds on reading a flow file (see the module's docstring).
MAX_BYTES = 256 * 1024
MAX_ALIASES = 100
MAX_DEPTH = 32
MAX_VALUES = 20_000
MAX_TEXT = 1024 * 1024
MAX_SECONDS = 2.0
# At most this many problems are listed when a file has many.
MAX_PROBLEMS = 20


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
    return flow.expanded()


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
        if key in SCRIPT_KEYS:
            return (
                f"unknown key {key!r}: Tasuki runs no inline scripts; put the commands in an "
                f"executable file in the repository and name it in run"
            )
        model = _model_at(loc)
        known = ", ".join(f.alias or k for k, f in model.model_fields.items() if k != "name" or model is SecretRef)
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


def _model_at(loc: list[Any]) -> type[BaseModel]:
    """The model whose keys are at `loc` (jobs.x.services.db.ready.key -> Ready)."""
    if len(loc) <= 1:
        return Flow
    if loc[0] == "params":
        return Param
    inner: dict[str, type[BaseModel]] = {"when": When, "retry": Retry, "matrix": Matrix}
    if len(loc) == 4 and loc[2] in inner:
        return inner[loc[2]]
    if len(loc) >= 5 and loc[2] == "services":
        return Ready if len(loc) == 6 and loc[4] == "ready" else Service
    if len(loc) >= 4 and loc[2] == "secrets":
        return SecretRef
    return Job


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
