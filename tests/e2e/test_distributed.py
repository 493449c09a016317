"""Tasuki on several hosts, as real processes on one: the functions and the bridge (`tasuki local
--no-executor`) on a PostgreSQL store, and two executors, each with its own data dir and no store setting,
that share the job queue and nothing else but RabbitMQ, the Docker engine and the order key.

Shown: a diamond runs across both executors (test and lint can only meet at their barrier if
each runs on its own executor); its logs, written by both, are on the run page and in the API;
a cancel stops the container on whichever executor holds the job; and when the executor holding
a running job is killed (SIGKILL), the other one runs it again once the lease ran out, no
container is left, and what the lost attempt says afterwards changes nothing.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tasuki.shared import sealing
from tasuki.shared.broker import Broker
from tasuki.shared.messages import JobFinished, JobHeartbeat
from tests.conftest import bitbucket_push, commit_to, queued_messages
from tests.e2e.test_flows import BUSYBOX, Barrier, containers_of, diamond_repo
from tests.harness import ExecutorProcess, LocalTasuki, remove_containers

SLOW = ("#!/bin/sh\necho started\nsleep 300\n", True)
NAP = ("#!/bin/sh\necho started\nsleep 8\necho slept\n", True)
ONE_JOB = f"jobs:\n  build: {{image: {BUSYBOX}, run: ci/build, timeout: 10m}}\n"


class Cluster:
    def __init__(
        self, tmp_path: Path, amqp_url: str, store_url: str, repositories: dict[str, Path], **settings: str
    ) -> None:
        self.tmp = tmp_path
        key = sealing.new_key()
        # The test repositories are folders: the functions register them, the executors clone them.
        common = {
            "TASUKI_AMQP_URL": amqp_url,
            "TASUKI_ORDER_KEY": key,
            "TASUKI_CLONE_SCHEMES": "https,file",
            **settings,
        }
        (tmp_path / "rules.yml").write_text(
            "rules:\n" + "".join(f"  - {{event: push, repository: {name}}}\n" for name in repositories)
        )
        (tmp_path / "repos.yml").write_text(
            "repositories:\n" + "".join(f"  {name}: {{clone_url: {path}}}\n" for name, path in repositories.items())
        )
        self.functions = LocalTasuki(
            {
                **common,
                "TASUKI_DATA_DIR": str(tmp_path / "functions"),
                "TASUKI_STORE_URL": store_url,
                "TASUKI_RULES_FILE": str(tmp_path / "rules.yml"),
                "TASUKI_REPOSITORIES_FILE": str(tmp_path / "repos.yml"),
            },
            args=("--no-executor",),
        )
        self.executor_env = [
            {
                **common,
                "TASUKI_DATA_DIR": str(tmp_path / f"executor-{name}"),
                "TASUKI_EXECUTOR_ID": f"test-{name}-{uuid.uuid4().hex[:8]}",
                "TASUKI_EXECUTOR_CONCURRENCY": "1",
            }
            for name in ("a", "b")
        ]
        self.executors: list[ExecutorProcess] = []

    def __enter__(self) -> Cluster:
        self.functions.__enter__()
        for env in self.executor_env:
            self.executors.append(ExecutorProcess(env))
        for executor in self.executors:
            executor.wait_for_line("taking work from")
        return self

    def __exit__(self, *exc) -> None:
        for executor in self.executors:
            if executor.proc.poll() is None:
                executor.stop()
        self.functions.__exit__(*exc)
        for env in self.executor_env:
            remove_containers(env["TASUKI_EXECUTOR_ID"])

    def push(self, repository: str, branch: str, commit: str, **kwargs) -> None:
        answer = self.functions.post_webhook(*bitbucket_push(repository, branch, commit, **kwargs))
        assert answer.status_code == 202, answer.text

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.functions.settings.web_port}"

    def by_id(self, executor_id: str) -> ExecutorProcess:
        return next(e for e in self.executors if e.id == executor_id)

    def no_store_on_executor_hosts(self) -> None:
        for env in self.executor_env:
            assert "TASUKI_STORE_URL" not in env
            assert not list(Path(env["TASUKI_DATA_DIR"]).glob("tasuki.db*")), "an executor opened a store"
        assert self.functions.store.list_runs(), "the functions' runs are in PostgreSQL"
        assert not list((self.tmp / "functions").glob("tasuki.db*")), "the functions opened SQLite"


@pytest.fixture
def cleanup_barrier() -> Iterator[list[Barrier]]:
    barriers: list[Barrier] = []
    yield barriers
    for barrier in barriers:
        barrier.close()


def test_a_diamond_runs_across_two_executors_with_their_logs_on_the_page_and_a_cancel_reaches_either(
    tmp_path, vhost, postgres_url, docker_client, make_repo, cleanup_barrier
):
    barrier = Barrier(parties=2)
    cleanup_barrier.append(barrier)
    repo, commit = diamond_repo(make_repo, barrier)
    with Cluster(tmp_path, vhost, postgres_url, {"acme/wide": repo}) as cluster:
        tasuki = cluster.functions
        cluster.push("acme/wide", "main", commit)
        run = tasuki.wait_for_run(timeout=240)
        jobs = {j.name: j for j in tasuki.store.get_jobs(run.id)}
        assert run.status == "success", (run.message, {n: (j.status, j.message) for n, j in jobs.items()}, tasuki.log())
        # Both executors took work: test and lint met at the barrier, each on its own executor
        assert "met the others: together" in tasuki.log_of(run.id, "test")
        assert {j.executor for j in jobs.values()} == {e.id for e in cluster.executors}
        assert jobs["test"].executor != jobs["lint"].executor
        # Every job's log, written on either executor, is in the API and on the run page
        for name in jobs:
            log = requests.get(f"{cluster.web}/api/runs/{run.id}/jobs/{name}/log", timeout=10).json()
            text = "".join(chunk["text"] for chunk in log["chunks"])
            assert log["done"] and (f"{name} ran at {commit}" in text or "met the others" in text), (name, log)
            assert text == tasuki.log_of(run.id, name)
        page = requests.get(f"{cluster.web}/runs/{run.id}", timeout=10)
        assert page.status_code == 200 and all(name in page.text for name in jobs)

        # When a run whose job is running is cancelled, the executor holding it stops its container
        slow = commit_to(repo, {"ci/build": SLOW}, branch="main", message="Slow build")
        cluster.push("acme/wide", "main", slow, before=commit, message="Slow build")
        running = tasuki.wait_for_run(lambda r: r.commit == slow and r.status == "running")
        tasuki.wait_until(lambda: containers_of(docker_client, running.id), "the slow build's container runs")
        holder = tasuki.wait_until(
            lambda: next((j.executor for j in tasuki.store.get_jobs(running.id) if j.executor), ""), "a holder"
        )
        assert tasuki.cli("runs", "cancel", running.id).returncode == 0
        tasuki.wait_until(lambda: not containers_of(docker_client, running.id), f"{holder}'s container is gone")
        assert tasuki.store.get_run(running.id).status == "cancelled"
        cluster.no_store_on_executor_hosts()


def test_a_killed_executors_job_runs_again_on_the_other_once_its_lease_ran_out(
    tmp_path, vhost, postgres_url, docker_client, make_repo
):
    repo, commit = make_repo({".tasuki.yml": ONE_JOB, "ci/build": NAP}, branch="main")
    with Cluster(tmp_path, vhost, postgres_url, {"acme/nap": repo}, TASUKI_JOB_LEASE_TIMEOUT="4") as cluster:
        tasuki = cluster.functions
        # Given a job running on one of the executors
        cluster.push("acme/nap", "main", commit)
        run = tasuki.wait_for_run(lambda r: r.status == "running")
        tasuki.wait_until(lambda: "started" in tasuki.log_of(run.id, "build", timeout=0), "the job runs")
        [first] = tasuki.store.get_jobs(run.id)
        assert first.attempt == 1
        lost = cluster.by_id(first.executor)
        # When that executor is killed, leaving its container behind
        assert lost.stop(signal.SIGKILL) == -signal.SIGKILL
        # Then the other executor runs the job again (attempt 2) and the run ends
        done = tasuki.wait_for_run(lambda r: r.id == run.id and r.status in ("success", "failure", "error"))
        [again] = tasuki.store.get_jobs(run.id)
        assert (done.status, again.status, again.attempt) == ("success", "success", 2), (done.message, again)
        assert again.executor != lost.id and "attempt 2" in tasuki.log_of(run.id, "build")
        # and no container is left: the lost attempt's was removed before attempt 2 started
        tasuki.wait_until(lambda: not containers_of(docker_client, run.id), "no container of the run is left")
        # What the lost attempt says late changes nothing
        broker = Broker(vhost)
        broker.publish(JobFinished(run_id=run.id, job="build", attempt=1, status="failure", exit_code=137))
        broker.publish(JobHeartbeat(run_id=run.id, job="build", attempt=1, executor=lost.id, sent=1.0))
        broker.close()
        tasuki.wait_until(lambda: queued_messages(vhost)["tasuki.dispatcher"] == 0, "the late messages were taken")
        assert tasuki.store.get_run(run.id).status == "success"
        [after] = tasuki.store.get_jobs(run.id)
        assert (after.status, after.attempt, after.exit_code) == ("success", 2, 0)
        cluster.no_store_on_executor_hosts()
