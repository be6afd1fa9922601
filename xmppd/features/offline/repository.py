"""XEP-0160: offline message storage: the repository (Protocol, SQL, in-memory twin).

Messages are kept as serialised stanzas (already carrying their XEP-0203 delay stamp), in
arrival order, per account, each with its size in bytes (UTF-8). The quotas (messages and
bytes) are checked and the message inserted in one transaction that locks the account row, so
that two concurrent senders cannot both squeeze past them; a message is stored whole or not at
all.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.accounts import AccountRepository, account_id_query, accounts
from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, metadata

__all__ = [
    "MemoryOfflineRepository",
    "OfflineMessage",
    "OfflineRepository",
    "SqlOfflineRepository",
    "StoreResult",
    "offline_messages",
]

offline_messages = sa.Table(
    "offline_messages",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # A stanza may be as large as c2s.max_stanza_size (256 KiB): beyond MySQL's TEXT.
    sa.Column("stanza", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
    # Bytes of ``stanza`` in UTF-8: what offline.max_bytes counts.
    sa.Column("size", sa.Integer(), nullable=False, server_default="0"),
    sa.Index(None, "account_id", "id"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)


class StoreResult(enum.Enum):
    STORED = "stored"
    FULL = "full"  # the account's queue holds the maximum already (messages or bytes)
    NO_ACCOUNT = "no-account"


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    id: int  # increases with arrival: the delivery order
    stanza: str
    created_at: datetime


class OfflineRepository(Protocol):
    async def store(self, username: str, domain: str, stanza: str, created_at: datetime, limit: int, max_bytes: int | None = None) -> StoreResult:
        """Append ``stanza`` unless the account has ``limit`` messages already, or its stored
        bytes and this stanza's would pass ``max_bytes`` (None: no byte limit), or it is gone."""
        ...

    async def fetch(self, username: str, domain: str) -> list[OfflineMessage]:
        """Every stored message of the account, oldest first."""
        ...

    async def delete_upto(self, username: str, domain: str, last_id: int) -> int:
        """Delete the account's messages with ``id <= last_id`` (those delivered); returns how many."""
        ...

    async def count(self, username: str, domain: str) -> int: ...

    async def usage(self, username: str, domain: str) -> tuple[int, int]:
        """(messages, bytes) stored for the account."""
        ...

    async def clear(self, username: str, domain: str) -> int:
        """Delete every message of the account; returns how many."""
        ...


def _size(stanza: str) -> int:
    return len(stanza.encode("utf-8"))


# The login's read (every first available presence): one statement, run by the storage fast path.
_FETCH = (
    sa.select(offline_messages.c.id, offline_messages.c.stanza, offline_messages.c.created_at)
    .where(
        offline_messages.c.account_id
        == sa.select(accounts.c.id)
        .where(accounts.c.username == sa.bindparam("username"), accounts.c.domain == sa.bindparam("domain"))
        .scalar_subquery()
    )
    .order_by(offline_messages.c.id)
)


class SqlOfflineRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def store(self, username: str, domain: str, stanza: str, created_at: datetime, limit: int, max_bytes: int | None = None) -> StoreResult:
        return await self._db.run_txn(self._store_txn, username, domain, stanza, created_at, limit, max_bytes)

    @staticmethod
    async def _store_txn(
        conn: AsyncConnection, username: str, domain: str, stanza: str, created_at: datetime, limit: int, max_bytes: int | None
    ) -> StoreResult:
        # FOR UPDATE on the account row serialises senders to one account (SQLite: BEGIN IMMEDIATE).
        account_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if account_id is None:
            return StoreResult.NO_ACCOUNT
        size = _size(stanza)
        if max_bytes is not None and size > max_bytes:
            return StoreResult.FULL
        t = offline_messages.c
        n, used = (
            await conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(t.size), 0)).where(t.account_id == account_id))
        ).one()
        if n >= limit or (max_bytes is not None and int(used) + size > max_bytes):
            return StoreResult.FULL
        await conn.execute(offline_messages.insert().values(account_id=account_id, created_at=created_at, stanza=stanza, size=size))
        return StoreResult.STORED

    async def usage(self, username: str, domain: str) -> tuple[int, int]:
        """(messages, bytes) stored for the account."""
        return await self._db.read_txn(self._usage_txn, username, domain)

    @staticmethod
    async def _usage_txn(conn: AsyncConnection, username: str, domain: str) -> tuple[int, int]:
        t = offline_messages.c
        q = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(t.size), 0)).where(
            t.account_id == account_id_query(username, domain).scalar_subquery()
        )
        n, used = (await conn.execute(q)).one()
        return int(n), int(used)

    async def fetch(self, username: str, domain: str) -> list[OfflineMessage]:
        """Every stored message, oldest first: a read at each login, so through the storage fast
        path (SQLite: on the loop's thread, no hand-off to the driver's)."""
        rows = await self._db.fastpath.fetch_all(_FETCH, {"username": username, "domain": domain})
        return [OfflineMessage(int(i), stanza, at) for i, stanza, at in rows]

    async def delete_upto(self, username: str, domain: str, last_id: int) -> int:
        return await self._db.run_txn(self._delete_txn, username, domain, last_id)

    async def clear(self, username: str, domain: str) -> int:
        return await self._db.run_txn(self._delete_txn, username, domain, None)

    @staticmethod
    async def _delete_txn(conn: AsyncConnection, username: str, domain: str, last_id: int | None) -> int:
        account_id = (await conn.execute(account_id_query(username, domain))).scalar()
        if account_id is None:
            return 0
        t = offline_messages.c
        cond = t.account_id == account_id
        if last_id is not None:
            cond = sa.and_(cond, t.id <= last_id)
        return (await conn.execute(offline_messages.delete().where(cond))).rowcount

    async def count(self, username: str, domain: str) -> int:
        return await self._db.read_txn(self._count_txn, username, domain)

    @staticmethod
    async def _count_txn(conn: AsyncConnection, username: str, domain: str) -> int:
        t = offline_messages.c
        q = sa.select(sa.func.count()).where(t.account_id == account_id_query(username, domain).scalar_subquery())
        return int((await conn.execute(q)).scalar_one())


class MemoryOfflineRepository:
    """The in-process twin. Rows are keyed by account id, as in SQL: a deleted account's
    messages are unreachable (what ON DELETE CASCADE does there)."""

    def __init__(self, accounts: AccountRepository) -> None:
        self._accounts = accounts
        self._queues: dict[int, list[OfflineMessage]] = {}
        self._next_id = 1

    async def _id(self, username: str, domain: str) -> int | None:
        account = await self._accounts.get(username, domain)
        return None if account is None else account.id

    async def store(self, username: str, domain: str, stanza: str, created_at: datetime, limit: int, max_bytes: int | None = None) -> StoreResult:
        account_id = await self._id(username, domain)
        if account_id is None:
            return StoreResult.NO_ACCOUNT
        queue = self._queues.setdefault(account_id, [])
        if len(queue) >= limit:
            return StoreResult.FULL
        if max_bytes is not None and sum(_size(m.stanza) for m in queue) + _size(stanza) > max_bytes:
            return StoreResult.FULL
        queue.append(OfflineMessage(self._next_id, stanza, created_at))
        self._next_id += 1
        return StoreResult.STORED

    async def fetch(self, username: str, domain: str) -> list[OfflineMessage]:
        return list(self._queues.get(await self._id(username, domain) or 0, ()))

    async def delete_upto(self, username: str, domain: str, last_id: int) -> int:
        account_id = await self._id(username, domain)
        queue = self._queues.get(account_id or 0)
        if not queue:
            return 0
        keep = [m for m in queue if m.id > last_id]
        self._queues[account_id] = keep  # type: ignore[index]
        return len(queue) - len(keep)

    async def count(self, username: str, domain: str) -> int:
        return len(self._queues.get(await self._id(username, domain) or 0, ()))

    async def usage(self, username: str, domain: str) -> tuple[int, int]:
        queue = self._queues.get(await self._id(username, domain) or 0, [])
        return len(queue), sum(_size(m.stanza) for m in queue)

    async def clear(self, username: str, domain: str) -> int:
        return len(self._queues.pop(await self._id(username, domain) or 0, ()))
