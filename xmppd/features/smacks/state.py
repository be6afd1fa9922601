"""XEP-0198: Stream Management -- the counters and the queue of unacknowledged stanzas, no I/O.

``handled`` counts the client's stanzas the server handled; ``sent`` counts the stanzas the
server wrote. Both wrap at 2^32 (XEP-0198 §4). ``unacked`` keeps what was written and not yet
acknowledged, oldest first, so that a resumed stream can get it again and an expired one can
hand it to offline storage.
"""
from __future__ import annotations

import collections

MASK = 0xFFFFFFFF


class HandledCountTooHigh(ValueError):
    """The peer acknowledged stanzas that were never sent (or that were acknowledged before)."""

    def __init__(self, h: int, sent: int) -> None:
        super().__init__(f"h={h} acknowledges more than the {sent} stanzas sent")
        self.h = h
        self.sent = sent


def parse_h(value: str | None) -> int:
    """An ``h`` attribute: xs:unsignedInt (0 .. 2^32-1)."""
    if value is None or not value.strip().isdigit():
        raise ValueError("h must be an unsigned integer")
    h = int(value)
    if h > MASK:
        raise ValueError("h must be below 2^32")
    return h


class SmCounters:
    __slots__ = ("handled", "sent", "unacked")

    def __init__(self) -> None:
        self.handled = 0
        self.sent = 0
        self.unacked: collections.deque[tuple[bytes, float]] = collections.deque()

    def stanza_in(self) -> None:
        self.handled = (self.handled + 1) & MASK

    def stanza_out(self, data: bytes, when: float) -> int:
        """Count a written stanza; returns how many are now unacknowledged."""
        self.sent = (self.sent + 1) & MASK
        self.unacked.append((data, when))
        return len(self.unacked)

    @property
    def acked(self) -> int:
        """The peer's last acknowledged count (``sent`` minus what is still queued)."""
        return (self.sent - len(self.unacked)) & MASK

    def ack(self, h: int) -> int:
        """The peer handled ``h`` stanzas in all: drop those from the queue; returns how many."""
        outstanding = (self.sent - h) & MASK
        queued = len(self.unacked)
        if outstanding > queued:
            raise HandledCountTooHigh(h, self.sent)
        done = queued - outstanding
        for _ in range(done):
            self.unacked.popleft()
        return done
