"""The job-log event feed through a real RabbitMQ connection (one per publishing thread): in order,
and dropped, not buffered, when the broker cannot be reached. The log sink itself is
tests/unit/test_logsink.py."""

from __future__ import annotations

from tasuki.local.executor.logsink import LogEvents
from tasuki.shared import codec
from tasuki.shared.broker import Broker
from tasuki.shared.messages import JobLog
from tasuki.shared.topics import RUNS
from tests.conftest import free_port


def test_log_events_reach_rabbitmq_in_order(vhost):
    broker = Broker(vhost)
    broker.declare()
    with broker.channel() as ch:
        ch.queue_declare("watch", exclusive=False)
        ch.queue_bind("watch", RUNS, routing_key="job.log")
    events = LogEvents(broker)
    for n in range(10):
        events.offer(JobLog(run_id="r1", job="build", seq=n, data=f"line {n}\n"))
    events.close()
    with broker.channel() as ch:
        got = []
        while (frame := ch.basic_get("watch", auto_ack=True))[0] is not None:
            got.append(codec.decode(frame[2], JobLog).seq)
    assert got == list(range(10)) and events.dropped == 0


def test_log_events_are_dropped_not_buffered_when_the_broker_is_away():
    broker = Broker(f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    events = LogEvents(broker, capacity=4, retry_after=600)
    for n in range(100):
        events.offer(JobLog(run_id="r1", job="build", seq=n, data="x"))
    events.close(timeout=30)
    assert events.dropped == 100
