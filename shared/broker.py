"""The RabbitMQ client: durable topology, confirmed persistent publishes, lazy connections.

Nothing connects at import or construction. Each thread gets its own connection on first use
(pika's BlockingConnection is not thread-safe), with publisher confirms on: `publish` returns
only once RabbitMQ took responsibility for the message, and raises `PublishRefused` when it did
not (a nack, or `mandatory` and no queue bound). Every pika error is translated into
`shared.errors`; a stale connection (broker restarted, heartbeat missed) is reopened once.

AMQP headers carry the Pub/Sub attributes as strings. Headers starting with `x-` are Tasuki's
own bookkeeping (ordering key, publish time, dead-letter history) and are not attributes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    except pe.ProbableAuthenticationError as exc:
        raise BrokerUnavailable(f"RabbitMQ at {redact(url)} refused the credentials: {exc}") from None
    except pe.ProbableAccessDeniedError as exc:
        raise BrokerUnavailable(f"RabbitMQ at {redact(url)} denied access (vhost?): {exc}") from None
    except _CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(
            f"cannot reach RabbitMQ at {redact(url)} ({type(exc).__name__}: {exc or 'no answer'}); "
            f"is it running? (`rabbitmqctl status`)"
        ) from None


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


class Broker:
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

    def publish(
        self,
        message: Message,
        *,
        message_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
        mandatory: bool | None = None,
    ) -> str:
        """Publish a model; returns its message id once RabbitMQ confirmed it."""
        headers = headers_of(message, attributes)
        message_id = message_id or uuid.uuid4().hex
        self.publish_raw(
            message.EXCHANGE,
            message.routing_key,
            codec.encode(message),
            message_id=message_id,
            message_type=message.TYPE,
            headers=headers,
            mandatory=message.MANDATORY if mandatory is None else mandatory,
        )
        return message_id

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
        now = time.time()
        headers = dict(headers or {})
        headers.setdefault(PUBLISHED_HEADER, int(now * 1000))
        properties = pika.BasicProperties(
            content_type=codec.CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
            timestamp=timestamp or int(now),
            type=message_type or None,
            headers=headers,
        )
        for attempt in (1, 2):
            try:
                self._channel().basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
                return
            except pe.UnroutableError:
                raise PublishRefused(
                    f"no queue is bound to {exchange} for routing key {routing_key!r}: the message "
                    f"would be lost; declare the topology (`tasuki topology declare`)"
                ) from None
            except pe.NackError:
                raise PublishRefused(f"RabbitMQ refused the message for {exchange} {routing_key!r}") from None
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
