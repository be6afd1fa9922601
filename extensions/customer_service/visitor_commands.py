"""urn:xmppd:cs:0: a visitor's own customer-service chats and tickets as an XEP-0050 command.

``urn:xmppd:cs:0#my-tickets`` on the server domain, for every local account: the requester's
sessions in every queue (newest first: queue, state, agent's display name, opened, closed,
reason, rating) and the tickets they left while no agent was available. Only the requester's
own, never an agent's JID unless ``[cs] reveal_agent_jid`` (docs/customer-service.md §7).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xmppd.features.adhoc import Command, Execution, Field, Form, Note, Result

from .protocol import NS, stamp

if TYPE_CHECKING:
    from .service import CsService

MY_TICKETS = f"{NS}#my-tickets"
PAGE = 20  # newest sessions and tickets shown (at most [cs] history_limit)


class VisitorCommands:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    def command(self) -> Command:
        """The command on the server's own JID (the feature registers it through its context)."""
        domain = self.cs.ctx.domain
        return Command(MY_TICKETS, self.cs.tr.text(None, "adhoc.my_tickets"), self.my_tickets,
                       may_run=lambda requester, target: requester.local is not None and requester.domain == domain)

    async def my_tickets(self, ex: Execution) -> Result:
        cs, me = self.cs, str(ex.requester.bare)

        def t(key: str, /, **fields: Any) -> str:  # in the requesting session's language
            return cs.t(ex.requester, "adhoc." + key, **fields)

        limit = max(1, min(PAGE, cs.options.history_limit))
        sessions = [s for name in sorted(cs.queues) for s in await cs.repo.sessions(name, me, limit=limit)]
        sessions.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        sessions = sessions[:limit]
        tickets = await cs.repo.visitor_tickets(me, limit=limit)

        def text(var: str, value: str | None) -> Field:
            return Field(var, values=(value,) if value else ())

        rows = []
        for s in sessions:
            agent = None
            if s.agent:
                agent = cs.nick(s.queue, s.agent) + (f" ({s.agent})" if cs.options.reveal_agent_jid else "")
            rows.append((
                text("kind", t("my_chat")), text("id", s.id), Field("queue", "jid-single", values=(cs.queue_jid(s.entry),)),
                text("status", s.state), text("agent", agent), text("opened", stamp(s.created_at)),
                text("closed", stamp(s.closed_at) if s.closed_at else None), text("reason", s.close_reason),
                text("rating", str(s.rating) if s.rating is not None else None), text("text", s.comment),
            ))
        for tk in tickets:
            rows.append((
                text("kind", t("my_ticket")), text("id", f"#{tk.id}"), Field("queue", "jid-single", values=(cs.queue_jid(tk.queue),)),
                text("status", t("my_ticket_status")), text("agent", None), text("opened", stamp(tk.created_at)),
                text("closed", None), text("reason", None), text("rating", None), text("text", tk.body),
            ))
        columns = ("kind", "id", "queue", "status", "agent", "opened", "closed", "reason", "rating", "text")
        reported = tuple(Field(var, "jid-single" if var == "queue" else "text-single", t("col_" + var)) for var in columns)
        form = Form("result", t("my_tickets"), reported=reported, items=tuple(rows))
        open_now = sum(1 for s in sessions if s.state != "closed")
        note = t("my_summary", chats=len(sessions), open=open_now, tickets=len(tickets)) if rows else t("my_none")
        return Result((Note(note),), form)


__all__ = ["MY_TICKETS", "VisitorCommands"]
