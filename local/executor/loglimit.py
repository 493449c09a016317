"""The per-job log limit (TASUKI_JOB_LOG_LIMIT): a job's output passes until the limit, then one
line says the log was cut, and nothing more goes on.

`LogLimit` sits between the container's output stream and the log sink. Once it is `passed`
the job's runner stops the container (its output is read and dropped meanwhile, so memory stays
flat however fast the job writes) and the job fails with reason `log-limit`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tasuki.shared import sizes

REASON = "log-limit"


def cut_line(limit: int) -> bytes:
    return (
        f"\n[tasuki] the log passed its limit of {sizes.show(limit)} (TASUKI_JOB_LOG_LIMIT): "
        f"cut here, and the job was stopped\n"
    ).encode()


def message(limit: int) -> str:
    return f"its log passed the limit of {sizes.show(limit)} (TASUKI_JOB_LOG_LIMIT); the job was stopped"


class LogLimit:
    """`feed` passes output on to `write` up to `limit` bytes (None: no limit); thread-safe."""

    def __init__(self, limit: int | None, write: Callable[[bytes], None]) -> None:
        self.limit = limit
        self._write = write
        self._lock = threading.Lock()
        self.written = 0  # bytes of output passed on
        self.dropped = 0  # bytes of output past the limit, not passed on
        self.passed = False

    def feed(self, data: bytes) -> None:
        with self._lock:
            if self.limit is None:
                self._write(data)
                self.written += len(data)
                return
            if self.passed:
                self.dropped += len(data)
                return
            room = self.limit - self.written
            if len(data) <= room:
                self._write(data)
                self.written += len(data)
                return
            self._write(data[:room])
            self._write(cut_line(self.limit))
            self.written += room
            self.dropped += len(data) - room
            self.passed = True
