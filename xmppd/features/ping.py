"""XEP-0199: XMPP Ping, both ways: answering clients, and pinging silent clients to find dead
connections, which are then closed (so their presence goes unavailable)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from lxml import etree

from ..config import NonNegative, Positive
from ..core.dispatch import IqRequest, Target
from ..core.feature import Feature, iq_handler
from ..errors import StreamErrorCondition
from ..xml import ns
from ..xml.builder import element, stanza

_PING = f"{{{ns.PING}}}ping"


@dataclass(frozen=True, slots=True)
class PingOptions:
    idle: NonNegative = 120.0  # ping a client that sent nothing for this long (0 turns pinging off)
    timeout: Positive = 30.0  # close it when the ping is not answered within this time


class Ping(Feature):
    name = "ping"
    implements = ("XEP-0199",)
    disco_features = (ns.PING,)
    account_disco_features = (ns.PING,)
    Options = PingOptions

    async def setup(self) -> None:
        self._pinging: set[str] = set()
        if self.options.idle > 0:
            self.ctx.spawn(self._watch(), name="ping-watch")

    @iq_handler("get", _PING)
    async def ping_host(self, req: IqRequest) -> etree._Element | None:
        return None

    @iq_handler("get", _PING, target=Target.BARE)
    async def ping_account(self, req: IqRequest) -> etree._Element | None:
        return None  # the server answers for the account (XEP-0199 §4.3)

    async def _watch(self) -> None:
        idle = self.options.idle
        period = max(0.05, min(idle / 4, 15.0))
        while True:
            await asyncio.sleep(period)
            horizon = time.monotonic() - idle
            for session in list(self.ctx.sessions):
                if session.last_active < horizon and session.sid not in self._pinging and not session.is_closed:
                    self._pinging.add(session.sid)
                    self.ctx.spawn(self._ping(session), name=f"ping-{session.sid}")

    async def _ping(self, session) -> None:  # type: ignore[no-untyped-def]
        try:
            iq = stanza("iq", type="get", to=str(session.jid), frm=self.ctx.domain)
            iq.append(element(_PING, default_ns=ns.PING))
            sent_at = session.last_active
            try:
                await self.ctx.send_iq(iq, timeout=self.options.timeout)
            except TimeoutError:
                if session.last_active == sent_at and not session.is_closed:
                    session.log.info("no answer to ping within %ss: closing", self.options.timeout)
                    session.close(StreamErrorCondition.CONNECTION_TIMEOUT, "no answer to ping")
        finally:
            self._pinging.discard(session.sid)
