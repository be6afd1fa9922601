"""Tickets as a workflow (docs §5.1): what a visitor left while no agent was there is answered,
assigned and closed by the queue's agents and supervisors, and the visitor is told each step
from the queue JID — online, or later from offline storage. Changes are conditional updates in
storage: a closed ticket stays closed whoever races it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from xmppd.errors import Condition
from xmppd.jid import JID
from xmppd.xml.builder import element

from .protocol import CsError, q
from .repository import Ticket, TicketReply

if TYPE_CHECKING:
    from .service import CsService

MAX_REPLY = 10000  # characters in one reply


class TicketDesk:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    async def _ticket(self, queue: str, ticket_id: str | None, who: JID) -> Ticket:
        cs = self.cs
        if cs.role(queue, who) not in ("agent", "supervisor") and not cs.ctx.is_admin(who):
            raise CsError(Condition.FORBIDDEN, "only_agent_supervisor")
        if not ticket_id or not ticket_id.isdigit():
            raise CsError(Condition.BAD_REQUEST, "ticket_id")
        t = await cs.repo.get_ticket(int(ticket_id))
        if t is None or t.queue != queue:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_ticket", id=ticket_id)
        if t.state == "closed":
            raise CsError(Condition.UNEXPECTED_REQUEST, "ticket_closed", id=ticket_id)
        return t

    async def _tell(self, t: Ticket, text: str, name: str, **attrs: str) -> None:
        await self.cs.message(self.cs.queue_jid(t.queue), t.visitor, text, element(q(name), {"id": str(t.id), **attrs}))

    async def reply(self, queue: str, ticket_id: str | None, who: JID, text: str) -> None:
        cs = self.cs
        text = text.strip()
        if not text or len(text) > MAX_REPLY:
            raise CsError(Condition.BAD_REQUEST, "ticket_text", most=MAX_REPLY)
        t = await self._ticket(queue, ticket_id, who)
        agent = str(who.bare)
        if not await cs.repo.reply_ticket(TicketReply(t.id, cs.dt_now(), agent, text)):
            raise CsError(Condition.UNEXPECTED_REQUEST, "ticket_closed", id=str(t.id))
        nick = cs.nick(queue, agent)
        await self._tell(t, cs.t(t.visitor, "visitor.ticket_reply", id=t.id, nick=nick, text=text), "ticket-reply", nick=nick)

    async def assign(self, queue: str, ticket_id: str | None, who: JID, agent: str | None) -> None:
        cs = self.cs
        t = await self._ticket(queue, ticket_id, who)
        try:
            target = str(JID.parse(agent).bare) if agent else str(who.bare)
        except ValueError:
            raise CsError(Condition.JID_MALFORMED, "agent_malformed") from None
        if cs.role(queue, target) != "agent":
            raise CsError(Condition.ITEM_NOT_FOUND, "not_an_agent", agent=target)
        if not await cs.repo.assign_ticket(t.id, target):
            raise CsError(Condition.UNEXPECTED_REQUEST, "ticket_closed", id=str(t.id))
        nick = cs.nick(queue, target)
        await self._tell(t, cs.t(t.visitor, "visitor.ticket_assigned", id=t.id, nick=nick), "ticket-update", state="assigned", nick=nick)

    async def close(self, queue: str, ticket_id: str | None, who: JID) -> None:
        cs = self.cs
        t = await self._ticket(queue, ticket_id, who)
        if not await cs.repo.close_ticket(t.id, cs.dt_now()):
            raise CsError(Condition.UNEXPECTED_REQUEST, "ticket_closed", id=str(t.id))
        await self._tell(t, cs.t(t.visitor, "visitor.ticket_closed", id=t.id), "ticket-update", state="closed")
