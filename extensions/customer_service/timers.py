"""Deadlines judged on the injected clock: unanswered offers move on, silent visitors' chats
close. One task owned by the feature (cancelled at teardown); which sessions are due is decided
by ``policy``."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from . import policy

if TYPE_CHECKING:
    from .service import CsService


class Timers:
    def __init__(self, cs: "CsService", interval: float) -> None:
        self.cs = cs
        self.interval = interval

    def start(self) -> None:
        if self.interval > 0:
            self.cs.ctx.spawn(self._loop(), name="cs-timers")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run()
            except Exception:
                self.cs.log.exception("customer-service timers failed")

    async def run(self) -> None:
        cs = self.cs
        now = cs.now()
        async with cs.locked():
            for sid in policy.due_offers(cs.state.offers, cs.open, now):
                s = cs.open.get(sid)
                if s is not None and s.state == "offered":  # an earlier step may have moved it
                    await cs.missed(s)
            for sid in policy.idle_sessions(cs.open, cs.queues, now):
                s = cs.open.get(sid)
                if s is not None and s.state == "active":
                    await cs.close(s, "idle")
