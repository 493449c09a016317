"""What every broker promises (`tasuki.shared.broker.Publishing`), as assertions that run against
each: the in-memory one in tests/unit, RabbitMQ through `Broker` and `Publisher` in
tests/integration. A test class subclasses `BrokerContract` and gives it a `rig` fixture.

The rig hides only how a test looks into the broker (declaring its own queues, taking what
waits in one); the publishing goes through the broker's own interface.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import pytest

from tasuki.shared import codec, topics
from tasuki.shared.broker import ORDERING_HEADER, PUBLISHED_HEADER, Publishing, attributes_of
from tasuki.shared.errors import BrokerError, PublishRefused
from tasuki.shared.flowfile import Job
from tasuki.shared.memory import Published
from tasuki.shared.messages import (
    Event,
    JobLog,
    JobOrder,
    PlanOrder,
    Ref,
    Repository,
    RunRequested,
    RunUpdated,
)

TOPIC = "contract.topic"


class Rig(Protocol):
    publisher: Publishing  # what the tests publish through

    def declare(self, subscriptions: tuple[topics.Subscription, ...] | None = None) -> None:
        """Declare Tasuki's topology (for the default pool)."""

    def declare_queue(self, queue: str, arguments: dict[str, Any] | None = None) -> None: ...

    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        """Declare a topic exchange and a queue, and bind them with `pattern`."""

    def publish_raw(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, mandatory: bool) -> None:
        """Publish bytes as they are (`Broker.publish_raw`)."""

    def take(self, queue: str) -> list[Published]:
        """Every message waiting in `queue`, oldest first, removed."""


def event(n: int = 1, host: str = "bitbucket") -> Event:
    return Event(
        host=host,
        event="repo.push",
        kind="push",
        delivery_id=f"d{n}",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="main"),
        after=f"c{n}",
    )


def requested(run_id: str = "r1") -> RunRequested:
    return RunRequested(run_id=run_id, rule_id="rule", event=event())


# Binding patterns and the routing keys each one takes, among KEYS: RabbitMQ's topic rules
# (words split on dots, "" is no word at all, an empty word between two dots is a word).
KEYS = ("", "a", "b", "a.b", "b.b", "a.c", "a.b.c", "a.x.y.c", "x.a.y", "a..c")
ROUTES = {
    "#": set(KEYS),
    "#.#": set(KEYS),
    "*": {"a", "b"},
    "*.#": set(KEYS) - {""},
    "a": {"a"},
    "": {""},
    "a.b": {"a.b"},
    "a.*": {"a.b", "a.c"},
    "*.*": {"a.b", "b.b", "a.c"},
    "*.b": {"a.b", "b.b"},
    "#.b": {"b", "a.b", "b.b"},
    "a.#": {"a", "a.b", "a.c", "a.b.c", "a.x.y.c", "a..c"},
    "a.*.c": {"a.b.c", "a..c"},
    "a.#.c": {"a.c", "a.b.c", "a.x.y.c", "a..c"},
    "#.a.#": {"a", "a.b", "a.c", "a.b.c", "a.x.y.c", "x.a.y", "a..c"},
}


class BrokerContract:
    def test_declare_routes_each_message_to_the_queues_of_its_subscriptions(self, rig: Rig):
        rig.declare()
        router, dispatcher, reporter = (topics.subscription(n).queue for n in ("router", "dispatcher", "reporter"))
        executor = topics.executor_queue("default")
        sent = {
            router: event(),
            dispatcher: requested(),
            reporter: RunUpdated(run_id="r1", status="queued", event=event()),
        }
        for message in sent.values():
            rig.publisher.publish(message)
        plan = PlanOrder(run_id="r1", event=event())
        job = JobOrder(run_id="r1", event=event(), job=Job(name="build", image="busybox", run="ci/build"))
        rig.publisher.publish(plan)
        rig.publisher.publish(job)
        rig.publisher.publish(JobLog(run_id="r1", job="build", seq=0, data="x"))  # no listener: dropped
        for queue, message in sent.items():
            assert [p.message() for p in rig.take(queue)] == [message], queue
        assert [p.message() for p in rig.take(executor)] == [plan, job]
        assert rig.take(topics.DEADLETTER_QUEUE) == []

    def test_dead_letters_and_replays_reach_their_queues(self, rig: Rig):
        rig.declare()
        # the dead-letter exchange collects every key; the default exchange "" delivers to the
        # queue named by the routing key (a replay goes there, and nowhere else)
        rig.publish_raw(topics.DEADLETTER, "any.key", b"dead", message_id="m-dead", mandatory=True)
        rig.publish_raw("", topics.subscription("router").queue, b"again", message_id="m-again", mandatory=True)
        [dead] = rig.take(topics.DEADLETTER_QUEUE)
        assert (dead.exchange, dead.routing_key, dead.body, dead.properties.message_id) == (
            topics.DEADLETTER,
            "any.key",
            b"dead",
            "m-dead",
        )
        [again] = rig.take(topics.subscription("router").queue)
        assert (again.body, again.properties.message_id) == (b"again", "m-again")
        with pytest.raises(PublishRefused, match="no queue is bound"):
            rig.publish_raw("", "no.such.queue", b"lost", message_id="m-lost", mandatory=True)

    def test_topic_patterns_route_as_rabbitmq_routes_them(self, rig: Rig):
        queues = {pattern: f"contract.q{n}" for n, pattern in enumerate(ROUTES)}
        for pattern, queue in queues.items():
            rig.bind(queue, TOPIC, pattern)
        for key in KEYS:
            rig.publish_raw(TOPIC, key, key.encode(), message_id=f"key:{key}", mandatory=False)
        routed = {pattern: {p.routing_key for p in rig.take(queue)} for pattern, queue in queues.items()}
        assert routed == ROUTES

    def test_a_queue_bound_by_two_patterns_gets_a_message_once(self, rig: Rig):
        rig.bind("contract.twice", TOPIC, "a.*")
        rig.bind("contract.twice", TOPIC, "#")
        rig.publish_raw(TOPIC, "a.b", b"x", message_id="once", mandatory=True)
        assert [p.properties.message_id for p in rig.take("contract.twice")] == ["once"]

    def test_a_mandatory_message_that_reaches_no_queue_is_refused_and_the_broker_goes_on(self, rig: Rig):
        rig.declare(subscriptions=())  # nobody listens on tasuki.runs
        with pytest.raises(PublishRefused, match="no queue is bound to tasuki.runs for routing key 'run.requested'"):
            rig.publisher.publish(requested())
        with pytest.raises(PublishRefused, match="no queue is bound"):
            rig.publisher.publish(RunUpdated(run_id="r", status="queued", event=event()), mandatory=True)
        # a status notice may have no listener, and a request may be sent without the guarantee
        rig.publisher.publish(RunUpdated(run_id="r", status="queued", event=event()))
        rig.publisher.publish(requested(), mandatory=False)
        # and the broker goes on publishing
        rig.publisher.publish(PlanOrder(run_id="r", event=event()), message_id="after")
        [after] = rig.take(topics.executor_queue("default"))
        assert after.properties.message_id == "after"
        assert rig.take(topics.DEADLETTER_QUEUE) == []

    def test_an_exchange_that_does_not_exist_is_refused_and_the_broker_goes_on(self, rig: Rig):
        with pytest.raises(PublishRefused):
            rig.publisher.publish(event(), mandatory=False)
        rig.declare()
        assert rig.publisher.publish(event(), message_id="next") == "next"
        assert [p.properties.message_id for p in rig.take(topics.subscription("router").queue)] == ["next"]

    def test_message_ids_are_kept_when_given_and_new_and_unique_otherwise(self, rig: Rig):
        rig.declare()
        ids = [rig.publisher.publish(event(), message_id="m-1"), rig.publisher.publish(event())]
        ids.append(rig.publisher.publish(event()))
        assert ids[0] == "m-1" and len(set(ids)) == 3
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids[1:])
        assert [p.properties.message_id for p in rig.take(topics.subscription("router").queue)] == ids

    def test_a_message_carries_its_properties_attributes_and_ordering_key(self, rig: Rig):
        rig.declare()
        before = time.time()
        rig.publisher.publish(event(), message_id="e", attributes={"extra": "yes"})
        rig.publisher.publish(requested("run-7"), message_id="r")
        after = time.time()
        [published] = rig.take(topics.subscription("router").queue)
        props = published.properties
        assert (published.exchange, published.routing_key) == (topics.EVENTS, "bitbucket.repo.push")
        assert props.delivery_mode == 2 and props.content_type == "application/msgpack" and props.type == "event"
        assert attributes_of(props.headers) == {
            "host": "bitbucket",
            "event": "repo.push",
            "repo": "acme/api",
            "ref": "main",
            "delivery": "d1",
            "extra": "yes",
            "type": "event",
        }
        assert ORDERING_HEADER not in props.headers  # an event has no ordering key
        assert int(before * 1000) <= props.headers[PUBLISHED_HEADER] <= int(after * 1000)
        assert int(before) <= props.timestamp <= int(after)
        assert codec.decode(published.body, Event) == event() == published.message()
        [run] = rig.take(topics.subscription("dispatcher").queue)
        assert run.properties.headers[ORDERING_HEADER] == "run-7" == run.ordering_key
        assert run.attributes == {"run": "run-7", "delivery": "d1", "type": "run.requested"}
        assert run.message() == requested("run-7")

    def test_messages_published_together_arrive_in_order_and_a_given_body_as_it_is(self, rig: Rig):
        rig.declare()
        already = codec.encode(event(99))  # the ingress encodes while it reads the delivery
        rig.publisher.publish_all([(event(n), f"m{n}", already if n == 3 else None) for n in range(6)])
        taken = rig.take(topics.subscription("router").queue)
        assert [p.properties.message_id for p in taken] == [f"m{n}" for n in range(6)]
        assert [p.body for p in taken] == [already if n == 3 else codec.encode(event(n)) for n in range(6)]

    def test_declaring_again_is_harmless_and_a_queue_declared_otherwise_is_refused(self, rig: Rig):
        rig.declare()
        rig.declare()
        with pytest.raises(BrokerError):
            rig.declare_queue(topics.subscription("router").queue, {})  # it is a quorum queue
