"""The log sink: chunks, masking (also across reads), UTF-8 boundaries, bounded memory. The event
feed's publishes through a real RabbitMQ connection are tests/integration/test_logsink.py."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from tasuki.local.executor.logsink import MASK, LogSink, char_boundary, mask, masked_forms, pending, spans


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


def test_a_line_after_a_quiet_spell_goes_out_at_once():
    now = [0.0]
    sink, out = collect(chunk=1024, interval=0.1, clock=lambda: now[0])
    # Given a job quiet for longer than the interval
    now[0] = 5.0
    # When it prints a line, Then the line goes out without waiting for a tick
    sink.feed(b"first line\n")
    assert out == [(0, b"first line\n")]


def test_heavy_output_makes_a_chunk_per_interval_not_one_per_line():
    now = [0.0]
    sink, out = collect(chunk=1 << 20, interval=0.1, clock=lambda: now[0])
    # Given a job that prints a line every millisecond for a second
    for n in range(1000):
        now[0] = n / 1000
        sink.feed(b"line %d\n" % n)
        sink.tick()
    sink.close()
    # Then its lines go out in about ten chunks, all of them, in order
    assert 9 <= len(out) <= 12
    assert joined(out) == b"".join(b"line %d\n" % n for n in range(1000))


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
    assert joined(out) == mask(data, masked_forms(secrets))


def test_the_mask_is_three_stars():
    assert MASK == b"***"


def test_base64_of_a_secret_is_masked_however_it_is_aligned_and_split():
    secret = "tok-3f9a81c2e7"
    for prefix in ("", "u", "us", "user:"):
        for alphabet in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = alphabet(f"{prefix}{secret}:tail".encode())
            # Given the encoded text arriving 3 bytes at a time in chunks of 5
            sink, out = collect([secret], chunk=5)
            for at in range(0, len(encoded), 3):
                sink.feed(encoded[at : at + 3])
            sink.close()
            log = joined(out)
            # Then the characters that carry the secret's bits are gone; its neighbours are not
            assert MASK in log, (prefix, encoded)
            core = masked_forms([secret])
            assert not any(form in log for form in core)
            assert len(log.replace(MASK, b"")) <= len(encoded) - 14


def test_each_line_of_a_multi_line_secret_is_masked():
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAA\n-----END KEY-----"
    sink, out = collect([key])
    sink.feed(b"line 2 alone: AAAAB3NzaC1yc2EAAA\nwhole: " + key.encode() + b"\n")
    sink.close()
    assert joined(out) == b"line 2 alone: ***\nwhole: ***\n"


def test_short_forms_are_not_masked_on_their_own():
    # A 3-byte secret is masked as itself, not as its base64 (4 letters) or fragments of it
    assert masked_forms(["abc"]) == [b"abc"]
    assert mask(b"{ abc }", masked_forms(["{\nabc"])) == b"{ abc }"
