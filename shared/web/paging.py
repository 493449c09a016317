"""Pages of the API's newest-first listings (runs, deliveries).

A page holds at most `limit` items; when more follow, its `next` is a cursor naming its last
item's place (time, id), and `?before=<next>` asks for the page after it. The cursor is opaque to
clients (URL-safe base64 of the place), it is read back strictly: anything else is a 400 that says
where a cursor comes from. A place outlives its item, so a page after a pruned run still follows.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from werkzeug.wrappers import Request

from tasuki.shared.errors import ActionError
from tasuki.shared.store import Position, RunRecord
from tasuki.shared.store.records import stamp

LIMIT_DEFAULT = 50
LIMIT_MAX = 500
CURSOR_MAX_CHARS = 400  # a stamp and an id, base64: far less

Item = TypeVar("Item")


def limit(request: Request) -> int:
    """`?limit=`: 1 to LIMIT_MAX, LIMIT_DEFAULT when absent."""
    text = request.args.get("limit")
    if text is None or text == "":
        return LIMIT_DEFAULT
    try:
        return min(max(int(text), 1), LIMIT_MAX)
    except ValueError:
        raise ActionError(400, f"limit must be a number from 1 to {LIMIT_MAX}") from None


def before(request: Request) -> Position | None:
    """`?before=`: the place an earlier page's `next` named, or None (the newest page)."""
    text = request.args.get("before")
    return None if not text else read(text)


def cursor(place: Position) -> str:
    moment, item_id = place
    return base64.urlsafe_b64encode(f"{stamp(moment)} {item_id}".encode()).decode().rstrip("=")


def read(text: str) -> Position:
    refused = ActionError(400, "before must be the `next` of an earlier page of this listing")
    if len(text) > CURSOR_MAX_CHARS:
        raise refused
    try:
        moment_text, item_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().split(" ", 1)
        moment = datetime.fromisoformat(moment_text)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise refused from None
    if moment.tzinfo is None or not item_id:
        raise refused
    return moment, item_id


def of_run(run: RunRecord) -> Position:
    """A run's place in `Store.list_runs`' order."""
    return run.created_at, run.id


def of_delivery(row: Mapping[str, Any]) -> Position:
    """A delivery's place in `Store.stories`' order (`row`: its `stories.summary`)."""
    return row["at"], row["id"]


def page(found: Sequence[Item], size: int, place: Callable[[Item], Position]) -> tuple[Sequence[Item], str | None]:
    """The page out of `found` (asked for `size + 1` items) and its `next` (None: it is the last)."""
    if len(found) <= size:
        return found, None
    return found[:size], cursor(place(found[size - 1]))
