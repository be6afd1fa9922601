"""urn:xmppd:cs:0: customer-service routing (客服) on a service domain, after XEP-0142 and Openfire Fastpath.

Queues are JIDs on the component (``support@cs.example.com``). A visitor writes to the queue
JID only; the agent talks to a per-session JID (``s-<id>@cs.example.com``), so one agent on a
plain client handles several visitors, each in their own chat window. The visitor sees the
agent's display name (XEP-0172 nick and a body prefix), never the agent's JID.

State lives in storage (queues, members, sessions with the waiting line, transcripts,
ratings, tickets); what is only true while the server runs is ``state.LiveState``, rebuilt at
start. All changes run under one lock, so routing decisions never interleave.

This module holds the feature's wiring and the actions that change a chat (offer, assign,
transfer, close, rate); the rest has its own module: ``wire`` (elements), ``policy`` (routing
and permission rules, pure), ``state`` (live indices), ``repository`` (storage), ``relay``
(messages), ``presence`` (agents' presence), ``queues`` (queue and member administration),
``clustered`` (queues across cluster nodes), ``followers`` (watchers, a second agent), ``iqs`` (iq requests), ``timers``, ``commands`` and
``visitor_commands`` (XEP-0050), ``api`` (REST); ``service.CsService`` is the typed view those
modules get of this class.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from xmppd.config import ConfigError, NonNegative, NonNegativeInt, PositiveInt
from xmppd.core import hooks as H
from xmppd.core.dispatch import Target
from xmppd.core.feature import Feature, hook
from xmppd.core.hooks import AccountEvent, Flow, Routed, SessionEvent
from xmppd.core.server_owned import owned_namespace
from xmppd.errors import Condition, StanzaError
from xmppd.jid import JID
from xmppd.xml import ns
from xmppd.xml.builder import element

from . import policy, prechat, wire
from .api import operations
from .canned import CannedReplies
from .commands import CsCommands
from .followers import Followers
from .iqs import CsIqs
from .presence import SUBSCRIPTION_TYPES, AgentPresence
from .protocol import LOCALE, NS, CsError, q
from .queues import QueueAdmin
from .relay import Relay
from .repository import CsRepository, FencedOut, QueueRecord, SessionRecord, SqlCsRepository, TranscriptLine
from .state import Agent, LiveState
from .tickets import TicketDesk
from .timers import Timers
from .visitor_commands import VisitorCommands

__all__ = ["Agent", "CsOptions", "CustomerService"]


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
        self.state = LiveState(self.now)
        # Queues across cluster nodes (``clustered.QueueCluster``); None on one node.
        self.cluster: Any = None
        # The live indices under their familiar names (the same objects as in ``state``).
        self.queues = self.state.queues
        self.members = self.state.members
        self.open = self.state.open
        self.agents = self.state.agents
        self.presence = AgentPresence(self)
        self.relay = Relay(self)
        self.timers = Timers(self, self.options.timer_interval)
        self.tickets = TicketDesk(self)
        self.canned = CannedReplies(self)
        self.admin = QueueAdmin(self)
        self.followers = Followers(self)
        await self._load()
        self.ctx.add_service(self.domain, self)
        CsIqs(self).register()
        self.ctx.add_metrics(self._metrics)
        self.ctx.add_api(operations(self))  # /api/v1/cs (docs/api.md)
        if self.ctx.has_feature("disco"):
            self.ctx.on_teardown(self.ctx.feature("disco").add_item(self.domain, self.tr.text(None, "disco.component")))
        self.timers.start()
        self.ctx.add_command_provider(self.domain, CsCommands(self).commands)
        self.ctx.add_command(VisitorCommands(self).command())

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
        if self.ctx.config.cluster.redis_url:
            return  # a cluster node loads a queue's chats when it acquires the queue (clustered.py)
        for s in await self.repo.open_sessions():
            if s.state == "offered":  # an offer does not survive a restart: back in line, same place
                s = s.replace(state="waiting", agent=None)
                await self.repo.save_session(s)
            self.state.index(s)

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

    def dt_now(self) -> datetime:
        return _dt(self.now())

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

    def after(self, fn: Callable[[], Awaitable[None]]) -> None:
        """(Under the lock.) Run ``fn`` once the lock is released."""
        self._after.append(fn)

    def owns(self, queue: str) -> bool:
        """Whether this node serves ``queue``'s line: always on one node; in a cluster, the
        holder of its lease (docs/cluster.md §5)."""
        return self.cluster is None or self.cluster.owns(queue)

    def fence(self, queue: str) -> int:
        """The token this node writes ``queue``'s chats with (0: no cluster, never fenced)."""
        return 0 if self.cluster is None else self.cluster.token(queue)

    async def claim(self, old: SessionRecord, new: SessionRecord, *, capacity: int | None = None) -> SessionRecord:
        """Save ``new`` only if storage still holds ``old``'s state and agent (exactly one agent
        per chat, also across nodes) and, with ``capacity``, its agent has a seat free in every
        queue together (a cluster: docs/cluster.md §5); otherwise learn the stored chat and
        refuse with conflict (the chat still waiting here: the agent is full)."""
        if await self.repo.claim_session(new, old.state, old.agent, self.fence(new.queue), capacity):
            self.state.index(new)
            return new
        stored = await self.repo.get_session(old.id)
        if stored is None or stored.state == "closed":
            self.state.unindex(old)
        else:
            self.state.index(stored)
        raise CsError(Condition.CONFLICT, "chat_taken")

    async def save(self, s: SessionRecord) -> SessionRecord:
        await self.repo.save_session(s, self.fence(s.queue))
        if s.state == "closed":
            self.state.unindex(s)
        elif not self.owns(s.queue):  # transferred to a queue another cluster node holds
            self.state.unindex(s)
            cluster = self.cluster
            self.after(lambda: cluster.hand_over(s))
        else:
            self.state.index(s)
        return s

    def queue_jid(self, name: str) -> str:
        return f"{name}@{self.domain}"

    def session_jid(self, s: SessionRecord) -> str:
        return f"s-{s.id}@{self.domain}"

    def role(self, queue: str, jid: JID | str) -> str | None:
        return self.state.role(queue, str(jid.bare) if isinstance(jid, JID) else jid)

    def nick(self, queue: str, agent: str) -> str:
        return self.state.nick(queue, agent)

    def load(self, agent: str) -> int:
        return self.state.load(agent)

    def line(self, queue: str) -> list[SessionRecord]:
        """Sessions waiting (or being offered) in ``queue``, first come first served."""
        return self.state.line(queue)

    async def all_queues(self) -> list[QueueRecord]:
        """Every queue by name: in a cluster as storage has them (a node holds only its own
        live; every node answers the same), else the component's memory."""
        if self.cluster is not None:
            return await self.repo.list_queues()
        return sorted(self.queues.values(), key=lambda x: x.name)

    def queue(self, name: str | None) -> QueueRecord:
        qr = self.queues.get(name or "")
        if qr is None:
            raise CsError(Condition.ITEM_NOT_FOUND, "no_queue", name=repr(name), domain=self.domain)
        return qr

    def check_handler(self, s: SessionRecord, who: str) -> None:
        """The session's agent or a supervisor of its queue."""
        policy.check_handler(s, who, self.role(s.queue, who))

    def pick(self, queue: str, exclude: set[str] | frozenset[str] = frozenset(), needs: str = "") -> str | None:
        """The agent the queue's strategy chooses among those who have the skills a chat
        ``needs`` and can take one more session."""
        st = self.state
        qr = self.queues[queue]
        loads = st.loads()
        candidates = policy.eligible(qr, self.members.get(queue, {}), self.agents, loads, st.offered_to(), exclude, needs)
        idle = {j: self.agents[j].idle_since for j in candidates}
        return policy.pick(qr.strategy, candidates, loads, idle, st.rr.get(queue))

    async def run_timers(self) -> None:
        """Offer timeouts and idle visitors, judged on the injected clock (tests call it)."""
        await self.timers.run()

    async def message(self, frm: str, to: str, body: str | None, *payloads: etree._Element, nick: str | None = None, id: str | None = None) -> None:
        await self.ctx.send(wire.chat_message(frm, to, body, *payloads, nick=nick, id=id))

    async def to_visitor(self, s: SessionRecord, body: str | None, *payloads: etree._Element, nick: str | None = None, id: str | None = None) -> None:
        await self.message(self.queue_jid(s.entry), s.visitor, body, *payloads, nick=nick, id=id)

    async def to_visitor_t(self, s: SessionRecord, key: str, *payloads: etree._Element, note: bool = False, **fields: Any) -> None:
        """Text ``key`` to the visitor in their language (and into the transcript when ``note``)."""
        text = self.t(s.visitor, key, **fields)
        if note:
            await self.note(s, "system", "", text)
        await self.to_visitor(s, text, *payloads)

    async def to_agent(self, s: SessionRecord, agent: str, body: str | None, *payloads: etree._Element, id: str | None = None) -> None:
        await self.message(self.session_jid(s), agent, body, *payloads, id=id)

    async def note(self, s: SessionRecord, role: str, nick: str, body: str) -> None:
        await self.repo.add_line(TranscriptLine(s.id, self.dt_now(), role, nick, body))

    # ================================================================== the service

    async def receive(self, r: Routed, hops: int = 0) -> None:
        """A stanza for the service, a queue or a chat (``hops``: forwarded by other cluster
        nodes that many times; a queue's stanzas are handled on the node owning it)."""
        cluster = self.cluster
        if cluster is None:
            await self._receive(r)
            return
        cluster.remember(r)  # agents' presence, anonymous visitors' queues
        if r.kind == "presence" and r.to is not None and r.to.local is None and r.stanza.get("type") in (None, "unavailable"):
            await cluster.split_presence(r)  # to the component: to each of the agent's queues' owners
            return
        if not await cluster.here(r, hops) or await cluster.internal(r):
            return  # forwarded to the queue's owner, or a message between nodes handled there
        try:
            await self._receive(r)
        except FencedOut as exc:
            queue = await cluster.queue_of(r)
            if queue is not None:
                await cluster.fenced_out(queue, exc)
            if r.kind != "presence":
                self.ctx.router.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "the queue moved to another node: try again"))

    async def _receive(self, r: Routed) -> None:
        to = r.to
        assert to is not None
        if r.kind == "iq":
            await self.ctx.router.dispatch_iq(r, Target.HOST if to.local is None else Target.BARE)
            return
        if r.kind == "presence":
            typ = r.stanza.get("type")
            if typ in SUBSCRIPTION_TYPES or typ == "probe":
                await self.presence.subscription(r, typ)
                return
            async with self.locked():
                await self.presence.available(r)
            return
        typ = r.stanza.get("type") or "normal"
        if typ in ("error", "groupchat", "headline"):
            return
        body = r.stanza.findtext(f"{{{ns.CLIENT}}}body")
        if body is None:
            extras = wire.carried(r.stanza)
            if extras and to.local is not None:  # chat states, receipts: to the other side of an active chat
                async with self.locked():
                    await self.relay.bodyless(r, to.local, extras)
            return
        try:
            async with self.locked():
                if to.local is None:
                    raise CsError(Condition.SERVICE_UNAVAILABLE, "write_to_queue", domain=self.domain)
                if to.local.startswith("s-"):
                    await self.relay.from_agent(r, to.local[2:], body)
                else:
                    await self.relay.from_visitor(r, to.local, body)
        except StanzaError as err:
            self.ctx.router.bounce(r, err)  # told in the sender's language

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
        if jid is not None:
            if self.cluster is not None:
                self.cluster.session_gone(jid)
            await self.presence.session_closed(jid)
            if jid.domain == self.ctx.config.anonymous.domain:
                await self.visitor_gone(str(jid.bare))
                if self.cluster is not None:
                    await self.cluster.guest_gone(jid)
        return Flow.CONTINUE

    async def visitor_gone(self, visitor: str) -> None:
        """An anonymous visitor's address died with its session (docs/auth.md): its chats end
        as if it had closed them; the agent is told. (This node's chats; in a cluster the
        owners of the queues it wrote to are told too, ``QueueCluster.guest_gone``.)"""
        async with self.locked():
            for s in [s for s in self.open.values() if s.visitor == visitor]:
                await self.close(s, "visitor")

    # ================================================================== the cluster

    async def join_cluster(self, port: Any) -> Callable[[], Awaitable[None]]:
        """The cluster started (docs/cluster.md §5): from now on a queue lives on the node that
        holds its lease; what this node loaded at start goes (it comes back where it is owned)."""
        from .clustered import QueueCluster

        async with self.lock:
            for name in list(self.queues):
                self.state.unindex_queue(name)
            self.cluster = QueueCluster(self, port)

        async def leave() -> None:
            cluster = self.cluster
            if cluster is not None:
                async with self.lock:
                    await cluster.leave()

        return leave

    @hook(H.NODE_DOWN)
    async def on_node_down(self, ev: Any) -> Flow:
        if self.cluster is not None:
            await self.cluster.node_down(ev)
        return Flow.CONTINUE

    # ================================================================== actions

    async def agent_gone(self, agent: str) -> None:
        """An agent dropped: their sessions go back to the head of their lines, visitors told."""
        if self.ctx.lifecycle.stopping:
            return  # a shutdown is no dropout: the sessions stay with their agents across a restart
        mine = sorted((s for s in self.open.values() if s.agent == agent), key=lambda s: s.line_seq)
        queues = set()
        for s in reversed(mine):  # the oldest ends up first
            was_active = s.state == "active"
            s = await self.save(s.replace(state="waiting", agent=None, line_seq=self.state.head_seq(s.queue)))
            self.state.offers.pop(s.id, None)
            queues.add(s.queue)
            if was_active:
                await self.to_visitor_t(s, "visitor.requeued", element(q("requeued"), {"session": s.id}), note=True)
        for name in sorted(queues):
            await self.dispatch(name)

    async def dispatch(self, queue: str) -> None:
        """Serve the line in order while agents have room; then tell the rest their places."""
        if queue not in self.queues or not self.owns(queue):
            return
        # In a cluster an agent's chats in queues other nodes hold count too: storage checks the
        # seat at the claim, and an agent found full there is passed over for this round.
        capacity = self.queues[queue].capacity if self.cluster is not None else None
        full: set[str] = set()
        for s in self.line(queue):
            if s.state != "waiting":
                continue
            tried = self.state.tried.get(s.id, set())
            while True:
                agent = self.pick(queue, tried | full, s.skills)
                if agent is None:
                    break
                try:
                    if self.queues[queue].offer_timeout:
                        await self.offer(s, agent, capacity=capacity)
                    else:
                        await self.assign(s, agent, capacity=capacity)
                except CsError as err:
                    if err.condition is not Condition.CONFLICT:
                        raise
                    held = self.open.get(s.id)
                    if held is not None and held.state == "waiting" and held.agent is None:
                        full.add(agent)  # the chat is still ours: the agent is full elsewhere
                        continue
                break  # given (or another node took this chat first: no longer ours to give)
            if agent is None and not (tried or s.skills):
                break  # first come, first served: nobody behind the head jumps the line
            # Everyone free has turned this one down, or nobody free has its skills: the next
            # visitor may fit an agent this one could not have had anyway.
        await self.positions(queue)

    async def positions(self, queue: str) -> None:
        """Tell each waiting visitor whose place changed their place and the estimated wait."""
        figures: tuple[int, float] | None = None
        for n, s in enumerate(self.line(queue), 1):
            if s.state == "waiting" and self.state.told.get(s.id) != n:
                self.state.told[s.id] = n
                if figures is None:
                    figures = await self.repo.wait_stats(queue)
                online = sum(1 for j, m in self.members.get(queue, {}).items() if m.role == "agent" and self.state.status(queue, j) != "offline")
                wait = policy.estimated_wait(n, figures[1], figures[0], online)
                attrs = {"session": s.id, "n": str(n)}
                if wait is None:
                    await self.to_visitor_t(s, "visitor.position", element(q("position"), attrs), n=n)
                else:
                    attrs["wait"] = str(wait)
                    await self.to_visitor_t(s, "visitor.position_wait", element(q("position"), attrs), n=n, minutes=max(1, -(-wait // 60)))

    async def offer(self, s: SessionRecord, agent: str, *, capacity: int | None = None) -> None:
        qr = self.queues[s.queue]
        s = await self.claim(s, s.replace(state="offered", agent=agent), capacity=capacity)
        self.state.offers[s.id] = self.now() + qr.offer_timeout
        self.state.tried.setdefault(s.id, set()).add(agent)
        self.state.told.pop(s.id, None)
        attrs = {"session": s.id, "queue": self.queue_jid(s.queue), "visitor": s.visitor, "timeout": str(qr.offer_timeout)}
        text = self.t(agent, "agent.offer", visitor=s.visitor, queue=qr.display_name, seconds=qr.offer_timeout)
        offer = element(q("offer"), attrs)
        await self.to_agent(s, agent, "\n".join(filter(None, [text, self.answers(s, agent, offer)])), offer)

    async def assign(self, s: SessionRecord, agent: str, *, transferred_by: str | None = None, capacity: int | None = None) -> SessionRecord:
        now = self.now()
        # The idle clock starts when the agent arrives: time spent in line is not silence.
        s = await self.claim(s, s.replace(state="active", agent=agent, assigned_at=s.assigned_at or _dt(now), last_visitor_at=_dt(now)), capacity=capacity)
        self.state.offers.pop(s.id, None)
        self.state.told.pop(s.id, None)
        a = self.state.agent(agent)
        a.idle_since = now
        a.misses = 0
        self.state.rr[s.queue] = agent
        nick = self.nick(s.queue, agent)
        await self.brief(s, agent, transferred_by)
        attrs = {"session": s.id, "nick": nick}
        if self.options.reveal_agent_jid:
            attrs["jid"] = agent
        text = self.t(s.visitor, "visitor.assigned", nick=nick)
        await self.note(s, "system", "", text)
        await self.to_visitor(s, text, element(q("agent"), attrs), nick=nick)
        return s

    async def brief(self, s: SessionRecord, agent: str, transferred_by: str | None) -> None:
        """The agent's window opens: who, where, and the recent transcript."""
        qr = self.queues[s.queue]
        lines = await self.repo.transcript(s.id, last=self.options.transfer_transcript_lines)
        attrs = {"session": s.id, "queue": self.queue_jid(s.queue), "visitor": s.visitor}
        if transferred_by:
            attrs["from"] = transferred_by
        assigned = element(q("assigned"), attrs)
        assigned.append(wire.transcript_element(s.id, lines, default_ns=False))
        if transferred_by:
            head = self.t(agent, "agent.brief_transferred", visitor=s.visitor, queue=qr.display_name, by=transferred_by)
        else:
            head = self.t(agent, "agent.brief", visitor=s.visitor, queue=qr.display_name)
        recent = wire.transcript_text(lines)
        help_ = self.t(agent, "agent.brief_help")
        answers = self.answers(s, agent, assigned)
        await self.to_agent(s, agent, "\n".join(filter(None, [head, answers, recent, help_])), assigned)

    def answers(self, s: SessionRecord, agent: str, payload: etree._Element) -> str:
        """The visitor's pre-chat answers (§4.1) into ``payload`` as ``<answers/>``; as text."""
        answers = prechat.answers_loads(s.answers)
        el = prechat.answers_element(answers)
        if el is None:
            return ""
        payload.append(el)
        return self.t(agent, "agent.answers", answers=prechat.answers_text(answers))
    # ------------------------------------------------------------------ actions

    async def accept(self, s: SessionRecord, who: str) -> None:
        if s.state != "offered" or s.agent != who:
            raise CsError(Condition.FORBIDDEN if s.agent != who else Condition.UNEXPECTED_REQUEST, "not_offered")
        await self.assign(s, who)
        await self.positions(s.queue)

    async def reject(self, s: SessionRecord, who: str) -> None:
        if s.state != "offered" or s.agent != who:
            raise CsError(Condition.FORBIDDEN, "not_offered")
        await self.save(s.replace(state="waiting", agent=None))
        self.state.offers.pop(s.id, None)
        await self.dispatch(s.queue)

    async def missed(self, s: SessionRecord) -> None:
        """Openfire Fastpath: an unanswered offer moves on; repeated misses pause the agent."""
        agent = s.agent
        assert agent is not None
        self.state.offers.pop(s.id, None)
        s = await self.save(s.replace(state="waiting", agent=None))
        await self.to_agent(s, agent, self.t(agent, "agent.revoked"), element(q("revoked"), {"session": s.id}))
        a = self.state.agent(agent)
        a.misses += 1
        qr = self.queues.get(s.queue)
        if qr and qr.max_misses and a.misses >= qr.max_misses and not a.paused:
            a.paused = True
            await self.message(
                self.domain, agent, self.t(agent, "agent.auto_paused", misses=a.misses),
                element(q("paused"), {"misses": str(a.misses)}),
            )
        await self.dispatch(s.queue)

    async def transfer(self, s: SessionRecord, who: str, *, agent: str | None, queue: str | None) -> None:
        self.check_handler(s, who)
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
            await self.assign(s, agent, transferred_by=old or who)
        else:
            if self.cluster is not None and queue and queue not in self.queues:
                await self.cluster.learn_queue(queue)  # created on another node since this one started
            target = self.queue(queue)
            if old:
                text = self.t(old, "agent.transferred_queue", queue=target.display_name)
                await self.to_agent(s, old, text, element(q("closed"), {"session": s.id, "reason": "transferred"}))
            await self.to_visitor_t(s, "visitor.transfer_queue", note=True, queue=target.display_name)
            s = await self.save(s.replace(queue=target.name, state="waiting", agent=None, line_seq=self.state.head_seq(target.name), skills=target.skills))
            self.state.tried.pop(s.id, None)
            await self.dispatch(target.name)
        if old:
            await self.seat_freed(old)

    async def seat_freed(self, agent: str) -> None:
        """``agent`` has one chat less: the queues they serve may give them the next one (in a
        cluster the queues other nodes hold are told too: ``QueueCluster.nudge``)."""
        for name in self.state.queues_of(agent):
            await self.dispatch(name)
        cluster = self.cluster
        if cluster is not None:
            self.after(lambda: cluster.nudge(agent))

    async def close(self, s: SessionRecord, reason: str) -> None:
        agent = s.agent if s.state in ("active", "offered") else None
        others = self.state.others(s.id)
        s = await self.save(s.replace(state="closed", closed_at=_dt(self.now()), close_reason=reason))
        for o in others:
            await self.to_agent(s, o, self.t(o, "agent.closed", reason=self.t(o, "reason." + reason)), element(q("closed"), {"session": s.id, "reason": reason}))
        text = self.t(s.visitor, {"idle": "visitor.closed_idle", "agent": "visitor.closed_agent"}.get(reason, "visitor.closed"))
        await self.note(s, "system", "", text)
        await self.to_visitor(s, self.t(s.visitor, "visitor.rate_invite", closed=text), element(q("closed"), {"session": s.id, "reason": reason}))
        if agent:
            why = self.t(agent, "reason." + reason)
            await self.to_agent(s, agent, self.t(agent, "agent.closed", reason=why), element(q("closed"), {"session": s.id, "reason": reason}))
            self.state.forget_tries()
            await self.seat_freed(agent)
        await self.dispatch(s.queue)

    async def rate(self, visitor: str, entry: str | None, sid: str | None, score: int, comment: str) -> None:
        if sid is not None:
            s = await self.repo.get_session(sid)
            if s is None or s.visitor != visitor:
                raise CsError(Condition.FORBIDDEN if s else Condition.ITEM_NOT_FOUND, "rate_own")
        else:
            if entry is None:
                raise CsError(Condition.BAD_REQUEST, "rate_where")
            self.queue(entry)
            # A transfer may have moved the chat to another queue: the visitor knows the entry JID.
            recent = [x for n in self.queues for x in await self.repo.sessions(n, visitor, limit=5) if x.entry == entry and x.state == "closed"]
            if not recent:
                raise CsError(Condition.ITEM_NOT_FOUND, "nothing_to_rate")
            s = max(recent, key=lambda x: x.closed_at or x.created_at)
        if s.state != "closed":
            raise CsError(Condition.UNEXPECTED_REQUEST, "rate_open")
        if not await self.repo.rate(s.id, score, comment):
            raise CsError(Condition.CONFLICT, "already_rated")

    async def open_ticket(self, queue: str, visitor: JID, body: str) -> int:
        """Other features' one door to tickets (mute appeals, docs/mute.md §4.1): a ticket in
        ``queue`` from ``visitor``, listed to the queue's agents and supervisors; its id.
        KeyError when there is no such queue."""
        if queue not in self.queues:
            raise KeyError(queue)
        return (await self.repo.add_ticket(queue, str(visitor.bare), body, self.dt_now())).id

    async def set_paused(self, who: str, paused: bool) -> None:
        if not any(m.get(who) and m[who].role == "agent" for m in self.members.values()):
            raise CsError(Condition.FORBIDDEN, "agents_only")
        a = self.state.agent(who)
        a.paused = paused
        if not a.online:  # never announced to us: follow their ordinary presence from now on
            self.after(lambda: self.presence.track(who))
        if not paused:
            a.misses = 0
            self.state.forget_tries()
            for name in self.state.queues_of(who):
                await self.dispatch(name)

