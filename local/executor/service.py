"""The executor: pulls work from `tasuki.executor.<pool>` (competing consumers) and does it.
It needs RabbitMQ and a Docker engine, nothing else: no store, no repository registry.

- `plan.order`: read the flow file at the pushed commit (from the mirror cache), choose the jobs
  this event runs, answer `run.planned` (or `run.planned` with the validation error).
- `job.order`: claim the job (`job.started`), and only once the dispatcher granted the claim
  run its container, with heartbeats from the job's own run loop, the log as `job.log` chunks
  (none lost) and `job.finished` at the end. A refused claim (the run was cancelled, the job
  finished or is held by another executor) starts nothing.

Orders carry what the executor needs: the clone URL the dispatcher took from the registry and
the clone credentials sealed with `TASUKI_ORDER_KEY` (`shared.sealing`), opened here only to
hand to git, and the secrets its job lists, sealed the same way, opened only into the
container's environment and masked in its log (`local.executor.secrets`). The clone URL is checked against this host's `TASUKI_CLONE_SCHEMES` before git
runs, and the commit must be a commit id (`local.executor.checkout`). Answers to claims and heartbeats come on this executor's own queue (exclusive,
bound to `executor.<id>` on tasuki.executors), also when a run is cancelled: a refused lease
kills the container at once.

Several executors on several hosts share one queue with no other coordination; each takes at
most `TASUKI_EXECUTOR_CONCURRENCY` orders at a time (the prefetch). A plan order is acknowledged
once answered (an executor that dies leaves it to the next one). A job order is acknowledged
once its claim is answered, so RabbitMQ's consumer_timeout never bounds a job: from then on the
lease keeps it (`local.executor.lease`). An executor that cannot renew its lease kills its own
container; the dispatcher orders the job again (attempt + 1) when the lease ran out, and before
starting an attempt an executor removes the containers of earlier attempts on its engine.

Lifecycle: on start, containers and networks labelled with this executor's id (left by a crash:
jobs, their service containers and networks) and its workspaces are removed. SIGTERM (or Ctrl-C) stops taking work and lets running jobs finish for
`TASUKI_STOP_GRACE` seconds; jobs still running then are killed, their containers removed and
their leases given back, so the dispatcher orders them again for another executor at once. A
second signal does not wait for the grace. Each job's workspace is removed after it, and the
mirror cache is kept within `TASUKI_MIRROR_CACHE_BYTES`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tasuki.local.executor import caches, convert, jobs, manual, services
from tasuki.local.executor import secrets as job_secrets
from tasuki.local.executor.checkout import Checkouts, remove_tree
from tasuki.local.executor.containers import Docker
from tasuki.local.executor.jobfiles import JobFiles
from tasuki.local.executor.lease import Lease
from tasuki.local.executor.logsink import LogEvents, LogSink
from tasuki.local.executor.slots import Slots
from tasuki.shared import codec, flowfile, logs, objects, sealing, topics
from tasuki.shared.broker import Broker, attributes_of, connect
from tasuki.shared.errors import DecodeError, FlowFileError, JobError, ParamError, SealError, TasukiError
from tasuki.shared.messages import (
    Event,
    JobFinished,
    JobLog,
    JobOrder,
    LeaseAnswer,
    PlanOrder,
    RunPlanned,
    WorkOrder,
)
from tasuki.shared.reconnect import keep_connected
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.settings import Settings
from tasuki.shared.text import clip

log = logging.getLogger("tasuki.executor")

# The longest message a run's error carries (a flow file with many problems lists the first ones).
MAX_ERROR = 4000
# Once the grace period is over, how long killed jobs get to clean up before the executor exits.
ABORT_WAIT = 60.0
# Flow files parsed are remembered by their text (the next pushes of a repository mostly carry
# the same one): this many, each of at most this many bytes, so a hostile repository's big
# flow files cannot fill memory.
FLOWS_REMEMBERED = 16
FLOW_REMEMBERED_BYTES = 16 * 1024


class Interrupted(Exception):
    """The order goes back to the queue for another executor (this one is stopping, or its claim
    was not answered)."""


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
        params=tuple(sorted(event.params.items())),
    )


class Executor:
    def __init__(self, settings: Settings, *, broker: Broker | None = None, docker: Docker | None = None) -> None:
        self.settings = settings
        self.broker = broker or Broker(settings.amqp_url)
        self.docker = docker or Docker(settings.docker_host)
        self.id = settings.executor_id or f"{socket.gethostname()}.{settings.executor_pool}"
        self.order_key = settings.order_key_value()
        self.checkouts = Checkouts(
            settings.cache_dir,
            settings.workspace_dir / re.sub(r"[^A-Za-z0-9_.-]+", "_", self.id),
            max_bytes=settings.mirror_cache_bytes,
            schemes=settings.allowed_clone_schemes,
        )
        self.limits = convert.Limits.of(settings)
        self.objects = objects.new_objects(settings)  # artifacts and caches (connects on first use)
        self.limits.memory_bytes  # noqa: B018  an invalid TASUKI_JOB_MEMORY stops the start
        self.stop = threading.Event()  # take no more work
        self.abort = threading.Event()  # the grace is over: interrupt running jobs, give them back
        self.events = LogEvents(self.broker)
        self._pool = ThreadPoolExecutor(settings.executor_concurrency, thread_name_prefix="job")
        # Checkouts run beside the claim; the job's thread heartbeats while it waits for one.
        self._prepare = ThreadPoolExecutor(settings.executor_concurrency, thread_name_prefix="checkout")
        self._futures: set[Future] = set()
        self._running: set[tuple[str, str, int]] = set()
        self._leases: dict[tuple[str, str, int], Lease] = {}
        self._busy: set[object] = set()  # orders taken and not finished, over every connection
        self._connection: Any = None
        self._slots: Slots | None = None
        self._lock = threading.Lock()

    # -- the consumer loop ------------------------------------------------------------------------

    def serve(self) -> None:
        """Take work until `stop` is set, then finish (or give back) what is running."""
        self.cleanup_orphans()
        queue = topics.executor_queue(self.settings.executor_pool)
        try:
            keep_connected(lambda: self._consume(queue), self.stop, log=log, what="RabbitMQ connection lost")
        finally:
            self._finish_running(lambda: time.sleep(0.2))  # the broker went away while stopping
            self._pool.shutdown(wait=True)
            self._prepare.shutdown(wait=True)
            self.events.close()
            self.broker.close()

    def _consume(self, queue: str) -> None:
        connection = connect(self.settings.amqp_url)
        futures = self._futures
        try:
            channel = connection.channel()
            # This executor's own queue: the answers to its claims and heartbeats.
            answers = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.queue_bind(answers, topics.EXECUTORS, routing_key=topics.executor_key(self.id))
            channel.basic_consume(answers, lambda ch, m, p, body: self._answer(body), auto_ack=True)

            def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
                if self.stop.is_set():  # arrived while stopping: another executor takes it
                    ch.basic_nack(method.delivery_tag, requeue=True)
                    return
                token = object()
                with self._lock:
                    self._busy.add(token)
                    slots.taken()
                futures.add(self._pool.submit(self._work, connection, ch, slots, token, method, properties, body))
                futures.difference_update([f for f in futures if f.done()])

            with self._lock:  # jobs still running from a lost connection keep their slots
                slots = self._slots = Slots(
                    channel,
                    queue,
                    on_message,
                    self.settings.executor_concurrency,
                    busy=len(self._busy),
                    another=connection.channel,
                )
                self._connection = connection
            slots.open()
            log.info(
                "executor %s: taking work from %s (concurrency %d)",
                self.id,
                queue,
                self.settings.executor_concurrency,
            )
            while not self.stop.is_set():  # settling an order wakes it (add_callback_threadsafe)
                connection.process_data_events(time_limit=1.0)
            slots.close()
            self._finish_running(lambda: connection.process_data_events(time_limit=0.2))
            connection.process_data_events(time_limit=0.2)  # send the last acks and nacks
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except Exception:  # closing a broken connection: nothing left to save
                    pass

    def _answer(self, body: bytes) -> None:
        try:
            answer = codec.decode(body, LeaseAnswer)
        except DecodeError as exc:
            log.warning("unreadable lease answer ignored: %s", exc)
            return
        with self._lock:
            lease = self._leases.get((answer.run_id, answer.job, answer.attempt))
        if lease is not None:
            lease.answer(answer)

    def _finish_running(self, pump: Callable[[], None]) -> None:
        """Stopping: let running jobs finish within the grace, then interrupt them (their leases
        are given back). `pump` keeps the connection alive (and sends acks) while waiting."""

        def running() -> int:
            return sum(not f.done() for f in self._futures)

        def wait_until(deadline: float) -> None:
            while running() and time.monotonic() < deadline:
                pump()

        if running():
            log.info("stopping: %d job(s) running get %ds to finish", running(), self.settings.stop_grace)
        wait_until(time.monotonic() + self.settings.stop_grace)
        if running():
            log.warning("stopping: the grace is over; interrupting running jobs, they go to another executor")
            self.abort.set()
            wait_until(time.monotonic() + ABORT_WAIT)

    def _free(self, token: object, consumer: str, *, early: bool) -> None:
        """An order's work is over: its slot is free on the current connection. `consumer`: the
        tag of the consumer it was delivered to; `early`: it was acknowledged before."""
        with self._lock:
            self._busy.discard(token)
            connection, slots = self._connection, self._slots
            if connection is not None and slots is not None:
                try:
                    connection.add_callback_threadsafe(functools.partial(slots.freed, consumer, early=early))
                except Exception:  # connection gone: the next one counts the jobs still running
                    pass

    def _work(
        self, connection: Any, channel: Any, slots: Slots, token: object, method: Any, properties: Any, body: bytes
    ) -> None:
        with logs.context(**logs.fields(attributes_of(properties.headers))):
            self._handle_and_settle(connection, channel, slots, token, method, properties, body)

    def _handle_and_settle(
        self, connection: Any, channel: Any, slots: Slots, token: object, method: Any, properties: Any, body: bytes
    ) -> None:
        settled = threading.Event()
        early_ack = threading.Event()

        def later(action: Callable[[], None]) -> None:
            try:
                connection.add_callback_threadsafe(action)
            except Exception as exc:  # connection gone: the order is redelivered (if unacknowledged)
                log.warning("could not settle %s: %s", properties.message_id, exc)

        def settle(requeue: bool | None = None, *, early: bool = False) -> None:
            """Acknowledge the order (requeue None), or give it back (True) or dead-letter it."""
            if settled.is_set():
                return
            settled.set()
            if early:
                early_ack.set()
            tag = method.delivery_tag

            def action() -> None:
                if requeue is None:
                    channel.basic_ack(tag)
                else:
                    channel.basic_nack(tag, requeue=requeue)
                if early:
                    slots.acknowledged_early(method.consumer_tag)

            later(action)

        try:
            self.handle(properties.type or "", body, ack=lambda: settle(early=True))
            settle()
        except Interrupted:
            settle(True)
        except DecodeError as exc:
            log.error("unreadable work order %s goes to the dead letters: %s", properties.message_id, exc)
            settle(False)
        except Exception:
            log.exception("work order %s failed; it goes back to the queue", properties.message_id)
            self.stop.wait(1)
            settle(True)
        finally:
            self._free(token, method.consumer_tag, early=early_ack.is_set())

    def handle(self, message_type: str, body: bytes, *, ack: Callable[[], None] = lambda: None) -> None:
        if message_type == PlanOrder.TYPE:
            self.plan(codec.decode(body, PlanOrder))
        elif message_type == JobOrder.TYPE:
            self.run(codec.decode(body, JobOrder), ack=ack)
        else:
            raise DecodeError(f"expected a plan.order or job.order, found type {message_type!r}")

    def credentials(self, order: WorkOrder) -> RepositoryConfig | None:
        """The clone credentials the order carries sealed, opened (SealError with another key)."""
        if order.credentials is None:
            return None
        try:
            return RepositoryConfig.model_validate(sealing.unseal_json(self.order_key, order.credentials))
        except ValueError:
            raise SealError("the order's sealed clone credentials are not credentials") from None

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, order: PlanOrder) -> None:
        self.broker.publish(self.planned(order), message_id=f"{order.run_id}:planned")

    def planned(self, order: PlanOrder) -> RunPlanned:
        """The plan of a run, or the run's error: anything that goes wrong while planning (an
        invalid flow file, a failed checkout, a bug) ends the run with a message, since planning
        the same commit again would fail the same way."""
        event = order.event
        try:
            auth = self.credentials(order)
            commit = event.after or manual.head(self.checkouts, order, auth)
            text = self.checkouts.read_file(order.clone_url, commit, order.flow_file, auth, host=event.host)
            if text is None:
                raise FlowFileError(f"{order.flow_file}: not found at commit {commit[:12]}; add one to the repository")
            flow = parse_flow(text, order.flow_file, self.settings.job_timeout_max)
            params = manual.params(flow, event)
            changed = self.checkouts.changed_paths(order.clone_url, event.before, commit, auth, host=event.host)
            ctx = context(event, order.run_id, "")
            selected, skipped = flowfile.select(
                flow, event=event.kind, branch=ctx.branch, tag=ctx.tag, changed=changed, names=order.jobs
            )
            planned = RunPlanned(
                run_id=order.run_id,
                jobs=selected,
                skipped=skipped,
                commit=commit if commit != event.after else "",
                params=params,
                declared=flow.params,
            )
            codec.encode(planned)  # a plan that cannot travel is the flow file's error, not a retry
        except (FlowFileError, JobError, SealError, ParamError) as exc:
            return RunPlanned(run_id=order.run_id, error=clip(str(exc), MAX_ERROR))
        except Exception as exc:
            log.exception("run %s: planning failed", order.run_id)
            return RunPlanned(
                run_id=order.run_id,
                error=clip(f"{order.flow_file}: could not be planned: {type(exc).__name__}: {exc}", MAX_ERROR),
            )
        return planned

    # -- running a job ----------------------------------------------------------------------------

    def run(self, order: JobOrder, *, ack: Callable[[], None] = lambda: None) -> jobs.Outcome | None:
        """Claim the job and run it once granted. Returns what happened, or None when it did not
        run here (refused, or the same order again while it runs here)."""
        key = (order.run_id, order.job.name, order.attempt)
        with self._lock:
            if key in self._running:  # the same order came again (a lost connection) while it runs here
                ack()
                return None
            self._running.add(key)
        try:
            return self._run_once(order, ack)
        finally:
            with self._lock:
                self._running.discard(key)

    def _run_once(self, order: JobOrder, ack: Callable[[], None]) -> jobs.Outcome | None:
        run_id, name, attempt = order.run_id, order.job.name, order.attempt
        if self.abort.is_set():
            raise Interrupted
        lease = Lease(
            run_id, name, attempt, self.id, timeout=self.settings.job_lease_timeout, publish=self.broker.publish
        )
        with self._lock:
            self._leases[lease.key] = lease
        # The checkout (and the removal of earlier attempts' containers) runs while the claim is
        # answered; no container starts before the grant.
        workspace = self._prepare.submit(self._make_workspace, order)
        try:
            lease.claim()
            if not lease.wait(self.settings.job_lease_timeout):
                log.warning("run %s job %s: no answer to the claim; the order goes back to the queue", run_id, name)
                raise Interrupted
            ack()  # granted or refused: the lease, not the unacknowledged order, holds the job now
            if not lease.granted:
                log.info("run %s job %s attempt %d: not run here (%s)", run_id, name, attempt, lease.reason)
                return None
            received = job_secrets.from_order(order, self.order_key)
            masked = received.masked(self.settings.secret_values())
            with LogSink(self._log_writer(run_id, name, attempt), masked) as sink:
                if attempt > 1:
                    why = order.why or "the earlier attempt's executor stopped"
                    sink.feed(f"[tasuki] attempt {attempt}: {why}\n".encode())
                outcome = self._attempt(order, workspace, lease, sink, received)
                stopped = lease.stop_reason()
                if outcome.status == "cancelled" and self.abort.is_set() and not stopped:
                    sink.feed(
                        f"\n[tasuki] executor {self.id} is stopping: this job goes to another executor\n".encode()
                    )
            if outcome.status == "cancelled" and self.abort.is_set() and not stopped:
                self.events.drain()
                lease.release()
                return outcome
            if stopped:  # the dispatcher decided already (cancelled), or will (lease lost)
                log.info("run %s job %s attempt %d stopped: %s", run_id, name, attempt, stopped)
                return outcome
            self.events.drain()  # the whole log goes out before the job's end
            self.broker.publish(
                JobFinished(
                    run_id=run_id,
                    job=name,
                    attempt=attempt,
                    status=outcome.status,
                    exit_code=outcome.exit_code,
                    reason=outcome.reason,
                    message=outcome.message,
                    log_chunks=sink.seq,
                    artifacts=list(outcome.artifacts),
                ),
                message_id=f"{run_id}:{name}:{attempt}:finished",
            )
            return outcome
        finally:
            with self._lock:
                self._leases.pop(lease.key, None)
            workspace.add_done_callback(_discard_workspace)

    def _make_workspace(self, order: JobOrder) -> Path:
        self.remove_earlier_attempts(order)
        name = f"{order.run_id}-{order.job.name}-{order.attempt}"
        return self.checkouts.prepare(
            order.clone_url, order.event.after, name, self.credentials(order), host=order.event.host
        )

    def _attempt(
        self, order: JobOrder, workspace: Future, lease: Lease, sink: LogSink, received: job_secrets.Received
    ) -> jobs.Outcome:
        """Check out, then run the container; timings of both go to the executor's log."""
        event, job = order.event, order.job
        started = time.monotonic()

        def stop() -> bool:
            return self.abort.is_set() or bool(lease.stop_reason())

        def tick() -> None:
            sink.tick()
            lease.beat()

        try:
            while not workspace.done():  # heartbeats go on while git works
                tick()
                if stop():
                    return jobs.Outcome("cancelled", None, "cancelled", "stopped before it started")
                try:
                    workspace.result(timeout=0.25)
                except TimeoutError:
                    continue
            path = workspace.result()
            checked_out = time.monotonic()
            outcome = jobs.run_job(
                self.docker,
                job,
                dataclasses.replace(context(event, order.run_id, job.name), attempt=order.attempt),
                path,
                limits=self.limits,
                timeout=min(job.timeout or self.settings.job_timeout, self.settings.job_timeout_max),
                on_output=sink.feed,
                cancelled=stop,
                on_tick=tick,
                executor_id=self.id,
                files=JobFiles(
                    self.objects,
                    order.run_id,
                    caches.scope_of(event),
                    self.settings.artifacts_max_bytes,
                    self.settings.cache_max_bytes,
                    tick=tick,
                    artifact_runs=order.artifact_runs,
                ),
                secrets=received,
            )
        except (JobError, SealError) as exc:
            sink.feed(f"[tasuki] {exc}\n".encode())
            reason = exc.reason if isinstance(exc, JobError) else "order-key"
            return jobs.Outcome("error", None, reason, str(exc), time.monotonic() - started)
        log.info(
            "run %s job %s: %s (checkout %.2fs, container %.2fs)",
            order.run_id,
            job.name,
            outcome.status,
            checked_out - started,
            outcome.seconds,
        )
        return dataclasses.replace(outcome, checkout_seconds=checked_out - started)

    def _log_writer(self, run_id: str, name: str, attempt: int) -> Callable[[int, bytes], None]:
        def write(seq: int, data: bytes) -> None:
            self.events.put(
                JobLog(run_id=run_id, job=name, attempt=attempt, seq=seq, data=data.decode("utf-8", "replace"))
            )

        return write

    def remove_earlier_attempts(self, order: JobOrder) -> int:
        """Before attempt N starts, no container of an earlier attempt of the job may still run
        on this engine (its executor may have been cut off without knowing it). The first
        attempt has none: no need to ask the engine."""
        if order.attempt <= 1:
            return 0
        try:
            found = self.docker.containers_labelled(convert.LABEL_RUN, order.run_id)
        except TasukiError as exc:
            log.warning("cannot look for containers of earlier attempts: %s", exc)
            return 0
        earlier = [
            c
            for c in found
            if (c.get("Labels") or {}).get(convert.LABEL_JOB) == order.job.name and _attempt_of(c) < order.attempt
        ]
        for container in earlier:
            log.warning(
                "removing container %s of an earlier attempt of run %s job %s",
                container["Id"][:12],
                order.run_id,
                order.job.name,
            )
            self.docker.remove(container["Id"])

        def current(network: dict[str, Any]) -> bool:  # its services' network: another job's, or this attempt's
            return (network.get("Labels") or {}).get(convert.LABEL_JOB) != order.job.name or _attempt_of(
                network
            ) >= order.attempt

        services.remove_left(self.docker, current, convert.LABEL_RUN, order.run_id)
        return len(earlier)

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
        services.remove_left(self.docker, lambda network: False, convert.LABEL_EXECUTOR, self.id)
        return len(orphans)


def parse_flow(text: bytes, path: str, max_timeout: int) -> flowfile.Flow:
    """`flowfile.parse`, remembered for a small flow file's text (a `Flow` is frozen: sharing it
    is safe; an invalid one is parsed again each time, and says why each time)."""
    if len(text) > FLOW_REMEMBERED_BYTES:
        return flowfile.parse(text, path, max_timeout=max_timeout)
    return _parse_remembered(text, path, max_timeout)


@functools.lru_cache(maxsize=FLOWS_REMEMBERED)
def _parse_remembered(text: bytes, path: str, max_timeout: int) -> flowfile.Flow:
    return flowfile.parse(text, path, max_timeout=max_timeout)


def _attempt_of(container: dict[str, Any]) -> int:
    try:
        return int((container.get("Labels") or {}).get(convert.LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


def _discard_workspace(done: Future) -> None:
    if not done.cancelled() and done.exception() is None:
        remove_tree(done.result())


def main(settings: Settings) -> None:
    Broker(settings.amqp_url).declare(pools=(settings.executor_pool,))
    executor = Executor(settings)

    def on_signal(signum: int, _frame: Any) -> None:
        if executor.stop.is_set():
            log.warning("second signal: interrupting running jobs now")
            executor.abort.set()
        executor.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    executor.serve()
    log.info("executor %s stopped (pid %d)", executor.id, os.getpid())
