"""Agents' presence (RFC 6121): an agent subscribes to a queue JID (or the component), the service
subscribes back approved in their name, and their ordinary presence then says who is available.
Anyone else is refused with ``unsubscribed``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from xmppd.core.hooks import Routed
from xmppd.jid import JID
from xmppd.xml import ns
from xmppd.xml.builder import stanza

from . import policy

if TYPE_CHECKING:
    from .service import CsService

SUBSCRIPTION_TYPES = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")


class AgentPresence:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    def follows(self, to: JID, who: str) -> bool:
        """Whether ``who`` may subscribe to ``to``: an agent of that queue, or of any queue for
        the component itself. Queue presence is only for the agents who serve the queue."""
        return policy.follows(to.local, who, self.cs.queues, self.cs.members)

    async def subscription(self, r: Routed, typ: str) -> None:
        """An agent's subscribe is granted and returned: the service subscribes back, approved
        in the agent's name (their request is their consent), so the agent's server broadcasts
        their ordinary presence to the queue. Anyone else is refused with ``unsubscribed``."""
        ctx = self.cs.ctx
        to = r.to
        assert to is not None
        me = str(to.bare)
        who = str(r.from_jid.bare)
        if typ == "subscribe":
            if not self.follows(to, who):
                await ctx.send(stanza("presence", frm=me, to=who, type="unsubscribed"))
                return
            await ctx.send(stanza("presence", frm=me, to=who, type="subscribed"))
            await ctx.send(stanza("presence", frm=me, to=who))
            await self.watch(who, me)
        elif typ == "probe" and self.follows(to, who):
            await ctx.send(stanza("presence", frm=me, to=who))
        # subscribed/unsubscribe/unsubscribed: the agent's server starts or stops the broadcast

    async def watch(self, who: str, me: str) -> None:
        """Subscribe ``me`` (a queue JID or the component) to agent ``who``'s presence, approved
        in the agent's name; their current presence arrives at once. Call without the lock."""
        await self.cs.ctx.feature("presence").preapprove(JID.parse(who), JID.parse(me))
        await self.cs.ctx.send(stanza("presence", frm=me, to=who, type="subscribe"))

    async def track(self, who: str) -> None:
        """An agent paused or resumed from a standard client (ad-hoc, a text command): follow
        their ordinary presence through the component, and learn it now. Call without the lock."""
        cs = self.cs
        a = cs.agents.get(who)
        if a is not None and a.online:
            return
        await self.watch(who, cs.domain)
        a = cs.agents.get(who)
        if a is None or not a.online:
            await cs.ctx.send(stanza("presence", frm=cs.domain, to=who, type="probe"))

    async def release(self, who: str, me: str) -> None:
        """``who`` no longer serves ``me``: both subscriptions end. Call without the lock."""
        await self.cs.ctx.send(stanza("presence", frm=me, to=who, type="unsubscribed"))
        await self.cs.ctx.send(stanza("presence", frm=me, to=who, type="unsubscribe"))

    async def available(self, r: Routed) -> None:
        """An agent's presence to a queue JID or the component (under the lock)."""
        cs = self.cs
        to = r.to
        assert to is not None
        typ = r.stanza.get("type")
        if typ not in (None, "unavailable") or (to.local or "").startswith("s-"):
            return
        who = str(r.from_jid.bare)
        full = str(r.from_jid)
        if to.local is None:
            queues = cs.state.agent_queues(who)
        elif cs.role(to.local, who) == "agent":
            queues = [to.local]
        else:
            return
        if not queues:
            return
        agent = cs.state.agent(who)
        was_online = agent.online
        show = r.stanza.findtext(f"{{{ns.CLIENT}}}show")
        for name in queues:
            if typ == "unavailable":
                shows = agent.presence.get(name, {})
                shows.pop(full, None)
                if not shows:
                    agent.presence.pop(name, None)
            else:
                agent.presence.setdefault(name, {})[full] = show
        if agent.online and not was_online:
            agent.idle_since = cs.now()
        if not agent.online and was_online:
            await cs.agent_gone(who)
        for name in queues:
            cs.state.forget_tries()
            await cs.dispatch(name)

    async def session_closed(self, jid: JID) -> None:
        """A client session ended without unavailable presence reaching us."""
        cs = self.cs
        agent = cs.agents.get(str(jid.bare))
        if agent is None or not agent.online:
            return
        full = str(jid)
        async with cs.locked():
            touched = [n for n, shows in agent.presence.items() if full in shows]
            for n in touched:
                del agent.presence[n][full]
                if not agent.presence[n]:
                    del agent.presence[n]
            if touched and not agent.online:
                await cs.agent_gone(agent.jid)
