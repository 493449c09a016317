"""One HTTP push: POST a Pub/Sub push request to an endpoint, and say whether it acknowledged.

102, 200, 201, 202 and 204 acknowledge; any other status, a refused or broken connection, or no
complete answer within the ack deadline is a nack, returned with a reason a person can read. The
request carries `Authorization: Bearer <JWT>` (audience = the endpoint URL), re-signed when half
of the token's lifetime has passed. Connections are kept alive and shared by the push threads.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, TimeoutError

from tasuki.shared import push, tokens


@dataclass(frozen=True)
class Outcome:
    acked: bool
    error: str = ""


class Pusher:
    def __init__(self, endpoint: str, key: str, *, connections: int) -> None:
        self.endpoint = endpoint
        self.key = key
        self.http = urllib3.PoolManager(maxsize=connections, block=False, retries=False)
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
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"}
        try:
            response = self.http.request(
                "POST",
                self.endpoint,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=deadline),
                redirect=False,
            )
        except TimeoutError:
            return Outcome(False, f"no answer within the ack deadline ({deadline:g}s)")
        except HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            return Outcome(False, f"cannot reach {self.endpoint}: {type(reason).__name__}: {reason}")
        if response.status == 102:
            # An interim answer: http.client takes it as final and would leave the real one in the
            # kept-alive connection, for the next push to read. Pub/Sub counts 102 as an ack; drop
            # the connections so that nothing stale is read.
            self.http.clear()
            return Outcome(True)
        if response.status in push.ACK_STATUSES:
            return Outcome(True)
        text = response.data[:200].decode("utf-8", "replace").strip()
        return Outcome(False, f"HTTP {response.status}: {text}")

    def close(self) -> None:
        self.http.clear()
