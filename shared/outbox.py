"""The dispatcher's outbox: what a decision publishes is recorded in the same transaction as the
state it decided, published after the commit, and removed once RabbitMQ confirmed it.

So a crash between the commit and the publish loses nothing (the message's redelivery, or the
next tick, publishes what is left), and a redelivered message orders nothing twice: its second
decision changes nothing, and what the outbox still holds goes out under the message ids it was
recorded with (a job order's is run:job:attempt).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from tasuki.shared import codec
from tasuki.shared.messages import MODELS, JobOrder, Message
from tasuki.shared.store import OutboxEntry, Store


def entry(run_id: str, message: Message) -> OutboxEntry:
    """An outbox entry for `message`, with the message id it will always be published under."""
    message_id = message.message_id if isinstance(message, JobOrder) else uuid.uuid4().hex
    return OutboxEntry(message_id, run_id, message.TYPE, codec.encode(message))


def publish(
    store: Store, publisher: Any, entries: list[OutboxEntry], known: Mapping[str, Message] | None = None
) -> int:
    """Publish entries (confirmed, together), then remove them from the outbox; how many.
    `known`: the messages of entries the caller just made, by message id, so that only what
    another step left in the outbox is decoded from its body again."""
    if not entries:
        return 0
    known = known or {}
    publisher.publish_all(
        [(known.get(e.message_id) or codec.decode(e.body, MODELS[e.type]), e.message_id, e.body) for e in entries]
    )
    store.clear_outbox([e.message_id for e in entries])
    return len(entries)
