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

The package: `model` (Flow, Job, When and their checks), `dag` (needs as a graph), `reading`
(YAML with bounds, `parse`), `plan` (`select`, `with_needs`). Import from here.
"""

from tasuki.shared.flowfile.dag import dag_problem, find_cycle, topological_order
from tasuki.shared.flowfile.model import (
    FLOW_FILE,
    Flow,
    Job,
    SecretRef,
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
    "MAX_DEPTH",
    "MAX_PROBLEMS",
    "MAX_SECONDS",
    "MAX_TEXT",
    "MAX_VALUES",
    "Flow",
    "Job",
    "SecretRef",
    "When",
    "check_executable",
    "check_image",
    "check_secret_name",
    "dag_problem",
    "duration",
    "find_cycle",
    "parse",
    "parse_duration",
    "select",
    "topological_order",
    "with_needs",
]
