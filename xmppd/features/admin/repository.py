"""XEP-0133 §4.23-4.25: storage of the message of the day and of who has seen which version.

Each ``set`` (and ``delete``) gives the MOTD a new version, so a user is shown the current
MOTD once, at the first login after it changed. ``motd_seen`` rows reference the account and
go with it when it is deleted.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.accounts import account_id_query, accounts
from ...storage.engine import Database, is_unique_violation
from ...storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, indexed_string, metadata

motd: Final = sa.Table(
    "motd",
    metadata,
    sa.Column("domain", indexed_string(), primary_key=True),
    sa.Column("body", sa.Text(), nullable=True),  # NULL: deleted
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("version > 0", name="version_positive"),
    **MYSQL_TABLE_KWARGS,
)

motd_seen: Final = sa.Table(
    "motd_seen",
    metadata,
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)

MAX_MOTD_LENGTH: Final = 16384


@dataclass(frozen=True, slots=True)
class Motd:
    body: str | None  # None: there is no MOTD (it was deleted)
    version: int
    updated_at: datetime


class MotdRepository(Protocol):
    """Contract (``tests/features/test_admin_motd_repository.py``, memory, SQLite, MariaDB):

    * ``get`` returns None when no MOTD was ever set for the domain;
    * ``set`` stores a body (``None`` deletes) and returns the MOTD with a version one higher
      than before (1 for the first); an over-long body is a ``ValueError``;
    * ``seen`` is the last version the account was marked as having seen (0: none);
      ``mark_seen`` never lowers it; for an account that does not exist it does nothing
      (SQL; the memory twin keeps no accounts).
    """

    async def get(self, domain: str) -> Motd | None: ...

    async def set(self, domain: str, body: str | None) -> Motd: ...

    async def seen(self, username: str, domain: str) -> int: ...

    async def mark_seen(self, username: str, domain: str, version: int) -> None: ...


def _check(body: str | None) -> None:
    if body is not None and len(body) > MAX_MOTD_LENGTH:
        raise ValueError(f"the message of the day is longer than {MAX_MOTD_LENGTH} characters")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqlMotdRepository:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = db
        self._clock = clock

    async def get(self, domain: str) -> Motd | None:
        return await self._db.read_txn(self._get_txn, domain)

    @staticmethod
    async def _get_txn(conn: AsyncConnection, domain: str) -> Motd | None:
        row = (await conn.execute(sa.select(motd.c.body, motd.c.version, motd.c.updated_at).where(motd.c.domain == domain))).first()
        return Motd(row.body, row.version, row.updated_at) if row else None

    async def set(self, domain: str, body: str | None) -> Motd:
        _check(body)
        try:
            return await self._db.run_txn(self._set_txn, domain, body, self._clock())
        except sa.exc.IntegrityError as exc:  # two first MOTDs at once: the loser updates
            if not is_unique_violation(exc):
                raise
            return await self._db.run_txn(self._set_txn, domain, body, self._clock())

    async def _set_txn(self, conn: AsyncConnection, domain: str, body: str | None, now: datetime) -> Motd:
        # FOR UPDATE: concurrent setters queue on the row, each reads the version the last one wrote.
        row = (
            await conn.execute(sa.select(motd.c.version).where(motd.c.domain == domain).with_for_update())
        ).first()
        current = Motd(None, row.version, now) if row else None
        if current is None:
            await conn.execute(sa.insert(motd).values(domain=domain, body=body, version=1, updated_at=now))
            return Motd(body, 1, now)
        await conn.execute(
            sa.update(motd).where(motd.c.domain == domain).values(body=body, version=motd.c.version + 1, updated_at=now)
        )
        return Motd(body, current.version + 1, now)

    async def seen(self, username: str, domain: str) -> int:
        return await self._db.read_txn(self._seen_txn, username, domain)

    @staticmethod
    async def _seen_txn(conn: AsyncConnection, username: str, domain: str) -> int:
        q = (
            sa.select(motd_seen.c.version)
            .select_from(motd_seen.join(accounts, accounts.c.id == motd_seen.c.account_id))
            .where(accounts.c.username == username, accounts.c.domain == domain)
        )
        return (await conn.execute(q)).scalar() or 0

    async def mark_seen(self, username: str, domain: str, version: int) -> None:
        try:
            await self._db.run_txn(self._mark_seen_txn, username, domain, version)
        except sa.exc.IntegrityError as exc:  # the same account marked twice at once
            if not is_unique_violation(exc):
                raise
            await self._db.run_txn(self._mark_seen_txn, username, domain, version)

    @staticmethod
    async def _mark_seen_txn(conn: AsyncConnection, username: str, domain: str, version: int) -> None:
        account_id = (
            await conn.execute(account_id_query(username, domain))
        ).scalar()
        if account_id is None:
            return
        current = (await conn.execute(sa.select(motd_seen.c.version).where(motd_seen.c.account_id == account_id))).scalar()
        if current is None:
            await conn.execute(sa.insert(motd_seen).values(account_id=account_id, version=version))
        elif version > current:
            await conn.execute(sa.update(motd_seen).where(motd_seen.c.account_id == account_id).values(version=version))


class MemoryMotdRepository:
    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._motd: dict[str, Motd] = {}
        self._seen: dict[tuple[str, str], int] = {}
        self._clock = clock

    async def get(self, domain: str) -> Motd | None:
        return self._motd.get(domain)

    async def set(self, domain: str, body: str | None) -> Motd:
        _check(body)
        current = self._motd.get(domain)
        m = Motd(body, (current.version if current else 0) + 1, self._clock())
        self._motd[domain] = m
        return m

    async def seen(self, username: str, domain: str) -> int:
        return self._seen.get((username, domain), 0)

    async def mark_seen(self, username: str, domain: str, version: int) -> None:
        key = (username, domain)
        self._seen[key] = max(self._seen.get(key, 0), version)
