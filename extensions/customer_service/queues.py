"""Queue administration (docs/customer-service.md §3): create, update and delete queues, assign
agents and supervisors, a queue's figures. One door for the three that change queues (iq
requests, ad-hoc commands, the REST API). In a cluster a node not holding the queue writes
storage and has the owner read it again (docs/cluster.md §5)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from xmppd.errors import Condition
from xmppd.jid import JID
from xmppd.xml.attrs import jid_attr
from xmppd.xml.builder import element, sub

from . import wire
from .protocol import NS, CsError, q
from .repository import ROLES, MemberRecord, QueueRecord

if TYPE_CHECKING:
    from .service import CsService


class QueueAdmin:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    async def put_queue(self, p: etree._Element) -> None:
        """Create or update the queue a ``<queue/>`` element describes (absent settings: kept)."""
        cs = self.cs
        name = wire.queue_name(p)
        async with cs.locked():
            # A cluster node not holding the queue (REST API, ad-hoc command) starts from storage
            # and has the owner read it again (docs/cluster.md §5).
            base = cs.queues.get(name) if cs.owns(name) else await cs.repo.get_queue(name)
            new = wire.queue_from_element(base or QueueRecord(name=name, display_name=name), p)
            await cs.repo.put_queue(new)
            cs.queues[name] = new
            cs.members.setdefault(name, {})
            await cs.dispatch(name)
            self._tell_owner(name)

    def _tell_owner(self, name: str) -> None:
        """(Under the lock.) In a cluster, on a node not holding ``name``: once the lock is
        released, its owner reads the queue's record and members from storage again."""
        cs = self.cs
        cluster = cs.cluster
        if cluster is not None and not cluster.owns(name):
            cs.after(lambda: cluster.reload(name))

    async def delete_queue(self, name: str) -> None:
        cs = self.cs
        async with cs.locked():
            if cs.owns(name):
                cs.queue(name)
                busy = any(s.queue == name for s in cs.open.values())
            else:  # a cluster node not holding it: storage says
                if await cs.repo.get_queue(name) is None:
                    raise CsError(Condition.ITEM_NOT_FOUND, "no_queue", name=repr(name), domain=cs.domain)
                busy = bool(await cs.repo.open_sessions(name))
            if busy:
                raise CsError(Condition.CONFLICT, "queue_busy")
            await cs.repo.delete_queue(name)
            self._tell_owner(name)
            cs.queues.pop(name, None)
            cs.members.pop(name, None)
            cs.state.rr.pop(name, None)
            for a in cs.agents.values():
                a.presence.pop(name, None)

    async def set_member(self, qr: QueueRecord, p: etree._Element) -> None:
        """Assign (or with role='none' remove) an agent or supervisor of ``qr``."""
        cs = self.cs
        jid = jid_attr(p, "jid", account=True)
        if jid is None:
            raise CsError(Condition.BAD_REQUEST, "member_jid")
        role = p.get("role", "agent")
        if role not in (*ROLES, "none"):
            raise CsError(Condition.BAD_REQUEST, "member_role")
        async with cs.locked():
            if cs.cluster is not None and not cs.owns(qr.name):
                await cs.cluster.learn_queue(qr.name)  # the members as storage has them
                self._tell_owner(qr.name)
            cs.members.setdefault(qr.name, {})
            key = str(jid)
            was_agent = cs.role(qr.name, key) == "agent"
            if role == "none":
                await cs.repo.remove_member(qr.name, key)
                cs.members[qr.name].pop(key, None)
            else:
                m = MemberRecord(qr.name, key, role, (p.get("nick") or "")[:191], wire.skills_attr(p))
                await cs.repo.set_member(m)
                cs.members[qr.name][key] = m
            if was_agent and role != "agent":
                a = cs.agents.get(key)
                if a is not None:
                    a.presence.pop(qr.name, None)
                cs.after(lambda: cs.presence.release(key, cs.queue_jid(qr.name)))
                if not cs.presence.follows(JID(None, cs.domain), key):
                    cs.after(lambda: cs.presence.release(key, cs.domain))
            await cs.dispatch(qr.name)

    async def figures(self, queue: str) -> etree._Element:
        cs = self.cs
        qr = cs.queues[queue]
        served, avg = await cs.repo.wait_stats(queue)
        line = cs.line(queue)
        active = sum(1 for s in cs.open.values() if s.queue == queue and s.state == "active")
        out = element(
            q("figures"),
            {"queue": cs.queue_jid(queue), "waiting": str(len(line)), "active": str(active), "served": str(served), "average-wait": f"{avg:.1f}"},
            default_ns=NS,
        )
        for jid, m in cs.members.get(queue, {}).items():
            if m.role != "agent":
                continue
            status = cs.agents[jid].status(queue) if jid in cs.agents else "offline"
            sub(out, q("agent"), {"jid": jid, "nick": cs.nick(queue, jid), "load": str(cs.state.load(jid)), "capacity": str(qr.capacity), "status": status})
        return out
