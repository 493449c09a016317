"""Job leases, pure: the dispatcher's side (claims granted or refused, heartbeats, run-out leases
ordering the next attempt, late messages of a lost attempt ignored, a redelivered message
ordering no job twice) and the executor's side (`Lease`: grant, renewal, self-fencing)."""

from __future__ import annotations

from datetime import timedelta

from tasuki.local.executor.lease import LOST, Lease
from tasuki.shared import flowfile, scheduler
from tasuki.shared.messages import (
    JobExpired,
    JobFinished,
    JobHeartbeat,
    JobLog,
    JobOrder,
    JobStarted,
    LeaseAnswer,
    RunCancel,
)
from tests.unit.test_scheduler import Run

LEASE = 60.0


class Leased(Run):
    def send(self, message) -> scheduler.Decision:
        self.now += timedelta(seconds=1)
        decision = scheduler.decide(self.run, self.jobs, message, self.now, lease=LEASE)
        if decision.run is not None:
            self.run = decision.run
        for job in decision.jobs:
            self.jobs[job.name] = job
        return decision

    def claim(self, job: str, executor: str = "ex-a", attempt: int = 1) -> scheduler.Decision:
        return self.send(JobStarted(run_id="r1", job=job, executor=executor, attempt=attempt, at=self.now))

    def beat(self, job: str, executor: str = "ex-a", attempt: int = 1, **kw) -> scheduler.Decision:
        return self.send(JobHeartbeat(run_id="r1", job=job, executor=executor, attempt=attempt, sent=7.0, **kw))

    def expire(self, job: str, attempt: int = 1) -> scheduler.Decision:
        return self.send(JobExpired(run_id="r1", job=job, attempt=attempt))


def answers(decision: scheduler.Decision) -> list[tuple[str, bool, str]]:
    return [(m.executor, m.granted, m.reason) for m in decision.publish if isinstance(m, LeaseAnswer)]


def test_the_first_claim_of_a_queued_job_is_granted_and_the_job_runs_under_a_lease():
    run = Leased()
    run.plan()
    assert run.jobs["build"].attempt == 1
    decision = run.claim("build")
    assert answers(decision) == [("ex-a", True, "")]
    build = run.jobs["build"]
    assert (build.status, build.executor, build.lease_expires) == (
        "running",
        "ex-a",
        run.now + timedelta(seconds=LEASE),
    )
    # another executor's claim of the same attempt (a duplicate order) is refused
    assert answers(run.claim("build", "ex-b")) == [("ex-b", False, "held by executor ex-a")]
    # the same executor claiming again (its grant was lost) is granted, changing nothing
    again = run.claim("build")
    assert answers(again) == [("ex-a", True, "")] and again.jobs == []


def test_heartbeats_renew_the_lease_and_echo_the_executors_clock():
    run = Leased()
    run.plan(), run.claim("build")
    decision = run.beat("build")
    [answer] = [m for m in decision.publish if isinstance(m, LeaseAnswer)]
    assert (answer.granted, answer.sent) == (True, 7.0)
    assert run.jobs["build"].lease_expires == run.now + timedelta(seconds=LEASE)
    assert answers(run.beat("build", "ex-b")) == [("ex-b", False, "held by executor ex-a")]


def test_a_run_out_lease_orders_the_next_attempt_and_the_lost_attempt_changes_nothing():
    run = Leased()
    run.plan(), run.claim("build")
    # A tick that looked too early (or a lease renewed since): nothing
    assert run.expire("build") == scheduler.Decision()
    run.now += timedelta(seconds=LEASE)
    decision = run.expire("build")
    [order] = [m for m in decision.publish if isinstance(m, JobOrder)]
    assert (order.job.name, order.attempt, order.message_id) == ("build", 2, "r1:build:2")
    build = run.jobs["build"]
    assert (build.status, build.attempt, build.executor, build.lease_expires) == ("queued", 2, "", None)
    assert "ex-a stopped answering" in build.message
    # The lost attempt's late messages: its heartbeat and claim are refused, its finish ignored
    assert answers(run.beat("build")) == [("ex-a", False, "superseded: attempt 2 is the current one")]
    late = run.send(JobFinished(run_id="r1", job="build", attempt=1, status="success"))
    assert (late.publish, late.jobs, late.run) == ([], [], None)
    assert run.jobs["build"].status == "queued"
    # The same expiry seen twice orders nothing more
    assert run.expire("build") == scheduler.Decision()
    # Attempt 2 runs on another executor and ends the job
    assert answers(run.claim("build", "ex-b", attempt=2)) == [("ex-b", True, "")]
    run.send(JobFinished(run_id="r1", job="build", attempt=2, status="success", log_chunks=3))
    assert (run.jobs["build"].status, run.jobs["build"].log_chunks) == ("success", 3)


def test_a_job_whose_executor_is_lost_too_often_ends_in_error():
    run = Leased()
    run.plan(flowfile.parse("jobs:\n  build: {image: x, run: ci/build}\n"))
    for attempt in range(1, scheduler.MAX_ATTEMPTS + 1):
        run.claim("build", attempt=attempt)
        run.now += timedelta(seconds=LEASE + 1)
        run.expire("build", attempt=attempt)
    build = run.jobs["build"]
    assert (build.status, build.reason, build.attempt) == ("error", "executor-lost", scheduler.MAX_ATTEMPTS)
    assert run.run.status == "error"


def test_a_lease_given_back_orders_the_next_attempt_at_once():
    run = Leased()
    run.plan(), run.claim("build")
    decision = run.beat("build", release=True)
    assert [m.attempt for m in decision.publish if isinstance(m, JobOrder)] == [2]
    assert answers(decision) == [] and "ex-a stopped" in run.jobs["build"].message


def test_cancelling_a_run_refuses_the_leases_of_its_running_jobs():
    run = Leased()
    run.plan(), run.claim("build")
    decision = run.send(RunCancel(run_id="r1", reason="stop"))
    assert answers(decision) == [("ex-a", False, "cancelled")]
    assert run.jobs["build"].lease_expires is None
    # Claims and heartbeats that come after are refused
    assert answers(run.beat("build")) == [("ex-a", False, "cancelled")]
    assert answers(run.claim("test", "ex-b")) == [("ex-b", False, "cancelled")]


def test_a_claim_for_a_run_the_store_does_not_know_is_refused():
    decision = scheduler.decide(None, {}, JobStarted(run_id="r9", job="x", executor="ex-a"), Run().now)
    assert answers(decision) == [("ex-a", False, "unknown: the store has no such job")]


def test_a_redelivered_message_orders_no_job_twice():
    run = Leased()
    run.plan(), run.claim("build")
    finished = JobFinished(run_id="r1", job="build", status="success")
    first = run.send(finished)
    assert sorted((m.job.name, m.attempt) for m in first.publish if isinstance(m, JobOrder)) == [
        ("lint", 1),
        ("test", 1),
    ]
    again = run.send(finished)
    assert [m for m in again.publish if isinstance(m, JobOrder)] == [] and again.jobs == []
    # and every order's id is deterministic: the same order published twice carries one id
    assert {m.message_id for m in first.publish if isinstance(m, JobOrder)} == {"r1:lint:1", "r1:test:1"}


def test_a_log_chunk_names_its_attempt():
    chunk = JobLog(run_id="r1", job="build", attempt=2, seq=0, data="x")
    assert (chunk.attempt, chunk.MANDATORY) == (2, True)


# --- the executor's side ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lease(clock: Clock, sent: list) -> Lease:
    return Lease("r1", "build", 1, "ex-a", timeout=60, publish=sent.append, clock=clock)


def answer(granted: bool, reason: str = "", sent: float = 0.0) -> LeaseAnswer:
    return LeaseAnswer(run_id="r1", job="build", attempt=1, executor="ex-a", granted=granted, reason=reason, sent=sent)


def test_a_granted_lease_beats_every_quarter_and_is_renewed_from_when_the_beat_was_sent():
    clock, sent = Clock(), []
    held = lease(clock, sent)
    held.claim()
    assert [m.TYPE for m in sent] == ["job.started"] and not held.wait(0)
    held.answer(answer(True))
    assert held.wait(0) and held.granted and held.stop_reason() == ""
    held.beat()
    assert len(sent) == 1  # not due yet
    clock.now += 15
    held.beat()
    assert [m.TYPE for m in sent] == ["job.started", "job.heartbeat"] and sent[1].sent == 115
    clock.now += 40  # 55 s since the claim: past the fence unless renewed
    held.answer(answer(True, sent=115))
    assert held.stop_reason() == ""
    clock.now += 30  # 70 s since the last renewed beat was sent: it must stop
    assert held.stop_reason() == LOST


def test_a_refused_claim_or_heartbeat_stops_the_attempt():
    clock, sent = Clock(), []
    refused = lease(clock, sent)
    refused.claim()
    refused.answer(answer(False, "held by executor ex-b"))
    assert (refused.granted, refused.stop_reason()) == (False, "held by executor ex-b")
    cancelled = lease(clock, sent)
    cancelled.claim()
    cancelled.answer(answer(True))
    cancelled.answer(answer(False, "cancelled"))
    assert cancelled.stop_reason() == "cancelled"


def test_giving_a_lease_back_is_a_heartbeat_that_releases():
    clock, sent = Clock(), []
    held = lease(clock, sent)
    held.release()
    assert (sent[0].TYPE, sent[0].release) == ("job.heartbeat", True)
