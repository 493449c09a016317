"""The functions behind their push subscriptions, in the test's process: a thread takes what
waits in the dispatcher's and the logs' queues and pushes it to the real handlers (through
functions-framework's test client), one message at a time, as the bridge does for one ordering
key; it also ticks, as the bridge's clock does. For tests of the executor, which needs the
dispatcher to answer its claims and heartbeats and the logs function to store its log.

`paused` stops the pushes (the dispatcher unreachable) without stopping the thread.
"""

from __future__ import annotations

import threading
import time
import uuid

from tasuki.shared import codec, push, tokens
from tasuki.shared.broker import attributes_of, connect
from tasuki.shared.messages import Message, Tick
from tests.conftest import pushed

QUEUES = {"tasuki.dispatcher": "dispatcher", "tasuki.logs": "logs"}


class Functions:
    """The pushed-to handlers of this process's runtime (real RabbitMQ, the store in its data
    dir), each served by functions-framework's test client."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self.clients: dict = {}

    def client(self, function: str):
        from functions_framework import create_app

        from tasuki import functions as sources

        if function not in self.clients:
            self.clients[function] = create_app(target=function, source=str(sources.source(function))).test_client()
        return self.clients[function]

    def push(self, function: str, message: Message, attempt: int = 1) -> dict:
        audience = self.rt.settings.endpoint(function)
        answer = pushed(self.client(function), function, message, key=self.rt.signing_key, audience=audience)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()


class Pump:
    def __init__(self, functions, *, tick: float = 0.5) -> None:
        self.functions = functions
        self.rt = functions.rt
        self.tick = tick
        self.stop = threading.Event()
        self.paused = threading.Event()
        self.pushed: list[tuple[str, str]] = []  # (function, type), in the order pushed
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pump")

    def __enter__(self) -> Pump:
        self._thread.start()
        return self

    def busy(self) -> bool:
        """Messages wait in (or are being pushed from) the functions' queues."""
        from tests.conftest import queued_messages

        queued = queued_messages(self.rt.settings.amqp_url)
        return any(queued.get(queue, 0) for queue in QUEUES)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._thread.join(30)

    def _push(self, function: str, body: bytes, message_type: str, attributes: dict, ordering_key: str) -> bool:
        envelope = push.envelope(
            body,
            attributes={**attributes, "type": message_type},
            message_id=uuid.uuid4().hex,
            publish_ms=int(time.time() * 1000),
            subscription=f"projects/tasuki/subscriptions/{function}",
            delivery_attempt=1,
            ordering_key=ordering_key,
        )
        token = tokens.sign(self.rt.signing_key, self.rt.settings.endpoint(function))
        answer = self.functions.client(function).post("/", json=envelope, headers={"Authorization": f"Bearer {token}"})
        self.pushed.append((function, message_type))
        if answer.status_code != 200:
            self.errors.append(f"{function} {message_type}: {answer.status_code} {answer.get_data(as_text=True)}")
        return answer.status_code == 200

    def _loop(self) -> None:
        connection = connect(self.rt.settings.amqp_url)
        channel = connection.channel()
        next_tick = time.monotonic() + self.tick
        try:
            while not self.stop.is_set():
                if self.paused.is_set():
                    time.sleep(0.05)
                    continue
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick
                    self._push("dispatcher", codec.encode(Tick()), Tick.TYPE, {}, "")
                idle = True
                for queue, function in QUEUES.items():
                    method, props, body = channel.basic_get(queue)
                    if method is None:
                        continue
                    idle = False
                    key = (props.headers or {}).get("x-ordering-key", "")
                    ok = self._push(function, body, props.type or "", attributes_of(props.headers), key)
                    if ok:
                        channel.basic_ack(method.delivery_tag)
                    else:
                        channel.basic_nack(method.delivery_tag, requeue=True)
                if idle:
                    time.sleep(0.02)
        finally:
            connection.close()
