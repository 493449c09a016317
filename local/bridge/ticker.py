"""The clock: a `tick` on tasuki.runs every `Settings.tick_interval` seconds, for the dispatcher
(run-out job leases, what its outbox still holds). The bridge runs it beside the subscriptions,
as Cloud Scheduler would publish to a topic for functions on a FaaS platform. Several bridges
tick several times as often; a tick changes nothing that another tick already did.
"""

from __future__ import annotations

import logging
import threading

from tasuki.shared.broker import Broker
from tasuki.shared.errors import BrokerError
from tasuki.shared.messages import Tick
from tasuki.shared.settings import Settings

log = logging.getLogger("tasuki.ticker")


def run(settings: Settings, stop: threading.Event) -> None:
    """Tick until `stop` is set; a tick that cannot be published is skipped (the next one comes)."""
    broker = Broker(settings.amqp_url)
    try:
        while not stop.wait(settings.tick_interval):
            try:
                broker.publish(Tick())
            except BrokerError as exc:
                log.warning("tick not published: %s", exc)
    finally:
        broker.close()


def start(settings: Settings, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run, args=(settings, stop), name="ticker", daemon=True)
    thread.start()
    return thread
