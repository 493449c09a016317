"""The executor: pulls work from `tasuki.executor.<pool>` (competing consumers) and does it.

- `plan.order`: read the flow file at the pushed commit (from the mirror cache), choose the jobs
  this event runs, answer `run.planned` (or `run.planned` with the validation error).
- `job.order`: check out the commit, run the job's container, stream its log to the store (and
  as `job.log` events), answer `job.started` and `job.finished`.

Several executors on several hosts share one queue with no other coordination; each takes at
most `TASUKI_EXECUTOR_CONCURRENCY` orders at a time (the prefetch). An order is acknowledged
only after its answer was published, so an executor that dies loses nothing: the order is
redelivered. A finished job's result is recorded in the store before it is announced, so a
redelivered order of a job that already finished re-announces the result instead of running
the job again; a redelivered order of a job still running in this process waits for it.

Lifecycle: on start, containers labelled with this executor's id (left by a crash) and its
workspaces are removed. SIGTERM (or Ctrl-C) stops taking work and lets running jobs finish for
`TASUKI_STOP_GRACE` seconds; jobs still running then are killed, their containers removed and
their orders requeued for another executor. A second signal does not wait for the grace.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tasuki.local.executor import convert, jobs
from tasuki.local.executor.checkout import Checkouts
from tasuki.local.executor.containers import Docker
from tasuki.local.executor.logsink import LogEvents, LogSink
from tasuki.shared import codec, flowfile, logs, topics
from tasuki.shared.broker import Broker, attributes_of, connect
from tasuki.shared.errors import DecodeError, FlowFileError, JobError, TasukiError
from tasuki.shared.messages import Event, JobFinished, JobLog, JobOrder, JobStarted, PlanOrder, RunPlanned
from tasuki.shared.reconnect import keep_connected
from tasuki.shared.registry import Repositories
from tasuki.shared.settings import Settings
from tasuki.shared.store import Store
from tasuki.shared.text import clip

log = logging.getLogger("tasuki.executor")

# The longest message a run's error carries (a flow file with many problems lists the first ones).
MAX_ERROR = 4000
# Once the grace period is over, how long killed jobs get to clean up before the executor exits.
ABORT_WAIT = 60.0


class Interrupted(Exception):
    """The executor is stopping: the order goes back to the queue for another executor."""


def context(event: Event, run_id: str, job: str) -> convert.Context:
    ref = event.ref
    return convert.Context(
        repository=event.repository.full_name,
        ref=(f"refs/tags/{ref.name}" if ref.kind == "tag" else f"refs/heads/{ref.name}") if ref else "",
        branch=ref.name
        if ref and ref.kind == "branch"
        else (event.pull_request.source_branch if event.pull_request else ""),
        tag=ref.name if ref and ref.kind == "tag" else "",
        commit=event.after,
        run_id=run_id,
        job=job,
        event=event.kind,
        host=event.host,
        actor=event.actor,
    )


class Executor:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        registry: Repositories,
        broker: Broker | None = None,
        docker: Docker | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.broker = broker or Broker(settings.amqp_url)
        self.docker = docker or Docker(settings.docker_host)
        self.id = settings.executor_id or f"{socket.gethostname()}.{settings.executor_pool}"
        self.checkouts = Checkouts(
            settings.cache_dir,
            settings.workspace_dir / re.sub(r"[^A-Za-z0-9_.-]+", "_", self.id),
            credentials=registry.credentials_for,
            schemes=settings.allowed_clone_schemes,
        )
        self.limits = convert.Limits.of(settings)
        self.limits.memory_bytes  # noqa: B018  an invalid TASUKI_JOB_MEMORY stops the start
        self.stop = threading.Event()  # take no more work
        self.abort = threading.Event()  # the grace is over: interrupt running jobs, requeue them
        self.events = LogEvents(self.broker)
        self._pool = ThreadPoolExecutor(settings.executor_concurrency, thread_name_prefix="job")
        self._futures: set[Future] = set()
        self._running: dict[tuple[str, str], threading.Event] = {}
        self._lock = threading.Lock()

    # -- the consumer loop ------------------------------------------------------------------------

    def serve(self) -> None:
        """Take work until `stop` is set, then finish (or requeue) what is running."""
        self.cleanup_orphans()
        queue = topics.executor_queue(self.settings.executor_pool)
        try:
            keep_connected(lambda: self._consume(queue), self.stop, log=log, what="RabbitMQ connection lost")
        finally:
            self._finish_running(lambda: time.sleep(0.2))  # the broker went away while stopping
            self._pool.shutdown(wait=True)
            self.events.close()
            self.broker.close()

    def _consume(self, queue: str) -> None:
        connection = connect(self.settings.amqp_url)
        futures = self._futures
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.settings.executor_concurrency)

            def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
                if self.stop.is_set():  # arrived while stopping: another executor takes it
                    ch.basic_nack(method.delivery_tag, requeue=True)
                    return
                futures.add(self._pool.submit(self._work, connection, ch, method, properties, body))
                futures.difference_update([f for f in futures if f.done()])

            tag = channel.basic_consume(queue, on_message)
            log.info(
                "executor %s: taking work from %s (concurrency %d)",
                self.id,
                queue,
                self.settings.executor_concurrency,
            )
            while not self.stop.is_set():
                connection.process_data_events(time_limit=0.2)
            channel.basic_cancel(tag)
            self._finish_running(lambda: connection.process_data_events(time_limit=0.2))
            connection.process_data_events(time_limit=0.2)  # send the last acks and nacks
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except Exception:  # closing a broken connection: nothing left to save
                    pass

    def _finish_running(self, pump: Callable[[], None]) -> None:
        """Stopping: let running jobs finish within the grace, then interrupt them (their orders
        are requeued). `pump` keeps the connection alive (and sends acks) while waiting."""

        def running() -> int:
            return sum(not f.done() for f in self._futures)

        def wait_until(deadline: float) -> None:
            while running() and time.monotonic() < deadline:
                pump()

        if running():
            log.info("stopping: %d job(s) running get %ds to finish", running(), self.settings.stop_grace)
        wait_until(time.monotonic() + self.settings.stop_grace)
        if running():
            log.warning("stopping: the grace is over; interrupting running jobs, their orders go back to the queue")
            self.abort.set()
            wait_until(time.monotonic() + ABORT_WAIT)

    def _work(self, connection: Any, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        with logs.context(**logs.fields(attributes_of(properties.headers))):
            self._handle_and_settle(connection, channel, method, properties, body)

    def _handle_and_settle(self, connection: Any, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        settle: Callable[[int], None] = channel.basic_ack
        try:
            self.handle(properties.type or "", body, redelivered=method.redelivered)
        except Interrupted:
            settle = lambda tag: channel.basic_nack(tag, requeue=True)  # noqa: E731
        except DecodeError as exc:
            log.error("unreadable work order %s goes to the dead letters: %s", properties.message_id, exc)
            settle = lambda tag: channel.basic_nack(tag, requeue=False)  # noqa: E731
        except Exception:
            log.exception("work order %s failed; it goes back to the queue", properties.message_id)
            self.stop.wait(1)
            settle = lambda tag: channel.basic_nack(tag, requeue=True)  # noqa: E731
        try:
            connection.add_callback_threadsafe(lambda: settle(method.delivery_tag))
        except Exception as exc:  # connection gone: the order is redelivered, results are recorded
            log.warning("could not settle %s: %s", properties.message_id, exc)

    def handle(self, message_type: str, body: bytes, *, redelivered: bool = False) -> None:
        if message_type == PlanOrder.TYPE:
            self.plan(codec.decode(body, PlanOrder))
        elif message_type == JobOrder.TYPE:
            self.run(codec.decode(body, JobOrder), redelivered=redelivered)
        else:
            raise DecodeError(f"expected a plan.order or job.order, found type {message_type!r}")

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, order: PlanOrder) -> None:
        self.broker.publish(self.planned(order), message_id=f"{order.run_id}:planned")

    def planned(self, order: PlanOrder) -> RunPlanned:
        """The plan of a run, or the run's error: anything that goes wrong while planning (an
        invalid flow file, a failed checkout, a bug) ends the run with a message, since planning
        the same commit again would fail the same way."""
        event = order.event
        try:
            url = self.registry.checkout_url(event.repository.full_name)
            text = self.checkouts.read_file(url, event.after, order.flow_file, host=event.host)
            if text is None:
                raise FlowFileError(
                    f"{order.flow_file}: not found at commit {event.after[:12]}; add one to the repository"
                )
            flow = flowfile.parse(text, order.flow_file, max_timeout=self.settings.job_timeout_max)
            changed = self.checkouts.changed_paths(url, event.before, event.after, host=event.host)
            ctx = context(event, order.run_id, "")
            selected, skipped = flowfile.select(
                flow, event=event.kind, branch=ctx.branch, tag=ctx.tag, changed=changed, names=order.jobs
            )
            planned = RunPlanned(run_id=order.run_id, jobs=selected, skipped=skipped)
            codec.encode(planned)  # a plan that cannot travel is the flow file's error, not a retry
        except (FlowFileError, JobError) as exc:
            return RunPlanned(run_id=order.run_id, error=clip(str(exc), MAX_ERROR))
        except Exception as exc:
            log.exception("run %s: planning failed", order.run_id)
            return RunPlanned(
                run_id=order.run_id,
                error=clip(f"{order.flow_file}: could not be planned: {type(exc).__name__}: {exc}", MAX_ERROR),
            )
        return planned

    # -- running a job ----------------------------------------------------------------------------

    def run(self, order: JobOrder, *, redelivered: bool = False) -> jobs.Outcome | None:
        """Run one job once: a second order for it waits for the first, then re-announces.
        Returns what happened, or None when the order only re-announced a recorded result."""
        key = (order.run_id, order.job.name)
        while True:
            with self._lock:
                other = self._running.get(key)
                if other is None:
                    mine = self._running[key] = threading.Event()
                    break
            other.wait()  # the same order came again (a lost connection) while it runs here
        try:
            return self._run_once(order, redelivered=redelivered)
        finally:
            with self._lock:
                del self._running[key]
            mine.set()

    def _run_once(self, order: JobOrder, *, redelivered: bool) -> jobs.Outcome | None:
        run_id, name = order.run_id, order.job.name
        recorded = self.store.get_result(run_id, name)
        if recorded is not None:  # finished before; the order came again: announce, don't re-run
            self.broker.publish(codec.decode(recorded, JobFinished), message_id=f"{run_id}:{name}:finished")
            return None
        if self.abort.is_set():
            raise Interrupted
        if self._run_cancelled(run_id):  # cancelled while its order waited: start nothing
            finished = JobFinished(
                run_id=run_id,
                job=name,
                status="cancelled",
                reason="cancelled",
                message="the run was cancelled before this job started",
            )
            self.store.put_result(run_id, name, codec.encode(finished))
            self.broker.publish(finished, message_id=f"{run_id}:{name}:finished")
            return jobs.Outcome("cancelled", None, "cancelled", finished.message)
        self.broker.publish(
            JobStarted(run_id=run_id, job=name, executor=self.id), message_id=f"{run_id}:{name}:started"
        )
        self.store.clear_log(run_id, name)
        with LogSink(self._log_writer(run_id, name), self.settings.secret_values()) as sink:
            if redelivered:
                sink.feed(b"[tasuki] this job was interrupted (its executor stopped) and runs again\n")
            outcome = self._attempt(order, sink)
            if outcome.status == "cancelled" and self.abort.is_set():
                sink.feed(f"\n[tasuki] executor {self.id} is stopping: this job goes back to the queue\n".encode())
                raise Interrupted
        finished = JobFinished(
            run_id=run_id,
            job=name,
            status=outcome.status,
            exit_code=outcome.exit_code,
            reason=outcome.reason,
            message=outcome.message,
        )
        self.store.put_result(run_id, name, codec.encode(finished))
        self.events.drain()  # the log's last events go out before the job's end
        self.broker.publish(finished, message_id=f"{run_id}:{name}:finished")
        return outcome

    def _attempt(self, order: JobOrder, sink: LogSink) -> jobs.Outcome:
        """Check out, then run the container; timings of both go to the executor's log."""
        event, job = order.event, order.job
        started = time.monotonic()
        try:
            url = self.registry.checkout_url(event.repository.full_name)
            with self.checkouts.workspace(url, event.after, f"{order.run_id}-{job.name}", host=event.host) as workspace:
                checked_out = time.monotonic()
                outcome = jobs.run_job(
                    self.docker,
                    job,
                    context(event, order.run_id, job.name),
                    workspace,
                    limits=self.limits,
                    timeout=min(job.timeout or self.settings.job_timeout, self.settings.job_timeout_max),
                    on_output=sink.feed,
                    cancelled=self._cancel_check(order.run_id),
                    on_tick=sink.tick,
                    executor_id=self.id,
                )
        except JobError as exc:
            sink.feed(f"[tasuki] {exc}\n".encode())
            return jobs.Outcome("error", None, exc.reason, str(exc), time.monotonic() - started)
        log.info(
            "run %s job %s: %s (checkout %.2fs, container %.2fs)",
            order.run_id,
            job.name,
            outcome.status,
            checked_out - started,
            outcome.seconds,
        )
        return dataclasses.replace(outcome, checkout_seconds=checked_out - started)

    def _log_writer(self, run_id: str, name: str) -> Callable[[int, bytes], None]:
        def write(seq: int, data: bytes) -> None:
            self.store.append_log(run_id, name, seq, data)
            self.events.offer(JobLog(run_id=run_id, job=name, seq=seq, data=data.decode("utf-8", "replace")))

        return write

    def _run_cancelled(self, run_id: str) -> bool:
        try:
            run = self.store.get_run(run_id)
        except TasukiError:
            return False
        return run is not None and run.status == "cancelled"

    def _cancel_check(self, run_id: str) -> Callable[[], bool]:
        """True once the executor must stop the job, or the run was cancelled (read each second)."""
        checked_at, found = 0.0, False

        def cancelled() -> bool:
            nonlocal checked_at, found
            if self.abort.is_set():
                return True
            now = time.monotonic()
            if now - checked_at >= 1.0:
                checked_at, found = now, self._run_cancelled(run_id)
            return found

        return cancelled

    # -- crash recovery ---------------------------------------------------------------------------

    def cleanup_orphans(self) -> int:
        """Remove the containers and workspaces this executor left when it died; their orders
        come again, since they were never acknowledged."""
        self.checkouts.clear_workspaces()
        try:
            orphans = self.docker.containers_labelled(convert.LABEL_EXECUTOR, self.id)
        except TasukiError as exc:
            log.warning("cannot look for orphan containers: %s", exc)
            return 0
        for container in orphans:
            labels = container.get("Labels") or {}
            log.warning(
                "removing orphan container %s (run %s, job %s)",
                container["Id"][:12],
                labels.get(convert.LABEL_RUN),
                labels.get(convert.LABEL_JOB),
            )
            self.docker.remove(container["Id"])
        return len(orphans)


def main(settings: Settings, store: Store, registry: Repositories) -> None:
    Broker(settings.amqp_url).declare(pools=(settings.executor_pool,))
    executor = Executor(settings, store=store, registry=registry)

    def on_signal(signum: int, _frame: Any) -> None:
        if executor.stop.is_set():
            log.warning("second signal: interrupting running jobs now")
            executor.abort.set()
        executor.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    executor.serve()
    log.info("executor %s stopped (pid %d)", executor.id, os.getpid())
