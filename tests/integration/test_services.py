"""Service containers (issue 14) on the real engine: a job reaches its service by name, sees its
output in the log, and nothing (container or network) is left after success, failure, cancel or
timeout, nor when a service fails to get ready."""

from __future__ import annotations

import pytest

from tasuki.shared.flowfile import Job, Service
from tests.dockerjobs import IMAGE, leftover_networks, leftovers, make_workspace, script
from tests.integration.test_jobs import run

# A TCP server answering "pong" to every connection; ready once it accepts one.
ECHO = Service(
    image=IMAGE,
    command=["nc", "-ll", "-p", "7000", "-e", "echo", "pong"],
    env={"GREETING": "hello"},
    ready={"exec": ["nc", "127.0.0.1", "7000"], "timeout": 30},
)
TALK = 'echo "got: $(nc echo 7000 </dev/null)"; touch /workspace/talked'


def job(body: str, **services_: Service) -> tuple[Job, dict]:
    return Job(name="test", image=IMAGE, run="ci/test", services=services_ or {"echo": ECHO}), {"ci/test": script(body)}


@pytest.mark.parametrize(
    "body, timeout, cancel, status",
    [
        (TALK, 120, False, "success"),
        (TALK + "; exit 3", 120, False, "failure"),
        (TALK + "; sleep 600", 120, True, "cancelled"),
        (TALK + "; sleep 600", 3, False, "timeout"),
    ],
)
def test_a_job_talks_to_its_service_by_name_and_nothing_is_left_after(
    tmp_path, executor_id, docker_client, body, timeout, cancel, status
):
    spec, files = job(body)
    ws = make_workspace(tmp_path / "ws", files)

    def cancelled() -> bool:  # once the job talked to its service
        return cancel and (ws / "talked").exists()

    outcome, log = run(ws, executor_id, job=spec, timeout=timeout, cancelled=cancelled)
    assert outcome.status == status, log
    assert "got: pong" in log
    assert "[tasuki] service echo: ready after" in log and "[tasuki] service echo: printed nothing" in log
    assert leftovers(docker_client, executor_id) == [] and leftover_networks(docker_client, executor_id) == []


def test_a_service_that_never_gets_ready_is_the_jobs_error_and_is_removed(tmp_path, executor_id, docker_client):
    never = Service(image=IMAGE, command=["sleep", "600"], ready={"exec": ["false"], "timeout": 2})
    spec, files = job("echo should not run", db=never)
    outcome, log = run(make_workspace(tmp_path / "ws", files), executor_id, job=spec)
    assert (outcome.status, outcome.reason) == ("error", "service-failed"), log
    assert "service db was not ready after 2s: false never exited 0" in outcome.message
    assert "should not run" not in log
    assert leftovers(docker_client, executor_id) == [] and leftover_networks(docker_client, executor_id) == []


def test_a_service_that_exits_before_it_is_ready_says_so_with_its_output(tmp_path, executor_id, docker_client):
    crash = Service(image=IMAGE, command=["sh", "-c", "echo cannot start; exit 4"], ready={"exec": ["true"]})
    spec, files = job("echo should not run", db=crash)
    outcome, log = run(make_workspace(tmp_path / "ws", files), executor_id, job=spec)
    assert (outcome.status, outcome.reason) == ("error", "service-failed"), log
    assert "service db exited with code 4 before it was ready" in outcome.message
    assert "[db] cannot start" in log
    assert leftovers(docker_client, executor_id) == [] and leftover_networks(docker_client, executor_id) == []
