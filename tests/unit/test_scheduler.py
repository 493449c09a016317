"""DAG scheduling, pure: fan-out, fan-in, failure propagation, cancellation, idempotence, and the
rule options' pure halves (which runs a newer push supersedes, which runs wait for a place)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasuki.shared import flowfile, scheduler
from tasuki.shared.messages import (
    Event,
    JobFinished,
    JobOrder,
    JobStarted,
    JobUpdated,
    PlanOrder,
    PullRequest,
    Ref,
    Repository,
    RunCancel,
    RunPlanned,
    RunRequested,
    RunUpdated,
    RunWake,
)
from tasuki.shared.scheduler import JobState, advance, run_status
from tasuki.shared.store import JobRecord, RunRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DIAMOND = flowfile.parse(
    "jobs:\n"
    "  build:  {image: x, run: ci/build}\n"
    "  test:   {image: x, run: ci/test, needs: [build]}\n"
    "  lint:   {image: x, run: ci/lint, needs: [build]}\n"
    "  deploy: {image: x, run: ci/deploy, needs: [test, lint]}\n"
)


def event(branch="main", after="c1", kind="push") -> Event:
    return Event(
        host="bitbucket",
        event="repo.push",
        kind=kind,
        delivery_id=f"d-{after}",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="tag" if kind == "tag" else "branch", name=branch),
        after=after,
    )


# --- advance: which pending jobs run, which can never run -----------------------------------------


def states(**statuses: str) -> dict[str, JobState]:
    needs = {n: tuple(j.needs) for n, j in DIAMOND.jobs.items()}
    return {name: JobState(status, needs[name]) for name, status in statuses.items()}


def test_the_first_job_is_ready_and_nothing_else():
    step = advance(states(build="pending", test="pending", lint="pending", deploy="pending"))
    assert (step.ready, step.skipped) == (["build"], [])


def test_fan_out_readies_every_dependant_at_once():
    step = advance(states(build="success", test="pending", lint="pending", deploy="pending"))
    assert (step.ready, step.skipped) == (["lint", "test"], [])


def test_fan_in_waits_for_every_need():
    assert advance(states(build="success", test="success", lint="running", deploy="pending")).ready == []
    assert advance(states(build="success", test="success", lint="success", deploy="pending")).ready == ["deploy"]


@pytest.mark.parametrize("bad", ["failure", "timeout", "error", "cancelled", "skipped"])
def test_a_need_that_did_not_succeed_skips_its_dependants_transitively(bad):
    step = advance(states(build=bad, test="pending", lint="pending", deploy="pending"))
    assert (step.ready, sorted(step.skipped)) == ([], ["deploy", "lint", "test"])
    step = advance(states(build="success", test=bad, lint="running", deploy="pending"))
    assert (step.ready, step.skipped) == ([], ["deploy"])


@pytest.mark.parametrize(
    "statuses, status",
    [
        (["pending", "pending"], "queued"),
        (["queued", "pending"], "queued"),
        (["skipped", "queued"], "queued"),
        (["running", "pending"], "running"),
        (["success", "queued"], "running"),
        (["success", "success"], "success"),
        (["success", "skipped"], "success"),
        (["failure", "skipped", "success"], "failure"),
        (["timeout", "error"], "failure"),
        (["error", "success"], "error"),
        (["cancelled", "success"], "cancelled"),
    ],
)
def test_the_run_status_follows_from_its_jobs(statuses, status):
    assert run_status(statuses) == status


# --- decide: a run, message by message --------------------------------------------------------------


class Run:
    """The dispatcher's state for one run, kept in memory; each message goes through `decide`."""

    def __init__(self, **options) -> None:
        self.run: RunRecord | None = None
        self.jobs: dict[str, JobRecord] = {}
        self.now = T0
        self.options = options

    def send(self, message) -> scheduler.Decision:
        self.now += timedelta(seconds=1)
        decision = scheduler.decide(self.run, self.jobs, message, self.now)
        if decision.run is not None:
            self.run = decision.run
        for job in decision.jobs:
            self.jobs[job.name] = job
        return decision

    def request(self) -> scheduler.Decision:
        return self.send(RunRequested(run_id="r1", rule_id="rule", event=event(), **self.options))

    def plan(self, flow=DIAMOND, **kwargs) -> scheduler.Decision:
        self.request()
        jobs, skipped = flowfile.select(flow, event="push", branch="main", **kwargs)
        return self.send(RunPlanned(run_id="r1", jobs=jobs, skipped=skipped))

    def start(self, job: str) -> scheduler.Decision:
        return self.send(JobStarted(run_id="r1", job=job, at=self.now))

    def finish(self, job: str, status="success", code=0) -> scheduler.Decision:
        return self.send(
            JobFinished(
                run_id="r1",
                job=job,
                status=status,
                exit_code=code,
                at=self.now,
                message="" if status == "success" else f"exited with code {code}",
            )
        )

    def status(self) -> dict[str, str]:
        return {name: job.status for name, job in sorted(self.jobs.items())}


def orders(decision: scheduler.Decision) -> list[str]:
    return sorted(m.job.name for m in decision.publish if isinstance(m, JobOrder))


def updates(decision: scheduler.Decision) -> list[tuple[str, str]]:
    return [
        (m.job, m.status) if isinstance(m, JobUpdated) else ("run", m.status)
        for m in decision.publish
        if isinstance(m, JobUpdated | RunUpdated)
    ]


def test_a_requested_run_is_queued_and_asks_for_a_place_before_its_plan_is_ordered():
    run = Run(concurrency=2, cancel_previous=True, jobs=["test"])
    decision = run.request()
    assert (decision.run.status, decision.admit, decision.supersede) == ("queued", True, True)
    assert updates(decision) == [("run", "queued")]
    assert not any(isinstance(m, PlanOrder) for m in decision.publish)  # only once it has a place
    assert scheduler.plan_order(run.run) == PlanOrder(run_id="r1", event=event(), jobs=["test"])
    assert (run.run.concurrency, run.run.cancel_previous) == (2, True)


def test_the_diamond_runs_build_then_test_and_lint_together_then_deploy():
    run = Run()
    assert orders(run.plan()) == ["build"]
    assert run.status() == {"build": "queued", "deploy": "pending", "lint": "pending", "test": "pending"}
    assert updates(run.start("build")) == [("build", "running"), ("run", "running")]
    assert orders(run.finish("build")) == ["lint", "test"]  # fan-out
    run.start("test"), run.start("lint")
    assert orders(run.finish("test")) == []  # fan-in: deploy waits for lint
    assert orders(run.finish("lint")) == ["deploy"]
    run.start("deploy")
    decision = run.finish("deploy")
    assert updates(decision) == [("deploy", "success"), ("run", "success")]
    assert (run.run.status, run.run.message, decision.release) == ("success", "4 jobs passed", True)


def test_a_failing_test_skips_deploy_and_the_run_fails_once_lint_is_done():
    run = Run()
    run.plan(), run.start("build"), run.finish("build"), run.start("test"), run.start("lint")
    decision = run.finish("test", "failure", 1)
    assert updates(decision) == [("test", "failure"), ("deploy", "skipped")]
    assert run.run.status == "running"  # lint still runs
    run.finish("lint")
    assert run.status() == {"build": "success", "deploy": "skipped", "lint": "success", "test": "failure"}
    assert run.run.status == "failure"
    assert run.run.message == "test: failure (exit code 1): exited with code 1; skipped: deploy"


def test_cancelling_stops_every_unfinished_job_and_ignores_what_comes_after():
    run = Run()
    run.plan(), run.start("build"), run.finish("build"), run.start("test")
    decision = run.send(RunCancel(run_id="r1", reason="cancelled from the command line"))
    assert run.status() == {"build": "success", "deploy": "cancelled", "lint": "cancelled", "test": "cancelled"}
    assert (run.run.status, run.run.message) == ("cancelled", "cancelled from the command line")
    assert ("run", "cancelled") in updates(decision) and decision.release
    # The executor reports the killed container later; nothing changes, nothing is ordered.
    late = run.finish("test", "cancelled", 137)
    assert (late.publish, late.jobs, late.run) == ([], [], None)
    assert run.status()["test"] == "cancelled"


def test_an_invalid_flow_file_fails_the_run_with_its_message():
    run = Run()
    run.request()
    message = ".tasuki.yml:3: job 'test': needs[0]: needs 'biuld', which is not a job in this file (jobs: build)"
    decision = run.send(RunPlanned(run_id="r1", error=message))
    assert (run.run.status, run.run.message, decision.release) == ("error", message, True)
    assert updates(decision) == [("run", "error")]


def test_jobs_skipped_by_when_are_recorded_and_a_run_with_nothing_to_do_succeeds():
    flow = flowfile.parse("jobs:\n  docs: {image: x, run: ci/docs, when: {branch: gh-pages}}\n")
    run = Run()
    decision = run.plan(flow)
    assert run.status() == {"docs": "skipped"} and updates(decision) == [("docs", "skipped"), ("run", "success")]
    assert run.run.message == "no job ran: every job's 'when' skips this event"


def test_every_message_applied_twice_decides_nothing_the_second_time():
    run = Run()
    run.plan()
    for message in (JobStarted(run_id="r1", job="build"), JobFinished(run_id="r1", job="build", status="success")):
        run.send(message)
        again = run.send(message)
        assert (again.publish, again.jobs, again.run) == ([], [], None)
    planned_again = run.send(RunPlanned(run_id="r1", jobs=dict(DIAMOND.jobs)))
    assert planned_again.publish == [] and run.status()["test"] == "queued"
    # A redelivered request for a planned run: nothing; for a finished run: wake the waiting.
    assert run.request() == scheduler.Decision()
    run.send(RunCancel(run_id="r1"))
    assert run.request() == scheduler.Decision(release=True)
    assert run.finish("test") == scheduler.Decision(release=True)


def test_a_redelivered_request_or_wake_of_an_unplanned_run_asks_for_its_place_again():
    run = Run(concurrency=1)
    run.request()
    assert run.request() == scheduler.Decision(supersede=True, admit=True)
    assert run.send(RunWake(run_id="r1")) == scheduler.Decision(admit=True)
    assert scheduler.decide(None, {}, RunWake(run_id="nope"), T0) == scheduler.Decision()


# --- rule options: superseded runs, waiting runs ---------------------------------------------------


def record(
    run_id,
    *,
    after="c1",
    branch="main",
    minute=0,
    rule="rule",
    cancel_previous=True,
    kind="push",
    status="queued",
    **extra,
) -> RunRecord:
    return RunRecord(
        id=run_id,
        rule_id=rule,
        event=event(branch, after, kind),
        created_at=T0 + timedelta(minutes=minute),
        cancel_previous=cancel_previous,
        status=status,
        **extra,
    )


def test_a_newer_push_to_the_branch_cancels_the_older_run_whichever_is_seen_first():
    old, new = record("old", minute=0), record("new", after="c2", minute=1)
    [cancel] = scheduler.superseded(new, [old, new])
    assert (cancel.run_id, cancel.reason) == ("old", "superseded by run new, a newer push to main")
    # The older run's request, handled after the newer run exists, cancels itself.
    assert scheduler.superseded(old, [old, new]) == [cancel]


@pytest.mark.parametrize(
    "other",
    [
        record("x", branch="develop", minute=-1),  # another branch
        record("x", rule="other-rule", minute=-1),  # another rule
        record("x", minute=-1, status="success"),  # over already
    ],
)
def test_only_unfinished_runs_of_the_same_rule_and_branch_are_superseded(other):
    assert scheduler.superseded(record("new", minute=1), [other]) == []


def test_nothing_is_superseded_unless_the_newer_run_asks_for_it_and_tags_never_are():
    assert scheduler.superseded(record("new", minute=1, cancel_previous=False), [record("old")]) == []
    tag_old, tag_new = record("t1", kind="tag", branch="v1"), record("t2", kind="tag", branch="v1", minute=1)
    assert scheduler.superseded(tag_new, [tag_old]) == []


def test_a_newer_change_to_a_pull_request_supersedes_the_older_run_of_that_pull_request():
    def pr_run(run_id, number, minute):
        ev = Event(
            host="github",
            event="pull_request.synchronize",
            kind="pull_request",
            delivery_id=run_id,
            repository=Repository(full_name="acme/api"),
            pull_request=PullRequest(number=number),
        )
        return RunRecord(
            id=run_id, rule_id="rule", event=ev, created_at=T0 + timedelta(minutes=minute), cancel_previous=True
        )

    [cancel] = scheduler.superseded(pr_run("b", 7, 1), [pr_run("a", 7, 0), pr_run("c", 8, 0)])
    assert (cancel.run_id, cancel.reason) == ("a", "superseded by run b, a newer change to pull request #7")


def test_only_runs_waiting_for_a_place_are_woken():
    runs = [
        record("going", admitted=True, concurrency=1),
        record("unlimited"),  # never waits for a place
        record("waiting-1", concurrency=1, minute=1),
        record("waiting-2", concurrency=1, minute=2),
    ]
    assert [w.run_id for w in scheduler.waiting(runs, besides="going")] == ["waiting-1", "waiting-2"]
    assert [w.run_id for w in scheduler.waiting(runs, besides="waiting-1")] == ["waiting-2"]
