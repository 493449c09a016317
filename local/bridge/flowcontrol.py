"""Flow control of one push subscription: how many pushes may be in flight, and when the next may start.

Pub/Sub adapts the rate of a push subscription to its endpoint's answers: a *push window* of
concurrent requests that shrinks on failures and grows back on successes, and a *push backoff*
that stops delivering for 100 ms up to 60 s while the endpoint keeps failing. This is that, as
pure logic (the clock is passed in):

- the window starts at `max_outstanding`, halves on every failure (never below 1) and grows by one
  on every success;
- after `n` failures in a row no push starts for `0.1 * 2**(n-1)` seconds, at most 60 s and never
  more than the subscription's maximum backoff; one success ends the pause.

So a subscription whose endpoint is down sends one push at a time, ever more slowly, instead of
hammering it with the backlog; per-message backoff (`RetryPolicy.delay`) comes on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIRST_PAUSE = 0.1
LONGEST_PAUSE = 60.0


@dataclass
class FlowControl:
    max_outstanding: int
    longest_pause: float = LONGEST_PAUSE
    window: int = field(init=False)
    failures: int = field(default=0, init=False)  # in a row
    paused_until: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.window = self.max_outstanding
        self.longest_pause = min(self.longest_pause, LONGEST_PAUSE)

    def may_start(self, in_flight: int, now: float) -> bool:
        return in_flight < self.window and now >= self.paused_until

    def succeeded(self) -> None:
        self.failures = 0
        self.paused_until = 0.0
        self.window = min(self.max_outstanding, self.window + 1)

    def failed(self, now: float) -> None:
        self.failures += 1
        self.window = max(1, self.window // 2)
        pause = min(self.longest_pause, FIRST_PAUSE * 2 ** min(self.failures - 1, 20))
        self.paused_until = max(self.paused_until, now + pause)
