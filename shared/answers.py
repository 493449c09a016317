"""HTTP for the functions: bodies read within a limit, JSON answers, and Tasuki's errors answered
with their statuses.

`read_body` reads no further than a limit (a body said or found to be longer is `BodyTooLarge`),
and a failed request is answered without reading the rest of its body (`answer_unread`), so that
a sender cannot make a handler take in any number of bytes just to be refused.

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

from tasuki.shared.errors import BodyTooLarge, ConfigError, DecodeError, TasukiError

log = logging.getLogger("tasuki")

Answer = tuple[str, int, dict[str, str]]


def answer(code: int, /, **fields: Any) -> Answer:
    return json.dumps(fields, default=str), code, {"Content-Type": "application/json"}


def answer_unread(code: int, /, **fields: Any) -> Response:
    """An answer that leaves the rest of the request body unread: functions-framework reads
    the whole body after the handler unless the response is streamed, which would let a client
    make a handler hold any number of bytes in memory just to be told 413. (Whether the server
    then drains what is left to find the next request is the server's: gunicorn drains at most
    64 KiB and closes the connection.)"""
    return Response(iter([json.dumps(fields, default=str)]), status=code, content_type="application/json")


def read_body(request: Any, limit: int, setting: str) -> bytes:
    """The request body, or `BodyTooLarge` (naming the `setting` behind the limit) when it is over
    `limit` bytes: said so by Content-Length (then nothing is read), or found so after reading
    `limit + 1` bytes."""
    too_large = BodyTooLarge(f"the body is larger than the limit of {limit} bytes ({setting})")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    while size <= limit and (chunk := request.stream.read(limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise too_large
    return b"".join(chunks)


def translated(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Tasuki's errors raised by a handler into clear JSON answers."""

    @functools.wraps(handler)
    def wrapper(request: Any) -> Any:
        try:
            return handler(request)
        except TasukiError as exc:
            return failed(handler.__name__, exc)

    return wrapper


def failed(where: str, exc: TasukiError) -> Response:
    """The answer to a request that failed with `exc`: its `http_status` and its message, the
    rest of the body left unread."""
    code = exc.http_status
    if code >= 500:
        log.error("%s: %s", where, exc)
    elif isinstance(exc, DecodeError):
        log.warning("%s: undecodable request: %s", where, exc)
    if isinstance(exc, ConfigError):
        return answer_unread(code, error=f"Tasuki is misconfigured: {exc}")
    if code == 503:
        return answer_unread(code, error=str(exc), retry=True)
    return answer_unread(code, error=str(exc))
