"""urn:xmppd:cs:0 iq requests on the service's JIDs (docs/customer-service.md §3): each handler
checks who asks, reads the request with ``wire`` and calls the service."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from lxml import etree

from xmppd.core.dispatch import IqRequest, Target
from xmppd.errors import Condition
from xmppd.features.disco import info_element, items_element
from xmppd.xml import ns
from xmppd.xml.attrs import int_attr, jid_attr
from xmppd.xml.builder import element, sub

from . import policy, prechat, wire
from .hours import zone
from .protocol import NS, CsError, q, stamp
from .repository import ROLES, QueueRecord, SessionRecord

if TYPE_CHECKING:
    from .service import CsService

ADHOC_NS = "http://jabber.org/protocol/commands"
REPORT_DAYS = 92  # days one report covers at most


async def daily_report(cs: "CsService", qr: QueueRecord, frm: str | None, to: str | None) -> tuple[date, date, list[Any]]:
    """The rows of a queue's daily report (§5.2) for the days ``frm``..``to`` (``YYYY-MM-DD`` in
    the queue's time zone; default the last 7 days up to today, at most ``REPORT_DAYS``)."""
    tz = zone(qr.timezone)
    today = datetime.fromtimestamp(cs.now(), tz).date()
    try:
        last = date.fromisoformat(to or today.isoformat())
        first = date.fromisoformat(frm or (last - timedelta(days=6)).isoformat())
    except ValueError:
        raise CsError(Condition.BAD_REQUEST, "report_dates") from None
    if first > last or (last - first).days >= REPORT_DAYS:
        raise CsError(Condition.BAD_REQUEST, "report_range", most=REPORT_DAYS)
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(last + timedelta(days=1), time(), tz)
    return first, last, policy.daily_figures(await cs.repo.sessions_between(qr.name, start, end), tz)


class CsIqs:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    def register(self) -> None:
        """Through the feature context: undone at teardown."""
        cs = self.cs
        both = (Target.HOST, Target.BARE)
        table: list[tuple[str, str, Callable[[IqRequest], Awaitable[Any]], tuple[Target, ...]]] = [
            ("get", f"{{{ns.DISCO_INFO}}}query", self.disco_info, both),
            ("get", f"{{{ns.DISCO_ITEMS}}}query", self.disco_items, both),
            ("set", q("queue"), self.put_queue, (Target.HOST,)),
            ("set", q("delete-queue"), self.delete_queue, (Target.HOST,)),
            ("get", q("queues"), self.queues, (Target.HOST,)),
            ("set", q("member"), self.member, (Target.BARE,)),
            ("get", q("members"), self.members, (Target.BARE,)),
            ("set", q("accept"), self.accept, both),
            ("set", q("reject"), self.reject, both),
            ("set", q("transfer"), self.transfer, both),
            ("set", q("close"), self.close, both),
            ("set", q("rate"), self.rate, both),
            ("set", q("pause"), self.pause, both),
            ("set", q("resume"), self.resume, both),
            ("get", q("figures"), self.figures, (Target.BARE,)),
            ("get", q("history"), self.history, (Target.BARE,)),
            ("get", q("transcript"), self.transcript, both),
            ("get", q("tickets"), self.tickets, (Target.BARE,)),
            ("set", q("ticket-reply"), self.ticket_reply, (Target.BARE,)),
            ("set", q("ticket-assign"), self.ticket_assign, (Target.BARE,)),
            ("set", q("ticket-close"), self.ticket_close, (Target.BARE,)),
            ("set", q("canned"), self.put_canned, (Target.BARE,)),
            ("get", q("canned-list"), self.canned_list, (Target.BARE,)),
            ("get", q("report"), self.report, (Target.BARE,)),
            ("set", q("watch"), self.watch, both),
            ("set", q("invite"), self.invite, both),
            ("set", q("leave"), self.leave, both),
            ("get", q("prechat"), self.prechat_form, (Target.BARE,)),
            ("set", q("join"), self.join, (Target.BARE,)),
        ]
        for typ, qname, fn, targets in table:
            for t in targets:
                cs.ctx.add_iq_handler(typ, qname, fn, target=t, domain=cs.domain)

    # ------------------------------------------------------------------ who and what

    def session_of(self, req: IqRequest) -> SessionRecord:
        cs = self.cs
        sid = req.payload.get("session")
        if sid is None and req.to.local and req.to.local.startswith("s-"):
            sid = req.to.local[2:]
        if sid is None and req.to.local:
            sid = cs.state.by_visitor.get((req.to.local, str(req.from_jid.bare)))
            if sid is None:
                raise CsError(Condition.ITEM_NOT_FOUND, "no_open_chat")
        if sid is None:
            raise CsError(Condition.BAD_REQUEST, "name_session")
        s = cs.open.get(sid)
        if s is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_open_session", id=sid)
        return s

    def require_admin(self, req: IqRequest) -> None:
        if not self.cs.ctx.is_admin(req.from_jid):
            raise CsError(Condition.FORBIDDEN, "admins_only")

    def require_role(self, req: IqRequest, queue: str, *roles: str) -> None:
        if self.cs.ctx.is_admin(req.from_jid) and "supervisor" in roles:
            return
        if self.cs.role(queue, req.from_jid) not in roles:
            raise CsError(Condition.FORBIDDEN, "only_" + "_".join(roles))

    def queue_of(self, req: IqRequest) -> QueueRecord:
        local = req.to.local
        if local is None or local.startswith("s-"):
            raise CsError(Condition.BAD_REQUEST, "to_queue")
        return self.cs.queue(local)

    # ------------------------------------------------------------------ discovery

    async def disco_info(self, req: IqRequest) -> etree._Element:
        cs = self.cs
        node = req.payload.get("node")
        if node:
            return await self._disco_node(req, node, ns.DISCO_INFO)
        out = element(f"{{{ns.DISCO_INFO}}}query", default_ns=ns.DISCO_INFO)
        local = req.to.local
        if local is None:
            sub(out, f"{{{ns.DISCO_INFO}}}identity", {"category": "component", "type": "workgroup", "name": cs.t(req.from_jid, "disco.component")})
        else:
            qr = cs.queue(local) if not local.startswith("s-") else None
            if qr is None and local[2:] not in cs.open:
                raise CsError(Condition.ITEM_NOT_FOUND, "no_session")
            name = qr.display_name if qr else cs.t(req.from_jid, "disco.chat")
            sub(out, f"{{{ns.DISCO_INFO}}}identity", {"category": "client", "type": "bot", "name": name})
        features = [ns.DISCO_INFO, ns.DISCO_ITEMS, NS]
        if local is not None and not local.startswith("s-") and cs.queues[local].prechat:
            features.append(prechat.FORM_TYPE)  # this queue asks a pre-chat form (§4.1)
        for feat in features:
            sub(out, f"{{{ns.DISCO_INFO}}}feature", {"var": feat})
        return out

    async def _disco_node(self, req: IqRequest, node: str, which: str) -> etree._Element:
        """XEP-0050 discovery on our JIDs: the command list and the command nodes."""
        ctx = self.cs.ctx
        if not ctx.has_feature("adhoc"):
            raise CsError(Condition.ITEM_NOT_FOUND, "no_node", node=repr(node))
        adhoc = ctx.feature("adhoc")
        if which == ns.DISCO_ITEMS:
            info = await adhoc.disco_items(req.from_jid, req.to.bare) if node == ADHOC_NS else None
        else:
            info = await adhoc.disco_info(req.from_jid, req.to.bare, node)
        if info is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_node", node=repr(node))
        return info_element(info, node) if which == ns.DISCO_INFO else items_element(info, node)

    async def disco_items(self, req: IqRequest) -> etree._Element:
        node = req.payload.get("node")
        if node:
            return await self._disco_node(req, node, ns.DISCO_ITEMS)
        out = element(f"{{{ns.DISCO_ITEMS}}}query", default_ns=ns.DISCO_ITEMS)
        if req.to.local is None:
            for qr in await self.cs.all_queues():
                sub(out, f"{{{ns.DISCO_ITEMS}}}item", {"jid": self.cs.queue_jid(qr.name), "name": qr.display_name})
        return out

    # ------------------------------------------------------------------ administration

    async def put_queue(self, req: IqRequest) -> None:
        self.require_admin(req)
        await self.cs.admin.put_queue(req.payload)

    async def delete_queue(self, req: IqRequest) -> None:
        self.require_admin(req)
        await self.cs.admin.delete_queue(req.payload.get("name") or "")

    async def queues(self, req: IqRequest) -> etree._Element:
        cs = self.cs
        out = element(q("queues"), default_ns=NS)
        who = str(req.from_jid.bare)
        if cs.cluster is not None:  # every node answers the same: the members as storage has them
            mine = {m.queue for m in await cs.repo.members() if m.jid == who}
        else:
            mine = {n for n in cs.queues if cs.role(n, who) is not None}
        for qr in await cs.all_queues():
            full = cs.ctx.is_admin(req.from_jid) or qr.name in mine
            out.append(wire.queue_element(qr, cs.queue_jid(qr.name), full))
        return out

    async def member(self, req: IqRequest) -> None:
        self.require_admin(req)
        await self.cs.admin.set_member(self.queue_of(req), req.payload)

    async def members(self, req: IqRequest) -> etree._Element:
        cs = self.cs
        qr = self.queue_of(req)
        self.require_role(req, qr.name, "supervisor")
        out = element(q("members"), default_ns=NS)
        for m in cs.members.get(qr.name, {}).values():
            attrs = {"jid": m.jid, "role": m.role}
            if m.nick:
                attrs["nick"] = m.nick
            if m.skills:
                attrs["skills"] = m.skills
            if m.role == "agent":
                attrs["status"] = cs.state.status(qr.name, m.jid)
            sub(out, q("member"), attrs)
        return out

    # ------------------------------------------------------------------ chats

    async def accept(self, req: IqRequest) -> None:
        async with self.cs.locked():
            await self.cs.accept(self.session_of(req), str(req.from_jid.bare))

    async def reject(self, req: IqRequest) -> None:
        async with self.cs.locked():
            await self.cs.reject(self.session_of(req), str(req.from_jid.bare))

    async def transfer(self, req: IqRequest) -> None:
        async with self.cs.locked():
            s = self.session_of(req)
            await self.cs.transfer(s, str(req.from_jid.bare), agent=req.payload.get("agent"), queue=req.payload.get("queue"))

    async def close(self, req: IqRequest) -> None:
        cs = self.cs
        who = str(req.from_jid.bare)
        async with cs.locked():
            s = self.session_of(req)
            if s.visitor == who:
                await cs.close(s, "visitor")
                return
            cs.check_handler(s, who)
            await cs.close(s, "agent" if s.agent == who else "supervisor")

    async def rate(self, req: IqRequest) -> None:
        score = int_attr(req.payload, "score", None, low=1, high=5)
        if score is None:
            raise CsError(Condition.BAD_REQUEST, "rate_score")
        local = req.to.local
        entry = local if local and not local.startswith("s-") else None
        sid = req.payload.get("session") or (local[2:] if local and local.startswith("s-") else None)
        async with self.cs.locked():
            await self.cs.rate(str(req.from_jid.bare), entry, sid, score, (req.payload.text or "").strip()[:2000])

    async def pause(self, req: IqRequest) -> None:
        async with self.cs.locked():
            await self.cs.set_paused(str(req.from_jid.bare), True)

    async def resume(self, req: IqRequest) -> None:
        async with self.cs.locked():
            await self.cs.set_paused(str(req.from_jid.bare), False)

    # ------------------------------------------------------------------ reports

    async def figures(self, req: IqRequest) -> etree._Element:
        qr = self.queue_of(req)
        self.require_role(req, qr.name, "supervisor")
        return await self.cs.admin.figures(qr.name)

    async def history(self, req: IqRequest) -> etree._Element:
        cs = self.cs
        qr = self.queue_of(req)
        visitor = jid_attr(req.payload, "visitor", account=True)
        if visitor is None:
            self.require_role(req, qr.name, "supervisor")
        else:
            self.require_role(req, qr.name, "agent", "supervisor")
        limit = int_attr(req.payload, "max", cs.options.history_limit, low=1, high=cs.options.history_limit)
        out = element(q("history"), default_ns=NS)
        for s in await cs.repo.sessions(qr.name, str(visitor) if visitor else None, limit=limit or 1):
            out.append(wire.session_element(s, cs.queue_jid(s.queue), cs.nick(s.queue, s.agent) if s.agent else None))
        return out

    async def transcript(self, req: IqRequest) -> etree._Element:
        cs = self.cs
        sid = req.payload.get("session")
        if not sid:
            raise CsError(Condition.BAD_REQUEST, "transcript_session")
        s = await cs.repo.get_session(sid)
        if s is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_session_id", id=sid)
        who = str(req.from_jid.bare)
        if who != s.visitor and not cs.ctx.is_admin(req.from_jid) and cs.role(s.queue, who) not in ROLES:
            raise CsError(Condition.FORBIDDEN, "transcript_who")
        return wire.transcript_element(s.id, await cs.repo.transcript(s.id))

    async def tickets(self, req: IqRequest) -> etree._Element:
        cs = self.cs
        qr = self.queue_of(req)
        self.require_role(req, qr.name, "agent", "supervisor")
        out = element(q("tickets"), default_ns=NS)
        for t in await cs.repo.tickets(qr.name):
            attrs = {"id": str(t.id), "visitor": t.visitor, "created": stamp(t.created_at), "state": t.state}
            if t.assignee:
                attrs["assignee"] = t.assignee
            if t.closed_at:
                attrs["closed"] = stamp(t.closed_at)
            el = sub(out, q("ticket"), attrs, text=t.body)
            for r in await cs.repo.ticket_replies(t.id):
                sub(el, q("reply"), {"agent": r.agent, "at": stamp(r.at)}, text=r.body)
        return out

    async def ticket_reply(self, req: IqRequest) -> None:
        qr = self.queue_of(req)
        await self.cs.tickets.reply(qr.name, req.payload.get("id"), req.from_jid, req.payload.text or "")

    async def ticket_assign(self, req: IqRequest) -> None:
        qr = self.queue_of(req)
        await self.cs.tickets.assign(qr.name, req.payload.get("id"), req.from_jid, req.payload.get("agent"))

    async def ticket_close(self, req: IqRequest) -> None:
        qr = self.queue_of(req)
        await self.cs.tickets.close(qr.name, req.payload.get("id"), req.from_jid)

    async def put_canned(self, req: IqRequest) -> None:
        qr = self.queue_of(req)
        p = req.payload
        await self.cs.canned.put(qr.name, req.from_jid, p.get("name") or "", p.text or "", p.get("personal") in ("true", "1"))

    async def canned_list(self, req: IqRequest) -> etree._Element:
        qr = self.queue_of(req)
        self.require_role(req, qr.name, "agent", "supervisor")
        out = element(q("canned-list"), default_ns=NS)
        for c in await self.cs.canned.visible(qr.name, str(req.from_jid.bare)):
            attrs = {"name": c.name}
            if c.owner:
                attrs["personal"] = "true"
            sub(out, q("canned"), attrs, text=c.text)
        return out

    async def report(self, req: IqRequest) -> etree._Element:
        """Satisfaction and wait per day, for the queue and each agent (docs §5.2)."""
        cs = self.cs
        qr = self.queue_of(req)
        self.require_role(req, qr.name, "supervisor")
        first, last, rows = await daily_report(cs, qr, req.payload.get("from"), req.payload.get("to"))
        out = element(q("report"), {"queue": cs.queue_jid(qr.name), "from": first.isoformat(), "to": last.isoformat(), "timezone": qr.timezone}, default_ns=NS)
        for day, agent, chats, rated, rating, wait in rows:
            attrs = {"date": day, "chats": str(chats), "rated": str(rated)}
            if agent:
                attrs["agent"] = agent
            if rating is not None:
                attrs["satisfaction"] = f"{rating:.2f}"
            if wait is not None:
                attrs["average-wait"] = f"{wait:.1f}"
            sub(out, q("day"), attrs)
        return out

    async def watch(self, req: IqRequest) -> None:
        async with self.cs.locked():
            await self.cs.followers.watch(self.session_of(req), req.from_jid)

    async def invite(self, req: IqRequest) -> None:
        async with self.cs.locked():
            await self.cs.followers.invite(self.session_of(req), str(req.from_jid.bare), req.payload.get("agent") or "")

    async def leave(self, req: IqRequest) -> None:
        async with self.cs.locked():
            await self.cs.followers.leave(self.session_of(req), str(req.from_jid.bare))

    # ------------------------------------------------------------------ pre-chat form (§4.1)

    async def prechat_form(self, req: IqRequest) -> etree._Element:
        """The queue's pre-chat form, as XEP-0004 ``type='form'`` (anyone may ask)."""
        cs = self.cs
        qr = self.queue_of(req)
        form = prechat.loads(qr.prechat)
        if form is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "prechat_none")
        out = element(q("prechat"), {"queue": cs.queue_jid(qr.name), "required": "true" if form.required else "false"}, default_ns=NS)
        out.append(prechat.data_form(form, qr.display_name).to_element())
        return out

    async def join(self, req: IqRequest) -> etree._Element:
        """The chat request with the submitted form: the chat opens (or a ticket keeps the
        answers while nobody serves); ``<joined session/>`` or ``<joined ticket/>``."""
        cs = self.cs
        qr = self.queue_of(req)
        async with cs.locked():
            if cs.state.visitor_session(qr.name, str(req.from_jid.bare)) is not None:
                raise CsError(Condition.CONFLICT, "already_in_chat")
            kind, ident = await cs.relay.start(qr.name, req.from_jid, None, prechat.x_of(req.payload))
        return element(q("joined"), {"queue": cs.queue_jid(qr.name), kind: ident}, default_ns=NS)
