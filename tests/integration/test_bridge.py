"""The push bridge's I/O shell against the real RabbitMQ and real local HTTP endpoints.

The decisions (ordering keys, backoff, flow control, dead-lettering, re-queueing, filters, a lost
connection) are unit-tested on `Schedule` with a fake clock (tests/unit/test_schedule.py). These
tests prove what only the wire shows: Pub/Sub's push request and its token, acks reaching
RabbitMQ (from the push threads and from the consumer's own thread), the ack deadline, 102,
published dead letters and re-queued copies coming back, and reconnecting.

Backoffs and deadlines are small (tests can't wait Google's 10 s); the ack deadline goes below
Pub/Sub's 10 s minimum only through the bridge's test-only `ack_deadline` argument. Times are
only ever checked as lower bounds (a backoff is never cut short) plus a loose upper tolerance.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator

import pytest

from tasuki.local.bridge.server import Bridge
from tasuki.shared import deadletters, topics
from tasuki.shared.broker import ORDERING_HEADER, Broker
from tasuki.shared.topics import RetryPolicy, Subscription
from tests.endpoint import Endpoint, Push
from tests.proxy import TcpProxy

EXCHANGE = topics.EVENTS


def probe(**values) -> Subscription:
    values = {
        "name": "probe",
        "topic": EXCHANGE,
        "keys": ("probe.#",),
        "endpoint": "router",
        "retry": RetryPolicy(minimum_backoff=0.2, maximum_backoff=0.5),
        **values,
    }
    return Subscription(**values)


class Rig:
    """A vhost with one test subscription, a publisher, and a way to run the bridge on it."""

    def __init__(self, url: str, sub: Subscription, endpoint: Endpoint, settings) -> None:
        self.url, self.sub, self.endpoint, self.settings = url, sub, endpoint, settings
        self.broker = Broker(url)
        self.broker.declare(subscriptions=(sub,))

    def publish(
        self, message_id: str, *, key: str = "", attributes: dict[str, str] | None = None, body: bytes = b"payload"
    ) -> None:
        headers: dict[str, str] = {"type": "probe", **(attributes or {})}
        if key:
            headers[ORDERING_HEADER] = key
        self.broker.publish_raw(
            EXCHANGE, "probe.test", body, message_id=message_id, message_type="probe", headers=headers
        )

    def bridge(self, **overrides) -> Bridge:
        return Bridge(self.settings, (self.sub,), **overrides)

    def queued(self, queue: str | None = None) -> int:
        """Messages waiting in the queue (call with no bridge running: unacked ones count then)."""
        with self.broker.channel() as ch:
            return ch.queue_declare(queue or self.sub.queue, passive=True).method.message_count


@pytest.fixture
def rig(vhost, make_settings) -> Iterator[Callable[..., Rig]]:
    made: list[tuple[Rig, Endpoint]] = []

    def make(sub: Subscription, answer=lambda push: 204) -> Rig:
        endpoint = Endpoint(answer).__enter__()
        rig = Rig(vhost, sub, endpoint, make_settings(amqp_url=vhost, router_url=endpoint.url))
        made.append((rig, endpoint))
        return rig

    yield make
    for rig, endpoint in made:
        endpoint.__exit__(None, None, None)
        rig.broker.close()


def failing_first(times: int, *, ids: set[str] | None = None):
    """An endpoint answer: 500 for the first `times` pushes of each message (or of `ids`), then 204."""

    def answer(push: Push) -> int:
        if ids is not None and push.id not in ids:
            return 204
        return 500 if push.attempt <= times else 204

    return answer


def test_a_message_nacked_twice_is_pushed_three_times_after_the_backoff(rig):
    sub = probe(retry=RetryPolicy(minimum_backoff=1, maximum_backoff=10))
    r = rig(sub, failing_first(2))
    r.publish("m-1", attributes={"repo": "acme/api"}, body=b"\x81\xa1k\xa1v")
    with r.bridge():
        r.endpoint.wait_for(lambda e: e.acked_ids() == {"m-1"}, what="m-1 acked")
    pushes = r.endpoint.of("m-1")
    assert [(p.attempt, p.status) for p in pushes] == [(1, 500), (2, 500), (3, 204)]
    # backoff: 1 s after the first nack, 2 s after the second (never early; loosely on time)
    for previous, following, backoff in ((pushes[0], pushes[1], 1.0), (pushes[1], pushes[2], 2.0)):
        waited = following.started - previous.answered
        assert backoff - 0.05 <= waited <= backoff + 3, (backoff, waited)
    # the push request is Pub/Sub's
    first = pushes[0]
    assert first.token_ok
    assert first.body["subscription"] == "projects/tasuki/subscriptions/probe"
    message = first.message
    assert message["messageId"] == message["message_id"] == "m-1"
    assert message["publishTime"] == message["publish_time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", message["publishTime"])
    assert message["attributes"] == {"type": "probe", "repo": "acme/api"}
    assert first.data == b"\x81\xa1k\xa1v"
    assert "orderingKey" not in message
    assert r.queued() == 0  # acked in RabbitMQ once the endpoint acked


def test_a_message_that_always_fails_is_dead_lettered_with_its_history_and_can_be_replayed(rig):
    healthy = False
    r = rig(probe(), lambda push: 204 if healthy else 503)
    r.publish("doomed", attributes={"repo": "acme/api"}, key="run-1", body=b"original body")
    with r.bridge():
        r.endpoint.wait_for(lambda e: len(e.of("doomed")) == 5, what="five attempts")
        letters = _wait_for_dead_letters(r, 1)
    assert [p.attempt for p in r.endpoint.of("doomed")] == [1, 2, 3, 4, 5]
    assert r.queued() == 0  # removed from the subscription
    [letter] = letters
    assert letter.message_id == "doomed" and letter.body == b"original body"
    assert letter.subscription == "probe" and letter.attempts == 5
    assert letter.attributes["repo"] == "acme/api"
    assert letter.attributes["CloudPubSubDeadLetterSourceSubscription"] == "probe"
    assert letter.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert "HTTP 503" in letter.last_error
    assert letter.ordering_key == "run-1"

    # When the endpoint is fixed and the dead letter replayed
    healthy = True
    assert deadletters.replay(r.url, letter.id) == [letter.id]
    assert deadletters.list_letters(r.url) == []
    with r.bridge():
        r.endpoint.wait_for(lambda e: "doomed" in e.acked_ids(), what="the replayed message")
    replayed = r.endpoint.acked()[-1]
    assert replayed.attempt == 1 and replayed.data == b"original body"
    assert replayed.message["attributes"] == {"type": "probe", "repo": "acme/api"}  # no dead-letter attributes
    assert r.queued() == 0


def _wait_for_dead_letters(r: Rig, count: int) -> list[deadletters.Letter]:
    for _ in range(200):
        letters = deadletters.list_letters(r.url)
        if len(letters) >= count:
            return letters
        time.sleep(0.1)
    raise AssertionError("no dead letter appeared")


def test_an_endpoint_slower_than_the_ack_deadline_is_a_nack(rig, caplog):
    caplog.set_level(logging.WARNING, "tasuki.bridge")
    r = rig(probe(), lambda push: (204, 3.0) if push.attempt == 1 else 204)
    r.publish("slow")
    with r.bridge(ack_deadline=0.5):
        r.endpoint.wait_for(
            lambda e: any(p.attempt == 2 and p.status == 204 for p in e.of("slow")), what="the second attempt"
        )
    assert [p.attempt for p in r.endpoint.of("slow")] == [1, 2]
    assert "no answer within the ack deadline (0.5s)" in caplog.text
    assert r.queued() == 0


def test_102_acks_and_the_answer_after_it_is_not_taken_for_the_next_push(rig):
    # m1 gets "102 Processing" then "200 OK"; m2, on the same kept-alive connection, gets 500 once
    r = rig(probe(max_outstanding=1), lambda push: 102 if push.id == "m1" else (500 if push.attempt == 1 else 204))
    r.publish("m1")
    r.publish("m2")
    with r.bridge():
        r.endpoint.wait_for(lambda e: e.acked_ids() == {"m1", "m2"}, what="both acked")
    assert [(p.id, p.attempt) for p in r.endpoint.pushes] == [("m1", 1), ("m2", 1), ("m2", 2)]
    assert r.queued() == 0


def test_only_messages_matching_the_filter_are_pushed_the_others_are_acked_unseen(rig):
    # (the consumer's own thread acks these, through the same queue of acks as the push threads)
    r = rig(probe(filter='attributes.host = "github" AND NOT hasPrefix(attributes.ref, "wip/")'))
    r.publish("gh-main", attributes={"host": "github", "ref": "main"})
    r.publish("gh-wip", attributes={"host": "github", "ref": "wip/x"})
    r.publish("bb-main", attributes={"host": "bitbucket", "ref": "main"})
    r.publish("gh-tag", attributes={"host": "github", "ref": "v1"})
    with r.bridge():
        r.endpoint.wait_for(lambda e: e.acked_ids() == {"gh-main", "gh-tag"}, what="the two matching")
    assert {p.id for p in r.endpoint.pushes} == {"gh-main", "gh-tag"}
    assert r.queued() == 0  # the other two were acked without a push


def test_a_message_held_longer_than_consumer_timeout_allows_is_requeued_with_its_state(rig, caplog):
    # Given a consumer_timeout of 3 s (RabbitMQ's is 30 min) and a message that fails four times
    # with 1-1.5 s backoffs: it would be held unacked ~5 s, so the bridge must re-queue it.
    caplog.set_level(logging.INFO, "tasuki.bridge")
    sub = probe(ordering=True, retry=RetryPolicy(minimum_backoff=1, maximum_backoff=1.5), max_delivery_attempts=6)
    r = rig(sub, failing_first(4, ids={"a1"}))
    for n in (1, 2, 3):
        r.publish(f"a{n}", key="A")
    with r.bridge(ack_deadline=0.5, consumer_timeout=3):
        r.endpoint.wait_for(lambda e: len(e.acked_ids()) == 3, what="all three acked")
    assert "re-queued with its retry state" in caplog.text
    # the attempts go on counting across the re-queue, and key A stays in order
    assert [p.attempt for p in r.endpoint.of("a1")] == [1, 2, 3, 4, 5]
    assert [p.id for p in r.endpoint.pushes] == ["a1"] * 5 + ["a2", "a3"]
    assert r.queued() == 0


def test_the_bridge_reconnects_by_itself_when_the_broker_goes_away(rig, vhost, caplog):
    caplog.set_level(logging.WARNING, "tasuki.bridge")
    # Given a bridge connected to RabbitMQ through a proxy, and a slow-ish endpoint
    vhost_name = vhost.rsplit("/", 1)[1]
    r = rig(probe(max_outstanding=4), lambda push: (204, 0.02))
    ids = [f"m{n}" for n in range(60)]
    for message_id in ids[:30]:
        r.publish(message_id)
    with TcpProxy(5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost_name}"
        bridge = Bridge(r.settings.model_copy(update={"amqp_url": url}), (r.sub,))
        with bridge:
            r.endpoint.wait_for(lambda e: len(e.acked_ids()) >= 5, what="the first pushes")
            # When the broker goes away mid-stream, and messages keep arriving meanwhile
            proxy.down()
            for message_id in ids[30:]:
                r.publish(message_id)  # the publisher talks to RabbitMQ directly
            proxy.up()
            # Then every message is pushed and acked, with no one's help
            r.endpoint.wait_for(lambda e: e.acked_ids() == set(ids), what="every message")
    assert "probe: RabbitMQ connection lost" in caplog.text
    assert r.queued() == 0


def test_a_push_in_flight_when_the_bridge_stops_is_answered_and_acked_before_it_closes(rig):
    r = rig(probe(), lambda push: (204, 1.0))
    r.publish("slow")
    with r.bridge():
        r.endpoint.wait_for(lambda e: len(e.pushes) == 1, what="the push under way")
    # closed while the endpoint still took its time: the bridge waited for the answer and acked
    assert [p.status for p in r.endpoint.of("slow")] == [204]
    assert r.queued() == 0
