"""A kept-alive HTTP/1.1 connection to a push endpoint: send one POST, read its answer.

A push is always the same exchange: one small POST to one URL, answered by a status and a short
body. This speaks just that much HTTP/1.1 (http, or https with the system's CAs and the host name
checked), at a fraction of a general client's cost per request: the bridge's CPU per push was
mostly urllib3's pooling and http.client's header parsing. Anything the endpoint sends is
bounded: the status line and headers (`MAX_HEAD` bytes, `MAX_HEADERS` lines), interim answers,
chunk-size lines, and the body, of which the first `KEEP` bytes are kept. A body longer than
`MAX_DRAIN`, or one that ends only with the connection, closes the connection rather than being
read to its end. The whole answer must arrive within the deadline, or `TimeoutError`; a broken
connection or an answer that is not HTTP/1.x raises `OSError` (`ProtocolError` for the latter).
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tasuki.shared.errors import ConfigError

MAX_HEAD = 64 * 1024  # status line and headers of one answer
MAX_HEADERS = 100
MAX_INTERIM = 10  # 100 Continue answers before the real one
MAX_DRAIN = 64 * 1024  # body bytes read to keep the connection; a longer body closes it
KEEP = 200  # body bytes kept for the push's error message
CHUNK = 64 * 1024  # bytes asked of the socket at once


class ProtocolError(OSError):
    """The endpoint's answer is not the HTTP/1.x this connection understands."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # its first KEEP bytes at most
    reusable: bool  # the connection may carry the next request


@dataclass(frozen=True)
class Target:
    """Where a push goes: host, port, TLS, and the request line and fixed headers."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    head: bytes  # "POST <path> HTTP/1.1", Host and the headers every push carries

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"a push endpoint must be an http:// or https:// URL, not {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ConfigError(f"push endpoint {url!r}: {exc}") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]  # never credentials in the Host header
        if any(c in path + authority for c in "\r\n\0 "):
            raise ConfigError(f"push endpoint {url!r}: a space or control character in the URL")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nAccept-Encoding: identity\r\n"
            "Content-Type: application/json\r\n"
        ).encode("ascii", "strict")
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        return cls(parts.hostname, port, tls, head)


class Connection:
    """One connection to `target`, used by one push at a time."""

    def __init__(self, target: Target, timeout: float) -> None:
        sock = socket.create_connection((target.host, target.port), timeout=max(timeout, 0.001))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.tls is not None:
                sock = target.tls.wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.buffer = b""  # received and not consumed yet
        self.end = 0.0  # monotonic time by which the current answer must be complete

    def stale(self) -> bool:
        """True if the connection, idle since its last answer, was closed (or has stray bytes)."""
        if self.buffer or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.sock.close()

    def exchange(self, request: bytes, deadline: float) -> Answer:
        """Send `request` (a complete HTTP/1.1 request) and read the answer, all within `deadline` seconds."""
        self.end = time.monotonic() + deadline
        self._timeout()
        self.sock.sendall(request)
        for _ in range(MAX_INTERIM + 1):
            status, close, length, chunked = self._head()
            if status != 100:  # as http.client: 100 Continue is skipped
                break
        else:
            raise ProtocolError(f"more than {MAX_INTERIM} interim answers")
        if status < 200:  # another interim answer (102 Processing): its final answer would follow
            return Answer(status, b"", False)
        if status in (204, 304):
            return Answer(status, b"", not close)
        if chunked:
            body, complete = self._chunked()
        elif length is not None:
            body, complete = self._sized(length)
        else:  # the body ends with the connection: read what is bounded, then close it
            body, complete = self._until_close(), False
        return Answer(status, body[:KEEP], complete and not close)

    # -- reading ---------------------------------------------------------------------------------

    def _timeout(self) -> None:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        self.sock.settimeout(left)

    def _recv(self) -> bool:
        """Read what has arrived into the buffer; False if the endpoint closed the connection."""
        self._timeout()
        data = self.sock.recv(CHUNK)
        self.buffer += data
        return bool(data)

    def _more(self) -> None:
        if not self._recv():
            raise ProtocolError("the endpoint closed the connection before its answer was complete")

    def _line(self, limit: int) -> bytes:
        """The next line (without its line end), at most `limit` bytes."""
        while True:
            end = self.buffer.find(b"\n", 0, limit + 1)
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
                return line.rstrip(b"\r")
            if len(self.buffer) > limit:
                raise ProtocolError(f"a line longer than {limit} bytes")
            self._more()

    def _head(self) -> tuple[int, bool, int | None, bool]:
        """Status line and headers: (status, close after it, Content-Length, chunked)."""
        while True:
            end = self.buffer.find(b"\r\n\r\n", 0, MAX_HEAD)
            if end >= 0:
                head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                break
            if len(self.buffer) >= MAX_HEAD:
                raise ProtocolError(f"status line and headers longer than {MAX_HEAD} bytes")
            self._more()
        lines = head.split(b"\r\n")
        if len(lines) > MAX_HEADERS + 1:
            raise ProtocolError(f"more than {MAX_HEADERS} headers")
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if (
            version not in (b"HTTP/1.1", b"HTTP/1.0")
            or len(code) != 3
            or not code.isdigit()
            or rest[3:4] not in (b"", b" ")
        ):
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        close = version == b"HTTP/1.0"  # no keep-alive negotiation: close it
        length: int | None = None
        chunked = coded = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise ProtocolError(f"not a header: {line[:80]!r}")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18 or (length is not None and length != int(value)):
                    raise ProtocolError(f"bad Content-Length: {value[:40]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                coded = True  # it overrides Content-Length
                chunked = value.rsplit(b",", 1)[-1].strip() == b"chunked"
                close = close or not chunked  # another coding: the body ends with the connection
            elif name == b"connection":
                close = close or b"close" in value
        return status, close, None if coded else length, chunked

    def _sized(self, length: int) -> tuple[bytes, bool]:
        """A body of `length` bytes: (its first bytes, read to its end)."""
        if length > MAX_DRAIN:  # not worth reading to keep the connection
            while len(self.buffer) < KEEP and self._recv():
                pass
            return self.buffer[:KEEP], False
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body, True

    def _until_close(self) -> bytes:
        """A body that ends with the connection: its first bytes (the connection is closed after)."""
        while len(self.buffer) < MAX_DRAIN and self._recv():
            pass
        return self.buffer[:KEEP]

    def _chunked(self) -> tuple[bytes, bool]:
        """A chunked body: (its first bytes, read to its end)."""
        kept = b""
        total = 0
        while True:
            size_line = self._line(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size: {size_line[:40]!r}") from None
            if size == 0:
                break
            total += size
            if total > MAX_DRAIN:
                return kept, False
            chunk, _ = self._sized(size)
            kept += chunk[: KEEP - len(kept)]
            if self._line(2):
                raise ProtocolError("a chunk longer than its size")
        for _ in range(MAX_HEADERS + 1):  # trailers, up to the empty line
            if not self._line(MAX_HEAD):
                return kept, True
        raise ProtocolError(f"more than {MAX_HEADERS} trailers")
