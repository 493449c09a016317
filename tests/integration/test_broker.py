"""The broker client against a real RabbitMQ."""

from __future__ import annotations

import pytest

from tasuki.shared import topics
from tasuki.shared.broker import Broker, attributes_of
from tasuki.shared.codec import decode
from tasuki.shared.errors import BrokerUnavailable, PublishRefused
from tasuki.shared.messages import Event, Ref, Repository, RunUpdated


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
