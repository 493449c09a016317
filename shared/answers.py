"""HTTP answers for the functions: JSON bodies, and Tasuki errors mapped to statuses in one place.

    AuthError -> 401   DecodeError -> 400   WebhookError -> its own status
    BrokerError, StoreError -> 503 (the caller retries: the git host, or the bridge's backoff)
    ConfigError -> 500 (the operator must fix a setting; the message names it)

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

from tasuki.shared.errors import AuthError, BrokerError, ConfigError, DecodeError, StoreError, WebhookError

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
        except WebhookError as exc:
            return answer(exc.status, error=str(exc))
        except AuthError as exc:
            return answer(401, error=str(exc))
        except DecodeError as exc:
            log.warning("%s: undecodable request: %s", handler.__name__, exc)
            return answer(400, error=str(exc))
        except (BrokerError, StoreError) as exc:
            log.error("%s: unavailable: %s", handler.__name__, exc)
            return answer(503, error=str(exc), retry=True)
        except ConfigError as exc:
            log.error("%s: configuration: %s", handler.__name__, exc)
            return answer(500, error=f"Tasuki is misconfigured: {exc}")

    return wrapper
