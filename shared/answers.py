"""HTTP answers for the functions: JSON bodies, and Tasuki's errors answered with their statuses.

A handler wrapped in `translated` that raises a Tasuki error answers with the error's
`http_status`, the one mapping of errors to statuses (drawn in `shared/errors.py`, and shared with
the web page's `shared/web/site.py`): a bad token 401, an undecodable body 400, a delivery with
its own 4xx, RabbitMQ or the store unavailable 503 (`"retry": true`: the git host or the bridge's
backoff retries), a misconfiguration 500 (the message names the setting).

Pushed-to handlers answer 2xx only when they finished the work, so that anything else becomes a
nack and the bridge redelivers.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Response

from tasuki.shared.errors import ConfigError, DecodeError, TasukiError

log = logging.getLogger("tasuki")

Answer = tuple[str, int, dict[str, str]]


def answer(code: int, /, **fields: Any) -> Answer:
    return json.dumps(fields, default=str), code, {"Content-Type": "application/json"}


def answer_unread(code: int, /, **fields: Any) -> Response:
    """An answer that leaves the rest of the request body unread: functions-framework reads
    the whole body after the handler unless the response is streamed, which would let a client
    make a handler hold any number of bytes in memory just to be told 413."""
    return Response(iter([json.dumps(fields, default=str)]), status=code, content_type="application/json")


def translated(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Tasuki's errors raised by a handler into clear JSON answers."""

    @functools.wraps(handler)
    def wrapper(request: Any) -> Any:
        try:
            return handler(request)
        except TasukiError as exc:
            return failed(handler.__name__, exc)

    return wrapper


def failed(where: str, exc: TasukiError) -> Answer:
    """The answer to a request that failed with `exc`: its `http_status` and its message."""
    code = exc.http_status
    if code >= 500:
        log.error("%s: %s", where, exc)
    elif isinstance(exc, DecodeError):
        log.warning("%s: undecodable request: %s", where, exc)
    if isinstance(exc, ConfigError):
        return answer(code, error=f"Tasuki is misconfigured: {exc}")
    if code == 503:
        return answer(code, error=str(exc), retry=True)
    return answer(code, error=str(exc))
