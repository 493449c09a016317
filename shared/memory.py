"""The in-memory broker: RabbitMQ's topic routing inside this process, for tests (dramatiq's
`StubBroker` is the model).

`MemoryBroker` keeps the promises of `shared.broker.MessageBroker` the way RabbitMQ keeps them,
so a handler cannot tell it from the real one:

- exchanges are topic exchanges; a queue bound with a pattern receives every message whose
  routing key matches it, words split on dots, `*` standing for one word and `#` for any number
  (none too); the default exchange "" delivers to the queue named by the routing key;
- `declare()` declares `topics.topology()` through `declare_topology`, as on RabbitMQ;
- a mandatory message that reaches no queue, or a message for an exchange not declared, raises
  `PublishRefused`; nothing is kept of it;
- messages carry the properties and headers of `broker.outgoing()` (the same helper the real
  brokers use), and queues keep them in the order they were published.

Nothing is durable: the broker lives as long as the object. A test reads what was published with
`take(queue)` (removes what is waiting, as `basic_get` would), `waiting(queue)` (looks only) or
`published` (every message the broker took, in order, routed or not). `Published.message()`
decodes one by its `type`. `down()` and `up()` take the broker away and bring it back, for tests
of what callers do when RabbitMQ is unavailable.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pika

from tasuki.shared import codec, topics
from tasuki.shared.broker import (
    ORDERING_HEADER,
    MessageBroker,
    Outgoing,
    attributes_of,
    declare_topology,
    unroutable,
)
from tasuki.shared.errors import BrokerError, BrokerUnavailable, PublishRefused
from tasuki.shared.messages import MODELS, Message

DEFAULT_EXCHANGE = ""


@dataclass(frozen=True)
class Published:
    """A message as the broker holds it: where it was published to, its AMQP properties, its body."""

    exchange: str
    routing_key: str
    properties: pika.BasicProperties
    body: bytes

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.properties.headers or {})

    @property
    def attributes(self) -> dict[str, str]:
        return attributes_of(self.properties.headers)

    @property
    def ordering_key(self) -> str:
        return str(self.headers.get(ORDERING_HEADER, ""))

    def message(self) -> Message:
        """The body decoded into the model its `type` names."""
        return codec.decode(self.body, MODELS[self.properties.type])


def words(key: str) -> tuple[str, ...]:
    """A routing key or binding pattern as RabbitMQ splits it: on dots, "" being no word at all."""
    return tuple(key.split(".")) if key else ()


def matches(pattern: str, routing_key: str) -> bool:
    """Whether a topic binding `pattern` takes `routing_key`: `*` is exactly one word, `#` is
    zero or more words, any other word must be equal."""
    want, have = words(pattern), words(routing_key)

    @cache
    def match(p: int, k: int) -> bool:  # does want[p:] match have[k:]?
        if p == len(want):
            return k == len(have)
        if want[p] == "#":
            return match(p + 1, k) or (k < len(have) and match(p, k + 1))
        return k < len(have) and want[p] in ("*", have[k]) and match(p + 1, k + 1)

    return match(0, 0)


class MemoryBroker(MessageBroker):
    """Exchanges, queues and bindings in memory; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bindings: dict[str, list[tuple[str, str]]] = {}  # exchange -> [(pattern, queue)]
        self._queues: dict[str, deque[Published]] = {}
        self.arguments: dict[str, dict[str, Any]] = {}  # each queue's arguments, as declared
        self.published: list[Published] = []
        self._down = False

    # -- topology: a channel's calls, so that `declare_topology` declares here as on RabbitMQ -----

    def exchange_declare(self, exchange: str, exchange_type: str = "topic", durable: bool = True) -> None:
        self._check_up()
        if exchange_type != "topic":
            raise BrokerError(f"only topic exchanges are routed in memory, not {exchange_type!r} ({exchange})")
        if not exchange:
            raise BrokerError("the default exchange cannot be declared")
        with self._lock:
            self._bindings.setdefault(exchange, [])

    def queue_declare(self, queue: str, durable: bool = True, arguments: Mapping[str, Any] | None = None) -> None:
        """Declare a queue; declaring it again with other arguments is refused, as RabbitMQ does."""
        self._check_up()
        wanted = dict(arguments or {})
        with self._lock:
            if queue in self._queues and self.arguments[queue] != wanted:
                raise BrokerError(
                    f"queue {queue} exists with arguments {self.arguments[queue]}, cannot declare it with {wanted}"
                )
            self._queues.setdefault(queue, deque())
            self.arguments[queue] = wanted

    def queue_bind(self, queue: str, exchange: str, routing_key: str = "") -> None:
        self._check_up()
        with self._lock:
            if exchange not in self._bindings:
                raise BrokerError(f"cannot bind {queue}: no exchange {exchange!r}")
            if queue not in self._queues:
                raise BrokerError(f"cannot bind to {exchange}: no queue {queue!r}")
            if (routing_key, queue) not in self._bindings[exchange]:
                self._bindings[exchange].append((routing_key, queue))

    def declare(
        self, pools: tuple[str, ...] = ("default",), subscriptions: tuple[topics.Subscription, ...] | None = None
    ) -> None:
        """Declare every exchange, subscription queue, executor queue and the dead-letter queue."""
        declare_topology(self, pools, subscriptions)

    # -- publishing ---------------------------------------------------------------------------------

    def _send(self, batch: Sequence[Outgoing]) -> None:
        for out in batch:
            self._route(out)

    def _route(self, out: Outgoing) -> None:
        self._check_up()
        published = Published(out.exchange, out.routing_key, out.properties, out.body)
        with self._lock:
            if out.exchange == DEFAULT_EXCHANGE:
                queues = [out.routing_key] if out.routing_key in self._queues else []
            elif out.exchange in self._bindings:
                bound = self._bindings[out.exchange]
                queues = list(dict.fromkeys(q for pattern, q in bound if matches(pattern, out.routing_key)))
            else:
                raise PublishRefused(f"no exchange {out.exchange!r}: declare the topology (`tasuki topology declare`)")
            if not queues and out.mandatory:
                raise PublishRefused(unroutable(out.exchange, out.routing_key))
            for queue in queues:
                self._queues[queue].append(published)
            self.published.append(published)

    def close(self) -> None:
        """Nothing to let go of: no connection."""

    def down(self) -> None:
        """Take the broker away: publishing and declaring raise `BrokerUnavailable` until `up()`.
        What waits in the queues stays there."""
        self._down = True

    def up(self) -> None:
        self._down = False

    def _check_up(self) -> None:
        if self._down:
            raise BrokerUnavailable("cannot reach the broker: the in-memory stand-in for RabbitMQ is down")

    # -- reading, for tests -----------------------------------------------------------------------

    def take(self, queue: str) -> list[Published]:
        """Every message waiting in `queue`, oldest first, removing them."""
        with self._lock:
            waiting = self._queue(queue)
            taken = list(waiting)
            waiting.clear()
        return taken

    def waiting(self, queue: str) -> list[Published]:
        """Every message waiting in `queue`, oldest first, leaving them there."""
        with self._lock:
            return list(self._queue(queue))

    def queues(self) -> dict[str, int]:
        """How many messages wait in each queue."""
        with self._lock:
            return {name: len(waiting) for name, waiting in self._queues.items()}

    def _queue(self, queue: str) -> deque[Published]:
        try:
            return self._queues[queue]
        except KeyError:
            raise BrokerError(f"no queue {queue!r}; declared: {', '.join(sorted(self._queues)) or 'none'}") from None
