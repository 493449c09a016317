"""The broker client against a real RabbitMQ; and the broker contract (tests/broker_contract.py,
which the in-memory broker keeps too) run against RabbitMQ through `Broker` and `Publisher`."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from tasuki.shared import topics
from tasuki.shared.broker import Broker, Publishing, attributes_of
from tasuki.shared.codec import decode
from tasuki.shared.errors import BrokerUnavailable, PublishRefused
from tasuki.shared.memory import Published, matches
from tasuki.shared.messages import Event, Ref, Repository, RunUpdated
from tasuki.shared.publisher import Publisher
from tests.broker_contract import ROUTES, TOPIC, BrokerContract
from tests.conftest import new_vhost


def event() -> Event:
    return Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id="d1",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="main"),
        after="abc",
    )


def test_publish_is_confirmed_persistent_and_carries_attributes(vhost):
    broker = Broker(vhost)
    broker.declare()
    message_id = broker.publish(event(), message_id="m-1")
    with broker.channel() as ch:
        method, props, body = ch.basic_get(topics.subscription("router").queue, auto_ack=True)
    assert method is not None and message_id == props.message_id == "m-1"
    assert props.delivery_mode == 2 and props.content_type == "application/msgpack" and props.type == "event"
    assert attributes_of(props.headers) == {
        "host": "bitbucket",
        "event": "repo.push",
        "repo": "acme/api",
        "ref": "main",
        "delivery": "d1",
        "type": "event",
    }
    assert decode(body, Event) == event()
    broker.close()


def test_an_unroutable_message_is_refused_not_lost(vhost):
    broker = Broker(vhost)  # nothing declared: no queue is bound
    with broker.channel() as ch:
        ch.exchange_declare(topics.EVENTS, exchange_type="topic", durable=True)
    with pytest.raises(PublishRefused, match="no queue is bound"):
        broker.publish(event())
    # a status notice may have no listener
    with broker.channel() as ch:
        ch.exchange_declare(topics.RUNS, exchange_type="topic", durable=True)
    broker.publish(RunUpdated(run_id="r", status="queued", event=event()))
    broker.close()


def test_no_broker_is_a_clear_error():
    broker = Broker("amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(BrokerUnavailable, match="cannot reach RabbitMQ at amqp://guest:\\*\\*\\*@127.0.0.1:1"):
        broker.publish(event())


# --- the broker contract, against RabbitMQ ---------------------------------------------------------


class RabbitRig:
    """Publishes through `publisher`; declares and looks into queues over a channel of its own."""

    def __init__(self, url: str, publisher: Publishing) -> None:
        self.publisher = publisher
        self.broker = Broker(url)

    def declare(self, subscriptions: tuple[topics.Subscription, ...] | None = None) -> None:
        self.broker.declare(subscriptions=subscriptions)

    def declare_queue(self, queue: str, arguments: dict[str, Any] | None = None) -> None:
        with self.broker.channel() as ch:
            ch.queue_declare(queue, durable=True, arguments=arguments)

    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        with self.broker.channel() as ch:
            ch.exchange_declare(exchange, exchange_type="topic", durable=True)
            ch.queue_declare(queue)
            ch.queue_bind(queue, exchange, routing_key=pattern)

    def publish_raw(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, mandatory: bool) -> None:
        self.broker.publish_raw(exchange, routing_key, body, message_id=message_id, mandatory=mandatory)

    def take(self, queue: str) -> list[Published]:
        taken = []
        with self.broker.channel() as ch:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return taken
                taken.append(Published(method.exchange, method.routing_key, props, body))

    def clean(self) -> None:
        """Delete every queue and exchange the contract makes, so the next test starts from nothing."""
        topology = topics.topology()
        queues = [q.name for q in topology.queues] + [f"contract.q{n}" for n in range(len(ROUTES))] + ["contract.twice"]
        with self.broker.channel() as ch:
            for queue in queues:
                ch.queue_delete(queue)
            for exchange in (*topology.exchanges, TOPIC):
                ch.exchange_delete(exchange)
        self.publisher.close()
        self.broker.close()


@pytest.fixture(scope="module")
def contract_vhost() -> Iterator[str]:
    with new_vhost() as url:
        yield url


class TestRabbitMQ(BrokerContract):
    @pytest.fixture(params=["Broker", "Publisher"])
    def rig(self, request, contract_vhost) -> Iterator[RabbitRig]:
        publisher: Publishing = Broker(contract_vhost) if request.param == "Broker" else Publisher(contract_vhost)
        rig = RabbitRig(contract_vhost, publisher)
        yield rig
        rig.clean()


def test_random_patterns_route_on_rabbitmq_as_the_in_memory_matcher_says(contract_vhost):
    # Given 40 queues bound by random patterns and 60 random routing keys (a fixed seed: the same
    # cases every run), made of few words so that they often meet
    rng = random.Random(11)

    def joined(choices: tuple[str, ...]) -> str:
        return ".".join(rng.choice(choices) for _ in range(rng.randint(1, 5)))

    patterns = sorted({joined(("a", "b", "", "*", "#")) for _ in range(40)})
    keys = sorted({joined(("a", "b", "")) for _ in range(60)})
    rig = RabbitRig(contract_vhost, Broker(contract_vhost))
    queues = {pattern: f"random.q{n}" for n, pattern in enumerate(patterns)}
    try:
        for pattern, queue in queues.items():
            rig.bind(queue, "random.topic", pattern)
        # When each key is published once
        for key in keys:
            rig.publish_raw("random.topic", key, b"", message_id=key, mandatory=False)
        # Then each queue holds exactly the keys `matches` gives its pattern
        routed = {pattern: {p.routing_key for p in rig.take(queue)} for pattern, queue in queues.items()}
        assert routed == {pattern: {k for k in keys if matches(pattern, k)} for pattern in patterns}
    finally:
        with rig.broker.channel() as ch:
            for queue in queues.values():
                ch.queue_delete(queue)
            ch.exchange_delete("random.topic")
        rig.broker.close()
