"""XEP-0049: Private XML Storage: the repository (Protocol, SQL, in-memory twin).

One fragment per (account, namespace), kept as serialised XML.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.accounts import AccountNotFound, AccountRepository, account_id_query
from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, id_type, indexed_string, metadata

__all__ = ["MAX_NAMESPACE_LENGTH", "MemoryPrivateRepository", "PrivateFull", "PrivateRepository", "SqlPrivateRepository", "private_storage"]

private_storage = sa.Table(
    "private_storage",
    metadata,
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    sa.Column("namespace", indexed_string(), primary_key=True),
    sa.Column("xml", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
    **MYSQL_TABLE_KWARGS,
)

#: Longest namespace accepted as a key (the column is indexed).
MAX_NAMESPACE_LENGTH = 191


class PrivateFull(Exception):
    """Storing these fragments would exceed the account's number of namespaces."""


class PrivateRepository(Protocol):
    async def get(self, username: str, domain: str, namespace: str) -> str | None: ...

    async def set(self, username: str, domain: str, items: Sequence[tuple[str, str]], max_items: int) -> None:
        """Store ``(namespace, xml)`` pairs, replacing those namespaces, all or nothing.
        Raises ``AccountNotFound`` or ``PrivateFull``."""
        ...

    async def namespaces(self, username: str, domain: str) -> list[str]: ...

    async def clear(self, username: str, domain: str) -> int: ...


def _check(items: Sequence[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for namespace, xml in items:
        if not namespace or len(namespace) > MAX_NAMESPACE_LENGTH:
            raise ValueError(f"a namespace has 1 to {MAX_NAMESPACE_LENGTH} characters: {namespace!r}")
        out[namespace] = xml
    return out


class SqlPrivateRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, username: str, domain: str, namespace: str) -> str | None:
        return await self._db.read_txn(self._get_txn, username, domain, namespace)

    @staticmethod
    async def _get_txn(conn: AsyncConnection, username: str, domain: str, namespace: str) -> str | None:
        t = private_storage.c
        q = sa.select(t.xml).where(t.account_id == account_id_query(username, domain).scalar_subquery(), t.namespace == namespace)
        return (await conn.execute(q)).scalar()

    async def set(self, username: str, domain: str, items: Sequence[tuple[str, str]], max_items: int) -> None:
        await self._db.run_txn(self._set_txn, username, domain, _check(items), max_items)

    @staticmethod
    async def _set_txn(conn: AsyncConnection, username: str, domain: str, items: dict[str, str], max_items: int) -> None:
        account_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if account_id is None:
            raise AccountNotFound(username, domain)
        t = private_storage.c
        present = {r.namespace for r in await conn.execute(sa.select(t.namespace).where(t.account_id == account_id))}
        if len(present | set(items)) > max_items:
            raise PrivateFull(f"at most {max_items} namespaces can be stored")
        for namespace, xml in items.items():
            if namespace in present:
                await conn.execute(
                    private_storage.update().where(t.account_id == account_id, t.namespace == namespace).values(xml=xml)
                )
            else:
                await conn.execute(private_storage.insert().values(account_id=account_id, namespace=namespace, xml=xml))

    async def namespaces(self, username: str, domain: str) -> list[str]:
        return await self._db.read_txn(self._namespaces_txn, username, domain)

    @staticmethod
    async def _namespaces_txn(conn: AsyncConnection, username: str, domain: str) -> list[str]:
        t = private_storage.c
        q = sa.select(t.namespace).where(t.account_id == account_id_query(username, domain).scalar_subquery()).order_by(t.namespace)
        return [r.namespace for r in await conn.execute(q)]

    async def clear(self, username: str, domain: str) -> int:
        return await self._db.run_txn(self._clear_txn, username, domain)

    @staticmethod
    async def _clear_txn(conn: AsyncConnection, username: str, domain: str) -> int:
        q = private_storage.delete().where(private_storage.c.account_id == account_id_query(username, domain).scalar_subquery())
        return (await conn.execute(q)).rowcount


class MemoryPrivateRepository:
    """The in-process twin, keyed by account id like the SQL table."""

    def __init__(self, accounts: AccountRepository) -> None:
        self._accounts = accounts
        self._data: dict[int, dict[str, str]] = {}

    async def _id(self, username: str, domain: str) -> int | None:
        account = await self._accounts.get(username, domain)
        return None if account is None else account.id

    async def get(self, username: str, domain: str, namespace: str) -> str | None:
        return self._data.get(await self._id(username, domain) or 0, {}).get(namespace)

    async def set(self, username: str, domain: str, items: Sequence[tuple[str, str]], max_items: int) -> None:
        checked = _check(items)
        account_id = await self._id(username, domain)
        if account_id is None:
            raise AccountNotFound(username, domain)
        current = self._data.get(account_id, {})
        if len(set(current) | set(checked)) > max_items:
            raise PrivateFull(f"at most {max_items} namespaces can be stored")
        self._data[account_id] = {**current, **checked}

    async def namespaces(self, username: str, domain: str) -> list[str]:
        return sorted(self._data.get(await self._id(username, domain) or 0, {}))

    async def clear(self, username: str, domain: str) -> int:
        return len(self._data.pop(await self._id(username, domain) or 0, {}))
