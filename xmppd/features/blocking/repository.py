"""XEP-0191: Blocking Command: the blocklist repository (Protocol, SQL, in-memory twin).

A blocklist is a set of JID strings (already prepared, RFC 7622) per account. Changes
return the whole new list so that the feature's cache is replaced, never patched.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.accounts import AccountNotFound, AccountRepository, account_id_query, accounts
from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, id_type, indexed_string, metadata

__all__ = ["BlockingRepository", "BlocklistFull", "MemoryBlockingRepository", "SqlBlockingRepository", "blocklist"]

blocklist = sa.Table(
    "blocklist",
    metadata,
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    sa.Column("jid", indexed_string(), primary_key=True),
    **MYSQL_TABLE_KWARGS,
)

#: Longest blocked JID stored (the column is indexed).
MAX_JID_LENGTH = 191


class BlocklistFull(Exception):
    """Blocking these JIDs would exceed the account's limit."""


class BlockingRepository(Protocol):
    async def get(self, username: str, domain: str) -> frozenset[str]:
        """The account's blocked JIDs (empty for an unknown account)."""
        ...

    async def block(self, username: str, domain: str, jids: Iterable[str], limit: int) -> frozenset[str]:
        """Add ``jids`` (those present stay); returns the new list. Raises ``AccountNotFound``
        or ``BlocklistFull`` (nothing is changed then)."""
        ...

    async def unblock(self, username: str, domain: str, jids: Iterable[str] | None) -> frozenset[str]:
        """Remove ``jids`` (``None``: all); returns the new list."""
        ...

    async def owners(self, domain: str) -> frozenset[str]:
        """The usernames of ``domain`` whose blocklist is not empty."""
        ...


def _check(jids: Iterable[str]) -> frozenset[str]:
    out = frozenset(jids)
    for j in out:
        if not j or len(j) > MAX_JID_LENGTH:
            raise ValueError(f"a blocked JID has 1 to {MAX_JID_LENGTH} characters: {j!r}")
    return out


class SqlBlockingRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, username: str, domain: str) -> frozenset[str]:
        return await self._db.read_txn(self._get_txn, username, domain)

    @staticmethod
    async def _get_txn(conn: AsyncConnection, username: str, domain: str) -> frozenset[str]:
        t = blocklist.c
        rows = await conn.execute(sa.select(t.jid).where(t.account_id == account_id_query(username, domain).scalar_subquery()))
        return frozenset(r.jid for r in rows)

    async def block(self, username: str, domain: str, jids: Iterable[str], limit: int) -> frozenset[str]:
        return await self._db.run_txn(self._block_txn, username, domain, _check(jids), limit)

    @staticmethod
    async def _block_txn(conn: AsyncConnection, username: str, domain: str, jids: frozenset[str], limit: int) -> frozenset[str]:
        account_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if account_id is None:
            raise AccountNotFound(username, domain)
        t = blocklist.c
        current = frozenset(r.jid for r in await conn.execute(sa.select(t.jid).where(t.account_id == account_id)))
        new = jids - current
        if len(current) + len(new) > limit:
            raise BlocklistFull(f"at most {limit} JIDs can be blocked")
        if new:
            await conn.execute(blocklist.insert(), [{"account_id": account_id, "jid": j} for j in sorted(new)])
        return current | new

    async def unblock(self, username: str, domain: str, jids: Iterable[str] | None) -> frozenset[str]:
        return await self._db.run_txn(self._unblock_txn, username, domain, None if jids is None else frozenset(jids))

    @staticmethod
    async def _unblock_txn(conn: AsyncConnection, username: str, domain: str, jids: frozenset[str] | None) -> frozenset[str]:
        account_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if account_id is None:
            return frozenset()
        t = blocklist.c
        cond = t.account_id == account_id
        if jids is not None:
            if not jids:
                return frozenset(r.jid for r in await conn.execute(sa.select(t.jid).where(cond)))
            cond = sa.and_(cond, t.jid.in_(sorted(jids)))
        await conn.execute(blocklist.delete().where(cond))
        if jids is None:
            return frozenset()
        return frozenset(r.jid for r in await conn.execute(sa.select(t.jid).where(t.account_id == account_id)))


    async def owners(self, domain: str) -> frozenset[str]:
        return await self._db.read_txn(self._owners_txn, domain)

    @staticmethod
    async def _owners_txn(conn: AsyncConnection, domain: str) -> frozenset[str]:
        q = (
            sa.select(accounts.c.username)
            .where(accounts.c.domain == domain, sa.exists().where(blocklist.c.account_id == accounts.c.id))
        )
        return frozenset(r.username for r in await conn.execute(q))


class MemoryBlockingRepository:
    """The in-process twin, keyed by account id like the SQL tables."""

    def __init__(self, accounts: AccountRepository) -> None:
        self._accounts = accounts
        self._lists: dict[int, frozenset[str]] = {}

    async def _id(self, username: str, domain: str) -> int | None:
        account = await self._accounts.get(username, domain)
        return None if account is None else account.id

    async def get(self, username: str, domain: str) -> frozenset[str]:
        return self._lists.get(await self._id(username, domain) or 0, frozenset())

    async def block(self, username: str, domain: str, jids: Iterable[str], limit: int) -> frozenset[str]:
        wanted = _check(jids)
        account_id = await self._id(username, domain)
        if account_id is None:
            raise AccountNotFound(username, domain)
        current = self._lists.get(account_id, frozenset())
        new = current | wanted
        if len(new) > limit:
            raise BlocklistFull(f"at most {limit} JIDs can be blocked")
        self._lists[account_id] = new
        return new

    async def unblock(self, username: str, domain: str, jids: Iterable[str] | None) -> frozenset[str]:
        account_id = await self._id(username, domain)
        if account_id is None:
            return frozenset()
        if jids is None:
            self._lists.pop(account_id, None)
            return frozenset()
        new = self._lists.get(account_id, frozenset()) - frozenset(jids)
        self._lists[account_id] = new
        return new

    async def owners(self, domain: str) -> frozenset[str]:
        ids = {i for i, jids in self._lists.items() if jids}
        return frozenset(a.username for a in await self._accounts.list(domain) if a.id in ids)
