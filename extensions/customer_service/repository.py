"""Customer-service storage (urn:xmppd:cs:0): queues, members, sessions and their line, transcripts, ratings, tickets.

A ``CsRepository`` Protocol, a SQL implementation on the shared engine and an in-memory twin
that pass the same contract tests. The waiting line is not a table of its own: a session in
state ``waiting`` is in the line of its queue, ordered by ``line_seq`` (a session handed back
by a dropped agent gets a key below the head, so it is served first).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.storage.engine import Database
from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, indexed_string, metadata
from xmppd.webhooks import events as E
from xmppd.webhooks.outbox import DISABLED, Outbox

STRATEGIES = ("round-robin", "least-busy", "longest-idle")
ROLES = ("agent", "supervisor")
OPEN_STATES = ("waiting", "offered", "active")
HELD_STATES = ("offered", "active")  # the chats that take one of an agent's seats (its capacity)
STATES = (*OPEN_STATES, "closed")


class FencedOut(Exception):
    """A write by a node whose lease of the queue was taken over: a newer owner wrote it since."""


@dataclass(frozen=True, slots=True)
class QueueRecord:
    name: str  # the local part of the queue JID
    display_name: str
    welcome: str = "Welcome! An agent will be with you shortly."
    offline_text: str = "No agent is available right now. Leave a message and we will get back to you."
    strategy: str = "round-robin"
    capacity: int = 3  # concurrent sessions per agent
    idle_timeout: int = 600  # seconds of visitor silence before an active session closes; 0: never
    offer_timeout: int = 0  # seconds an agent has to accept an offer; 0: assign without offering
    max_misses: int = 3  # missed offers in a row before the agent is paused; 0: never
    hours: str = ""  # opening hours "[days ]HH:MM-HH:MM[,...]" in ``timezone``; "": always open
    skills: str = ""  # space-separated skills every chat of the queue needs (cs_0003)
    timezone: str = "UTC"  # IANA zone of ``hours`` and ``holidays`` (cs_0003)
    holidays: str = ""  # closed dates "YYYY-MM-DD[,...]" (cs_0003)
    prechat: str | None = None  # the pre-chat form's definition, JSON (prechat.py; cs_0006)


@dataclass(frozen=True, slots=True)
class MemberRecord:
    queue: str
    jid: str  # bare JID of an account
    role: str  # agent | supervisor
    nick: str = ""  # display name shown to visitors (agents)
    skills: str = ""  # space-separated skills (agents; cs_0003)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    queue: str  # the queue routing the session now (changes on a transfer to another queue)
    entry: str  # the queue the visitor wrote to: every message to the visitor comes from its JID
    visitor: str  # bare JID
    state: str
    line_seq: int
    created_at: datetime
    last_visitor_at: datetime
    agent: str | None = None
    assigned_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None
    rating: int | None = None
    comment: str | None = None
    skills: str = ""  # space-separated skills its agent needs: the queue's and the pre-chat form's (cs_0003)
    answers: str | None = None  # the visitor's pre-chat answers, JSON (prechat.py; cs_0006)

    def replace(self, **changes: object) -> "SessionRecord":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    session_id: str
    at: datetime
    role: str  # visitor | agent | system
    nick: str
    body: str


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    queue: str
    visitor: str
    body: str
    created_at: datetime
    state: str = "open"  # open | assigned | closed (cs_0004)
    assignee: str | None = None  # the agent handling it
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Canned:
    queue: str
    owner: str  # "": shared by the queue; else the agent whose personal reply it is
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class TicketReply:
    ticket_id: int
    at: datetime
    agent: str
    body: str


class CsRepository(Protocol):
    async def put_queue(self, q: QueueRecord) -> None: ...
    async def get_queue(self, name: str) -> QueueRecord | None: ...
    async def list_queues(self) -> list[QueueRecord]: ...
    async def delete_queue(self, name: str) -> bool: ...
    async def set_member(self, m: MemberRecord) -> None: ...
    async def remove_member(self, queue: str, jid: str) -> bool: ...
    async def members(self, queue: str | None = None) -> list[MemberRecord]: ...
    # ``fence``: the queue owner's lease token (docs/cluster.md §5); a stored token above it
    # raises ``FencedOut`` and writes nothing. 0 (no cluster): never fenced.
    async def save_session(self, s: SessionRecord, fence: int = 0) -> None: ...
    async def claim_session(self, s: SessionRecord, state: str, agent: str | None, fence: int = 0, capacity: int | None = None) -> bool:
        """Save ``s`` only if the stored chat is still in ``state`` with ``agent`` and, with
        ``capacity``, ``s.agent`` holds fewer than ``capacity`` other offered or active chats in
        every queue (counted in the same transaction)."""
        ...
    async def get_session(self, session_id: str) -> SessionRecord | None: ...
    async def open_sessions(self, queue: str | None = None) -> list[SessionRecord]: ...
    async def open_chat(self, entry: str, visitor: str) -> SessionRecord | None:
        """``visitor``'s open chat that came in through queue ``entry`` (wherever it was transferred)."""
        ...
    async def queue_fence(self, name: str) -> int: ...
    async def claim_queue(self, name: str, fence: int) -> bool:
        """Store ``fence`` as the queue's token unless a higher one is stored (True: claimed, or no such queue)."""
        ...
    async def sessions(self, queue: str, visitor: str | None = None, limit: int = 50) -> list[SessionRecord]: ...
    async def wait_stats(self, queue: str) -> tuple[int, float]: ...
    async def sessions_between(self, queue: str, start: datetime, end: datetime, limit: int = 10000) -> list[SessionRecord]: ...
    async def rate(self, session_id: str, score: int, comment: str) -> bool: ...
    async def add_line(self, line: TranscriptLine) -> None: ...
    async def transcript(self, session_id: str, last: int | None = None) -> list[TranscriptLine]: ...
    async def add_ticket(self, queue: str, visitor: str, body: str, at: datetime) -> Ticket: ...
    async def tickets(self, queue: str, limit: int = 100, state: str | None = None, offset: int = 0) -> list[Ticket]: ...
    async def visitor_tickets(self, visitor: str, limit: int = 50) -> list[Ticket]: ...
    async def get_ticket(self, ticket_id: int) -> Ticket | None: ...
    async def assign_ticket(self, ticket_id: int, agent: str) -> bool: ...
    async def close_ticket(self, ticket_id: int, at: datetime) -> bool: ...
    async def reply_ticket(self, reply: TicketReply) -> bool: ...
    async def ticket_replies(self, ticket_id: int) -> list[TicketReply]: ...
    async def put_canned(self, c: Canned) -> None: ...
    async def delete_canned(self, queue: str, owner: str, name: str) -> bool: ...
    async def canned(self, queue: str, owners: tuple[str, ...]) -> list[Canned]: ...


def _check_rating(score: int) -> None:
    if not 1 <= score <= 5:
        raise ValueError("a rating is 1 to 5")


def _newest_first(rows: list[SessionRecord], limit: int) -> list[SessionRecord]:
    return sorted(rows, key=lambda s: (s.created_at, s.id), reverse=True)[:limit]


class MemoryCsRepository:
    """The in-memory twin of :class:`SqlCsRepository`."""

    def __init__(self) -> None:
        self._queues: dict[str, QueueRecord] = {}
        self._members: dict[tuple[str, str], MemberRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._fences: dict[str, int] = {}
        self._lines: dict[str, list[TranscriptLine]] = {}
        self._tickets: list[Ticket] = []
        self._replies: list[TicketReply] = []
        self._canned: dict[tuple[str, str, str], Canned] = {}
        self._ids = itertools.count(1)

    async def put_queue(self, q: QueueRecord) -> None:
        self._queues[q.name] = q

    async def get_queue(self, name: str) -> QueueRecord | None:
        return self._queues.get(name)

    async def list_queues(self) -> list[QueueRecord]:
        return sorted(self._queues.values(), key=lambda q: q.name)

    async def delete_queue(self, name: str) -> bool:
        if self._queues.pop(name, None) is None:
            return False
        for key in [k for k in self._members if k[0] == name]:
            del self._members[key]
        return True

    async def set_member(self, m: MemberRecord) -> None:
        if m.queue not in self._queues:
            raise KeyError(m.queue)
        self._members[(m.queue, m.jid)] = m

    async def remove_member(self, queue: str, jid: str) -> bool:
        return self._members.pop((queue, jid), None) is not None

    async def members(self, queue: str | None = None) -> list[MemberRecord]:
        rows = [m for m in self._members.values() if queue is None or m.queue == queue]
        return sorted(rows, key=lambda m: (m.queue, m.jid))

    def _check_fence(self, queue: str, fence: int) -> None:
        if fence and self._fences.get(queue, 0) > fence:
            raise FencedOut(f"queue {queue} is written with token {self._fences[queue]}, newer than {fence}")

    async def queue_fence(self, name: str) -> int:
        return self._fences.get(name, 0)

    async def open_chat(self, entry: str, visitor: str) -> SessionRecord | None:
        rows = [s for s in self._sessions.values() if s.entry == entry and s.visitor == visitor and s.state in OPEN_STATES]
        return max(rows, key=lambda s: (s.created_at, s.id)) if rows else None

    async def claim_queue(self, name: str, fence: int) -> bool:
        if self._fences.get(name, 0) > fence:
            return False
        if name in self._queues:
            self._fences[name] = fence
        return True

    async def save_session(self, s: SessionRecord, fence: int = 0) -> None:
        self._check_fence(s.queue, fence)
        old = self._sessions.get(s.id)
        if old is not None and old.rating is not None:
            s = s.replace(rating=old.rating, comment=old.comment)
        self._sessions[s.id] = s

    async def claim_session(self, s: SessionRecord, state: str, agent: str | None, fence: int = 0, capacity: int | None = None) -> bool:
        self._check_fence(s.queue, fence)
        old = self._sessions.get(s.id)
        if old is None or (old.state, old.agent) != (state, agent):
            return False
        if capacity is not None and s.agent is not None and sum(
            1 for o in self._sessions.values() if o.agent == s.agent and o.state in HELD_STATES and o.id != s.id
        ) >= capacity:
            return False
        await self.save_session(s)
        return True

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return self._sessions.get(session_id)

    async def open_sessions(self, queue: str | None = None) -> list[SessionRecord]:
        rows = [s for s in self._sessions.values() if s.state in OPEN_STATES and queue in (None, s.queue)]
        return sorted(rows, key=lambda s: (s.line_seq, s.id))

    async def sessions(self, queue: str, visitor: str | None = None, limit: int = 50) -> list[SessionRecord]:
        rows = [s for s in self._sessions.values() if s.queue == queue and (visitor is None or s.visitor == visitor)]
        return _newest_first(rows, limit)

    async def sessions_between(self, queue: str, start: datetime, end: datetime, limit: int = 10000) -> list[SessionRecord]:
        return sorted((s for s in self._sessions.values() if s.queue == queue and start <= s.created_at < end), key=lambda s: s.created_at)[:limit]

    async def wait_stats(self, queue: str) -> tuple[int, float]:
        waits = [(s.assigned_at - s.created_at).total_seconds() for s in self._sessions.values() if s.queue == queue and s.assigned_at]
        return len(waits), (sum(waits) / len(waits) if waits else 0.0)

    async def rate(self, session_id: str, score: int, comment: str) -> bool:
        _check_rating(score)
        s = self._sessions.get(session_id)
        if s is None or s.state != "closed" or s.rating is not None:
            return False
        self._sessions[session_id] = s.replace(rating=score, comment=comment)
        return True

    async def add_line(self, line: TranscriptLine) -> None:
        self._lines.setdefault(line.session_id, []).append(line)

    async def transcript(self, session_id: str, last: int | None = None) -> list[TranscriptLine]:
        lines = self._lines.get(session_id, [])
        return list(lines[-last:] if last else lines)

    async def add_ticket(self, queue: str, visitor: str, body: str, at: datetime) -> Ticket:
        t = Ticket(next(self._ids), queue, visitor, body, at)
        self._tickets.append(t)
        return t

    async def tickets(self, queue: str, limit: int = 100, state: str | None = None, offset: int = 0) -> list[Ticket]:
        return [t for t in self._tickets if t.queue == queue and state in (None, t.state)][offset : offset + limit]

    async def visitor_tickets(self, visitor: str, limit: int = 50) -> list[Ticket]:
        """A visitor's tickets in every queue, newest first."""
        return [t for t in reversed(self._tickets) if t.visitor == visitor][:limit]

    async def get_ticket(self, ticket_id: int) -> Ticket | None:
        return next((t for t in self._tickets if t.id == ticket_id), None)

    def _change(self, ticket_id: int, **changes: object) -> bool:
        for i, t in enumerate(self._tickets):
            if t.id == ticket_id and t.state != "closed":
                self._tickets[i] = dataclasses.replace(t, **changes)  # type: ignore[arg-type]
                return True
        return False

    async def assign_ticket(self, ticket_id: int, agent: str) -> bool:
        return self._change(ticket_id, state="assigned", assignee=agent)

    async def close_ticket(self, ticket_id: int, at: datetime) -> bool:
        return self._change(ticket_id, state="closed", closed_at=at)

    async def reply_ticket(self, reply: TicketReply) -> bool:
        t = await self.get_ticket(reply.ticket_id)
        if t is None or t.state == "closed":
            return False
        if t.assignee is None:
            self._change(t.id, state="assigned", assignee=reply.agent)
        self._replies.append(reply)
        return True

    async def ticket_replies(self, ticket_id: int) -> list[TicketReply]:
        return [r for r in self._replies if r.ticket_id == ticket_id]

    async def put_canned(self, c: Canned) -> None:
        self._canned[(c.queue, c.owner, c.name)] = c

    async def delete_canned(self, queue: str, owner: str, name: str) -> bool:
        return self._canned.pop((queue, owner, name), None) is not None

    async def canned(self, queue: str, owners: tuple[str, ...]) -> list[Canned]:
        return sorted((c for c in self._canned.values() if c.queue == queue and c.owner in owners), key=lambda c: (c.owner, c.name))


# ----------------------------------------------------------------------------- SQL

queues_t = sa.Table(
    "cs_queues",
    metadata,
    sa.Column("name", indexed_string(64), primary_key=True),
    sa.Column("display_name", sa.String(191), nullable=False),
    sa.Column("welcome", sa.Text(), nullable=False),
    sa.Column("offline_text", sa.Text(), nullable=False),
    sa.Column("strategy", sa.String(16), nullable=False),
    sa.Column("capacity", sa.Integer(), nullable=False),
    sa.Column("idle_timeout", sa.Integer(), nullable=False),
    sa.Column("offer_timeout", sa.Integer(), nullable=False),
    sa.Column("max_misses", sa.Integer(), nullable=False),
    sa.Column("hours", sa.String(191), nullable=False),
    sa.Column("skills", sa.String(191), nullable=False, server_default=""),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("holidays", sa.String(1000), nullable=False, server_default=""),
    sa.Column("prechat", sa.Text(), nullable=True),  # cs_0006
    # The fencing token of the cluster node owning the queue (cs_0007; 0 without the cluster).
    sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"),
    sa.CheckConstraint("capacity >= 1", name="capacity_positive"),
    **MYSQL_TABLE_KWARGS,
)

members_t = sa.Table(
    "cs_members",
    metadata,
    sa.Column("queue", indexed_string(64), sa.ForeignKey("cs_queues.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("nick", sa.String(191), nullable=False),
    sa.Column("skills", sa.String(191), nullable=False, server_default=""),
    **MYSQL_TABLE_KWARGS,
)

sessions_t = sa.Table(
    "cs_sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("queue", indexed_string(64), nullable=False),
    sa.Column("entry", sa.String(64), nullable=False),
    sa.Column("visitor", indexed_string(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("line_seq", sa.BigInteger(), nullable=False),
    sa.Column("agent", sa.String(191), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_visitor_at", UtcDateTime(), nullable=False),
    sa.Column("assigned_at", UtcDateTime(), nullable=True),
    sa.Column("closed_at", UtcDateTime(), nullable=True),
    sa.Column("close_reason", sa.String(32), nullable=True),
    sa.Column("rating", sa.SmallInteger(), nullable=True),
    sa.Column("comment", sa.Text(), nullable=True),
    sa.Column("skills", sa.String(191), nullable=False, server_default=""),
    sa.Column("answers", sa.Text(), nullable=True),  # cs_0006
    sa.Index("ix_cs_sessions_queue_visitor", "queue", "visitor"),
    sa.Index("ix_cs_sessions_state", "state"),
    sa.CheckConstraint("rating IS NULL OR (rating >= 1 AND rating <= 5)", name="rating_range"),
    **MYSQL_TABLE_KWARGS,
)

transcripts_t = sa.Table(
    "cs_transcripts",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(32), sa.ForeignKey("cs_sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("nick", sa.String(191), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Index("ix_cs_transcripts_session_id", "session_id"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)

tickets_t = sa.Table(
    "cs_tickets",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("queue", indexed_string(64), nullable=False),
    sa.Column("visitor", sa.String(191), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_cs_tickets_queue", "queue"),
    sa.Index("ix_cs_tickets_visitor", "visitor"),  # a visitor's own tickets (cs_0002)
    sa.Column("state", sa.String(16), nullable=False, server_default="open"),  # cs_0004
    sa.Column("assignee", sa.String(191), nullable=True),
    sa.Column("closed_at", UtcDateTime(), nullable=True),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)

ticket_replies_t = sa.Table(
    "cs_ticket_replies",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("ticket_id", id_type(), sa.ForeignKey("cs_tickets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("agent", sa.String(191), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Index("ix_cs_ticket_replies_ticket_id", "ticket_id"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)


canned_t = sa.Table(
    "cs_canned",
    metadata,
    sa.Column("queue", indexed_string(64), sa.ForeignKey("cs_queues.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("owner", indexed_string(), primary_key=True),
    sa.Column("name", indexed_string(64), primary_key=True),
    sa.Column("text", sa.Text(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)


def _ticket(r: sa.Row) -> Ticket:
    return Ticket(int(r.id), r.queue, r.visitor, r.body, r.created_at, r.state, r.assignee, r.closed_at)

_QUEUE_COLS = [f.name for f in dataclasses.fields(QueueRecord)]
_SESSION_COLS = [f.name for f in dataclasses.fields(SessionRecord)]


def _queue(row: sa.Row) -> QueueRecord:
    return QueueRecord(**{c: getattr(row, c) for c in _QUEUE_COLS})


def _session(row: sa.Row) -> SessionRecord:
    return SessionRecord(**{c: getattr(row, c) for c in _SESSION_COLS})


class SqlCsRepository:
    """The customer-service tables on SQLite or MariaDB/MySQL."""

    def __init__(self, db: Database, outbox: Outbox = DISABLED) -> None:
        self.db = db
        self._outbox = outbox  # cs.* events (docs/webhooks.md)

    async def put_queue(self, q: QueueRecord) -> None:
        values = dataclasses.asdict(q)
        await self.db.run_txn(self._upsert_txn, queues_t, {"name": q.name}, values)

    @staticmethod
    async def _upsert_txn(conn: AsyncConnection, table: sa.Table, key: dict[str, object], values: dict[str, object]) -> None:
        where = sa.and_(*(table.c[k] == v for k, v in key.items()))
        res = await conn.execute(sa.update(table).where(where).values(**values))
        if res.rowcount == 0:
            # rowcount is "matched rows" for SQLite and (with client flag FOUND_ROWS) aiomysql;
            # check existence to be exact on every driver.
            exists = await conn.scalar(sa.select(sa.func.count()).select_from(table).where(where))
            if not exists:
                await conn.execute(sa.insert(table).values(**values))

    async def get_queue(self, name: str) -> QueueRecord | None:
        async with self.db.transaction(readonly=True) as conn:
            row = (await conn.execute(sa.select(queues_t).where(queues_t.c.name == name))).first()
        return _queue(row) if row else None

    async def list_queues(self) -> list[QueueRecord]:
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(sa.select(queues_t).order_by(queues_t.c.name))).all()
        return [_queue(r) for r in rows]

    async def delete_queue(self, name: str) -> bool:
        async with self.db.transaction() as conn:
            await conn.execute(sa.delete(members_t).where(members_t.c.queue == name))
            await conn.execute(sa.delete(canned_t).where(canned_t.c.queue == name))
            res = await conn.execute(sa.delete(queues_t).where(queues_t.c.name == name))
        return bool(res.rowcount)

    async def set_member(self, m: MemberRecord) -> None:
        await self.db.run_txn(self._upsert_txn, members_t, {"queue": m.queue, "jid": m.jid}, dataclasses.asdict(m))

    @staticmethod
    async def forget_member_txn(conn: AsyncConnection, jid: str) -> None:
        """Inside an account's deletion: it is no longer an agent or supervisor anywhere."""
        await conn.execute(sa.delete(members_t).where(members_t.c.jid == jid))

    async def remove_member(self, queue: str, jid: str) -> bool:
        async with self.db.transaction() as conn:
            res = await conn.execute(sa.delete(members_t).where(members_t.c.queue == queue, members_t.c.jid == jid))
        return bool(res.rowcount)

    async def members(self, queue: str | None = None) -> list[MemberRecord]:
        q = sa.select(members_t).order_by(members_t.c.queue, members_t.c.jid)
        if queue is not None:
            q = q.where(members_t.c.queue == queue)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [MemberRecord(r.queue, r.jid, r.role, r.nick, r.skills) for r in rows]

    async def queue_fence(self, name: str) -> int:
        async with self.db.transaction(readonly=True) as conn:
            value = await conn.scalar(sa.select(queues_t.c.fence).where(queues_t.c.name == name))
        return int(value or 0)

    async def claim_queue(self, name: str, fence: int) -> bool:
        return bool(await self.db.run_txn(self._claim_queue_txn, name, fence))

    async def open_chat(self, entry: str, visitor: str) -> SessionRecord | None:
        c = sessions_t.c
        q = sa.select(sessions_t).where(c.entry == entry, c.visitor == visitor, c.state.in_(OPEN_STATES)).order_by(c.created_at.desc(), c.id.desc()).limit(1)
        async with self.db.transaction(readonly=True) as conn:
            row = (await conn.execute(q)).first()
        return _session(row) if row else None

    @staticmethod
    async def _claim_queue_txn(conn: AsyncConnection, name: str, fence: int) -> bool:
        stored = await conn.scalar(sa.select(queues_t.c.fence).where(queues_t.c.name == name).with_for_update())
        if stored is None:
            return True
        if int(stored) > fence:
            return False
        await conn.execute(sa.update(queues_t).where(queues_t.c.name == name).values(fence=fence))
        return True

    @staticmethod
    async def _check_fence(conn: AsyncConnection, queue: str, fence: int) -> None:
        """The queue's row locked for this transaction; ``FencedOut`` when a newer owner wrote it."""
        if not fence:
            return
        stored = await conn.scalar(sa.select(queues_t.c.fence).where(queues_t.c.name == queue).with_for_update())
        if stored is not None and int(stored) > fence:
            raise FencedOut(f"queue {queue} is written with token {stored}, newer than {fence}")

    async def save_session(self, s: SessionRecord, fence: int = 0) -> None:
        values = dataclasses.asdict(s)
        # The rating is written only by rate(): a stale copy never erases it.
        values.pop("rating")
        values.pop("comment")
        await self.db.run_txn(self._save_fenced_txn, s, values, fence)

    async def _save_fenced_txn(self, conn: AsyncConnection, s: SessionRecord, values: dict[str, object], fence: int) -> None:
        await self._check_fence(conn, s.queue, fence)
        await self._save_session_txn(conn, s, values)

    async def claim_session(self, s: SessionRecord, state: str, agent: str | None, fence: int = 0, capacity: int | None = None) -> bool:
        """Save ``s`` only if the stored chat is still in ``state`` with ``agent`` (a conditional
        update, the row locked): of two nodes giving one chat to two agents, one wins. With
        ``capacity`` (a cluster: the agent's chats may live in queues other nodes hold), also
        only if ``s.agent`` holds fewer than ``capacity`` other offered or active chats in every
        queue: the agent's ``cs_members`` rows are locked first, so two nodes giving the same
        agent a chat at once count one after the other and never both exceed it."""
        values = dataclasses.asdict(s)
        values.pop("rating")
        values.pop("comment")
        return bool(await self.db.run_txn(self._claim_txn, s, values, state, agent, fence, capacity))

    async def _claim_txn(self, conn: AsyncConnection, s: SessionRecord, values: dict[str, object], state: str, agent: str | None, fence: int, capacity: int | None) -> bool:
        await self._check_fence(conn, s.queue, fence)
        c = sessions_t.c
        row = (await conn.execute(sa.select(c.state, c.agent).where(c.id == s.id).with_for_update())).first()
        if row is None or (row.state, row.agent) != (state, agent):
            return False
        if capacity is not None and s.agent is not None:
            # The per-agent gate (READ COMMITTED: the count below then sees every claim for this
            # agent that committed before; one still running holds these rows).
            await conn.execute(sa.select(members_t.c.queue).where(members_t.c.jid == s.agent).with_for_update())
            held = (await conn.execute(
                sa.select(sa.func.count()).select_from(sessions_t).where(c.agent == s.agent, c.state.in_(HELD_STATES), c.id != s.id)
            )).scalar_one()
            if held >= capacity:
                return False
        await self._save_session_txn(conn, s, values)
        return True

    async def _save_session_txn(self, conn: AsyncConnection, s: SessionRecord, values: dict[str, object]) -> None:
        """The upsert, and the events of the change it makes: the previous row is read under
        lock (opened: no row before; assigned: a first agent; closed: the state became closed)."""
        c = sessions_t.c
        before = None
        if self._outbox.enabled:
            before = (await conn.execute(sa.select(c.state, c.agent).where(c.id == s.id).with_for_update())).first()
        await self._upsert_txn(conn, sessions_t, {"id": s.id}, values)
        if not self._outbox.enabled:
            return
        subject = f"cs:{s.id}"
        now = datetime.now(UTC)
        if before is None:
            await self._outbox.write_txn(conn, E.CS_CHAT_OPENED, subject, {
                "id": s.id, "queue": s.queue, "visitor": s.visitor, "state": s.state}, s.created_at)
        if s.agent is not None and (before is None or before.agent != s.agent):
            await self._outbox.write_txn(conn, E.CS_CHAT_ASSIGNED, subject, {
                "id": s.id, "queue": s.queue, "visitor": s.visitor, "agent": s.agent}, s.assigned_at or now)
        if s.state == "closed" and (before is None or before.state != "closed"):
            await self._outbox.write_txn(conn, E.CS_CHAT_CLOSED, subject, {
                "id": s.id, "queue": s.queue, "visitor": s.visitor, "agent": s.agent, "reason": s.close_reason}, s.closed_at or now)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        async with self.db.transaction(readonly=True) as conn:
            row = (await conn.execute(sa.select(sessions_t).where(sessions_t.c.id == session_id))).first()
        return _session(row) if row else None

    async def open_sessions(self, queue: str | None = None) -> list[SessionRecord]:
        q = sa.select(sessions_t).where(sessions_t.c.state.in_(OPEN_STATES)).order_by(sessions_t.c.line_seq, sessions_t.c.id)
        if queue is not None:
            q = q.where(sessions_t.c.queue == queue)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [_session(r) for r in rows]

    async def sessions(self, queue: str, visitor: str | None = None, limit: int = 50) -> list[SessionRecord]:
        q = sa.select(sessions_t).where(sessions_t.c.queue == queue)
        if visitor is not None:
            q = q.where(sessions_t.c.visitor == visitor)
        q = q.order_by(sessions_t.c.created_at.desc(), sessions_t.c.id.desc()).limit(limit)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [_session(r) for r in rows]

    async def sessions_between(self, queue: str, start: datetime, end: datetime, limit: int = 10000) -> list[SessionRecord]:
        c = sessions_t.c
        q = sa.select(sessions_t).where(c.queue == queue, c.created_at >= start, c.created_at < end).order_by(c.created_at).limit(limit)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [_session(r) for r in rows]

    async def wait_stats(self, queue: str) -> tuple[int, float]:
        q = sa.select(sessions_t.c.created_at, sessions_t.c.assigned_at).where(
            sessions_t.c.queue == queue, sessions_t.c.assigned_at.is_not(None)
        )
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        waits = [(r.assigned_at - r.created_at).total_seconds() for r in rows]
        return len(waits), (sum(waits) / len(waits) if waits else 0.0)

    async def rate(self, session_id: str, score: int, comment: str) -> bool:
        _check_rating(score)
        async with self.db.transaction() as conn:
            res = await conn.execute(
                sa.update(sessions_t)
                .where(sessions_t.c.id == session_id, sessions_t.c.state == "closed", sessions_t.c.rating.is_(None))
                .values(rating=score, comment=comment)
            )
            if res.rowcount:
                await self._outbox.write_txn(conn, E.CS_CHAT_RATED, f"cs:{session_id}", {
                    "id": session_id, "rating": score, "comment": comment}, datetime.now(UTC))
        return bool(res.rowcount)

    async def add_line(self, line: TranscriptLine) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(sa.insert(transcripts_t).values(**dataclasses.asdict(line)))

    async def transcript(self, session_id: str, last: int | None = None) -> list[TranscriptLine]:
        q = sa.select(transcripts_t).where(transcripts_t.c.session_id == session_id)
        if last:
            q = q.order_by(transcripts_t.c.id.desc()).limit(last)
        else:
            q = q.order_by(transcripts_t.c.id)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        if last:
            rows = list(reversed(rows))
        return [TranscriptLine(r.session_id, r.at, r.role, r.nick, r.body) for r in rows]

    async def add_ticket(self, queue: str, visitor: str, body: str, at: datetime) -> Ticket:
        async with self.db.transaction() as conn:
            res = await conn.execute(sa.insert(tickets_t).values(queue=queue, visitor=visitor, body=body, created_at=at))
            key = res.inserted_primary_key
            assert key is not None
            (tid,) = key
            await self._outbox.write_txn(conn, E.CS_TICKET_CREATED, f"cs-ticket:{tid}", {
                "id": int(tid), "queue": queue, "visitor": visitor, "body": body}, at)
        return Ticket(int(tid), queue, visitor, body, at)

    async def tickets(self, queue: str, limit: int = 100, state: str | None = None, offset: int = 0) -> list[Ticket]:
        q = sa.select(tickets_t).where(tickets_t.c.queue == queue)
        if state is not None:
            q = q.where(tickets_t.c.state == state)
        q = q.order_by(tickets_t.c.id).offset(offset).limit(limit)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [_ticket(r) for r in rows]

    async def visitor_tickets(self, visitor: str, limit: int = 50) -> list[Ticket]:
        """A visitor's tickets in every queue, newest first."""
        q = sa.select(tickets_t).where(tickets_t.c.visitor == visitor).order_by(tickets_t.c.id.desc()).limit(limit)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [_ticket(r) for r in rows]

    async def get_ticket(self, ticket_id: int) -> Ticket | None:
        async with self.db.transaction(readonly=True) as conn:
            row = (await conn.execute(sa.select(tickets_t).where(tickets_t.c.id == ticket_id))).first()
        return _ticket(row) if row else None

    async def _change(self, ticket_id: int, **values: object) -> bool:
        """A conditional update: a closed ticket does not change (the one winner of a race)."""
        c = tickets_t.c
        async with self.db.transaction() as conn:
            res = await conn.execute(sa.update(tickets_t).where(c.id == ticket_id, c.state != "closed").values(**values))
        return bool(res.rowcount)

    async def assign_ticket(self, ticket_id: int, agent: str) -> bool:
        return await self._change(ticket_id, state="assigned", assignee=agent)

    async def close_ticket(self, ticket_id: int, at: datetime) -> bool:
        return await self._change(ticket_id, state="closed", closed_at=at)

    async def reply_ticket(self, reply: TicketReply) -> bool:
        """Store ``reply`` unless the ticket is closed; an unassigned ticket becomes the replier's."""
        c = tickets_t.c
        async with self.db.transaction() as conn:
            res = await conn.execute(sa.update(tickets_t).where(c.id == reply.ticket_id, c.state != "closed", c.assignee.is_(None))
                                     .values(state="assigned", assignee=reply.agent))
            if not res.rowcount:
                open_ = await conn.scalar(sa.select(sa.func.count()).select_from(tickets_t).where(c.id == reply.ticket_id, c.state != "closed"))
                if not open_:
                    return False
            await conn.execute(sa.insert(ticket_replies_t).values(ticket_id=reply.ticket_id, at=reply.at, agent=reply.agent, body=reply.body))
        return True

    async def ticket_replies(self, ticket_id: int) -> list[TicketReply]:
        q = sa.select(ticket_replies_t).where(ticket_replies_t.c.ticket_id == ticket_id).order_by(ticket_replies_t.c.id)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [TicketReply(int(r.ticket_id), r.at, r.agent, r.body) for r in rows]

    async def put_canned(self, c: Canned) -> None:
        await self.db.run_txn(self._upsert_txn, canned_t, {"queue": c.queue, "owner": c.owner, "name": c.name}, dataclasses.asdict(c))

    async def delete_canned(self, queue: str, owner: str, name: str) -> bool:
        c = canned_t.c
        async with self.db.transaction() as conn:
            res = await conn.execute(sa.delete(canned_t).where(c.queue == queue, c.owner == owner, c.name == name))
        return bool(res.rowcount)

    async def canned(self, queue: str, owners: tuple[str, ...]) -> list[Canned]:
        c = canned_t.c
        q = sa.select(canned_t).where(c.queue == queue, c.owner.in_(owners)).order_by(c.owner, c.name)
        async with self.db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [Canned(r.queue, r.owner, r.name, r.text) for r in rows]
