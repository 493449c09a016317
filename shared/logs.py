"""Log lines of every Tasuki process: JSON lines for machines, readable lines for people.

    logs.configure(settings.log_format, settings.log_level)   once, where a process starts
    with logs.context(run=run_id, job=name): ...              lines logged inside carry run and job
    logs.bind(delivery=delivery_id)                           the same, until the request ends (`scoped`)
    logs.context(**logs.fields(message.attributes()))         the fields a message carries

Each line carries `delivery` (the git host's delivery id), `run` and `job` wherever they are
known. They live in a context variable, set where a process learns them (the ingress reading a
delivery, a handler decoding a pushed message, the bridge taking a message, the executor taking an
order), so no function passes them down. A JSON line:

    {"time": "2026-01-01T12:00:00.123Z", "level": "warning", "logger": "tasuki.bridge",
     "message": "dispatcher: push of … failed: HTTP 503", "run": "4c1e…", "exception": "Traceback …"}

A readable line (`text`; `color` adds ANSI colours):

    12:00:00 WARNING tasuki.bridge: dispatcher: push of … failed: HTTP 503  run=4c1e…

`auto` (the default) writes readable coloured lines to a terminal, JSON lines anywhere else.
Values that come from senders are bounded and, in readable lines, escaped: a line stays one line.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import IO, Any, Literal, TypeVar

Format = Literal["auto", "json", "text", "color"]
FIELDS = ("delivery", "run", "job")
MAX_FIELD = 200  # characters of one field's value kept in a line

# The fields known in this thread or task; each change sets a new mapping, none is changed in place.
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "tasuki_log_context", default=MappingProxyType({})
)

F = TypeVar("F", bound=Callable[..., Any])


def current() -> dict[str, str]:
    """The fields known here: {"delivery": ..., "run": ..., "job": ...}, those that are known."""
    return dict(_context.get())


def _merged(delivery: str | None, run: str | None, job: str | None) -> dict[str, str]:
    """The current fields with these added, always in the order of FIELDS."""
    known = {**_context.get(), **{k: str(v) for k, v in (("delivery", delivery), ("run", run), ("job", job)) if v}}
    return {k: known[k] for k in FIELDS if k in known}


@contextmanager
def context(*, delivery: str | None = None, run: str | None = None, job: str | None = None) -> Iterator[None]:
    """Lines logged inside the block (in this thread or task) carry these fields too."""
    token = _context.set(_merged(delivery, run, job))
    try:
        yield
    finally:
        _context.reset(token)


def bind(*, delivery: str | None = None, run: str | None = None, job: str | None = None) -> None:
    """Add fields for the rest of the current scope: a request handled under `scoped`."""
    _context.set(_merged(delivery, run, job))


def scoped(handler: F) -> F:
    """Run each call of `handler` in its own copy of the context: what it binds ends with the call
    (a server thread's next request starts without the previous request's fields)."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return contextvars.copy_context().run(handler, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def fields(attributes: Mapping[str, str]) -> dict[str, str]:
    """The log fields among a message's attributes (`Message.attributes()`, the AMQP headers, a
    push's attributes): `delivery`, `run`, `job`, those it has."""
    return {k: v for k in FIELDS if isinstance(v := attributes.get(k), str) and v}


# --- formatting ----------------------------------------------------------------------------------


def _bounded(value: object) -> str:
    text = str(value)
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD] + "…"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the known fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: _bounded(v) for k, v in _context.get().items()})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


class ReadableFormatter(logging.Formatter):
    """`12:00:00 INFO tasuki.bridge: message  run=… job=…`, optionally in colour; a traceback
    follows on its own lines, indented."""

    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = self._paint(_COLOURS.get(record.levelname, "0"), f"{record.levelname:<7}")
        message = _escaped(record.getMessage())
        fields = " ".join(f"{k}={_escaped(_bounded(v))}" for k, v in _context.get().items())
        line = f"{self._paint('2', when)} {level} {self._paint('2', record.name + ':')} {message}"
        if fields:
            line += "  " + self._paint("36", fields)
        if record.exc_info or record.exc_text:
            trace = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
            line += "\n" + "\n".join("    " + part for part in trace.splitlines())
        return line


def _escaped(text: str) -> str:
    """The text with control characters (a newline in a branch name, an escape sequence) spelled
    out, so that one record is one line a sender cannot forge or recolour."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def formatter(log_format: Format, stream: IO[str]) -> logging.Formatter:
    chosen = resolved(log_format, stream)
    if chosen == "json":
        return JSONFormatter()
    return ReadableFormatter(colour=chosen == "color")


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def resolved(log_format: Format, stream: IO[str]) -> Format:
    """`auto` made definite for `stream`: what a child process whose output goes through a pipe
    to this stream must be told to write."""
    if log_format != "auto":
        return log_format
    return "color" if _is_terminal(stream) else "json"


def configure(log_format: Format = "auto", level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send every logger's records to `stream` (stderr) in the chosen form, replacing any set-up."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format, stream))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pika logs every failed connection attempt with a traceback; Tasuki reports the same
    # failures itself, in one line that says what to do (shared.broker, the bridge, the executor).
    logging.getLogger("pika").setLevel(logging.CRITICAL)
