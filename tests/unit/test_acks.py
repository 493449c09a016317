"""Coalesced acks: every delivery acked exactly once, in few frames."""

from hypothesis import given
from hypothesis import strategies as st

from tasuki.local.bridge.acks import Acks


def acked_by(frames: list[tuple[int, bool]], already: set[int]) -> set[int]:
    out = set()
    for tag, multiple in frames:
        assert tag not in already and tag not in out, f"tag {tag} acked twice"
        out |= {t for t in range(1, tag + 1) if t not in already and t not in out} if multiple else {tag}
    return out


def test_in_order_acks_become_one_multiple_ack():
    assert Acks().frames([3, 1, 2, 4]) == [(4, True)]


def test_a_held_delivery_does_not_hold_back_the_acks_after_it():
    acks = Acks()
    assert acks.frames([1, 2, 4, 5]) == [(2, True), (4, False), (5, False)]
    assert acks.frames([3, 6]) == [(6, True)]  # covers 3 and 6; 4 and 5 are not named again


@given(st.permutations(list(range(1, 40))), st.integers(1, 8))
def test_any_order_acks_each_delivery_exactly_once(order, batch):
    acks, done = Acks(), set()
    for i in range(0, len(order), batch):
        chunk = order[i : i + batch]
        newly = acked_by(acks.frames(chunk), done)
        assert newly == set(chunk), (chunk, newly)
        done |= newly
    assert done == set(range(1, 40))
