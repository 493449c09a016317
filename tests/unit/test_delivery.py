"""The headers that carry a delivery's state through RabbitMQ read back as they were written,
and a dead letter written by the bridge reads back in `shared.deadletters` as what it was."""

from __future__ import annotations

from types import SimpleNamespace

from tasuki.local.bridge.delivery import Delivery
from tasuki.shared import deadletters, topics
from tasuki.shared.topics import Subscription

NOW, WALL = 1000.0, 1_767_225_600.0  # monotonic and epoch clocks at the same moment


def delivered(headers: dict, *, exchange="tasuki.runs", routing_key="run.requested", tag=7, ordered=True) -> Delivery:
    method = SimpleNamespace(delivery_tag=tag, exchange=exchange, routing_key=routing_key)
    properties = SimpleNamespace(message_id="m-1", type="run.requested", timestamp=1_767_225_000, headers=headers)
    return Delivery.received_from(
        method,
        properties,
        b"body",
        headers=headers,
        attributes={"run": "r"},
        ordered=ordered,
        generation=1,
        now=NOW,
        wall=WALL,
    )


def test_a_fresh_delivery_counts_rabbitmqs_redeliveries_as_attempts():
    d = delivered({"x-ordering-key": "r-1", "run": "r-1"})
    assert (d.attempts, d.not_before, d.line, d.ordering_key) == (0, 0.0, "r-1", "r-1")
    assert delivered({"x-delivery-count": 2}).attempts == 2
    assert delivered({"x-ordering-key": "r-1"}, ordered=False).line == ""


def test_a_requeued_copy_carries_the_retry_state_of_its_original():
    original = delivered({"x-ordering-key": "r-1", "run": "r-1", "x-delivery-count": 1})
    original.attempts, original.last_error, original.park_id = 3, "HTTP 500: boom", "p-1"
    headers = original.requeue_headers(not_before_epoch=WALL + 40)
    # RabbitMQ delivers the copy from the default exchange, 10 s later
    copy = Delivery.received_from(
        SimpleNamespace(delivery_tag=99, exchange="", routing_key="tasuki.dispatcher"),
        original.properties,
        b"body",
        headers=headers,
        attributes={"run": "r-1"},
        ordered=True,
        generation=1,
        now=NOW + 10,
        wall=WALL + 10,
    )
    assert (copy.attempts, copy.last_error, copy.line) == (3, "HTTP 500: boom", "r-1")
    assert copy.not_before == NOW + 40
    assert (copy.exchange, copy.routing_key) == ("tasuki.runs", "run.requested")
    assert headers["x-park-id"] == "p-1" and "x-delivery-count" not in headers


def test_a_dead_letter_reads_back_as_the_bridge_wrote_it():
    d = delivered(
        {
            "x-ordering-key": "r-1",
            "run": "r-1",
            "type": "run.requested",
            "x-published-ms": 1_767_225_000_500,
            "x-delivery-attempt": 4,
            "x-park-id": "p",
        }
    )
    d.attempts, d.last_error = 5, "no answer within the ack deadline (10s)"
    sub = Subscription(name="dispatcher", topic=topics.RUNS, keys=("run.*",), endpoint="dispatcher")
    headers = d.dead_letter_headers(sub, "tasuki", "dl-1", wall=WALL)
    assert headers["CloudPubSubDeadLetterSourceTopicPublishTime"] == "2025-12-31T23:50:00.500Z"
    method = SimpleNamespace(delivery_tag=1, exchange=topics.DEADLETTER, routing_key="run.requested")
    properties = SimpleNamespace(message_id="m-1", type="run.requested", timestamp=1_767_225_000, headers=headers)
    letter = deadletters.read(method, properties, b"body")
    assert (letter.id, letter.message_id, letter.subscription, letter.source_queue) == (
        "dl-1",
        "m-1",
        "dispatcher",
        "tasuki.dispatcher",
    )
    assert (letter.attempts, letter.last_error, letter.ordering_key) == (5, d.last_error, "r-1")
    assert (letter.exchange, letter.routing_key) == ("tasuki.runs", "run.requested")
    assert letter.dead_lettered_at.timestamp() == WALL
    assert letter.replay_headers() == {
        "x-ordering-key": "r-1",
        "run": "r-1",
        "type": "run.requested",
        "x-published-ms": 1_767_225_000_500,
        "x-original-exchange": "tasuki.runs",
        "x-original-routing-key": "run.requested",
    }
