"""The Pub/Sub push request: the JSON body a push subscription POSTs to its endpoint.

    {"message": {"data": "<base64>", "attributes": {...}, "messageId": "...", "message_id": "...",
                 "publishTime": "2026-01-01T00:00:00.000Z", "publish_time": "...", "orderingKey": "..."},
     "subscription": "projects/<project>/subscriptions/<name>", "deliveryAttempt": 1}

`envelope()` builds one (the bridge), `parse()` reads one and raises `DecodeError` on anything
that is not a push request. `receive_message()` is what every pushed-to handler does first: the
bearer token is checked before a byte of the body is read (`AuthError`, 401), and the body is
read no further than its limit (`BodyTooLarge`, 413).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from tasuki.shared import codec, logs, tokens
from tasuki.shared.answers import read_body
from tasuki.shared.errors import DecodeError
from tasuki.shared.settings import MIN_PUSH_BYTES

M = TypeVar("M", bound=BaseModel)

# HTTP answers that acknowledge a push; anything else is a nack.
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})


class PushedMessage(BaseModel):
    data: bytes
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str = ""
    publish_time: str = ""
    ordering_key: str = ""
    subscription: str = ""
    delivery_attempt: int = 1

    @property
    def type(self) -> str:
        return self.attributes.get("type", "")


def rfc3339(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 UTC with milliseconds, as Pub/Sub writes it."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def subscription_path(project: str, name: str) -> str:
    return f"projects/{project}/subscriptions/{name}"


def envelope(
    data: bytes,
    *,
    attributes: dict[str, str],
    message_id: str,
    publish_ms: int,
    subscription: str,
    delivery_attempt: int,
    ordering_key: str = "",
) -> dict[str, Any]:
    published = rfc3339(publish_ms)
    message: dict[str, Any] = {
        "data": base64.b64encode(data).decode("ascii"),
        "attributes": attributes,
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": published,
        "publish_time": published,
    }
    if ordering_key:
        message["orderingKey"] = ordering_key
    return {"message": message, "subscription": subscription, "deliveryAttempt": delivery_attempt}


def parse(body: bytes | str | dict[str, Any]) -> PushedMessage:
    """Read a push request body; `DecodeError` says what is wrong with it."""
    if isinstance(body, dict):
        doc = body
    else:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"expected a Pub/Sub push request (JSON), found invalid JSON: {exc}") from None
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(message, dict):
        raise DecodeError("expected a Pub/Sub push request with a 'message' object")
    raw = message.get("data", "")
    if not isinstance(raw, str):
        raise DecodeError("message.data must be a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("message.data is not valid base64") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise DecodeError("message.attributes must map strings to strings")
    attempt = doc.get("deliveryAttempt", 1)
    return PushedMessage(
        data=data,
        attributes=attributes,
        message_id=str(message.get("messageId") or message.get("message_id") or ""),
        publish_time=str(message.get("publishTime") or message.get("publish_time") or ""),
        ordering_key=str(message.get("orderingKey") or ""),
        subscription=str(doc.get("subscription") or ""),
        delivery_attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 1,
    )


def receive_message(
    request: Any, verifier: tokens.Verifier, *, accepts: Mapping[str, type[M]], limit: int = MIN_PUSH_BYTES
) -> M:
    """A pushed-to handler's first steps: check the token (the bridge's, or Google's where
    configured: `tokens.Verifier`) before a byte of the body is read, read the body (at most
    `limit` bytes: `Settings.max_push_bytes`), read the envelope, decode the message by its `type`
    attribute. `accepts` maps the types the handler takes to their models."""
    verifier.verify(request.headers.get("Authorization"))
    pushed = parse(read_body(request, limit, "pushes are read up to 4 × TASUKI_MAX_BODY_BYTES, at least 8 MiB"))
    logs.bind(**logs.fields(pushed.attributes))  # the rest of the request's log lines carry run, job, delivery
    model = accepts.get(pushed.type)
    if model is None:
        raise DecodeError(f"expected a message of type {', '.join(accepts)}, found {pushed.type!r}")
    return codec.decode(pushed.data, model)
