"""Service containers through the executor process (issue 14): stopping the executor (SIGTERM
past its grace) or killing it (SIGKILL, then starting it again) leaves no service container and
no network behind. Fixtures are those of test_executor (real RabbitMQ, Docker, the functions)."""

from __future__ import annotations

import signal

from tasuki.shared.flowfile import Service
from tests.dockerjobs import IMAGE, leftover_networks, leftovers
from tests.integration.test_executor import functions, processes, world  # noqa: F401  (fixtures)

SERVICES = {"echo": Service(image=IMAGE, command=["nc", "-ll", "-p", "7000", "-e", "echo", "pong"])}


def test_sigterm_past_the_grace_removes_the_jobs_services_and_network(world, processes, docker_client):  # noqa: F811
    executor = processes(stop_grace=1)
    world.order("run-1", "ci/wait", services=SERVICES)
    world.running("run-1")
    assert len(leftovers(docker_client, world.executor_id)) == 2  # the job and its service
    assert len(leftover_networks(docker_client, world.executor_id)) == 1
    assert executor.stop(signal.SIGTERM) == 0
    world.until(lambda: world.job("run-1").attempt == 2, "attempt 2 is ordered")
    assert leftovers(docker_client, world.executor_id) == []
    assert leftover_networks(docker_client, world.executor_id) == []


def test_an_executor_killed_mid_job_removes_its_services_and_network_when_it_starts_again(
    world,  # noqa: F811
    processes,  # noqa: F811
    docker_client,
):
    world.lease(600)  # attempt 2 is not ordered while the test looks
    first = processes()
    world.order("run-1", "ci/wait", services=SERVICES)
    world.running("run-1")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert len(leftovers(docker_client, world.executor_id)) == 2
    assert len(leftover_networks(docker_client, world.executor_id)) == 1
    second = processes()  # it cleans up before it takes work
    assert leftovers(docker_client, world.executor_id) == []
    assert leftover_networks(docker_client, world.executor_id) == []
    assert second.stop() == 0
