"""Git host adapters: each one turns a host's webhook delivery into Tasuki's `Event`s.

An adapter module offers:

- `EVENT_HEADER`: the header that names the event, which also tells which host sent it;
- `delivery_id(headers, body)`: the host's id for this delivery (the dedupe key);
- `verify(headers, body, secret)`: raise `WebhookError(401)` unless the delivery is signed
  with the repository's secret;
- `repository_name(payload)`: the repository's full name, to find its secret;
- `parse(event_name, payload, delivery_id)`: the normalised events (one per pushed ref), or
  `None` for an event Tasuki does not handle.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from shared.hosts import bitbucket

ADAPTERS: dict[str, ModuleType] = {"bitbucket": bitbucket}


def detect(headers: Mapping[str, str]) -> tuple[str, ModuleType] | None:
    """Which host sent this delivery, by its event header; None if none we know."""
    for name, adapter in ADAPTERS.items():
        if headers.get(adapter.EVENT_HEADER):
            return name, adapter
    return None
