"""A real local HTTP endpoint for push tests: records every push, answers as the test says.

    with Endpoint(lambda push: 500 if push.attempt < 3 else 200) as endpoint:
        settings = make_settings(router_url=endpoint.url)
        ...
        endpoint.wait_for(lambda pushes: ...)

`answer(push)` returns a status, or `(status, seconds to sleep first)`. Each `Push` has the parsed
envelope, whether its bearer token verified for this URL, and when it started and was answered.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasuki.shared import tokens
from tasuki.shared.errors import AuthError


@dataclass
class Push:
    body: dict[str, Any]
    authorization: str
    token_ok: bool
    started: float
    answered: float = 0.0
    status: int = 0

    @property
    def message(self) -> dict[str, Any]:
        return self.body["message"]

    @property
    def id(self) -> str:
        return self.message["messageId"]

    @property
    def attempt(self) -> int:
        return self.body.get("deliveryAttempt", 0)

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.message["data"])

    @property
    def ordering_key(self) -> str:
        return self.message.get("orderingKey", "")


Answer = Callable[[Push], "int | tuple[int, float]"]


@dataclass
class Endpoint:
    answer: Answer = lambda push: 204
    key: str = "test-push-key-of-at-least-32-bytes"
    pushes: list[Push] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Condition()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                endpoint._handle(self, raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        authorization = handler.headers.get("Authorization", "")
        try:
            tokens.verify(self.key, authorization, self.url)
            token_ok = True
        except AuthError:
            token_ok = False
        push = Push(json.loads(raw), authorization, token_ok, time.monotonic())
        with self.lock:
            self.pushes.append(push)
        answer = self.answer(push)
        status, delay = answer if isinstance(answer, tuple) else (answer, 0.0)
        if delay:
            time.sleep(delay)
        push.status = status
        try:
            if status == 102:  # an interim answer, then the final one on the same connection
                handler.send_response_only(102)
                handler.end_headers()
                status = 200
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:  # the bridge gave up waiting (ack deadline) and closed the connection
            pass
        push.answered = time.monotonic()
        with self.lock:
            self.lock.notify_all()

    def __enter__(self) -> Endpoint:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()  # a quick shutdown
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def acked(self) -> list[Push]:
        with self.lock:
            return [p for p in self.pushes if p.status in (102, 200, 201, 202, 204)]

    def acked_ids(self) -> set[str]:
        return {p.id for p in self.acked()}

    def of(self, message_id: str) -> list[Push]:
        with self.lock:
            return [p for p in self.pushes if p.id == message_id]

    def wait_for(self, condition: Callable[[Endpoint], bool], timeout: float = 60, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    summary = [(p.id, p.attempt, p.status) for p in self.pushes][-30:]
                    raise AssertionError(f"timed out waiting for {what or 'the endpoint'}; last pushes: {summary}")
                self.lock.wait(min(left, 0.2))
