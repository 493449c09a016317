"""The log sink: chunks, masking (also across reads), UTF-8 boundaries, bounded memory; the event feed."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from tasuki.local.executor.logsink import MASK, LogEvents, LogSink, char_boundary, mask, pending, spans
from tasuki.shared import codec
from tasuki.shared.broker import Broker
from tasuki.shared.messages import JobLog
from tasuki.shared.topics import RUNS
from tests.conftest import free_port


def collect(secrets=(), **kw) -> tuple[LogSink, list[tuple[int, bytes]]]:
    out: list[tuple[int, bytes]] = []
    return LogSink(lambda seq, data: out.append((seq, data)), secrets, **kw), out


def joined(out) -> bytes:
    return b"".join(data for _, data in out)


def test_a_secret_is_masked():
    sink, out = collect(["hunter2"])
    sink.feed(b"password=hunter2 done\n")
    sink.close()
    assert joined(out) == b"password=" + MASK + b" done\n"


def test_a_secret_split_across_reads_and_chunks_is_masked():
    # Given chunks of 8 bytes and a secret arriving one byte at a time
    sink, out = collect(["s3cr3t-value"], chunk=8)
    for byte in b"before s3cr3t-value after":
        sink.feed(bytes([byte]))
    sink.close()
    # Then no chunk holds any part that reveals it, and the whole log is masked
    assert joined(out) == b"before " + MASK + b" after"
    assert all(b"s3cr3t" not in data and b"value" not in data for _, data in out)
    assert [seq for seq, _ in out] == list(range(len(out)))


def test_overlapping_secrets_leave_no_byte_of_either():
    assert mask(b"xabcxyzSECRET1y", [b"abcx", b"xyzSECRET1"]) == b"x" + MASK + b"y"
    assert spans(b"abcabcab", [b"abcab"]) == [(0, 8)]


def test_pending_is_the_longest_suffix_that_could_become_a_secret():
    assert pending(b"hello hun", [b"hunter2"]) == 6
    assert pending(b"hello", [b"hunter2"]) == 5
    assert pending(b"abcab", [b"abcabd"]) == 0


def test_chunks_end_on_utf8_character_boundaries():
    text = "ü€😀".encode()  # 2, 3 and 4 byte characters
    for cut in range(len(text) + 1):
        assert text[: char_boundary(text, cut)].decode() == text[: char_boundary(text, cut)].decode("utf-8")
    sink, out = collect(chunk=5)
    for byte in ("aé" * 40).encode():
        sink.feed(bytes([byte]))
    sink.close()
    for _, data in out:
        data.decode("utf-8")  # each chunk decodes on its own
    assert joined(out).decode() == "aé" * 40


def test_quiet_output_is_sent_after_the_interval():
    now = [0.0]
    sink, out = collect(chunk=1024, interval=1.0, clock=lambda: now[0])
    sink.feed(b"compiling...")
    sink.tick()
    assert out == []  # not yet a chunk, not yet a second
    now[0] = 1.5
    sink.tick()
    assert joined(out) == b"compiling..."


def test_memory_stays_bounded_however_much_is_fed():
    written = [0]
    sink = LogSink(lambda seq, data: written.__setitem__(0, written[0] + len(data)), ["never-printed"], chunk=4096)
    held = []
    for _ in range(2000):
        sink.feed(b"x" * 1000)
        held.append(len(sink._buffer))
    sink.close()
    assert max(held) < 4096 and written[0] == 2_000_000


@settings(max_examples=300, deadline=None)
@given(
    secrets=st.lists(st.text("abc", min_size=1, max_size=5), min_size=1, max_size=3),
    text=st.text("abc\n", max_size=200),
    cuts=st.lists(st.integers(0, 200), max_size=20),
    chunk=st.integers(1, 16),
)
def test_streamed_output_equals_masking_all_at_once(secrets, text, cuts, chunk):
    data = text.encode()
    sink, out = collect(secrets, chunk=chunk, interval=0)
    at = 0
    for cut in sorted(set(cuts)):
        sink.feed(data[at:cut])
        sink.tick()
        at = max(at, cut)
    sink.feed(data[at:])
    sink.close()
    assert joined(out) == mask(data, [s.encode() for s in secrets])


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
