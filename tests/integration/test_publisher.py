"""The pipelined publisher against a real RabbitMQ: many threads over one connection, every
publish confirmed or refused with a clear error, and back on its feet after the broker was away."""

from __future__ import annotations

import socket
import threading

import pytest

from tasuki.shared import topics
from tasuki.shared.broker import Broker, attributes_of
from tasuki.shared.codec import decode, encode
from tasuki.shared.errors import BrokerUnavailable, PublishRefused
from tasuki.shared.messages import Event, Ref, Repository, RunUpdated
from tasuki.shared.publisher import Publisher
from tests.proxy import TcpProxy


def event(n: int = 0) -> Event:
    return Event(
        host="github",
        event="push",
        kind="push",
        delivery_id=f"d{n}",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="main"),
        after=f"{n:040x}",
    )


def waiting(url: str) -> list[tuple[object, Event]]:
    out = []
    with Broker(url).channel() as ch:
        while True:
            method, props, body = ch.basic_get(topics.subscription("router").queue, auto_ack=True)
            if method is None:
                return out
            out.append((props, decode(body, Event)))


def test_many_threads_publish_over_one_connection_and_every_message_is_confirmed(vhost):
    Broker(vhost).declare()
    publisher = Publisher(vhost)
    errors: list[Exception] = []

    def publish(start: int) -> None:
        try:
            for n in range(start, start + 25):
                assert publisher.publish(event(n), message_id=f"m{n}") == f"m{n}"
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i * 25,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publisher.close()
    assert errors == []
    published = waiting(vhost)
    assert sorted(props.message_id for props, _ in published) == sorted(f"m{n}" for n in range(200))
    props, first = next((p, e) for p, e in published if p.message_id == "m0")
    assert first == event(0) and props.delivery_mode == 2 and props.type == "event"
    assert attributes_of(props.headers) == {
        "host": "github",
        "event": "push",
        "repo": "acme/api",
        "ref": "main",
        "delivery": "d0",
        "type": "event",
    }


def test_a_body_encoded_before_is_published_as_it_is(vhost):
    Broker(vhost).declare()
    publisher = Publisher(vhost)
    publisher.publish(event(1), message_id="pre", body=encode(event(1)))
    publisher.close()
    [(_, published)] = waiting(vhost)
    assert published == event(1)


def test_several_messages_are_published_together_in_order(vhost):
    Broker(vhost).declare()
    publisher = Publisher(vhost)
    publisher.publish_all([(event(n), f"m{n}", encode(event(n)) if n % 2 else None) for n in range(5)])
    publisher.close()
    assert [(props.message_id, e) for props, e in waiting(vhost)] == [(f"m{n}", event(n)) for n in range(5)]


def test_an_unroutable_message_is_refused_and_the_publisher_goes_on(vhost):
    with Broker(vhost).channel() as ch:
        ch.exchange_declare(topics.EVENTS, exchange_type="topic", durable=True)
        ch.exchange_declare(topics.RUNS, exchange_type="topic", durable=True)
    publisher = Publisher(vhost)
    with pytest.raises(PublishRefused, match="no queue is bound to tasuki.events"):
        publisher.publish(event())
    # a status notice may have no listener, on the same connection
    publisher.publish(RunUpdated(run_id="r", status="queued", event=event()))
    publisher.close()


def test_a_missing_exchange_is_refused_and_the_next_publish_opens_a_new_channel(vhost):
    publisher = Publisher(vhost)
    with pytest.raises(PublishRefused, match="closed the channel"):
        publisher.publish(event())
    Broker(vhost).declare()
    publisher.publish(event())
    publisher.close()
    assert len(waiting(vhost)) == 1


def test_no_broker_is_a_clear_error():
    publisher = Publisher("amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(BrokerUnavailable, match="cannot reach RabbitMQ at amqp://guest:\\*\\*\\*@127.0.0.1:1"):
        publisher.publish(event())


def test_wrong_credentials_and_a_missing_vhost_say_so_not_that_rabbitmq_is_down(vhost):
    scheme, rest = vhost.split("://", 1)
    wrong_password = f"{scheme}://guest:not-the-password@{rest.split('@', 1)[1]}"
    with pytest.raises(BrokerUnavailable, match="refused the credentials"):
        Publisher(wrong_password).publish(event())
    missing_vhost = vhost.rsplit("/", 1)[0] + "/no-such-vhost"
    with pytest.raises(BrokerUnavailable, match="denied access \\(vhost\\?\\)"):
        Publisher(missing_vhost).publish(event())


def test_a_broker_that_never_answers_is_given_up_on_within_the_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        publisher = Publisher(f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/", timeout=1)
        with pytest.raises(BrokerUnavailable, match="no answer in time"):
            publisher.publish(event())
        publisher.close()


def test_the_broker_going_away_and_coming_back(vhost):
    Broker(vhost).declare()
    with TcpProxy(5672) as proxy:
        publisher = Publisher(vhost.replace("localhost:5672", f"127.0.0.1:{proxy.port}"))
        publisher.publish(event(1), message_id="before")
        proxy.down()
        with pytest.raises(BrokerUnavailable):
            publisher.publish(event(2), message_id="during")
        proxy.up()
        publisher.publish(event(3), message_id="after")
        publisher.close()
    assert [props.message_id for props, _ in waiting(vhost)] == ["before", "after"]
