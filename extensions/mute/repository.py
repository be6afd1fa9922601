"""Group mute (urn:xmppd:mute:0, docs/mute.md): mutes, mute-all and the audit log, in storage.

A mute belongs to a bare JID in one room (``room`` is the room's bare JID) or on the whole
platform (``room`` is :data:`PLATFORM`, the empty string). It ends at ``until`` (``None``: when
lifted). Expiry deletes a row only if its end time is still the one the timer was armed for
(:meth:`MuteRepository.expire`), so a mute renewed in the meantime survives an old timer.
Every action is appended to ``mute_audit``, which is never updated.

Rows have no foreign key to ``accounts``: the feature removes an account's mutes when the
account is deleted, and the audit log keeps what happened.
"""

from __future__ import annotations

import builtins
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.storage.engine import Database, is_unique_violation
from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, indexed_string, metadata
from xmppd.timestamps import millis
from xmppd.webhooks import events as E
from xmppd.webhooks.outbox import DISABLED, Outbox

__all__ = [
    "ACTIONS",
    "Ban",
    "Keyword",
    "PLATFORM",
    "SOURCES",
    "AuditEntry",
    "MemoryMuteRepository",
    "Mute",
    "MuteAll",
    "MuteRepository",
    "NewAuditEntry",
    "SqlMuteRepository",
]

#: The ``room`` of a platform mute (server-wide, set by server administrators).
PLATFORM: Final = ""
#: Where a mute came from: this protocol or its ad-hoc commands, or an XEP-0045 voice revoke.
SOURCES: Final = ("mute", "voice")
#: What the audit log records.
ACTIONS: Final = ("mute", "unmute", "expire", "mute-all", "unmute-all")


@dataclass(frozen=True, slots=True)
class Mute:
    room: str  # the room's bare JID, or PLATFORM
    jid: str  # the muted bare JID
    until: datetime | None  # None: until lifted
    reason: str | None
    actor: str  # who muted (bare JID; the server domain for the server itself)
    created_at: datetime
    source: str = "mute"

    def active(self, now: datetime) -> bool:
        return self.until is None or self.until > now


@dataclass(frozen=True, slots=True)
class MuteAll:
    """A room where only owners, admins (and the room's exemptions) may speak."""

    room: str
    actor: str
    reason: str | None
    since: datetime


@dataclass(frozen=True, slots=True)
class Ban:
    """A timed XEP-0045 ban: ``jid`` is an outcast of ``room`` until ``until``, when the room's
    owner node removes the affiliation."""

    room: str
    jid: str
    until: datetime
    reason: str | None
    actor: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Keyword:
    """A word of the platform keyword list and what it does (block, mask, mute for ``minutes``)."""

    word: str  # lower case
    action: str
    minutes: int
    actor: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewAuditEntry:
    at: datetime
    actor: str
    action: str
    room: str  # PLATFORM for platform mutes
    target: str | None = None  # None for mute-all / unmute-all
    seconds: int | None = None
    until: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    room: str
    target: str | None
    seconds: int | None
    until: datetime | None
    reason: str | None


_Timed = TypeVar("_Timed", Mute, Ban)  # a mute or a ban: room, jid, until


def _check_mute(m: Mute) -> None:
    if m.source not in SOURCES:
        raise ValueError(f"mute source is one of {SOURCES}, not {m.source!r}")
    if not m.jid:
        raise ValueError("a mute names a JID")


def _check_audit(e: NewAuditEntry) -> None:
    if e.action not in ACTIONS:
        raise ValueError(f"audit action is one of {ACTIONS}, not {e.action!r}")
    if e.seconds is not None and e.seconds < 0:
        raise ValueError("seconds are not negative")


# -- live tables (the migration spells the same thing out, frozen) ---------------------------

mutes_t = sa.Table(
    "mute_mutes",
    metadata,
    sa.Column("room", indexed_string(), primary_key=True),
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("until", UtcDateTime(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("actor", indexed_string(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("source", sa.String(8), nullable=False),
    sa.CheckConstraint("source IN ('mute', 'voice')", name="source_known"),
    sa.Index(None, "jid"),
    **MYSQL_TABLE_KWARGS,
)

rooms_t = sa.Table(
    "mute_rooms",
    metadata,
    sa.Column("room", indexed_string(), primary_key=True),
    sa.Column("actor", indexed_string(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("since", UtcDateTime(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)

audit_t = sa.Table(
    "mute_audit",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("actor", indexed_string(), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("room", indexed_string(), nullable=False),
    sa.Column("target", indexed_string(), nullable=True),
    sa.Column("seconds", sa.BigInteger(), nullable=True),
    sa.Column("until", UtcDateTime(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.CheckConstraint("action IN ('mute', 'unmute', 'expire', 'mute-all', 'unmute-all')", name="action_known"),
    sa.Index(None, "room", "id"),
    sa.Index(None, "target", "id"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)


bans_t = sa.Table(
    "mute_bans",
    metadata,
    sa.Column("room", indexed_string(), primary_key=True),
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("until", UtcDateTime(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("actor", indexed_string(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index(None, "until"),
    **MYSQL_TABLE_KWARGS,
)

keywords_t = sa.Table(
    "mute_keywords",
    metadata,
    sa.Column("word", indexed_string(), primary_key=True),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("minutes", sa.Integer(), nullable=False),
    sa.Column("actor", indexed_string(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("action IN ('block', 'mask', 'mute')", name="action_known"),
    **MYSQL_TABLE_KWARGS,
)

slow_t = sa.Table(
    "mute_slow",
    metadata,
    sa.Column("room", indexed_string(), primary_key=True),
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("at_ms", sa.BigInteger(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)

appeals_t = sa.Table(
    "mute_appeals",
    metadata,
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("mute_since_ms", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("ticket", sa.BigInteger(), nullable=True),
    sa.Column("at", UtcDateTime(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def since_ms(when: datetime) -> int:
    """A mute's start as whole milliseconds: the key of its appeal (every backend keeps it exactly)."""
    return (when - _EPOCH) // timedelta(milliseconds=1)


class MuteRepository(Protocol):
    """Storage of mutes, mute-all and the audit log."""

    async def put(self, mute: Mute) -> None:
        """Store ``mute``, replacing the one of the same (room, jid)."""

    async def get(self, room: str, jid: str) -> Mute | None: ...

    async def remove(self, room: str, jid: str) -> Mute | None:
        """Lift a mute; returns what was stored (None: there was none)."""

    async def expire(self, room: str, jid: str, until: datetime) -> bool:
        """Delete the mute only if it still ends at ``until``; True when it did."""

    async def mutes(self, room: str | None = None) -> builtins.list[Mute]:
        """Every mute (``room`` None), or those of one room (PLATFORM: platform mutes)."""

    async def forget_room(self, room: str) -> None:
        """A destroyed room: its mutes and mute-all go (the audit log stays)."""

    async def forget_jid(self, jid: str) -> None:
        """A deleted account: its mutes everywhere go (the audit log stays)."""

    async def set_mute_all(self, state: MuteAll) -> None: ...

    async def clear_mute_all(self, room: str) -> bool:
        """True when the room was muted for everyone."""

    async def mute_alls(self) -> builtins.list[MuteAll]: ...

    async def record(self, entry: NewAuditEntry) -> int:
        """Append to the audit log; returns the entry's id (increasing)."""

    async def audit(
        self, *, room: str | None = None, target: str | None = None, before: int | None = None, limit: int = 50
    ) -> builtins.list[AuditEntry]:
        """Newest first; ``before`` an entry id for the next page."""

    # timed bans
    async def put_ban(self, ban: Ban) -> None:
        """Store ``ban``, replacing the one of the same (room, jid)."""

    async def remove_ban(self, room: str, jid: str) -> bool:
        """The ban no longer ends by itself (lifted, made permanent); True when there was one."""

    async def expire_ban(self, room: str, jid: str, until: datetime) -> bool:
        """Delete the ban only if it still ends at ``until``; True when it did."""

    async def bans(self, room: str | None = None) -> builtins.list[Ban]: ...

    # the platform keyword list
    async def put_keyword(self, kw: Keyword) -> None:
        """Add ``kw`` or replace the word's action."""

    async def remove_keyword(self, word: str) -> bool: ...

    async def keywords(self) -> builtins.list[Keyword]: ...

    # slow mode: when each member last spoke in a room (milliseconds)
    async def slow_times(self, room: str) -> dict[str, int]: ...

    async def set_slow_time(self, room: str, jid: str, at_ms: int) -> None: ...

    async def forget_slow(self, room: str) -> None: ...

    # appeals: one per platform mute, keyed by the mute's start
    async def add_appeal(self, jid: str, mute_since: int, at: datetime) -> bool:
        """Record the appeal; False when this mute was appealed already (by any node)."""

    async def set_appeal_ticket(self, jid: str, mute_since: int, ticket: int | None) -> None:
        """The ticket the appeal became; None: opening it failed, the appeal is forgotten."""


# -- memory ---------------------------------------------------------------------------------


class MemoryMuteRepository(MuteRepository):
    def __init__(self) -> None:
        self._mutes: dict[tuple[str, str], Mute] = {}
        self._all: dict[str, MuteAll] = {}
        self._audit: builtins.list[AuditEntry] = []
        self._ids = itertools.count(1)
        self._bans: dict[tuple[str, str], Ban] = {}
        self._keywords: dict[str, Keyword] = {}
        self._slow: dict[str, dict[str, int]] = {}
        self._appeals: dict[tuple[str, int], int | None] = {}

    async def put(self, mute: Mute) -> None:
        _check_mute(mute)
        self._mutes[(mute.room, mute.jid)] = mute

    async def get(self, room: str, jid: str) -> Mute | None:
        return self._mutes.get((room, jid))

    async def remove(self, room: str, jid: str) -> Mute | None:
        return self._mutes.pop((room, jid), None)

    async def expire(self, room: str, jid: str, until: datetime) -> bool:
        return _expire(self._mutes, (room, jid), until)

    async def mutes(self, room: str | None = None) -> builtins.list[Mute]:
        return _in_room(self._mutes, room)

    async def forget_room(self, room: str) -> None:
        for key in [k for k in self._mutes if k[0] == room]:
            del self._mutes[key]
        for key in [k for k in self._bans if k[0] == room]:
            del self._bans[key]
        self._all.pop(room, None)
        self._slow.pop(room, None)

    async def forget_jid(self, jid: str) -> None:
        for key in [k for k in self._mutes if k[1] == jid]:
            del self._mutes[key]

    async def set_mute_all(self, state: MuteAll) -> None:
        self._all[state.room] = state

    async def clear_mute_all(self, room: str) -> bool:
        return self._all.pop(room, None) is not None

    async def mute_alls(self) -> builtins.list[MuteAll]:
        return sorted(self._all.values(), key=lambda s: s.room)

    async def record(self, entry: NewAuditEntry) -> int:
        _check_audit(entry)
        e = AuditEntry(next(self._ids), entry.at, entry.actor, entry.action, entry.room, entry.target,
                       entry.seconds, entry.until, entry.reason)
        self._audit.append(e)
        return e.id

    async def audit(
        self, *, room: str | None = None, target: str | None = None, before: int | None = None, limit: int = 50
    ) -> builtins.list[AuditEntry]:
        out = [
            e for e in reversed(self._audit)
            if (room is None or e.room == room) and (target is None or e.target == target) and (before is None or e.id < before)
        ]
        return out[:limit]

    async def put_ban(self, ban: Ban) -> None:
        self._bans[(ban.room, ban.jid)] = ban

    async def remove_ban(self, room: str, jid: str) -> bool:
        return self._bans.pop((room, jid), None) is not None

    async def expire_ban(self, room: str, jid: str, until: datetime) -> bool:
        return _expire(self._bans, (room, jid), until)

    async def bans(self, room: str | None = None) -> builtins.list[Ban]:
        return _in_room(self._bans, room)

    async def put_keyword(self, kw: Keyword) -> None:
        self._keywords[kw.word] = kw

    async def remove_keyword(self, word: str) -> bool:
        return self._keywords.pop(word, None) is not None

    async def keywords(self) -> builtins.list[Keyword]:
        return sorted(self._keywords.values(), key=lambda k: k.word)

    async def slow_times(self, room: str) -> dict[str, int]:
        return dict(self._slow.get(room, {}))

    async def set_slow_time(self, room: str, jid: str, at_ms: int) -> None:
        self._slow.setdefault(room, {})[jid] = at_ms

    async def forget_slow(self, room: str) -> None:
        self._slow.pop(room, None)

    async def add_appeal(self, jid: str, mute_since: int, at: datetime) -> bool:
        if (jid, mute_since) in self._appeals:
            return False
        self._appeals[(jid, mute_since)] = None
        return True

    async def set_appeal_ticket(self, jid: str, mute_since: int, ticket: int | None) -> None:
        if ticket is None:
            self._appeals.pop((jid, mute_since), None)
        else:
            self._appeals[(jid, mute_since)] = ticket


# -- SQL ------------------------------------------------------------------------------------


def _expire(store: dict[tuple[str, str], _Timed], key: tuple[str, str], until: datetime) -> bool:
    """(Memory twin.) Drop ``store[key]`` if it still ends at ``until`` (not renewed since)."""
    held = store.get(key)
    if held is None or held.until != until:
        return False
    del store[key]
    return True


def _in_room(store: dict[tuple[str, str], _Timed], room: str | None) -> builtins.list[_Timed]:
    """(Memory twin.) The mutes or bans of ``room`` (None: all), by room and JID."""
    return sorted((x for x in store.values() if room is None or x.room == room), key=lambda x: (x.room, x.jid))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _mute(row: sa.Row) -> Mute:  # type: ignore[type-arg]
    return Mute(row.room, row.jid, row.until, row.reason, row.actor, row.created_at, row.source)


def _subject(room: str, jid: str) -> str:
    return f"mute:{room}:{jid}"


class SqlMuteRepository(MuteRepository):
    def __init__(self, db: Database, outbox: Outbox = DISABLED) -> None:
        self._db = db
        self._outbox = outbox  # mute.set / mute.lifted (docs/webhooks.md)

    async def put(self, mute: Mute) -> None:
        _check_mute(mute)
        await self._db.run_txn(self._put_txn, mute)

    async def _put_txn(self, conn: AsyncConnection, mute: Mute) -> None:
        c = mutes_t.c
        await conn.execute(sa.delete(mutes_t).where(c.room == mute.room, c.jid == mute.jid))
        await conn.execute(sa.insert(mutes_t).values(
            room=mute.room, jid=mute.jid, until=mute.until, reason=mute.reason, actor=mute.actor,
            created_at=mute.created_at, source=mute.source))
        await self._outbox.write_txn(conn, E.MUTE_SET, _subject(mute.room, mute.jid), {
            "room": mute.room, "jid": mute.jid, "until": millis(mute.until) if mute.until else None,
            "reason": mute.reason, "actor": mute.actor, "source": mute.source,
        }, mute.created_at)

    async def get(self, room: str, jid: str) -> Mute | None:
        c = mutes_t.c
        async with self._db.transaction(readonly=True) as conn:
            row = (await conn.execute(sa.select(mutes_t).where(c.room == room, c.jid == jid))).first()
        return _mute(row) if row is not None else None

    async def remove(self, room: str, jid: str) -> Mute | None:
        return await self._db.run_txn(self._remove_txn, room, jid)

    async def _remove_txn(self, conn: AsyncConnection, room: str, jid: str) -> Mute | None:
        c = mutes_t.c
        row = (await conn.execute(sa.select(mutes_t).where(c.room == room, c.jid == jid).with_for_update())).first()
        if row is None:
            return None
        await conn.execute(sa.delete(mutes_t).where(c.room == room, c.jid == jid))
        await self._outbox.write_txn(conn, E.MUTE_LIFTED, _subject(room, jid), {"room": room, "jid": jid, "expired": False}, _utcnow())
        return _mute(row)

    async def expire(self, room: str, jid: str, until: datetime) -> bool:
        c = mutes_t.c
        async with self._db.transaction() as conn:
            res = await conn.execute(sa.delete(mutes_t).where(c.room == room, c.jid == jid, c.until == until))
            if res.rowcount:
                await self._outbox.write_txn(conn, E.MUTE_LIFTED, _subject(room, jid), {"room": room, "jid": jid, "expired": True}, until)
        return bool(res.rowcount)

    async def mutes(self, room: str | None = None) -> builtins.list[Mute]:
        c = mutes_t.c
        q = sa.select(mutes_t).order_by(c.room, c.jid)
        if room is not None:
            q = q.where(c.room == room)
        async with self._db.transaction(readonly=True) as conn:
            return [_mute(r) for r in (await conn.execute(q)).all()]

    async def forget_room(self, room: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(sa.delete(mutes_t).where(mutes_t.c.room == room))
            await conn.execute(sa.delete(rooms_t).where(rooms_t.c.room == room))
            await conn.execute(sa.delete(bans_t).where(bans_t.c.room == room))
            await conn.execute(sa.delete(slow_t).where(slow_t.c.room == room))

    async def forget_jid(self, jid: str) -> None:
        await self._db.run_txn(self.forget_jid_txn, jid)

    @staticmethod
    async def forget_jid_txn(conn: AsyncConnection, jid: str) -> None:
        await conn.execute(sa.delete(mutes_t).where(mutes_t.c.jid == jid))

    async def set_mute_all(self, state: MuteAll) -> None:
        await self._db.run_txn(self._set_all_txn, state)

    @staticmethod
    async def _set_all_txn(conn: AsyncConnection, state: MuteAll) -> None:
        await conn.execute(sa.delete(rooms_t).where(rooms_t.c.room == state.room))
        await conn.execute(sa.insert(rooms_t).values(room=state.room, actor=state.actor, reason=state.reason, since=state.since))

    async def clear_mute_all(self, room: str) -> bool:
        async with self._db.transaction() as conn:
            res = await conn.execute(sa.delete(rooms_t).where(rooms_t.c.room == room))
        return bool(res.rowcount)

    async def mute_alls(self) -> builtins.list[MuteAll]:
        async with self._db.transaction(readonly=True) as conn:
            rows = (await conn.execute(sa.select(rooms_t).order_by(rooms_t.c.room))).all()
        return [MuteAll(r.room, r.actor, r.reason, r.since) for r in rows]

    async def record(self, entry: NewAuditEntry) -> int:
        _check_audit(entry)
        async with self._db.transaction() as conn:
            res = await conn.execute(sa.insert(audit_t).values(
                at=entry.at, actor=entry.actor, action=entry.action, room=entry.room, target=entry.target,
                seconds=entry.seconds, until=entry.until, reason=entry.reason))
        return int(res.inserted_primary_key[0])  # type: ignore[index]

    async def audit(
        self, *, room: str | None = None, target: str | None = None, before: int | None = None, limit: int = 50
    ) -> builtins.list[AuditEntry]:
        c = audit_t.c
        q = sa.select(audit_t).order_by(c.id.desc()).limit(limit)
        if room is not None:
            q = q.where(c.room == room)
        if target is not None:
            q = q.where(c.target == target)
        if before is not None:
            q = q.where(c.id < before)
        async with self._db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [AuditEntry(r.id, r.at, r.actor, r.action, r.room, r.target, r.seconds, r.until, r.reason) for r in rows]

    # -- timed bans

    async def put_ban(self, ban: Ban) -> None:
        c = bans_t.c
        async with self._db.transaction() as conn:
            await conn.execute(sa.delete(bans_t).where(c.room == ban.room, c.jid == ban.jid))
            await conn.execute(sa.insert(bans_t).values(room=ban.room, jid=ban.jid, until=ban.until, reason=ban.reason,
                                                        actor=ban.actor, created_at=ban.created_at))

    async def remove_ban(self, room: str, jid: str) -> bool:
        c = bans_t.c
        async with self._db.transaction() as conn:
            res = await conn.execute(sa.delete(bans_t).where(c.room == room, c.jid == jid))
        return bool(res.rowcount)

    async def expire_ban(self, room: str, jid: str, until: datetime) -> bool:
        c = bans_t.c
        async with self._db.transaction() as conn:
            res = await conn.execute(sa.delete(bans_t).where(c.room == room, c.jid == jid, c.until == until))
        return bool(res.rowcount)

    async def bans(self, room: str | None = None) -> builtins.list[Ban]:
        c = bans_t.c
        q = sa.select(bans_t).order_by(c.room, c.jid)
        if room is not None:
            q = q.where(c.room == room)
        async with self._db.transaction(readonly=True) as conn:
            rows = (await conn.execute(q)).all()
        return [Ban(r.room, r.jid, r.until, r.reason, r.actor, r.created_at) for r in rows]

    # -- the platform keyword list

    async def put_keyword(self, kw: Keyword) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(sa.delete(keywords_t).where(keywords_t.c.word == kw.word))
            await conn.execute(sa.insert(keywords_t).values(word=kw.word, action=kw.action, minutes=kw.minutes,
                                                            actor=kw.actor, created_at=kw.created_at))

    async def remove_keyword(self, word: str) -> bool:
        async with self._db.transaction() as conn:
            res = await conn.execute(sa.delete(keywords_t).where(keywords_t.c.word == word))
        return bool(res.rowcount)

    async def keywords(self) -> builtins.list[Keyword]:
        async with self._db.transaction(readonly=True) as conn:
            rows = (await conn.execute(sa.select(keywords_t).order_by(keywords_t.c.word))).all()
        return [Keyword(r.word, r.action, r.minutes, r.actor, r.created_at) for r in rows]

    # -- slow mode

    async def slow_times(self, room: str) -> dict[str, int]:
        async with self._db.transaction(readonly=True) as conn:
            rows = (await conn.execute(sa.select(slow_t.c.jid, slow_t.c.at_ms).where(slow_t.c.room == room))).all()
        return {r.jid: r.at_ms for r in rows}

    async def set_slow_time(self, room: str, jid: str, at_ms: int) -> None:
        c = slow_t.c
        async with self._db.transaction() as conn:
            res = await conn.execute(sa.update(slow_t).where(c.room == room, c.jid == jid).values(at_ms=at_ms))
            if not res.rowcount:
                await conn.execute(sa.insert(slow_t).values(room=room, jid=jid, at_ms=at_ms))

    async def forget_slow(self, room: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(sa.delete(slow_t).where(slow_t.c.room == room))

    # -- appeals

    async def add_appeal(self, jid: str, mute_since: int, at: datetime) -> bool:
        try:
            async with self._db.transaction() as conn:
                await conn.execute(sa.insert(appeals_t).values(jid=jid, mute_since_ms=mute_since, ticket=None, at=at))
        except IntegrityError as exc:
            if is_unique_violation(exc):
                return False
            raise
        return True

    async def set_appeal_ticket(self, jid: str, mute_since: int, ticket: int | None) -> None:
        c = appeals_t.c
        where = (c.jid == jid, c.mute_since_ms == mute_since)
        async with self._db.transaction() as conn:
            if ticket is None:
                await conn.execute(sa.delete(appeals_t).where(*where))
            else:
                await conn.execute(sa.update(appeals_t).where(*where).values(ticket=ticket))
