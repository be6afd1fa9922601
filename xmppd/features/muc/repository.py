"""XEP-0045 §10.2 persistent rooms: their configuration, subject, affiliations and MUC/Sub subscriptions.

A repository ``Protocol``, its SQL implementation (SQLAlchemy Core on ``Database``) and an
in-memory twin that passes the same contract tests. Only persistent rooms are stored.

Fencing (docs/cluster.md §5): in a cluster a room is written by the node holding its lease, and
every write carries that lease's token (``fence``, 0 without the cluster). A write whose token
is lower than the one stored raises ``FencedOut`` and changes nothing: the writer lost the room
to a node that acquired it later (``claim`` stores the new owner's token first).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, indexed_string, metadata


@dataclass(slots=True)
class StoredAffiliation:
    affiliation: str
    nick: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class StoredSubscription:
    nick: str
    nodes: tuple[str, ...]


class FencedOut(Exception):
    """A write with a fencing token older than the room's: another node owns the room now."""


@dataclass(slots=True)
class StoredRoom:
    jid: str
    config: dict[str, Any]
    subject: str = ""
    subject_nick: str = ""
    affiliations: dict[str, StoredAffiliation] = field(default_factory=dict)  # bare JID -> affiliation
    subscriptions: dict[str, StoredSubscription] = field(default_factory=dict)  # bare JID -> subscription
    fence: int = 0  # the token of the node that wrote it (0: no cluster)


class MucRepository(Protocol):
    async def load_rooms(self) -> list[StoredRoom]: ...
    async def load_room(self, jid: str) -> StoredRoom | None: ...
    async def fence_of(self, jid: str) -> int:
        """The stored room's token (0: none, or no such room)."""
    async def claim(self, jid: str, fence: int) -> bool:
        """Store ``fence`` as the room's token unless a higher one is stored (True: claimed, or no such room)."""
    async def save_room(self, room: StoredRoom) -> None:
        """Write the whole room (config, subject, affiliations, subscriptions), replacing what was stored
        (with ``room.fence`` as its token)."""
    async def update_room(self, jid: str, config: dict[str, Any], subject: str, subject_nick: str, fence: int = 0) -> None: ...
    async def delete_room(self, jid: str, fence: int = 0) -> None: ...
    async def set_affiliation(self, room: str, jid: str, aff: StoredAffiliation | None, fence: int = 0) -> None:
        """Store an affiliation (None or 'none' removes it)."""
    async def set_subscription(self, room: str, jid: str, sub: StoredSubscription | None, fence: int = 0) -> None: ...


rooms_table = sa.Table(
    "muc_rooms",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("jid", indexed_string(), nullable=False, unique=True),
    sa.Column("config", sa.Text(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("subject_nick", sa.String(1023), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"),  # muc_0002
    **MYSQL_TABLE_KWARGS,
)

affiliations_table = sa.Table(
    "muc_affiliations",
    metadata,
    sa.Column("room_id", id_type(), sa.ForeignKey("muc_rooms.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("affiliation", sa.String(16), nullable=False),
    sa.Column("nick", sa.String(1023), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    **MYSQL_TABLE_KWARGS,
)

subscriptions_table = sa.Table(
    "muc_subscriptions",
    metadata,
    sa.Column("room_id", id_type(), sa.ForeignKey("muc_rooms.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("nick", sa.String(1023), nullable=False),
    sa.Column("nodes", sa.Text(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)


# Built once: SQLAlchemy's compiled cache and the storage fast path's (``Database.fetch_one``) serve every call.
_FENCE = sa.select(rooms_table.c.fence).where(rooms_table.c.jid == sa.bindparam("jid"))


class SqlMucRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load_rooms(self) -> list[StoredRoom]:
        return await self.db.read_txn(self._load_txn, None)

    async def load_room(self, jid: str) -> StoredRoom | None:
        rooms = await self.db.read_txn(self._load_txn, jid)
        return rooms[0] if rooms else None

    @staticmethod
    async def _load_txn(conn: AsyncConnection, jid: str | None) -> list[StoredRoom]:
        rooms: dict[int, StoredRoom] = {}
        q = sa.select(rooms_table)
        if jid is not None:
            q = q.where(rooms_table.c.jid == jid)
        for row in await conn.execute(q):
            rooms[row.id] = StoredRoom(row.jid, json.loads(row.config), row.subject, row.subject_nick, fence=row.fence)
        if not rooms:
            return []
        aq = sa.select(affiliations_table)
        sq = sa.select(subscriptions_table)
        if jid is not None:
            aq = aq.where(affiliations_table.c.room_id.in_(list(rooms)))
            sq = sq.where(subscriptions_table.c.room_id.in_(list(rooms)))
        for row in await conn.execute(aq):
            r = rooms.get(row.room_id)
            if r is not None:
                r.affiliations[row.jid] = StoredAffiliation(row.affiliation, row.nick, row.reason)
        for row in await conn.execute(sq):
            r = rooms.get(row.room_id)
            if r is not None:
                r.subscriptions[row.jid] = StoredSubscription(row.nick, tuple(row.nodes.split()))
        return list(rooms.values())

    async def fence_of(self, jid: str) -> int:
        row = await self.db.fetch_one(_FENCE, {"jid": jid})
        return 0 if row is None else int(row.fence)

    async def claim(self, jid: str, fence: int) -> bool:
        async with self.db.transaction() as conn:
            row = await self._fenced(conn, jid, 0)
            if row is not None and row[1] > fence:
                return False
            if row is not None:
                await conn.execute(sa.update(rooms_table).where(rooms_table.c.id == row[0]).values(fence=fence))
            return True

    @staticmethod
    async def _fenced(conn: AsyncConnection, jid: str, fence: int) -> tuple[int, int] | None:
        """The room's (id, fence), locked for this transaction; ``FencedOut`` when ``fence``
        (non-zero) is lower than the stored one."""
        row = (await conn.execute(
            sa.select(rooms_table.c.id, rooms_table.c.fence).where(rooms_table.c.jid == jid).with_for_update()
        )).first()
        if row is None:
            return None
        if fence and row.fence > fence:
            raise FencedOut(f"room {jid} is written with token {row.fence}, newer than {fence}")
        return int(row.id), int(row.fence)

    async def save_room(self, room: StoredRoom) -> None:
        await self.db.run_txn(self._save_txn, room)

    @classmethod
    async def _save_txn(cls, conn: AsyncConnection, room: StoredRoom) -> None:
        await cls._fenced(conn, room.jid, room.fence)
        await conn.execute(sa.delete(rooms_table).where(rooms_table.c.jid == room.jid))
        res = await conn.execute(
            sa.insert(rooms_table).values(
                jid=room.jid, config=json.dumps(room.config), subject=room.subject,
                subject_nick=room.subject_nick, created_at=datetime.now(UTC), fence=room.fence,
            )
        )
        room_id = res.inserted_primary_key[0]  # type: ignore[index]
        affs = [
            {"room_id": room_id, "jid": j, "affiliation": a.affiliation, "nick": a.nick, "reason": a.reason}
            for j, a in room.affiliations.items() if a.affiliation != "none"
        ]
        if affs:
            await conn.execute(sa.insert(affiliations_table), affs)
        subs = [{"room_id": room_id, "jid": j, "nick": s.nick, "nodes": " ".join(s.nodes)} for j, s in room.subscriptions.items()]
        if subs:
            await conn.execute(sa.insert(subscriptions_table), subs)

    async def update_room(self, jid: str, config: dict[str, Any], subject: str, subject_nick: str, fence: int = 0) -> None:
        async with self.db.transaction() as conn:
            row = await self._fenced(conn, jid, fence)
            if row is None:
                return
            await conn.execute(
                sa.update(rooms_table).where(rooms_table.c.id == row[0])
                .values(config=json.dumps(config), subject=subject, subject_nick=subject_nick)
            )

    async def delete_room(self, jid: str, fence: int = 0) -> None:
        async with self.db.transaction() as conn:
            row = await self._fenced(conn, jid, fence)
            if row is not None:
                await conn.execute(sa.delete(rooms_table).where(rooms_table.c.id == row[0]))

    @classmethod
    async def _room_id(cls, conn: AsyncConnection, room: str, fence: int = 0) -> int | None:
        row = await cls._fenced(conn, room, fence)
        return None if row is None else row[0]

    async def set_affiliation(self, room: str, jid: str, aff: StoredAffiliation | None, fence: int = 0) -> None:
        await self.db.run_txn(self._set_aff_txn, room, jid, aff, fence)

    async def _set_aff_txn(self, conn: AsyncConnection, room: str, jid: str, aff: StoredAffiliation | None, fence: int) -> None:
        room_id = await self._room_id(conn, room, fence)
        if room_id is None:
            return
        t = affiliations_table
        await conn.execute(sa.delete(t).where(t.c.room_id == room_id, t.c.jid == jid))
        if aff is not None and aff.affiliation != "none":
            await conn.execute(sa.insert(t).values(room_id=room_id, jid=jid, affiliation=aff.affiliation, nick=aff.nick, reason=aff.reason))

    async def set_subscription(self, room: str, jid: str, sub: StoredSubscription | None, fence: int = 0) -> None:
        await self.db.run_txn(self._set_sub_txn, room, jid, sub, fence)

    async def _set_sub_txn(self, conn: AsyncConnection, room: str, jid: str, sub: StoredSubscription | None, fence: int) -> None:
        room_id = await self._room_id(conn, room, fence)
        if room_id is None:
            return
        t = subscriptions_table
        await conn.execute(sa.delete(t).where(t.c.room_id == room_id, t.c.jid == jid))
        if sub is not None:
            await conn.execute(sa.insert(t).values(room_id=room_id, jid=jid, nick=sub.nick, nodes=" ".join(sub.nodes)))


class MemoryMucRepository:
    """The in-memory twin (tests, and servers that want no persistence)."""

    def __init__(self) -> None:
        self._rooms: dict[str, StoredRoom] = {}

    @staticmethod
    def _copy(r: StoredRoom) -> StoredRoom:
        return StoredRoom(
            r.jid, json.loads(json.dumps(r.config)), r.subject, r.subject_nick,
            {j: StoredAffiliation(a.affiliation, a.nick, a.reason) for j, a in r.affiliations.items() if a.affiliation != "none"},
            {j: StoredSubscription(s.nick, tuple(s.nodes)) for j, s in r.subscriptions.items()},
            r.fence,
        )

    def _fenced(self, jid: str, fence: int) -> StoredRoom | None:
        r = self._rooms.get(jid)
        if r is not None and fence and r.fence > fence:
            raise FencedOut(f"room {jid} is written with token {r.fence}, newer than {fence}")
        return r

    async def load_rooms(self) -> list[StoredRoom]:
        return [self._copy(r) for r in self._rooms.values()]

    async def load_room(self, jid: str) -> StoredRoom | None:
        r = self._rooms.get(jid)
        return None if r is None else self._copy(r)

    async def fence_of(self, jid: str) -> int:
        r = self._rooms.get(jid)
        return 0 if r is None else r.fence

    async def claim(self, jid: str, fence: int) -> bool:
        r = self._rooms.get(jid)
        if r is not None and r.fence > fence:
            return False
        if r is not None:
            r.fence = fence
        return True

    async def save_room(self, room: StoredRoom) -> None:
        self._fenced(room.jid, room.fence)
        self._rooms[room.jid] = self._copy(room)

    async def update_room(self, jid: str, config: dict[str, Any], subject: str, subject_nick: str, fence: int = 0) -> None:
        r = self._fenced(jid, fence)
        if r is not None:
            r.config, r.subject, r.subject_nick = json.loads(json.dumps(config)), subject, subject_nick

    async def delete_room(self, jid: str, fence: int = 0) -> None:
        if self._fenced(jid, fence) is not None:
            self._rooms.pop(jid, None)

    async def set_affiliation(self, room: str, jid: str, aff: StoredAffiliation | None, fence: int = 0) -> None:
        r = self._fenced(room, fence)
        if r is None:
            return
        if aff is None or aff.affiliation == "none":
            r.affiliations.pop(jid, None)
        else:
            r.affiliations[jid] = StoredAffiliation(aff.affiliation, aff.nick, aff.reason)

    async def set_subscription(self, room: str, jid: str, sub: StoredSubscription | None, fence: int = 0) -> None:
        r = self._fenced(room, fence)
        if r is None:
            return
        if sub is None:
            r.subscriptions.pop(jid, None)
        else:
            r.subscriptions[jid] = StoredSubscription(sub.nick, tuple(sub.nodes))
