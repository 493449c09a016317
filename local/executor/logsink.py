"""Job output, in chunks, with secrets masked and bounded memory however much a job prints.

`LogSink.feed()` takes whatever the container wrote; `write(seq, data)` receives masked chunks
(the store, `job.log` events, the terminal). A chunk goes out once about `chunk` bytes are
waiting, or once `interval` seconds (0.1) passed since the last one went out: at once, from
`feed()`, when output comes after a quiet spell (a job's first line, a quiet job's next one), and
else from `tick()` (the job's run loop calls it every `containers.POLL` seconds) for what a burst
left waiting. So a line is readable a moment after it is printed, and a job that prints a lot
makes a few chunks a second, not one message per line. Memory is bounded: what waits is at most
a chunk, one read and a secret's length.

Masking: every byte of every occurrence of a secret, overlapping ones included, becomes part of
one `***`. What is masked of a value (`masked_forms`): the value, each line of a value of several
lines, and its base64 (standard and URL-safe alphabets) however it is aligned in what a job
encodes: `echo "user:$TOKEN" | base64` shows none of TOKEN's characters either. Between chunks only a tail that could still become a secret is held back (the
longest suffix that is a proper prefix of a secret), so a secret split across two reads is still
masked, and streamed output equals the output of masking everything at once. Chunks also end on
a UTF-8 character boundary, so each one decodes on its own.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from tasuki.shared.broker import Publishing
from tasuki.shared.errors import TasukiError

log = logging.getLogger("tasuki.logs")

MASK = b"***"
# A form shorter than this is not masked on its own (a line of a multi-line value, a base64
# alignment of a short value): masking every "{" or every 3 letters would garble the log.
MIN_FORM = 6
CHUNK = 64 * 1024
INTERVAL = 0.1


def masked_forms(values: Iterable[str]) -> list[bytes]:
    """Every byte string to mask for these secret values, longest first (see the docstring)."""
    forms: set[bytes] = set()
    for value in values:
        raw = value.encode()
        if not raw:
            continue
        forms.add(raw)
        forms.update(line for line in raw.splitlines() if len(line.strip()) >= MIN_FORM)
        forms.update(f for f in _base64_forms(raw) if len(f) >= MIN_FORM)
    return sorted(forms, key=len, reverse=True)


def _base64_forms(raw: bytes) -> set[bytes]:
    """The value's base64, and at each of the 3 alignments it can have inside a longer encoded
    text the characters that depend on the value's bits only."""
    forms = {base64.b64encode(raw)}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        start, end = (8 * offset + 5) // 6, 8 * (offset + len(raw)) // 6
        forms.add(encoded[start:end])
    return forms | {f.replace(b"+", b"-").replace(b"/", b"_") for f in forms}


def spans(data: bytes, secrets: Iterable[bytes]) -> list[tuple[int, int]]:
    """Where secrets occur in `data`, as sorted (start, end) runs; overlapping occurrences merge."""
    found = []
    for secret in secrets:
        start = data.find(secret)
        while start >= 0:
            found.append((start, start + len(secret)))
            start = data.find(secret, start + 1)
    found.sort()
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def mask(data: bytes, secrets: Iterable[bytes]) -> bytes:
    """`data` with every run of secret bytes replaced by one MASK."""
    return _masked(data, spans(data, secrets))


def _masked(data: bytes, runs: list[tuple[int, int]]) -> bytes:
    if not runs:
        return data
    out, at = bytearray(), 0
    for start, end in runs:
        out += data[at:start]
        out += MASK
        at = end
    out += data[at:]
    return bytes(out)


def pending(data: bytes, secrets: Iterable[bytes]) -> int:
    """Where the longest suffix of `data` that is a proper prefix of some secret starts
    (len(data) when there is none): output from there on could still become a secret."""
    cut = len(data)
    for secret in secrets:
        for length in range(min(len(secret) - 1, len(data)), 0, -1):
            if len(data) - length >= cut:
                break
            if data.endswith(secret[:length]):
                cut = len(data) - length
                break
    return cut


def char_boundary(data: bytes, cut: int) -> int:
    """`cut` moved back so that it does not split a UTF-8 character (at most 3 bytes back)."""
    for back in range(min(3, cut)):
        byte = data[cut - 1 - back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for the lead byte
            continue
        if byte >= 0xC0:  # a lead byte: is its character complete before the cut?
            size = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return cut if back + 1 >= size else cut - 1 - back
        return cut
    return cut


class LogSink:
    """Thread-safe: the container's output feeds it from one thread, `tick()` comes from another."""

    def __init__(
        self,
        write: Callable[[int, bytes], None],
        secrets: Iterable[str] = (),
        *,
        chunk: int = CHUNK,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._secrets = masked_forms(secrets)
        self._chunk = chunk
        self._interval = interval
        self._clock = clock
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._last = clock()
        self.seq = 0
        self.bytes = 0

    def feed(self, data: bytes) -> None:
        with self._lock:
            self._buffer += data
            if len(self._buffer) >= self._chunk or self._clock() - self._last >= self._interval:
                self._flush(final=False)

    def tick(self) -> None:
        """Send what waits if it has waited `interval` seconds (called while the job runs)."""
        with self._lock:
            if self._buffer and self._clock() - self._last >= self._interval:
                self._flush(final=False)

    def close(self) -> None:
        with self._lock:
            self._flush(final=True)

    def __enter__(self) -> LogSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _flush(self, *, final: bool) -> None:
        data = bytes(self._buffer)
        runs = spans(data, self._secrets)
        cut = len(data)
        if not final:
            cut = char_boundary(data, pending(data, self._secrets))
            for start, end in runs:  # never cut through a secret: it would show on both sides
                if start < cut < end:
                    cut = start
            if cut == 0 and len(data) > 4 * self._chunk:
                # Only a pathological stream (one endless run of overlapping secrets) gets here:
                # send what is known to be secret, masked, rather than hold it without bound.
                cut = runs[0][1] if runs else len(data)
        out = _masked(data[:cut], [(s, e) for s, e in runs if e <= cut])
        del self._buffer[:cut]
        if out:
            self._write(self.seq, out)
            self.seq += 1
            self.bytes += len(out)
            self._last = self._clock()


class LogEvents:
    """Log chunks as `job.log` events, none lost: one publishing thread, a bounded queue.

    Each chunk is published confirmed under the message id run:job:attempt:seq (functions/logs
    stores it once), and retried while RabbitMQ is away. The queue holds at most `capacity`
    chunks: a job that prints faster than they go out waits in `put`, never fills memory.
    `drain()` waits until every chunk put so far is confirmed (a job's log goes out before its
    `job.finished`). Only `close()` gives up what RabbitMQ never took, and says so.
    """

    def __init__(self, broker: Publishing, *, capacity: int = 64, retry: float = 0.5, longest: float = 10.0) -> None:
        self._broker = broker
        self._queue: queue.Queue = queue.Queue(capacity)
        self._retry, self._longest = retry, longest
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.published = 0
        self.lost = 0

    def put(self, message: Any) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="job-log-events")
                self._thread.start()
        self._queue.put(message)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every chunk put so far is published (or `timeout` passed); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self.drain(timeout)
            self._closing.set()
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._publish(message)
            finally:
                self._queue.task_done()
        self._queue.task_done()
        self._broker.close()  # this thread's connection

    def _publish(self, message: Any) -> None:
        delay = self._retry
        while True:
            try:
                self._broker.publish(
                    message, message_id=f"{message.run_id}:{message.job}:{message.attempt}:{message.seq}:log"
                )
                self.published += 1
                return
            except TasukiError as exc:
                if self._closing.is_set():
                    self.lost += 1
                    log.error(
                        "job.log chunk %s of %s/%s not published: %s", message.seq, message.run_id, message.job, exc
                    )
                    return
                log.warning("job.log chunk not published yet (%s); trying again in %.1fs", exc, delay)
                self._closing.wait(delay)
                delay = min(delay * 2, self._longest)
