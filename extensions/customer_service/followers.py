"""Those who follow a chat beside its agent (docs/customer-service.md §4.4): a supervisor
watching (and whispering, ``relay``), a second agent the chat's agent invited; the lines they
get a copy of."""
from __future__ import annotations

from typing import TYPE_CHECKING

from xmppd.errors import Condition
from xmppd.jid import JID
from xmppd.xml.builder import element

from . import wire
from .protocol import CsError, q
from .repository import SessionRecord

if TYPE_CHECKING:
    from .service import CsService


class Followers:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    async def copy(self, s: SessionRecord, nick: str, body: str, *, skip: str | None = None) -> None:
        """A line of chat ``s`` to those who follow it beside its agent (watchers, invited agents)."""
        cs = self.cs
        for o in cs.state.others(s.id):
            if o != skip:
                await cs.to_agent(s, o, f"{nick}: {body}")

    async def watch(self, s: SessionRecord, who: JID) -> None:
        """A supervisor of the chat's queue (or an admin) follows a live chat from its session JID."""
        cs = self.cs
        me = str(who.bare)
        if cs.role(s.queue, me) != "supervisor" and not cs.ctx.is_admin(who):
            raise CsError(Condition.FORBIDDEN, "only_supervisor")
        if s.state != "active":
            raise CsError(Condition.UNEXPECTED_REQUEST, "not_active")
        cs.state.watchers.setdefault(s.id, set()).add(me)
        lines = await cs.repo.transcript(s.id, last=cs.options.transfer_transcript_lines)
        head = cs.t(me, "agent.watching", visitor=s.visitor, nick=cs.nick(s.queue, s.agent or ""))
        await cs.to_agent(s, me, "\n".join(filter(None, [head, wire.transcript_text(lines)])), element(q("watching"), {"session": s.id}))

    async def invite(self, s: SessionRecord, who: str, agent: str) -> None:
        """The chat's agent brings a second agent of the queue in: they see the chat and write to the visitor."""
        cs = self.cs
        if s.agent != who or s.state != "active":
            raise CsError(Condition.FORBIDDEN, "not_your_chat")
        try:
            agent = str(JID.parse(agent).bare)
        except ValueError:
            raise CsError(Condition.JID_MALFORMED, "agent_malformed") from None
        if cs.role(s.queue, agent) != "agent" or agent == who:
            raise CsError(Condition.ITEM_NOT_FOUND, "not_an_agent", agent=agent)
        if cs.state.status(s.queue, agent) == "offline":
            raise CsError(Condition.RECIPIENT_UNAVAILABLE, "unavailable", agent=agent)
        cs.state.helpers.setdefault(s.id, set()).add(agent)
        await cs.brief(s, agent, who)
        await cs.to_visitor_t(s, "visitor.joined", note=True, nick=cs.nick(s.queue, agent))

    async def leave(self, s: SessionRecord, who: str) -> None:
        """A watcher or an invited agent leaves the chat."""
        cs = self.cs
        if who in cs.state.helpers.get(s.id, set()):
            cs.state.helpers[s.id].discard(who)
            await cs.to_visitor_t(s, "visitor.left", note=True, nick=cs.nick(s.queue, who))
        elif who in cs.state.watchers.get(s.id, set()):
            cs.state.watchers[s.id].discard(who)
        else:
            raise CsError(Condition.ITEM_NOT_FOUND, "not_following")
