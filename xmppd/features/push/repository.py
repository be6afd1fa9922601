"""XEP-0357 push registrations: the repository (Protocol, SQL, in-memory twin).

One row per (account, push service JID, node), with the client's publish-options form kept as
XML. Registrations live as long as the account (ON DELETE CASCADE) or until disabled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.accounts import AccountRepository, account_id_query
from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, id_type, indexed_string, metadata

__all__ = ["MemoryPushRepository", "PushRegistration", "PushRepository", "SqlPushRepository", "push_registrations"]

push_registrations = sa.Table(
    "push_registrations",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("service", indexed_string(), nullable=False),
    sa.Column("node", indexed_string(), nullable=False),
    sa.Column("options", sa.Text(), nullable=False),  # publish-options form as XML, or ""
    sa.UniqueConstraint("account_id", "service", "node"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)


@dataclass(frozen=True, slots=True)
class PushRegistration:
    service: str  # the app server's JID
    node: str
    options: str  # serialised publish-options form, "" for none


class PushRepository(Protocol):
    async def enable(self, username: str, domain: str, reg: PushRegistration, limit: int) -> bool:
        """Add or update a registration; False when the account has ``limit`` others already."""
        ...

    async def disable(self, username: str, domain: str, service: str, node: str | None) -> int:
        """Remove the registrations on ``service`` (only ``node`` when given); returns how many."""
        ...

    async def of(self, username: str, domain: str) -> list[PushRegistration]: ...


class SqlPushRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def enable(self, username: str, domain: str, reg: PushRegistration, limit: int) -> bool:
        return await self._db.run_txn(self._enable_txn, username, domain, reg, limit)

    @staticmethod
    async def _enable_txn(conn: AsyncConnection, username: str, domain: str, reg: PushRegistration, limit: int) -> bool:
        account_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if account_id is None:
            return False
        t = push_registrations.c
        same = sa.and_(t.account_id == account_id, t.service == reg.service, t.node == reg.node)
        if (await conn.execute(push_registrations.update().where(same).values(options=reg.options))).rowcount:
            return True
        n = (await conn.execute(sa.select(sa.func.count()).where(t.account_id == account_id))).scalar_one()
        if n >= limit:
            return False
        await conn.execute(push_registrations.insert().values(account_id=account_id, service=reg.service, node=reg.node, options=reg.options))
        return True

    async def disable(self, username: str, domain: str, service: str, node: str | None) -> int:
        return await self._db.run_txn(self._disable_txn, username, domain, service, node)

    @staticmethod
    async def _disable_txn(conn: AsyncConnection, username: str, domain: str, service: str, node: str | None) -> int:
        t = push_registrations.c
        cond = sa.and_(t.account_id == account_id_query(username, domain).scalar_subquery(), t.service == service)
        if node is not None:
            cond = sa.and_(cond, t.node == node)
        return (await conn.execute(push_registrations.delete().where(cond))).rowcount

    async def of(self, username: str, domain: str) -> list[PushRegistration]:
        return await self._db.read_txn(self._of_txn, username, domain)

    @staticmethod
    async def _of_txn(conn: AsyncConnection, username: str, domain: str) -> list[PushRegistration]:
        t = push_registrations.c
        rows = await conn.execute(
            sa.select(t.service, t.node, t.options).where(t.account_id == account_id_query(username, domain).scalar_subquery()).order_by(t.id)
        )
        return [PushRegistration(r.service, r.node, r.options) for r in rows]


class MemoryPushRepository:
    """The in-process twin, keyed by account id like the SQL table."""

    def __init__(self, accounts: AccountRepository) -> None:
        self._accounts = accounts
        self._regs: dict[int, list[PushRegistration]] = {}

    async def _id(self, username: str, domain: str) -> int | None:
        account = await self._accounts.get(username, domain)
        return None if account is None else int(account.id)

    async def enable(self, username: str, domain: str, reg: PushRegistration, limit: int) -> bool:
        account_id = await self._id(username, domain)
        if account_id is None:
            return False
        regs = self._regs.setdefault(account_id, [])
        for i, r in enumerate(regs):
            if (r.service, r.node) == (reg.service, reg.node):
                regs[i] = reg
                return True
        if len(regs) >= limit:
            return False
        regs.append(reg)
        return True

    async def disable(self, username: str, domain: str, service: str, node: str | None) -> int:
        regs = self._regs.get(await self._id(username, domain) or 0, [])
        keep = [r for r in regs if not (r.service == service and (node is None or r.node == node))]
        n = len(regs) - len(keep)
        regs[:] = keep
        return n

    async def of(self, username: str, domain: str) -> list[PushRegistration]:
        return list(self._regs.get(await self._id(username, domain) or 0, ()))
