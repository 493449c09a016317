"""Dead letters: listed without being taken away, replayed to the queue they came from."""

from __future__ import annotations

import pytest

from tasuki.local.cli import commands as cli
from tasuki.shared import deadletters, topics
from tasuki.shared.broker import Broker


@pytest.fixture
def broker(vhost, monkeypatch):
    monkeypatch.setenv("TASUKI_AMQP_URL", vhost)
    b = Broker(vhost)
    b.declare()
    yield b
    b.close()


def bridge_letter(b: Broker, n: int) -> None:
    """A dead letter as the bridge writes it (see local/bridge.py)."""
    b.publish_raw(
        topics.DEADLETTER,
        "run.requested",
        f"body {n}".encode(),
        message_id=f"m-{n}",
        message_type="run.requested",
        headers={
            "run": "r-1",
            "type": "run.requested",
            "x-ordering-key": "r-1",
            "CloudPubSubDeadLetterSourceSubscription": "dispatcher",
            "CloudPubSubDeadLetterSourceDeliveryCount": "5",
            "x-deadletter-id": f"dl{n}",
            "x-source-queue": "tasuki.dispatcher",
            "x-original-exchange": topics.RUNS,
            "x-original-routing-key": "run.requested",
            "x-last-error": "HTTP 500: boom",
            "x-dead-lettered-ms": 1767225600000,
        },
    )


def test_listing_takes_nothing_away_and_keeps_the_order(broker):
    for n in range(3):
        bridge_letter(broker, n)
    first = deadletters.list_letters(broker.url)
    assert [letter.id for letter in first] == ["dl0", "dl1", "dl2"]
    assert [letter.id for letter in deadletters.list_letters(broker.url)] == ["dl0", "dl1", "dl2"]
    letter = first[0]
    assert (letter.subscription, letter.attempts, letter.last_error) == ("dispatcher", 5, "HTTP 500: boom")
    assert (letter.exchange, letter.routing_key, letter.ordering_key) == (topics.RUNS, "run.requested", "r-1")
    assert letter.dead_lettered_at.isoformat() == "2026-01-01T00:00:00+00:00"


def test_replay_sends_the_original_to_its_queue_only_and_removes_the_letter(broker, capsys):
    bridge_letter(broker, 0)
    bridge_letter(broker, 1)
    assert cli.main(["deadletters", "replay", "dl1"]) == 0
    assert "replayed dl1" in capsys.readouterr().out
    assert [letter.id for letter in deadletters.list_letters(broker.url)] == ["dl0"]
    with broker.channel() as ch:
        _method, props, body = ch.basic_get("tasuki.dispatcher", auto_ack=True)
        assert ch.queue_declare("tasuki.router", passive=True).method.message_count == 0
    assert (props.message_id, body) == ("m-1", b"body 1")
    assert props.headers["x-ordering-key"] == "r-1" and props.headers["run"] == "r-1"
    assert not any(
        k.startswith("CloudPubSubDeadLetter") or k in ("x-deadletter-id", "x-last-error") for k in props.headers
    )
    assert cli.main(["deadletters", "replay", "--all"]) == 0
    assert deadletters.list_letters(broker.url) == []


def test_an_order_rejected_by_an_executor_is_listed_and_replayed_from_its_x_death(broker):
    queue = topics.executor_queue()
    broker.publish_raw(topics.JOBS, "job.default", b"unreadable", message_id="order-1", message_type="job.order")
    with broker.channel() as ch:
        method, _, _ = ch.basic_get(queue)
        ch.basic_nack(method.delivery_tag, requeue=False)  # what the executor does with a bad order
    [letter] = deadletters.list_letters(broker.url)
    assert (letter.id, letter.source_queue, letter.routing_key) == ("order-1", queue, "job.default")
    assert "rejected" in letter.last_error
    assert deadletters.replay(broker.url) == ["order-1"]
    with broker.channel() as ch:
        _, props, body = ch.basic_get(queue, auto_ack=True)
    assert (props.message_id, body) == ("order-1", b"unreadable") and "x-death" not in (props.headers or {})


def test_the_command_line_says_what_is_wrong(broker, capsys):
    assert cli.main(["deadletters"]) == 0
    assert "no dead letters" in capsys.readouterr().out
    assert cli.main(["deadletters", "replay"]) == 2
    assert "give one ID, or --all" in capsys.readouterr().err
    assert cli.main(["deadletters", "replay", "nope"]) == 2
    assert "no dead letter with id nope" in capsys.readouterr().err
    bridge_letter(broker, 7)
    assert cli.main(["deadletters", "list"]) == 0
    out = capsys.readouterr().out
    assert "dl7" in out and "dispatcher" in out and "5 attempts" in out and "HTTP 500: boom" in out
