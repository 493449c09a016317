"""A delivery: one message the bridge holds, and the headers that carry its state through RabbitMQ.

The bridge keeps a message's retry state in memory while it holds it. When it hands the message
back to RabbitMQ (re-queued before consumer_timeout, or dead-lettered) the state travels in `x-`
headers, which are bookkeeping and never Pub/Sub attributes:

    x-delivery-attempt       pushes made so far (a re-queued copy)
    x-not-before-ms          no push before this time (epoch milliseconds)
    x-last-error             why the last push failed
    x-park-id                matches a re-queued copy to the original it replaces
    x-original-exchange      where the message was first published (a copy is published to the
    x-original-routing-key   default exchange, a replay straight to its queue)

`Delivery.received_from()` reads them back (with RabbitMQ's own `x-delivery-count` of
redeliveries, which counts on top); `dead_letter_headers()` adds what Pub/Sub adds to a dead
letter and what `shared.deadletters` shows. Pure functions: the clocks are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasuki.shared import push
from tasuki.shared.broker import ORDERING_HEADER, PUBLISHED_HEADER
from tasuki.shared.topics import Subscription

ATTEMPT_HEADER = "x-delivery-attempt"
NOT_BEFORE_HEADER = "x-not-before-ms"
LAST_ERROR_HEADER = "x-last-error"
PARK_HEADER = "x-park-id"
ORIGIN_EXCHANGE_HEADER = "x-original-exchange"
ORIGIN_KEY_HEADER = "x-original-routing-key"
REDELIVERIES_HEADER = "x-delivery-count"  # set by quorum queues
BOOKKEEPING = (ATTEMPT_HEADER, NOT_BEFORE_HEADER, LAST_ERROR_HEADER, PARK_HEADER, REDELIVERIES_HEADER)


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def integer(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(text(value))
    except ValueError:
        return 0


@dataclass(eq=False)
class Delivery:
    """One message held by the bridge, from its delivery until it is acked in RabbitMQ."""

    tag: int
    generation: int  # of the connection that delivered `tag`
    body: bytes
    properties: Any
    headers: dict[str, Any]
    attributes: dict[str, str]
    exchange: str  # where it was first published
    routing_key: str
    message_id: str
    ordering_key: str
    line: str  # the ordering key it waits behind ("" when the subscription is unordered)
    received: float  # monotonic: RabbitMQ has waited for our ack since
    attempts: int = 0  # pushes made so far
    not_before: float = 0.0  # monotonic
    last_error: str = ""
    state: str = "waiting"  # waiting, ready, delayed, pushing, parking, parked, done
    ticket: int = 0  # which entry of the ready queue or delay heap is current
    dead_letter_due: bool = False
    park_id: str = ""

    @classmethod
    def received_from(
        cls,
        method: Any,
        properties: Any,
        body: bytes,
        *,
        headers: dict[str, Any],
        attributes: dict[str, str],
        ordered: bool,
        generation: int,
        now: float,
        wall: float,
    ) -> Delivery:
        """A message as RabbitMQ delivered it; `now` is the monotonic clock, `wall` the epoch."""
        ordering_key = text(headers.get(ORDERING_HEADER, ""))
        not_before_ms = integer(headers.get(NOT_BEFORE_HEADER))
        return cls(
            tag=method.delivery_tag,
            generation=generation,
            body=body,
            properties=properties,
            headers=headers,
            attributes=attributes,
            exchange=text(headers.get(ORIGIN_EXCHANGE_HEADER, method.exchange)),
            routing_key=text(headers.get(ORIGIN_KEY_HEADER, method.routing_key)),
            message_id=properties.message_id or "",
            ordering_key=ordering_key,
            line=ordering_key if ordered else "",
            received=now,
            attempts=integer(headers.get(ATTEMPT_HEADER)) + integer(headers.get(REDELIVERIES_HEADER)),
            not_before=now + (not_before_ms / 1000 - wall) if not_before_ms else 0.0,
            last_error=text(headers.get(LAST_ERROR_HEADER, "")),
        )

    def publish_ms(self) -> int:
        return integer(self.headers.get(PUBLISHED_HEADER)) or int((self.properties.timestamp or 0) * 1000)

    def requeue_headers(self, not_before_epoch: float) -> dict[str, Any]:
        """Headers of the copy that takes this delivery's place, with its retry state."""
        headers = {k: v for k, v in self.headers.items() if k != REDELIVERIES_HEADER}
        headers.update(
            {
                ATTEMPT_HEADER: self.attempts,
                NOT_BEFORE_HEADER: int(not_before_epoch * 1000),
                LAST_ERROR_HEADER: self.last_error[:500],
                PARK_HEADER: self.park_id,
                ORIGIN_EXCHANGE_HEADER: self.exchange,
                ORIGIN_KEY_HEADER: self.routing_key,
            }
        )
        return headers

    def dead_letter_headers(self, sub: Subscription, project: str, letter_id: str, wall: float) -> dict[str, Any]:
        """Headers of this message on the dead-letter topic: its attributes and its history."""
        headers = {k: v for k, v in self.headers.items() if k not in BOOKKEEPING}
        headers.update(
            {
                # What Pub/Sub adds to a dead-lettered message (attributes: a handler of the
                # dead-letter topic sees them).
                "CloudPubSubDeadLetterSourceDeliveryCount": str(self.attempts),
                "CloudPubSubDeadLetterSourceSubscription": sub.name,
                "CloudPubSubDeadLetterSourceSubscriptionProject": project,
                "CloudPubSubDeadLetterSourceTopicPublishTime": push.rfc3339(self.publish_ms()),
                # Tasuki's history, for `tasuki deadletters` (shared.deadletters).
                "x-deadletter-id": letter_id,
                "x-source-queue": sub.queue,
                ORIGIN_EXCHANGE_HEADER: self.exchange,
                ORIGIN_KEY_HEADER: self.routing_key,
                LAST_ERROR_HEADER: self.last_error[:500],
                "x-dead-lettered-ms": int(wall * 1000),
            }
        )
        return headers
