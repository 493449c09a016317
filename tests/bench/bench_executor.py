"""A trivial job through the executor versus a bare `docker run` of the same image and command.

The executor side is `Executor.run(order)` as the service calls it for a job order: job.started,
the container (create, attach, start, wait, inspect, remove) with its limits and labels, the
log streamed to the store and as job.log events, the result recorded, job.finished published
(real RabbitMQ, in a vhost of its own). The checkout (a workspace cloned from the mirror cache)
is timed apart and left out of the executor figure. The baseline is
`docker run --rm -v <workspace>:/workspace -w /workspace --entrypoint /workspace/ci/hello IMAGE`
on the same workspace. Runs alternate, so both sides share the machine's noise; medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tasuki.local.executor.service import Executor
from tasuki.shared.broker import Broker
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import Event, JobOrder, Ref, Repository
from tasuki.shared.registry import Registry, Repositories, RepositoryConfig
from tasuki.shared.settings import Settings
from tasuki.shared.store.sqlite import SQLiteStore

IMAGE = "tasuki/busybox:latest"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
WARMUP = 3
HELLO = '#!/bin/sh\necho "hello from $TASUKI_JOB"\n'


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _repository(root: Path) -> tuple[Path, str, Path]:
    work, bare = root / "work", root / "repo.git"
    (work / "ci").mkdir(parents=True)
    (work / "ci" / "hello").write_text(HELLO)
    (work / "ci" / "hello").chmod(0o755)
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "bench")
    _git(root, "clone", "-q", "--bare", str(work), str(bare))
    return bare, _git(work, "rev-parse", "HEAD").strip(), work


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _docker_run(workspace: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-v",
            f"{workspace}:/workspace",
            "-w",
            "/workspace",
            "-e",
            "TASUKI_JOB=build",
            "--entrypoint",
            "/workspace/ci/hello",
            IMAGE,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    took = time.perf_counter() - started
    assert done.stdout == "hello from build\n", done.stdout
    return took


def main() -> dict:
    vhost = f"tasuki-bench-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        with tempfile.TemporaryDirectory(prefix="tasuki-bench-") as tmp:
            return _measure(Path(tmp), f"amqp://guest:guest@localhost:5672/{vhost}")
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _measure(tmp: Path, url: str) -> dict:
    repo, commit, work = _repository(tmp)
    settings = Settings(
        amqp_url=url, data_dir=tmp / "data", executor_id=f"bench-{uuid.uuid4().hex[:8]}", clone_schemes="file"
    )
    Broker(url).declare()
    store = SQLiteStore(settings.store_path)
    registry = Registry(repositories={"bench/hello": RepositoryConfig(clone_url=str(repo))})
    executor = Executor(settings, store=store, registry=Repositories(registry, None, settings.allowed_clone_schemes))
    event = Event(
        host="bench",
        event="repo.push",
        kind="push",
        delivery_id="bench",
        repository=Repository(full_name="bench/hello"),
        ref=Ref(kind="branch", name="main"),
        after=commit,
    )
    job = Job(name="build", image=IMAGE, run="ci/hello")

    tasuki, checkout, container, bare = [], [], [], []
    for n in range(WARMUP + ROUNDS):
        started = time.perf_counter()
        outcome = executor.run(JobOrder(run_id=f"bench-{n}", event=event, job=job))
        total = time.perf_counter() - started
        assert outcome is not None and outcome.ok, outcome
        assert b"hello from build" in b"".join(d for _, d in store.read_log(f"bench-{n}", "build"))
        docker = _docker_run(work)
        if n >= WARMUP:
            tasuki.append(total - outcome.checkout_seconds)
            checkout.append(outcome.checkout_seconds)
            container.append(outcome.seconds)
            bare.append(docker)
    executor.events.close()
    executor.broker.close()
    store.close()

    figures = {
        "rounds": ROUNDS,
        "executor_median_s": round(statistics.median(tasuki), 4),
        "docker_run_median_s": round(statistics.median(bare), 4),
        "ratio": round(statistics.median(tasuki) / statistics.median(bare), 3),
        "checkout_median_s": round(statistics.median(checkout), 4),
        "executor_container_part_median_s": round(statistics.median(container), 4),
    }
    print(
        f"trivial job, {ROUNDS} rounds (medians): executor {figures['executor_median_s'] * 1000:.0f} ms "
        f"(of which the container {figures['executor_container_part_median_s'] * 1000:.0f} ms), "
        f"bare docker run {figures['docker_run_median_s'] * 1000:.0f} ms, ratio {figures['ratio']:.2f} "
        f"(aim <= 1.15); checkout apart: {figures['checkout_median_s'] * 1000:.0f} ms"
    )
    return figures


if __name__ == "__main__":
    main()
