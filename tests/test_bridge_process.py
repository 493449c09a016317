"""At-least-once through a real `tasuki bridge` process: SIGKILL it mid-stream, start it again,
and every message is still acked by the endpoint (some twice), none lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from shared import topics
from shared.broker import Broker
from shared.messages import Event, Repository
from tests.endpoint import Endpoint

TASUKI = Path(sys.executable).parent / "tasuki"
KEY = "process-test-key-of-at-least-32-bytes"
COUNT = 400


def test_a_killed_bridge_loses_nothing(vhost, tmp_path):
    with Endpoint(lambda push: (204, 0.05), key=KEY) as endpoint:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
        env.update({
            "TASUKI_AMQP_URL": vhost, "TASUKI_DATA_DIR": str(tmp_path), "TASUKI_PUSH_KEY": KEY,
            "TASUKI_ROUTER_URL": endpoint.url, "TASUKI_DISPATCHER_URL": endpoint.url,
        })
        broker = Broker(vhost)
        broker.declare()
        ids = {f"event-{n}" for n in range(COUNT)}
        for message_id in sorted(ids):
            broker.publish(Event(host="bitbucket", event="repo.push", kind="push", delivery_id=message_id,
                                 repository=Repository(full_name="acme/api"), after="abc"), message_id=message_id)
        broker.close()

        def start() -> subprocess.Popen:
            return subprocess.Popen([str(TASUKI), "bridge"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=open(tmp_path / "bridge.log", "a"), start_new_session=True)

        # When the bridge is killed (no chance to clean up) in the middle of the stream
        first = start()
        try:
            endpoint.wait_for(lambda e: len(e.acked_ids()) >= 60, what="the first pushes")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        acked_before = len(endpoint.acked_ids())
        assert acked_before < COUNT, "the stream was over before the kill: nothing was tested"

        # Then a new bridge pushes everything that was not acked in RabbitMQ
        second = start()
        try:
            endpoint.wait_for(lambda e: e.acked_ids() == ids, timeout=120, what="every message")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0, (tmp_path / "bridge.log").read_text()[-3000:]

    assert all(p.token_ok for p in endpoint.pushes)
    with Broker(vhost).channel() as ch:
        queue = topics.subscription("router").queue
        assert ch.queue_declare(queue, passive=True).method.message_count == 0
