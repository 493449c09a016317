"""The dispatcher handler with the in-memory broker and a real store (SQLite; the same tests run
on PostgreSQL in tests/integration/test_dispatcher_postgresql.py): rule options that need the
other runs of a repository (cancel_previous, concurrency), two results at once, and recovery
after a crash. Messages are pushed one at a time, as the bridge does for one run's ordering key."""

from __future__ import annotations

import threading

import pytest

from tasuki.shared import flowfile
from tasuki.shared.messages import (
    Commit,
    Event,
    JobFinished,
    JobOrder,
    JobStarted,
    JobUpdated,
    PlanOrder,
    Ref,
    Repository,
    RunCancel,
    RunPlanned,
    RunRequested,
    RunUpdated,
    RunWake,
)

EXECUTOR, DISPATCHER, RUNS = "tasuki.executor.default", "tasuki.dispatcher", "test.runs"
FLOW = flowfile.parse("jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n")


def requested(run_id: str, branch: str = "main", after: str = "c1", **options) -> RunRequested:
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id=f"d-{run_id}",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name=branch),
        after=after,
        commits=[Commit(id=after, message="change")],
    )
    return RunRequested(run_id=run_id, rule_id="rule", event=event, **options)


def run_through(functions, run_id: str) -> None:
    """What an executor would answer for a one-job flow that passes."""
    for message in (
        RunPlanned(run_id=run_id, jobs=dict(FLOW.jobs)),
        JobStarted(run_id=run_id, job="build"),
        JobFinished(run_id=run_id, job="build", status="success", exit_code=0),
    ):
        functions.push("dispatcher", message)


def test_a_run_beyond_the_limit_waits_queued_and_starts_when_the_one_before_finishes(functions):
    store = functions.rt.store
    # Given a rule allowing one run of the repository at a time, and a first run that got its place
    functions.push("dispatcher", requested("a", "main", concurrency=1))
    assert [type(m) for m in functions.take(EXECUTOR)] == [PlanOrder]
    # When a second run (another branch) is requested
    answer = functions.push("dispatcher", requested("b", "develop", concurrency=1))
    # Then it waits, queued, saying why, with no plan ordered
    assert answer["started"] is False and functions.take(EXECUTOR) == []
    waiting = store.get_run("b")
    assert (waiting.status, waiting.admitted) == ("queued", False)
    assert waiting.message == "waiting for a place: at most 1 unfinished run of acme/api at a time"

    # When the first run finishes
    run_through(functions, "a")
    assert store.get_run("a").status == "success"
    assert [type(m) for m in functions.take(EXECUTOR)] == [JobOrder]
    # Then the waiting run is woken, in its own order, and gets its place and its plan
    [wake] = functions.take(DISPATCHER)
    assert wake == RunWake(run_id="b")
    assert functions.push("dispatcher", wake)["started"] is True
    [order] = functions.take(EXECUTOR)
    assert (type(order), order.run_id, order.event.ref.name) == (PlanOrder, "b", "develop")
    assert (store.get_run("b").admitted, store.get_run("b").message) == (True, "")


def test_a_waiting_run_is_woken_again_after_a_crash_before_the_wake_up(functions):
    store = functions.rt.store
    functions.push("dispatcher", requested("a", concurrency=1))
    functions.push("dispatcher", requested("b", "develop", concurrency=1))
    run_through(functions, "a")
    functions.take(DISPATCHER)  # the wake-up is lost: say the dispatcher died before publishing it
    assert store.get_run("b").admitted is False
    # The bridge pushes the message that finished run a again (it was never acknowledged)
    functions.push("dispatcher", JobFinished(run_id="a", job="build", status="success"), attempt=2)
    assert functions.take(DISPATCHER) == [RunWake(run_id="b")]


def test_a_newer_push_to_the_branch_cancels_the_older_run_when_the_rule_says_so(functions):
    store = functions.rt.store
    functions.push("dispatcher", requested("old", after="c1", cancel_previous=True))
    functions.push("dispatcher", RunPlanned(run_id="old", jobs=dict(FLOW.jobs)))
    functions.push("dispatcher", JobStarted(run_id="old", job="build"))
    functions.take(RUNS)
    # When a newer push to main is requested, the older run is cancelled through its own order
    answer = functions.push("dispatcher", requested("new", after="c2", cancel_previous=True))
    assert answer["cancelled"] == ["old"]
    [cancel] = functions.take(DISPATCHER)
    assert cancel == RunCancel(run_id="old", reason="superseded by run new, a newer push to main")
    functions.push("dispatcher", cancel)
    old = store.get_run("old")
    assert (old.status, old.message) == ("cancelled", "superseded by run new, a newer push to main")
    assert [j.status for j in store.get_jobs("old")] == ["cancelled"]
    # and every state change was announced on tasuki.runs
    announced = [
        (m.run_id, getattr(m, "job", "run"), m.status)
        for m in functions.take(RUNS)
        if isinstance(m, RunUpdated | JobUpdated)
    ]
    assert announced == [("new", "run", "queued"), ("old", "build", "cancelled"), ("old", "run", "cancelled")]
    # The new run itself runs
    assert [(type(m), m.run_id) for m in functions.take(EXECUTOR)] == [
        (PlanOrder, "old"),
        (JobOrder, "old"),
        (PlanOrder, "new"),
    ]


@pytest.mark.parametrize("cancel_previous", [False, True])
def test_without_the_option_both_runs_of_the_branch_go_on(functions, cancel_previous):
    functions.push("dispatcher", requested("old", after="c1", cancel_previous=cancel_previous))
    functions.push("dispatcher", requested("new", after="c2"))  # the newer rule run does not ask
    assert functions.take(DISPATCHER) == []
    assert {r.id for r in functions.rt.store.unfinished_runs("acme/api")} == {"old", "new"}


def test_the_same_request_twice_makes_one_run(functions):
    functions.push("dispatcher", requested("r"))
    functions.push("dispatcher", requested("r"))
    assert [r.id for r in functions.rt.store.list_runs()] == ["r"]
    assert [m.status for m in functions.take(RUNS) if isinstance(m, RunUpdated)] == ["queued"]


PAIR = flowfile.parse(
    "jobs:\n  test: {image: tasuki/busybox, run: ci/test}\n  lint: {image: tasuki/busybox, run: ci/lint}\n"
)


def test_two_jobs_finishing_at_once_both_count_and_the_run_ends(functions):
    # Given a run of two jobs side by side, both running
    functions.push("dispatcher", requested("r"))
    functions.push("dispatcher", RunPlanned(run_id="r", jobs=dict(PAIR.jobs)))
    for job in ("test", "lint"):
        functions.push("dispatcher", JobStarted(run_id="r", job=job))
    # When both results are pushed at the same moment (two dispatcher instances, say)
    answers: list = []
    pushes = [
        threading.Thread(
            target=lambda job=job: answers.append(
                functions.push("dispatcher", JobFinished(run_id="r", job=job, status="success", exit_code=0))
            )
        )
        for job in ("test", "lint")
    ]
    for push in pushes:
        push.start()
    for push in pushes:
        push.join()
    # Then neither update is lost: both jobs passed and the run is over, announced once
    assert len(answers) == 2
    assert {j.name: j.status for j in functions.rt.store.get_jobs("r")} == {"test": "success", "lint": "success"}
    assert functions.rt.store.get_run("r").status == "success"
    finals = [m for m in functions.take(RUNS) if isinstance(m, RunUpdated) and m.status == "success"]
    assert len(finals) == 1
