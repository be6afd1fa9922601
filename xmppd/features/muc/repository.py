"""XEP-0045 §10.2 persistent rooms: their configuration, subject, affiliations and MUC/Sub subscriptions.

A repository ``Protocol``, its SQL implementation (SQLAlchemy Core on ``Database``) and an
in-memory twin that passes the same contract tests. Only persistent rooms are stored.
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


@dataclass(slots=True)
class StoredRoom:
    jid: str
    config: dict[str, Any]
    subject: str = ""
    subject_nick: str = ""
    affiliations: dict[str, StoredAffiliation] = field(default_factory=dict)  # bare JID -> affiliation
    subscriptions: dict[str, StoredSubscription] = field(default_factory=dict)  # bare JID -> subscription


class MucRepository(Protocol):
    async def load_rooms(self) -> list[StoredRoom]: ...
    async def save_room(self, room: StoredRoom) -> None:
        """Write the whole room (config, subject, affiliations, subscriptions), replacing what was stored."""
    async def update_room(self, jid: str, config: dict[str, Any], subject: str, subject_nick: str) -> None: ...
    async def delete_room(self, jid: str) -> None: ...
    async def set_affiliation(self, room: str, jid: str, aff: StoredAffiliation | None) -> None:
        """Store an affiliation (None or 'none' removes it)."""
    async def set_subscription(self, room: str, jid: str, sub: StoredSubscription | None) -> None: ...


rooms_table = sa.Table(
    "muc_rooms",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("jid", indexed_string(), nullable=False, unique=True),
    sa.Column("config", sa.Text(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("subject_nick", sa.String(1023), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
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


class SqlMucRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load_rooms(self) -> list[StoredRoom]:
        return await self.db.read_txn(self._load_txn)

    @staticmethod
    async def _load_txn(conn: AsyncConnection) -> list[StoredRoom]:
        rooms: dict[int, StoredRoom] = {}
        for row in await conn.execute(sa.select(rooms_table)):
            rooms[row.id] = StoredRoom(row.jid, json.loads(row.config), row.subject, row.subject_nick)
        for row in await conn.execute(sa.select(affiliations_table)):
            r = rooms.get(row.room_id)
            if r is not None:
                r.affiliations[row.jid] = StoredAffiliation(row.affiliation, row.nick, row.reason)
        for row in await conn.execute(sa.select(subscriptions_table)):
            r = rooms.get(row.room_id)
            if r is not None:
                r.subscriptions[row.jid] = StoredSubscription(row.nick, tuple(row.nodes.split()))
        return list(rooms.values())

    async def save_room(self, room: StoredRoom) -> None:
        await self.db.run_txn(self._save_txn, room)

    @staticmethod
    async def _save_txn(conn: AsyncConnection, room: StoredRoom) -> None:
        await conn.execute(sa.delete(rooms_table).where(rooms_table.c.jid == room.jid))
        res = await conn.execute(
            sa.insert(rooms_table).values(
                jid=room.jid, config=json.dumps(room.config), subject=room.subject,
                subject_nick=room.subject_nick, created_at=datetime.now(UTC),
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

    async def update_room(self, jid: str, config: dict[str, Any], subject: str, subject_nick: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                sa.update(rooms_table).where(rooms_table.c.jid == jid)
                .values(config=json.dumps(config), subject=subject, subject_nick=subject_nick)
            )

    async def delete_room(self, jid: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(sa.delete(rooms_table).where(rooms_table.c.jid == jid))

    @staticmethod
    async def _room_id(conn: AsyncConnection, room: str) -> int | None:
        return (await conn.execute(sa.select(rooms_table.c.id).where(rooms_table.c.jid == room))).scalar()

    async def set_affiliation(self, room: str, jid: str, aff: StoredAffiliation | None) -> None:
        await self.db.run_txn(self._set_aff_txn, room, jid, aff)

    async def _set_aff_txn(self, conn: AsyncConnection, room: str, jid: str, aff: StoredAffiliation | None) -> None:
        room_id = await self._room_id(conn, room)
        if room_id is None:
            return
        t = affiliations_table
        await conn.execute(sa.delete(t).where(t.c.room_id == room_id, t.c.jid == jid))
        if aff is not None and aff.affiliation != "none":
            await conn.execute(sa.insert(t).values(room_id=room_id, jid=jid, affiliation=aff.affiliation, nick=aff.nick, reason=aff.reason))

    async def set_subscription(self, room: str, jid: str, sub: StoredSubscription | None) -> None:
        await self.db.run_txn(self._set_sub_txn, room, jid, sub)

    async def _set_sub_txn(self, conn: AsyncConnection, room: str, jid: str, sub: StoredSubscription | None) -> None:
        room_id = await self._room_id(conn, room)
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
        )

    async def load_rooms(self) -> list[StoredRoom]:
        return [self._copy(r) for r in self._rooms.values()]

    async def save_room(self, room: StoredRoom) -> None:
        self._rooms[room.jid] = self._copy(room)

    async def update_room(self, jid: str, config: dict[str, Any], subject: str, subject_nick: str) -> None:
        r = self._rooms.get(jid)
        if r is not None:
            r.config, r.subject, r.subject_nick = json.loads(json.dumps(config)), subject, subject_nick

    async def delete_room(self, jid: str) -> None:
        self._rooms.pop(jid, None)

    async def set_affiliation(self, room: str, jid: str, aff: StoredAffiliation | None) -> None:
        r = self._rooms.get(room)
        if r is None:
            return
        if aff is None or aff.affiliation == "none":
            r.affiliations.pop(jid, None)
        else:
            r.affiliations[jid] = StoredAffiliation(aff.affiliation, aff.nick, aff.reason)

    async def set_subscription(self, room: str, jid: str, sub: StoredSubscription | None) -> None:
        r = self._rooms.get(room)
        if r is None:
            return
        if sub is None:
            r.subscriptions.pop(jid, None)
        else:
            r.subscriptions[jid] = StoredSubscription(sub.nick, tuple(sub.nodes))
