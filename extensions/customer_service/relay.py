"""Messages between a visitor (on the queue JID) and their agent (on the session JID): text
commands, opening a chat or a ticket, and relaying what one side writes to the other."""
from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from xmppd.core.hooks import Routed
from xmppd.errors import Condition, StanzaError
from xmppd.jid import JID
from xmppd.xml.builder import element

from . import policy, prechat, wire
from .hours import is_open
from .protocol import AGENT_WORDS, VISITOR_WORDS, CsError, parse_command, q
from .repository import SessionRecord

if TYPE_CHECKING:
    from .service import CsService


class Relay:
    def __init__(self, cs: "CsService") -> None:
        self.cs = cs

    async def from_visitor(self, r: Routed, queue: str, body: str) -> None:
        cs = self.cs
        cs.queue(queue)  # item-not-found for an unknown queue
        visitor = str(r.from_jid.bare)
        s = cs.state.visitor_session(queue, visitor)
        command = parse_command(body, cs.prefixes, VISITOR_WORDS)
        if command is not None:
            word, rest = command
            if word in ("close", "end"):
                if s is None:
                    raise CsError(Condition.ITEM_NOT_FOUND, "no_open_chat")
                await cs.close(s, "visitor")
                return
            if word == "rate":
                score_s, _, comment = rest.partition(" ")
                if not score_s.isdigit() or not 1 <= int(score_s) <= 5:
                    await cs.message(cs.queue_jid(queue), visitor, cs.t(visitor, "visitor.rate_usage"))
                    return
                await cs.rate(visitor, queue, None, int(score_s), comment.strip())
                await cs.message(cs.queue_jid(queue), visitor, cs.t(visitor, "visitor.rated"))
                return
        if s is not None:
            s = await cs.save(s.replace(last_visitor_at=cs.dt_now()))
            extras = wire.carried(r.stanza)
            await cs.note(s, "visitor", r.from_jid.local or "", _with_links(body, extras))
            if s.state == "active" and s.agent:
                await cs.to_agent(s, s.agent, body, *extras, id=r.stanza.get("id"))
                await cs.followers.copy(s, r.from_jid.local or "visitor", body)
            return
        await self.start(queue, r.from_jid, body, prechat.x_of(r.stanza))

    async def start(self, queue: str, frm: JID, body: str | None, x: etree._Element | None) -> tuple[str, str]:
        """A visitor without an open chat asks for one (a first message, or ``<join/>`` with
        the pre-chat form ``x``): the answers are checked (a required form must come), then the
        chat opens — or, with nobody there, a ticket keeps the message and the answers.
        ``("session", id)`` or ``("ticket", id)``."""
        cs = self.cs
        qr = cs.queue(queue)
        visitor = str(frm.bare)
        online = any(cs.state.status(queue, j) in ("available", "away", "paused") for j, m in cs.members.get(queue, {}).items() if m.role == "agent")
        closed = not online or not is_open(qr.hours, cs.now(), qr.timezone, qr.holidays)
        # A required form gates chats, not the messages left while nobody serves.
        form = prechat.loads(qr.prechat)
        answers, skills = prechat.submission(form, x, qr.skills) if x is not None or not closed else ([], qr.skills)
        if closed:
            text = "\n\n".join(filter(None, [body, prechat.answers_text(answers)]))
            t = await cs.repo.add_ticket(queue, visitor, text, cs.dt_now())
            note = cs.t(visitor, "visitor.ticket", offline=qr.offline_text, id=t.id)
            await cs.message(cs.queue_jid(queue), visitor, note, element(q("ticket"), {"id": str(t.id)}))
            return "ticket", str(t.id)
        now = cs.dt_now()
        s = SessionRecord(
            id=format(cs.ctx.rng.getrandbits(48), "012x"),
            queue=queue,
            entry=queue,
            visitor=visitor,
            state="waiting",
            line_seq=cs.state.next_seq(),
            created_at=now,
            last_visitor_at=now,
            skills=skills,
            answers=prechat.answers_dumps(answers),
        )
        s = await cs.save(s)
        if answers:
            await cs.note(s, "visitor", frm.local or "", prechat.answers_text(answers))
        if body is not None:
            await cs.note(s, "visitor", frm.local or "", body)
        welcome = "\n".join(filter(None, [qr.welcome, cs.t(visitor, "visitor.commands", forms=cs.forms("close"))]))
        await cs.to_visitor(s, welcome, element(q("welcome"), {"session": s.id, "queue": cs.queue_jid(queue)}))
        await cs.dispatch(queue)
        return "session", s.id

    async def from_agent(self, r: Routed, sid: str, body: str) -> None:
        cs = self.cs
        s = cs.open.get(sid)
        if s is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "chat_closed")
        who = str(r.from_jid.bare)
        command = parse_command(body, cs.prefixes, AGENT_WORDS)
        if command is not None:
            word, rest = command
            try:
                reply = await self.agent_command(s, who, word, rest)
            except StanzaError as err:
                typed = body.strip()[: len(body.strip()) - len(rest)].strip()  # "/transfer", "cs transfer"
                reply = cs.t(who, "agent.failed", command=typed, reason=cs.error_for(who, err).text or err.condition.value)
            if reply:
                await cs.message(cs.session_jid(s), who, reply)
            return
        if s.state == "active" and who in cs.state.watchers.get(s.id, set()) and s.agent:
            # A supervisor's whisper: to the agent only, never to the visitor.
            text = cs.t(s.agent, "agent.whisper", nick=who.split("@", 1)[0], text=body)
            await cs.to_agent(s, s.agent, text, element(q("whisper"), {"session": s.id, "from": who}))
            return
        helper = s.state == "active" and who in cs.state.helpers.get(s.id, set())
        if (s.agent != who or s.state != "active") and not helper:
            raise CsError(Condition.FORBIDDEN, "not_your_chat" if s.agent != who else "accept_first", cmd=cs.prefixes[0])
        nick = cs.nick(s.queue, who)
        if s.agent and s.agent != who:
            await cs.to_agent(s, s.agent, f"{nick}: {body}")
        await cs.followers.copy(s, nick, body, skip=who)
        extras = wire.carried(r.stanza)
        await cs.note(s, "agent", nick, _with_links(body, extras))
        # A bare link stays a bare link (clients preview a body that is only the OOB URL).
        prefix = cs.options.name_prefix and body.strip() not in wire.oob_urls(extras)
        await cs.to_visitor(s, f"{nick}: {body}" if prefix else body, *extras, nick=nick, id=r.stanza.get("id"))

    async def canned(self, s: SessionRecord, who: str, name: str) -> str | None:
        """``!r <name>``: the canned reply goes to the visitor as the agent's message; without a
        known name the agent gets the list."""
        cs = self.cs
        if s.agent != who or s.state != "active":
            raise CsError(Condition.FORBIDDEN, "not_your_chat" if s.agent != who else "accept_first", cmd=cs.prefixes[0])
        text = await cs.canned.text(s.queue, who, name) if name else None
        if text is None:
            names = sorted({c.name for c in await cs.canned.visible(s.queue, who)})
            return cs.t(who, "agent.canned_list", names=", ".join(names) or "-")
        nick = cs.nick(s.queue, who)
        await cs.note(s, "agent", nick, text)
        await cs.to_visitor(s, f"{nick}: {text}" if cs.options.name_prefix else text, nick=nick)
        return None

    async def bodyless(self, r: Routed, local: str, extras: list[etree._Element]) -> None:
        """Chat states and receipts (a message without text) to the other side of an active
        chat; anything else, or a chat not active, is dropped without an error (as a client
        drops a chat state it cannot show)."""
        cs = self.cs
        who = str(r.from_jid.bare)
        if local.startswith("s-"):
            s = cs.open.get(local[2:])
            if s is not None and s.state == "active" and s.agent == who:
                await cs.to_visitor(s, None, *extras, id=r.stanza.get("id"))
            return
        s = cs.state.visitor_session(local, who)
        if s is not None and s.state == "active" and s.agent:
            await cs.to_agent(s, s.agent, None, *extras, id=r.stanza.get("id"))

    async def agent_command(self, s: SessionRecord, who: str, word: str, rest: str) -> str | None:
        cs = self.cs
        if word == "accept":
            await cs.accept(s, who)
            return None
        if word == "reject":
            await cs.reject(s, who)
            return cs.t(who, "agent.rejected")
        if word == "close":
            cs.check_handler(s, who)
            await cs.close(s, "agent")
            return None
        if word == "transfer":
            if not rest:
                return cs.t(who, "agent.transfer_usage")
            agent, queue = policy.transfer_target(rest, cs.members.get(s.queue, {}), cs.queues)
            await cs.transfer(s, who, agent=agent, queue=queue)
            return None
        if word in ("r", "canned"):
            return await self.canned(s, who, rest)
        if word in ("pause", "resume"):
            await cs.set_paused(who, word == "pause")
            return cs.t(who, "agent.paused" if word == "pause" else "agent.resumed")
        return cs.t(who, "agent.help", forms=cs.forms("help"))


def _with_links(body: str, extras: list[etree._Element]) -> str:
    """The transcript line: the text, and each link not already in it."""
    links = [u for u in wire.oob_urls(extras) if u not in body]
    return "\n".join([body, *links]) if links else body
