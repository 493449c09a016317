"""Acknowledgements of one AMQP channel, coalesced into as few frames as possible.

RabbitMQ numbers a channel's deliveries 1, 2, 3...; `basic.ack(tag, multiple=True)` acks every
delivery up to `tag` in one frame. The bridge finishes messages out of order (backoffs, ordering
keys), so `Acks.frames()` sends one multiple-ack for the contiguous run of finished tags and single
acks for the rest, and remembers those so that a later multiple-ack never names them again. If
too many single acks pile up behind one long-held delivery, it stops coalescing on that channel.
"""

from __future__ import annotations

LIMIT = 10_000


class Acks:
    def __init__(self) -> None:
        self.low = 0  # every tag <= low is acked
        self.single: set[int] = set()  # tags above `low` acked one by one
        self.coalescing = True

    def frames(self, tags: list[int]) -> list[tuple[int, bool]]:
        """The `(delivery_tag, multiple)` ack frames that ack `tags`, finished just now."""
        if not self.coalescing:
            return [(tag, False) for tag in tags]
        due = set(tags)
        top = 0
        while self.low + 1 in due or self.low + 1 in self.single:
            self.low += 1
            if self.low in due:
                due.discard(self.low)
                top = self.low
            else:
                self.single.discard(self.low)
        frames = [(top, True)] if top else []
        frames.extend((tag, False) for tag in sorted(due))
        self.single.update(due)
        if len(self.single) > LIMIT:
            self.coalescing = False
            self.single.clear()
        return frames
