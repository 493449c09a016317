"""Reconnecting with backoff: the one loop every long-running consumer of RabbitMQ runs in.

`keep_connected(session, stop, ...)` runs `session` (connect, then consume until `stop` is set)
and, whenever it fails because RabbitMQ cannot be reached or the connection broke, logs why and
runs it again after a pause: 0.5 s, doubling to 10 s. A session that kept its connection for
10 s or more was healthy, so the next failure starts over at 0.5 s; one that keeps failing at
once backs off (a deleted queue does not turn into a tight loop). It returns what `session`
returned, or None as soon as `stop` is set (a pause is cut short by it).

Used by the bridge (each subscription's consumer, and the topology declaration at start), and
by the executor's consumer. The clock is passed in so the backoff can be tested without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import pika.exceptions as pe

from tasuki.shared.errors import BrokerError

FIRST_PAUSE = 0.5
LONGEST_PAUSE = 10.0
HEALTHY = 10.0  # seconds a session must last for the next pause to start over

# What a lost or unreachable RabbitMQ raises: Tasuki's own errors, and pika's from a consumer's
# connection (pika raises ValueError too when used on a connection that just broke).
LOST: tuple[type[Exception], ...] = (BrokerError, pe.AMQPError, OSError, ValueError)

T = TypeVar("T")


class Stop(Protocol):
    """What `threading.Event` offers a loop that must end when asked."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def keep_connected(
    session: Callable[[], T],
    stop: Stop,
    *,
    log: logging.Logger,
    what: str,
    clock: Callable[[], float] = time.monotonic,
) -> T | None:
    """Run `session` until it returns or `stop` is set, again after every failure in `LOST`.

    `what` starts each warning, e.g. "router: RabbitMQ connection lost"."""
    pause = FIRST_PAUSE
    while not stop.is_set():
        started = clock()
        try:
            return session()
        except LOST as exc:
            if clock() - started >= HEALTHY:
                pause = FIRST_PAUSE
            log.warning("%s (%s: %s); trying again in %.1fs", what, type(exc).__name__, exc, pause)
        if stop.wait(pause):
            break
        pause = min(pause * 2, LONGEST_PAUSE)
    return None
