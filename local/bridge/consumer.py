"""One subscription's RabbitMQ consumer: pika's asynchronous connection, run in one thread.

Deliveries go straight from the connection's I/O loop to `on_message`, and other threads hand
work to that loop with `call()` (the bridge's acks). There is no BlockingConnection in between:
its event queue, per-call timers and flush loops cost more CPU per message than reading the
message itself. pika is not thread-safe, so everything but `call()` runs in the thread that runs
`run()`, the connection's own.

`run()` returns once `stop` is set and the connection is closed; before closing it stops
taking messages (`basic.cancel`) and gives the work in hand (`busy()`) up to `grace` seconds to
end, then hands out the last acks (`flush()`), which RabbitMQ reads before the close. It raises
when the connection cannot be opened (`BrokerUnavailable`) or is lost, or when RabbitMQ closes
the channel or cancels the consumer (pika's errors): `shared.reconnect` runs it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions as pe

from tasuki.shared import broker as brokers

# Seconds between looks at `stop` while consuming, and at `busy()` while stopping.
WATCH = 1.0
DRAIN = 0.1
CLOSING = 10.0  # seconds a close may take before the loop is left anyway


class Consumer:
    def __init__(
        self,
        url: str,
        queue: str,
        prefetch: int,
        on_message: Callable[[Any, Any, bytes], None],
        *,
        opened: Callable[[], None],
        consuming: Callable[[], None],
    ) -> None:
        self.url = url
        self.queue = queue
        self.prefetch = prefetch
        self.on_message = on_message  # (method, properties, body)
        self.opened = opened  # the channel is ready; messages come next
        self.consuming = consuming  # RabbitMQ confirmed the consumer
        self._connection: Any = None
        self._channel: Any = None
        self._tag = ""
        self._stopping = False
        self._error: BaseException | None = None

    def run(self, stop: threading.Event, *, busy: Callable[[], bool], grace: float, flush: Callable[[], None]) -> None:
        self._stop, self._busy, self._grace, self._flush = stop, busy, grace, flush
        connection = pika.SelectConnection(
            brokers.connection_parameters(self.url),
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
        )
        self._connection = connection
        try:
            connection.ioloop.start()
        finally:
            if not connection.is_closed:  # left by an exception: close it, then leave for good
                self._stopping = True
                try:
                    connection.close()
                    connection.ioloop.call_later(CLOSING, connection.ioloop.stop)
                    connection.ioloop.start()
                except Exception:  # closing a broken connection: nothing left to save
                    pass
            connection.ioloop.close()
        if self._error is not None:
            raise self._error

    def call(self, callback: Callable[[], None]) -> None:
        """Run `callback` in the connection's thread, soon (from any thread)."""
        self._connection.ioloop.add_callback_threadsafe(callback)

    def ack(self, tag: int, multiple: bool) -> None:
        """Ack deliveries on the channel (the connection's thread only)."""
        self._channel.basic_ack(tag, multiple=multiple)

    # -- opening ------------------------------------------------------------------------------------

    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)
        connection.ioloop.call_later(WATCH, self._watch)

    def _on_open_error(self, connection: Any, error: BaseException) -> None:
        self._error = brokers.not_opened(self.url, error)
        connection.ioloop.stop()

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_close)
        channel.add_on_cancel_callback(self._on_cancel)
        channel.basic_qos(prefetch_count=self.prefetch, callback=self._on_qos)

    def _on_qos(self, _frame: Any) -> None:
        if self._stopping:
            return
        self.opened()
        self._tag = self._channel.basic_consume(self.queue, self._deliver, callback=lambda _: self.consuming())

    def _deliver(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.on_message(method, properties, body)

    # -- losing it ----------------------------------------------------------------------------------

    def _on_close(self, connection: Any, reason: BaseException) -> None:
        if not self._stopping and self._error is None:
            self._error = reason
        connection.ioloop.stop()

    def _on_channel_close(self, _channel: Any, reason: BaseException) -> None:
        if self._stopping:
            return
        self._fail(reason)  # consumer_timeout, a deleted queue, ...

    def _on_cancel(self, _frame: Any) -> None:
        self._fail(pe.ConsumerCancelled(f"RabbitMQ cancelled the consumer of {self.queue}"))

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._close()

    def _close(self) -> None:
        self._stopping = True
        if self._connection.is_open:
            self._connection.close()
        elif self._connection.is_closed:
            self._connection.ioloop.stop()

    # -- stopping -----------------------------------------------------------------------------------

    def _watch(self) -> None:
        if self._stopping:
            return
        if not self._stop.is_set():
            self._connection.ioloop.call_later(WATCH, self._watch)
            return
        self._stopping = True  # take nothing new; give the work in hand its grace to end
        until = time.monotonic() + self._grace
        if self._tag and self._channel.is_open:
            self._channel.basic_cancel(self._tag, callback=lambda _: self._drain(until))
        else:
            self._drain(until)

    def _drain(self, until: float) -> None:
        if self._busy() and time.monotonic() < until and self._connection.is_open:
            self._connection.ioloop.call_later(DRAIN, lambda: self._drain(until))
            return
        if self._channel is not None and self._channel.is_open:
            self._flush()  # the acks of what just ended, sent before the close
        self._close()
