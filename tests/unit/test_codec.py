import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasuki.shared import codec
from tasuki.shared.errors import DecodeError
from tasuki.shared.messages import Event, JobFinished, Ref, Repository


def event() -> Event:
    return Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id="d1",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="main"),
        after="abc",
    )


def test_round_trip():
    assert codec.decode(codec.encode(event()), Event) == event()
    finished = JobFinished(run_id="r", job="build", status="failure", exit_code=3)
    assert codec.decode(codec.encode(finished), JobFinished) == finished


def test_wrong_shape_says_what_was_expected():
    with pytest.raises(DecodeError, match="expected a msgpack map for event, found list"):
        codec.decode(msgpack.packb([1, 2]), Event)
    with pytest.raises(DecodeError, match="event: host"):
        codec.decode(msgpack.packb({"event": "x"}), Event)


@given(st.binary(max_size=512))
def test_garbage_never_crashes(data):
    try:
        codec.decode(data, Event)
    except DecodeError:
        pass
