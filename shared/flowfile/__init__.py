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

A job may also have a `matrix` (one job per combination of values, expanded by `parse`: the
flow it returns holds `test (python=3.12)` and not `test`), `retry` (run a failed attempt
again) and `services` (containers beside it); see `matrix` and `model`.

The package: `model` (Flow, Job, When, Retry, Service and their checks), `matrix` (expansion),
`dag` (needs as a graph), `reading` (YAML with bounds, `parse`), `plan` (`select`,
`with_needs`). Import from here.
"""

from tasuki.shared.flowfile.dag import dag_problem, find_cycle, topological_order
from tasuki.shared.flowfile.matrix import MAX_COMBINATIONS, MAX_JOBS, Matrix, group_of
from tasuki.shared.flowfile.model import (
    FLOW_FILE,
    MAX_RETRIES,
    MAX_SERVICES,
    Flow,
    Job,
    Ready,
    Retry,
    SecretRef,
    Service,
    When,
    check_executable,
    check_image,
    check_secret_name,
    duration,
    parse_duration,
)
from tasuki.shared.flowfile.plan import select, with_needs
from tasuki.shared.flowfile.reading import (
    MAX_ALIASES,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_PROBLEMS,
    MAX_SECONDS,
    MAX_TEXT,
    MAX_VALUES,
    parse,
)

__all__ = [
    "FLOW_FILE",
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_COMBINATIONS",
    "MAX_DEPTH",
    "MAX_JOBS",
    "MAX_PROBLEMS",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "MAX_SERVICES",
    "MAX_TEXT",
    "MAX_VALUES",
    "Flow",
    "Job",
    "Matrix",
    "Ready",
    "Retry",
    "SecretRef",
    "Service",
    "When",
    "check_executable",
    "check_image",
    "check_secret_name",
    "dag_problem",
    "duration",
    "find_cycle",
    "group_of",
    "parse",
    "parse_duration",
    "select",
    "topological_order",
    "with_needs",
]
