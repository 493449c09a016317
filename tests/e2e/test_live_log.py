"""End to end, through every real process (`tasuki local`), real RabbitMQ and real Docker: a job's
first line is readable through the log API while the job still runs (the executor sends a line
that follows a quiet spell at once, not at the end of the job or of a one-second chunk).

The job prints one line and then waits on a long sleep: the line can only be seen while the
job runs, and the test asserts that it was, through the API's own `done` flag and the job's
status. No duration is asserted; the waits are generous, and the run is cancelled at the end."""

from __future__ import annotations

import requests

from tests.e2e.test_flows import BUSYBOX, push, start
from tests.harness import LocalTasuki

FLOW = f"jobs:\n  build: {{image: {BUSYBOX}, run: ci/build, timeout: 10m}}\n"
TALKS_THEN_WAITS = ('#!/bin/sh\necho "first line of $TASUKI_JOB"\nsleep 300\necho "last line"\n', True)


def log_of(tasuki: LocalTasuki, run_id: str) -> dict:
    answer = requests.get(f"{tasuki.settings.web_url}/api/runs/{run_id}/jobs/build/log", timeout=10)
    answer.raise_for_status()
    return answer.json()


def test_a_jobs_first_line_is_readable_through_the_api_while_the_job_runs(tmp_path, vhost, make_repo):
    repo, commit = make_repo({".tasuki.yml": FLOW, "ci/build": TALKS_THEN_WAITS}, branch="main")
    rules = "rules:\n  - {event: push, repository: acme/talks}\n"
    with start(tmp_path, vhost, rules, {"acme/talks": repo}) as tasuki:
        # Given a run whose job printed its first line and then went quiet
        push(tasuki, "acme/talks", "main", commit)
        run = tasuki.wait_for_run(lambda r: r.status == "running")
        # When the log is read through the API
        log = tasuki.wait_until(
            lambda: (body := log_of(tasuki, run.id)) and body["chunks"] and body,
            "the job's first line is readable through the log API",
            timeout=120,
        )
        # Then the line is there, the log is not done, and the job still runs
        text = "".join(chunk["text"] for chunk in log["chunks"])
        assert text == "first line of build\n"
        assert log["done"] is False
        [job] = tasuki.store.get_jobs(run.id)
        assert job.status == "running"
        assert tasuki.store.get_run(run.id).status == "running"
        cancelled = tasuki.cli("runs", "cancel", run.id)
        assert cancelled.returncode == 0, cancelled.stderr
        tasuki.wait_for_run(lambda r: r.id == run.id and r.status == "cancelled")
