"""The item store of a node table: PEP (``pep_items`` of ``pep_nodes``) and the PubSub service
(``pubsub_items`` of ``pubsub_nodes``) keep their items the same way, in one code.

Items are serialised payloads ordered per node by a sequence number taken from the node row
(``seq``), so that two publishers on one node are serialised by that row's lock and the oldest
item is always the one with the smallest ``seq``. Every method runs inside the caller's
transaction (``*_txn``); the repositories own the transactions and the nodes.

It lives beside PEP because the PubSub service builds on PEP (its configuration, errors and
node records), never the other way round.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, indexed_string, metadata

__all__ = ["Item", "ItemStore", "items_table"]


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    payload: str  # serialised XML of the item's payload ('' for none)
    publisher: str
    published_at: datetime


def items_table(name: str, nodes: str) -> sa.Table:
    """The items table ``name`` of the node table ``nodes`` (one shape for PEP and PubSub)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("node_id", id_type(), sa.ForeignKey(f"{nodes}.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
        sa.Column("item_id", indexed_string(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("publisher", indexed_string(), nullable=False),
        sa.Column("published_at", UtcDateTime(), nullable=False),
        sa.Column("payload", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.Index(f"ix_{name}_node_seq", "node_id", "seq"),
        **MYSQL_TABLE_KWARGS,
    )


def item_of(row: Any) -> Item:
    """An :class:`Item` from a row with ``item_id, payload, publisher, published_at``."""
    return Item(row.item_id, row.payload, row.publisher, row.published_at)


class ItemStore:
    """The item operations on ``items`` (rows of a node in ``nodes``, which holds the ``seq``)."""

    def __init__(self, items: sa.Table, nodes: sa.Table) -> None:
        self.table = items
        self._nodes = nodes
        self.c = items.c

    async def put_txn(self, conn: AsyncConnection, node_id: int, item: Item, keep: int) -> list[str]:
        """Store ``item`` as the node's newest (replacing an item of the same id) and keep the
        newest ``keep``; returns the ids dropped to fit. Locks the node row (its ``seq``)."""
        n, i = self._nodes.c, self.c
        seq = (await conn.execute(sa.select(n.seq).where(n.id == node_id).with_for_update())).scalar_one() + 1
        await conn.execute(self._nodes.update().where(n.id == node_id).values(seq=seq))
        await conn.execute(self.table.delete().where(i.node_id == node_id, i.item_id == item.id))
        await conn.execute(self.table.insert().values(
            node_id=node_id, item_id=item.id, seq=seq, publisher=item.publisher,
            published_at=item.published_at, payload=item.payload,
        ))
        return await self.trim_txn(conn, node_id, keep)

    async def trim_txn(self, conn: AsyncConnection, node_id: int, keep: int) -> list[str]:
        """Keep the node's newest ``keep`` items; returns the ids dropped."""
        i = self.c
        rows = (await conn.execute(
            sa.select(i.item_id).where(i.node_id == node_id).order_by(i.seq.desc()).offset(keep).limit(1 << 30)
        )).all()
        dropped = [r.item_id for r in rows]
        if dropped:
            await conn.execute(self.table.delete().where(i.node_id == node_id, i.item_id.in_(dropped)))
        return dropped

    async def items_txn(
        self, conn: AsyncConnection, node_id: int, ids: Sequence[str] | None, newest: int | None
    ) -> list[Item]:
        """The node's items (``ids``: only those; ``newest``: the newest N), oldest first."""
        i = self.c
        q = sa.select(i.item_id, i.payload, i.publisher, i.published_at).where(i.node_id == node_id)
        if ids is not None:
            q = q.where(i.item_id.in_(list(ids)))
        q = q.order_by(i.seq.desc())
        if newest is not None:
            q = q.limit(newest)
        rows = [item_of(r) for r in await conn.execute(q)]
        rows.reverse()  # oldest first
        return rows

    async def retract_txn(self, conn: AsyncConnection, node_id: int, ids: Sequence[str]) -> list[str]:
        """Delete the named items; returns the ids that were there."""
        i = self.c
        found = [r.item_id for r in await conn.execute(
            sa.select(i.item_id).where(i.node_id == node_id, i.item_id.in_(list(ids))))]
        if found:
            await conn.execute(self.table.delete().where(i.node_id == node_id, i.item_id.in_(found)))
        return found

    async def purge_txn(self, conn: AsyncConnection, node_id: int) -> int:
        """Delete every item of the node (also before the node itself: SQLite enforces the
        cascade only with foreign keys on); returns how many."""
        return int((await conn.execute(self.table.delete().where(self.c.node_id == node_id))).rowcount)
