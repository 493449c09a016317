"""Slots (`local.executor.slots`) against a channel that counts prefetch per consumer as RabbitMQ
does (a new prefetch holds for consumers made after it; an acknowledged delivery frees its
consumer's prefetch, a cancelled consumer's deliveries stay to be acknowledged): never more
orders than slots, no slot left unused, and the consumer replaced only when it must be."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from tasuki.local.executor.slots import Slots


class Connection:
    """The consumers of every channel, and the deliveries not acknowledged yet."""

    def __init__(self) -> None:
        self.consumers: dict[str, SimpleNamespace] = {}
        self.unacked: dict[int, str] = {}  # delivery tag -> consumer tag
        self.tags = 0
        self.resubscribes = 0
        self.qos_calls = 0
        self.channels: list[Channel] = []

    def channel(self) -> Channel:
        self.channels.append(Channel(self))
        return self.channels[-1]

    def held(self, tag: str) -> int:
        return sum(1 for t in self.unacked.values() if t == tag)

    def room(self) -> int:
        """How many more orders the engine would deliver now."""
        return sum(c.prefetch - self.held(tag) for tag, c in self.consumers.items())

    def deliver(self, n: int) -> bool:
        for tag, consumer in self.consumers.items():
            if self.held(tag) < consumer.prefetch:
                self.unacked[n] = tag
                consumer.callback(consumer.channel, SimpleNamespace(delivery_tag=n, consumer_tag=tag), None, b"")
                return True
        return False


class Channel:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.qos = 0

    def basic_qos(self, prefetch_count: int) -> None:
        self.qos = prefetch_count
        self.connection.qos_calls += 1

    def basic_consume(self, queue: str, callback) -> str:
        connection = self.connection
        connection.tags += 1
        tag = f"ctag{connection.tags}"
        connection.consumers[tag] = SimpleNamespace(prefetch=self.qos, callback=callback, channel=self)
        connection.resubscribes += 1
        return tag

    def basic_cancel(self, tag: str) -> None:
        assert self.connection.consumers[tag].channel is self, "cancelled on another channel"
        del self.connection.consumers[tag]

    def ack(self, n: int) -> None:
        assert self.connection.consumers.get(self.connection.unacked[n], SimpleNamespace(channel=self)).channel is self
        self.connection.unacked.pop(n)


class Executor:
    """What the executor's consumer loop does with Slots, on the connection's thread."""

    def __init__(self, capacity: int, *, channels: bool = True) -> None:
        self.connection = Connection()
        self.running: dict[int, SimpleNamespace] = {}  # delivery tag -> its consumer and channel, acked early?
        another = self.connection.channel if channels else None
        self.slots = Slots(self.connection.channel(), "q", self.on_message, capacity, another=another)
        self.slots.open()
        self.next = 0

    def on_message(self, ch, method, properties, body) -> None:
        self.slots.taken()
        self.running[method.delivery_tag] = SimpleNamespace(consumer=method.consumer_tag, channel=ch, early=False)

    def deliver(self) -> bool:
        self.next += 1
        return self.connection.deliver(self.next)

    def ack_early(self, n: int) -> None:
        order = self.running[n]
        order.channel.ack(n)
        order.early = True
        self.slots.acknowledged_early(order.consumer)

    def finish(self, n: int) -> None:
        order = self.running.pop(n)
        if not order.early:
            order.channel.ack(n)
        self.slots.freed(order.consumer, early=order.early)


@pytest.mark.parametrize("channels", [True, False])
@pytest.mark.parametrize("capacity", [1, 2, 3, 5])
def test_never_more_orders_than_slots_and_no_slot_left_unused(capacity, channels):
    rng = random.Random(capacity)
    ex = Executor(capacity, channels=channels)
    for _ in range(3000):
        step = rng.random()
        if step < 0.4:
            ex.deliver()
        elif step < 0.7 and (waiting := [n for n, o in ex.running.items() if not o.early]):
            ex.ack_early(rng.choice(waiting))
        elif ex.running:
            ex.finish(rng.choice(list(ex.running)))
        assert len(ex.running) == ex.slots.busy <= capacity
        assert ex.connection.room() == capacity - len(ex.running)  # every free slot can take an order
    # each prefetch is set once, on a channel of its own (or, with one channel, at each change)
    if channels:
        assert ex.connection.qos_calls == len(ex.connection.channels) <= capacity
    else:
        assert len(ex.connection.channels) == 1


def test_a_plan_and_a_job_replace_the_consumer_twice_not_three_times():
    ex = Executor(2)
    opened = ex.connection.resubscribes
    # A plan order: taken and acknowledged at its end, with its consumer's prefetch
    assert ex.deliver()
    ex.finish(ex.next)
    assert ex.connection.resubscribes == opened
    # A job order: acknowledged once its claim is answered, then over
    assert ex.deliver()
    ex.ack_early(ex.next)
    assert ex.connection.resubscribes == opened + 1 and ex.connection.room() == 1
    ex.finish(ex.next)
    assert ex.connection.resubscribes == opened + 2 and ex.connection.room() == 2
    # and the next runs set no prefetch again: the channels keep theirs
    for _ in range(3):
        assert ex.deliver()
        ex.finish(ex.next)
        assert ex.deliver()
        ex.ack_early(ex.next)
        ex.finish(ex.next)
    assert ex.connection.qos_calls == 2 and ex.connection.resubscribes == opened + 8


def test_closed_slots_take_nothing_more():
    ex = Executor(2)
    assert ex.deliver()
    running = ex.next
    ex.slots.close()
    assert not ex.deliver()
    ex.finish(running)
    assert not ex.deliver() and ex.connection.room() == 0
