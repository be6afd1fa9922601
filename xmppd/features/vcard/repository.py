"""XEP-0054: vcard-temp: the vCard repository (Protocol, SQL, in-memory twin).

One vCard per account, kept as the serialised ``<vCard xmlns='vcard-temp'/>`` element.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.accounts import AccountNotFound, AccountRepository, account_id_query, accounts
from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, metadata

__all__ = ["MemoryVCardRepository", "SqlVCardRepository", "VCardRepository", "vcards"]

vcards = sa.Table(
    "vcards",
    metadata,
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # MySQL's TEXT holds 64 KiB of bytes, fewer characters in utf8mb4.
    sa.Column("xml", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
    **MYSQL_TABLE_KWARGS,
)


class VCardRepository(Protocol):
    async def get(self, username: str, domain: str) -> str | None: ...

    async def set(self, username: str, domain: str, xml: str, updated_at: datetime) -> None:
        """Replace the account's vCard; raises ``AccountNotFound``."""
        ...

    async def delete(self, username: str, domain: str) -> bool: ...


# The read behind the avatar hash of every login's presence (XEP-0153): through the fast path.
_GET = sa.select(vcards.c.xml).where(
    vcards.c.account_id
    == sa.select(accounts.c.id)
    .where(accounts.c.username == sa.bindparam("username"), accounts.c.domain == sa.bindparam("domain"))
    .scalar_subquery()
)


class SqlVCardRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, username: str, domain: str) -> str | None:
        """The stored vCard (SQLite: on the loop's thread when it need not wait)."""
        row = await self._db.fastpath.fetch_one(_GET, {"username": username, "domain": domain})
        return None if row is None else row[0]  # type: ignore[no-any-return]

    async def set(self, username: str, domain: str, xml: str, updated_at: datetime) -> None:
        await self._db.run_txn(self._set_txn, username, domain, xml, updated_at)

    @staticmethod
    async def _set_txn(conn: AsyncConnection, username: str, domain: str, xml: str, updated_at: datetime) -> None:
        # The account row lock makes update-or-insert safe against a concurrent set.
        account_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if account_id is None:
            raise AccountNotFound(username, domain)
        result = await conn.execute(vcards.update().where(vcards.c.account_id == account_id).values(xml=xml, updated_at=updated_at))
        if result.rowcount == 0:
            await conn.execute(vcards.insert().values(account_id=account_id, xml=xml, updated_at=updated_at))

    async def delete(self, username: str, domain: str) -> bool:
        return await self._db.run_txn(self._delete_txn, username, domain)

    @staticmethod
    async def _delete_txn(conn: AsyncConnection, username: str, domain: str) -> bool:
        q = vcards.delete().where(vcards.c.account_id == account_id_query(username, domain).scalar_subquery())
        return (await conn.execute(q)).rowcount > 0


class MemoryVCardRepository:
    """The in-process twin, keyed by account id like the SQL table."""

    def __init__(self, accounts: AccountRepository) -> None:
        self._accounts = accounts
        self._cards: dict[int, str] = {}

    async def _id(self, username: str, domain: str) -> int | None:
        account = await self._accounts.get(username, domain)
        return None if account is None else account.id

    async def get(self, username: str, domain: str) -> str | None:
        return self._cards.get(await self._id(username, domain) or 0)

    async def set(self, username: str, domain: str, xml: str, updated_at: datetime) -> None:
        account_id = await self._id(username, domain)
        if account_id is None:
            raise AccountNotFound(username, domain)
        self._cards[account_id] = xml

    async def delete(self, username: str, domain: str) -> bool:
        return self._cards.pop(await self._id(username, domain) or 0, None) is not None
