"""One HTTP push: POST a Pub/Sub push request to an endpoint, and say whether it acknowledged.

102, 200, 201, 202 and 204 acknowledge; any other status, a refused or broken connection, an
answer that is not HTTP/1.x, or no answer within the ack deadline is a nack, returned with a
reason a person can read. The request carries `Authorization: Bearer <JWT>` (audience = the
endpoint URL), re-signed when half of the token's lifetime has passed.

Connections are the standard library's (`http.client`; https checks the certificate and the host
name against the system's CAs), kept alive between pushes and shared by the push threads, one
push at a time each. A push takes the most recently used idle connection that the endpoint has not
closed meanwhile, or opens one, and gives it back only once its answer was read to its end; any
other connection (one that failed, an interim 102 whose real answer would follow, a body that
ends with the connection or is longer than `DRAIN`) is closed. The ack deadline bounds the
connecting and each read of the answer. Of a body, at most `DRAIN` bytes are read, the first
`KEEP` kept for the nack's reason; an acknowledging answer's body that ends only with its
connection is not waited for.
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tasuki.shared import push, tokens
from tasuki.shared.errors import ConfigError

KEEP = 200  # body bytes kept for a nack's reason
DRAIN = 64 * 1024  # body bytes read to keep a connection; a longer body closes it
Connection = http.client.HTTPConnection


@dataclass(frozen=True)
class Outcome:
    acked: bool
    error: str = ""


class Pusher:
    def __init__(self, endpoint: str, key: str, *, connections: int) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"a push endpoint must be an http:// or https:// URL, not {endpoint!r}")
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"push endpoint {endpoint!r}: {exc}") from None
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(c in self.path for c in " \r\n\t\0"):
            raise ConfigError(f"push endpoint {endpoint!r}: a space or control character in the URL")
        self.endpoint = endpoint
        self.key = key
        self.connections = connections  # kept alive at most
        self._host, self._port = parts.hostname, port
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._idle: list[Connection] = []  # the most recently used last
        self._lock = threading.Lock()
        self._token = ""
        self._token_renewal = 0.0

    def token(self) -> str:
        now = time.monotonic()
        with self._lock:
            if now >= self._token_renewal:
                self._token = tokens.sign(self.key, self.endpoint)
                self._token_renewal = now + tokens.LIFETIME / 2
            return self._token

    def push(self, request: dict[str, Any], deadline: float) -> Outcome:
        body = json.dumps(request, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token()}",
            "Accept-Encoding": "identity",
        }
        connection = self._connection(deadline)
        try:
            connection.request("POST", self.path, body=body, headers=headers)
            answer = connection.getresponse()
        except TimeoutError:
            connection.close()
            return Outcome(False, f"no answer within the ack deadline ({deadline:g}s)")
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, TLS, not HTTP/1.x
            connection.close()
            return Outcome(False, f"cannot reach {self.endpoint}: {type(exc).__name__}: {exc}")
        acked = answer.status in push.ACK_STATUSES
        text, reusable = _read(answer, acked)
        if reusable:
            self._keep(connection)
        else:
            connection.close()
        if acked:
            return Outcome(True)
        return Outcome(False, f"HTTP {answer.status}: {text.decode('utf-8', 'replace').strip()}")

    def _connection(self, timeout: float) -> Connection:
        """A kept connection the endpoint has not closed meanwhile, or a new one."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                if self._tls is not None:
                    return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._tls)
                return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            if connection.sock is not None and not _readable(connection):
                connection.timeout = timeout
                connection.sock.settimeout(timeout)
                return connection
            connection.close()  # closed by the endpoint (its keep-alive timeout), or stray bytes

    def _keep(self, connection: Connection) -> None:
        with self._lock:
            if len(self._idle) < self.connections:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _read(answer: http.client.HTTPResponse, acked: bool) -> tuple[bytes, bool]:
    """The first KEEP bytes of the answer's body, and whether its connection may carry the next
    push (the body read to its end, and the endpoint keeping the connection)."""
    if answer.status < 200:
        # An interim answer (102) taken as final: its real answer would follow on this connection.
        return b"", False
    framed = answer.chunked or answer.length is not None
    if not framed and acked:
        return b"", False  # a body that ends with the connection: nothing in it changes the ack
    try:
        if answer.length is not None and answer.length > DRAIN:
            return answer.read(KEEP), False
        body = answer.read(DRAIN + 1) if framed else answer.read(KEEP)
    except (OSError, http.client.HTTPException, ValueError):  # cut short, timed out, bad chunking
        return b"", False
    return body[:KEEP], framed and len(body) <= DRAIN and answer.isclosed() and not answer.will_close


def _readable(connection: Connection) -> bool:
    """Something to read on an idle connection: the endpoint closed it, or sent stray bytes."""
    poller = select.poll()
    poller.register(connection.sock, select.POLLIN)
    return bool(poller.poll(0))
