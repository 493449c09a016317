"""The dispatcher handler with the in-memory broker and a real store (SQLite; the same tests run
on PostgreSQL in tests/integration/test_dispatcher_postgresql.py): rule options that need the
other runs of a repository (cancel_previous, concurrency), two results at once, and recovery
after a crash. Messages are pushed one at a time, as the bridge does for one run's ordering key."""

from __future__ import annotations

import io
import os
import threading
from datetime import timedelta

import pytest

from tasuki.functions.dispatcher import tick
from tasuki.shared import flowfile, objects
from tasuki.shared.messages import (
    Commit,
    Event,
    JobExpired,
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
    Tick,
    utcnow,
)
from tasuki.shared.registry import RepositoryConfig
from tests.conftest import pushed
from tests.unit.conftest import function_client

EXECUTOR, DISPATCHER, RUNS = "tasuki.executor.default", "tasuki.dispatcher", "test.runs"
FLOW = flowfile.parse("jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n")
CLONE_URL = "https://bitbucket.org/acme/api.git"


@pytest.fixture(autouse=True)
def registered(functions) -> None:
    """acme/api is in the registry: work is ordered only for a registered repository."""
    functions.rt.store.put_repository("acme/api", RepositoryConfig(clone_url=CLONE_URL))


def requested(
    run_id: str,
    branch: str = "main",
    after: str = "c1",
    *,
    repository: str = "acme/api",
    clone_url: str = "",
    **options,
) -> RunRequested:
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id=f"d-{run_id}",
        repository=Repository(full_name=repository, clone_url=clone_url),
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


# --- where orders clone from ----------------------------------------------------------------------


def test_orders_clone_from_the_registry_never_from_where_the_event_says(functions):
    functions.push("dispatcher", requested("r", clone_url="https://attacker.example/evil.git"))
    [plan] = functions.take(EXECUTOR)
    assert plan.clone_url == CLONE_URL
    functions.push("dispatcher", RunPlanned(run_id="r", jobs=dict(FLOW.jobs)))
    [order] = functions.take(EXECUTOR)
    assert (type(order), order.clone_url) == (JobOrder, CLONE_URL)


@pytest.mark.parametrize(
    ("repository", "why"),
    [
        ("acme/unknown", "acme/unknown is not registered: Tasuki clones only from the repository registry"),
        ("acme/local", "acme/local: not cloned: file clone URLs are not allowed here (TASUKI_CLONE_SCHEMES=https)"),
    ],
)
def test_a_run_of_a_repository_tasuki_may_not_clone_ends_in_error_and_orders_nothing(functions, repository, why):
    # Given a repository not registered (its event names a clone URL), or registered from a
    # folder while only https is allowed (written to the store before the setting changed, say)
    functions.rt.store.put_repository("acme/local", RepositoryConfig(clone_url="/srv/git/local.git"))
    # When a run of it is requested
    answer = functions.push("dispatcher", requested("u", repository=repository, clone_url="/srv/git/local.git"))
    # Then no plan is ordered: the run's plan is the error, decided in the run's order
    assert answer["started"] is False and functions.take(EXECUTOR) == []
    [planned] = functions.take(DISPATCHER)
    assert isinstance(planned, RunPlanned) and why in planned.error
    functions.push("dispatcher", planned)
    run = functions.rt.store.get_run("u")
    assert run.status == "error" and why in run.message
    assert functions.take(EXECUTOR) == []


def test_jobs_of_a_repository_removed_from_the_registry_since_it_was_planned_end_in_error(functions):
    # Given a run planned while its repository was registered (build, then test after it)
    chain = flowfile.parse(
        "jobs:\n  build: {image: x, run: ci/build}\n  test: {image: x, run: ci/test, needs: [build]}\n"
    )
    functions.push("dispatcher", requested("r"))
    functions.take(EXECUTOR)
    # When the repository is removed before its jobs are ordered
    functions.rt.store.delete_repository("acme/api")
    functions.push("dispatcher", RunPlanned(run_id="r", jobs=dict(chain.jobs)))
    # Then nothing is ordered: build ends in error saying why, test is skipped, the run ends error
    assert functions.take(EXECUTOR) == []
    jobs = {j.name: j for j in functions.rt.store.get_jobs("r")}
    assert (jobs["build"].status, jobs["build"].reason) == ("error", "checkout-failed")
    assert "acme/api is not registered" in jobs["build"].message and jobs["test"].status == "skipped"
    run = functions.rt.store.get_run("r")
    assert run.status == "error" and "acme/api is not registered" in run.message
    assert functions.rt.store.outbox(run_id="r") == []
    final = [m for m in functions.take(RUNS) if isinstance(m, RunUpdated)][-1]
    assert final.status == "error"


# --- the outbox and leases, through the handler ------------------------------------------------------


def test_a_redelivered_message_after_a_crash_between_commit_and_publish_orders_each_job_once(functions):
    broker, store = functions.broker, functions.rt.store
    diamond = flowfile.parse(
        "jobs:\n  build: {image: x, run: ci/build}\n  test: {image: x, run: ci/test, needs: [build]}\n"
        "  lint: {image: x, run: ci/lint, needs: [build]}\n"
    )
    functions.push("dispatcher", requested("r"))
    functions.push("dispatcher", RunPlanned(run_id="r", jobs=dict(diamond.jobs)))
    functions.push("dispatcher", JobStarted(run_id="r", job="build", executor="ex-a"))
    functions.take(EXECUTOR)
    finished = JobFinished(run_id="r", job="build", status="success", exit_code=0)
    # When RabbitMQ is away right after the dispatcher recorded what build's end decided
    broker.down()
    client = function_client("dispatcher")
    audience = functions.rt.settings.endpoint("dispatcher")
    failed = pushed(client, "dispatcher", finished, key=functions.rt.signing_key, audience=audience)
    assert failed.status_code == 503  # a nack: the bridge pushes it again
    assert {j.name: j.status for j in store.get_jobs("r")}["test"] == "queued"  # recorded, with its orders
    assert len(store.outbox(run_id="r")) >= 2
    # Then the redelivery publishes what the outbox holds, once, and decides nothing new
    broker.up()
    functions.push("dispatcher", finished, attempt=2)
    orders = broker.take(EXECUTOR)
    assert sorted((p.message().job.name, p.message().attempt, p.properties.message_id) for p in orders) == [
        ("lint", 1, "r:lint:1"),
        ("test", 1, "r:test:1"),
    ]
    assert store.outbox(run_id="r") == []
    # and a third push of the same message orders nothing more
    functions.push("dispatcher", finished, attempt=3)
    assert broker.take(EXECUTOR) == []


def test_a_claim_is_granted_to_one_executor_and_refused_to_another(functions):
    functions.push("dispatcher", requested("r"))
    functions.push("dispatcher", RunPlanned(run_id="r", jobs=dict(FLOW.jobs)))
    functions.broker.queue_declare("answers")
    functions.broker.queue_bind("answers", "tasuki.executors", routing_key="executor.*")
    functions.push("dispatcher", JobStarted(run_id="r", job="build", executor="ex-a"))
    functions.push("dispatcher", JobStarted(run_id="r", job="build", executor="ex-b"))
    answers = [(p.routing_key, p.message().granted) for p in functions.broker.take("answers")]
    assert answers == [("executor.ex-a", True), ("executor.ex-b", False)]
    [job] = functions.rt.store.get_jobs("r")
    assert (job.status, job.executor, job.attempt) == ("running", "ex-a", 1)


def test_the_tick_expires_run_out_leases_republishes_the_outbox_and_prunes_once_an_hour(functions):
    store = functions.rt.store
    # Given a job whose executor's lease ran out, and a run that finished long ago
    functions.push("dispatcher", requested("r"))
    functions.push("dispatcher", RunPlanned(run_id="r", jobs=dict(FLOW.jobs)))
    functions.push("dispatcher", JobStarted(run_id="r", job="build", executor="ex-a"))
    [job] = store.get_jobs("r")
    store.put_job(job.model_copy(update={"lease_expires": utcnow() - timedelta(seconds=1)}))
    functions.push("dispatcher", requested("old", "old-branch"))
    functions.push("dispatcher", RunCancel(run_id="old"))
    long_ago = store.get_run("old").model_copy(update={"finished_at": utcnow() - timedelta(days=365)})
    store.update_run(long_ago)
    functions.take(DISPATCHER)
    # (with artifacts kept long ago by the old run and by the running one)
    kept = objects.open_objects(functions.rt.settings)
    for run_id in ("old", "r"):
        kept.put(objects.artifact_key(run_id, "build", "dist/app"), io.BytesIO(b"app"))
        os.utime(kept.root / objects.artifact_key(run_id, "build", "dist/app"), (0, 0))
    # When the clock ticks
    answer = functions.push("dispatcher", Tick())
    # Then the run-out lease goes to the run's own line as job.expired, and the old run is pruned
    assert answer["expired"] == 1 and answer["pruned"]["runs"] == 1
    # with its artifacts, and only its
    assert answer["pruned"]["artifacts"] == 1
    assert [o.key for o in kept.list("runs/")] == [objects.artifact_key("r", "build", "dist/app")]
    assert functions.take(DISPATCHER) == [JobExpired(run_id="r", job="build", attempt=1)]
    assert store.get_run("old") is None and store.get_run("r") is not None
    # and a tick within the hour prunes nothing more (another dispatcher's neither)
    assert tick(functions.rt, utcnow())["pruned"] is None
    # When the expiry is pushed in the run's order, attempt 2 is ordered
    functions.push("dispatcher", JobExpired(run_id="r", job="build", attempt=1))
    [order] = [m for m in functions.take(EXECUTOR) if isinstance(m, JobOrder)][-1:]
    assert (order.attempt, store.get_jobs("r")[0].attempt) == (2, 2)
