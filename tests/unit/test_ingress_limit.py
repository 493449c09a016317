"""The ingress's body limit, the one place a body over `TASUKI_MAX_BODY_BYTES` is refused (413):
before the delivery is read, without RabbitMQ or the store (the broker URL here points nowhere)."""

from __future__ import annotations

import io

import pytest
from functions_framework import create_app

from tests.deliveries import fixture_body, headers

LIMIT = 16 * 1024  # more than the push fixture (8.3 KB)


@pytest.fixture
def client(tmp_path, tasuki_env):
    tasuki_env(data_dir=str(tmp_path), amqp_url="amqp://guest:guest@127.0.0.1:1/", max_body_bytes=str(LIMIT))
    return create_app("ingress", "functions/ingress.py").test_client()


def test_a_body_over_the_limit_is_a_413_that_names_the_setting(client):
    body = fixture_body("github", "push.json")
    over = body + b" " * (LIMIT + 1 - len(body))
    answer = client.post("/", data=over, headers=headers("github", "push", over))
    assert answer.status_code == 413, answer.get_data(as_text=True)
    assert "TASUKI_MAX_BODY_BYTES" in answer.get_json()["error"]


def test_a_chunked_body_is_read_no_further_than_the_limit(client):
    body = fixture_body("github", "push.json")
    stream = io.BytesIO(body + b" " * (LIMIT * 4))
    answer = client.post(
        "/",
        input_stream=stream,
        headers=headers("github", "push", body),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert answer.status_code == 413
    assert stream.tell() <= LIMIT + 1


def test_a_body_of_exactly_the_limit_goes_on_to_be_read(client):
    # Given a body of exactly the limit, sent with a content type the reading refuses
    body = fixture_body("github", "push.json")
    exact = body + b" " * (LIMIT - len(body))
    head = {**headers("github", "push", exact), "Content-Type": "text/plain"}
    # Then the limit lets it through, and the reading answers (415), not the limit
    answer = client.post("/", data=exact, headers=head)
    assert answer.status_code == 415, answer.get_data(as_text=True)
