"""urn:xmppd:cs:0 as XEP-0050 ad-hoc commands, for agents, supervisors and admins on standard clients.

The same actions as the iq protocol, on the same JIDs: queue management on the component,
members, figures, history and tickets on a queue JID, accept/close/transfer on a chat's
session JID. Every command checks its role when listed and on every request.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lxml import etree

from xmppd.errors import Condition, StanzaError
from xmppd.features.adhoc import Command, Execution, Field, Form, FormError, Note, Option, Result
from xmppd.jid import JID

from . import prechat
from .protocol import CsError, q
from .repository import STRATEGIES

if TYPE_CHECKING:
    from .service import CsService

NODE = "urn:xmppd:cs:0#"


def _text(label: str, var: str, desc: str | None = None, *, required: bool = False) -> Field:
    return Field(var, "text-single", label, desc, required=required)


class CsCommands:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    # ------------------------------------------------------------------ which commands where

    def commands(self, requester: JID, target: JID) -> list[Command]:
        cs = self.cs

        def t(key: str) -> str:
            return cs.t(requester, "adhoc." + key)

        if target.local is None:
            return [
                Command(NODE + "queue", t("queue"), self.put_queue, form=self.queue_form, admin_only=True),
                Command(NODE + "delete-queue", t("delete_queue"), self.delete_queue, form=self.delete_form, admin_only=True),
                Command(NODE + "pause", t("pause"), self.pause, may_run=self.is_agent_anywhere),
                Command(NODE + "resume", t("resume"), self.resume, may_run=self.is_agent_anywhere),
            ]
        if target.local.startswith("s-"):
            return [
                Command(NODE + "accept", t("accept"), self.accept, may_run=self.is_offered),
                Command(NODE + "close", t("close"), self.close, may_run=self.handles),
                Command(NODE + "transfer", t("transfer"), self.transfer, form=self.transfer_form, may_run=self.handles),
            ]
        if target.local not in cs.queues:
            return []
        return [
            Command(NODE + "member", t("member"), self.member, form=self.member_form, admin_only=True),
            Command(NODE + "figures", t("figures"), self.figures, may_run=self.supervises),
            Command(NODE + "history", t("history"), self.history, form=self.history_form, may_run=self.serves),
            Command(NODE + "tickets", t("tickets"), self.tickets, may_run=self.serves),
            # Anyone, while the queue has a pre-chat form: standard clients fill it in here (§4.1).
            Command(NODE + "prechat", t("prechat"), self.join, form=self.prechat_form, may_run=self.has_form),
        ]

    def _t(self, ex: Execution, key: str, /, **fields: Any) -> str:
        return self.cs.t(ex.requester, "adhoc." + key, **fields)

    def _why(self, ex: Execution, err: StanzaError) -> str:
        return self.cs.error_for(ex.requester, err).text or err.condition.value

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
        def t(key: str) -> str:
            return self._t(ex, key)

        return Form(
            "form",
            title=t("queue"),
            instructions=(t("queue_instructions"),),
            fields=(
                Field("FORM_TYPE", "hidden", values=("urn:xmppd:cs:0#queue",)),
                _text(t("f_name"), "name", required=True),
                _text(t("f_display_name"), "display-name"),
                Field("strategy", "list-single", t("f_strategy"), options=tuple(Option(s) for s in STRATEGIES)),
                _text(t("f_capacity"), "capacity"),
                _text(t("f_idle"), "idle-timeout"),
                _text(t("f_offer"), "offer-timeout"),
                _text(t("f_misses"), "max-misses"),
                _text(t("f_hours"), "hours"),
                _text(t("f_timezone"), "timezone"),
                _text(t("f_holidays"), "holidays"),
                _text(t("f_skills"), "skills"),
                Field("welcome", "text-multi", t("f_welcome")),
                Field("offline", "text-multi", t("f_offline")),
                Field("prechat", "text-multi", t("f_prechat")),
            ),
        )

    def delete_form(self, ex: Execution) -> Form:
        return Form(
            "form",
            title=self._t(ex, "delete_queue"),
            fields=(Field("name", "list-single", self._t(ex, "f_queue"), required=True, options=tuple(Option(n) for n in sorted(self.cs.queues))),),
        )

    def transfer_form(self, ex: Execution) -> Form:
        s = self._session(ex.target)
        agents = sorted(j for j, m in self.cs.members.get(s.queue if s else "", {}).items() if m.role == "agent")
        return Form(
            "form",
            title=self._t(ex, "transfer"),
            instructions=(self._t(ex, "transfer_instructions"),),
            fields=(
                Field("agent", "list-single", self._t(ex, "f_agent"), options=tuple(Option(a, self.cs.nick(s.queue, a)) for a in agents) if s else ()),
                Field("queue", "list-single", self._t(ex, "f_queue"), options=tuple(Option(n) for n in sorted(self.cs.queues))),
            ),
        )

    def member_form(self, ex: Execution) -> Form:
        return Form(
            "form",
            title=self._t(ex, "member"),
            fields=(
                Field("jid", "jid-single", self._t(ex, "f_account"), required=True),
                Field("role", "list-single", self._t(ex, "f_role"), values=("agent",),
                      options=(Option("agent"), Option("supervisor"), Option("none", self._t(ex, "f_remove")))),
                _text(self._t(ex, "f_nick"), "nick"),
                _text(self._t(ex, "f_skills"), "skills"),
            ),
        )

    def has_form(self, requester: JID, target: JID) -> bool:
        qr = self.cs.queues.get(target.local or "")
        return qr is not None and bool(qr.prechat)

    def prechat_form(self, ex: Execution) -> Form:
        qr = self.cs.queues[ex.target.local or ""]
        form = prechat.loads(qr.prechat)
        assert form is not None  # has_form
        return prechat.data_form(form, qr.display_name)

    def history_form(self, ex: Execution) -> Form:
        return Form("form", title=self._t(ex, "history"), fields=(Field("visitor", "jid-single", self._t(ex, "f_visitor")),))

    # ------------------------------------------------------------------ handlers

    async def put_queue(self, ex: Execution) -> str:
        v = ex.values
        el = etree.Element(q("queue"), {"name": v.get("name") or ""})
        for key in ("display-name", "strategy", "capacity", "idle-timeout", "offer-timeout", "max-misses", "hours", "timezone", "holidays", "skills"):
            if v.get(key) not in (None, ""):
                el.set(key, str(v[key]))
        for key in ("welcome", "offline"):
            if v.get(key):
                etree.SubElement(el, q(key)).text = v[key]
        try:
            if v.get("prechat"):  # JSON (§4.1); "{}" or {"fields": []} removes the form
                form = prechat.parse_json_text("\n".join(v["prechat"]) if isinstance(v["prechat"], list) else v["prechat"])
                el.append(prechat.definition_element(form) if form else etree.Element(q("prechat")))
            await self.cs.admin.put_queue(el)
        except StanzaError as err:
            raise FormError(None, self._why(ex, err)) from None
        return self._t(ex, "saved", queue=self.cs.queue_jid(v["name"]))

    async def delete_queue(self, ex: Execution) -> str:
        name = ex.values["name"]
        try:
            await self.cs.admin.delete_queue(name)
        except StanzaError as err:
            raise FormError("name", self._why(ex, err)) from None
        return self._t(ex, "deleted", name=name)

    async def pause(self, ex: Execution) -> str:
        async with self.cs.locked():
            await self.cs.set_paused(str(ex.requester.bare), True)
        return self._t(ex, "paused")

    async def resume(self, ex: Execution) -> str:
        async with self.cs.locked():
            await self.cs.set_paused(str(ex.requester.bare), False)
        return self._t(ex, "resumed")

    async def accept(self, ex: Execution) -> str:
        async with self.cs.locked():
            s = self._live(ex)
            await self.cs.accept(s, str(ex.requester.bare))
        return self._t(ex, "accepted")

    async def close(self, ex: Execution) -> str:
        async with self.cs.locked():
            s = self._live(ex)
            who = str(ex.requester.bare)
            await self.cs.close(s, "agent" if s.agent == who else "supervisor")
        return self._t(ex, "closed")

    async def transfer(self, ex: Execution) -> str:
        agent, queue = ex.values.get("agent"), ex.values.get("queue")
        if bool(agent) == bool(queue):
            raise FormError(None, self._t(ex, "agent_or_queue"))
        async with self.cs.locked():
            s = self._live(ex)
            try:
                await self.cs.transfer(s, str(ex.requester.bare), agent=agent or None, queue=queue or None)
            except StanzaError as err:
                raise FormError("agent" if agent else "queue", self._why(ex, err)) from None
        return self._t(ex, "transferred", to=self.cs.nick(s.queue, agent) if agent else queue)

    async def join(self, ex: Execution) -> str:
        """The pre-chat form submitted from a standard client: the chat starts as with ``<join/>``."""
        qr = self.cs.queues[ex.target.local or ""]
        v = ex.values
        x = prechat.data_form(prechat.loads(qr.prechat) or prechat.Prechat(())).with_values(
            {k: val for k, val in v.items() if k != "FORM_TYPE" and val not in (None, "", [])}
        )
        submitted = etree.fromstring(etree.tostring(x.to_element()))
        submitted.set("type", "submit")
        try:
            async with self.cs.locked():
                if self.cs.state.visitor_session(qr.name, str(ex.requester.bare)) is not None:
                    raise CsError(Condition.CONFLICT, "already_in_chat")
                kind, ident = await self.cs.relay.start(qr.name, ex.requester, None, submitted)
        except StanzaError as err:
            raise FormError(None, self._why(ex, err)) from None
        if kind == "ticket":
            return self._t(ex, "prechat_ticket", id=ident)
        return self._t(ex, "prechat_done", queue=self.cs.queue_jid(qr.name))

    def _live(self, ex: Execution) -> Any:
        s = self._session(ex.target)
        if s is None:
            raise FormError(None, self.cs.t(ex.requester, "error.chat_closed"))
        return s

    async def member(self, ex: Execution) -> str:
        v = ex.values
        qr = self.cs.queues[ex.target.local or ""]
        el = etree.Element(q("member"), {"jid": str(v["jid"]), "role": v.get("role") or "agent", "nick": v.get("nick") or "", "skills": v.get("skills") or ""})
        try:
            await self.cs.admin.set_member(qr, el)
        except StanzaError as err:
            raise FormError("jid", self._why(ex, err)) from None
        if v.get("role") == "none":
            return self._t(ex, "member_none", jid=v["jid"], queue=qr.display_name)
        return self._t(ex, "member_set", jid=v["jid"], role=v.get("role") or "agent", queue=qr.display_name)

    async def figures(self, ex: Execution) -> Result:
        fig = await self.cs.admin.figures(ex.target.local or "")
        notes = [Note(self._t(ex, "figures_line", waiting=fig.get("waiting"), active=fig.get("active"), served=fig.get("served"), wait=fig.get("average-wait")))]
        for a in fig.findall(q("agent")):
            status = self.cs.t(ex.requester, "status." + (a.get("status") or "offline"))
            notes.append(Note(self._t(ex, "figures_agent", nick=a.get("nick"), jid=a.get("jid"), status=status, load=a.get("load"), capacity=a.get("capacity"))))
        return Result(tuple(notes))

    async def history(self, ex: Execution) -> Result:
        queue = ex.target.local or ""
        visitor = ex.values.get("visitor")
        if visitor is None and not self.supervises(ex.requester, ex.target):
            raise FormError("visitor", self._t(ex, "history_one"))
        rows = await self.cs.repo.sessions(queue, str(visitor.bare) if visitor else None, limit=self.cs.options.history_limit)
        if not rows:
            return Result((Note(self._t(ex, "no_sessions")),))
        notes = []
        for s in rows:
            who = self._t(ex, "history_with", nick=self.cs.nick(s.queue, s.agent)) if s.agent else ""
            rating = self._t(ex, "history_rated", rating=s.rating) + (f" ({s.comment})" if s.comment else "") if s.rating else ""
            notes.append(Note(f"{s.id} {s.created_at:%Y-%m-%d %H:%M} {s.visitor}{who}: {s.state}{' (' + s.close_reason + ')' if s.close_reason else ''}{rating}"))
        return Result(tuple(notes))

    async def tickets(self, ex: Execution) -> Result:
        rows = await self.cs.repo.tickets(ex.target.local or "")
        if not rows:
            return Result((Note(self._t(ex, "no_tickets")),))
        return Result(tuple(Note(f"#{t.id} {t.created_at:%Y-%m-%d %H:%M} {t.visitor}: {t.body}") for t in rows))

