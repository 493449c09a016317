"""The executor service with real RabbitMQ and real Docker: job orders in, containers run, logs
and results out; competing consumers; SIGTERM grace and requeue; crash recovery; bounded memory.

Executors run in a thread of the test (quick) or as a real `tasuki executor` process (signals,
memory). A test waits for messages on a queue bound to tasuki.runs, never for a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasuki.local.executor.service import Executor
from tasuki.shared import codec
from tasuki.shared.broker import Broker
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import MODELS, Event, JobFinished, JobOrder, PlanOrder, Ref, Repository
from tasuki.shared.registry import Repositories, load_registry
from tasuki.shared.settings import Settings
from tasuki.shared.store import RunRecord
from tasuki.shared.store.sqlite import SQLiteStore
from tasuki.shared.topics import RUNS, executor_queue
from tests.dockerjobs import IMAGE, leftovers, script
from tests.harness import TASUKI, remove_containers

WAIT = 180  # seconds a test waits for a message before it fails (never a timing assertion)
RELEASE = "while [ ! -e release ]; do sleep 0.1; done"  # a job that runs until the test says


class World:
    """A vhost with Tasuki's topology, a repository, a store and a queue that watches tasuki.runs."""

    def __init__(self, vhost: str, tmp_path: Path, make_repo, executor_id: str, keys=("job.*",)) -> None:
        self.url = vhost
        self.tmp = tmp_path
        self.executor_id = executor_id
        self.broker = Broker(vhost)
        self.broker.declare()
        with self.broker.channel() as ch:
            ch.queue_declare("watch")
            for key in keys:
                ch.queue_bind("watch", RUNS, routing_key=key)
        self.repo, self.commit = make_repo(
            {
                "ci/hello": script('echo "hello from $TASUKI_JOB on $TASUKI_BRANCH"; echo "token: $SECRET_ECHO"'),
                "ci/wait": script(f"echo waiting; {RELEASE}; echo released"),
                "ci/loud": script(
                    "yes 0123456789012345678901234567890123456789012345678901234567890123456789"
                    "012345678901234567890123456 | head -c 50000000; echo END"
                ),
                "ci/fail": script("echo failing; exit 4"),
            }
        )
        (tmp_path / "repos.yml").write_text(json.dumps({"repositories": {"acme/api": {"clone_url": str(self.repo)}}}))
        self.env = {
            "TASUKI_AMQP_URL": vhost,
            "TASUKI_DATA_DIR": str(tmp_path / "data"),
            "TASUKI_EXECUTOR_ID": executor_id,
            "TASUKI_REPOSITORIES_FILE": str(tmp_path / "repos.yml"),
            "TASUKI_CLONE_SCHEMES": "https,file",  # the test repositories are local folders
            "TASUKI_JOB_MEMORY": "256m",
            "TASUKI_SECRETS": "s3cr3t-t0ken",
        }
        self.store = SQLiteStore(self.settings().store_path)
        self.seen: list = []

    def settings(self, **values: str) -> Settings:
        return Settings.from_env({**self.env, **{f"TASUKI_{k.upper()}": str(v) for k, v in values.items()}})

    def order(self, run_id: str, run: str, *, name: str = "build", **job) -> JobOrder:
        event = Event(
            host="bitbucket",
            event="repo.push",
            kind="push",
            delivery_id=f"d-{run_id}",
            repository=Repository(full_name="acme/api", clone_url=str(self.repo)),
            ref=Ref(kind="branch", name="main"),
            after=self.commit,
        )
        order = JobOrder(
            run_id=run_id,
            event=event,
            job=Job(name=name, image=IMAGE, run=run, env={"SECRET_ECHO": "s3cr3t-t0ken"}, **job),
        )
        self.broker.publish(order)
        return order

    def wait_for(self, predicate: Callable[[object], bool], what: str) -> object:
        """The first message (seen before or arriving now) that matches."""
        deadline = time.monotonic() + WAIT
        with self.broker.channel() as ch:
            while True:
                for message in self.seen:
                    if predicate(message):
                        return message
                method, properties, body = ch.basic_get("watch", auto_ack=True)
                if method is None:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no {what} within {WAIT}s; seen {[type(m).__name__ for m in self.seen]}")
                    time.sleep(0.1)
                    continue
                self.seen.append(codec.decode(body, MODELS[properties.type]))

    def finished(self, run_id: str, job: str = "build") -> JobFinished:
        return self.wait_for(
            lambda m: m.TYPE == "job.finished" and (m.run_id, m.job) == (run_id, job), f"job.finished of {run_id}/{job}"
        )

    def started(self, run_id: str, job: str = "build", count: int = 1) -> None:
        self.wait_for(
            lambda m: sum(x.TYPE == "job.started" and (x.run_id, x.job) == (run_id, job) for x in self.seen) >= count,
            f"job.started of {run_id}/{job}",
        )

    def log(self, run_id: str, job: str = "build") -> bytes:
        return b"".join(data for _, data in self.store.read_log(run_id, job))

    def workspace(self, run_id: str, job: str = "build") -> Path:
        return self.tmp / "data" / "workspaces" / self.executor_id / f"{run_id}-{job}"

    def running(self, run_id: str, job: str = "build", workspace: Path | None = None, after: bytes = b"") -> Path:
        """Wait until the job's script runs in its container (it said "waiting", after `after`
        when given); its workspace."""
        deadline = time.monotonic() + WAIT
        while b"waiting" not in (self.log(run_id, job).partition(after)[2] if after else self.log(run_id, job)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{run_id}/{job} never ran; seen {[m.TYPE for m in self.seen]}")
            time.sleep(0.1)
        return workspace or self.workspace(run_id, job)

    def release(self, run_id: str, job: str = "build", workspace: Path | None = None) -> None:
        (self.running(run_id, job, workspace) / "release").touch()

    def queued(self) -> int:
        with self.broker.channel() as ch:
            return ch.queue_declare(executor_queue(), passive=True).method.message_count


@pytest.fixture
def world(vhost, tmp_path, make_repo, executor_id, docker_client) -> Iterator[World]:
    w = World(vhost, tmp_path, make_repo, executor_id)
    yield w
    w.store.close()


@pytest.fixture
def start_executor(world) -> Iterator[Callable[..., Executor]]:
    """Executors serving in threads of this test; stopped (and joined) afterwards."""
    running: list[tuple[Executor, threading.Thread]] = []

    def start(**values: str) -> Executor:
        settings = world.settings(**values)
        schemes = settings.allowed_clone_schemes
        registry = Repositories(load_registry(settings.repositories_file, schemes), None, schemes)
        executor = Executor(settings, store=SQLiteStore(settings.store_path), registry=registry)
        thread = threading.Thread(target=executor.serve, daemon=True)
        thread.start()
        running.append((executor, thread))
        return executor

    yield start
    for executor, _ in running:
        executor.stop.set()
        executor.abort.set()
    for _, thread in running:
        thread.join(60)


class Process:
    """`tasuki executor` as a real process, its output kept for the assertions' messages."""

    def __init__(self, env: dict[str, str]) -> None:
        self.output: list[str] = []
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
        self.proc = subprocess.Popen(
            [str(TASUKI), "executor"], env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)

    def wait_for_line(self, words: str) -> None:
        deadline = time.monotonic() + WAIT
        while not any(words in line for line in self.output):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the executor never said {words!r}:\n{''.join(self.output)}")
            time.sleep(0.1)

    def peak_rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(WAIT)


@pytest.fixture
def processes(world) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(**values: str) -> Process:
        env = {**world.env, **{f"TASUKI_{k.upper()}": str(v) for k, v in values.items()}}
        started.append(Process(env))
        started[-1].wait_for_line("taking work from")
        return started[-1]

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(30)


# --- a job, start to end ------------------------------------------------------------------------------


def test_a_job_order_runs_and_its_masked_log_reaches_the_store_and_the_events(world, start_executor):
    start_executor()
    world.order("run-1", "ci/hello")
    done = world.finished("run-1")
    assert (done.status, done.exit_code) == ("success", 0), world.log("run-1")
    log = world.log("run-1").decode()
    assert "hello from build on main" in log and "token: ********" in log and "s3cr3t" not in log
    events = [m for m in world.seen if m.TYPE == "job.log"]
    assert "".join(m.data for m in sorted(events, key=lambda m: m.seq)) == log
    assert [m.TYPE for m in world.seen if m.TYPE != "job.log"] == ["job.started", "job.finished"]
    assert codec.decode(world.store.get_result("run-1", "build"), JobFinished).status == "success"


def test_a_failing_job_and_a_missing_executable_are_reported_on_the_run(world, start_executor):
    start_executor()
    world.order("run-1", "ci/fail")
    world.order("run-3", "ci/nothere")
    failed, missing = world.finished("run-1"), world.finished("run-3")
    assert (failed.status, failed.exit_code, failed.message) == ("failure", 4, "exited with code 4")
    assert (missing.status, missing.reason) == ("error", "executable-missing")
    assert "ci/nothere is not in the repository" in missing.message


def test_a_checkout_failure_is_a_clear_job_error(world, start_executor):
    (world.tmp / "repos.yml").write_text(
        json.dumps({"repositories": {"acme/api": {"clone_url": str(world.tmp / "gone.git")}}})
    )
    start_executor()
    world.order("run-1", "ci/hello")
    done = world.finished("run-1")
    assert (done.status, done.reason) == ("error", "checkout-failed")
    assert "cannot fetch" in done.message and "gone.git" in done.message
    assert "[tasuki] cannot fetch" in world.log("run-1").decode()


def test_a_run_of_an_unregistered_repository_clones_nothing_whatever_its_event_names(world, start_executor):
    # Given unknown repositories accepted (TASUKI_UNKNOWN_REPOSITORIES=accept) and an event for
    # one that names a clone URL (the payload's: here a repository git could clone)
    with world.broker.channel() as ch:
        ch.queue_bind("watch", RUNS, routing_key="run.planned")
    start_executor()
    event = Event(
        host="github",
        event="push",
        kind="push",
        delivery_id="d-unknown",
        repository=Repository(full_name="acme/unknown", clone_url=str(world.repo)),
        ref=Ref(kind="branch", name="main"),
        after=world.commit,
    )
    world.broker.publish(PlanOrder(run_id="run-u", event=event))
    # Then the run's plan is an error saying how to register it, and nothing was cloned
    planned = world.wait_for(lambda m: m.TYPE == "run.planned" and m.run_id == "run-u", "run.planned of run-u")
    assert "acme/unknown is not registered" in planned.error and planned.jobs == {}
    cache = world.tmp / "data" / "cache"
    assert not cache.exists() or not any(cache.glob("*.git"))


def test_an_unreachable_docker_engine_is_a_clear_job_error(world, start_executor):
    start_executor(docker_host=f"unix://{world.tmp}/no-docker.sock")
    world.order("run-1", "ci/hello")
    done = world.finished("run-1")
    assert (done.status, done.reason) == ("error", "docker-unavailable")
    assert "cannot reach the Docker engine" in done.message


def test_a_redelivered_order_of_a_finished_job_does_not_run_it_again(world, start_executor):
    start_executor()
    order = world.order("run-1", "ci/hello")
    first = world.finished("run-1")
    log = world.log("run-1")
    # When the same order comes again (an ack lost on the way)
    world.broker.publish(order)
    world.wait_for(lambda m: sum(x.TYPE == "job.finished" for x in world.seen) == 2, "the second job.finished")
    # Then the recorded result is announced again, and the job did not run a second time
    finished = [m for m in world.seen if m.TYPE == "job.finished"]
    assert finished[1].status == first.status and finished[1].at == first.at
    assert sum(m.TYPE == "job.started" for m in world.seen) == 1
    assert world.log("run-1") == log


def test_an_order_of_a_run_cancelled_while_it_waited_starts_no_container(world, start_executor, docker_client):
    # Given a run that was cancelled while one of its job orders still waited in the queue
    order = world.order("run-c", "ci/hello")
    world.store.create_run(RunRecord(id="run-c", event=order.event, status="cancelled"))
    # When an executor takes the order
    start_executor()
    done = world.finished("run-c")
    # Then the job ends cancelled without starting anything
    assert (done.status, done.message) == ("cancelled", "the run was cancelled before this job started")
    assert not any(m.TYPE == "job.started" for m in world.seen)
    assert world.log("run-c") == b"" and leftovers(docker_client, world.executor_id) == []


def test_executors_compete_for_orders_each_within_its_concurrency(world, start_executor, docker_client):
    # Given two executors that each take one order at a time
    a = start_executor(executor_id=world.executor_id, executor_concurrency=1)
    b = start_executor(executor_id=world.executor_id + "-b", executor_concurrency=1)
    try:
        world.order("run-1", "ci/wait")
        world.order("run-2", "ci/wait")
        # Then both orders run at once, one on each executor
        world.started("run-1")
        world.started("run-2")
        by = {m.run_id: m.executor for m in world.seen if m.TYPE == "job.started"}
        assert sorted(by.values()) == sorted([a.id, b.id])
        for run_id, executor in by.items():
            world.release(run_id, workspace=world.tmp / "data" / "workspaces" / executor / f"{run_id}-build")
        assert world.finished("run-1").status == world.finished("run-2").status == "success"
    finally:
        remove_containers(world.executor_id + "-b")


def test_one_executor_runs_as_many_jobs_at_once_as_its_concurrency(world, start_executor):
    start_executor(executor_concurrency=2)
    world.order("run-1", "ci/wait")
    world.order("run-2", "ci/wait")
    world.order("run-3", "ci/hello")
    world.started("run-1")
    world.started("run-2")
    assert world.queued() == 1  # the third waits in the queue, not in this executor
    world.release("run-1")
    world.release("run-2")
    assert [world.finished(r).status for r in ("run-1", "run-2", "run-3")] == ["success"] * 3


# --- stopping and crashing ----------------------------------------------------------------------------


def test_sigterm_lets_a_running_job_finish_and_takes_no_more_work(world, processes, docker_client):
    executor = processes(stop_grace=600, executor_concurrency=1)
    world.order("run-1", "ci/wait")
    world.started("run-1")
    world.order("run-2", "ci/hello")  # waits: the executor is busy
    executor.proc.send_signal(signal.SIGTERM)
    executor.wait_for_line("stopping: 1 job(s) running")
    world.release("run-1")
    assert world.finished("run-1").status == "success"
    assert executor.stop() == 0
    assert world.queued() == 1  # run-2 is still there for another executor
    assert leftovers(docker_client, world.executor_id) == []


def test_sigterm_requeues_a_job_still_running_after_the_grace(world, processes, docker_client):
    executor = processes(stop_grace=1)
    world.order("run-1", "ci/wait")
    world.started("run-1")
    assert executor.stop(signal.SIGTERM) == 0
    assert world.queued() == 1  # the order is back, for another executor
    assert world.store.get_result("run-1", "build") is None
    assert not any(m.TYPE == "job.finished" for m in world.seen)
    assert leftovers(docker_client, world.executor_id) == []
    assert "goes back to the queue" in world.log("run-1").decode()


def test_an_executor_killed_mid_job_leaves_no_container_after_restart(world, processes, docker_client):
    # Given an executor killed (SIGKILL) while its job's container runs
    first = processes()
    world.order("run-1", "ci/wait")
    world.running("run-1")
    [orphan] = leftovers(docker_client, world.executor_id)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert [c.id for c in leftovers(docker_client, world.executor_id)] == [orphan.id]
    # When it starts again
    second = processes()
    world.started("run-1", count=2)  # the unacknowledged order came back and runs again
    # Then the orphan is gone, and the job runs to its end in a new container
    workspace = world.running("run-1", after=b"runs again")
    assert orphan.id not in [c.id for c in leftovers(docker_client, world.executor_id)]
    (workspace / "release").touch()
    done = world.finished("run-1")
    assert done.status == "success"
    assert "was interrupted (its executor stopped) and runs again" in world.log("run-1").decode()
    assert second.stop() == 0
    assert leftovers(docker_client, world.executor_id) == []


def test_a_job_printing_50mb_keeps_its_whole_log_and_the_executor_memory_bounded(
    vhost, tmp_path, make_repo, executor_id, docker_client
):
    world = World(vhost, tmp_path, make_repo, executor_id, keys=("job.started", "job.finished"))
    started: list[Process] = []
    try:
        executor = Process(world.env)
        started.append(executor)
        executor.wait_for_line("taking work from")
        world.order("warm-up", "ci/hello")  # the first job loads what every job needs
        world.finished("warm-up")
        before = executor.peak_rss_kb()
        world.order("run-1", "ci/loud")
        done = world.finished("run-1")
        after = executor.peak_rss_kb()
        assert done.status == "success"
        log = world.log("run-1")
        line = b"0123456789" * 9 + b"0123456\n"
        expected = (line * (50_000_000 // len(line) + 1))[:50_000_000] + b"END\n"
        assert len(log) == len(expected) and hashlib.sha256(log).digest() == hashlib.sha256(expected).digest()
        # The executor's peak memory grew by far less than the 50 MB that went through it
        grown_mb = (after - before) / 1024
        print(f"executor peak RSS: {before / 1024:.1f} MB before, {after / 1024:.1f} MB after the 50 MB job")
        assert grown_mb < 20, f"peak RSS grew {grown_mb:.1f} MB"
    finally:
        for process in started:
            process.stop()
        world.store.close()
