"""The in-memory broker keeps the broker contract (tests/broker_contract.py; the same assertions
run against RabbitMQ in tests/integration/test_broker.py), and what only it offers: looking into
its queues, and being shared by threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasuki.shared import topics
from tasuki.shared.errors import BrokerError, BrokerUnavailable
from tasuki.shared.memory import MemoryBroker, Published, matches
from tests.broker_contract import BrokerContract, event, requested


class MemoryRig:
    def __init__(self) -> None:
        self.broker = self.publisher = MemoryBroker()

    def declare(self, subscriptions: tuple[topics.Subscription, ...] | None = None) -> None:
        self.broker.declare(subscriptions=subscriptions)

    def declare_queue(self, queue: str, arguments: dict[str, Any] | None = None) -> None:
        self.broker.queue_declare(queue, durable=True, arguments=arguments)

    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        self.broker.exchange_declare(exchange, exchange_type="topic", durable=True)
        self.broker.queue_declare(queue)
        self.broker.queue_bind(queue, exchange, routing_key=pattern)

    def publish_raw(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, mandatory: bool) -> None:
        self.broker.publish_raw(exchange, routing_key, body, message_id=message_id, mandatory=mandatory)

    def take(self, queue: str) -> list[Published]:
        return self.broker.take(queue)


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    def rig(self) -> MemoryRig:
        return MemoryRig()


def test_the_declared_queues_and_their_arguments_are_the_topology():
    broker = MemoryBroker()
    broker.declare(pools=("default", "gpu"))
    topo = topics.topology(("default", "gpu"))
    assert broker.arguments == {q.name: q.arguments for q in topo.queues}
    assert broker.queues() == dict.fromkeys(broker.arguments, 0)


def test_waiting_looks_without_taking_and_published_keeps_everything_in_order():
    broker = MemoryBroker()
    broker.declare(subscriptions=())
    broker.publish(requested(), mandatory=False)  # reaches no queue, still published
    broker.publish(requested().model_copy(update={"run_id": "r2"}), mandatory=False)
    assert [p.message().run_id for p in broker.published] == ["r1", "r2"]
    broker.declare()
    broker.publish(event(1))
    router = topics.subscription("router").queue
    assert [p.message() for p in broker.waiting(router)] == [event(1)]
    assert broker.queues()[router] == 1
    assert [p.message() for p in broker.take(router)] == [event(1)] and broker.take(router) == []
    assert len(broker.published) == 3


def test_an_unknown_queue_or_exchange_is_named_in_the_error():
    broker = MemoryBroker()
    with pytest.raises(BrokerError, match="no queue 'nope'"):
        broker.take("nope")
    with pytest.raises(BrokerError, match="no exchange 'tasuki.events'"):
        broker.queue_bind("q", "tasuki.events", routing_key="#")
    with pytest.raises(BrokerError, match="only topic exchanges"):
        broker.exchange_declare("x", exchange_type="direct")


def test_threads_publishing_at_once_lose_nothing():
    broker = MemoryBroker()
    broker.declare()

    def publish(thread: int) -> None:
        for n in range(200):
            broker.publish(event(n), message_id=f"{thread}:{n}")

    threads = [threading.Thread(target=publish, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [p.properties.message_id for p in broker.take(topics.subscription("router").queue)]
    assert sorted(ids) == sorted(f"{t}:{n}" for t in range(8) for n in range(200))
    for t in range(8):  # each thread's messages in the order it published them
        assert [i for i in ids if i.startswith(f"{t}:")] == [f"{t}:{n}" for n in range(200)]


# --- topic matching as a property: the table in the contract is checked against RabbitMQ -------

word = st.text("abc", min_size=1, max_size=2)  # empty words: the table in the contract
routing_keys = st.lists(word, min_size=1, max_size=6).map(".".join)


@given(key=routing_keys, data=st.data())
def test_a_key_is_matched_by_itself_with_any_words_starred(key, data):
    words = key.split(".")
    starred = [data.draw(st.sampled_from([w, "*"])) for w in words]
    assert matches(".".join(starred), key)
    assert not matches(".".join([*starred, "*"]), key)  # one word too many


@given(key=routing_keys, data=st.data())
def test_a_hash_stands_for_any_run_of_words_even_none(key, data):
    words = key.split(".")
    start = data.draw(st.integers(0, len(words)))
    end = data.draw(st.integers(start, len(words)))
    assert matches(".".join([*words[:start], "#", *words[end:]]), key)
    assert matches("#", key) and matches("#.#", key)


def test_a_broker_taken_away_refuses_with_broker_unavailable_and_keeps_what_it_holds():
    broker = MemoryBroker()
    broker.declare()
    broker.publish(event(1), message_id="before")
    broker.down()
    with pytest.raises(BrokerUnavailable, match="RabbitMQ is down"):
        broker.publish(event(2))
    with pytest.raises(BrokerUnavailable):
        broker.publish_all([(event(3), "m3", None)])
    with pytest.raises(BrokerUnavailable):
        broker.declare()
    broker.up()
    broker.publish(event(4), message_id="after")
    taken = broker.take(topics.subscription("router").queue)
    assert [p.properties.message_id for p in taken] == ["before", "after"]
    assert [p.properties.message_id for p in broker.published] == ["before", "after"]
