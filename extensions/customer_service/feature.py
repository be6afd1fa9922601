"""urn:xmppd:cs:0: customer-service routing (客服) on a service domain, after XEP-0142 and Openfire Fastpath.

Queues are JIDs on the component (``support@cs.example.com``). A visitor writes to the queue
JID only; the agent talks to a per-session JID (``s-<id>@cs.example.com``), so one agent on a
plain client handles several visitors, each in their own chat window. The visitor sees the
agent's display name (XEP-0172 nick and a body prefix), never the agent's JID.

State lives in storage (queues, members, sessions with the waiting line, transcripts,
ratings, tickets); what is only true while the server runs (agents' presence, pending offers,
the last position told to each visitor) is kept here and rebuilt at start. All changes run
under one lock, so routing decisions never interleave.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from xmppd.config import ConfigError, NonNegative, NonNegativeInt, PositiveInt
from xmppd.core import hooks as H
from xmppd.core.dispatch import IqRequest, Target
from xmppd.core.feature import Feature, hook
from xmppd.core.hooks import AccountEvent, Flow, Routed, SessionEvent
from xmppd.core.server_owned import owned_namespace
from xmppd.errors import Condition, StanzaError
from xmppd.features.disco import info_element, items_element
from xmppd.jid import JID
from xmppd.xml import ns
from xmppd.xml.attrs import int_attr, jid_attr
from xmppd.xml.builder import element, stanza, sub

from .protocol import (
    AGENT_WORDS,
    LOCALE,
    NICK_NS,
    NS,
    VISITOR_WORDS,
    CsError,
    check_queue_name,
    is_open,
    parse_command,
    parse_hours,
    q,
    stamp,
)
from .repository import (
    ROLES,
    STRATEGIES,
    CsRepository,
    MemberRecord,
    QueueRecord,
    SessionRecord,
    SqlCsRepository,
    TranscriptLine,
)

AVAILABLE_SHOWS = (None, "chat")
SUBSCRIPTION_TYPES = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")
ADHOC_NS = "http://jabber.org/protocol/commands"


@dataclass(frozen=True, slots=True)
class CsOptions:
    domain: str = ""  # "": "cs." + server.domain
    timer_interval: NonNegative = 1.0  # seconds between checks of offer and idle deadlines (0: no timer)
    reveal_agent_jid: bool = False  # true: visitors also get the agent's JID
    name_prefix: bool = True  # prefix relayed agent messages with "Nick: "
    transfer_transcript_lines: NonNegativeInt = 20  # recent lines a new agent gets on assignment or transfer
    history_limit: PositiveInt = 50  # most sessions returned by one history query
    # Forms a text command may take, the first shown in texts: "!close", "/close", "cs close".
    command_prefixes: list[str] = field(default_factory=lambda: ["!", "/", "cs "])

    def __post_init__(self) -> None:
        if not self.command_prefixes or any(not p.strip() or len(p) > 16 for p in self.command_prefixes):
            raise ConfigError("cs.command_prefixes must list 1 or more prefixes of 1-16 characters, not all spaces")


@dataclass(slots=True)
class Agent:
    """What is only true while the server runs: presence per queue, pause, misses, idleness."""

    jid: str
    presence: dict[str, dict[str, str | None]] = field(default_factory=dict)  # queue -> full JID -> show
    paused: bool = False
    misses: int = 0
    idle_since: float = 0.0  # last assignment, or when they came online

    def status(self, queue: str) -> str:
        shows = self.presence.get(queue)
        if not shows:
            return "offline"
        if self.paused:
            return "paused"
        return "available" if any(s in AVAILABLE_SHOWS for s in shows.values()) else "away"

    @property
    def online(self) -> bool:
        return any(self.presence.values())


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class CustomerService(Feature):
    name = "cs"
    implements = ()
    disco_features = (NS,)
    depends = ("disco", "adhoc", "presence")
    Options = CsOptions
    migrations = str(Path(__file__).parent / "migrations")
    # Notifications in messages (docs/customer-service.md §4) are the server's alone: a client's
    # copies are stripped, so no visitor fakes an agent's arrival or a closed chat, no agent an offer.
    server_owned = owned_namespace(NS)
    # session_jid's local part: no account may pass for a customer-service session.
    reserved_usernames = (r"s-[0-9a-f]+",)

    repo: CsRepository

    async def setup(self) -> None:
        self.domain = self.options.domain or f"cs.{self.ctx.domain}"
        self.tr = self.ctx.translator(LOCALE)
        self.prefixes = tuple(self.options.command_prefixes)
        if not getattr(self, "repo", None):
            self.repo = SqlCsRepository(self.ctx.db, self.ctx.outbox)
        self.lock = asyncio.Lock()
        # Presence stanzas whose answers come back to us (subscriptions, probes) wait for the
        # lock's release: the router delivers synchronously, so sending them under it would deadlock.
        self._after: list[Callable[[], Awaitable[None]]] = []
        self.queues: dict[str, QueueRecord] = {}
        self.members: dict[str, dict[str, MemberRecord]] = {}
        self.open: dict[str, SessionRecord] = {}  # open sessions by id
        self.by_visitor: dict[tuple[str, str], str] = {}  # (entry queue, visitor) -> session id
        self.agents: dict[str, Agent] = {}
        self.offers: dict[str, float] = {}  # session id -> deadline
        self.tried: dict[str, set[str]] = {}  # session id -> agents offered it already
        self.told: dict[str, int] = {}  # session id -> last position sent
        self.rr: dict[str, str] = {}  # queue -> last agent served (round-robin)
        self._seq = 0
        await self._load()
        self.ctx.add_service(self.domain, self)
        self._register()
        self.ctx.add_metrics(self._metrics)
        from .api import operations

        self.ctx.add_api(operations(self))  # /api/v1/cs (docs/api.md)
        if self.ctx.has_feature("disco"):
            self.ctx.on_teardown(self.ctx.feature("disco").add_item(self.domain, self.tr.text(None, "disco.component")))
        if self.options.timer_interval > 0:
            self.ctx.spawn(self._timer_loop(), name="cs-timers")
        if self.ctx.has_feature("adhoc"):
            from .commands import CsCommands

            CsCommands(self).register(self.ctx.feature("adhoc"))
            from .visitor_commands import VisitorCommands

            VisitorCommands(self).register(self.ctx.feature("adhoc"))

    def _metrics(self) -> list[Any]:
        """/metrics: chats waiting (or being offered) and active, by queue (xmppd/metrics.py)."""
        from prometheus_client.core import GaugeMetricFamily

        waiting = GaugeMetricFamily("xmppd_cs_waiting", "Customer-service chats waiting for an agent, by queue", labels=["queue"])
        active = GaugeMetricFamily("xmppd_cs_active", "Customer-service chats with an agent, by queue", labels=["queue"])
        counts = {q: [0, 0] for q in self.queues}
        for s in self.open.values():
            c = counts.setdefault(s.queue, [0, 0])
            if s.state in ("waiting", "offered"):
                c[0] += 1
            elif s.state == "active":
                c[1] += 1
        for queue, (w, a) in sorted(counts.items()):
            waiting.add_metric([queue], w)
            active.add_metric([queue], a)
        return [waiting, active]

    async def _load(self) -> None:
        """Rebuild queues, members, open sessions and lines from storage; arm nothing stale."""
        for qr in await self.repo.list_queues():
            self.queues[qr.name] = qr
            self.members[qr.name] = {}
        for m in await self.repo.members():
            self.members.setdefault(m.queue, {})[m.jid] = m
        for s in await self.repo.open_sessions():
            if s.state == "offered":  # an offer does not survive a restart: back in line, same place
                s = s.replace(state="waiting", agent=None)
                await self.repo.save_session(s)
            self._index(s)
            self._seq = max(self._seq, s.line_seq)

    def _register(self) -> None:
        add = self.ctx.add_iq_handler
        d = self.domain
        both = (Target.HOST, Target.BARE)
        table: list[tuple[str, str, Callable[[IqRequest], Awaitable[Any]], tuple[Target, ...]]] = [
            ("get", f"{{{ns.DISCO_INFO}}}query", self.iq_disco_info, both),
            ("get", f"{{{ns.DISCO_ITEMS}}}query", self.iq_disco_items, both),
            ("set", q("queue"), self.iq_put_queue, (Target.HOST,)),
            ("set", q("delete-queue"), self.iq_delete_queue, (Target.HOST,)),
            ("get", q("queues"), self.iq_queues, (Target.HOST,)),
            ("set", q("member"), self.iq_member, (Target.BARE,)),
            ("get", q("members"), self.iq_members, (Target.BARE,)),
            ("set", q("accept"), self.iq_accept, both),
            ("set", q("reject"), self.iq_reject, both),
            ("set", q("transfer"), self.iq_transfer, both),
            ("set", q("close"), self.iq_close, both),
            ("set", q("rate"), self.iq_rate, both),
            ("set", q("pause"), self.iq_pause, both),
            ("set", q("resume"), self.iq_resume, both),
            ("get", q("figures"), self.iq_figures, (Target.BARE,)),
            ("get", q("history"), self.iq_history, (Target.BARE,)),
            ("get", q("transcript"), self.iq_transcript, both),
            ("get", q("tickets"), self.iq_tickets, (Target.BARE,)),
        ]
        for typ, qname, fn, targets in table:
            for t in targets:
                add(typ, qname, fn, target=t, domain=d)

    # ================================================================== texts

    def t(self, to: JID | str | None, key: str, /, **fields: Any) -> str:
        """Text ``key`` in the language of recipient ``to`` (``{cmd}``: the command prefix shown)."""
        return self.tr(to, key, cmd=self.prefixes[0], **fields)

    def forms(self, word: str) -> str:
        """Every form of command ``word`` ("!close, /close, cs close")."""
        return ", ".join(p + word for p in self.prefixes)

    def error_for(self, who: JID | str, err: StanzaError) -> StanzaError:
        """``err`` with its text in ``who``'s language (as the router tells iq errors)."""
        return self.ctx.languages.localise(err, who)

    # ================================================================== helpers

    def now(self) -> float:
        return self.ctx.clock.now()

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the lock; then, released, run what was deferred under it (``self._after``)."""
        async with self.lock:
            try:
                yield
            finally:
                after, self._after = self._after, []
        for fn in after:
            await fn()

    def _index(self, s: SessionRecord) -> None:
        self.open[s.id] = s
        self.by_visitor[(s.entry, s.visitor)] = s.id

    def _unindex(self, s: SessionRecord) -> None:
        self.open.pop(s.id, None)
        if self.by_visitor.get((s.entry, s.visitor)) == s.id:
            del self.by_visitor[(s.entry, s.visitor)]
        self.offers.pop(s.id, None)
        self.tried.pop(s.id, None)
        self.told.pop(s.id, None)

    async def _save(self, s: SessionRecord) -> SessionRecord:
        await self.repo.save_session(s)
        if s.state == "closed":
            self._unindex(s)
        else:
            self._index(s)
        return s

    def queue_jid(self, name: str) -> str:
        return f"{name}@{self.domain}"

    def session_jid(self, s: SessionRecord) -> str:
        return f"s-{s.id}@{self.domain}"

    def role(self, queue: str, jid: JID | str) -> str | None:
        m = self.members.get(queue, {}).get(str(jid.bare) if isinstance(jid, JID) else jid)
        return m.role if m else None

    def nick(self, queue: str, agent: str) -> str:
        m = self.members.get(queue, {}).get(agent)
        return (m.nick if m and m.nick else None) or agent.split("@", 1)[0]

    def agent(self, jid: str) -> Agent:
        a = self.agents.get(jid)
        if a is None:
            a = self.agents[jid] = Agent(jid, idle_since=self.now())
        return a

    def load(self, agent: str) -> int:
        return sum(1 for s in self.open.values() if s.agent == agent and s.state in ("offered", "active"))

    def line(self, queue: str) -> list[SessionRecord]:
        """Sessions waiting (or being offered) in ``queue``, first come first served."""
        return sorted((s for s in self.open.values() if s.queue == queue and s.state in ("waiting", "offered")), key=lambda s: (s.line_seq, s.id))

    def _next_seq(self) -> int:
        self._seq = max(self._seq + 1, int(self.now() * 1000))
        return self._seq

    def _queue(self, name: str | None) -> QueueRecord:
        qr = self.queues.get(name or "")
        if qr is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_queue", name=repr(name), domain=self.domain)
        return qr

    async def _message(self, frm: str, to: str, body: str | None, *payloads: etree._Element, nick: str | None = None) -> None:
        st = stanza("message", to=to, frm=frm, type="chat")
        if body is not None:
            sub(st, f"{{{ns.CLIENT}}}body", text=body)
        if nick:
            sub(st, f"{{{NICK_NS}}}nick", text=nick)
        for p in payloads:
            st.append(p)
        await self.ctx.send(st)

    async def to_visitor(self, s: SessionRecord, body: str | None, *payloads: etree._Element, nick: str | None = None) -> None:
        await self._message(self.queue_jid(s.entry), s.visitor, body, *payloads, nick=nick)

    async def to_visitor_t(self, s: SessionRecord, key: str, *payloads: etree._Element, note: bool = False, **fields: Any) -> None:
        """Text ``key`` to the visitor in their language (and into the transcript when ``note``)."""
        text = self.t(s.visitor, key, **fields)
        if note:
            await self.note(s, "system", "", text)
        await self.to_visitor(s, text, *payloads)

    async def to_agent(self, s: SessionRecord, agent: str, body: str, *payloads: etree._Element) -> None:
        await self._message(self.session_jid(s), agent, body, *payloads)

    async def note(self, s: SessionRecord, role: str, nick: str, body: str) -> None:
        await self.repo.add_line(TranscriptLine(s.id, _dt(self.now()), role, nick, body))

    # ================================================================== the service

    async def receive(self, r: Routed) -> None:
        to = r.to
        assert to is not None
        if r.kind == "iq":
            await self.ctx.router.dispatch_iq(r, Target.HOST if to.local is None else Target.BARE)
            return
        if r.kind == "presence":
            typ = r.stanza.get("type")
            if typ in SUBSCRIPTION_TYPES or typ == "probe":
                await self._subscription(r, typ)
                return
            async with self.locked():
                await self._presence(r)
            return
        typ = r.stanza.get("type") or "normal"
        if typ in ("error", "groupchat", "headline"):
            return
        body = r.stanza.findtext(f"{{{ns.CLIENT}}}body")
        if body is None:
            return  # chat states and receipts are not relayed
        try:
            async with self.locked():
                if to.local is None:
                    raise CsError(Condition.SERVICE_UNAVAILABLE, "write_to_queue", domain=self.domain)
                if to.local.startswith("s-"):
                    await self._from_agent(r, to.local[2:], body)
                else:
                    await self._from_visitor(r, to.local, body)
        except StanzaError as err:
            self.ctx.router.bounce(r, err)  # told in the sender's language

    # ------------------------------------------------------------------ subscriptions (RFC 6121 §3)

    def _follows(self, to: JID, who: str) -> bool:
        """Whether ``who`` may subscribe to ``to``: an agent of that queue, or of any queue for
        the component itself. Queue presence is only for the agents who serve the queue."""
        if to.local is None:
            return any(ms.get(who) is not None and ms[who].role == "agent" for ms in self.members.values())
        return to.local in self.queues and self.role(to.local, who) == "agent"

    async def _subscription(self, r: Routed, typ: str) -> None:
        """An agent's subscribe is granted and returned: the service subscribes back, approved
        in the agent's name (their request is their consent), so the agent's server broadcasts
        their ordinary presence to the queue. Anyone else is refused with ``unsubscribed``."""
        to = r.to
        assert to is not None
        me = str(to.bare)
        who = str(r.from_jid.bare)
        if typ == "subscribe":
            if not self._follows(to, who):
                await self.ctx.send(stanza("presence", frm=me, to=who, type="unsubscribed"))
                return
            await self.ctx.send(stanza("presence", frm=me, to=who, type="subscribed"))
            await self.ctx.send(stanza("presence", frm=me, to=who))
            await self.watch(who, me)
        elif typ == "probe" and self._follows(to, who):
            await self.ctx.send(stanza("presence", frm=me, to=who))
        # subscribed/unsubscribe/unsubscribed: the agent's server starts or stops the broadcast

    async def watch(self, who: str, me: str) -> None:
        """Subscribe ``me`` (a queue JID or the component) to agent ``who``'s presence, approved
        in the agent's name; their current presence arrives at once. Call without the lock."""
        await self.ctx.feature("presence").preapprove(JID.parse(who), JID.parse(me))
        await self.ctx.send(stanza("presence", frm=me, to=who, type="subscribe"))

    async def track(self, who: str) -> None:
        """An agent paused or resumed from a standard client (ad-hoc, a text command): follow
        their ordinary presence through the component, and learn it now. Call without the lock."""
        a = self.agents.get(who)
        if a is not None and a.online:
            return
        await self.watch(who, self.domain)
        a = self.agents.get(who)
        if a is None or not a.online:
            await self.ctx.send(stanza("presence", frm=self.domain, to=who, type="probe"))

    async def release(self, who: str, me: str) -> None:
        """``who`` no longer serves ``me``: both subscriptions end. Call without the lock."""
        await self.ctx.send(stanza("presence", frm=me, to=who, type="unsubscribed"))
        await self.ctx.send(stanza("presence", frm=me, to=who, type="unsubscribe"))

    # ------------------------------------------------------------------ presence

    async def _presence(self, r: Routed) -> None:
        to = r.to
        assert to is not None
        typ = r.stanza.get("type")
        if typ not in (None, "unavailable") or (to.local or "").startswith("s-"):
            return
        who = str(r.from_jid.bare)
        full = str(r.from_jid)
        if to.local is None:
            queues = [n for n, ms in self.members.items() if ms.get(who) and ms[who].role == "agent"]
        elif self.role(to.local, who) == "agent":
            queues = [to.local]
        else:
            return
        if not queues:
            return
        agent = self.agent(who)
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
            agent.idle_since = self.now()
        if not agent.online and was_online:
            await self._agent_gone(who)
        for name in queues:
            self._forget_tries()
            await self.dispatch(name)

    @classmethod
    async def delete_account_txn(cls, conn: Any, deletion: Any) -> None:
        """A deleted account's memberships go with it: a namesake is nobody's agent or supervisor."""
        await SqlCsRepository.forget_member_txn(conn, deletion.jid)

    @hook(H.ACCOUNT_DELETED)
    async def on_account_deleted(self, ev: AccountEvent) -> Flow:
        key = str(ev.jid)
        async with self.lock:
            queues = [name for name, members in self.members.items() if members.pop(key, None) is not None]
            self.agents.pop(key, None)
            for name in queues:
                await self.repo.remove_member(name, key)  # a no-op in SQL (the deletion did it)
                await self.dispatch(name)
        return Flow.CONTINUE

    @hook(H.SESSION_CLOSED)
    async def on_session_closed(self, ev: SessionEvent) -> Flow:
        jid = ev.session.jid
        if jid is None:
            return Flow.CONTINUE
        agent = self.agents.get(str(jid.bare))
        if agent is None or not agent.online:
            return Flow.CONTINUE
        full = str(jid)
        async with self.locked():
            touched = [n for n, shows in agent.presence.items() if full in shows]
            for n in touched:
                del agent.presence[n][full]
                if not agent.presence[n]:
                    del agent.presence[n]
            if touched and not agent.online:
                await self._agent_gone(agent.jid)
        return Flow.CONTINUE

    async def _agent_gone(self, agent: str) -> None:
        """An agent dropped: their sessions go back to the head of their lines, visitors told."""
        if self.ctx.lifecycle.stopping:
            return  # a shutdown is no dropout: the sessions stay with their agents across a restart
        mine = sorted((s for s in self.open.values() if s.agent == agent), key=lambda s: s.line_seq)
        queues = set()
        for s in reversed(mine):  # the oldest ends up first
            was_active = s.state == "active"
            s = await self._save(s.replace(state="waiting", agent=None, line_seq=self._head_seq(s.queue)))
            self.offers.pop(s.id, None)
            queues.add(s.queue)
            if was_active:
                await self.to_visitor_t(s, "visitor.requeued", element(q("requeued"), {"session": s.id}), note=True)
        for name in sorted(queues):
            await self.dispatch(name)

    def _head_seq(self, queue: str) -> int:
        line = self.line(queue)
        return (line[0].line_seq - 1) if line else self._next_seq()

    def _forget_tries(self) -> None:
        """A new chance for every waiting visitor: someone came online or freed a seat."""
        self.tried.clear()

    # ------------------------------------------------------------------ routing

    def eligible(self, queue: str, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
        qr = self.queues[queue]
        out = []
        for jid, m in self.members.get(queue, {}).items():
            if m.role != "agent" or jid in exclude:
                continue
            a = self.agents.get(jid)
            if a is None or a.status(queue) != "available":
                continue
            if self.load(jid) >= qr.capacity:
                continue
            if qr.offer_timeout and any(s.agent == jid and s.state == "offered" for s in self.open.values()):
                continue
            out.append(jid)
        return sorted(out)

    def pick(self, queue: str, exclude: set[str] | frozenset[str] = frozenset()) -> str | None:
        """The agent the queue's strategy chooses among those who can take one more session."""
        candidates = self.eligible(queue, exclude)
        if not candidates:
            return None
        strategy = self.queues[queue].strategy
        if strategy == "least-busy":
            return min(candidates, key=lambda j: (self.load(j), self.agents[j].idle_since, j))
        if strategy == "longest-idle":
            return min(candidates, key=lambda j: (self.agents[j].idle_since, j))
        last = self.rr.get(queue)
        after = [j for j in candidates if last is None or j > last]
        return (after or candidates)[0]

    async def dispatch(self, queue: str) -> None:
        """Serve the line in order while agents have room; then tell the rest their places."""
        if queue not in self.queues:
            return
        for s in self.line(queue):
            if s.state != "waiting":
                continue
            tried = self.tried.get(s.id, set())
            agent = self.pick(queue, tried)
            if agent is None:
                if tried:
                    continue  # everyone free has turned this one down: the next visitor may fit
                break  # first come, first served: nobody behind the head jumps the line
            if self.queues[queue].offer_timeout:
                await self._offer(s, agent)
            else:
                await self._assign(s, agent)
        await self._positions(queue)

    async def _positions(self, queue: str) -> None:
        for n, s in enumerate(self.line(queue), 1):
            if s.state == "waiting" and self.told.get(s.id) != n:
                self.told[s.id] = n
                await self.to_visitor_t(s, "visitor.position", element(q("position"), {"session": s.id, "n": str(n)}), n=n)

    async def _offer(self, s: SessionRecord, agent: str) -> None:
        qr = self.queues[s.queue]
        s = await self._save(s.replace(state="offered", agent=agent))
        self.offers[s.id] = self.now() + qr.offer_timeout
        self.tried.setdefault(s.id, set()).add(agent)
        self.told.pop(s.id, None)
        attrs = {"session": s.id, "queue": self.queue_jid(s.queue), "visitor": s.visitor, "timeout": str(qr.offer_timeout)}
        text = self.t(agent, "agent.offer", visitor=s.visitor, queue=qr.display_name, seconds=qr.offer_timeout)
        await self.to_agent(s, agent, text, element(q("offer"), attrs))

    async def _assign(self, s: SessionRecord, agent: str, *, transferred_by: str | None = None) -> SessionRecord:
        now = self.now()
        # The idle clock starts when the agent arrives: time spent in line is not silence.
        s = await self._save(s.replace(state="active", agent=agent, assigned_at=s.assigned_at or _dt(now), last_visitor_at=_dt(now)))
        self.offers.pop(s.id, None)
        self.told.pop(s.id, None)
        a = self.agent(agent)
        a.idle_since = now
        a.misses = 0
        self.rr[s.queue] = agent
        nick = self.nick(s.queue, agent)
        await self._brief(s, agent, transferred_by)
        attrs = {"session": s.id, "nick": nick}
        if self.options.reveal_agent_jid:
            attrs["jid"] = agent
        text = self.t(s.visitor, "visitor.assigned", nick=nick)
        await self.note(s, "system", "", text)
        await self.to_visitor(s, text, element(q("agent"), attrs), nick=nick)
        return s

    async def _brief(self, s: SessionRecord, agent: str, transferred_by: str | None) -> None:
        """The agent's window opens: who, where, and the recent transcript."""
        qr = self.queues[s.queue]
        lines = await self.repo.transcript(s.id, last=self.options.transfer_transcript_lines)
        attrs = {"session": s.id, "queue": self.queue_jid(s.queue), "visitor": s.visitor}
        if transferred_by:
            attrs["from"] = transferred_by
        assigned = element(q("assigned"), attrs)
        tr = sub(assigned, q("transcript"), {"session": s.id})
        for ln in lines:
            sub(tr, q("line"), {"role": ln.role, "nick": ln.nick, "at": stamp(ln.at)}, text=ln.body)
        if transferred_by:
            head = self.t(agent, "agent.brief_transferred", visitor=s.visitor, queue=qr.display_name, by=transferred_by)
        else:
            head = self.t(agent, "agent.brief", visitor=s.visitor, queue=qr.display_name)
        recent = "\n".join(f"[{ln.role}{' ' + ln.nick if ln.nick else ''}] {ln.body}" for ln in lines)
        help_ = self.t(agent, "agent.brief_help")
        await self.to_agent(s, agent, "\n".join(filter(None, [head, recent, help_])), assigned)

    # ------------------------------------------------------------------ messages

    async def _from_visitor(self, r: Routed, queue: str, body: str) -> None:
        qr = self._queue(queue)
        visitor = str(r.from_jid.bare)
        sid = self.by_visitor.get((queue, visitor))
        s = self.open.get(sid) if sid else None
        command = parse_command(body, self.prefixes, VISITOR_WORDS)
        if command is not None:
            word, rest = command
            if word in ("close", "end"):
                if s is None:
                    raise CsError(Condition.ITEM_NOT_FOUND, "no_open_chat")
                await self.close(s, "visitor")
                return
            if word == "rate":
                score_s, _, comment = rest.partition(" ")
                if not score_s.isdigit() or not 1 <= int(score_s) <= 5:
                    await self._message(self.queue_jid(queue), visitor, self.t(visitor, "visitor.rate_usage"))
                    return
                await self.rate(visitor, queue, None, int(score_s), comment.strip())
                await self._message(self.queue_jid(queue), visitor, self.t(visitor, "visitor.rated"))
                return
        if s is not None:
            s = await self._save(s.replace(last_visitor_at=_dt(self.now())))
            await self.note(s, "visitor", r.from_jid.local or "", body)
            if s.state == "active" and s.agent:
                await self.to_agent(s, s.agent, body)
            return
        online = any(self.agents.get(j) and self.agents[j].status(queue) in ("available", "away", "paused") for j, m in self.members.get(queue, {}).items() if m.role == "agent")
        if not online or not is_open(qr.hours, self.now()):
            t = await self.repo.add_ticket(queue, visitor, body, _dt(self.now()))
            text = self.t(visitor, "visitor.ticket", offline=qr.offline_text, id=t.id)
            await self._message(self.queue_jid(queue), visitor, text, element(q("ticket"), {"id": str(t.id)}))
            return
        now = _dt(self.now())
        s = SessionRecord(
            id=format(self.ctx.rng.getrandbits(48), "012x"),
            queue=queue,
            entry=queue,
            visitor=visitor,
            state="waiting",
            line_seq=self._next_seq(),
            created_at=now,
            last_visitor_at=now,
        )
        s = await self._save(s)
        await self.note(s, "visitor", r.from_jid.local or "", body)
        welcome = "\n".join(filter(None, [qr.welcome, self.t(visitor, "visitor.commands", forms=self.forms("close"))]))
        await self.to_visitor(s, welcome, element(q("welcome"), {"session": s.id, "queue": self.queue_jid(queue)}))
        await self.dispatch(queue)

    async def _from_agent(self, r: Routed, sid: str, body: str) -> None:
        s = self.open.get(sid)
        if s is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "chat_closed")
        who = str(r.from_jid.bare)
        command = parse_command(body, self.prefixes, AGENT_WORDS)
        if command is not None:
            word, rest = command
            try:
                reply = await self._agent_command(s, who, word, rest)
            except StanzaError as err:
                typed = body.strip()[: len(body.strip()) - len(rest)].strip()  # "/transfer", "cs transfer"
                reply = self.t(who, "agent.failed", command=typed, reason=self.error_for(who, err).text or err.condition.value)
            if reply:
                await self._message(self.session_jid(s), who, reply)
            return
        if s.agent != who or s.state != "active":
            raise CsError(Condition.FORBIDDEN, "not_your_chat" if s.agent != who else "accept_first", cmd=self.prefixes[0])
        nick = self.nick(s.queue, who)
        await self.note(s, "agent", nick, body)
        await self.to_visitor(s, f"{nick}: {body}" if self.options.name_prefix else body, nick=nick)

    async def _agent_command(self, s: SessionRecord, who: str, word: str, rest: str) -> str | None:
        if word == "accept":
            await self.accept(s, who)
            return None
        if word == "reject":
            await self.reject(s, who)
            return self.t(who, "agent.rejected")
        if word == "close":
            self._check_handler(s, who)
            await self.close(s, "agent")
            return None
        if word == "transfer":
            if not rest:
                return self.t(who, "agent.transfer_usage")
            agent, queue = self._transfer_target(s, rest)
            await self.transfer(s, who, agent=agent, queue=queue)
            return None
        if word in ("pause", "resume"):
            await self.set_paused(who, word == "pause")
            return self.t(who, "agent.paused" if word == "pause" else "agent.resumed")
        return self.t(who, "agent.help", forms=self.forms("help"))

    def _transfer_target(self, s: SessionRecord, text: str) -> tuple[str | None, str | None]:
        if text.startswith("queue:"):
            return None, text[6:]
        if "@" in text:
            return text, None
        for jid, m in self.members.get(s.queue, {}).items():
            if m.role == "agent" and (m.nick == text or jid.split("@", 1)[0] == text):
                return jid, None
        if text in self.queues:
            return None, text
        raise CsError(Condition.ITEM_NOT_FOUND, "no_such_target", name=repr(text))

    # ------------------------------------------------------------------ actions

    def _check_handler(self, s: SessionRecord, who: str) -> None:
        """The session's agent or a supervisor of its queue."""
        if s.agent == who and s.state == "active":
            return
        if self.role(s.queue, who) == "supervisor":
            return
        raise CsError(Condition.FORBIDDEN, "not_handler")

    async def accept(self, s: SessionRecord, who: str) -> None:
        if s.state != "offered" or s.agent != who:
            raise CsError(Condition.FORBIDDEN if s.agent != who else Condition.UNEXPECTED_REQUEST, "not_offered")
        await self._assign(s, who)
        await self._positions(s.queue)

    async def reject(self, s: SessionRecord, who: str) -> None:
        if s.state != "offered" or s.agent != who:
            raise CsError(Condition.FORBIDDEN, "not_offered")
        await self._save(s.replace(state="waiting", agent=None))
        self.offers.pop(s.id, None)
        await self.dispatch(s.queue)

    async def _missed(self, s: SessionRecord) -> None:
        """Openfire Fastpath: an unanswered offer moves on; repeated misses pause the agent."""
        agent = s.agent
        assert agent is not None
        self.offers.pop(s.id, None)
        s = await self._save(s.replace(state="waiting", agent=None))
        await self.to_agent(s, agent, self.t(agent, "agent.revoked"), element(q("revoked"), {"session": s.id}))
        a = self.agent(agent)
        a.misses += 1
        qr = self.queues.get(s.queue)
        if qr and qr.max_misses and a.misses >= qr.max_misses and not a.paused:
            a.paused = True
            await self._message(
                self.domain, agent, self.t(agent, "agent.auto_paused", misses=a.misses),
                element(q("paused"), {"misses": str(a.misses)}),
            )
        await self.dispatch(s.queue)

    async def transfer(self, s: SessionRecord, who: str, *, agent: str | None, queue: str | None) -> None:
        self._check_handler(s, who)
        if (agent is None) == (queue is None):
            raise CsError(Condition.BAD_REQUEST, "transfer_one")
        old = s.agent
        if agent is not None:
            try:
                agent = str(JID.parse(agent).bare)
            except ValueError:
                raise CsError(Condition.JID_MALFORMED, "agent_malformed") from None
            if self.role(s.queue, agent) != "agent":
                raise CsError(Condition.ITEM_NOT_FOUND, "not_an_agent", agent=agent)
            if agent == old:
                raise CsError(Condition.CONFLICT, "same_agent")
            a = self.agents.get(agent)
            if a is None or a.status(s.queue) != "available":
                raise CsError(Condition.RECIPIENT_UNAVAILABLE, "unavailable", agent=agent)
            nick = self.nick(s.queue, agent)
            if old:
                await self.to_agent(s, old, self.t(old, "agent.transferred_agent", nick=nick), element(q("closed"), {"session": s.id, "reason": "transferred"}))
            await self.to_visitor_t(s, "visitor.transfer_agent", note=True, nick=nick)
            await self._assign(s, agent, transferred_by=old or who)
        else:
            target = self._queue(queue)
            if old:
                text = self.t(old, "agent.transferred_queue", queue=target.display_name)
                await self.to_agent(s, old, text, element(q("closed"), {"session": s.id, "reason": "transferred"}))
            await self.to_visitor_t(s, "visitor.transfer_queue", note=True, queue=target.display_name)
            s = await self._save(s.replace(queue=target.name, state="waiting", agent=None, line_seq=self._head_seq(target.name)))
            self.tried.pop(s.id, None)
            await self.dispatch(target.name)
        if old:
            for name in self.queues_of(old):
                await self.dispatch(name)

    def queues_of(self, agent: str) -> list[str]:
        return sorted(n for n, ms in self.members.items() if agent in ms)

    async def close(self, s: SessionRecord, reason: str) -> None:
        agent = s.agent if s.state in ("active", "offered") else None
        s = await self._save(s.replace(state="closed", closed_at=_dt(self.now()), close_reason=reason))
        text = self.t(s.visitor, {"idle": "visitor.closed_idle", "agent": "visitor.closed_agent"}.get(reason, "visitor.closed"))
        await self.note(s, "system", "", text)
        await self.to_visitor(s, self.t(s.visitor, "visitor.rate_invite", closed=text), element(q("closed"), {"session": s.id, "reason": reason}))
        if agent:
            why = self.t(agent, "reason." + reason)
            await self.to_agent(s, agent, self.t(agent, "agent.closed", reason=why), element(q("closed"), {"session": s.id, "reason": reason}))
            self._forget_tries()
            for name in self.queues_of(agent):
                await self.dispatch(name)
        await self.dispatch(s.queue)

    async def rate(self, visitor: str, entry: str | None, sid: str | None, score: int, comment: str) -> None:
        if sid is not None:
            s = await self.repo.get_session(sid)
            if s is None or s.visitor != visitor:
                raise CsError(Condition.FORBIDDEN if s else Condition.ITEM_NOT_FOUND, "rate_own")
        else:
            if entry is None:
                raise CsError(Condition.BAD_REQUEST, "rate_where")
            self._queue(entry)
            # A transfer may have moved the chat to another queue: the visitor knows the entry JID.
            recent = [x for n in self.queues for x in await self.repo.sessions(n, visitor, limit=5) if x.entry == entry and x.state == "closed"]
            if not recent:
                raise CsError(Condition.ITEM_NOT_FOUND, "nothing_to_rate")
            s = max(recent, key=lambda x: x.closed_at or x.created_at)
        if s.state != "closed":
            raise CsError(Condition.UNEXPECTED_REQUEST, "rate_open")
        if not await self.repo.rate(s.id, score, comment):
            raise CsError(Condition.CONFLICT, "already_rated")

    async def set_paused(self, who: str, paused: bool) -> None:
        if not any(m.get(who) and m[who].role == "agent" for m in self.members.values()):
            raise CsError(Condition.FORBIDDEN, "agents_only")
        a = self.agent(who)
        a.paused = paused
        if not a.online:  # never announced to us: follow their ordinary presence from now on
            self._after.append(lambda: self.track(who))
        if not paused:
            a.misses = 0
            self._forget_tries()
            for name in self.queues_of(who):
                await self.dispatch(name)

    # ------------------------------------------------------------------ timers

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.timer_interval)
            try:
                await self.run_timers()
            except Exception:
                self.log.exception("customer-service timers failed")

    async def run_timers(self) -> None:
        """Offer timeouts and idle visitors, judged on the injected clock."""
        now = self.now()
        async with self.locked():
            for sid, deadline in sorted(self.offers.items(), key=lambda kv: kv[1]):
                s = self.open.get(sid)
                if s is not None and s.state == "offered" and deadline <= now:
                    await self._missed(s)
            for sid in list(self.open):
                s = self.open.get(sid)
                qr = self.queues.get(s.queue) if s else None
                if s and qr and s.state == "active" and qr.idle_timeout and now - s.last_visitor_at.timestamp() >= qr.idle_timeout:
                    await self.close(s, "idle")

    # ================================================================== iq handlers

    def _session_of(self, req: IqRequest) -> SessionRecord:
        sid = req.payload.get("session")
        if sid is None and req.to.local and req.to.local.startswith("s-"):
            sid = req.to.local[2:]
        if sid is None and req.to.local:
            sid = self.by_visitor.get((req.to.local, str(req.from_jid.bare)))
            if sid is None:
                raise CsError(Condition.ITEM_NOT_FOUND, "no_open_chat")
        if sid is None:
            raise CsError(Condition.BAD_REQUEST, "name_session")
        s = self.open.get(sid)
        if s is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_open_session", id=sid)
        return s

    def _require_admin(self, req: IqRequest) -> None:
        if not self.ctx.is_admin(req.from_jid):
            raise CsError(Condition.FORBIDDEN, "admins_only")

    def _require_role(self, req: IqRequest, queue: str, *roles: str) -> None:
        if self.ctx.is_admin(req.from_jid) and "supervisor" in roles:
            return
        if self.role(queue, req.from_jid) not in roles:
            raise CsError(Condition.FORBIDDEN, "only_" + "_".join(roles))

    def _queue_of(self, req: IqRequest) -> QueueRecord:
        local = req.to.local
        if local is None or local.startswith("s-"):
            raise CsError(Condition.BAD_REQUEST, "to_queue")
        return self._queue(local)

    async def iq_disco_info(self, req: IqRequest) -> etree._Element:
        node = req.payload.get("node")
        if node:
            return await self._disco_node(req, node, ns.DISCO_INFO)
        out = element(f"{{{ns.DISCO_INFO}}}query", default_ns=ns.DISCO_INFO)
        local = req.to.local
        if local is None:
            sub(out, f"{{{ns.DISCO_INFO}}}identity", {"category": "component", "type": "workgroup", "name": self.t(req.from_jid, "disco.component")})
        else:
            qr = self._queue(local) if not local.startswith("s-") else None
            if qr is None and local[2:] not in self.open:
                raise CsError(Condition.ITEM_NOT_FOUND, "no_session")
            name = qr.display_name if qr else self.t(req.from_jid, "disco.chat")
            sub(out, f"{{{ns.DISCO_INFO}}}identity", {"category": "client", "type": "bot", "name": name})
        for feat in (ns.DISCO_INFO, ns.DISCO_ITEMS, NS):
            sub(out, f"{{{ns.DISCO_INFO}}}feature", {"var": feat})
        return out

    async def _disco_node(self, req: IqRequest, node: str, which: str) -> etree._Element:
        """XEP-0050 discovery on our JIDs: the command list and the command nodes."""
        if not self.ctx.has_feature("adhoc"):
            raise CsError(Condition.ITEM_NOT_FOUND, "no_node", node=repr(node))
        adhoc = self.ctx.feature("adhoc")
        if which == ns.DISCO_ITEMS:
            info = await adhoc.disco_items(req.from_jid, req.to.bare) if node == ADHOC_NS else None
        else:
            info = await adhoc.disco_info(req.from_jid, req.to.bare, node)
        if info is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_node", node=repr(node))
        return info_element(info, node) if which == ns.DISCO_INFO else items_element(info, node)

    async def iq_disco_items(self, req: IqRequest) -> etree._Element:
        node = req.payload.get("node")
        if node:
            return await self._disco_node(req, node, ns.DISCO_ITEMS)
        out = element(f"{{{ns.DISCO_ITEMS}}}query", default_ns=ns.DISCO_ITEMS)
        if req.to.local is None:
            for qr in self.queues.values():
                sub(out, f"{{{ns.DISCO_ITEMS}}}item", {"jid": self.queue_jid(qr.name), "name": qr.display_name})
        return out

    async def iq_put_queue(self, req: IqRequest) -> None:
        self._require_admin(req)
        await self.put_queue(req.payload)

    async def put_queue(self, p: etree._Element) -> None:
        """Create or update the queue a ``<queue/>`` element describes (absent settings: kept)."""
        name = check_queue_name(p.get("name") or "")
        async with self.locked():
            old = self.queues.get(name) or QueueRecord(name=name, display_name=name)
            strategy = p.get("strategy", old.strategy)
            if strategy not in STRATEGIES:
                raise CsError(Condition.BAD_REQUEST, "strategy", strategies=", ".join(STRATEGIES))
            hours = p.get("hours", old.hours)
            parse_hours(hours)
            new = dataclasses.replace(
                old,
                display_name=p.get("display-name", old.display_name)[:191],
                welcome=p.findtext(q("welcome"), old.welcome),
                offline_text=p.findtext(q("offline"), old.offline_text),
                strategy=strategy,
                capacity=int_attr(p, "capacity", old.capacity, low=1, high=1000),  # type: ignore[arg-type]
                idle_timeout=int_attr(p, "idle-timeout", old.idle_timeout, high=7 * 86400),  # type: ignore[arg-type]
                offer_timeout=int_attr(p, "offer-timeout", old.offer_timeout, high=3600),  # type: ignore[arg-type]
                max_misses=int_attr(p, "max-misses", old.max_misses, high=1000),  # type: ignore[arg-type]
                hours=hours,
            )
            await self.repo.put_queue(new)
            self.queues[name] = new
            self.members.setdefault(name, {})
            await self.dispatch(name)

    async def iq_delete_queue(self, req: IqRequest) -> None:
        self._require_admin(req)
        await self.delete_queue(req.payload.get("name") or "")

    async def delete_queue(self, name: str) -> None:
        async with self.locked():
            self._queue(name)
            if any(s.queue == name for s in self.open.values()):
                raise CsError(Condition.CONFLICT, "queue_busy")
            await self.repo.delete_queue(name)
            self.queues.pop(name, None)
            self.members.pop(name, None)
            self.rr.pop(name, None)
            for a in self.agents.values():
                a.presence.pop(name, None)

    def queue_element(self, qr: QueueRecord, full: bool) -> etree._Element:
        el = element(q("queue"), {"name": qr.name, "jid": self.queue_jid(qr.name), "display-name": qr.display_name})
        if full:
            for k in ("strategy", "capacity", "idle-timeout", "offer-timeout", "max-misses", "hours"):
                el.set(k, str(getattr(qr, k.replace("-", "_"))))
            sub(el, q("welcome"), text=qr.welcome)
            sub(el, q("offline"), text=qr.offline_text)
        return el

    async def iq_queues(self, req: IqRequest) -> etree._Element:
        out = element(q("queues"), default_ns=NS)
        for qr in sorted(self.queues.values(), key=lambda x: x.name):
            full = self.ctx.is_admin(req.from_jid) or self.role(qr.name, req.from_jid) is not None
            out.append(self.queue_element(qr, full))
        return out

    async def iq_member(self, req: IqRequest) -> None:
        self._require_admin(req)
        await self.set_member(self._queue_of(req), req.payload)

    async def set_member(self, qr: QueueRecord, p: etree._Element) -> None:
        """Assign (or with role='none' remove) an agent or supervisor of ``qr``."""
        jid = jid_attr(p, "jid", account=True)
        if jid is None:
            raise CsError(Condition.BAD_REQUEST, "member_jid")
        role = p.get("role", "agent")
        if role not in (*ROLES, "none"):
            raise CsError(Condition.BAD_REQUEST, "member_role")
        async with self.locked():
            key = str(jid)
            was_agent = self.role(qr.name, key) == "agent"
            if role == "none":
                await self.repo.remove_member(qr.name, key)
                self.members[qr.name].pop(key, None)
            else:
                m = MemberRecord(qr.name, key, role, (p.get("nick") or "")[:191])
                await self.repo.set_member(m)
                self.members[qr.name][key] = m
            if was_agent and role != "agent":
                a = self.agents.get(key)
                if a is not None:
                    a.presence.pop(qr.name, None)
                self._after.append(lambda: self.release(key, self.queue_jid(qr.name)))
                if not self._follows(JID(None, self.domain), key):
                    self._after.append(lambda: self.release(key, self.domain))
            await self.dispatch(qr.name)

    async def iq_members(self, req: IqRequest) -> etree._Element:
        qr = self._queue_of(req)
        self._require_role(req, qr.name, "supervisor")
        out = element(q("members"), default_ns=NS)
        for m in self.members.get(qr.name, {}).values():
            attrs = {"jid": m.jid, "role": m.role}
            if m.nick:
                attrs["nick"] = m.nick
            if m.role == "agent":
                attrs["status"] = self.agents[m.jid].status(qr.name) if m.jid in self.agents else "offline"
            sub(out, q("member"), attrs)
        return out

    async def iq_accept(self, req: IqRequest) -> None:
        async with self.locked():
            await self.accept(self._session_of(req), str(req.from_jid.bare))

    async def iq_reject(self, req: IqRequest) -> None:
        async with self.locked():
            await self.reject(self._session_of(req), str(req.from_jid.bare))

    async def iq_transfer(self, req: IqRequest) -> None:
        async with self.locked():
            s = self._session_of(req)
            await self.transfer(s, str(req.from_jid.bare), agent=req.payload.get("agent"), queue=req.payload.get("queue"))

    async def iq_close(self, req: IqRequest) -> None:
        who = str(req.from_jid.bare)
        async with self.locked():
            s = self._session_of(req)
            if s.visitor == who:
                await self.close(s, "visitor")
                return
            self._check_handler(s, who)
            await self.close(s, "agent" if s.agent == who else "supervisor")

    async def iq_rate(self, req: IqRequest) -> None:
        score = int_attr(req.payload, "score", None, low=1, high=5)
        if score is None:
            raise CsError(Condition.BAD_REQUEST, "rate_score")
        local = req.to.local
        entry = local if local and not local.startswith("s-") else None
        sid = req.payload.get("session") or (local[2:] if local and local.startswith("s-") else None)
        async with self.locked():
            await self.rate(str(req.from_jid.bare), entry, sid, score, (req.payload.text or "").strip()[:2000])

    async def iq_pause(self, req: IqRequest) -> None:
        async with self.locked():
            await self.set_paused(str(req.from_jid.bare), True)

    async def iq_resume(self, req: IqRequest) -> None:
        async with self.locked():
            await self.set_paused(str(req.from_jid.bare), False)

    async def figures(self, queue: str) -> etree._Element:
        qr = self.queues[queue]
        served, avg = await self.repo.wait_stats(queue)
        line = self.line(queue)
        active = sum(1 for s in self.open.values() if s.queue == queue and s.state == "active")
        out = element(
            q("figures"),
            {"queue": self.queue_jid(queue), "waiting": str(len(line)), "active": str(active), "served": str(served), "average-wait": f"{avg:.1f}"},
            default_ns=NS,
        )
        for jid, m in self.members.get(queue, {}).items():
            if m.role != "agent":
                continue
            status = self.agents[jid].status(queue) if jid in self.agents else "offline"
            sub(out, q("agent"), {"jid": jid, "nick": self.nick(queue, jid), "load": str(self.load(jid)), "capacity": str(qr.capacity), "status": status})
        return out

    async def iq_figures(self, req: IqRequest) -> etree._Element:
        qr = self._queue_of(req)
        self._require_role(req, qr.name, "supervisor")
        return await self.figures(qr.name)

    def session_element(self, s: SessionRecord) -> etree._Element:
        attrs = {"id": s.id, "queue": self.queue_jid(s.queue), "visitor": s.visitor, "state": s.state, "created": stamp(s.created_at)}
        if s.agent:
            attrs["agent"] = s.agent
            attrs["nick"] = self.nick(s.queue, s.agent)
        if s.assigned_at:
            attrs["wait"] = f"{(s.assigned_at - s.created_at).total_seconds():.1f}"
        if s.closed_at:
            attrs["closed"] = stamp(s.closed_at)
        if s.close_reason:
            attrs["reason"] = s.close_reason
        if s.rating is not None:
            attrs["rating"] = str(s.rating)
        el = element(q("session"), attrs)
        if s.comment:
            sub(el, q("comment"), text=s.comment)
        return el

    async def iq_history(self, req: IqRequest) -> etree._Element:
        qr = self._queue_of(req)
        visitor = jid_attr(req.payload, "visitor", account=True)
        if visitor is None:
            self._require_role(req, qr.name, "supervisor")
        else:
            self._require_role(req, qr.name, "agent", "supervisor")
        limit = int_attr(req.payload, "max", self.options.history_limit, low=1, high=self.options.history_limit)
        out = element(q("history"), default_ns=NS)
        for s in await self.repo.sessions(qr.name, str(visitor) if visitor else None, limit=limit or 1):
            out.append(self.session_element(s))
        return out

    async def iq_transcript(self, req: IqRequest) -> etree._Element:
        sid = req.payload.get("session")
        if not sid:
            raise CsError(Condition.BAD_REQUEST, "transcript_session")
        s = await self.repo.get_session(sid)
        if s is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_session_id", id=sid)
        who = str(req.from_jid.bare)
        if who != s.visitor and not self.ctx.is_admin(req.from_jid) and self.role(s.queue, who) not in ROLES:
            raise CsError(Condition.FORBIDDEN, "transcript_who")
        out = element(q("transcript"), {"session": s.id}, default_ns=NS)
        for ln in await self.repo.transcript(s.id):
            sub(out, q("line"), {"role": ln.role, "nick": ln.nick, "at": stamp(ln.at)}, text=ln.body)
        return out

    async def open_ticket(self, queue: str, visitor: JID, body: str) -> int:
        """Other features' one door to tickets (mute appeals, docs/mute.md §4.1): a ticket in
        ``queue`` from ``visitor``, listed to the queue's agents and supervisors; its id.
        KeyError when there is no such queue."""
        if queue not in self.queues:
            raise KeyError(queue)
        return (await self.repo.add_ticket(queue, str(visitor.bare), body, _dt(self.now()))).id

    async def iq_tickets(self, req: IqRequest) -> etree._Element:
        qr = self._queue_of(req)
        self._require_role(req, qr.name, "agent", "supervisor")
        out = element(q("tickets"), default_ns=NS)
        for t in await self.repo.tickets(qr.name):
            sub(out, q("ticket"), {"id": str(t.id), "visitor": t.visitor, "created": stamp(t.created_at)}, text=t.body)
        return out
