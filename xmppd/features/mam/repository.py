"""XEP-0313 message archive storage: the repository (Protocol, SQL, in-memory twin).

One table for every archive, accounts and rooms alike: ``owner`` is the archive's bare JID.
``seq`` (the primary key, increasing with insertion) is the archive order; ``stanza_id`` is
the public XEP-0359 id. Pages are index range scans: ``(owner, seq)`` for plain paging,
``(owner, with_jid, seq)`` for the ``with`` filter, ``(owner, ts)`` for ``start``/``end``, and
``(owner, stanza_id)`` (unique) to turn an RSM ``after``/``before`` id into a position.
Timestamps are integer microseconds since the epoch (UTC), exact on every backend.
"""
from __future__ import annotations

import bisect
import functools
import json
import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, id_type, indexed_string, metadata

__all__ = [
    "ArchiveQuery",
    "ArchivedMessage",
    "MamRepository",
    "MemoryMamRepository",
    "Page",
    "Prefs",
    "SqlMamRepository",
    "UnknownId",
    "mam_messages",
    "mam_prefs",
]

mam_messages = sa.Table(
    "mam_messages",
    metadata,
    sa.Column("seq", id_type(), primary_key=True, autoincrement=True),
    sa.Column("owner", indexed_string(), nullable=False),
    sa.Column("stanza_id", sa.String(64), nullable=False),
    sa.Column("ts", sa.BigInteger(), nullable=False),
    sa.Column("with_jid", indexed_string(), nullable=False),
    sa.Column("with_resource", sa.String(1023), nullable=False, default=""),
    sa.Column("stanza", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
    sa.Index("ix_mam_messages_owner_seq", "owner", "seq"),
    sa.Index("ix_mam_messages_owner_ts", "owner", "ts"),
    sa.Index("ix_mam_messages_owner_with_jid_seq", "owner", "with_jid", "seq"),
    sa.Index("uq_mam_messages_owner_stanza_id", "owner", "stanza_id", unique=True),
    sa.Index("ix_mam_messages_ts", "ts"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)

_COLUMNS = "owner, stanza_id, ts, with_jid, with_resource, stanza"
_INSERT_SQL = {  # by DBAPI paramstyle: sqlite3 (qmark), aiomysql (format / pyformat)
    "qmark": f"INSERT INTO mam_messages ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
    "format": f"INSERT INTO mam_messages ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
    "pyformat": f"INSERT INTO mam_messages ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
}

# Rows per multi-row INSERT on SQLite: 6 parameters a row, under its limit (32766 since 3.32, 999 before).
_SQLITE_CHUNK = 500 if sqlite3.sqlite_version_info >= (3, 32) else 166


@functools.lru_cache(maxsize=8)
def _sqlite_insert(n: int) -> str:
    return f"INSERT INTO mam_messages ({_COLUMNS}) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)


mam_prefs = sa.Table(
    "mam_prefs",
    metadata,
    sa.Column("owner", indexed_string(), primary_key=True),
    sa.Column("default_mode", sa.String(8), nullable=False),
    sa.Column("always_jids", sa.Text(), nullable=False),  # JSON list of bare JIDs
    sa.Column("never_jids", sa.Text(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)


class UnknownId(LookupError):
    """An RSM ``after``/``before`` id that is not in this archive."""


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    owner: str  # bare JID of the archive (an account or a room)
    stanza_id: str  # XEP-0359 id, unique per archive
    ts: int  # microseconds since the epoch, UTC
    with_jid: str  # bare JID of the other party (rooms: the room itself)
    with_resource: str  # its resource, "" for none
    stanza: str  # the serialised message
    seq: int = 0  # archive order, assigned when stored


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    owner: str
    max: int
    with_jid: str | None = None  # bare JID ...
    with_resource: str | None = None  # ... and, for a full-JID filter, its resource
    start: int | None = None  # inclusive, microseconds
    end: int | None = None  # inclusive
    after_id: str | None = None  # XEP-0313 v0.7 filters: exclusive bounds by id
    before_id: str | None = None
    ids: tuple[str, ...] | None = None
    after: str | None = None  # XEP-0059 paging: the page after this id ...
    before: str | None = None  # ... or before it; "" is the last page


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ArchivedMessage]
    complete: bool  # no more results in the direction of the query
    count: int  # every message matching the filters


@dataclass(frozen=True, slots=True)
class Prefs:
    default: str = "always"  # always | never | roster
    always: tuple[str, ...] = field(default_factory=tuple)
    never: tuple[str, ...] = field(default_factory=tuple)


class MamRepository(Protocol):
    async def store_many(self, messages: list[ArchivedMessage]) -> None:
        """Append messages (one transaction); a ``(owner, stanza_id)`` already stored is skipped."""
        ...

    async def query(self, q: ArchiveQuery) -> Page:
        """One page; raises ``UnknownId`` for an RSM/filter id not in the archive."""
        ...

    async def purge_before(self, ts: int) -> int:
        """Delete every message older than ``ts``; returns how many."""
        ...

    async def delete_owner(self, owner: str) -> int: ...

    async def get_prefs(self, owner: str) -> Prefs | None: ...

    async def set_prefs(self, owner: str, prefs: Prefs) -> None: ...


# ---------------------------------------------------------------------------------- SQL


class SqlMamRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def store_many(self, messages: list[ArchivedMessage]) -> None:
        if messages:
            await self._db.run_txn(self._store_txn, messages)

    @staticmethod
    async def _store_txn(conn: AsyncConnection, messages: list[ArchivedMessage]) -> None:
        # The hot write: one prebuilt statement in the driver's paramstyle, tuples straight to
        # the DBAPI cursor's executemany (no per-row dicts, no statement compilation).
        paramstyle = conn.dialect.paramstyle
        sql = _INSERT_SQL[paramstyle]
        rows = [(m.owner, m.stanza_id, m.ts, m.with_jid, m.with_resource, m.stanza) for m in messages]
        try:
            async with conn.begin_nested():
                if paramstyle == "qmark":
                    # SQLite: multi-row VALUES, one statement step per chunk instead of one per
                    # row (sqlite3's executemany takes the GIL back after every row, and the
                    # event loop thread holds it most of the time). aiomysql's executemany
                    # already rewrites into multi-row VALUES.
                    for i in range(0, len(rows), _SQLITE_CHUNK):
                        chunk = rows[i : i + _SQLITE_CHUNK]
                        await conn.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(v for row in chunk for v in row))
                else:
                    await conn.exec_driver_sql(sql, rows)
        except sa.exc.IntegrityError:  # a duplicate id (a retried batch): insert one by one
            for row in rows:
                try:
                    async with conn.begin_nested():
                        await conn.exec_driver_sql(sql, row)
                except sa.exc.IntegrityError:
                    pass

    async def query(self, q: ArchiveQuery) -> Page:
        return await self._db.read_txn(self._query_txn, q)

    @staticmethod
    async def _seq_of(conn: AsyncConnection, owner: str, stanza_id: str) -> int:
        t = mam_messages.c
        seq = (await conn.execute(sa.select(t.seq).where(t.owner == owner, t.stanza_id == stanza_id))).scalar()
        if seq is None:
            raise UnknownId(stanza_id)
        return int(seq)

    @classmethod
    async def _query_txn(cls, conn: AsyncConnection, q: ArchiveQuery) -> Page:
        t = mam_messages.c
        cond: list[Any] = [t.owner == q.owner]
        if q.with_jid is not None:
            cond.append(t.with_jid == q.with_jid)
            if q.with_resource is not None:
                cond.append(t.with_resource == q.with_resource)
        if q.start is not None:
            cond.append(t.ts >= q.start)
        if q.end is not None:
            cond.append(t.ts <= q.end)
        if q.after_id is not None:
            cond.append(t.seq > await cls._seq_of(conn, q.owner, q.after_id))
        if q.before_id is not None:
            cond.append(t.seq < await cls._seq_of(conn, q.owner, q.before_id))
        if q.ids is not None:
            cond.append(t.stanza_id.in_(q.ids) if q.ids else sa.false())
        count = int((await conn.execute(sa.select(sa.func.count()).select_from(mam_messages).where(*cond))).scalar_one())
        cols = (t.seq, t.owner, t.stanza_id, t.ts, t.with_jid, t.with_resource, t.stanza)
        backward = q.before is not None
        page_cond = list(cond)
        if q.after:
            page_cond.append(t.seq > await cls._seq_of(conn, q.owner, q.after))
        if q.before:
            page_cond.append(t.seq < await cls._seq_of(conn, q.owner, q.before))
        order = t.seq.desc() if backward else t.seq.asc()
        rows = list(await conn.execute(sa.select(*cols).where(*page_cond).order_by(order).limit(q.max + 1)))
        complete = len(rows) <= q.max
        rows = rows[: q.max]
        if backward:
            rows.reverse()
        items = [ArchivedMessage(r.owner, r.stanza_id, int(r.ts), r.with_jid, r.with_resource, r.stanza, int(r.seq)) for r in rows]
        return Page(items, complete, count)

    async def purge_before(self, ts: int) -> int:
        return await self._db.run_txn(self._purge_txn, ts)

    @staticmethod
    async def _purge_txn(conn: AsyncConnection, ts: int) -> int:
        return (await conn.execute(mam_messages.delete().where(mam_messages.c.ts < ts))).rowcount

    async def delete_owner(self, owner: str) -> int:
        return await self._db.run_txn(self._delete_owner_txn, owner)

    @staticmethod
    async def _delete_owner_txn(conn: AsyncConnection, owner: str) -> int:
        n = (await conn.execute(mam_messages.delete().where(mam_messages.c.owner == owner))).rowcount
        await conn.execute(mam_prefs.delete().where(mam_prefs.c.owner == owner))
        return n

    async def get_prefs(self, owner: str) -> Prefs | None:
        return await self._db.read_txn(self._get_prefs_txn, owner)

    @staticmethod
    async def _get_prefs_txn(conn: AsyncConnection, owner: str) -> Prefs | None:
        p = mam_prefs.c
        row = (await conn.execute(sa.select(p.default_mode, p.always_jids, p.never_jids).where(p.owner == owner))).first()
        if row is None:
            return None
        return Prefs(row.default_mode, tuple(json.loads(row.always_jids)), tuple(json.loads(row.never_jids)))

    async def set_prefs(self, owner: str, prefs: Prefs) -> None:
        await self._db.run_txn(self._set_prefs_txn, owner, prefs)

    @staticmethod
    async def _set_prefs_txn(conn: AsyncConnection, owner: str, prefs: Prefs) -> None:
        values = {"default_mode": prefs.default, "always_jids": json.dumps(list(prefs.always)), "never_jids": json.dumps(list(prefs.never))}
        done = (await conn.execute(mam_prefs.update().where(mam_prefs.c.owner == owner).values(**values))).rowcount
        if not done:
            await conn.execute(mam_prefs.insert().values(owner=owner, **values))


# ---------------------------------------------------------------------------------- memory


class MemoryMamRepository:
    """The in-process twin: one list per archive, in ``seq`` order."""

    def __init__(self, accounts: object = None) -> None:
        self._archives: dict[str, list[ArchivedMessage]] = {}
        self._prefs: dict[str, Prefs] = {}
        self._seq = 0

    async def store_many(self, messages: list[ArchivedMessage]) -> None:
        for m in messages:
            archive = self._archives.setdefault(m.owner, [])
            if any(x.stanza_id == m.stanza_id for x in archive):
                continue
            self._seq += 1
            archive.append(replace(m, seq=self._seq))

    def _seq_of(self, owner: str, stanza_id: str) -> int:
        for m in self._archives.get(owner, ()):
            if m.stanza_id == stanza_id:
                return m.seq
        raise UnknownId(stanza_id)

    async def query(self, q: ArchiveQuery) -> Page:
        rows = self._archives.get(q.owner, [])
        lo = self._seq_of(q.owner, q.after_id) if q.after_id is not None else None
        hi = self._seq_of(q.owner, q.before_id) if q.before_id is not None else None

        def match(m: ArchivedMessage) -> bool:
            return (
                (q.with_jid is None or (m.with_jid == q.with_jid and (q.with_resource is None or m.with_resource == q.with_resource)))
                and (q.start is None or m.ts >= q.start)
                and (q.end is None or m.ts <= q.end)
                and (lo is None or m.seq > lo)
                and (hi is None or m.seq < hi)
                and (q.ids is None or m.stanza_id in q.ids)
            )

        matching = [m for m in rows if match(m)]
        seqs = [m.seq for m in matching]
        start, stop = 0, len(matching)
        if q.after:
            start = bisect.bisect_right(seqs, self._seq_of(q.owner, q.after))
        if q.before:
            stop = bisect.bisect_left(seqs, self._seq_of(q.owner, q.before))
        window = matching[start:stop]
        if q.before is not None:
            items = window[-q.max :] if q.max else []
            complete = len(window) <= q.max
        else:
            items = window[: q.max]
            complete = len(window) <= q.max
        return Page(items, complete, len(matching))

    async def purge_before(self, ts: int) -> int:
        n = 0
        for owner, rows in self._archives.items():
            keep = [m for m in rows if m.ts >= ts]
            n += len(rows) - len(keep)
            self._archives[owner] = keep
        return n

    async def delete_owner(self, owner: str) -> int:
        self._prefs.pop(owner, None)
        return len(self._archives.pop(owner, ()))

    async def get_prefs(self, owner: str) -> Prefs | None:
        return self._prefs.get(owner)

    async def set_prefs(self, owner: str, prefs: Prefs) -> None:
        self._prefs[owner] = prefs
