"""The executor: pulls work from `tasuki.executor.<pool>` (competing consumers) and does it.

- `plan.order`: read the flow file at the pushed commit (from the mirror cache), choose the jobs
  this event runs, answer `run.planned` (or `run.planned` with the validation error).
- `job.order`: check out the commit, run the job's container, stream its log to the store,
  answer `job.started` and `job.finished`.

Several executors on several hosts share one queue with no other coordination. A message is
acknowledged only after its answer was published, so an executor that dies loses nothing: the
order is redelivered. A finished job's result is recorded first, so a redelivered order of a job
that already finished re-announces the result instead of running the job again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika.exceptions as pe

from local import convert, jobs
from local.checkout import Checkouts
from local.containers import Docker
from local.logsink import LogSink
from shared import codec, flowfile, topics
from shared.broker import Broker, connect
from shared.errors import BrokerError, DecodeError, FlowFileError, JobError, TasukiError
from shared.messages import Event, JobFinished, JobOrder, JobStarted, PlanOrder, RunPlanned
from shared.registry import Registry
from shared.settings import Settings
from shared.store import Store

log = logging.getLogger("tasuki.executor")


def context(event: Event, run_id: str, job: str) -> convert.Context:
    ref = event.ref
    return convert.Context(
        repository=event.repository.full_name,
        ref=(f"refs/tags/{ref.name}" if ref.kind == "tag" else f"refs/heads/{ref.name}") if ref else "",
        branch=ref.name if ref and ref.kind == "branch" else (
            event.pull_request.source_branch if event.pull_request else ""),
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
        registry: Registry,
        broker: Broker | None = None,
        docker: Docker | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.broker = broker or Broker(settings.amqp_url)
        self.docker = docker or Docker()
        self.checkouts = Checkouts(settings.cache_dir, settings.workspace_dir)
        self.id = settings.executor_id or f"{socket.gethostname()}.{settings.executor_pool}"
        self.limits = convert.Limits(settings.job_memory, settings.job_cpus, settings.job_pids)
        self.stop = threading.Event()

    # -- the consumer loop ------------------------------------------------------------------------

    def serve(self) -> None:
        self.cleanup_orphans()
        queue = topics.executor_queue(self.settings.executor_pool)
        delay = 0.5
        while not self.stop.is_set():
            try:
                self._consume(queue)
                delay = 0.5
            except (BrokerError, pe.AMQPError, OSError) as exc:
                log.warning("RabbitMQ connection lost (%s); reconnecting in %.1fs", exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 10)

    def _consume(self, queue: str) -> None:
        connection = connect(self.settings.amqp_url)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self.settings.executor_concurrency)
        pool = ThreadPoolExecutor(self.settings.executor_concurrency, thread_name_prefix="job")

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            pool.submit(self._work, connection, ch, method, properties, body)

        tag = channel.basic_consume(queue, on_message)
        log.info("executor %s: taking work from %s (concurrency %d)", self.id, queue, self.settings.executor_concurrency)
        try:
            while not self.stop.is_set():
                connection.process_data_events(time_limit=0.2)
            channel.basic_cancel(tag)  # take no more work; finish what is running
            pool.shutdown(wait=True)
            connection.process_data_events(time_limit=0.5)  # flush pending acks
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if connection.is_open:
                try:
                    connection.close()
                except Exception:
                    pass

    def _work(self, connection: Any, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        settle = channel.basic_ack
        try:
            self.handle(properties.type or "", body, redelivered=method.redelivered)
        except DecodeError as exc:
            log.error("unreadable work order %s goes to the dead letters: %s", properties.message_id, exc)
            settle = lambda tag: channel.basic_nack(tag, requeue=False)  # noqa: E731
        except Exception:
            log.exception("work order %s failed; it goes back to the queue", properties.message_id)
            time.sleep(1)
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
        event = order.event
        url = self.registry.clone_url(event.repository.full_name, event.repository.clone_url)
        try:
            text = self.checkouts.read_file(url, event.after, order.flow_file)
            if text is None:
                raise FlowFileError(f"{order.flow_file}: not found at commit {event.after[:12]}; add one to the repository")
            flow = flowfile.parse(text, order.flow_file)
            changed = self.checkouts.changed_paths(url, event.before, event.after)
            ctx = context(event, order.run_id, "")
            selected, skipped = flowfile.select(
                flow, event=event.kind, branch=ctx.branch, tag=ctx.tag, changed=changed, names=order.jobs
            )
        except (FlowFileError, JobError) as exc:
            return RunPlanned(run_id=order.run_id, error=str(exc))
        return RunPlanned(run_id=order.run_id, jobs=selected, skipped=skipped)

    # -- running a job ----------------------------------------------------------------------------

    def run(self, order: JobOrder, *, redelivered: bool = False) -> None:
        run_id, name = order.run_id, order.job.name
        recorded = self.store.get_result(run_id, name)
        if recorded is not None:  # finished before; the order came again: announce, don't re-run
            self.broker.publish(codec.decode(recorded, JobFinished), message_id=f"{run_id}:{name}:finished")
            return
        self.broker.publish(JobStarted(run_id=run_id, job=name, executor=self.id), message_id=f"{run_id}:{name}:started")
        self.store.clear_log(run_id, name)
        sink = LogSink(lambda seq, data: self.store.append_log(run_id, name, seq, data), self.settings.secret_values())
        if redelivered:
            sink.feed(b"[tasuki] this job was interrupted (its executor stopped) and runs again\n")
        outcome = self._run_in_workspace(order, sink)
        sink.close()
        finished = JobFinished(
            run_id=run_id, job=name, status=outcome.status, exit_code=outcome.exit_code,
            reason=outcome.reason, message=outcome.message,
        )
        self.store.put_result(run_id, name, codec.encode(finished))
        self.broker.publish(finished, message_id=f"{run_id}:{name}:finished")

    def _run_in_workspace(self, order: JobOrder, sink: LogSink) -> jobs.Outcome:
        event, job = order.event, order.job
        url = self.registry.clone_url(event.repository.full_name, event.repository.clone_url)
        try:
            with self.checkouts.workspace(url, event.after, f"{order.run_id}-{job.name}") as workspace:
                return jobs.run_job(
                    self.docker,
                    job,
                    context(event, order.run_id, job.name),
                    workspace,
                    limits=self.limits,
                    timeout=job.timeout or self.settings.job_timeout,
                    on_output=sink.feed,
                    cancelled=self._cancel_check(order.run_id),
                    executor_id=self.id,
                )
        except JobError as exc:
            sink.feed(f"[tasuki] {exc}\n".encode())
            return jobs.Outcome("error", None, exc.reason, str(exc))

    def _cancel_check(self, run_id: str) -> Any:
        last = [0.0, False]

        def cancelled() -> bool:
            now = time.monotonic()
            if now - last[0] >= 1.0:
                last[0] = now
                run = self.store.get_run(run_id)
                last[1] = run is not None and run.status == "cancelled"
            return last[1]

        return cancelled

    # -- crash recovery ---------------------------------------------------------------------------

    def cleanup_orphans(self) -> int:
        """Remove containers this executor left behind when it died; their orders come again."""
        try:
            orphans = self.docker.containers_labelled(convert.LABEL_EXECUTOR, self.id)
        except TasukiError as exc:
            log.warning("cannot look for orphan containers: %s", exc)
            return 0
        for container in orphans:
            log.warning("removing orphan container %s (%s)", container.short_id, container.labels.get(convert.LABEL_JOB))
            self.docker.remove(container.id)
        return len(orphans)


def main(settings: Settings, store: Store, registry: Registry) -> None:
    Broker(settings.amqp_url).declare(pools=(settings.executor_pool,))
    executor = Executor(settings, store=store, registry=registry)
    signal.signal(signal.SIGTERM, lambda *_: executor.stop.set())
    try:
        executor.serve()
    except KeyboardInterrupt:
        executor.stop.set()
    log.info("executor %s stopped (pid %d)", executor.id, os.getpid())
