"""Dead letters: messages that failed too often, kept in the queue `tasuki.deadletters`.

The exchange `tasuki.deadletter` collects them from two places, and this module reads both:

- the push bridge, after a subscription's `max_delivery_attempts` (headers `x-deadletter-id`,
  `x-source-queue`, `x-last-error`, `x-dead-lettered-ms`, the original exchange and routing key,
  and Pub/Sub's `CloudPubSubDeadLetterSource*` attributes);
- RabbitMQ itself, for an executor order that could not be read (its `x-death` header).

`list_letters()` looks without taking anything away (what it reads goes back to the queue, in
order). `replay()` publishes the chosen letters, with their original body, id and attributes and
without the dead-letter bookkeeping, straight to the queue they came from (not to the exchange,
so that other subscriptions of the topic don't receive them twice), and removes each letter only
once RabbitMQ confirmed its replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika.exceptions as pe

from tasuki.shared import topics
from tasuki.shared.broker import ORDERING_HEADER, Broker, attributes_of
from tasuki.shared.errors import BrokerUnavailable, NoSuchLetter

PUBSUB_PREFIX = "CloudPubSubDeadLetter"
BOOKKEEPING = (
    "x-deadletter-id",
    "x-source-queue",
    "x-last-error",
    "x-dead-lettered-ms",
    "x-delivery-count",
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-delivery-attempt",
    "x-not-before-ms",
    "x-park-id",
)


@dataclass(frozen=True)
class Letter:
    id: str
    message_id: str
    type: str
    source_queue: str  # where a replay sends it
    subscription: str
    attempts: int
    last_error: str
    dead_lettered_at: datetime | None
    exchange: str
    routing_key: str
    ordering_key: str
    body: bytes
    timestamp: int | None
    headers: dict[str, Any] = field(repr=False)

    @property
    def attributes(self) -> dict[str, str]:
        return attributes_of(self.headers)

    def replay_headers(self) -> dict[str, Any]:
        return {k: v for k, v in self.headers.items() if k not in BOOKKEEPING and not k.startswith(PUBSUB_PREFIX)}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value if value is not None else "")


def read(method: Any, properties: Any, body: bytes) -> Letter:
    """A message of the dead-letter queue as a `Letter`, whoever dead-lettered it."""
    headers = dict(properties.headers or {})
    deaths = headers.get("x-death") or []
    death = deaths[0] if deaths else {}
    queue = _text(headers.get("x-source-queue") or death.get("queue") or "")
    stamp = headers.get("x-dead-lettered-ms")
    when = datetime.fromtimestamp(int(stamp) / 1000, UTC) if stamp else death.get("time")
    if isinstance(when, datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    routing_keys = death.get("routing-keys") or [method.routing_key]
    return Letter(
        id=_text(headers.get("x-deadletter-id") or properties.message_id or ""),
        message_id=_text(properties.message_id or ""),
        type=_text(properties.type or ""),
        source_queue=queue,
        subscription=_text(headers.get(f"{PUBSUB_PREFIX}SourceSubscription") or queue),
        attempts=int(_text(headers.get(f"{PUBSUB_PREFIX}SourceDeliveryCount") or death.get("count") or 0)),
        last_error=_text(headers.get("x-last-error") or (f"{death.get('reason')} in {queue}" if death else "")),
        dead_lettered_at=when if isinstance(when, datetime) else None,
        exchange=_text(headers.get("x-original-exchange") or death.get("exchange") or ""),
        routing_key=_text(headers.get("x-original-routing-key") or _text(routing_keys[0])),
        ordering_key=_text(headers.get(ORDERING_HEADER, "")),
        body=body,
        timestamp=properties.timestamp,
        headers=headers,
    )


@contextmanager
def _taken(url: str) -> Iterator[tuple[Any, list[tuple[int, Letter]]]]:
    """Every letter now in the queue, taken unacknowledged; what is not acked goes back on exit."""
    with Broker(url).channel() as ch:
        try:
            count = ch.queue_declare(topics.DEADLETTER_QUEUE, passive=True).method.message_count
        except pe.ChannelClosedByBroker as exc:
            raise BrokerUnavailable(
                f"cannot read {topics.DEADLETTER_QUEUE} ({exc.reply_text}); declare the topology first "
                f"(`tasuki topology declare`)"
            ) from None
        taken = []
        for _ in range(count):
            method, properties, body = ch.basic_get(topics.DEADLETTER_QUEUE, auto_ack=False)
            if method is None:
                break
            taken.append((method.delivery_tag, read(method, properties, body)))
        yield ch, taken


def list_letters(url: str) -> list[Letter]:
    """The dead letters, oldest first; nothing is removed."""
    with _taken(url) as (_, taken):
        return [letter for _, letter in taken]


def replay(url: str, letter_id: str | None = None) -> list[str]:
    """Replay one letter (by its id or message id) or, with no id, all; the ids replayed."""
    publisher = Broker(url)
    replayed = []
    try:
        with _taken(url) as (ch, taken):
            chosen = [
                (tag, letter)
                for tag, letter in taken
                if letter_id is None or letter_id in (letter.id, letter.message_id)
            ]
            if letter_id is not None and not chosen:
                raise NoSuchLetter(
                    f"no dead letter with id {letter_id} in {topics.DEADLETTER_QUEUE} "
                    f"({len(taken)} there); `tasuki deadletters list` shows them"
                )
            for tag, letter in chosen:
                if not letter.source_queue:
                    raise NoSuchLetter(f"dead letter {letter.id} does not say which queue it came from; not replayed")
                publisher.publish_raw(
                    "",
                    letter.source_queue,
                    letter.body,
                    message_id=letter.message_id,
                    message_type=letter.type,
                    headers=letter.replay_headers(),
                    timestamp=letter.timestamp,
                )
                ch.basic_ack(tag)  # only once the replay was confirmed
                replayed.append(letter.id)
    finally:
        publisher.close()
    return replayed
