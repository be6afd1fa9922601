"""HTTP file upload slots and files: one row per slot, from the request to the file's expiry.

A slot is *pending* until its PUT completes (``uploaded`` NULL, ``expires`` = the slot's
deadline), then *stored* (``uploaded`` set, ``expires`` = the file's end of life or NULL to
keep it). The bytes a user holds — pending slots included, so that a quota cannot be passed by
asking many slots at once — are the sum of ``size`` over the user's rows. Rows go with the
account (ON DELETE CASCADE); the files on disk go with the sweeper (``Upload._sweep``).
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.accounts import account_id_query
from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, id_type, metadata

upload_files = sa.Table(
    "upload_files",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("slot", sa.String(64), nullable=False, unique=True),
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),  # "" when the request named none
    sa.Column("created", sa.BigInteger(), nullable=False),  # Unix seconds
    sa.Column("uploaded", sa.BigInteger(), nullable=True),
    sa.Column("expires", sa.BigInteger(), nullable=True, index=True),
    sa.Column("thumb_width", sa.Integer(), nullable=True),
    sa.Column("thumb_height", sa.Integer(), nullable=True),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)


@dataclass(frozen=True, slots=True)
class StoredFile:
    slot: str
    filename: str
    size: int
    content_type: str
    uploaded: int | None
    expires: int | None
    thumb: tuple[int, int] | None  # (width, height) of the thumbnail, when there is one


class QuotaExceeded(Exception):
    def __init__(self, used: int) -> None:
        super().__init__(used)
        self.used = used


class UploadRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, username: str, domain: str, slot: str, filename: str, size: int, content_type: str,
                      now: int, deadline: int, quota: int) -> bool:
        """A pending slot, unless the user's bytes would pass ``quota`` (QuotaExceeded) or the
        account is gone (False). The account row is locked so that two requests at once cannot
        both fit under the quota."""
        return await self._db.run_txn(self._reserve_txn, username, domain, slot, filename, size, content_type, now, deadline, quota)

    @staticmethod
    async def _reserve_txn(conn: AsyncConnection, username: str, domain: str, slot: str, filename: str, size: int,
                           content_type: str, now: int, deadline: int, quota: int) -> bool:
        account_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if account_id is None:
            return False
        t = upload_files.c
        used = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.size), 0)).where(t.account_id == account_id))).scalar_one()
        if used + size > quota:
            raise QuotaExceeded(int(used))
        await conn.execute(upload_files.insert().values(
            slot=slot, account_id=account_id, filename=filename, size=size, content_type=content_type,
            created=now, uploaded=None, expires=deadline))
        return True

    async def get(self, slot: str) -> StoredFile | None:
        return await self._db.read_txn(self._get_txn, slot)

    @staticmethod
    async def _get_txn(conn: AsyncConnection, slot: str) -> StoredFile | None:
        t = upload_files.c
        r = (await conn.execute(sa.select(t.slot, t.filename, t.size, t.content_type, t.uploaded, t.expires,
                                          t.thumb_width, t.thumb_height).where(t.slot == slot))).first()
        if r is None:
            return None
        thumb = (r.thumb_width, r.thumb_height) if r.thumb_width else None
        return StoredFile(r.slot, r.filename, r.size, r.content_type, r.uploaded, r.expires, thumb)

    async def complete(self, slot: str, now: int, expires: int | None) -> bool:
        """Mark a pending slot stored; False when it was not pending any more (used, expired)."""
        return await self._db.run_txn(self._complete_txn, slot, now, expires)

    @staticmethod
    async def _complete_txn(conn: AsyncConnection, slot: str, now: int, expires: int | None) -> bool:
        t = upload_files.c
        res = await conn.execute(upload_files.update()
                                 .where(t.slot == slot, t.uploaded.is_(None), t.expires >= now)
                                 .values(uploaded=now, expires=expires))
        return bool(res.rowcount)

    async def set_thumbnail(self, slot: str, width: int, height: int) -> None:
        await self._db.run_txn(self._thumb_txn, slot, width, height)

    @staticmethod
    async def _thumb_txn(conn: AsyncConnection, slot: str, width: int, height: int) -> None:
        await conn.execute(upload_files.update().where(upload_files.c.slot == slot).values(thumb_width=width, thumb_height=height))

    async def expired(self, now: int, limit: int) -> list[str]:
        return await self._db.read_txn(self._expired_txn, now, limit)

    @staticmethod
    async def _expired_txn(conn: AsyncConnection, now: int, limit: int) -> list[str]:
        t = upload_files.c
        rows = await conn.execute(sa.select(t.slot).where(t.expires < now).order_by(t.expires).limit(limit))
        return [r.slot for r in rows]

    async def delete(self, slots: list[str]) -> None:
        if slots:
            await self._db.run_txn(self._delete_txn, slots)

    @staticmethod
    async def _delete_txn(conn: AsyncConnection, slots: list[str]) -> None:
        await conn.execute(upload_files.delete().where(upload_files.c.slot.in_(slots)))

    async def existing(self, slots: list[str]) -> set[str]:
        """Which of ``slots`` still have a row (the sweeper's check for orphaned files)."""
        if not slots:
            return set()
        return await self._db.read_txn(self._existing_txn, slots)

    @staticmethod
    async def _existing_txn(conn: AsyncConnection, slots: list[str]) -> set[str]:
        rows = await conn.execute(sa.select(upload_files.c.slot).where(upload_files.c.slot.in_(slots)))
        return {r.slot for r in rows}

    async def used(self, username: str, domain: str) -> int:
        return await self._db.read_txn(self._used_txn, username, domain)

    @staticmethod
    async def _used_txn(conn: AsyncConnection, username: str, domain: str) -> int:
        t = upload_files.c
        q = sa.select(sa.func.coalesce(sa.func.sum(t.size), 0)).where(t.account_id == account_id_query(username, domain).scalar_subquery())
        return int((await conn.execute(q)).scalar_one())
