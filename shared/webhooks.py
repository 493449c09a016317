"""Reading a webhook delivery: pure, no I/O, every refusal a `WebhookError` with its HTTP status.

`read()` takes the headers and the raw body (the ingress has already refused a body over
`TASUKI_MAX_BODY_BYTES` with 413, before reading it whole) and refuses, in this order:

    415  the content type is not application/json
    400  no event header of a host Tasuki knows (`shared/hosts/`: X-Event-Key, X-GitHub-Event, ...)
    400  the body is not a JSON object, or nests deeper than `MAX_DEPTH`
    404  the repository is not registered, and unknown repositories are refused (the default)
    401  the repository has a secret and the delivery is not signed with it (or lacks the token)
    400  the delivery id header is not an id
    400  the payload is not shaped as its event requires, or cannot be carried in a message
    413  the delivery makes more events (pushed refs) than `max_events`

and returns a `Delivery`: its normalised events (one per pushed ref), or why it is answered
without publishing (an event Tasuki does not act on, GitHub's ping). The ingress function only
adds the body limit, deduplication and publishing around it.

The repository is looked up by its normalised name (`registry.normalise`), so no spelling of a
registered name escapes its secret, and the events name it as it is registered. An event never
carries a clone URL from the payload: checkouts clone from the registry only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tasuki.shared import codec, hosts
from tasuki.shared.errors import WebhookError
from tasuki.shared.hosts import Unpublished
from tasuki.shared.messages import Event
from tasuki.shared.registry import RepositoryConfig, normalise

# Webhook payloads nest a handful of levels; anything deeper is refused before it can reach
# a message (msgpack and pydantic stop at a few hundred levels, and events nest in other messages).
MAX_DEPTH = 64
# The delivery id becomes the message id (an AMQP short string) and a store key.
MAX_DELIVERY_ID = 200


class Headers(Mapping[str, str]):
    """Case-insensitive read-only headers (HTTP header names are case-insensitive)."""

    def __init__(self, items: Mapping[str, str] | list[tuple[str, str]]) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = {k.lower(): v for k, v in pairs}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Delivery:
    host: str
    event_name: str
    delivery_id: str
    repository: str  # "" when the delivery names none
    events: list[Event] = field(default_factory=list)
    # Each event encoded as its message body (encoding is how `read` knows it can be carried).
    bodies: list[bytes] = field(default_factory=list)
    # Set when the delivery is answered but not published (then `events` is empty).
    unpublished: Unpublished | None = None


def read(
    headers: Mapping[str, str],
    body: bytes,
    *,
    registry: Known,
    unknown_repositories: Literal["accept", "reject"] = "reject",
    max_events: int = 100,
) -> Delivery:
    headers = Headers(headers)
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise WebhookError(
            415,
            f"expected Content-Type application/json, found {content_type or 'none'}: set the "
            f"webhook's content type to application/json",
        )
    host = hosts.detect(headers)
    if host is None:
        names = ", ".join(each.event_header for each in hosts.HOSTS.values())
        raise WebhookError(400, f"no event header: expected one of {names}")
    event_name = headers[host.event_header]
    payload = parse_json(body)

    name = host.repository_name(payload)
    found = registry.find(name) if name is not None else None
    if name is not None:
        if found is None and unknown_repositories == "reject":
            raise WebhookError(
                404,
                f"repository {name} is not registered with this Tasuki: register it with its clone URL "
                f"and this webhook's secret (the web page's Repositories, POST /api/repositories, or "
                f"TASUKI_REPOSITORIES_FILE), then deliver again",
            )
        if found is not None and found[1].secret:
            host.verify(headers, body, found[1].secret)
    delivery_id = host.delivery_id(headers, body)
    if len(delivery_id) > MAX_DELIVERY_ID or not (delivery_id.isascii() and delivery_id.isprintable()):
        raise WebhookError(
            400,
            f"the {host.name} delivery id is not an id: expected at most {MAX_DELIVERY_ID} printable ASCII "
            f"characters, found {len(delivery_id)} characters",
        )

    try:
        result = host.parse(event_name, payload, delivery_id)
    except WebhookError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WebhookError(400, f"the {host.name} {event_name} delivery is not shaped as expected: {exc}") from None
    delivery = Delivery(host=host.name, event_name=event_name, delivery_id=delivery_id, repository=name or "")
    if isinstance(result, Unpublished):
        delivery.unpublished = result
        return delivery
    if len(result) > max_events:
        raise WebhookError(
            413,
            f"the delivery changes {len(result)} refs; this Tasuki takes at most {max_events} from one "
            f"delivery (TASUKI_MAX_EVENTS_PER_DELIVERY): push fewer refs at once",
        )
    events = []
    for event in result:
        # The secret that was checked must be the one of the repository the events name.
        if name is None or normalise(event.repository.full_name) != normalise(name):
            raise WebhookError(400, f"the {host.name} {event_name} delivery names no repository")
        event = as_registered(event, found[0] if found else event.repository.full_name)
        delivery.bodies.append(encoded(event))
        events.append(event)
    delivery.events = events
    return delivery


def as_registered(event: Event, full_name: str) -> Event:
    """The event naming its repository as registered, without the payload's clone URL."""
    repository = event.repository.model_copy(update={"full_name": full_name, "clone_url": ""})
    return event.model_copy(update={"repository": repository})


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, nesting at most `MAX_DEPTH` levels; 400 otherwise."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise WebhookError(400, f"the body is not valid JSON: {reason}") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, f"expected a JSON object, found {type(payload).__name__}")
    # Fewer containers than the limit cannot nest deeper than it: count before walking.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and depth(payload) > MAX_DEPTH:
        raise WebhookError(400, f"the JSON body nests deeper than {MAX_DEPTH} levels")
    return payload


def depth(value: Any) -> int:
    """How many levels of objects and arrays `value` nests (walks without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


class Known(Protocol):
    """What `read` needs of the repository registry (`registry.Repositories`): a repository's
    registered name and entry, found by its normalised name."""

    def find(self, full_name: str) -> tuple[str, RepositoryConfig] | None: ...


def encoded(event: Event) -> bytes:
    """The event as a message body; 400 when it cannot be one (JSON numbers beyond 64 bits, or
    text that is not valid Unicode, cannot be carried)."""
    try:
        return codec.encode(event)
    except (ValueError, OverflowError, TypeError) as exc:
        raise WebhookError(400, f"the payload cannot be carried in a message: {exc}") from None
