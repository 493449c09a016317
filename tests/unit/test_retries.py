"""Retries (issue 14), pure: a failed attempt of a job with `retry:` is ordered again, the job
stays unfinished until its last try, every attempt is kept, and a pass after a retry is flaky."""

from __future__ import annotations

from datetime import timedelta

from tasuki.shared import flowfile, scheduler
from tasuki.shared.messages import JobFinished, JobOrder, JobUpdated, RunUpdated
from tests.unit.test_leases import Leased

FLOW = flowfile.parse(
    "jobs:\n"
    "  test:   {image: x, run: ci/test, retry: 2}\n"
    "  deploy: {image: x, run: ci/deploy, needs: [test], retry: {max: 1, on: [timeout]}}\n"
)


def finish(run: Leased, job: str, attempt: int, status: str = "failure", code: int | None = 1) -> scheduler.Decision:
    run.claim(job, attempt=attempt)
    return run.send(
        JobFinished(run_id="r1", job=job, attempt=attempt, status=status, exit_code=code, log_chunks=2, at=run.now)
    )


def published(decision: scheduler.Decision) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for m in decision.publish:
        if isinstance(m, JobOrder):
            out.append(("order", m.job.name, str(m.attempt)))
        elif isinstance(m, JobUpdated):
            out.append((m.job, m.status))
        elif isinstance(m, RunUpdated):
            out.append(("run", m.status))
    return out


def test_a_job_that_fails_twice_then_passes_with_retry_2_ends_success_flaky_with_three_attempts():
    run = Leased()
    run.plan(FLOW)
    first = finish(run, "test", 1)
    # Given the first attempt failed: the job is ordered again and stays queued (no failure told).
    assert published(first) == [("order", "test", "2"), ("test", "queued")]
    job = run.jobs["test"]
    assert (job.status, job.attempt, job.exit_code) == ("queued", 2, None)
    assert job.message == "retry 1 of 2: attempt 1 ended in failure (exit code 1)"
    assert run.run.status == "running"
    assert published(finish(run, "test", 2)) == [("order", "test", "3"), ("test", "queued")]
    last = finish(run, "test", 3, "success", 0)
    job = run.jobs["test"]
    assert (job.status, job.attempt, job.exit_code, job.flaky) == ("success", 3, 0, True)
    assert [(a.attempt, a.status, a.exit_code, a.log_chunks) for a in job.attempts] == [
        (1, "failure", 1, 2),
        (2, "failure", 1, 2),
        (3, "success", 0, 2),
    ]
    assert ("order", "deploy", "1") in published(last)


def test_the_last_try_failing_ends_the_job_and_the_run_in_failure():
    run = Leased()
    run.plan(FLOW)
    for attempt in (1, 2):
        finish(run, "test", attempt)
    decision = finish(run, "test", 3, code=7)
    job = run.jobs["test"]
    assert (job.status, job.exit_code, job.flaky, len(job.attempts)) == ("failure", 7, False, 3)
    assert ("test", "failure") in published(decision) and ("run", "failure") in published(decision)
    assert run.jobs["deploy"].status == "skipped"


def test_only_the_statuses_named_in_on_are_retried_and_a_first_pass_is_not_flaky():
    run = Leased()
    run.plan(FLOW)
    finish(run, "test", 1, "success", 0)
    assert run.jobs["test"].flaky is False
    decision = finish(run, "deploy", 1, "failure", 1)  # deploy retries timeouts only
    assert run.jobs["deploy"].status == "failure" and ("run", "failure") in published(decision)


def test_a_timeout_is_retried_when_on_names_it():
    run = Leased()
    run.plan(FLOW)
    finish(run, "test", 1, "success", 0)
    assert published(finish(run, "deploy", 1, "timeout", None)) == [("order", "deploy", "2"), ("deploy", "queued")]
    assert run.jobs["deploy"].message.startswith("retry 1 of 1: attempt 1 ended in timeout")
    finish(run, "deploy", 2, "success", 0)
    assert run.run.status == "success" and run.jobs["deploy"].flaky


def test_a_late_finish_of_a_retried_attempt_changes_nothing():
    run = Leased()
    run.plan(FLOW)
    finish(run, "test", 1)
    again = run.send(JobFinished(run_id="r1", job="test", attempt=1, status="failure", exit_code=1, at=run.now))
    assert published(again) == [] and run.jobs["test"].attempt == 2


def test_a_lost_executor_is_not_a_retry_and_retries_do_not_count_as_lost_executors():
    run = Leased()
    run.plan(FLOW)
    run.claim("test", attempt=1)
    run.now += timedelta(seconds=120)
    run.expire("test", attempt=1)
    job = run.jobs["test"]
    assert (job.status, job.attempt, job.tries) == ("queued", 2, 0)
    assert [a.status for a in job.attempts] == ["lost"]
    # Three real tries follow: the lost attempt did not use up a retry.
    finish(run, "test", 2)
    finish(run, "test", 3)
    finish(run, "test", 4, "success", 0)
    assert run.jobs["test"].status == "success" and run.jobs["test"].tries == 3
