"""Slots: an executor takes at most `capacity` orders at a time, also while it runs jobs whose
orders it acknowledged already (a job order is acknowledged once its claim is answered, so the
consumer's prefetch alone would let it take more).

RabbitMQ's prefetch counts a consumer's unacknowledged deliveries only, and a quorum queue knows
no channel-wide prefetch; so the consumer is replaced whenever an order is acknowledged early or
finished: the old one is cancelled (pika requeues what it held undispatched), and a new one
takes `capacity - busy` (none while every slot is busy). Everything here runs on the
connection's own thread (pika is not thread-safe): workers call `later(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Slots:
    def __init__(
        self, channel: Any, queue: str, on_message: Callable[..., None], capacity: int, *, busy: int = 0
    ) -> None:
        """`busy`: jobs still running from before (a connection that was lost)."""
        self.channel = channel
        self.queue = queue
        self.on_message = on_message
        self.capacity = capacity
        self.busy = busy  # orders received and not finished (acknowledged or not)
        self._tag: str | None = None
        self._closed = False

    def open(self) -> None:
        self._adjust()

    def taken(self) -> None:
        """An order was delivered (call from the consumer's callback)."""
        self.busy += 1

    def acknowledged_early(self) -> None:
        """An order was acknowledged while its job still runs: its slot stays taken."""
        self._adjust()

    def freed(self) -> None:
        """An order's work is over."""
        self.busy -= 1
        self._adjust()

    def close(self) -> None:
        """Take no more orders."""
        self._closed = True
        self._cancel()

    def _cancel(self) -> None:
        if self._tag is not None:
            self.channel.basic_cancel(self._tag)
            self._tag = None

    def _adjust(self) -> None:
        self._cancel()
        free = self.capacity - self.busy
        if free > 0 and not self._closed:
            self.channel.basic_qos(prefetch_count=free)
            self._tag = self.channel.basic_consume(self.queue, self.on_message)
