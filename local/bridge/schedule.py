"""The bridge's decisions for one subscription: which message is pushed when, and what is acked.

`Schedule` is pure: no pika, no threads, no HTTP, and the clock is passed in (anything with
`monotonic()` and `time()`, such as the `time` module; tests pass a fake). It is told what
happened and answers what to do next; `server.SubscriptionServer` is the I/O shell that tells it
(under one lock) and carries the answers out.

    event                          told by                       answer (`Todo`)
    delivered(method, props, body) the consumer (RabbitMQ)       nothing yet, or an ack
    take()                         a free push thread            push this / dead-letter this /
                                                                 re-queue these / wait until t
    acked(d) / nacked(d, reason)   the push thread               acks, re-queues, or dead-letter it
    dead_lettered(d)               the push thread (confirmed)   an ack
    failed(d)                      the push thread (it broke)    re-queues, or nothing yet
    requeued(r, confirmed)         the publisher thread          an ack, or nothing yet
    connected() / disconnected()   the consumer                  -
    acks()                         the consumer's thread         the delivery tags to ack now

What it decides (Pub/Sub's push semantics, see `server` for how they reach the wire):

- Filters. A message that doesn't match the subscription's filter is acked without a push.
- Backoff. A nacked message is pushed again after `retry.delay(attempts)` (exponential between
  the minimum and maximum backoff); `deliveryAttempt` counts 1, 2, 3...
- Dead letters. After `max_delivery_attempts` pushes it is handed out to be dead-lettered (the
  shell publishes it, confirmed, with its history) and only then acked; a refused dead-letter
  publish is tried again after a backoff of at least 1 s.
- Flow control (`flowcontrol`). While the endpoint keeps failing the subscription slows down as
  a whole: the window of concurrent pushes halves and pushes pause up to 60 s, on top of each
  message's own backoff; successes open it again.
- Ordering. With ordering on, messages with the same ordering key are pushed one at a time in the
  order RabbitMQ delivered them; a nacked message holds its key back until it is acked or
  dead-lettered, while other keys go on.
- consumer_timeout. RabbitMQ closes a channel whose delivery stays unacked longer than
  consumer_timeout, and redelivers everything the channel held. A delivery is kept in memory only
  while it can still be pushed and answered in time (held + wait + ack deadline + margin <
  consumer_timeout); one that would run past that is *re-queued*: a copy carrying its state in
  headers (`delivery`: pushes made, not before, last error, park id, origin) goes to the
  subscription's own queue, and once the copy is confirmed the original is acked. When the copy
  comes back it takes the original's place, also in its ordering key's line; a key's messages go
  back together and in order. A refused copy leaves the original held (the next sweep tries again).
- Redeliveries. `deliveryAttempt` of a redelivered message counts RabbitMQ's redeliveries
  (`x-delivery-count`) on top of the pushes its headers carry, or the pushes this bridge
  remembers having made (by message id) if that is more, with the backoff still to wait.
- A lost connection. What it delivered is RabbitMQ's again: the lines, the parked copies and the
  acks not sent yet are forgotten; retry state, flow control and pushes in flight stay. A message
  settled (acked by its endpoint or dead-lettered) whose ack did not reach RabbitMQ is acked
  without a push when it comes again.
"""

from __future__ import annotations

import heapq
import itertools
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from tasuki.local.bridge.delivery import PARK_HEADER, Delivery, text
from tasuki.local.bridge.flowcontrol import FlowControl
from tasuki.shared import filters
from tasuki.shared.broker import attributes_of
from tasuki.shared.errors import ConfigError
from tasuki.shared.topics import Subscription

MEMORY = 10_000  # message ids remembered across reconnects (retry state, settled but not acked)
SWEEP = 1.0  # seconds between looks for deliveries to re-queue, at most


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


@dataclass(frozen=True, eq=False)
class Requeue:
    """A copy of `delivery` to publish (confirmed) to the subscription's own queue, with `headers`;
    report the outcome with `Schedule.requeued()`."""

    delivery: Delivery
    headers: dict[str, Any]
    tag: int  # the original's, acked once the copy is confirmed
    generation: int
    park_id: str
    held: float  # seconds RabbitMQ has waited for the original's ack


@dataclass
class Todo:
    """What the shell must do after telling the schedule something."""

    push: Delivery | None = None  # push it now; then acked(), nacked() or failed()
    dead_letter: Delivery | None = None  # publish it to the dead-letter topic; then dead_lettered() or failed()
    requeues: list[Requeue] = field(default_factory=list)  # publish these copies; then requeued()
    scheduled: int = 0  # deliveries that became ready or delayed: wake as many push threads
    send_acks: bool = False  # acks are waiting in `acks()` and no one was asked to send them yet
    wake: float = float("inf")  # take() found nothing to start: ask again at this monotonic time


@dataclass
class _Lines:
    """What the schedule holds of the current connection; replaced as a whole when it is lost."""

    ready: deque[tuple[Delivery, int]] = field(default_factory=deque)
    delayed: list[tuple[float, int, Delivery]] = field(default_factory=list)
    keys: dict[str, deque[Delivery]] = field(default_factory=dict)
    held: set[Delivery] = field(default_factory=set)  # unacked on the current connection, not parking
    parked: dict[str, Delivery] = field(default_factory=dict)  # park id -> waiting for its copy
    acks: list[int] = field(default_factory=list)  # delivery tags to ack on the current channel


class Schedule:
    """Everything the bridge holds of one subscription's messages, and every decision about them."""

    def __init__(self, sub: Subscription, *, ack_deadline: float, consumer_timeout: float, clock: Clock = time) -> None:
        self.sub = sub
        self.filter = filters.parse(sub.filter)  # FilterError, with the position, before anything runs
        self.deadline = ack_deadline
        self.consumer_timeout = consumer_timeout
        self.margin = min(60.0, consumer_timeout / 10)
        longest = ack_deadline + sub.retry.maximum_backoff + self.margin
        if longest >= consumer_timeout:
            raise ConfigError(
                f"subscription {sub.name}: ack deadline + maximum backoff + {self.margin:g}s margin is "
                f"{longest:g}s, not below RabbitMQ's consumer_timeout ({consumer_timeout:g}s): raise "
                f"TASUKI_CONSUMER_TIMEOUT together with the broker's consumer_timeout, or shorten the subscription's"
            )
        self.clock = clock
        self.flow = FlowControl(sub.max_outstanding, longest_pause=sub.retry.maximum_backoff)
        self.generation = 0  # of the current connection
        self._lines = _Lines()
        self._working: set[Delivery] = set()  # handed out by take() and not reported back yet
        self._tickets = itertools.count(1)
        self._next_sweep = 0.0
        self._retry_state: OrderedDict[str, tuple[int, float, str]] = (
            OrderedDict()
        )  # attempts, not before (epoch), error
        self._settled: OrderedDict[str, None] = OrderedDict()  # settled while their connection was lost

    @property
    def in_flight(self) -> int:
        """Pushes (and dead-letter publishes) handed out and not answered yet."""
        return len(self._working)

    # -- the connection ---------------------------------------------------------------------------

    def connected(self) -> None:
        """A new channel: its delivery tags start again at 1."""
        self.generation += 1

    def disconnected(self) -> None:
        """The connection is lost: what it delivered is RabbitMQ's again, it will redeliver it."""
        self.generation += 1
        self._lines = _Lines()

    def acks(self) -> list[int]:
        """The delivery tags to ack now on the current channel (they are handed out once)."""
        tags, self._lines.acks = self._lines.acks, []
        return tags

    # -- RabbitMQ delivers ------------------------------------------------------------------------

    def delivered(self, method: Any, properties: Any, body: bytes) -> Todo:
        """A message from RabbitMQ (`method.delivery_tag`, `properties.headers`, ...)."""
        todo = Todo()
        headers = dict(properties.headers or {})
        attributes = attributes_of(headers)
        if not self.filter.matches(attributes):  # as Pub/Sub: not for this subscription, acked unseen
            self._ack(method.delivery_tag, self.generation, todo)
            return todo
        message_id = properties.message_id or ""
        if message_id in self._settled:  # its endpoint acked it before the connection dropped
            del self._settled[message_id]
            self._ack(method.delivery_tag, self.generation, todo)
            return todo
        now, wall = self.clock.monotonic(), self.clock.time()
        lines = self._lines
        own = lines.parked.pop(text(headers.get(PARK_HEADER, "")), None)
        if own is not None:  # a copy this bridge re-queued: it takes the original's place
            own.tag, own.generation, own.received, own.park_id = method.delivery_tag, self.generation, now, ""
            own.state = "waiting"
            lines.held.add(own)
            if self._is_first(own):
                self._schedule(own, now, todo)
            return todo
        d = Delivery.received_from(
            method,
            properties,
            body,
            headers=headers,
            attributes=attributes,
            ordered=self.sub.ordering,
            generation=self.generation,
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
                return todo
            lines.keys[d.line] = deque([d])
        self._schedule(d, now, todo)
        return todo

    # -- a push thread is free ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Deliveries wait to be pushed now (if flow control lets them): worth another push thread."""
        return bool(self._lines.ready)

    def take(self) -> Todo:
        """The next delivery to push (or dead-letter) now, re-queues that are due, or when to ask again."""
        todo = Todo()
        now = self.clock.monotonic()
        lines = self._lines
        while lines.delayed and lines.delayed[0][0] <= now:
            _, ticket, d = heapq.heappop(lines.delayed)
            if d.ticket == ticket and d.state == "delayed":
                d.state = "ready"
                lines.ready.append((d, ticket))
        if now >= self._next_sweep:
            self._next_sweep = now + min(SWEEP, self.margin / 2)
            self._sweep(now, todo)
        while lines.ready and (lines.ready[0][0].ticket != lines.ready[0][1] or lines.ready[0][0].state != "ready"):
            lines.ready.popleft()  # re-scheduled or re-queued since
        if lines.ready and self.flow.may_start(self.in_flight, now):
            d, _ = lines.ready.popleft()
            d.state = "pushing"
            self._working.add(d)
            if d.dead_letter_due:
                todo.dead_letter = d
            else:
                todo.push = d
            return todo
        wake = [self._next_sweep]
        if lines.delayed:
            wake.append(lines.delayed[0][0])
        if lines.ready and self.in_flight < self.flow.window:
            wake.append(self.flow.paused_until)
        todo.wake = min(wake)
        return todo

    # -- what came of a push ------------------------------------------------------------------------

    def acked(self, d: Delivery) -> Todo:
        """The endpoint acked `d`: ack it in RabbitMQ, let the next message of its key go."""
        todo = Todo()
        if not self._report(d):
            return todo
        d.attempts += 1
        self.flow.succeeded()
        self._settle(d, todo)
        return todo

    def nacked(self, d: Delivery, reason: str) -> Todo:
        """The endpoint nacked `d` (or did not answer in time): back off, or dead-letter it."""
        todo = Todo()
        if d not in self._working:
            return todo
        now = self.clock.monotonic()
        d.attempts += 1
        d.last_error = reason
        self.flow.failed(now)
        if d.attempts >= self.sub.max_delivery_attempts:
            d.dead_letter_due = True
            if self._current(d):
                todo.dead_letter = d  # the same push thread publishes it next: still in flight
                return todo
        self._working.discard(d)
        if d.dead_letter_due:  # its connection is gone: RabbitMQ redelivers it, dead-lettered then, once
            self._remember(d, now)
        else:
            self._retry_later(d, now, todo)
        return todo

    def dead_lettered(self, d: Delivery) -> Todo:
        """The dead-letter publish of `d` was confirmed: ack it, let the next message of its key go."""
        todo = Todo()
        if self._report(d):
            self._settle(d, todo)
        return todo

    def failed(self, d: Delivery) -> Todo:
        """The push or the dead-letter publish of `d` broke (no answer to count): try again later."""
        todo = Todo()
        if self._report(d):
            self._retry_later(d, self.clock.monotonic(), todo)
        return todo

    def requeued(self, r: Requeue, *, confirmed: bool) -> Todo:
        """The copy of a re-queued delivery was published (confirmed), or not."""
        todo = Todo()
        d, lines = r.delivery, self._lines
        arrived = r.park_id not in lines.parked  # the copy already came back (or the connection was lost)
        if confirmed or arrived:
            if d.state == "parking":
                d.state = "parked"
            self._ack(r.tag, r.generation, todo)
            return todo
        del lines.parked[r.park_id]  # keep holding the original; the sweep tries again
        d.park_id = ""
        d.state = "waiting"
        lines.held.add(d)
        if self._is_first(d):
            self._schedule(d, self.clock.monotonic(), todo)
        return todo

    # -- inside -------------------------------------------------------------------------------------

    def _report(self, d: Delivery) -> bool:
        """`d` is back from its push thread; False if it was reported already."""
        if d not in self._working:
            return False
        self._working.discard(d)
        return True

    def _current(self, d: Delivery) -> bool:
        return d.generation == self.generation and d in self._lines.held

    def _is_first(self, d: Delivery) -> bool:
        return not d.line or self._lines.keys[d.line][0] is d

    def _schedule(self, d: Delivery, now: float, todo: Todo) -> None:
        """Queue `d` to be pushed once its time has come."""
        d.ticket = next(self._tickets)
        if d.not_before > now:
            d.state = "delayed"
            heapq.heappush(self._lines.delayed, (d.not_before, d.ticket, d))
        else:
            d.state = "ready"
            self._lines.ready.append((d, d.ticket))
        todo.scheduled += 1

    def _ack(self, tag: int, generation: int, todo: Todo) -> None:
        if generation != self.generation:  # its channel is gone: RabbitMQ redelivers it
            return
        self._lines.acks.append(tag)
        todo.send_acks = todo.send_acks or len(self._lines.acks) == 1

    def _settle(self, d: Delivery, todo: Todo) -> None:
        """`d` is done with (acked by its endpoint, or dead-lettered): ack it in RabbitMQ."""
        if self._retry_state:
            self._retry_state.pop(d.message_id, None)
        if not self._current(d):  # not acked in RabbitMQ: when it comes again, ack it unseen
            if d.message_id:
                self._settled[d.message_id] = None
                while len(self._settled) > MEMORY:
                    self._settled.popitem(last=False)
            return
        lines = self._lines
        lines.held.discard(d)
        d.state = "done"
        if d.line:
            waiting = lines.keys[d.line]
            waiting.remove(d)  # the first of its line
            if not waiting:
                del lines.keys[d.line]
            elif waiting[0].state == "waiting":
                self._schedule(waiting[0], self.clock.monotonic(), todo)
        self._ack(d.tag, d.generation, todo)

    def _retry_later(self, d: Delivery, now: float, todo: Todo) -> None:
        delay = self.sub.retry.delay(d.attempts)
        if d.dead_letter_due:
            delay = max(1.0, delay)
        d.not_before = now + delay
        self._remember(d, now)
        if not self._current(d):
            return  # its connection is gone; RabbitMQ redelivers it and the retry state is remembered
        if self._must_requeue(d, now):
            self._requeue(d, now, todo)
        else:
            self._schedule(d, now, todo)

    def _remember(self, d: Delivery, now: float) -> None:
        if d.message_id:
            self._retry_state[d.message_id] = (d.attempts, self.clock.time() + (d.not_before - now), d.last_error)
            self._retry_state.move_to_end(d.message_id)
            while len(self._retry_state) > MEMORY:
                self._retry_state.popitem(last=False)

    def _must_requeue(self, d: Delivery, now: float) -> bool:
        waits = max(0.0, d.not_before - now)
        return (now - d.received) + waits + self.deadline + self.margin >= self.consumer_timeout

    def _sweep(self, now: float, todo: Todo) -> None:
        """Re-queue what would otherwise stay unacked past consumer_timeout."""
        lines = self._lines
        due = [d for d in lines.held if d.state != "pushing" and self._must_requeue(d, now)]
        done: set[Delivery] = set()
        for d in sorted(due, key=lambda d: d.received):
            if d in done:
                continue
            # A key's messages go back together and in order, so that their copies queue in order.
            group = [x for x in lines.keys[d.line] if x in lines.held and x.state != "pushing"] if d.line else [d]
            done.update(group)
            for x in group:
                self._requeue(x, now, todo)

    def _requeue(self, d: Delivery, now: float, todo: Todo) -> None:
        """Hand out a copy of `d` with its retry state, to take its place at the end of the queue."""
        d.park_id = uuid.uuid4().hex
        d.state = "parking"
        self._lines.held.discard(d)
        self._lines.parked[d.park_id] = d
        headers = d.requeue_headers(self.clock.time() + max(0.0, d.not_before - now))
        todo.requeues.append(Requeue(d, headers, d.tag, d.generation, d.park_id, held=now - d.received))
