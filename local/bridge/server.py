"""The push bridge's I/O: serves each subscription's queue to its handler as Pub/Sub push requests.

This file is the shell; the decisions are in `schedule.Schedule` (which message is pushed when,
backoff, ordering keys, flow control, dead letters, re-queueing before consumer_timeout,
filters, redelivery counting: read its docstring for the rules). For every subscription in
`shared.topics.SUBSCRIPTIONS` a `SubscriptionServer` runs, each with its own threads:

    consumer    one RabbitMQ consumer (`consumer`, prefetch `8 * max_outstanding`): tells the
                schedule what was delivered, sends the acks it hands out (coalesced, `acks`),
                and reconnects by itself when the connection is lost (`shared.reconnect`: 0.5 s
                doubling to 10 s)
    push        `max_outstanding` threads: take the next delivery from the schedule, POST it to
                the handler's URL (`shared.push.envelope`, `Authorization: Bearer <JWT>`,
                `pusher`), tell the schedule the answer
    publisher   one thread: publishes (confirmed) dead letters to the subscription's dead-letter
                topic and re-queued copies to its own queue (`delivery` writes their headers)

All of them tell the schedule what happened under one lock, and carry out what it answers
(a `Todo`) outside it.

- 102, 200, 201, 202, 204 ack; another status, a connection error or no answer within the ack
  deadline is a nack. RabbitMQ is acked only once the handler acked, or once the dead-letter
  publish was confirmed: a bridge that dies loses nothing, RabbitMQ hands its unacked messages
  to the next one.
- A dead letter carries its body, its attributes, Pub/Sub's `CloudPubSubDeadLetterSource*`
  attributes and Tasuki's history headers (`shared.deadletters` reads them).
- Messages waiting in memory (backoff, or behind their ordering key) count against the
  prefetch: a key with more than `8 * max_outstanding` messages waiting holds the others back.
- RabbitMQ's consumer_timeout (3.8.15+, 30 min by default, the `TASUKI_CONSUMER_TIMEOUT`
  setting) is respected by re-queueing (see `schedule`); the broker's configuration is left
  alone: RabbitMQ 3.10 only has the global setting, shared by every application on the broker.

What the bridge cannot know after it was killed: `deliveryAttempt` then counts RabbitMQ's
redeliveries (`x-delivery-count`) on top of `x-delivery-attempt`, an estimate as in Pub/Sub; and
a message re-queued because its key was blocked for longer than consumer_timeout can be
overtaken by a later message of its key that was still in the queue when the bridge died.
Durable quorum queues and persistent messages carry everything across a RabbitMQ restart.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tasuki.local.bridge import ticker
from tasuki.local.bridge.acks import Acks
from tasuki.local.bridge.consumer import Consumer
from tasuki.local.bridge.delivery import Delivery
from tasuki.local.bridge.pusher import Pusher
from tasuki.local.bridge.schedule import Requeue, Schedule, Todo
from tasuki.shared import logs, push, topics
from tasuki.shared.broker import Broker
from tasuki.shared.errors import BrokerError, ConfigError
from tasuki.shared.reconnect import keep_connected
from tasuki.shared.settings import Settings
from tasuki.shared.topics import Subscription

log = logging.getLogger("tasuki.bridge")

PREFETCH_PER_PUSH = 8


class SubscriptionServer:
    """Consumes one subscription's queue and pushes each message to its endpoint, as its schedule says."""

    def __init__(
        self,
        sub: Subscription,
        settings: Settings,
        stop: threading.Event,
        *,
        ack_deadline: float | None = None,
        consumer_timeout: float | None = None,
    ) -> None:
        self.sub = sub
        self.settings = settings
        self.stop = stop
        # FilterError or ConfigError here, before anything runs
        self.schedule = Schedule(
            sub,
            ack_deadline=float(ack_deadline or sub.ack_deadline),
            consumer_timeout=float(consumer_timeout or settings.consumer_timeout),
        )
        self.deadline = self.schedule.deadline
        self.endpoint = settings.endpoint(sub.endpoint)
        self.path = push.subscription_path(settings.project, sub.name)
        try:
            self.pusher = Pusher(self.endpoint, settings.signing_key(), connections=sub.max_outstanding)
        except ConfigError as exc:
            raise ConfigError(f"TASUKI_{sub.endpoint.upper()}_URL: {exc}") from None
        self.prefetch = min(65535, max(32, sub.max_outstanding * PREFETCH_PER_PUSH))
        self.broker = Broker(settings.amqp_url)
        self._publisher = ThreadPoolExecutor(1, thread_name_prefix=f"publish-{sub.name}")
        self._cond = threading.Condition()  # guards the schedule and the connection below
        self._consumer: Consumer | None = None  # while connected
        self._acks = Acks()
        self._clocks: list[float] = []  # when the push threads waiting with a timeout wake

    def describe(self) -> str:
        sub = self.sub
        return (
            f"{sub.name}: pushing {sub.queue} to {self.endpoint} (ack deadline {self.deadline:g}s, backoff "
            f"{sub.retry.minimum_backoff:g}-{sub.retry.maximum_backoff:g}s, dead letter after "
            f"{sub.max_delivery_attempts} attempts{', ordered' if sub.ordering else ''}"
            f"{', filter ' + sub.filter if sub.filter else ''})"
        )

    def _tell(self, event: Callable[..., Todo], *args: Any, **kwargs: Any) -> Todo:
        """Tell the schedule what happened (under the lock) and carry out its answer."""
        with self._cond:
            todo = event(*args, **kwargs)
            if todo.scheduled:
                self._cond.notify(todo.scheduled)
            consumer = self._consumer if todo.send_acks else None
        self._carry_out(todo, consumer)
        return todo

    def _carry_out(self, todo: Todo, consumer: Consumer | None) -> None:
        """What the schedule asked for that needs no push thread: sending acks, re-queueing copies."""
        if consumer is not None:
            try:
                consumer.call(self._send_acks)  # acks are sent by the consumer's thread
            except Exception as exc:  # the connection is gone: RabbitMQ redelivers, nothing is lost
                log.warning("%s: could not ack: %s", self.sub.name, exc)
        for requeue in todo.requeues:
            self._requeue(requeue)

    # -- the consumer: RabbitMQ in, acks out (one thread, owns the connection) -------------------

    def serve(self) -> None:
        workers = [
            threading.Thread(target=self._push_loop, name=f"push-{self.sub.name}-{n}", daemon=True)
            for n in range(self.sub.max_outstanding)
        ]
        for worker in workers:
            worker.start()
        keep_connected(self._consume, self.stop, log=log, what=f"{self.sub.name}: RabbitMQ connection lost")
        with self._cond:
            self._cond.notify_all()  # the push threads see `stop`
        for worker in workers:
            worker.join()
        self._publisher.submit(self.broker.close)
        self._publisher.shutdown(wait=True)
        self.pusher.close()

    def _consume(self) -> None:
        consumer = Consumer(
            self.settings.amqp_url,
            self.sub.queue,
            self.prefetch,
            self._on_message,
            opened=lambda: self._connected(consumer),
            consuming=lambda: log.info("%s", self.describe()),
        )
        try:
            # Until `stop`; then it takes nothing new and gives pushes in flight their deadline to be
            # answered and acked.
            consumer.run(self.stop, busy=lambda: self._in_flight() > 0, grace=self.deadline + 1, flush=self._send_acks)
        finally:
            with self._cond:
                self.schedule.disconnected()  # what this connection delivered is RabbitMQ's again
                self._consumer = None

    def _connected(self, consumer: Consumer) -> None:
        self._acks = Acks()  # delivery tags start again at 1 on every channel
        with self._cond:
            self.schedule.connected()
            self._consumer = consumer

    def _in_flight(self) -> int:
        with self._cond:
            return self.schedule.in_flight

    def _on_message(self, method: Any, properties: Any, body: bytes) -> None:
        self._tell(self.schedule.delivered, method, properties, body)

    def _send_acks(self) -> None:
        """Send the acks the schedule hands out, coalesced (consumer's thread only)."""
        with self._cond:
            tags = self.schedule.acks()
            consumer = self._consumer
        if consumer is None or not tags:
            return
        try:
            for tag, multiple in self._acks.frames(tags):
                consumer.ack(tag, multiple)
        except Exception as exc:  # the channel is gone: RabbitMQ redelivers them, nothing is lost
            log.warning("%s: could not ack %d messages: %s", self.sub.name, len(tags), exc)

    # -- the push threads: take the next delivery, push it, tell the schedule the answer ---------

    def _push_loop(self) -> None:
        """One of `max_outstanding` push threads."""
        while True:
            todo = self._next()
            if todo is None:
                return
            self._work(todo)

    def _next(self) -> Todo | None:
        """The next push or dead letter to do, or None once stopping."""
        while True:
            with self._cond:
                if self.stop.is_set():
                    return None
                todo = self.schedule.take()
                if todo.push is None and todo.dead_letter is None and not todo.requeues:
                    self._wait(todo.wake)
                    continue
                if not self._clocks or self.schedule.ready:
                    self._cond.notify()  # no idle thread keeps the clock, or more is ready: wake one
            self._carry_out(todo, None)
            if todo.push is not None or todo.dead_letter is not None:
                return todo

    def _wait(self, wake: float) -> None:
        """Wait (holding the lock) for news, or until `wake` if no other idle push thread wakes by
        then: one thread keeps the schedule's clock (its sweeps, backoffs, flow control), the
        others sleep until notified, so an idle subscription wakes about once a second, not once
        a second per push thread."""
        if self._clocks and min(self._clocks) <= wake:
            self._cond.wait()
            return
        self._clocks.append(wake)
        try:
            self._cond.wait(max(0.001, wake - time.monotonic()))
        finally:
            self._clocks.remove(wake)

    def _work(self, todo: Todo) -> None:
        d = todo.push or todo.dead_letter
        assert d is not None
        with logs.context(**logs.fields(d.attributes)):  # its lines name the delivery, run and job
            self._deliver(todo, d)

    def _deliver(self, todo: Todo, d: Delivery) -> None:
        try:
            if todo.push is not None:
                outcome = self.pusher.push(self._request(d), self.deadline)
                if outcome.acked:
                    self._tell(self.schedule.acked, d)
                    return
                log.warning(
                    "%s: push of %s (attempt %d) failed: %s", self.sub.name, d.message_id, d.attempts + 1, outcome.error
                )
                todo = self._tell(self.schedule.nacked, d, outcome.error)
            if todo.dead_letter is not None:
                self._dead_letter(d)
        except Exception:  # never lose a delivery silently: it goes back to the schedule
            log.exception("%s: delivering %s failed", self.sub.name, d.message_id)
            self._tell(self.schedule.failed, d)

    def _request(self, d: Delivery) -> dict[str, Any]:
        return push.envelope(
            d.body,
            attributes=d.attributes,
            message_id=d.message_id,
            publish_ms=d.publish_ms(),
            subscription=self.path,
            delivery_attempt=d.attempts + 1,
            ordering_key=d.ordering_key,
        )

    # -- dead letters and re-queued copies (published from one publisher thread) ----------------

    def _publish(self, exchange: str, routing_key: str, d: Delivery, headers: dict[str, Any]) -> Future:
        return self._publisher.submit(
            self.broker.publish_raw,
            exchange,
            routing_key,
            d.body,
            message_id=d.message_id,
            message_type=d.properties.type or "",
            headers=headers,
            timestamp=d.properties.timestamp,
        )

    def _dead_letter(self, d: Delivery) -> None:
        headers = d.dead_letter_headers(self.sub, self.settings.project, uuid.uuid4().hex[:12], time.time())
        try:
            self._publish(self.sub.dead_letter_topic, d.routing_key, d, headers).result()
        except BrokerError as exc:
            log.error("%s: cannot dead-letter %s yet (%s); trying again later", self.sub.name, d.message_id, exc)
            self._tell(self.schedule.failed, d)
            return
        log.error(
            "%s: %s dead-lettered to %s after %d attempts; last error: %s",
            self.sub.name,
            d.message_id,
            self.sub.dead_letter_topic,
            d.attempts,
            d.last_error,
        )
        self._tell(self.schedule.dead_lettered, d)

    def _requeue(self, r: Requeue) -> None:
        """Publish the copy that takes a delivery's place; the schedule acks the original once confirmed."""
        d = r.delivery
        with logs.context(**logs.fields(d.attributes)):
            log.info("%s: %s re-queued with its retry state (held %.0fs)", self.sub.name, d.message_id, r.held)
        future = self._publish("", self.sub.queue, d, r.headers)
        future.add_done_callback(lambda f: self._requeued(r, f))

    def _requeued(self, r: Requeue, future: Future) -> None:
        error = future.exception()
        if error is not None:
            log.warning("%s: could not re-queue %s: %s", self.sub.name, r.delivery.message_id, error)
        self._tell(self.schedule.requeued, r, confirmed=error is None)


class Bridge:
    """Every subscription served at once, each by its own consumer, scheduler and push threads.

    `ack_deadline` replaces every subscription's ack deadline. It exists for tests, which need
    endpoints slower than the deadline without waiting 10 s: it may go below Pub/Sub's 10 s
    minimum that `Subscription` enforces, so production code never passes it.
    `consumer_timeout` defaults to the `TASUKI_CONSUMER_TIMEOUT` setting.
    """

    def __init__(
        self,
        settings: Settings,
        subscriptions: tuple[Subscription, ...] = topics.SUBSCRIPTIONS,
        *,
        ack_deadline: float | None = None,
        consumer_timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.servers = [
            SubscriptionServer(sub, settings, self.stop, ack_deadline=ack_deadline, consumer_timeout=consumer_timeout)
            for sub in subscriptions
        ]
        self.threads: list[threading.Thread] = []

    def start(self) -> Bridge:
        for server in self.servers:
            thread = threading.Thread(target=server.serve, name=f"sub-{server.sub.name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def close(self, timeout: float = 30) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(settings: Settings) -> None:
    bridge = Bridge(settings)  # invalid filters and settings are refused here, before anything runs
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop.set())
    # RabbitMQ may still be starting: wait for it
    keep_connected(
        lambda: Broker(settings.amqp_url).declare(pools=(settings.executor_pool,)),
        bridge.stop,
        log=log,
        what="cannot declare the topology yet",
    )
    bridge.start()
    ticker.start(settings, bridge.stop)
    try:
        while not bridge.stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close()
