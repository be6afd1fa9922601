"""Ends to act on when they come (mutes, timed bans): one heap on the injected clock and one task.

The task sleeps until the nearest end (at most ``tick`` seconds, so a clock that jumps is
noticed) and wakes at once when an earlier end is added. Entries are never removed: whoever
fires checks that the end is still the one stored (lifted or renewed ends are skipped), so a
stale entry costs one look-up.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from xmppd.core.feature import Clock

log = logging.getLogger(__name__)

Fire = Callable[[str, str, datetime], Awaitable[None]]


class Deadlines:
    def __init__(self, clock: Clock, tick: float, fire: Fire, what: str) -> None:
        self._clock, self._tick, self._fire, self._what = clock, tick, fire, what
        self._heap: list[tuple[float, str, str, datetime]] = []
        self._wake = asyncio.Event()

    def add(self, room: str, jid: str, until: datetime) -> None:
        heapq.heappush(self._heap, (until.timestamp(), room, jid, until))
        self._wake.set()

    def clear(self) -> None:
        self._heap = []

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            while self._heap and self._heap[0][0] <= now:
                _ts, room, jid, until = heapq.heappop(self._heap)
                try:
                    await self._fire(room, jid, until)
                except Exception:
                    log.exception("ending the %s of %s in %r failed", self._what, jid, room)
            delay = self._tick
            if self._heap:
                delay = min(delay, max(0.0, self._heap[0][0] - now))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
