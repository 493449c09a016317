"""Reading a webhook delivery: pure, no I/O, every refusal a `WebhookError` with its HTTP status.

`read()` checks size and content type, finds the host by its event header, parses the JSON,
checks the repository's signature, and returns the normalised events. The ingress function
only adds deduplication and publishing around it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from shared import hosts
from shared.errors import WebhookError
from shared.messages import Event
from shared.registry import Registry


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
    repository: str
    # None: an event Tasuki does not handle (answered, not published).
    events: list[Event] | None = field(default=None)


def read(
    headers: Mapping[str, str],
    body: bytes,
    *,
    registry: Registry,
    max_body: int,
    unknown_repositories: Literal["accept", "reject"] = "accept",
) -> Delivery:
    headers = Headers(headers)
    if len(body) > max_body:
        raise WebhookError(413, f"the body has {len(body)} bytes; the limit is {max_body}")
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise WebhookError(415, f"expected Content-Type application/json, found {content_type or 'none'}")
    found = hosts.detect(headers)
    if found is None:
        names = ", ".join(a.EVENT_HEADER for a in hosts.ADAPTERS.values())
        raise WebhookError(400, f"no event header: expected one of {names}")
    host, adapter = found
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, f"expected a JSON object, found {type(payload).__name__}")
    event_name = headers[adapter.EVENT_HEADER]
    repository = adapter.repository_name(payload)
    known = registry.get(repository)
    if known is None and unknown_repositories == "reject":
        raise WebhookError(404, f"repository {repository} is not registered with this Tasuki")
    if known is not None and known.secret:
        adapter.verify(headers, body, known.secret)
    delivery_id = adapter.delivery_id(headers, body)
    try:
        events = adapter.parse(event_name, payload, delivery_id)
    except WebhookError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WebhookError(400, f"the {host} {event_name} delivery is not shaped as expected: {exc}") from None
    return Delivery(host=host, event_name=event_name, delivery_id=delivery_id, repository=repository, events=events)
