"""One HTTP push: POST a Pub/Sub push request to an endpoint, and say whether it acknowledged.

102, 200, 201, 202 and 204 acknowledge; any other status, a refused or broken connection, or no
complete answer within the ack deadline is a nack, returned with a reason a person can read. The
request carries `Authorization: Bearer <JWT>` (audience = the endpoint URL), re-signed when half
of the token's lifetime has passed. Connections (`connection`) are kept alive between pushes and
shared by the push threads, one push at a time each; a kept connection that the endpoint closed
meanwhile is replaced before it is used, and one that failed is never used again.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from tasuki.local.bridge.connection import Connection, Target
from tasuki.shared import push, tokens


@dataclass(frozen=True)
class Outcome:
    acked: bool
    error: str = ""


class Pusher:
    def __init__(self, endpoint: str, key: str, *, connections: int) -> None:
        self.endpoint = endpoint
        self.key = key
        self.target = Target.of(endpoint)  # ConfigError for a URL that is not http(s)
        self.connections = connections  # kept alive at most
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
        head = f"Authorization: Bearer {self.token()}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        connection = None
        try:
            connection = self._connection(deadline)
            answer = connection.exchange(self.target.head + head + body, deadline)
        except TimeoutError:
            if connection is not None:
                connection.close()
            return Outcome(False, f"no answer within the ack deadline ({deadline:g}s)")
        except OSError as exc:  # refused, reset, TLS, or not HTTP (connection.ProtocolError)
            if connection is not None:
                connection.close()
            return Outcome(False, f"cannot reach {self.endpoint}: {type(exc).__name__}: {exc}")
        if answer.reusable:
            self._keep(connection)
        else:
            # Among others a 102: an interim answer whose real one would follow on this
            # connection, where the next push would read it. Pub/Sub counts 102 as an ack.
            connection.close()
        if answer.status in push.ACK_STATUSES:
            return Outcome(True)
        text = answer.body.decode("utf-8", "replace").strip()
        return Outcome(False, f"HTTP {answer.status}: {text}")

    def _connection(self, timeout: float) -> Connection:
        """A kept connection that is still open, or a new one."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return Connection(self.target, timeout)
            if not connection.stale():
                return connection
            connection.close()

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
