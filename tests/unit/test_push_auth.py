"""Every pushed-to handler refuses a push without a valid bearer token (401), through
functions-framework's own test client; and the push envelope reads back what the bridge wrote."""

from __future__ import annotations

import base64
import io

import pytest

from tasuki.shared import push, tokens, topics
from tasuki.shared.errors import AuthError
from tasuki.shared.runtime import runtime
from tasuki.shared.settings import Settings
from tests.unit.conftest import function_client as client

KEY = "handler-test-key-of-at-least-32-bytes"
PUSHED = sorted({sub.endpoint for sub in topics.SUBSCRIPTIONS})  # every function the bridge pushes to


@pytest.fixture
def env(memory_runtime):
    return memory_runtime(push_key=KEY).settings


def body() -> dict:
    return push.envelope(
        b"\xc1 not msgpack",
        attributes={"type": "run.requested"},
        message_id="m",
        publish_ms=0,
        subscription="projects/tasuki/subscriptions/x",
        delivery_attempt=1,
    )


@pytest.mark.parametrize("function", PUSHED)
@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        (None, "missing Authorization header"),
        ("Basic dXNlcjpwYXNz", "must be 'Bearer <token>'"),
        ("Bearer ", "must be 'Bearer <token>'"),
        ("Bearer not-a-jwt", "invalid push token"),
        ("other-key", "invalid push token: Signature verification failed"),
        ("other-audience", "not for this endpoint"),
        ("expired", "expired"),
    ],
)
def test_a_push_without_a_valid_token_is_refused_with_401(env, function, authorization, says):
    url = env.endpoint(function)
    authorization = {
        "other-key": f"Bearer {tokens.sign('another-key-of-at-least-32-bytes-long', url)}",
        "other-audience": f"Bearer {tokens.sign(KEY, 'http://127.0.0.1:1/elsewhere')}",
        "expired": f"Bearer {tokens.sign(KEY, url, lifetime=-60)}",
    }.get(authorization, authorization)
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = client(function).post("/", json=body(), headers=headers)
    assert answer.status_code == 401, answer.get_data(as_text=True)
    assert says in answer.get_json()["error"]
    assert runtime().broker.published == []  # nothing gets that far


@pytest.mark.parametrize("function", PUSHED)
def test_a_valid_token_gets_past_authentication(env, function):
    token = tokens.sign(KEY, env.endpoint(function))
    answer = client(function).post("/", json=body(), headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 400, answer.get_data(as_text=True)  # the body is refused, not the caller
    assert runtime().broker.published == []


class Watched(io.RawIOBase):
    """A request body of `size` bytes that counts how many of them were read (seeking, as the
    test client does to measure it, reads nothing)."""

    def __init__(self, size: int) -> None:
        self.size, self.position, self.read_bytes = size, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self.size - self.position))
        buffer[:n] = b"{" * n
        self.position += n
        self.read_bytes += n
        return n


# A body that comes chunked: its length is not said, it is found by reading.
CHUNKED = {"wsgi.input_terminated": True, "CONTENT_LENGTH": ""}


@pytest.mark.parametrize("function", PUSHED)
@pytest.mark.parametrize("length", ["said", "chunked"])
def test_the_token_is_checked_before_a_byte_of_the_body_is_read(env, function, length):
    # Given a huge body (Content-Length says so, or it comes chunked) and no token
    stream = Watched(10 * 1024**3)
    extra = CHUNKED if length == "chunked" else {}
    answer = client(function).post("/", input_stream=stream, environ_overrides=extra, content_type="application/json")
    # Then the answer is 401 and nothing of the body was read, before or after the handler
    assert answer.status_code == 401 and stream.read_bytes == 0


@pytest.mark.parametrize("function", PUSHED)
def test_a_body_over_the_limit_is_refused_reading_no_further(env, function):
    token = tokens.sign(KEY, env.endpoint(function))
    headers = {"Authorization": f"Bearer {token}"}
    # said by Content-Length: nothing read
    stream = Watched(env.max_push_bytes + 1)
    answer = client(function).post("/", input_stream=stream, headers=headers)
    assert answer.status_code == 413 and stream.read_bytes == 0
    assert "TASUKI_MAX_BODY_BYTES" in answer.get_json()["error"]
    # found by reading a chunked body: no further than the limit
    stream = Watched(10 * 1024**3)
    answer = client(function).post("/", input_stream=stream, headers=headers, environ_overrides=CHUNKED)
    assert answer.status_code == 413 and env.max_push_bytes < stream.read_bytes <= env.max_push_bytes + 1


def test_the_push_limit_grows_with_the_webhook_limit():
    assert Settings().max_push_bytes == 8 * 1024**2
    assert Settings(max_body_bytes=25 * 1024**2).max_push_bytes == 100 * 1024**2


def test_tokens_are_short_lived_and_bound_to_one_audience():
    token = tokens.sign(KEY, "http://a/")
    claims = tokens.verify(KEY, f"Bearer {token}", "http://a/")
    assert claims["aud"] == "http://a/" and claims["exp"] - claims["iat"] == tokens.LIFETIME <= 600
    with pytest.raises(AuthError):
        tokens.verify(KEY, f"Bearer {token}", "http://b/")


def test_a_verifier_remembers_a_token_only_until_it_expires(monkeypatch):
    verifier = tokens.Verifier(KEY, "http://a/")
    token = f"Bearer {tokens.sign(KEY, 'http://a/', lifetime=1)}"
    checks = []
    real = tokens.verify
    monkeypatch.setattr(tokens, "verify", lambda *a: checks.append(a) or real(*a))
    # Given a token verified once
    claims = verifier.verify(token)
    # When it comes again, Then its signature is not checked again
    assert verifier.verify(token) == claims and len(checks) == 1
    # And another token is checked on its own
    with pytest.raises(AuthError, match="Signature verification failed"):
        verifier.verify(f"Bearer {tokens.sign('another-key-of-at-least-32-bytes-long', 'http://a/')}")
    # When the remembered token has expired, Then it is refused as any expired token
    while tokens.time.time() < claims["exp"] + 0.1:
        tokens.time.sleep(0.1)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_the_envelope_reads_back_what_the_bridge_wrote():
    request = push.envelope(
        b"\x00\xffbytes",
        attributes={"host": "github"},
        message_id="id-1",
        publish_ms=1767225600123,
        subscription="projects/p/subscriptions/s",
        delivery_attempt=3,
        ordering_key="run-9",
    )
    assert request["message"]["publishTime"] == "2026-01-01T00:00:00.123Z"
    assert base64.b64decode(request["message"]["data"]) == b"\x00\xffbytes"
    pushed = push.parse(request)
    assert (pushed.data, pushed.attributes, pushed.message_id, pushed.ordering_key) == (
        b"\x00\xffbytes",
        {"host": "github"},
        "id-1",
        "run-9",
    )
    assert (pushed.subscription, pushed.delivery_attempt, pushed.publish_time) == (
        "projects/p/subscriptions/s",
        3,
        "2026-01-01T00:00:00.123Z",
    )
