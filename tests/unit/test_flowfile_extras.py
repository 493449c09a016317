"""Issue 14 in the flow file: matrix expansion, retries and services, each refused clearly when
wrong (file:line: job 'x': ...), and bounded."""

from __future__ import annotations

import pytest

from tasuki.shared import flowfile
from tasuki.shared.errors import FlowFileError

MATRIX = """\
jobs:
  test:
    image: "tasuki/busybox:${{ matrix.tag }}"
    run: ci/test
    args: ["--db=${{ matrix.db }}"]
    env: {WHERE: "db-${{ matrix.db }}"}
    matrix:
      tag: [one, two]
      db: [pg, sqlite]
      exclude: [{tag: one, db: sqlite}]
  report: {image: busybox, run: ci/report, needs: [test]}
"""


def test_a_two_by_two_matrix_with_one_exclusion_makes_three_jobs_with_their_values():
    flow = flowfile.parse(MATRIX)
    assert list(flow.jobs) == ["test (tag=one, db=pg)", "test (tag=two, db=pg)", "test (tag=two, db=sqlite)", "report"]
    job = flow.jobs["test (tag=two, db=sqlite)"]
    assert job.name == "test (tag=two, db=sqlite)" and job.matrix is None
    assert job.image == "tasuki/busybox:two" and job.args == ["--db=sqlite"]
    assert job.env == {"WHERE": "db-sqlite", "MATRIX_TAG": "two", "MATRIX_DB": "sqlite"}
    # needs: [test] waits for every combination
    assert flow.jobs["report"].needs == ["test (tag=one, db=pg)", "test (tag=two, db=pg)", "test (tag=two, db=sqlite)"]


def test_include_adds_combinations_once_and_a_rule_naming_the_job_selects_all_of_them():
    flow = flowfile.parse(
        "jobs:\n  t:\n    image: x\n    run: a\n    matrix:\n      py: ['3.11']\n"
        "      include: [{py: '3.13'}, {py: '3.11'}]\n  other: {image: x, run: b}\n"
    )
    assert list(flow.jobs) == ["t (py=3.11)", "t (py=3.13)", "other"]
    run, skipped = flowfile.select(flow, event="push", names=["t"])
    assert sorted(run) == ["t (py=3.11)", "t (py=3.13)"] and skipped == []
    assert flowfile.group_of("t (py=3.13)") == "t" and flowfile.group_of("other") == "other"


def test_the_matrix_of_a_job_the_plan_selects_travels_in_messages():
    from tasuki.shared import codec
    from tasuki.shared.messages import RunPlanned

    flow = flowfile.parse(MATRIX)
    planned = RunPlanned(run_id="r", jobs=flow.jobs)
    assert codec.decode(codec.encode(planned), RunPlanned).jobs == flow.jobs


@pytest.mark.parametrize(
    "job, expected",
    [
        (
            "image: 'x:${{ matrix.py }}'\n    run: a",
            ":3: job 't': image: uses ${{ matrix.py }} but the job has no matrix",
        ),
        (
            "image: 'x:${{ matrix.py }}'\n    run: a\n    matrix: {pz: [1]}",
            ":3: job 't': image: uses ${{ matrix.py }} but the matrix has no axis 'py'",
        ),
        (
            "image: x\n    run: a\n    matrix:\n      py: [1, 2]\n      exclude: [{py: 1}, {py: 2}]",
            ":5: job 't': matrix: the matrix has no combination left",
        ),
        (
            "image: x\n    run: a\n    matrix: {a: [1,2,3,4,5,6,7,8], b: [1,2,3,4,5,6,7,8], c: [1, 2]}",
            ":5: job 't': matrix: 128 combinations; a matrix makes at most 64",
        ),
        ("image: x\n    run: a\n    matrix: {py: ['a b']}", ":5: job 't': matrix: matrix values are short words"),
        ("image: x\n    run: a\n    matrix: {py: ['../..']}", "matrix values are short words"),
        ("image: x\n    run: a\n    matrix: {'a-b': [1]}", "matrix axes are named like python"),
        ("image: x\n    run: a\n    matrix: {py: [1], PY: [2]}", "differ only in case"),
        ("image: x\n    run: a\n    matrix: {py: [1], exclude: [{os: a}]}", "exclude names os, which is not an axis"),
        ("image: x\n    run: a\n    matrix: {py: [1], include: [{os: a}]}", "an include entry names every axis"),
        ("image: 'x:${{ matrix.v }}'\n    run: a\n    matrix: {v: [_a]}", "matrix values are short words"),
        ("image: x\n    run: a\n    matrix: {}", "an empty matrix"),
    ],
)
def test_a_wrong_matrix_is_refused_with_file_line_and_job(job, expected):
    with pytest.raises(FlowFileError) as caught:
        flowfile.parse(f"jobs:\n  t:\n    {job}\n")
    assert expected in str(caught.value) and str(caught.value).startswith(".tasuki.yml:")


def test_matrices_are_bounded_over_the_whole_flow():
    jobs = "".join(
        f"  j{i}:\n    image: x\n    run: a\n    matrix: {{v: [{', '.join(map(str, range(60)))}]}}\n" for i in range(5)
    )
    with pytest.raises(FlowFileError, match=f"make 300 jobs; a flow has at most {flowfile.MAX_JOBS}"):
        flowfile.parse("jobs:\n" + jobs)


@pytest.mark.parametrize(
    "text, max_, on",
    [
        ("retry: 2", 2, ["failure", "timeout"]),
        ("retry: {max: 3, on: [failure]}", 3, ["failure"]),
        ("retry: {max: 1, on: error}", 1, ["error"]),
        ("timeout: 5m", 0, ["failure", "timeout"]),
    ],
)
def test_retry_reads_a_count_or_a_mapping(text, max_, on):
    job = flowfile.parse(f"jobs:\n  t:\n    image: x\n    run: a\n    {text}\n").jobs["t"]
    assert (job.retry.max, job.retry.on) == (max_, on)


def test_retry_decides_whether_an_attempt_runs_again():
    retry = flowfile.Retry(max=2)
    assert retry.again("failure", 1) and retry.again("timeout", 2)
    assert not retry.again("failure", 3)  # three attempts ran: that was the last one
    assert not retry.again("cancelled", 1) and not retry.again("error", 1) and not retry.again("success", 1)
    assert not flowfile.Retry().again("failure", 1)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("retry: 11", "retry.max: Input should be less than or equal to 10"),
        ("retry: -1", "retry.max: Input should be greater than or equal to 0"),
        ("retry: true", "retry: retry is a number of retries"),
        ("retry: {max: 1, on: [cancelled]}", "retry.on[0]:"),
        ("retry: {max: 1, every: 2}", "retry.every: unknown key 'every'; expected one of: max, on"),
    ],
)
def test_a_wrong_retry_is_refused(text, expected):
    with pytest.raises(FlowFileError, match=r"^\.tasuki\.yml:5: job 't': ") as caught:
        flowfile.parse(f"jobs:\n  t:\n    image: x\n    run: a\n    {text}\n")
    assert expected in str(caught.value)


def test_services_read_with_image_env_command_and_readiness():
    job = flowfile.parse(
        "jobs:\n  t:\n    image: x\n    run: a\n    services:\n"
        "      db: {image: 'postgres:16', env: {PORT: 5432}, command: [postgres, -c, 1], "
        "ready: {exec: [pg_isready], timeout: 2m}}\n      cache: {image: redis}\n"
    ).jobs["t"]
    db = job.services["db"]
    assert (db.image, db.env, db.command) == ("postgres:16", {"PORT": "5432"}, ["postgres", "-c", "1"])
    assert db.ready is not None and (db.ready.exec, db.ready.timeout) == (["pg_isready"], 120)
    assert job.services["cache"].ready is None


@pytest.mark.parametrize(
    "service, expected",
    [
        ("DB: {image: y}", "services: service names are host names"),
        ("db: {env: {A: b}}", "services.db.image: 'image' is required"),
        ("db: {image: 'y; rm -rf /'}", "services.db.image: expected an image name"),
        ("db: {image: y, command: 'a b'}", "services.db.command: command is a list of arguments"),
        ("db: {image: y, ready: {exec: 'pg_isready -h x'}}", "services.db.ready.exec: ready.exec is a list"),
        ("db: {image: y, ready: {exec: [a], timeout: 1h}}", "services.db.ready.timeout: a service gets at most 10m"),
        ("db: {image: y, ready: {exec: [a], every: 1}}", "services.db.ready.every: unknown key 'every'"),
        ("db: {image: y, script: [a]}", "services.db.script: unknown key 'script'"),
        ("db: {image: y, env: {'A-B': c}}", "services.db.env: env names must be like MODE"),
    ],
)
def test_a_wrong_service_is_refused(service, expected):
    with pytest.raises(FlowFileError, match=r"^\.tasuki\.yml:\d+: job 't': ") as caught:
        flowfile.parse(f"jobs:\n  t:\n    image: x\n    run: a\n    services:\n      {service}\n")
    assert expected in str(caught.value)


def test_services_are_bounded_and_need_a_network():
    many = "".join(f"      s{i}: {{image: y}}\n" for i in range(flowfile.MAX_SERVICES + 1))
    with pytest.raises(FlowFileError, match=":5: job 't': services: 6 services; a job has at most 5"):
        flowfile.parse(f"jobs:\n  t:\n    image: x\n    run: a\n    services:\n{many}")
    with pytest.raises(FlowFileError, match=":5: job 't': network: a job with services needs a network"):
        flowfile.parse(
            "jobs:\n  t:\n    image: x\n    run: a\n    network: none\n    services:\n      db: {image: y}\n"
        )
