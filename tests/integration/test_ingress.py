"""The ingress function through functions-framework against a real RabbitMQ (a vhost of its own),
through a proxy that takes the broker away: the connection drops, the delivery is answered 503,
and the host's retry is published once over a new connection. Everything the ingress does that
only needs "a broker" is tests/unit/test_ingress.py."""

from __future__ import annotations

import json

from functions_framework import create_app

from tasuki import functions as tasuki_functions
from tasuki.shared import topics
from tasuki.shared.broker import Broker
from tasuki.shared.runtime import runtime
from tests.deliveries import fixture_body, headers
from tests.proxy import TcpProxy

SECRET = "s3cret"
SIGNED_REPOSITORY = "takitake/mysidia"  # first-push.json


def first_push(delivery: str) -> tuple[bytes, dict[str, str]]:
    body = fixture_body("bitbucket", "first-push.json")
    return body, headers("bitbucket", "repo:push", body, secret=SECRET, delivery=delivery)


def test_a_stopped_broker_gives_503_and_the_retried_delivery_publishes_once(vhost, tmp_path, monkeypatch):
    Broker(vhost).declare()
    (tmp_path / "repos.yml").write_text(json.dumps({"repositories": {SIGNED_REPOSITORY: {"secret": SECRET}}}))
    with TcpProxy(5672) as proxy:
        for name, value in {
            "TASUKI_AMQP_URL": vhost.replace("localhost:5672", f"127.0.0.1:{proxy.port}"),
            "TASUKI_DATA_DIR": str(tmp_path / "data"),
            "TASUKI_REPOSITORIES_FILE": str(tmp_path / "repos.yml"),
        }.items():
            monkeypatch.setenv(name, value)
        runtime.cache_clear()
        ingress = create_app(target="ingress", source=str(tasuki_functions.source("ingress"))).test_client()
        try:
            # Given an ingress that has published through the proxy (its connection is open)
            body, head = first_push("warm")
            assert ingress.post("/", data=body, headers=head).status_code == 202
            # When the broker goes away, a delivery is refused with 503 and a body that says why
            proxy.down()
            body, head = first_push("during-outage")
            answer = ingress.post("/", data=body, headers=head)
            assert answer.status_code == 503, answer.text
            assert answer.json["retry"] is True and "RabbitMQ" in answer.json["error"]
            # Then, with the broker back, the host's retry of that delivery is accepted once
            proxy.up()
            assert ingress.post("/", data=body, headers=head).status_code == 202
            assert ingress.post("/", data=body, headers=head).json["status"] == "duplicate"
        finally:
            runtime().publisher.close()
            runtime.cache_clear()
    ids = []
    with Broker(vhost).channel() as ch:
        while (got := ch.basic_get(topics.subscription("router").queue, auto_ack=True))[0] is not None:
            ids.append(got[1].message_id)
    assert ids == ["bitbucket:warm#0", "bitbucket:during-outage#0"]
