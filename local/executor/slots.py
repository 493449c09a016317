"""Slots: an executor takes at most `capacity` orders at a time, also while it runs jobs whose
orders it acknowledged already (a job order is acknowledged once its claim is answered, so the
consumer's prefetch alone would let it take more).

RabbitMQ's prefetch counts a consumer's unacknowledged deliveries only, and a quorum queue knows
no channel-wide prefetch (nor a new prefetch for a consumer that exists); so the consumer is
replaced when its prefetch no longer matches the free slots: the old one is cancelled (pika
requeues what it held undispatched), and a new one takes `capacity - busy` (none while every
slot is busy). That is when an order of the current consumer is acknowledged early (the engine
would let it take one more, its job still runs), and when an order is over that the current
consumer's prefetch does not count (acknowledged early, or delivered to an earlier consumer: a
slot is free that it would not use). An order of the current consumer acknowledged when it is
over frees its slot and the consumer's prefetch together: nothing to replace. A new prefetch is
a channel's setting (basic.qos, for consumers made after it): each prefetch the consumer needs
gets a channel of its own on the connection, set once, so replacing the consumer is a cancel and
a consume, not a qos as well (deliveries are acknowledged on the channel they came on). Everything
here runs on the connection's own thread (pika is not thread-safe): workers call `later(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Slots:
    def __init__(
        self,
        channel: Any,
        queue: str,
        on_message: Callable[..., None],
        capacity: int,
        *,
        busy: int = 0,
        another: Callable[[], Any] | None = None,
    ) -> None:
        """`busy`: jobs still running from before (a connection that was lost); `another`
        opens another channel on the connection (None: `channel` takes every prefetch)."""
        self.channel = channel
        self.queue = queue
        self.on_message = on_message
        self.capacity = capacity
        self.busy = busy  # orders received and not finished (acknowledged or not)
        self._another = another
        self._channels: dict[int, Any] = {}  # prefetch -> the channel set to it
        self._tag: str | None = None
        self._consuming: Any = None  # the channel of the consumer `_tag`
        self._closed = False

    def open(self) -> None:
        self._adjust()

    def taken(self) -> None:
        """An order was delivered (call from the consumer's callback)."""
        self.busy += 1

    def acknowledged_early(self, consumer: str) -> None:
        """An order was acknowledged while its job still runs: its slot stays taken. `consumer`:
        the tag of the consumer it was delivered to."""
        if consumer == self._tag:
            self._adjust()

    def freed(self, consumer: str, *, early: bool) -> None:
        """An order's work is over (`early`: it was acknowledged before, else it was just now)."""
        self.busy -= 1
        if early or consumer != self._tag:
            self._adjust()

    def close(self) -> None:
        """Take no more orders."""
        self._closed = True
        self._cancel()

    def _cancel(self) -> None:
        if self._tag is not None:
            self._consuming.basic_cancel(self._tag)
            self._tag = None

    def _adjust(self) -> None:
        self._cancel()
        free = self.capacity - self.busy
        if free > 0 and not self._closed:
            self._consuming = self._channel(free)
            self._tag = self._consuming.basic_consume(self.queue, self.on_message)

    def _channel(self, prefetch: int) -> Any:
        """A channel whose consumers take `prefetch` orders."""
        channel = self._channels.get(prefetch)
        if channel is None:
            if self._another is None:
                channel, self._channels = self.channel, {}  # one channel: set it each time
            else:
                channel = self._another() if self._channels else self.channel
            channel.basic_qos(prefetch_count=prefetch)
            self._channels[prefetch] = channel
        return channel
