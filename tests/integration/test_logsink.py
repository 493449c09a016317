"""The job-log event feed through a real RabbitMQ connection (one per publishing thread): in order,
each chunk under its place (run:job:attempt:seq), none dropped while the broker refuses or is
away (the job waits, the queue stays bounded), given up only when the executor closes. The log
sink itself is tests/unit/test_logsink.py."""

from __future__ import annotations

import threading

from tasuki.local.executor.logsink import LogEvents
from tasuki.shared import codec
from tasuki.shared.broker import Broker
from tasuki.shared.messages import JobLog
from tasuki.shared.topics import RUNS
from tests.conftest import free_port


def test_log_events_reach_rabbitmq_in_order_each_under_its_place(vhost):
    broker = Broker(vhost)
    broker.declare()
    with broker.channel() as ch:
        ch.queue_declare("watch", exclusive=False)
        ch.queue_bind("watch", RUNS, routing_key="job.log")
    events = LogEvents(broker)
    for n in range(10):
        events.put(JobLog(run_id="r1", job="build", attempt=2, seq=n, data=f"line {n}\n"))
    assert events.drain(timeout=30)
    events.close()
    with broker.channel() as ch:
        got = []
        while (frame := ch.basic_get("watch", auto_ack=True))[0] is not None:
            got.append((codec.decode(frame[2], JobLog).seq, frame[1].message_id))
    assert got == [(n, f"r1:build:2:{n}:log") for n in range(10)] and events.lost == 0


def test_log_events_wait_for_the_broker_rather_than_drop_and_hold_a_bounded_queue(vhost):
    # Given a broker that refuses every publish for a while (no queue bound to job.log yet)
    broker = Broker(vhost)
    broker.declare(subscriptions=())
    events = LogEvents(broker, capacity=4, retry=0.05, longest=0.1)
    put = threading.Thread(
        target=lambda: [events.put(JobLog(run_id="r1", job="b", seq=n, data="x")) for n in range(20)]
    )
    put.start()
    # Then the job's output waits (the queue is bounded), nothing is dropped
    put.join(2)
    assert put.is_alive() and events.published == 0 and not events.drain(timeout=0.5)
    # When the broker takes them again, every chunk goes out
    with broker.channel() as ch:
        ch.queue_declare("logs-later", durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind("logs-later", RUNS, routing_key="job.log")
    put.join(60)
    assert events.drain(timeout=60) and events.published == 20 and events.lost == 0
    events.close()


def test_log_events_closing_gives_up_only_what_the_broker_never_took():
    broker = Broker(f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    events = LogEvents(broker, capacity=4, retry=0.05, longest=0.1)
    for n in range(3):
        events.put(JobLog(run_id="r1", job="build", seq=n, data="x"))
    events.close(timeout=2)
    assert events.lost == 3 and events.published == 0
