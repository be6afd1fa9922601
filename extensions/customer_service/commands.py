"""urn:xmppd:cs:0 as XEP-0050 ad-hoc commands, for agents, supervisors and admins on standard clients.

The same actions as the iq protocol, on the same JIDs: queue management on the component,
members, figures, history and tickets on a queue JID, accept/close/transfer on a chat's
session JID. Every command checks its role when listed and on every request.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lxml import etree

from xmppd.errors import StanzaError
from xmppd.features.adhoc import Command, Execution, Field, Form, FormError, Note, Option, Result
from xmppd.jid import JID

from .protocol import q
from .repository import STRATEGIES

if TYPE_CHECKING:
    from .feature import CustomerService

NODE = "urn:xmppd:cs:0#"


def _text(label: str, var: str, desc: str | None = None, *, required: bool = False) -> Field:
    return Field(var, "text-single", label, desc, required=required)


class CsCommands:
    def __init__(self, cs: "CustomerService") -> None:
        self.cs = cs

    def register(self, adhoc: Any) -> None:
        self.cs.ctx.on_teardown(adhoc.register_provider(self.cs.domain, self.commands))

    # ------------------------------------------------------------------ which commands where

    def commands(self, requester: JID, target: JID) -> list[Command]:
        cs = self.cs
        if target.local is None:
            return [
                Command(NODE + "queue", "Create or update a queue", self.put_queue, form=self.queue_form, admin_only=True),
                Command(NODE + "delete-queue", "Delete a queue", self.delete_queue, form=self.delete_form, admin_only=True),
                Command(NODE + "pause", "Pause: take no new chats", self.pause, may_run=self.is_agent_anywhere),
                Command(NODE + "resume", "Resume: take new chats", self.resume, may_run=self.is_agent_anywhere),
            ]
        if target.local.startswith("s-"):
            return [
                Command(NODE + "accept", "Accept this chat", self.accept, may_run=self.is_offered),
                Command(NODE + "close", "Close this chat", self.close, may_run=self.handles),
                Command(NODE + "transfer", "Transfer this chat", self.transfer, form=self.transfer_form, may_run=self.handles),
            ]
        if target.local not in cs.queues:
            return []
        return [
            Command(NODE + "member", "Assign an agent or supervisor", self.member, form=MEMBER_FORM, admin_only=True),
            Command(NODE + "figures", "Queue figures", self.figures, may_run=self.supervises),
            Command(NODE + "history", "Session history", self.history, form=HISTORY_FORM, may_run=self.serves),
            Command(NODE + "tickets", "Offline tickets", self.tickets, may_run=self.serves),
        ]

    # ------------------------------------------------------------------ roles

    def is_agent_anywhere(self, requester: JID, target: JID) -> bool:
        who = str(requester.bare)
        return any(ms.get(who) is not None and ms[who].role == "agent" for ms in self.cs.members.values())

    def _session(self, target: JID) -> Any:
        return self.cs.open.get((target.local or "")[2:])

    def is_offered(self, requester: JID, target: JID) -> bool:
        s = self._session(target)
        return s is not None and s.state == "offered" and s.agent == str(requester.bare)

    def handles(self, requester: JID, target: JID) -> bool:
        s = self._session(target)
        if s is None:
            return False
        who = str(requester.bare)
        return (s.state == "active" and s.agent == who) or self.cs.role(s.queue, who) == "supervisor"

    def supervises(self, requester: JID, target: JID) -> bool:
        return self.cs.ctx.is_admin(requester) or self.cs.role(target.local or "", requester) == "supervisor"

    def serves(self, requester: JID, target: JID) -> bool:
        return self.supervises(requester, target) or self.cs.role(target.local or "", requester) == "agent"

    # ------------------------------------------------------------------ forms

    def queue_form(self, ex: Execution) -> Form:
        return Form(
            "form",
            title="Create or update a queue",
            instructions=("Settings left empty keep their value (or the default for a new queue).",),
            fields=(
                Field("FORM_TYPE", "hidden", values=("urn:xmppd:cs:0#queue",)),
                _text("Name (the queue JID's local part)", "name", required=True),
                _text("Display name", "display-name"),
                Field("strategy", "list-single", "Routing strategy", options=tuple(Option(s) for s in STRATEGIES)),
                _text("Chats per agent", "capacity"),
                _text("Seconds of visitor silence before closing (0: never)", "idle-timeout"),
                _text("Seconds to accept an offer (0: assign directly)", "offer-timeout"),
                _text("Missed offers before pausing an agent (0: never)", "max-misses"),
                _text("Opening hours, UTC, e.g. 09:00-17:00 (empty: always)", "hours"),
                Field("welcome", "text-multi", "Welcome text"),
                Field("offline", "text-multi", "Offline text"),
            ),
        )

    def delete_form(self, ex: Execution) -> Form:
        return Form(
            "form",
            title="Delete a queue",
            fields=(Field("name", "list-single", "Queue", required=True, options=tuple(Option(n) for n in sorted(self.cs.queues))),),
        )

    def transfer_form(self, ex: Execution) -> Form:
        s = self._session(ex.target)
        agents = sorted(j for j, m in self.cs.members.get(s.queue if s else "", {}).items() if m.role == "agent")
        return Form(
            "form",
            title="Transfer this chat",
            instructions=("Choose an agent of this queue, or another queue.",),
            fields=(
                Field("agent", "list-single", "Agent", options=tuple(Option(a, self.cs.nick(s.queue, a)) for a in agents) if s else ()),
                Field("queue", "list-single", "Queue", options=tuple(Option(n) for n in sorted(self.cs.queues))),
            ),
        )

    # ------------------------------------------------------------------ handlers

    async def put_queue(self, ex: Execution) -> str:
        v = ex.values
        el = etree.Element(q("queue"), {"name": v.get("name") or ""})
        for key in ("display-name", "strategy", "capacity", "idle-timeout", "offer-timeout", "max-misses", "hours"):
            if v.get(key) not in (None, ""):
                el.set(key, str(v[key]))
        for key in ("welcome", "offline"):
            if v.get(key):
                etree.SubElement(el, q(key)).text = v[key]
        try:
            await self.cs.put_queue(el)
        except StanzaError as err:
            raise FormError(None, err.text or err.condition.value) from None
        return f"Queue {self.cs.queue_jid(v['name'])} saved."

    async def delete_queue(self, ex: Execution) -> str:
        name = ex.values["name"]
        try:
            await self.cs.delete_queue(name)
        except StanzaError as err:
            raise FormError("name", err.text or err.condition.value) from None
        return f"Queue {name} deleted."

    async def pause(self, ex: Execution) -> str:
        async with self.cs.locked():
            await self.cs.set_paused(str(ex.requester.bare), True)
        return "Paused: you take no new chats."

    async def resume(self, ex: Execution) -> str:
        async with self.cs.locked():
            await self.cs.set_paused(str(ex.requester.bare), False)
        return "Resumed: you take new chats."

    async def accept(self, ex: Execution) -> str:
        async with self.cs.locked():
            s = self._live(ex)
            await self.cs.accept(s, str(ex.requester.bare))
        return "Accepted: the chat is yours."

    async def close(self, ex: Execution) -> str:
        async with self.cs.locked():
            s = self._live(ex)
            who = str(ex.requester.bare)
            await self.cs.close(s, "agent" if s.agent == who else "supervisor")
        return "The chat is closed."

    async def transfer(self, ex: Execution) -> str:
        agent, queue = ex.values.get("agent"), ex.values.get("queue")
        if bool(agent) == bool(queue):
            raise FormError(None, "choose an agent or a queue, not both")
        async with self.cs.locked():
            s = self._live(ex)
            try:
                await self.cs.transfer(s, str(ex.requester.bare), agent=agent or None, queue=queue or None)
            except StanzaError as err:
                raise FormError("agent" if agent else "queue", err.text or err.condition.value) from None
        return f"Transferred to {self.cs.nick(s.queue, agent) if agent else queue}."

    def _live(self, ex: Execution) -> Any:
        s = self._session(ex.target)
        if s is None:
            raise FormError(None, "this chat is closed")
        return s

    async def member(self, ex: Execution) -> str:
        v = ex.values
        qr = self.cs.queues[ex.target.local or ""]
        el = etree.Element(q("member"), {"jid": str(v["jid"]), "role": v.get("role") or "agent", "nick": v.get("nick") or ""})
        try:
            await self.cs.set_member(qr, el)
        except StanzaError as err:
            raise FormError("jid", err.text or err.condition.value) from None
        return f"{v['jid']} is now {'no member' if v.get('role') == 'none' else v.get('role') or 'agent'} of {qr.display_name}."

    async def figures(self, ex: Execution) -> Result:
        fig = await self.cs.figures(ex.target.local or "")
        notes = [
            Note(f"Waiting {fig.get('waiting')}, active {fig.get('active')}, served {fig.get('served')}, average wait {fig.get('average-wait')} s.")
        ]
        for a in fig.findall(q("agent")):
            notes.append(Note(f"{a.get('nick')} ({a.get('jid')}): {a.get('status')}, {a.get('load')}/{a.get('capacity')} chats."))
        return Result(tuple(notes))

    async def history(self, ex: Execution) -> Result:
        queue = ex.target.local or ""
        visitor = ex.values.get("visitor")
        if visitor is None and not self.supervises(ex.requester, ex.target):
            raise FormError("visitor", "agents look up one visitor's history")
        rows = await self.cs.repo.sessions(queue, str(visitor.bare) if visitor else None, limit=self.cs.options.history_limit)
        if not rows:
            return Result((Note("No sessions."),))
        notes = []
        for s in rows:
            who = f" with {self.cs.nick(s.queue, s.agent)}" if s.agent else ""
            rating = f", rated {s.rating}" + (f" ({s.comment})" if s.comment else "") if s.rating else ""
            notes.append(Note(f"{s.id} {s.created_at:%Y-%m-%d %H:%M} {s.visitor}{who}: {s.state}{' (' + s.close_reason + ')' if s.close_reason else ''}{rating}"))
        return Result(tuple(notes))

    async def tickets(self, ex: Execution) -> Result:
        rows = await self.cs.repo.tickets(ex.target.local or "")
        if not rows:
            return Result((Note("No tickets."),))
        return Result(tuple(Note(f"#{t.id} {t.created_at:%Y-%m-%d %H:%M} {t.visitor}: {t.body}") for t in rows))


MEMBER_FORM = Form(
    "form",
    title="Assign an agent or supervisor",
    fields=(
        Field("jid", "jid-single", "Account", required=True),
        Field("role", "list-single", "Role", values=("agent",), options=(Option("agent"), Option("supervisor"), Option("none", "Remove"))),
        _text("Display name shown to visitors", "nick"),
    ),
)

HISTORY_FORM = Form(
    "form",
    title="Session history",
    fields=(Field("visitor", "jid-single", "Visitor (empty: the whole queue, supervisors only)"),),
)
