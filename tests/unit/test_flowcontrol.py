"""Flow control of a push subscription, as pure logic."""

from tasuki.local.bridge.flowcontrol import FlowControl


def test_the_window_halves_on_failures_and_grows_back_one_by_one():
    flow = FlowControl(max_outstanding=16)
    assert flow.window == 16 and flow.may_start(15, now=0)
    for expected in (8, 4, 2, 1, 1):
        flow.failed(now=0)
        assert flow.window == expected
    for expected in (2, 3, 4):
        flow.succeeded()
        assert flow.window == expected
    assert not flow.may_start(4, now=100) and flow.may_start(3, now=100)


def test_failures_in_a_row_pause_the_subscription_ever_longer_up_to_a_limit():
    flow = FlowControl(max_outstanding=4, longest_pause=1.0)
    pauses = []
    for _ in range(6):
        flow.failed(now=10)
        pauses.append(round(flow.paused_until - 10, 3))
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert not flow.may_start(0, now=10.5) and flow.may_start(0, now=11)
    flow.succeeded()
    assert flow.may_start(0, now=10)  # one success ends the pause


def test_the_pause_never_exceeds_a_minute():
    flow = FlowControl(max_outstanding=1, longest_pause=600)
    for _ in range(30):
        flow.failed(now=0)
    assert flow.paused_until == 60
