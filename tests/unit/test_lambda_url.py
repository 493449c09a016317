"""Behind an AWS Lambda Function URL (shared/lambda_url.py), every function answers exactly as
functions-framework serves it: the same request, once as a Function URL event (payload format
2.0) through the Lambda handler of the function's bundle entry point, once through
functions-framework's own test client, gives the same status, content type and body."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import functions_framework
import pytest

from tasuki import functions as tasuki_functions
from tasuki.shared import lambda_url, push, tokens
from tasuki.shared.runtime import runtime

KEY = "lambda-test-key-of-at-least-32-bytes"
DOMAIN = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws"


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("TASUKI_PUSH_KEY", KEY)
    monkeypatch.setenv("TASUKI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TASUKI_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")  # nothing may get that far
    for name in ("router", "dispatcher", "reporter"):
        monkeypatch.setenv(f"TASUKI_{name.upper()}_URL", f"https://{name}.{DOMAIN}/")
    monkeypatch.setenv("TASUKI_PUBLIC_URL", f"https://web.{DOMAIN}")  # the name the web page answers to
    runtime.cache_clear()
    yield
    runtime.cache_clear()


def function_url_event(host: str, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> dict:
    """The event a Lambda Function URL `host` passes to its function (payload format 2.0)."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {k.lower(): v for k, v in {**headers, "host": host, "x-forwarded-proto": "https"}.items()},
        "queryStringParameters": dict(p.split("=", 1) for p in query.split("&")) if query else None,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": host.split(".")[0],
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": headers.get("User-Agent", "test"),
            },
            "requestId": "5b3e1c2a-0000-4000-8000-000000000000",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def requests_for(function: str) -> list[tuple[str, str, str, dict[str, str], bytes]]:
    """Requests that reach each function's own logic without RabbitMQ: a push with a valid token
    but an undecodable message, a push without a token, a webhook of no known host, and reads of
    the page and the API."""
    audience = f"https://{function}.{DOMAIN}/"
    envelope = push.envelope(
        b"\xc1", attributes={"type": "x"}, message_id="m", publish_ms=0, subscription="s", delivery_attempt=1
    )
    signed = {"Content-Type": "application/json", "Authorization": f"Bearer {tokens.sign(KEY, audience)}"}
    return [
        ("POST", "/", "", signed, json.dumps(envelope).encode()),
        ("POST", "/", "", {"Content-Type": "application/json"}, json.dumps(envelope).encode()),
        ("POST", "/", "", {"Content-Type": "application/json", "X-Event-Key": "repo:fork"}, b'{"repository": {}}'),
        ("GET", "/api/runs", "status=failure&limit=5", {"Accept": "application/json"}, b""),
        ("GET", "/", "", {"Accept": "text/html"}, b""),
    ]


@pytest.mark.parametrize("function", tasuki_functions.NAMES)
def test_a_function_url_event_gets_the_answer_functions_framework_gives(env, function, tmp_path):
    source = str(tasuki_functions.source(function))
    client = functions_framework.create_app(function, source).test_client()
    handler = lambda_url.handler(function, source)
    for method, path, query, headers, body in requests_for(function):
        host = f"{function}.{DOMAIN}"
        expected = client.open(
            path, base_url=f"https://{host}", method=method, query_string=query, headers=headers, data=body
        )
        got = handler(function_url_event(host, method, path, query, headers, body), None)
        got_body = base64.b64decode(got["body"]) if got.get("isBase64Encoded") else got["body"].encode()
        got_headers = {k.lower(): v for k, v in got["headers"].items()}
        assert (got["statusCode"], got_headers.get("content-type"), got_body) == (
            expected.status_code,
            expected.headers.get("Content-Type"),
            expected.get_data(),
        ), f"{method} {path}"


def test_the_lambda_handler_builds_nothing_at_import(monkeypatch):
    created = []
    monkeypatch.setattr(functions_framework, "create_app", lambda *a, **k: created.append(a))
    lambda_url.handler("router", str(Path(tasuki_functions.source("router"))))
    assert created == []
