"""The flow file: a valid file parses; every kind of invalid file is refused with the file, the
line and the job named; `select` applies `when` and `needs` to an event."""

from __future__ import annotations

import pytest

from tasuki.shared import flowfile
from tasuki.shared.errors import FlowFileError

DIAMOND = """\
jobs:
  build:  {image: python:3.12-slim, run: ci/build, args: [--release], env: {MODE: fast}, timeout: 10m}
  test:   {image: python:3.12-slim, run: ci/test, needs: [build]}
  lint:   {image: python:3.12-slim, run: ci/lint, needs: [build]}
  deploy: {plugin: example/notify, settings: {channel: ci}, needs: [test, lint],
           when: {branch: [main], event: [push]}}
"""


def test_the_issue_example_parses_into_jobs_with_their_settings():
    flow = flowfile.parse(DIAMOND)
    assert list(flow.jobs) == ["build", "test", "lint", "deploy"]
    build, deploy = flow.jobs["build"], flow.jobs["deploy"]
    assert (build.run, build.args, build.env, build.timeout) == ("ci/build", ["--release"], {"MODE": "fast"}, 600)
    assert (deploy.plugin, deploy.container_image, deploy.settings) == (
        "example/notify",
        "example/notify",
        {"channel": "ci"},
    )
    assert deploy.needs == ["test", "lint"] and deploy.when.branch == ["main"]
    assert flowfile.topological_order({n: j.needs for n, j in flow.jobs.items()}) == ["build", "lint", "test", "deploy"]


@pytest.mark.parametrize("value, seconds", [(90, 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("2h", 7200)])
def test_timeouts_read_as_durations(value, seconds):
    assert flowfile.parse_duration(value) == seconds


@pytest.mark.parametrize("run, cleaned", [("ci/test", "ci/test"), ("./ci/test", "ci/test"), ("build.sh", "build.sh")])
def test_run_names_a_file_in_the_repository(run, cleaned):
    flow = flowfile.parse(f"jobs:\n  t: {{image: x, run: {run}}}\n")
    assert flow.jobs["t"].run == cleaned


# Each invalid file, the start of its error (file:line: job) and a phrase that says why.
INVALID = {
    "bad YAML": (
        "jobs:\n  build: {image: x, run: ci/b}\n  test: {image: x, run: ci/t\n  lint: {image: x, run: ci/l}\n",
        ".tasuki.yml:4: job 'test': not valid YAML",
        "expected ',' or '}'",
    ),
    "unknown key": (
        "jobs:\n  build:\n    image: x\n    run: ci/b\n    imgae: y\n",
        ".tasuki.yml:5: job 'build': imgae: unknown key 'imgae'",
        "expected one of: image, run, plugin",
    ),
    "inline script key": (
        "jobs:\n  build: {image: x, script: make test}\n",
        ".tasuki.yml:2: job 'build': script: unknown key 'script'",
        "Tasuki runs no inline scripts",
    ),
    "run with shell syntax": (
        "jobs:\n  build: {image: x, run: 'make && ./deploy'}\n",
        ".tasuki.yml:2: job 'build': run:",
        "not a shell command",
    ),
    "run with arguments": (
        "jobs:\n  build: {image: x, run: ci/test --fast}\n",
        ".tasuki.yml:2: job 'build': run:",
        "put its arguments in args",
    ),
    "run with ..": (
        "jobs:\n  build: {image: x, run: ci/../../etc/passwd}\n",
        ".tasuki.yml:2: job 'build': run:",
        "inside the repository",
    ),
    "run with an absolute path": (
        "jobs:\n  build: {image: x, run: /bin/sh}\n",
        ".tasuki.yml:2: job 'build': run:",
        "found the absolute path '/bin/sh'",
    ),
    "inline script in run": (
        "jobs:\n  build:\n    image: x\n    run: |\n      make\n      make test\n",
        ".tasuki.yml:4: job 'build': run:",
        "Tasuki runs no inline scripts",
    ),
    "missing image": (
        "jobs:\n  build: {image: x, run: ci/b}\n  test: {run: ci/test}\n",
        ".tasuki.yml:3: job 'test':",
        "needs an image",
    ),
    "both run and plugin": (
        "jobs:\n  build: {image: x, run: ci/b, plugin: acme/p}\n",
        ".tasuki.yml:2: job 'build':",
        "not both",
    ),
    "neither run nor plugin": (
        "jobs:\n  build: {image: x}\n",
        ".tasuki.yml:2: job 'build':",
        "needs run",
    ),
    "unknown need": (
        "jobs:\n  build: {image: x, run: ci/b}\n  test:\n    image: x\n    run: ci/t\n    needs:\n      - build\n      - biuld\n",
        ".tasuki.yml:8: job 'test': needs[1]:",
        "'biuld', which is not a job in this file",
    ),
    "cycle": (
        "jobs:\n  a: {image: x, run: ci/a, needs: [c]}\n  b: {image: x, run: ci/b, needs: [a]}\n  c: {image: x, run: ci/c, needs: [b]}\n",
        ".tasuki.yml:2: job 'a': needs:",
        "cycle: a -> c -> b -> a",
    ),
    "a job needing itself": (
        "jobs:\n  a: {image: x, run: ci/a, needs: a}\n",
        ".tasuki.yml:2: job 'a': needs[0]:",
        "cannot need itself",
    ),
    "bad timeout": (
        "jobs:\n  build:\n    image: x\n    run: ci/b\n    timeout: ten minutes\n",
        ".tasuki.yml:5: job 'build': timeout:",
        "expected a duration like 10m",
    ),
    "zero timeout": (
        "jobs:\n  build: {image: x, run: ci/b, timeout: 0}\n",
        ".tasuki.yml:2: job 'build': timeout:",
        "must be positive",
    ),
    "bad when event": (
        "jobs:\n  build: {image: x, run: ci/b}\n  deploy:\n    image: x\n    run: ci/d\n    when: {event: [merge]}\n",
        ".tasuki.yml:6: job 'deploy': when.event[0]:",
        "found 'merge'",
    ),
    "unknown when key": (
        "jobs:\n  deploy:\n    image: x\n    run: ci/d\n    when:\n      brnch: main\n",
        ".tasuki.yml:6: job 'deploy': when.brnch: unknown key 'brnch'",
        "event, branch, tag, paths",
    ),
    "a job that is not a mapping": (
        "jobs:\n  build: ci/build\n",
        ".tasuki.yml:2: job 'build':",
        "a job is a mapping",
    ),
    "a job defined twice": (
        "jobs:\n  build: {image: x, run: ci/b}\n  build: {image: x, run: ci/c}\n",
        ".tasuki.yml:3: job 'build':",
        "defined twice",
    ),
    "a bad job name": (
        "jobs:\n  'build it': {image: x, run: ci/b}\n",
        ".tasuki.yml:2: job 'build it':",
        "job names are letters",
    ),
    "a bad image name": (
        "jobs:\n  build: {image: 'python 3', run: ci/b}\n",
        ".tasuki.yml:2: job 'build': image:",
        "expected an image name",
    ),
    "env with a bad name": (
        "jobs:\n  build: {image: x, run: ci/b, env: {'A-B': x}}\n",
        ".tasuki.yml:2: job 'build': env:",
        "env names must be like MODE",
    ),
    "args as one string": (
        "jobs:\n  build: {image: x, run: ci/b, args: --release --fast}\n",
        ".tasuki.yml:2: job 'build': args:",
        "a list of strings",
    ),
}


@pytest.mark.parametrize("text, where, why", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_flow_file_is_refused_naming_file_line_and_job(text, where, why):
    with pytest.raises(FlowFileError) as caught:
        flowfile.parse(text)
    message = str(caught.value)
    assert message.startswith(where), message
    assert why in message, message


@pytest.mark.parametrize(
    "text, message",
    [
        ("", ".tasuki.yml:1: expected a mapping with a 'jobs' key, found an empty file"),
        ("- build\n", ".tasuki.yml:1: expected a mapping with a 'jobs' key, found a list"),
        ("job:\n  build: {image: x, run: ci/b}\n", ".tasuki.yml:1: no 'jobs' key"),
        ("jobs: {}\n", ".tasuki.yml:1: jobs: empty: name at least one job"),
        (
            "jobs:\n  a: {image: x, run: ci/a}\nstages: [a]\n",
            ".tasuki.yml:3: stages: unknown key 'stages'; expected one of: jobs",
        ),
    ],
)
def test_a_file_without_jobs_is_refused_at_its_line(text, message):
    with pytest.raises(FlowFileError) as caught:
        flowfile.parse(text)
    assert str(caught.value).startswith(message)


def test_every_problem_is_reported_in_line_order_under_its_own_path():
    text = "jobs:\n  a: {image: x}\n  b: {image: x, run: ci/b, timeout: 0}\n"
    with pytest.raises(FlowFileError) as caught:
        flowfile.parse(text, "ci/flows/nightly.yml")
    first, second = str(caught.value).splitlines()
    assert first.startswith("ci/flows/nightly.yml:2: job 'a':")
    assert second.startswith("ci/flows/nightly.yml:3: job 'b': timeout:")


# --- select: which jobs an event runs ---------------------------------------------------------


def test_when_filters_by_branch_and_skips_what_needs_a_skipped_job():
    flow = flowfile.parse(DIAMOND + "  notify: {image: x, run: ci/notify, needs: [deploy]}\n")
    run, skipped = flowfile.select(flow, event="push", branch="feature/x")
    assert sorted(run) == ["build", "lint", "test"]
    assert skipped == ["deploy", "notify"]
    run, skipped = flowfile.select(flow, event="push", branch="main")
    assert sorted(run) == ["build", "deploy", "lint", "notify", "test"] and skipped == []


@pytest.mark.parametrize(
    "when, kwargs, runs",
    [
        ("{event: tag, tag: 'v*'}", {"event": "tag", "tag": "v1.2"}, True),
        ("{event: tag, tag: 'v*'}", {"event": "tag", "tag": "nightly"}, False),
        ("{event: [push], branch: 'release/*'}", {"event": "push", "branch": "release/2.0"}, True),
        ("{event: [push], branch: 'release/*'}", {"event": "pull_request", "branch": "release/2.0"}, False),
        ("{paths: ['docs/**', '*.md']}", {"event": "push", "changed": ["README.md"]}, True),
        ("{paths: ['docs/*']}", {"event": "push", "changed": ["src/app.py"]}, False),
        # Unknown changes (a new branch, a truncated push) run the job rather than skip it.
        ("{paths: ['docs/*']}", {"event": "push", "changed": None}, True),
    ],
)
def test_when_matches_event_branch_tag_and_paths(when, kwargs, runs):
    flow = flowfile.parse(f"jobs:\n  j: {{image: x, run: ci/j, when: {when}}}\n")
    selected, skipped = flowfile.select(flow, **kwargs)
    assert (("j" in selected), ("j" in skipped)) == (runs, not runs)


def test_naming_jobs_selects_them_with_what_they_need():
    flow = flowfile.parse(DIAMOND)
    run, skipped = flowfile.select(flow, event="push", branch="main", names=iter(["test"]))
    assert sorted(run) == ["build", "test"] and skipped == []
    with pytest.raises(FlowFileError, match="there is no job 'release'; the flow has: build, deploy, lint, test"):
        flowfile.select(flow, event="push", names=["release"])
