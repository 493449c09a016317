"""The push bridge: serves each subscription's queue to its handler as Pub/Sub push requests.

For every subscription in `shared.topics.SUBSCRIPTIONS` the bridge holds one RabbitMQ consumer
(prefetch `8 * max_outstanding`), and pushes each message to the handler's URL as Pub/Sub does
(`shared.push.envelope`, `Authorization: Bearer <JWT>`, see `local.pusher`):

- 102, 200, 201, 202, 204 ack; another status, a connection error or no answer within the ack
  deadline is a nack. RabbitMQ is acked only once the handler acked, or once the dead-letter
  publish was confirmed: a bridge that dies loses nothing, RabbitMQ hands its unacked messages
  to the next one. Every consumer reconnects by itself (0.5 s doubling to 10 s).
- A nacked message is pushed again after `retry.delay(attempts)` (exponential between the
  minimum and maximum backoff); `deliveryAttempt` counts 1, 2, 3... After
  `max_delivery_attempts` pushes it is published (confirmed) to the subscription's dead-letter
  topic with its body, its attributes, Pub/Sub's `CloudPubSubDeadLetterSource*` attributes and
  Tasuki's history headers (`shared.deadletters` reads them), and only then acked.
- While the endpoint keeps failing, the subscription slows down as a whole (`local.flowcontrol`:
  the window of concurrent pushes halves, and pushes pause up to 60 s), on top of each message's
  own backoff. Messages that don't match the subscription's filter are acked without a push.
- With ordering on, messages with the same ordering key are pushed one at a time in the order
  RabbitMQ delivered them; a nacked message holds its key back until it is acked or
  dead-lettered, while other keys go on. Messages waiting behind their key count against the
  prefetch: a key with more than `8 * max_outstanding` messages waiting holds the others back too.

RabbitMQ's consumer_timeout. RabbitMQ (3.8.15+) closes a channel whose delivery stays unacked
longer than `consumer_timeout` (30 min by default), which would redeliver everything the channel
held. A message waiting in memory (backoff, or behind its ordering key) is unacked all that time,
and 100 attempts with 600 s backoffs take hours. So the bridge keeps a delivery in memory only
while it can still be pushed and answered in time (held + wait + ack deadline + margin <
consumer_timeout, the `TASUKI_CONSUMER_TIMEOUT` setting). A delivery that would run past that is
*re-queued*: a copy goes to the subscription's own queue (default exchange, confirmed) carrying
its state in headers (`local.delivery`: pushes made, not before, last error, park id, original
exchange and key), then the original is acked; when the copy comes back
it takes the original's place, also in its ordering key's line. Short backoffs (all of them with
Google's defaults and five attempts) never leave memory. The broker's configuration is left
alone: RabbitMQ 3.10 only has the global setting, shared by every application on the broker.

What the bridge cannot know after it was killed: `deliveryAttempt` then counts RabbitMQ's
redeliveries (`x-delivery-count`) on top of `x-delivery-attempt`, an estimate as in Pub/Sub; and
a message re-queued because its key was blocked for longer than consumer_timeout can be
overtaken by a later message of its key that was still in the queue when the bridge died.
Durable quorum queues and persistent messages carry everything across a RabbitMQ restart.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import signal
import threading
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pika.exceptions as pe

from tasuki.local.bridge.acks import Acks
from tasuki.local.bridge.delivery import PARK_HEADER, Delivery, text
from tasuki.local.bridge.flowcontrol import FlowControl
from tasuki.local.bridge.pusher import Outcome, Pusher
from tasuki.shared import broker as brokers
from tasuki.shared import filters, logs, push, topics
from tasuki.shared.broker import Broker, attributes_of
from tasuki.shared.errors import BrokerError, ConfigError
from tasuki.shared.settings import Settings
from tasuki.shared.topics import Subscription

log = logging.getLogger("tasuki.bridge")

PREFETCH_PER_PUSH = 8
MEMORY = 10_000  # message ids remembered across reconnects (retry state, acks that did not reach RabbitMQ)


@dataclass
class _Lines:
    """What the scheduler holds; replaced as a whole when the connection is lost."""

    ready: deque[tuple[Delivery, int]] = field(default_factory=deque)
    delayed: list[tuple[float, int, Delivery]] = field(default_factory=list)
    keys: dict[str, deque[Delivery]] = field(default_factory=dict)
    held: set[Delivery] = field(default_factory=set)  # unacked on the current connection, not parking
    parked: dict[str, Delivery] = field(default_factory=dict)  # park id -> waiting for its copy


class SubscriptionServer:
    """Consumes one subscription's queue and pushes each message to its endpoint."""

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
        self.filter = filters.parse(sub.filter)  # FilterError, with the position, before anything runs
        self.deadline = float(ack_deadline or sub.ack_deadline)
        self.consumer_timeout = float(consumer_timeout or settings.consumer_timeout)
        self.margin = min(60.0, self.consumer_timeout / 10)
        longest = self.deadline + sub.retry.maximum_backoff + self.margin
        if longest >= self.consumer_timeout:
            raise ConfigError(
                f"subscription {sub.name}: ack deadline + maximum backoff + {self.margin:g}s margin is "
                f"{longest:g}s, not below RabbitMQ's consumer_timeout ({self.consumer_timeout:g}s): raise "
                f"TASUKI_CONSUMER_TIMEOUT together with the broker's consumer_timeout, or shorten the subscription's"
            )
        self.endpoint = settings.endpoint(sub.endpoint)
        self.path = push.subscription_path(settings.project, sub.name)
        self.pusher = Pusher(self.endpoint, settings.signing_key(), connections=sub.max_outstanding)
        self.flow = FlowControl(sub.max_outstanding, longest_pause=sub.retry.maximum_backoff)
        self.prefetch = min(65535, max(32, sub.max_outstanding * PREFETCH_PER_PUSH))
        self.broker = Broker(settings.amqp_url)
        self._publisher = ThreadPoolExecutor(1, thread_name_prefix=f"publish-{sub.name}")
        self._cond = threading.Condition()
        self._tickets = itertools.count(1)
        self._generation = 0
        self._connection: Any = None
        self._channel: Any = None
        self._lines = _Lines()
        self._in_flight = 0
        self._next_sweep = 0.0
        self._unacked: list[int] = []  # acks waiting for the consumer's thread to send them
        self._acks = Acks()
        self._retry_state: OrderedDict[str, tuple[int, float, str]] = (
            OrderedDict()
        )  # id -> attempts, not before (epoch), error
        self._acked_unconfirmed: OrderedDict[str, None] = OrderedDict()

    def describe(self) -> str:
        sub = self.sub
        return (
            f"{sub.name}: pushing {sub.queue} to {self.endpoint} (ack deadline {self.deadline:g}s, backoff "
            f"{sub.retry.minimum_backoff:g}-{sub.retry.maximum_backoff:g}s, dead letter after "
            f"{sub.max_delivery_attempts} attempts{', ordered' if sub.ordering else ''}"
            f"{', filter ' + sub.filter if sub.filter else ''})"
        )

    # -- the consumer: RabbitMQ in, acks out (one thread, owns the connection) -------------------

    def serve(self) -> None:
        workers = [
            threading.Thread(target=self._push_loop, name=f"push-{self.sub.name}-{n}", daemon=True)
            for n in range(self.sub.max_outstanding)
        ]
        for worker in workers:
            worker.start()
        delay = 0.5
        while not self.stop.is_set():
            try:
                self._consume()
                delay = 0.5
            except (BrokerError, pe.AMQPError, OSError, ValueError) as exc:
                # pika raises ValueError too when used on a connection that just broke
                log.warning(
                    "%s: RabbitMQ connection lost (%s: %s); reconnecting in %.1fs",
                    self.sub.name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self.stop.wait(delay)
                delay = min(delay * 2, 10)
        for worker in workers:
            worker.join()
        self._publisher.submit(self.broker.close)
        self._publisher.shutdown(wait=True)
        self.pusher.close()

    def _consume(self) -> None:
        connection = brokers.connect(self.settings.amqp_url)
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.prefetch)
            self._acks = Acks()  # delivery tags start again at 1 on every channel
            with self._cond:
                self._generation += 1
                self._connection, self._channel = connection, channel
            tag = channel.basic_consume(self.sub.queue, self._on_message)
            log.info("%s", self.describe())
            while not self.stop.is_set():
                connection.process_data_events(time_limit=0.2)
            # Stopping: take nothing new, give pushes in flight their deadline to be answered and acked.
            channel.basic_cancel(tag)
            until = time.monotonic() + self.deadline + 1
            while self._in_flight and time.monotonic() < until:
                connection.process_data_events(time_limit=0.1)
            connection.process_data_events(time_limit=0)
        finally:
            with self._cond:
                self._generation += 1  # what this connection delivered is RabbitMQ's again
                self._lines = _Lines()
                self._unacked = []
                self._connection = self._channel = None
            if connection.is_open:
                try:
                    connection.close()
                except Exception:  # closing a broken connection: nothing left to save
                    pass

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = dict(properties.headers or {})
        attributes = attributes_of(headers)
        if not self.filter.matches(attributes):
            self._send_acks(channel, [method.delivery_tag])  # as Pub/Sub: not for this subscription, acked unseen
            return
        now, wall = time.monotonic(), time.time()
        message_id = properties.message_id or ""
        with self._cond:
            lines = self._lines
            if message_id in self._acked_unconfirmed:  # its endpoint acked it before the connection dropped
                del self._acked_unconfirmed[message_id]
                self._send_acks(channel, [method.delivery_tag])
                return
            own = lines.parked.pop(text(headers.get(PARK_HEADER, "")), None)
            if own is not None:  # a copy this bridge re-queued: it takes the original's place
                own.tag, own.generation, own.received, own.park_id = method.delivery_tag, self._generation, now, ""
                own.state = "waiting"
                lines.held.add(own)
                if self._is_first(own):
                    self._schedule(own, now)
                return
            d = Delivery.received_from(
                method,
                properties,
                body,
                headers=headers,
                attributes=attributes,
                ordered=self.sub.ordering,
                generation=self._generation,
                now=now,
                wall=wall,
            )
            remembered = self._retry_state.get(message_id) if message_id else None
            if remembered is not None:
                d.attempts = max(d.attempts, remembered[0])
                d.not_before = max(d.not_before, now + (remembered[1] - wall))
                d.last_error = d.last_error or remembered[2]
            d.dead_letter_due = d.attempts >= self.sub.max_delivery_attempts
            lines.held.add(d)
            if d.line:
                waiting = lines.keys.get(d.line)
                if waiting is not None:
                    waiting.append(d)
                    return
                lines.keys[d.line] = deque([d])
            self._schedule(d, now)

    def _ack(self, d: Delivery, tag: int, generation: int) -> None:
        """Ack `tag` from the consumer's thread, if the connection that delivered it is still there.

        Acks are batched: one wake-up of the consumer's thread sends every ack waiting by then."""
        with self._cond:
            connection = self._queue_ack(tag, generation)
        if connection is not None:
            self._wake_for_acks(connection, d)

    def _queue_ack(self, tag: int, generation: int) -> Any:
        """Queue an ack (lock held); the connection to wake when no flush is on its way yet."""
        if generation != self._generation:
            return None
        self._unacked.append(tag)
        return self._connection if len(self._unacked) == 1 else None

    def _wake_for_acks(self, connection: Any, d: Delivery) -> None:
        try:
            connection.add_callback_threadsafe(self._flush_acks)
        except Exception as exc:  # the connection is gone: RabbitMQ redelivers, nothing is lost
            log.warning("%s: could not ack %s: %s", self.sub.name, d.message_id, exc)

    def _flush_acks(self) -> None:
        with self._cond:
            tags, self._unacked = self._unacked, []
            channel = self._channel
        if channel is not None:
            self._send_acks(channel, tags)

    def _send_acks(self, channel: Any, tags: list[int]) -> None:
        """Send acks, coalesced (consumer's thread only)."""
        try:
            for tag, multiple in self._acks.frames(tags):
                channel.basic_ack(tag, multiple=multiple)
        except Exception as exc:  # the channel is gone: RabbitMQ redelivers them, nothing is lost
            log.warning("%s: could not ack %d messages: %s", self.sub.name, len(tags), exc)

    # -- the scheduler: which message is pushed when (one thread) -------------------------------

    def _is_first(self, d: Delivery) -> bool:
        return not d.line or self._lines.keys[d.line][0] is d

    def _schedule(self, d: Delivery, now: float) -> None:
        """Queue `d` to be pushed once its time has come (lock held)."""
        d.ticket = next(self._tickets)
        if d.not_before > now:
            d.state = "delayed"
            heapq.heappush(self._lines.delayed, (d.not_before, d.ticket, d))
        else:
            d.state = "ready"
            self._lines.ready.append((d, d.ticket))
        self._cond.notify()

    def _push_loop(self) -> None:
        """One of `max_outstanding` push threads: take the next message that may go, push it."""
        while True:
            with self._cond:
                d = None
                while d is None and not self.stop.is_set():
                    d = self._take()
            if d is None:
                return
            self._work(d)

    def _take(self) -> Delivery | None:
        """The next delivery to push now, or None after waiting until something may change (lock held)."""
        now = time.monotonic()
        lines = self._lines
        while lines.delayed and lines.delayed[0][0] <= now:
            _, ticket, d = heapq.heappop(lines.delayed)
            if d.ticket == ticket and d.state == "delayed":
                d.state = "ready"
                lines.ready.append((d, ticket))
        if now >= self._next_sweep:
            self._next_sweep = now + min(1.0, self.margin / 2)
            self._sweep(now)
        while lines.ready and (lines.ready[0][0].ticket != lines.ready[0][1] or lines.ready[0][0].state != "ready"):
            lines.ready.popleft()
        if lines.ready and self.flow.may_start(self._in_flight, now):
            d, _ = lines.ready.popleft()
            d.state = "pushing"
            self._in_flight += 1
            return d
        wake = [self._next_sweep]
        if lines.delayed:
            wake.append(lines.delayed[0][0])
        if lines.ready and self._in_flight < self.flow.window:
            wake.append(self.flow.paused_until)
        self._cond.wait(max(0.001, min(wake) - now))
        return None

    def _must_requeue(self, d: Delivery, now: float) -> bool:
        waits = max(0.0, d.not_before - now)
        return (now - d.received) + waits + self.deadline + self.margin >= self.consumer_timeout

    def _sweep(self, now: float) -> None:
        """Re-queue what would otherwise stay unacked past consumer_timeout (lock held)."""
        due = [d for d in self._lines.held if d.state != "pushing" and self._must_requeue(d, now)]
        done: set[Delivery] = set()
        for d in sorted(due, key=lambda d: d.received):
            if d in done:
                continue
            # A key's messages go back together and in order, so that their copies queue in order.
            group = (
                [x for x in self._lines.keys[d.line] if x in self._lines.held and x.state != "pushing"]
                if d.line
                else [d]
            )
            done.update(group)
            for x in group:
                self._requeue(x, now)

    # -- one push, and what follows from its answer (push threads) ------------------------------

    def _work(self, d: Delivery) -> None:
        with logs.context(**logs.fields(d.attributes)):
            self._deliver(d)

    def _deliver(self, d: Delivery) -> None:
        try:
            if not d.dead_letter_due:
                outcome = self.pusher.push(self._request(d), self.deadline)
                d.attempts += 1
                self._answered(d, outcome)
                if outcome.acked:
                    return
            if d.dead_letter_due:
                self._dead_letter(d)
        except Exception:  # never lose a delivery silently: it goes back to the scheduler
            log.exception("%s: delivering %s failed", self.sub.name, d.message_id)
            self._retry_later(d)
        finally:
            with self._cond:  # this thread takes the next push itself: no one to wake
                self._in_flight -= 1

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

    def _answered(self, d: Delivery, outcome: Outcome) -> None:
        if outcome.acked:
            self._settle(d, pushed=True)
            return
        with self._cond:
            self.flow.failed(time.monotonic())
        d.last_error = outcome.error
        log.warning("%s: push of %s (attempt %d) failed: %s", self.sub.name, d.message_id, d.attempts, outcome.error)
        if d.attempts >= self.sub.max_delivery_attempts:
            d.dead_letter_due = True
        else:
            self._retry_later(d)

    def _retry_later(self, d: Delivery) -> None:
        now = time.monotonic()
        delay = self.sub.retry.delay(d.attempts)
        if d.dead_letter_due:
            delay = max(1.0, delay)
        with self._cond:
            d.not_before = now + delay
            self._remember(d, now)
            if not self._current(d):
                return  # its connection is gone; RabbitMQ redelivers it and the retry state is remembered
            if self._must_requeue(d, now):
                self._requeue(d, now)
            else:
                self._schedule(d, now)

    def _remember(self, d: Delivery, now: float) -> None:
        if d.message_id:
            self._retry_state[d.message_id] = (d.attempts, time.time() + (d.not_before - now), d.last_error)
            self._retry_state.move_to_end(d.message_id)
            while len(self._retry_state) > MEMORY:
                self._retry_state.popitem(last=False)

    def _current(self, d: Delivery) -> bool:
        return d.generation == self._generation and d in self._lines.held

    def _settle(self, d: Delivery, *, pushed: bool) -> None:
        """Ack `d` in RabbitMQ and let the next message of its key go."""
        with self._cond:
            if pushed:
                self.flow.succeeded()
            if self._retry_state:
                self._retry_state.pop(d.message_id, None)
            if not self._current(d):
                if pushed and d.message_id:  # acked by the endpoint, not in RabbitMQ: don't push it again
                    self._acked_unconfirmed[d.message_id] = None
                    while len(self._acked_unconfirmed) > MEMORY:
                        self._acked_unconfirmed.popitem(last=False)
                return
            lines = self._lines
            lines.held.discard(d)
            d.state = "done"
            if d.line:
                waiting = lines.keys[d.line]
                waiting.popleft()
                if not waiting:
                    del lines.keys[d.line]
                elif waiting[0].state == "waiting":
                    self._schedule(waiting[0], time.monotonic())
            connection = self._queue_ack(d.tag, d.generation)
        if connection is not None:
            self._wake_for_acks(connection, d)

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
        with self._cond:
            if not self._current(d):  # RabbitMQ redelivers it; dead-lettered then, once
                self._remember(d, time.monotonic())
                return
        headers = d.dead_letter_headers(self.sub, self.settings.project, uuid.uuid4().hex[:12], time.time())
        try:
            self._publish(self.sub.dead_letter_topic, d.routing_key, d, headers).result()
        except BrokerError as exc:
            log.error("%s: cannot dead-letter %s yet (%s); trying again later", self.sub.name, d.message_id, exc)
            self._retry_later(d)
            return
        log.error(
            "%s: %s dead-lettered to %s after %d attempts; last error: %s",
            self.sub.name,
            d.message_id,
            self.sub.dead_letter_topic,
            d.attempts,
            d.last_error,
        )
        self._settle(d, pushed=False)

    def _requeue(self, d: Delivery, now: float) -> None:
        """Put a copy of `d` with its retry state at the end of the queue, then ack `d` (lock held)."""
        d.park_id = uuid.uuid4().hex
        d.state = "parking"
        self._lines.held.discard(d)
        self._lines.parked[d.park_id] = d
        headers = d.requeue_headers(time.time() + max(0.0, d.not_before - now))
        with logs.context(**logs.fields(d.attributes)):
            log.info(
                "%s: %s re-queued with its retry state (held %.0fs)", self.sub.name, d.message_id, now - d.received
            )
        lines, tag, generation, park_id = self._lines, d.tag, d.generation, d.park_id
        future = self._publish("", self.sub.queue, d, headers)
        future.add_done_callback(lambda f: self._requeued(d, f, lines, tag, generation, park_id))

    def _requeued(self, d: Delivery, future: Future, lines: _Lines, tag: int, generation: int, park_id: str) -> None:
        with self._cond:
            arrived = park_id not in lines.parked  # the copy already came back (or the connection was lost)
            if future.exception() is None or arrived:
                if d.state == "parking":
                    d.state = "parked"
                failed = False
            else:
                failed = True
                del lines.parked[park_id]
                d.park_id = ""
                if generation == self._generation:  # keep holding the original; the sweep tries again
                    d.state = "waiting"
                    lines.held.add(d)
                    if self._is_first(d):
                        self._schedule(d, time.monotonic())
        if failed:
            log.warning("%s: could not re-queue %s: %s", self.sub.name, d.message_id, future.exception())
        else:
            self._ack(d, tag, generation)


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
    delay = 0.5
    while not bridge.stop.is_set():  # RabbitMQ may still be starting: wait for it
        try:
            Broker(settings.amqp_url).declare(pools=(settings.executor_pool,))
            break
        except BrokerError as exc:
            log.warning("cannot declare the topology yet (%s); trying again in %.1fs", exc, delay)
            bridge.stop.wait(delay)
            delay = min(delay * 2, 10)
    bridge.start()
    try:
        while not bridge.stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close()
