"""Subscriptions as data: Google's ranges, and the RabbitMQ definitions generated from them. That
RabbitMQ imports the definitions is tests/integration/test_topology.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasuki.shared import topics
from tasuki.shared.topics import RetryPolicy, Subscription

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "infra" / "rabbitmq" / "definitions.json"


def sub(**values) -> Subscription:
    return Subscription(**{"name": "probe", "topic": topics.EVENTS, "keys": ("#",), "endpoint": "router", **values})


def test_the_definitions_file_is_what_the_code_declares():
    on_disk = json.loads(DEFINITIONS.read_text())
    assert on_disk == topics.definitions(), (
        "infra/rabbitmq/definitions.json is out of date with shared/topics.py: run `tasuki topology export`"
    )


def test_defaults_are_googles():
    s = sub()
    assert (s.ack_deadline, s.retry.minimum_backoff, s.retry.maximum_backoff) == (10, 10, 600)
    assert (s.max_delivery_attempts, s.dead_letter_topic, s.ordering, s.filter) == (5, topics.DEADLETTER, False, "")


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"ack_deadline": 9}, "greater than or equal to 10"),
        ({"ack_deadline": 601}, "less than or equal to 600"),
        ({"max_delivery_attempts": 4}, "greater than or equal to 5"),
        ({"max_delivery_attempts": 101}, "less than or equal to 100"),
        ({"retry": {"minimum_backoff": -1}}, "greater than or equal to 0"),
        ({"retry": {"maximum_backoff": 600.5}}, "less than or equal to 600"),
        ({"retry": {"minimum_backoff": 30, "maximum_backoff": 20}}, "must not be below minimum_backoff"),
        ({"name": "ab"}, "should match pattern"),
        ({"name": "1router"}, "should match pattern"),
        ({"name": "google-router"}, "must not start with 'goog'"),
        ({"keys": ()}, "at least 1 item"),
        ({"max_outstanding": 0}, "greater than or equal to 1"),
        ({"filter": "attributes.host = github"}, "invalid filter at column 19"),
        ({"ack_deadlin": 30}, "Extra inputs are not permitted"),
    ],
)
def test_values_outside_googles_ranges_are_refused(values, says):
    with pytest.raises(ValidationError, match=says):
        sub(**values)


def test_the_edges_of_the_ranges_are_accepted():
    sub(ack_deadline=10, max_delivery_attempts=5, retry=RetryPolicy(minimum_backoff=0, maximum_backoff=0))
    sub(ack_deadline=600, max_delivery_attempts=100, retry=RetryPolicy(minimum_backoff=600, maximum_backoff=600))


def test_backoff_doubles_from_the_minimum_up_to_the_maximum():
    policy = RetryPolicy(minimum_backoff=10, maximum_backoff=600)
    assert [policy.delay(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert RetryPolicy(minimum_backoff=0, maximum_backoff=600).delay(5) == 0


def test_every_subscription_has_a_queue_bound_to_its_topic_and_the_dead_letters_are_collected():
    topo = topics.topology()
    queues = {q.name: q.arguments for q in topo.queues}
    for s in topics.SUBSCRIPTIONS:
        assert queues[s.queue] == {"x-queue-type": "quorum"}
        assert {b.key for b in topo.bindings if b.queue == s.queue and b.exchange == s.topic} == set(s.keys)
        assert s.dead_letter_topic in topo.exchanges
    assert topics.Binding(topics.DEADLETTER, topics.DEADLETTER_QUEUE, "#") in topo.bindings
    assert all(args["x-queue-type"] == "quorum" for args in queues.values())  # survive broker restarts
