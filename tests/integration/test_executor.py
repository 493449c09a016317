"""The executor service with real RabbitMQ and real Docker, and the real dispatcher and logs
functions behind it (pushed to by `tests.pump`, which also ticks): job orders in, claims granted,
containers run, logs stored through functions/logs, results out; competing consumers; SIGTERM
grace and giving a job back; crash recovery through the lease; self-fencing; bounded memory.

Executors run in a thread of the test (quick) or as a real `tasuki executor` process (signals,
memory), each with its own data dir and no store setting. A test waits for messages on a queue
bound to tasuki.runs, never for a time.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker.errors
import pytest

from tasuki.functions.dispatcher import addressed
from tasuki.local.executor.service import Executor
from tasuki.shared import codec, sealing
from tasuki.shared.broker import Broker
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import JOB_FINAL, MODELS, Event, JobFinished, JobOrder, Ref, Repository, RunCancel
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.settings import Settings
from tasuki.shared.store import JobRecord, RunRecord
from tasuki.shared.topics import RUNS, executor_queue
from tests.conftest import IN_CI, queued_messages, rabbitmqctl
from tests.dockerjobs import IMAGE, leftovers, script
from tests.harness import ExecutorProcess as Process
from tests.harness import log_of, remove_containers
from tests.pump import Functions, Pump

WAIT = 180  # seconds a test waits for a message before it fails (never a timing assertion)
RELEASE = "while [ ! -e release ]; do sleep 0.1; done"  # a job that runs until the test says


class World:
    """A vhost with Tasuki's topology and the functions behind it, a repository registered as
    acme/api, and a queue that watches tasuki.runs. Executors get their own data dir, the order
    key, and no store."""

    def __init__(self, functions, tmp_path: Path, make_repo, executor_id: str, keys=("job.*",)) -> None:
        self.functions = functions
        self.rt = functions.rt
        self.store = self.rt.store
        self.url = self.rt.settings.amqp_url
        self.tmp = tmp_path
        self.executor_id = executor_id
        self.broker = Broker(self.url)
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
                # 1 GiB of output, as fast as a shell pipe makes it
                "ci/flood": script("dd if=/dev/zero bs=1M count=1024 2>/dev/null | tr '\\0' 'x'; echo END"),
            }
        )
        self.store.put_repository("acme/api", RepositoryConfig(clone_url=str(self.repo)))
        self.env = {
            "TASUKI_AMQP_URL": self.url,
            "TASUKI_DATA_DIR": str(tmp_path / "executor"),
            "TASUKI_EXECUTOR_ID": executor_id,
            "TASUKI_ORDER_KEY": self.rt.order_key,
            "TASUKI_CLONE_SCHEMES": "https,file",  # the test repositories are local folders
            "TASUKI_JOB_MEMORY": "256m",
            "TASUKI_SECRETS": "s3cr3t-t0ken",
        }
        self.seen: list = []

    def lease(self, seconds: float) -> None:
        """A shorter lease timeout, for the dispatcher and every executor started after."""
        self.rt.settings = self.rt.settings.model_copy(update={"job_lease_timeout": seconds})
        self.env["TASUKI_JOB_LEASE_TIMEOUT"] = str(seconds)

    def log_limit(self, size: str) -> None:
        """TASUKI_JOB_LOG_LIMIT for the logs function and every executor started after."""
        self.rt.settings = self.rt.settings.model_copy(update={"job_log_limit": size})
        self.env["TASUKI_JOB_LOG_LIMIT"] = size

    def settings(self, **values: str) -> Settings:
        return Settings.from_env({**self.env, **{f"TASUKI_{k.upper()}": str(v) for k, v in values.items()}})

    def order(self, run_id: str, run: str, *, name: str = "build", repository: str = "acme/api", **job) -> JobOrder:
        """A planned run whose job is queued (attempt 1), and its order, as the dispatcher makes them
        (cloned from where the registry says `repository` is)."""
        event = Event(
            host="bitbucket",
            event="repo.push",
            kind="push",
            delivery_id=f"d-{run_id}",
            repository=Repository(full_name=repository),
            ref=Ref(kind="branch", name="main"),
            after=self.commit,
        )
        spec = Job(name=name, image=IMAGE, run=run, env={"SECRET_ECHO": "s3cr3t-t0ken"}, **job)
        self.store.create_run(RunRecord(id=run_id, event=event, status="running", admitted=True))
        self.store.put_job(JobRecord(run_id=run_id, name=name, status="queued", spec=spec, attempt=1))
        order = addressed(self.rt, JobOrder(run_id=run_id, event=event, job=spec))
        self.broker.publish(order, message_id=order.message_id)
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

    def job(self, run_id: str, name: str = "build") -> JobRecord:
        return next(j for j in self.store.get_jobs(run_id) if j.name == name)

    def until(self, condition: Callable[[], object], what: str) -> object:
        deadline = time.monotonic() + WAIT
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {WAIT}s; seen {[m.TYPE for m in self.seen]}")
            time.sleep(0.1)
        return value

    def log(self, run_id: str, job: str = "build") -> bytes:
        """The job's stored log; once its job.finished was seen, all of it (the dispatcher
        recorded how many chunks there are, and functions/logs stored them)."""
        if any(m.TYPE == "job.finished" and (m.run_id, m.job) == (run_id, job) for m in self.seen):
            self.until(lambda: self.job(run_id, job).status in JOB_FINAL, f"the dispatcher recorded {run_id}/{job}")
        return log_of(self.store, run_id, job, timeout=WAIT).encode()

    def workspace(self, run_id: str, job: str = "build", attempt: int = 1, executor: str = "") -> Path:
        return self.tmp / "executor" / "workspaces" / (executor or self.executor_id) / f"{run_id}-{job}-{attempt}"

    def running(self, run_id: str, job: str = "build", workspace: Path | None = None, after: bytes = b"") -> Path:
        """Wait until the job's script runs in its container (it said "waiting", after `after`
        when given); its workspace."""
        self.until(
            lambda: b"waiting" in (self.log(run_id, job).partition(after)[2] if after else self.log(run_id, job)),
            f"{run_id}/{job} runs",
        )
        return workspace or self.workspace(run_id, job, self.job(run_id, job).attempt)

    def release(self, run_id: str, job: str = "build", workspace: Path | None = None) -> None:
        (self.running(run_id, job, workspace) / "release").touch()

    def queued(self) -> int:
        with self.broker.channel() as ch:
            return ch.queue_declare(executor_queue(), passive=True).method.message_count


@pytest.fixture
def functions(vhost, tmp_path, tasuki_env) -> Iterator[Functions]:
    """The functions of this process on real RabbitMQ (a fresh vhost) and SQLite in tmp_path."""
    from tasuki.shared.runtime import runtime

    tasuki_env(
        amqp_url=vhost,
        data_dir=str(tmp_path / "data"),
        push_key="a-push-key-for-tests-that-is-long-enough",
        clone_schemes="https,file",  # the test repositories are local folders
    )
    rt = runtime()
    rt.broker.declare()
    yield Functions(rt)
    rt.broker.close()
    rt.store.close()


@pytest.fixture
def world(functions, tmp_path, make_repo, executor_id, docker_client) -> Iterator[World]:
    w = World(functions, tmp_path, make_repo, executor_id)
    with Pump(functions) as pump:
        w.pump = pump
        yield w
    w.broker.close()


@pytest.fixture
def start_executor(world) -> Iterator[Callable[..., Executor]]:
    """Executors serving in threads of this test; stopped (and joined) afterwards."""
    running: list[tuple[Executor, threading.Thread]] = []

    def start(**values: str) -> Executor:
        executor = Executor(world.settings(**values))
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


def test_a_job_order_is_claimed_run_and_its_masked_log_stored_through_the_logs_function(world, start_executor):
    executor = start_executor()
    world.order("run-1", "ci/hello")
    done = world.finished("run-1")
    assert (done.status, done.exit_code, done.attempt) == ("success", 0, 1)
    world.until(lambda: world.job("run-1").status == "success", "the dispatcher recorded the job")
    log = world.log("run-1").decode()
    assert "hello from build on main" in log and "token: ***" in log and "s3cr3t" not in log
    events = [m for m in world.seen if m.TYPE == "job.log"]
    assert "".join(m.data for m in sorted(events, key=lambda m: m.seq)) == log
    assert done.log_chunks == len(events)
    # The claim came first, then the finish; the dispatcher recorded both
    [claim] = [m for m in world.seen if m.TYPE == "job.started"]
    assert (claim.executor, claim.attempt) == (executor.id, 1)
    assert world.store.get_run("run-1").status == "success"
    workspace = world.tmp / "executor" / "workspaces" / executor.id / "run-1-build-1"
    world.until(lambda: not workspace.exists(), "the workspace is removed after the job")


def test_a_failing_job_and_a_missing_executable_are_reported_on_the_run(world, start_executor):
    start_executor()
    world.order("run-1", "ci/fail")
    world.order("run-3", "ci/nothere")
    failed, missing = world.finished("run-1"), world.finished("run-3")
    assert (failed.status, failed.exit_code, failed.message) == ("failure", 4, "exited with code 4")
    assert (missing.status, missing.reason) == ("error", "executable-missing")
    assert "ci/nothere is not in the repository" in missing.message


def test_a_checkout_failure_is_a_clear_job_error(world, start_executor):
    world.store.put_repository("acme/gone", RepositoryConfig(clone_url=str(world.tmp / "gone.git")))
    start_executor()
    world.order("run-1", "ci/hello", repository="acme/gone")
    done = world.finished("run-1")
    assert (done.status, done.reason) == ("error", "checkout-failed")
    assert "cannot fetch" in done.message and "gone.git" in done.message
    assert "[tasuki] cannot fetch" in world.log("run-1").decode()


def test_an_order_whose_clone_url_the_executor_does_not_allow_clones_nothing(world, start_executor):
    # Given an executor that may clone over https only, and an order from a folder (say, the
    # functions allow more than this executor host, or the order did not come from them)
    start_executor(clone_schemes="https")
    world.order("run-1", "ci/hello")
    # Then git never runs: the job is a checkout failure saying why, and nothing was cloned
    done = world.finished("run-1")
    assert (done.status, done.reason) == ("error", "checkout-failed")
    assert "not cloned: file clone URLs are not allowed here (TASUKI_CLONE_SCHEMES=https)" in done.message
    cache = world.tmp / "executor" / "cache"
    assert not cache.exists() or not any(cache.glob("*.git"))


def test_an_unreachable_docker_engine_is_a_clear_job_error(world, start_executor):
    start_executor(docker_host=f"unix://{world.tmp}/no-docker.sock")
    world.order("run-1", "ci/hello")
    done = world.finished("run-1")
    assert (done.status, done.reason) == ("error", "docker-unavailable")
    assert "cannot reach the Docker engine" in done.message


def test_an_order_sealed_with_another_key_is_a_clear_job_error(world, start_executor):
    # Given a registered repository with clone credentials, and an executor with another order key
    world.store.put_repository("acme/api", RepositoryConfig(clone_url=str(world.repo), token="cl0ne-credential"))
    start_executor(order_key=sealing.new_key())
    order = world.order("run-1", "ci/hello")
    # The order carries the credentials only sealed
    assert order.credentials is not None and "cl0ne" not in repr(order) and "cl0ne" not in order.model_dump_json()
    done = world.finished("run-1")
    assert (done.status, done.reason) == ("error", "order-key")
    assert "another TASUKI_ORDER_KEY" in done.message


def test_a_redelivered_order_of_a_finished_job_is_refused_and_does_not_run_again(world, start_executor):
    start_executor()
    order = world.order("run-1", "ci/hello")
    world.finished("run-1")
    log = world.log("run-1")
    # When the same order comes again (say the dispatcher published it twice)
    world.broker.publish(order, message_id=order.message_id)
    # Then it is taken and acknowledged (its claim refused, or seen running here still) ...
    world.until(lambda: queued_messages(world.url)[executor_queue()] == 0, "the order is taken and acknowledged")
    world.until(lambda: not world.pump.busy(), "the dispatcher took every message")
    # ... and nothing runs a second time, nothing is announced again
    assert sum(m.TYPE == "job.started" for m in world.seen) in (1, 2)
    assert sum(m.TYPE == "job.finished" for m in world.seen) == 1
    assert world.log("run-1") == log and log.count(b"hello from build") == 1


def test_an_order_of_a_run_cancelled_while_it_waited_starts_no_container(world, start_executor, docker_client):
    # Given a run that was cancelled while one of its job orders still waited in the queue
    world.order("run-c", "ci/hello")
    world.functions.push("dispatcher", RunCancel(run_id="run-c", reason="cancelled by a person"))
    # When an executor takes the order
    start_executor()
    world.started("run-c")
    world.until(lambda: world.queued() == 0, "the order is taken")
    # Then its claim is refused: the job stays cancelled, nothing ran
    world.until(lambda: sum(t == "job.started" for _, t in world.pump.pushed) == 1, "the claim answered")
    assert world.job("run-c").status == "cancelled"
    assert not any(m.TYPE == "job.finished" for m in world.seen)
    assert world.log("run-c") == b"" and leftovers(docker_client, world.executor_id) == []


def test_cancelling_a_running_job_stops_its_container_at_once(world, start_executor, docker_client):
    start_executor()
    world.order("run-1", "ci/wait")
    world.running("run-1")
    assert len(leftovers(docker_client, world.executor_id)) == 1
    # When the run is cancelled, the dispatcher refuses the lease to the executor holding it
    world.functions.push("dispatcher", RunCancel(run_id="run-1", reason="cancelled by a person"))
    # Then the container is stopped and removed, and the job stays cancelled
    world.until(lambda: not leftovers(docker_client, world.executor_id), "the container is gone")
    assert world.job("run-1").status == "cancelled"
    assert not any(m.TYPE == "job.finished" for m in world.seen)


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
            world.release(run_id, workspace=world.workspace(run_id, executor=executor))
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


def test_a_job_order_is_acknowledged_once_claimed_and_held_by_heartbeats(world, start_executor):
    world.lease(4)
    start_executor()
    world.order("run-1", "ci/wait")
    world.running("run-1")
    # The order is acknowledged (not held unacked until the job ends): the lease holds the job
    world.until(lambda: world.queued() == 0, "the order is acknowledged")
    # and heartbeats renew it while the job runs, for longer than the lease timeout
    first = world.job("run-1").lease_expires
    world.until(
        lambda: sum(t == "job.heartbeat" for _, t in world.pump.pushed) >= 6, "heartbeats over more than a lease"
    )
    assert world.job("run-1").lease_expires > first and world.job("run-1").attempt == 1
    world.release("run-1")
    assert world.finished("run-1").status == "success"


def test_an_executor_that_cannot_renew_its_lease_kills_its_own_container(world, start_executor, docker_client):
    world.lease(4)
    start_executor()
    world.order("run-1", "ci/wait")
    world.running("run-1")
    # When the dispatcher stops answering (a network cut between the executor and it)
    world.pump.paused.set()
    # Then the executor kills its container before the lease runs out, and announces nothing
    world.until(lambda: not leftovers(docker_client, world.executor_id), "the container is gone")
    assert not any(m.TYPE == "job.finished" for m in world.seen)
    # When the dispatcher is back, the run-out lease orders the job again (attempt 2), which runs
    world.pump.paused.clear()
    world.until(lambda: world.job("run-1").attempt == 2, "attempt 2 is ordered")
    world.release("run-1")
    done = world.finished("run-1")
    assert (done.status, done.attempt) == ("success", 2)
    assert "attempt 2" in world.log("run-1").decode()


def test_containers_of_earlier_attempts_are_removed_before_an_attempt_starts(world, start_executor, docker_client):
    # Given a container of attempt 1 still running on this engine (its executor was cut off)
    stale = docker_client.containers.run(
        IMAGE,
        ["sleep", "300"],
        detach=True,
        labels={"tasuki.run": "run-1", "tasuki.job": "build", "tasuki.attempt": "1", "tasuki.executor": "gone"},
    )
    try:
        # When attempt 2 of the job is ordered here
        world.order("run-1", "ci/hello")
        world.store.put_job(world.job("run-1").model_copy(update={"attempt": 2}))
        order = addressed(
            world.rt,
            JobOrder(run_id="run-1", event=world.store.get_run("run-1").event, job=world.job("run-1").spec, attempt=2),
        )
        world.broker.publish(order, message_id=order.message_id)
        start_executor()
        # Then attempt 1's order is refused, the stale container is removed, attempt 2 runs
        done = world.finished("run-1")
        assert (done.status, done.attempt) == ("success", 2)
        with pytest.raises(docker.errors.NotFound):  # gone from the engine
            stale.reload()
    finally:
        remove_containers("gone")


@pytest.mark.alone
def test_a_job_that_outlives_rabbitmqs_consumer_timeout_runs_exactly_once(world, start_executor):
    """RabbitMQ closes a channel whose delivery stays unacknowledged past `consumer_timeout` and
    hands the order to another consumer: a job holding its order would run twice. A claimed job
    holds a lease instead. RabbitMQ 3.10's consumer_timeout is broker-global, so this test
    changes it only where nothing else shares the broker."""
    if not IN_CI and os.environ.get("CHANGE_RABBITMQ_CONSUMER_TIMEOUT_IN_TESTS") != "1":
        pytest.skip(
            "changes the shared RabbitMQ's consumer_timeout (broker-global): runs in CI, or with "
            "CHANGE_RABBITMQ_CONSUMER_TIMEOUT_IN_TESTS=1"
        )
    before = {
        name: rabbitmqctl("eval", f"application:get_env(rabbit, {name}).").stdout.strip()
        for name in ("consumer_timeout", "channel_tick_interval")
    }
    # RabbitMQ checks a channel's consumer_timeout on the channel's tick (once a minute unless
    # channel_tick_interval says otherwise); both are read when a channel opens.
    faster = (
        "application:set_env(rabbit, consumer_timeout, 3000), application:set_env(rabbit, channel_tick_interval, 1000)."
    )
    assert rabbitmqctl("eval", faster).returncode == 0
    try:
        # Given a consumer_timeout of 3 s checked every second, and an executor (its channel
        # opened under them)
        start_executor()
        world.order("run-1", "ci/wait")
        world.running("run-1")
        # When the job runs well past the timeout and RabbitMQ's checks of it
        time.sleep(10)
        world.release("run-1")
        # Then it ran once: one claim, attempt 1, and no order is left or came back
        done = world.finished("run-1")
        assert (done.status, done.attempt) == ("success", 1)
        assert sum(m.TYPE == "job.started" for m in world.seen) == 1
        assert world.queued() == 0 and world.log("run-1").count(b"waiting") == 1
    finally:
        restore = ", ".join(
            f"application:set_env(rabbit, {name}, {value[4:-1]})"
            if value.startswith("{ok,")
            else f"application:unset_env(rabbit, {name})"
            for name, value in before.items()
        )
        assert rabbitmqctl("eval", restore + ".").returncode == 0, before


# --- stopping and crashing ----------------------------------------------------------------------------


def test_sigterm_lets_a_running_job_finish_and_takes_no_more_work(world, processes, docker_client):
    executor = processes(stop_grace=600, executor_concurrency=1)
    world.order("run-1", "ci/wait")
    world.started("run-1")
    world.order("run-2", "ci/hello")  # waits: the executor is busy
    world.running("run-1")
    executor.proc.send_signal(signal.SIGTERM)
    executor.wait_for_line("stopping: 1 job(s) running")
    world.release("run-1")
    assert world.finished("run-1").status == "success"
    assert executor.stop() == 0
    assert world.queued() == 1  # run-2 is still there for another executor
    assert leftovers(docker_client, world.executor_id) == []


def test_sigterm_gives_back_a_job_still_running_after_the_grace(world, processes, docker_client):
    executor = processes(stop_grace=1)
    world.order("run-1", "ci/wait")
    world.running("run-1")
    assert executor.stop(signal.SIGTERM) == 0
    # The lease was given back: the dispatcher ordered attempt 2 at once, for another executor
    world.until(lambda: world.job("run-1").attempt == 2, "attempt 2 is ordered")
    world.until(lambda: world.queued() == 1, "attempt 2's order waits")
    assert not any(m.TYPE == "job.finished" for m in world.seen)
    assert leftovers(docker_client, world.executor_id) == []
    assert any("interrupting running jobs, they go to another executor" in line for line in executor.output)


def test_an_executor_killed_mid_job_leaves_no_container_and_its_job_runs_again(world, processes, docker_client):
    world.lease(4)
    # Given an executor killed (SIGKILL) while its job's container runs
    first = processes()
    world.order("run-1", "ci/wait")
    world.running("run-1")
    [orphan] = leftovers(docker_client, world.executor_id)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    # When it starts again
    second = processes()
    # Then the orphan is gone, the run-out lease ordered attempt 2, and it runs to its end
    world.until(lambda: world.job("run-1").attempt == 2, "attempt 2 is ordered")
    workspace = world.running("run-1")
    assert orphan.id not in [c.id for c in leftovers(docker_client, world.executor_id)]
    (workspace / "release").touch()
    done = world.finished("run-1")
    assert (done.status, done.attempt) == ("success", 2)
    assert "attempt 2" in world.log("run-1").decode()
    assert second.stop() == 0
    assert leftovers(docker_client, world.executor_id) == []


@contextmanager
def warm_executor(world: World) -> Iterator[Process]:
    """A real `tasuki executor` process that ran one job already (what every job needs is
    loaded: memory measured from there on is the jobs' own), the functions pumped; stopped after."""
    with Pump(world.functions) as world.pump:
        executor = Process(world.env)
        try:
            executor.wait_for_line("taking work from")
            world.order("warm-up", "ci/hello")
            world.finished("warm-up")
            yield executor
        finally:
            executor.stop()


def test_a_job_printing_50mb_keeps_its_whole_log_and_the_executor_memory_bounded(
    functions, tmp_path, make_repo, executor_id, docker_client
):
    world = World(functions, tmp_path, make_repo, executor_id, keys=("job.started", "job.finished"))
    world.log_limit("64MiB")  # the whole 50 MB is kept: within the limit
    with warm_executor(world) as executor:
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


def test_a_job_writing_1gb_is_cut_at_the_log_limit_and_fails_the_store_and_executor_stay_small(
    functions, tmp_path, make_repo, executor_id, docker_client
):
    # Given a real executor process and the logs function at the default TASUKI_JOB_LOG_LIMIT
    world = World(functions, tmp_path, make_repo, executor_id, keys=("job.started", "job.finished"))
    settings = world.rt.settings
    limit, margin = settings.job_log_limit_bytes, settings.job_log_store_limit - settings.job_log_limit_bytes
    assert limit == 32 * 1024**2
    database = Path(settings.store_path)
    with warm_executor(world) as executor:
        world.store._write("PRAGMA wal_checkpoint(TRUNCATE)")
        stored_before = database.stat().st_size
        rss_before = executor.peak_rss_kb()
        # When a job writes 1 GiB
        world.order("run-1", "ci/flood")
        done = world.finished("run-1")
        rss_after = executor.peak_rss_kb()
        log = world.log("run-1")
        world.store._write("PRAGMA wal_checkpoint(TRUNCATE)")
        stored_after = database.stat().st_size
    # Then the job failed for its log, the log is the limit's worth of output and the line that
    # says it was cut (the rest never came: END is not there)
    assert (done.status, done.reason) == ("failure", "log-limit"), done
    assert "TASUKI_JOB_LOG_LIMIT" in done.message
    cut = b"\n[tasuki] the log passed its limit of 32 MiB (TASUKI_JOB_LOG_LIMIT): cut here, and the job was stopped\n"
    assert log.endswith(cut) and log.count(b"x") == limit and b"END" not in log
    assert world.store.log_bytes("run-1", "build", 1) <= limit + margin
    # the database grew by no more than the limit and a small margin
    grown = stored_after - stored_before
    print(f"store: {stored_before} -> {stored_after} bytes (+{grown / 1024**2:.1f} MiB) for a 1 GiB job")
    assert grown <= limit + 2 * 1024**2, f"the store grew {grown} bytes"
    # and the executor's peak memory stayed flat while 1 GiB went through it
    grown_mb = (rss_after - rss_before) / 1024
    print(f"executor peak RSS: {rss_before / 1024:.1f} MB before, {rss_after / 1024:.1f} MB after the 1 GiB job")
    assert grown_mb < 20, f"peak RSS grew {grown_mb:.1f} MB"
    assert leftovers(docker_client, world.executor_id) == []
