"""What the hosts share: reading nested JSON safely, signatures, delivery keys, SHAs, and the
usual ways of answering statuses and logging in.

Payloads come from the network, so every read here tolerates a missing key or a value of the
wrong type: `get()` answers None, `text()` answers "" (or raises `WebhookError(400)` when the
value is required), and no host ever indexes a payload directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from tasuki.shared.errors import WebhookError
from tasuki.shared.hosts.protocol import Outcome, StatusAnswer
from tasuki.shared.registry import RepositoryConfig


def get(data: Any, *path: str) -> Any:
    """The value at `path` in nested objects, or None if any step is missing or not an object."""
    for key in path:
        if not isinstance(data, dict):  # JSON objects are dicts (and the ABC check is slow)
            return None
        data = data.get(key)
    return data


def text(data: Any, *path: str, required: str = "") -> str:
    """The string at `path`, or "" when it is missing or not a string.

    With `required` (what the delivery is, for the message), a missing value is a 400."""
    value = get(data, *path)
    if not isinstance(value, str) or (required and not value):
        if required:
            found = "nothing" if value is None else type(value).__name__
            raise WebhookError(400, f"expected {'.'.join(path)} (a string) in a {required} delivery, found {found}")
        return ""
    return value


def items(data: Any, *path: str) -> list[dict[str, Any]]:
    """The objects in the list at `path`; anything else there counts as no items."""
    value = get(data, *path)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def number(data: Any, *path: str, required: str) -> int:
    value = get(data, *path)
    if isinstance(value, bool) or not isinstance(value, int):
        found = "nothing" if value is None else type(value).__name__
        raise WebhookError(400, f"expected {'.'.join(path)} (a number) in a {required} delivery, found {found}")
    return value


# A commit id as Tasuki passes it to git or puts it in a URL: an abbreviated or full SHA-1 or SHA-256.
COMMIT_ID = re.compile(r"[0-9a-fA-F]{7,64}")


def is_commit_id(value: str) -> bool:
    return COMMIT_ID.fullmatch(value) is not None


def sha(value: str) -> str:
    """A commit id as hosts write it, with the all-zero id (no commit: created or deleted) as ""."""
    return "" if not value.strip("0") else value


def person(name: str, email: str) -> str:
    """An author as git writes it: `Name <email>`, or whichever part is known."""
    if name and email:
        return f"{name} <{email}>"
    return name or email


def digest(event_name: str, body: bytes) -> str:
    """A short, stable fingerprint of a delivery (its event name and body), for delivery keys
    when the host sends no id of the delivery itself."""
    return hashlib.sha256(event_name.encode("utf-8", "replace") + b"\n" + body).hexdigest()[:32]


def verify_hmac(headers: Mapping[str, str], header: str, body: bytes, secret: str) -> None:
    """Check `header: sha256=<hex HMAC of the body>` against the repository's secret, in
    constant time; `WebhookError(401)` unless it matches."""
    given = headers.get(header, "")
    if not given:
        raise WebhookError(401, f"this repository has a webhook secret, but the delivery has no {header}")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.strip().lower().encode("utf-8", "replace"), expected.encode()):
        raise WebhookError(
            401,
            f"{header} does not match the body signed with this repository's secret: check the "
            f"webhook's secret on the host and in the repository registry",
        )


def verify_token(headers: Mapping[str, str], header: str, secret: str) -> None:
    """Check a shared-secret header (no signature) in constant time; `WebhookError(401)` unless equal."""
    given = headers.get(header, "")
    if not given:
        raise WebhookError(401, f"this repository has a webhook secret, but the delivery has no {header}")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode()):
        raise WebhookError(
            401,
            f"{header} is not this repository's secret: check the webhook's secret token on the "
            f"host and in the repository registry",
        )


# --- commit statuses and clones ----------------------------------------------------------------


def api_headers(authorization: Mapping[str, str], accept: str = "application/json") -> dict[str, str]:
    """The headers of a request to a host's API, with its authentication."""
    return {"Accept": accept, "User-Agent": "Tasuki", **authorization}


def bearer(token: str) -> dict[str, str]:
    """An `Authorization: Bearer` header with `token`; none without one."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def basic(user: str, password: str) -> str:
    """An HTTP Basic `Authorization` value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def outcome(answer: StatusAnswer) -> Outcome:
    """How an API's answer reads unless the host says otherwise: 2xx done; 429 (rate limit)
    and 5xx may pass; any other 4xx (bad token, unknown commit, invalid field) is for good."""
    if answer.code < 300:
        return "done"
    if answer.code == 429 or answer.code >= 500:
        return "retry"
    return "refused"


def said(answer: StatusAnswer) -> str:
    """The host's own words in an answer (`message`, or `error.message`), at most 300 characters."""
    try:
        doc = json.loads(answer.text)
    except ValueError:
        return answer.text[:300]
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)[:300]
        return str(doc.get("message") or error or doc)[:300]
    return str(doc)[:300]


def login(credentials: RepositoryConfig, token_user: str) -> tuple[str, str] | None:
    """The HTTPS login of most hosts: a username with an app password, or else the token beside
    the registered username (or `token_user`, the name the host expects beside a token)."""
    if credentials.username and credentials.app_password:
        return credentials.username, credentials.app_password
    if credentials.token:
        return credentials.username or token_user, credentials.token
    return None
