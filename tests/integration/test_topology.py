"""The RabbitMQ definitions generated from the subscriptions import into a real RabbitMQ and agree
with the topology declared from code. Subscriptions as data are tests/unit/test_topics.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tasuki.shared import topics
from tasuki.shared.broker import Broker
from tasuki.shared.messages import Event, Repository
from tests.conftest import rabbitmqctl

TASUKI = Path(sys.executable).parent / "tasuki"


def test_the_exported_definitions_import_with_rabbitmqctl_and_match_the_declared_topology(vhost, tmp_path):
    # Given the definitions exported for a fresh test vhost (the committed file names "/")
    name = vhost.rsplit("/", 1)[1]
    path = tmp_path / "definitions.json"
    done = subprocess.run(
        [str(TASUKI), "topology", "export", "--vhost", name, "-o", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # When rabbitmqctl imports them (from stdin: the CLI runs as the rabbitmq user, which may not
    # read pytest's private temporary directory)
    imported = subprocess.run(
        ["rabbitmqctl", "-q", "import_definitions"], input=path.read_text(), capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    # Then every queue is there, as a quorum queue
    listed = rabbitmqctl("list_queues", "-p", name, "name", "type", "--no-table-headers")
    types = dict(line.split() for line in listed.stdout.splitlines() if line.strip())
    assert types == {q.name: "quorum" for q in topics.topology().queues}
    # And declaring the topology from code on top agrees with it (a mismatch is PRECONDITION_FAILED)
    broker = Broker(vhost)
    broker.declare()
    # And a published event is routed to the router's queue through the imported bindings
    broker.publish(Event(host="h", event="e", kind="push", delivery_id="d", repository=Repository(full_name="a/b")))
    with broker.channel() as ch:
        assert ch.queue_declare(topics.subscription("router").queue, passive=True).method.message_count == 1
    broker.close()
