"""The bridge's decisions (`local.bridge.schedule`), driven event by event with a fake clock.

A test plays RabbitMQ (deliveries, lost connections), the push threads (take, then the
endpoint's answer) and the publisher (confirms), and reads back what the schedule asks for:
pushes, acks, re-queued copies, dead letters, and when to ask again.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from tasuki.local.bridge.delivery import Delivery
from tasuki.local.bridge.schedule import Requeue, Schedule
from tasuki.local.bridge.server import Bridge
from tasuki.shared import topics
from tasuki.shared.broker import ORDERING_HEADER
from tasuki.shared.errors import ConfigError, FilterError
from tasuki.shared.topics import RetryPolicy, Subscription


class Clock:
    """Monotonic and wall clocks that move only when told, together."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = 1_767_225_600.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall

    def until(self, moment: float) -> None:
        """Move both clocks to the monotonic `moment`."""
        assert moment >= self.now
        self.wall += moment - self.now
        self.now = moment


def probe(**values) -> Subscription:
    return Subscription(
        **{
            "name": "probe",
            "topic": topics.EVENTS,
            "keys": ("probe.#",),
            "endpoint": "router",
            "retry": RetryPolicy(minimum_backoff=1, maximum_backoff=10),
            **values,
        }
    )


class Rig:
    """One schedule and the RabbitMQ channel, push threads and publisher around it, played by hand."""

    def __init__(self, *, consumer_timeout: float = 1800, ack_deadline: float = 10, **sub: object) -> None:
        self.clock = Clock()
        self.s = Schedule(probe(**sub), ack_deadline=ack_deadline, consumer_timeout=consumer_timeout, clock=self.clock)
        self.s.connected()
        self._tags = itertools.count(1)
        self.tag: dict[str, int] = {}  # message id -> tag of its latest delivery
        self.requeues: list[Requeue] = []  # handed out by take()
        self.out: dict[str, Delivery] = {}  # message id -> its delivery last handed out by take()

    def deliver(self, message_id: str, *, key: str = "", attributes: dict | None = None, headers: dict | None = None):
        tag = next(self._tags)
        self.tag[message_id] = tag
        all_headers = {"type": "probe", **(attributes or {}), **(headers or {})}
        if key:
            all_headers[ORDERING_HEADER] = key
        method = SimpleNamespace(delivery_tag=tag, exchange=topics.EVENTS, routing_key="probe.test")
        properties = SimpleNamespace(message_id=message_id, type="probe", timestamp=1_767_225_000, headers=all_headers)
        return self.s.delivered(method, properties, b"body")

    def redeliver(self, requeue: Requeue):
        """RabbitMQ delivers a re-queued copy, from the default exchange."""
        return self.deliver(requeue.delivery.message_id, headers=requeue.headers)

    def take(self) -> list[Delivery]:
        """What the push threads may start now (pushes and dead letters, in order)."""
        started = []
        while True:
            todo = self.s.take()
            self.requeues.extend(todo.requeues)
            d = todo.push or todo.dead_letter
            if d is None:
                return started
            self.out[d.message_id] = d
            started.append(d)

    def pushes(self) -> list[tuple[str, int]]:
        """The pushes that may start now: (message id, deliveryAttempt)."""
        started = self.take()
        assert all(not d.dead_letter_due for d in started)
        return [(d.message_id, d.attempts + 1) for d in started]

    def pushed(self, message_id: str) -> Delivery:
        """The delivery of `message_id` that take() handed out last."""
        return self.out[message_id]

    def ack(self, *message_ids: str) -> None:
        for message_id in message_ids:
            self.s.acked(self.pushed(message_id))

    def nack(self, message_id: str, reason: str = "HTTP 500: boom"):
        return self.s.nacked(self.pushed(message_id), reason)

    def nacked_until_requeued(self, message_id: str) -> Requeue:
        """Push `message_id` (first of its key) and nack it twice, 30 s apart: with TIGHT settings
        the second backoff (60 s) would outlast consumer_timeout, so it is re-queued."""
        self.pushes()
        self.nack(message_id)
        self.clock.until(self.clock.now + 30)
        self.pushes()
        [requeue] = self.nack(message_id).requeues
        return requeue


# -- pushes, acks, filters ------------------------------------------------------------------------


def test_a_message_is_acked_in_rabbitmq_only_once_its_endpoint_acked():
    r = Rig()
    todo = r.deliver("m1")
    assert todo.scheduled == 1 and not todo.send_acks
    assert r.pushes() == [("m1", 1)]
    assert r.s.in_flight == 1 and r.s.acks() == []
    todo = r.s.acked(r.pushed("m1"))
    assert todo.send_acks  # the consumer's thread must be woken to send it
    assert r.s.acks() == [r.tag["m1"]]
    assert r.s.acks() == [] and r.s.in_flight == 0 and r.pushes() == []


def test_messages_that_do_not_match_the_filter_are_acked_without_a_push():
    r = Rig(filter='attributes.host = "github" AND NOT hasPrefix(attributes.ref, "wip/")')
    assert r.deliver("gh-main", attributes={"host": "github", "ref": "main"}).scheduled == 1
    assert r.deliver("gh-wip", attributes={"host": "github", "ref": "wip/x"}).send_acks
    assert not r.deliver("bb-main", attributes={"host": "bitbucket", "ref": "main"}).send_acks  # already asked
    r.deliver("no-host")
    assert r.s.acks() == [r.tag["gh-wip"], r.tag["bb-main"], r.tag["no-host"]]
    assert r.pushes() == [("gh-main", 1)]


def test_pushes_in_flight_never_exceed_max_outstanding():
    r = Rig(max_outstanding=3)
    for n in range(5):
        r.deliver(f"m{n}")
    assert r.pushes() == [("m0", 1), ("m1", 1), ("m2", 1)]
    r.ack("m1")
    assert r.pushes() == [("m3", 1)]


def test_an_answer_reported_twice_counts_once():
    r = Rig()
    r.deliver("m1")
    r.pushes()
    d = r.pushed("m1")
    r.s.acked(d)
    # a push thread that broke after reporting must not put the message back
    assert r.s.failed(d).scheduled == 0 and r.s.nacked(d, "late").scheduled == 0
    assert r.s.acks() == [r.tag["m1"]] and r.pushes() == [] and d.attempts == 1


# -- backoff and dead letters ---------------------------------------------------------------------


def test_a_nacked_message_is_pushed_again_after_its_backoff_doubling_up_to_the_maximum():
    r = Rig(retry=RetryPolicy(minimum_backoff=1, maximum_backoff=3), max_delivery_attempts=10)
    r.deliver("m1")
    assert r.pushes() == [("m1", 1)]
    for attempt, backoff in ((2, 1), (3, 2), (4, 3), (5, 3)):
        nacked_at = r.clock.now
        todo = r.nack("m1", f"HTTP 500: attempt {attempt - 1}")
        assert todo.scheduled == 1 and not todo.requeues
        r.clock.until(nacked_at + backoff - 0.01)
        assert r.pushes() == []  # never early
        r.clock.until(nacked_at + backoff)
        assert r.pushes() == [("m1", attempt)]
    assert r.pushed("m1").last_error == "HTTP 500: attempt 4"
    r.ack("m1")
    assert r.s.acks() == [r.tag["m1"]]


def test_take_says_when_to_ask_again():
    r = Rig(retry=RetryPolicy(minimum_backoff=0.5, maximum_backoff=0.5))
    r.deliver("m1")
    r.pushes()
    nacked_at = r.clock.now
    r.nack("m1")
    assert r.s.take().wake == nacked_at + 0.5  # its backoff (the next look for re-queues is later)
    assert r.s.take().push is None


def test_after_max_delivery_attempts_a_message_is_dead_lettered_and_acked_once_that_is_confirmed():
    r = Rig(retry=RetryPolicy(minimum_backoff=0, maximum_backoff=0))
    r.deliver("doomed")
    for attempt in range(1, 5):
        assert r.pushes() == [("doomed", attempt)]
        assert r.nack("doomed", f"HTTP 503: {attempt}").dead_letter is None
    assert r.pushes() == [("doomed", 5)]
    d = r.pushed("doomed")
    todo = r.nack("doomed", "HTTP 503: 5")
    # the push thread goes on to publish the dead letter: still in flight, not acked yet
    assert todo.dead_letter is d and r.s.in_flight == 1 and r.s.acks() == []
    assert (d.attempts, d.last_error) == (5, "HTTP 503: 5")
    headers = d.dead_letter_headers(r.s.sub, "tasuki", "dl-1", r.clock.time())
    assert headers["CloudPubSubDeadLetterSourceDeliveryCount"] == "5" and headers["x-last-error"] == "HTTP 503: 5"
    r.s.dead_lettered(d)
    assert r.s.acks() == [r.tag["doomed"]] and r.s.in_flight == 0 and r.take() == []


def test_a_refused_dead_letter_is_tried_again_after_a_second_without_another_push():
    r = Rig(retry=RetryPolicy(minimum_backoff=0, maximum_backoff=0), max_delivery_attempts=5)
    r.deliver("doomed", headers={"x-delivery-attempt": 4})
    r.pushes()
    d = r.pushed("doomed")
    assert r.nack("doomed").dead_letter is d
    refused_at = r.clock.now
    r.s.failed(d)  # RabbitMQ did not confirm the dead letter
    assert r.s.acks() == [] and r.s.in_flight == 0
    r.clock.until(refused_at + 0.99)
    assert r.take() == []
    r.clock.until(refused_at + 1)
    assert r.take() == [d] and d.dead_letter_due and d.attempts == 5


def test_redeliveries_count_as_attempts_and_a_message_out_of_attempts_is_dead_lettered_unpushed():
    r = Rig(max_delivery_attempts=5)
    # a re-queued copy that made 2 pushes, redelivered once by RabbitMQ since
    r.deliver("m1", headers={"x-delivery-attempt": 2, "x-delivery-count": 1})
    assert r.pushes() == [("m1", 4)]
    r.deliver("m2", headers={"x-delivery-attempt": 3, "x-delivery-count": 2})
    [d] = r.take()
    assert d.message_id == "m2" and d.dead_letter_due and d.attempts == 5


# -- ordering keys --------------------------------------------------------------------------------


def test_one_key_waits_for_its_failing_message_while_other_keys_go_on():
    r = Rig(ordering=True, retry=RetryPolicy(minimum_backoff=1, maximum_backoff=2))
    for n in (1, 2, 3):
        r.deliver(f"a{n}", key="A")
        r.deliver(f"b{n}", key="B")
    assert r.pushes() == [("a1", 1), ("b1", 1)]  # one push at a time per key
    nacked_at = r.clock.now
    r.nack("a1")
    r.ack("b1")
    assert r.pushes() == [("b2", 1)]  # a1 backs off and holds A back; B goes on
    r.ack("b2")
    assert r.pushes() == [("b3", 1)]
    r.ack("b3")
    assert r.pushes() == []
    r.clock.until(nacked_at + 1)
    assert r.pushes() == [("a1", 2)]
    r.ack("a1")
    assert r.pushes() == [("a2", 1)]
    r.ack("a2")
    assert r.pushes() == [("a3", 1)]
    r.ack("a3")
    assert r.s.acks() == [r.tag[i] for i in ("b1", "b2", "b3", "a1", "a2", "a3")]


def test_without_ordering_a_key_holds_nothing_back():
    r = Rig(ordering=False)
    for n in (1, 2, 3):
        r.deliver(f"a{n}", key="A")
    assert r.pushes() == [("a1", 1), ("a2", 1), ("a3", 1)]


def test_a_key_whose_message_is_dead_lettered_goes_on_with_the_next():
    r = Rig(ordering=True, retry=RetryPolicy(minimum_backoff=0, maximum_backoff=0), max_delivery_attempts=5)
    r.deliver("a1", key="A", headers={"x-delivery-attempt": 4})
    r.deliver("a2", key="A")
    assert r.pushes() == [("a1", 5)]
    d = r.pushed("a1")
    r.nack("a1")
    assert r.pushes() == []  # a2 waits until a1's dead letter is confirmed
    r.s.dead_lettered(d)
    assert r.pushes() == [("a2", 1)]


# -- flow control ---------------------------------------------------------------------------------


def test_a_failing_endpoint_shrinks_the_window_and_pauses_the_subscription():
    r = Rig(max_outstanding=4, retry=RetryPolicy(minimum_backoff=0, maximum_backoff=10))
    for n in range(8):
        r.deliver(f"m{n}")
    assert [i for i, _ in r.pushes()] == ["m0", "m1", "m2", "m3"]  # the window starts at max_outstanding
    start = r.clock.now
    for n in range(4):
        r.nack(f"m{n}")  # window 4 -> 2 -> 1 -> 1 -> 1; four failures in a row: pause 0.1 * 2**3
    assert r.s.flow.window == 1
    r.clock.until(start + 0.79)
    assert r.pushes() == []  # paused, though eight messages are ready
    assert r.s.take().wake == pytest.approx(start + 0.8)
    r.clock.until(start + 0.8)
    assert [i for i, _ in r.pushes()] == ["m4"]  # one at a time
    r.nack("m4")  # the fifth failure: 1.6 s
    r.clock.until(start + 0.8 + 1.59)
    assert r.pushes() == []
    r.clock.until(start + 0.8 + 1.6)
    assert [i for i, _ in r.pushes()] == ["m5"]
    r.ack("m5")  # one success ends the pause and opens the window by one
    assert [i for i, _ in r.pushes()] == ["m6", "m7"]


# -- consumer_timeout: re-queued copies -----------------------------------------------------------

# consumer_timeout 100 s: margin 10 s, ack deadline 10 s; a delivery may be held while
# held + wait + 20 s stays below 100 s.
TIGHT = {
    "consumer_timeout": 100,
    "ordering": True,
    "retry": RetryPolicy(minimum_backoff=30, maximum_backoff=60),
    "max_delivery_attempts": 10,
}


def test_a_message_whose_backoff_would_outlast_consumer_timeout_is_requeued_and_its_copy_takes_its_place():
    r = Rig(**TIGHT)
    t0 = r.clock.now
    r.deliver("a1", key="A")
    r.pushes()
    assert not r.nack("a1").requeues  # 30 s backoff: 0 + 30 + 20 < 100, held in memory
    r.clock.until(t0 + 25)
    r.deliver("a2", key="A")  # waits behind a1
    r.clock.until(t0 + 30)
    assert r.pushes() == [("a1", 2)]
    original = r.tag["a1"]
    # When the second nack asks for 60 s more (30 + 60 + 20 >= 100)
    [requeue] = r.nack("a1", "HTTP 500: again").requeues
    # Then a copy carrying the retry state goes back to the queue; the original is acked once it is confirmed
    assert requeue.tag == original and requeue.park_id
    headers = requeue.headers
    assert headers["x-delivery-attempt"] == 2 and headers["x-last-error"] == "HTTP 500: again"
    assert headers["x-not-before-ms"] == int((r.clock.wall + 60) * 1000)
    assert headers["x-park-id"] == requeue.park_id and headers[ORDERING_HEADER] == "A"
    assert (headers["x-original-exchange"], headers["x-original-routing-key"]) == (topics.EVENTS, "probe.test")
    assert r.s.acks() == []
    assert r.s.requeued(requeue, confirmed=True).send_acks
    assert r.s.acks() == [original]
    # and the copy, delivered again, takes a1's place at the head of key A: a2 still waits
    r.clock.until(t0 + 31)
    todo = r.redeliver(requeue)
    assert todo.scheduled == 1 and r.tag["a1"] != original
    r.clock.until(t0 + 89.9)
    assert r.pushes() == []
    r.clock.until(t0 + 90)
    assert r.pushes() == [("a1", 3)]
    r.ack("a1")
    assert r.pushes() == [("a2", 1)]
    r.ack("a2")
    assert r.s.acks() == [r.tag["a1"], r.tag["a2"]]


def test_messages_waiting_behind_their_key_are_requeued_together_and_in_order_before_consumer_timeout():
    r = Rig(**TIGHT)
    t0 = r.clock.now
    for n in (1, 2, 3):
        r.deliver(f"a{n}", key="A")
        r.clock.until(r.clock.now + 1)
    r.deliver("b1", key="B")
    assert r.pushes() == [("a1", 1), ("b1", 1)]
    r.ack("b1")
    assert r.s.acks() == [r.tag["b1"]]
    r.nack("a1")  # holds A back for 30 s
    r.clock.until(t0 + 33)
    assert r.pushes() == [("a1", 2)]
    [first] = r.nack("a1").requeues  # 60 s more: a1 is re-queued at once
    # a2 was delivered at t0 + 1 and waits behind a1: held 80 s + 20 s reaches 100 s at t0 + 81
    r.clock.until(t0 + 80.9)
    assert r.take() == [] and r.requeues == []
    r.clock.until(t0 + 82)  # (looked at about once a second)
    assert r.take() == []
    # a2 goes back with a3 behind it, in order, so that their copies queue behind a1's
    assert [q.delivery.message_id for q in (first, *r.requeues)] == ["a1", "a2", "a3"]
    assert r.s.acks() == []  # the originals are acked once their copies are confirmed
    for requeue in (first, *r.requeues):
        r.s.requeued(requeue, confirmed=True)
    assert r.s.acks() == [r.tag["a1"], r.tag["a2"], r.tag["a3"]]


def test_a_copy_that_comes_back_before_its_confirm_still_gets_its_original_acked():
    r = Rig(**TIGHT)
    r.deliver("a1", key="A")
    requeue = r.nacked_until_requeued("a1")
    r.redeliver(requeue)  # the copy overtakes the publisher's confirm
    r.s.requeued(requeue, confirmed=False)  # even an error then: RabbitMQ has the copy
    assert r.s.acks() == [requeue.tag]


def test_a_refused_copy_leaves_the_original_held_and_the_next_sweep_tries_again():
    r = Rig(**TIGHT)
    r.deliver("a1", key="A")
    r.deliver("a2", key="A")
    requeue = r.nacked_until_requeued("a1")
    r.s.requeued(requeue, confirmed=False)
    assert r.s.acks() == []
    # a1 is held again (its not-before is still 60 s away, too long): the next look re-queues it,
    # and a2 behind it, together
    r.clock.until(r.clock.now + 1)
    assert r.take() == []
    assert [q.delivery.message_id for q in r.requeues] == ["a1", "a2"]
    assert r.requeues[0].park_id != requeue.park_id and r.requeues[0].tag == requeue.tag


# -- a lost connection ----------------------------------------------------------------------------


def test_a_lost_connection_forgets_what_it_delivered_and_keeps_retry_state_and_pushes_in_flight():
    r = Rig(retry=RetryPolicy(minimum_backoff=10, maximum_backoff=20))
    for n in (1, 2, 3):
        r.deliver(f"m{n}")
    r.pushes()
    nacked_at = r.clock.now
    r.nack("m1")  # one failed push, 10 s backoff
    r.ack("m2")  # acked by its endpoint; the ack is waiting for the consumer's thread
    window = r.s.flow.window
    # When the connection is lost while m3's push is still out
    r.s.disconnected()
    assert r.s.flow.window == window  # the endpoint is as healthy as it was
    assert r.s.acks() == []  # those tags belonged to the lost channel
    assert r.s.in_flight == 1 and r.take() == []
    r.ack("m3")  # answered after the loss: no channel to ack it on
    assert r.s.acks() == []
    r.s.connected()
    # Then RabbitMQ redelivers all three on the new channel
    for n in (1, 2, 3):
        r.deliver(f"m{n}", headers={"x-delivery-count": 1})
    assert r.s.acks() == [r.tag["m3"]]  # acked by its endpoint already: acked unseen
    assert r.pushes() == [("m2", 2)]  # its ack was lost: pushed again (at least once)
    r.clock.until(nacked_at + 9.99)
    assert r.pushes() == []  # m1 remembers its backoff...
    r.clock.until(nacked_at + 10)
    assert r.pushes() == [("m1", 2)]  # ...and its attempts
    assert r.pushed("m1").last_error == "HTTP 500: boom"


def test_a_copy_parked_on_a_lost_connection_comes_back_as_a_message_of_its_own():
    r = Rig(**TIGHT)
    r.deliver("a1", key="A")
    requeue = r.nacked_until_requeued("a1")
    r.s.disconnected()
    r.s.connected()
    assert r.s.requeued(requeue, confirmed=True).send_acks is False and r.s.acks() == []
    # RabbitMQ delivers both: the copy (with its state) and the original (unacked on the lost channel)
    r.redeliver(requeue)
    r.clock.until(r.clock.now + 60)
    [copy] = r.take()
    assert (copy.message_id, copy.attempts) == ("a1", 2)


def test_a_message_out_of_attempts_on_a_lost_connection_is_dead_lettered_only_when_it_comes_again():
    r = Rig(retry=RetryPolicy(minimum_backoff=0, maximum_backoff=0))
    r.deliver("doomed", headers={"x-delivery-attempt": 4})
    r.pushes()
    r.s.disconnected()  # RabbitMQ gives it to whoever consumes next: not ours to dead-letter
    r.s.connected()
    todo = r.nack("doomed", "HTTP 500: last")
    assert todo.dead_letter is None and r.s.in_flight == 0
    r.deliver("doomed", headers={"x-delivery-attempt": 4})
    [d] = r.take()
    assert (d.dead_letter_due, d.attempts, d.last_error) == (True, 5, "HTTP 500: last")


def test_a_message_dead_lettered_after_its_connection_was_lost_is_acked_unseen_when_it_comes_again():
    r = Rig(retry=RetryPolicy(minimum_backoff=0, maximum_backoff=0))
    r.deliver("doomed", headers={"x-delivery-attempt": 4})
    r.pushes()
    d = r.pushed("doomed")
    r.nack("doomed")
    r.s.disconnected()
    r.s.connected()
    r.s.dead_lettered(d)
    r.deliver("doomed", headers={"x-delivery-attempt": 4, "x-delivery-count": 1})
    assert r.s.acks() == [r.tag["doomed"]] and r.take() == []


# -- settings refused before anything runs --------------------------------------------------------


def test_a_schedule_that_is_too_patient_for_consumer_timeout_is_refused(make_settings):
    with pytest.raises(ConfigError, match=r"is 670s, not below RabbitMQ's consumer_timeout \(600s\)"):
        Schedule(probe(ack_deadline=10, retry=RetryPolicy()), ack_deadline=10, consumer_timeout=600)
    with pytest.raises(ConfigError, match="consumer_timeout"):
        Bridge(make_settings(consumer_timeout=600), (probe(ack_deadline=600),))


def test_an_invalid_filter_is_refused_at_start_with_the_position(make_settings):
    # Subscription itself refuses it (see test_topology); a model built without validation is
    # still refused by the bridge before it connects to anything.
    bad = Subscription.model_construct(**{**probe().model_dump(), "filter": 'attributes.host = "x" OR'})
    with pytest.raises(FilterError, match=r"at column 25: expected .* found the end of the filter"):
        Bridge(make_settings(), (bad,))
