"""The RabbitMQ client: durable topology, confirmed persistent publishes, lazy connections.

Nothing connects at import or construction. Each thread gets its own connection on first use
(pika's BlockingConnection is not thread-safe), with publisher confirms on: `publish` returns
only once RabbitMQ took responsibility for the message, and raises `PublishRefused` when it did
not (a nack, or `mandatory` and no queue bound). Every pika error is translated into
`shared.errors`; a stale connection (broker restarted, heartbeat missed) is reopened once.

AMQP headers carry the Pub/Sub attributes as strings. Headers starting with `x-` are Tasuki's
own bookkeeping (ordering key, publish time, dead-letter history) and are not attributes.

The base classes `Publishing` and `MessageBroker` say what callers may count on, whichever broker
they are given: `Broker` here, the pipelined `shared.publisher.Publisher`, or
`shared.memory.MemoryBroker` (the same routing in this process, for tests). They publish once
for all of them, through `outgoing()`, so the properties and headers are the same whoever
publishes; each broker says only how it hands messages over.
"""

from __future__ import annotations

import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions as pe

from tasuki.shared import codec, topics
from tasuki.shared.errors import BrokerUnavailable, PublishRefused
from tasuki.shared.messages import Message

ORDERING_HEADER = "x-ordering-key"
PUBLISHED_HEADER = "x-published-ms"

_CONNECTION_ERRORS = (
    pe.AMQPConnectionError,
    pe.ConnectionClosed,
    pe.ChannelClosed,
    pe.StreamLostError,
    pe.ChannelWrongStateError,
    ConnectionError,
    OSError,
)


def connection_parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.stack_timeout = 10
    params.blocked_connection_timeout = 30
    return params


def connect(url: str) -> pika.BlockingConnection:
    """A new blocking connection, or `BrokerUnavailable` saying where we tried."""
    try:
        return pika.BlockingConnection(connection_parameters(url))
    except _CONNECTION_ERRORS as exc:
        raise not_opened(url, exc) from None


def not_opened(url: str, exc: BaseException) -> BrokerUnavailable:
    """Why a connection to RabbitMQ at `url` could not be opened (`exc`, pika's error). An
    asynchronous connection's workflow wraps the attempts' errors: the last one says why."""
    attempts = getattr(exc, "exceptions", None)
    if attempts:
        exc = attempts[-1]
    if isinstance(exc, pe.ProbableAuthenticationError):
        return BrokerUnavailable(f"RabbitMQ at {redact(url)} refused the credentials: {exc}")
    if isinstance(exc, pe.ProbableAccessDeniedError):
        return BrokerUnavailable(f"RabbitMQ at {redact(url)} denied access (vhost?): {exc}")
    return unreachable(url, exc)


def unreachable(url: str, exc: BaseException) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"cannot reach RabbitMQ at {redact(url)} ({type(exc).__name__}: {exc or 'no answer'}); "
        f"is it running? (`rabbitmqctl status`)"
    )


def unroutable(exchange: str, routing_key: str) -> str:
    """Why a mandatory message that no queue would take is refused."""
    return (
        f"no queue is bound to {exchange} for routing key {routing_key!r}: the message "
        f"would be lost; declare the topology (`tasuki topology declare`)"
    )


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    params = pika.URLParameters(url)
    return f"amqp://{params.credentials.username}:***@{params.host}:{params.port}/{params.virtual_host}"


def attributes_of(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The Pub/Sub attributes among AMQP headers (everything but Tasuki's `x-` bookkeeping)."""
    out = {}
    for key, value in (headers or {}).items():
        if key.startswith("x-"):
            continue
        out[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out


def headers_of(message: Message, attributes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The AMQP headers of a model: its attributes, its type, its ordering key."""
    headers: dict[str, Any] = {**message.attributes(), **(attributes or {}), "type": message.TYPE}
    if message.ordering_key():
        headers[ORDERING_HEADER] = message.ordering_key()
    return headers


@dataclass(frozen=True)
class Outgoing:
    """One message ready to publish: where to, its body and properties, whether a queue must take it."""

    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    mandatory: bool


def properties(
    message_id: str, message_type: str = "", headers: Mapping[str, Any] | None = None, timestamp: int | None = None
) -> pika.BasicProperties:
    """The AMQP properties of every publish: persistent, msgpack, its id and type, and the time it
    was published (`PUBLISHED_HEADER`, kept when the headers carry one already, as a replay's do)."""
    now = time.time()
    headers = dict(headers or {})
    headers.setdefault(PUBLISHED_HEADER, int(now * 1000))
    return pika.BasicProperties(
        content_type=codec.CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message_id,
        timestamp=timestamp or int(now),
        type=message_type or None,
        headers=headers,
    )


def outgoing(
    message: Message,
    *,
    message_id: str | None = None,
    attributes: Mapping[str, str] | None = None,
    mandatory: bool | None = None,
    body: bytes | None = None,
) -> Outgoing:
    """A model as it is published: encoded (unless `body` is that encoding already), a new message
    id unless given, its headers (`headers_of`), mandatory as its model says unless told."""
    return Outgoing(
        exchange=message.EXCHANGE,
        routing_key=message.routing_key,
        body=codec.encode(message) if body is None else body,
        properties=properties(message_id or uuid.uuid4().hex, message.TYPE, headers_of(message, attributes)),
        mandatory=message.MANDATORY if mandatory is None else mandatory,
    )


# -- what every broker promises ------------------------------------------------------------------


class Publishing(ABC):
    """What a caller may count on when it publishes, whichever broker it was given.

    - `publish` returns the message id (the given one, or a new unique one) only once the broker
      took responsibility for the message; `publish_all` returns once it took every one, and
      messages published together reach a queue in the order given.
    - A message goes to its model's exchange (`EXCHANGE`) under its routing key, and reaches every
      queue bound to that exchange with a matching topic pattern (`*` one word, `#` any number).
    - A `mandatory` message (the model's `MANDATORY` unless said otherwise) that would reach no
      queue raises `PublishRefused`, and so does a message for an exchange that does not exist;
      an unreachable broker raises `BrokerUnavailable`. Nothing else escapes.
    - The message carries the AMQP properties and headers of `outgoing()`: persistent, msgpack,
      its id, its `type`, its attributes as headers, `ORDERING_HEADER`, `PUBLISHED_HEADER`.

    A broker says only how it hands messages over (`_send`) and lets go of its connections (`close`).
    """

    def publish(
        self,
        message: Message,
        *,
        message_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
        mandatory: bool | None = None,
        body: bytes | None = None,
    ) -> str:
        """Publish a model; `body` is its encoding (`codec.encode`) when the caller has it already."""
        out = outgoing(message, message_id=message_id, attributes=attributes, mandatory=mandatory, body=body)
        self._send([out])
        return str(out.properties.message_id)

    def publish_all(self, messages: Sequence[tuple[Message, str, bytes | None]]) -> None:
        """Publish (message, message id, body already encoded or None) together, in order. On an
        error some may have been published: publishing them again under the same ids is how a
        caller retries."""
        self._send([outgoing(message, message_id=message_id, body=body) for message, message_id, body in messages])

    def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        message_type: str = "",
        headers: Mapping[str, Any] | None = None,
        mandatory: bool = True,
        timestamp: int | None = None,
    ) -> None:
        """Publish bytes as they are (used to dead-letter and replay without re-encoding)."""
        self._send(
            [Outgoing(exchange, routing_key, body, properties(message_id, message_type, headers, timestamp), mandatory)]
        )

    @abstractmethod
    def _send(self, batch: Sequence[Outgoing]) -> None:
        """Hand the messages over in order; return once the broker took every one."""

    @abstractmethod
    def close(self) -> None:
        """Let go of connections; the next publish opens what it needs again."""


class MessageBroker(Publishing):
    """A broker that can also declare Tasuki's topology (`declare_topology`)."""

    @abstractmethod
    def declare(
        self, pools: tuple[str, ...] = ("default",), subscriptions: tuple[topics.Subscription, ...] | None = None
    ) -> None: ...


# -- RabbitMQ ----------------------------------------------------------------------------------------


class Broker(MessageBroker):
    """Publishes messages to Tasuki's exchanges; one lazily opened connection per thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    # -- connections ----------------------------------------------------------------------------

    def _channel(self) -> Any:
        channel = getattr(self._local, "channel", None)
        if channel is not None and channel.is_open:
            return channel
        self.close()
        connection = connect(self.url)
        channel = connection.channel()
        channel.confirm_delivery()
        self._local.connection, self._local.channel = connection, channel
        return channel

    def close(self) -> None:
        """Close this thread's connection, if any."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = self._local.channel = None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # closing a broken connection: nothing left to save
                pass

    @contextmanager
    def channel(self) -> Iterator[Any]:
        """A channel on a fresh connection, for topology and queue inspection; errors translated."""
        connection = connect(self.url)
        try:
            yield connection.channel()
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"lost RabbitMQ at {redact(self.url)}: {exc}") from None
        finally:
            if connection.is_open:
                connection.close()

    # -- publishing ------------------------------------------------------------------------------

    def _send(self, batch: Sequence[Outgoing]) -> None:
        """Each in turn, each confirmed before the next (`Publisher` overlaps the confirms)."""
        for out in batch:
            self._send_one(out)

    def _send_one(self, out: Outgoing) -> None:
        for attempt in (1, 2):
            try:
                self._channel().basic_publish(
                    out.exchange, out.routing_key, out.body, out.properties, mandatory=out.mandatory
                )
                return
            except pe.UnroutableError:
                raise PublishRefused(unroutable(out.exchange, out.routing_key)) from None
            except pe.NackError:
                raise PublishRefused(f"RabbitMQ refused the message for {out.exchange} {out.routing_key!r}") from None
            except pe.ChannelClosedByBroker as exc:
                self.close()
                raise PublishRefused(f"RabbitMQ closed the channel: {exc.reply_text}") from None
            except _CONNECTION_ERRORS as exc:
                self.close()
                if attempt == 2:
                    raise BrokerUnavailable(
                        f"cannot publish to RabbitMQ at {redact(self.url)}: {type(exc).__name__} {exc}"
                    ) from None

    # -- topology ---------------------------------------------------------------------------------

    def declare(
        self, pools: tuple[str, ...] = ("default",), subscriptions: tuple[topics.Subscription, ...] | None = None
    ) -> None:
        """Declare every exchange, subscription queue, executor queue and the dead-letter queue."""
        with self.channel() as ch:
            declare_topology(ch, pools, subscriptions)


def declare_topology(
    ch: Any, pools: tuple[str, ...] = ("default",), subscriptions: tuple[topics.Subscription, ...] | None = None
) -> None:
    """Declare `topics.topology()`: the same exchanges, queues and bindings as the definitions file."""
    topo = topics.topology(pools, subscriptions if subscriptions is not None else topics.SUBSCRIPTIONS)
    for exchange in topo.exchanges:
        ch.exchange_declare(exchange, exchange_type="topic", durable=True)
    for queue in topo.queues:
        ch.queue_declare(queue.name, durable=True, arguments=queue.arguments)
    for binding in topo.bindings:
        ch.queue_bind(binding.queue, binding.exchange, routing_key=binding.key)
