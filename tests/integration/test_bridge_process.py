"""At-least-once through a real `tasuki bridge` process: SIGKILL it mid-stream, start it again,
and every message is still acked by the endpoint (some twice), none lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasuki.shared import topics
from tasuki.shared.broker import Broker
from tasuki.shared.messages import Event, Repository
from tests.conftest import IN_CI, queued_messages, rabbitmqctl
from tests.endpoint import Endpoint

TASUKI = Path(sys.executable).parent / "tasuki"
KEY = "process-test-key-of-at-least-32-bytes"
COUNT = 400


def event(message_id: str) -> Event:
    return Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id=message_id,
        repository=Repository(full_name="acme/api"),
        after="abc",
    )


def publish_stream(broker: Broker) -> set[str]:
    """COUNT events for the router subscription; their message ids."""
    broker.declare()
    ids = {f"event-{n}" for n in range(COUNT)}
    for message_id in sorted(ids):
        broker.publish(event(message_id), message_id=message_id)
    return ids


def events_acked(endpoint: Endpoint) -> set[str]:
    """The ids of the events the endpoint acked (the bridge also pushes its clock's ticks)."""
    return {p.id for p in endpoint.acked() if p.message.get("attributes", {}).get("type") == "event"}


def bridge_process(vhost: str, tmp_path: Path, endpoint: Endpoint) -> subprocess.Popen:
    """A real `tasuki bridge` pushing the router and dispatcher subscriptions to the endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
    env.update(
        {
            "TASUKI_AMQP_URL": vhost,
            "TASUKI_DATA_DIR": str(tmp_path),
            "TASUKI_PUSH_KEY": KEY,
            "TASUKI_ROUTER_URL": endpoint.url,
            "TASUKI_DISPATCHER_URL": endpoint.url,
        }
    )
    return subprocess.Popen(
        [str(TASUKI), "bridge"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "bridge.log", "a"),
        start_new_session=True,
    )


def test_a_killed_bridge_loses_nothing(vhost, tmp_path):
    with Endpoint(lambda push: (204, 0.05), key=KEY) as endpoint:
        broker = Broker(vhost)
        ids = publish_stream(broker)
        broker.close()

        def start() -> subprocess.Popen:
            return bridge_process(vhost, tmp_path, endpoint)

        # When the bridge is killed (no chance to clean up) in the middle of the stream
        first = start()
        try:
            endpoint.wait_for(lambda e: len(e.acked_ids()) >= 60, what="the first pushes")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        acked_before = len(events_acked(endpoint))
        assert acked_before < COUNT, "the stream was over before the kill: nothing was tested"

        # Then a new bridge pushes everything that was not acked in RabbitMQ
        second = start()
        try:
            endpoint.wait_for(lambda e: events_acked(e) == ids, timeout=120, what="every message")
            # Redelivered copies of what the first bridge pushed but could not ack may still be on
            # their way: every id being acked is not yet the queue being drained.
            queue, deadline = topics.subscription("router").queue, time.monotonic() + 60
            while (left := queued_messages(vhost).get(queue)) != 0:
                assert time.monotonic() < deadline, f"{left} messages still in {queue}"
                time.sleep(0.2)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0, (tmp_path / "bridge.log").read_text()[-3000:]

    assert all(p.token_ok for p in endpoint.pushes)
    with Broker(vhost).channel() as ch:
        queue = topics.subscription("router").queue
        assert ch.queue_declare(queue, passive=True).method.message_count == 0


@pytest.mark.alone
def test_a_rabbitmq_restart_loses_nothing_and_the_bridge_reconnects_by_itself(vhost, tmp_path):
    """The real broker restarts (its app stops and starts; durable quorum queues, persistent
    messages): every message published before is still pushed, and so is one published after."""
    if not IN_CI and os.environ.get("RESTART_RABBITMQ_IN_TESTS") != "1":
        pytest.skip("restarts the shared RabbitMQ: runs in CI, or with RESTART_RABBITMQ_IN_TESTS=1")
    # 16 pushes in flight of 0.1 s each: the stream takes 2.5 s, long enough to stop RabbitMQ in it
    with Endpoint(lambda push: (204, 0.1), key=KEY) as endpoint:
        broker = Broker(vhost)
        ids = publish_stream(broker)
        bridge = bridge_process(vhost, tmp_path, endpoint)
        try:
            # When RabbitMQ restarts in the middle of the stream
            endpoint.wait_for(lambda e: len(e.acked_ids()) >= 60, what="the first pushes")
            assert rabbitmqctl("stop_app").returncode == 0
            time.sleep(2)
            # Counted while RabbitMQ is down: once it is back, the bridge reconnects and may finish
            # the stream before `await_startup` returns.
            acked_while_down = len(endpoint.acked_ids())
            assert acked_while_down < COUNT, "the stream was over before the restart: nothing was tested"
            assert rabbitmqctl("start_app").returncode == 0
            assert rabbitmqctl("await_startup").returncode == 0
            # Then the bridge reconnects by itself and every message is pushed; a new one too
            broker.publish(event("after"), message_id="after")
            endpoint.wait_for(lambda e: events_acked(e) == ids | {"after"}, timeout=180, what="every message")
        finally:
            broker.close()
            bridge.send_signal(signal.SIGTERM)
            assert bridge.wait(60) == 0, (tmp_path / "bridge.log").read_text()[-3000:]
    with Broker(vhost).channel() as ch:
        assert ch.queue_declare(topics.subscription("router").queue, passive=True).method.message_count == 0
