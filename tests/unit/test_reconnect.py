"""The reconnect loop of every long-running consumer, with a fake clock and a fake stop event."""

from __future__ import annotations

import logging

import pika.exceptions as pe
import pytest

from tasuki.shared.errors import BrokerUnavailable
from tasuki.shared.reconnect import keep_connected

log = logging.getLogger("tasuki.test.reconnect")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Stop:
    """A stop event whose waits pass on the fake clock; it is set after `after` waits (or never)."""

    def __init__(self, clock: Clock, after: int | None = None) -> None:
        self.clock, self.after = clock, after
        self.waits: list[float] = []
        self.set_ = False

    def is_set(self) -> bool:
        return self.set_

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        if self.after is not None and len(self.waits) >= self.after:
            self.set_ = True
            return True
        self.waits.append(timeout)
        self.clock.now += timeout
        return False


def sessions(clock: Clock, script: list[tuple[float, Exception | str]]):
    """A session that, call after call, lasts the given seconds, then raises or returns."""
    calls = iter(script)

    def session() -> str:
        seconds, result = next(calls)
        clock.now += seconds
        if isinstance(result, Exception):
            raise result
        return result

    return session


def test_failures_in_a_row_pause_half_a_second_doubling_to_ten(caplog):
    caplog.set_level(logging.WARNING, log.name)
    clock = Clock()
    refused = BrokerUnavailable("cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:5672/")
    session = sessions(clock, [(0.0, refused)] * 7 + [(0.0, "connected")])
    stop = Stop(clock)
    assert keep_connected(session, stop, log=log, what="probe: RabbitMQ connection lost", clock=clock) == "connected"
    assert stop.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert caplog.messages[0] == (
        "probe: RabbitMQ connection lost (BrokerUnavailable: cannot reach RabbitMQ at "
        "amqp://guest:***@127.0.0.1:5672/); trying again in 0.5s"
    )
    assert len(caplog.messages) == 7


def test_a_session_that_was_healthy_for_a_while_starts_the_backoff_over():
    clock = Clock()
    lost = pe.StreamLostError("connection reset")
    # Given four quick failures (pauses 0.5, 1, 2, 4), then a connection that held 30 s,
    # then one that broke after 2 s, then one that returns
    script = [(0.0, lost)] * 4 + [(30.0, lost), (2.0, lost), (0.0, "done")]
    stop = Stop(clock)
    keep_connected(sessions(clock, script), stop, log=log, what="lost", clock=clock)
    # Then the pause after the healthy session is 0.5 s again, and doubles from there
    assert stop.waits == [0.5, 1.0, 2.0, 4.0, 0.5, 1.0]


@pytest.mark.parametrize("error", [OSError("broken pipe"), ValueError("bad fd"), pe.ChannelClosedByBroker(404, "no")])
def test_a_lost_connection_in_any_of_its_forms_is_retried(error):
    clock = Clock()
    stop = Stop(clock)
    assert keep_connected(sessions(clock, [(1.0, error), (0.0, "ok")]), stop, log=log, what="x", clock=clock) == "ok"
    assert stop.waits == [0.5]


def test_stop_ends_the_loop_during_a_pause_and_before_any_session():
    clock = Clock()
    stop = Stop(clock, after=2)
    calls: list[int] = []

    def never_connects() -> None:
        calls.append(1)
        raise BrokerUnavailable("down")

    assert keep_connected(never_connects, stop, log=log, what="x", clock=clock) is None
    assert (len(calls), stop.waits) == (3, [0.5, 1.0])
    assert keep_connected(never_connects, stop, log=log, what="x", clock=clock) is None
    assert len(calls) == 3  # already stopped: not even one attempt


def test_an_error_that_is_not_about_the_connection_is_not_hidden():
    clock = Clock()
    with pytest.raises(KeyError):
        keep_connected(sessions(clock, [(0.0, KeyError("bug"))]), Stop(clock), log=log, what="x", clock=clock)
