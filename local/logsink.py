"""Job output, in chunks, with secrets masked and bounded memory however much a job prints.

`LogSink.feed()` takes whatever the container wrote; full chunks are masked and handed to
`write(seq, data)` (the store, the terminal). Only the last `len(longest secret) - 1` bytes are
held back between chunks, so that a secret split across two reads is still masked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

MASK = b"********"
CHUNK = 64 * 1024


class LogSink:
    def __init__(self, write: Callable[[int, bytes], None], secrets: Iterable[str] = (), chunk: int = CHUNK) -> None:
        self._write = write
        self._secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self._keep = max((len(s) for s in self._secrets), default=1) - 1
        self._chunk = chunk
        self._buffer = bytearray()
        self.seq = 0
        self.bytes = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._chunk + self._keep:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)

    def _flush(self, *, final: bool) -> None:
        data = self._mask(bytes(self._buffer))
        if final:
            out, self._buffer = data, bytearray()
        else:
            # Hold back a tail that could be the start of a secret.
            cut = len(data) - self._keep
            out, self._buffer = data[:cut], bytearray(data[cut:])
        if out:
            self._write(self.seq, out)
            self.seq += 1
            self.bytes += len(out)

    def _mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, MASK)
        return data
