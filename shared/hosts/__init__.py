"""Git host adapters: each one turns a host's webhook delivery into Tasuki's `Event`s.

An adapter module (`bitbucket`, `github`, `gitlab`) offers:

- `HOST`, and `EVENT_HEADER`: the header that names the event, which also tells which host
  sent the delivery;
- `delivery_id(headers, body)`: the host's id for this delivery (the dedupe key), the same
  when the host sends the delivery again;
- `verify(headers, body, secret)`: raise `WebhookError(401)` unless the delivery is signed
  with (or carries) the repository's secret;
- `repository_name(payload)`: the repository's full name, to find its secret; None when the
  delivery names none (a GitHub App's ping);
- `parse(event_name, payload, delivery_id)`: the normalised events (one per pushed ref), or
  `Unpublished` for a delivery that is answered but not published. A payload that is not
  shaped as the event requires raises `WebhookError(400)`.

Adapters are pure: no I/O, no clock. `shared.webhooks.read` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from tasuki.shared.hosts import bitbucket, github, gitlab
from tasuki.shared.hosts.common import Unpublished

ADAPTERS: dict[str, ModuleType] = {"bitbucket": bitbucket, "github": github, "gitlab": gitlab}

__all__ = ["ADAPTERS", "Unpublished", "detect"]


def detect(headers: Mapping[str, str]) -> tuple[str, ModuleType] | None:
    """Which host sent this delivery, by its event header; None if none we know."""
    for name, adapter in ADAPTERS.items():
        if headers.get(adapter.EVENT_HEADER):
            return name, adapter
    return None
