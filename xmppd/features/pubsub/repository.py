"""XEP-0060 PubSub service: the repository of nodes, items, affiliations and subscriptions.

Nodes are global to the service (``pubsub.<domain>``); affiliations and subscriptions are kept
per JID string (bare JIDs for affiliations, the subscribed JID as given for subscriptions),
so that deleting an account removes its rows in ``delete_account_txn`` and a node left without
an owner goes with it. Items are kept by the item store PEP uses (:mod:`..pep.items`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, id_type, indexed_string, metadata
from ..pep.items import Item, ItemStore, items_table
from ..pep.repository import NodeExists, NodeRecord, TooManyNodes

__all__ = ["Affiliation", "PubSubRepository", "Subscription", "pubsub_affiliations", "pubsub_items", "pubsub_nodes", "pubsub_subscriptions"]

pubsub_nodes = sa.Table(
    "pubsub_nodes",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("node", indexed_string(), nullable=False, unique=True),
    sa.Column("config", sa.Text(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False, default=0),
    **MYSQL_TABLE_KWARGS,
)
pubsub_items = items_table("pubsub_items", "pubsub_nodes")
pubsub_affiliations = sa.Table(
    "pubsub_affiliations",
    metadata,
    sa.Column("node_id", id_type(), sa.ForeignKey("pubsub_nodes.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("affiliation", sa.String(16), nullable=False),
    sa.Index("ix_pubsub_affiliations_jid", "jid"),
    **MYSQL_TABLE_KWARGS,
)
pubsub_subscriptions = sa.Table(
    "pubsub_subscriptions",
    metadata,
    sa.Column("node_id", id_type(), sa.ForeignKey("pubsub_nodes.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    sa.Column("jid", indexed_string(), primary_key=True),
    sa.Column("bare", indexed_string(), nullable=False),
    sa.Column("subid", sa.String(64), nullable=False),
    sa.Index("ix_pubsub_subscriptions_bare", "bare"),
    **MYSQL_TABLE_KWARGS,
)

_N = pubsub_nodes.c
_ITEMS = ItemStore(pubsub_items, pubsub_nodes)
_A = pubsub_affiliations.c
_S = pubsub_subscriptions.c


@dataclass(frozen=True, slots=True)
class Affiliation:
    node: str
    jid: str
    affiliation: str


@dataclass(frozen=True, slots=True)
class Subscription:
    node: str
    jid: str
    subid: str


class TooManySubscriptions(Exception):
    """The node has as many subscriptions as it may."""


def _record(row: Any) -> NodeRecord:
    return NodeRecord(row.id, row.node, json.loads(row.config))


class PubSubRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ nodes

    async def node(self, node: str) -> NodeRecord | None:
        return await self._db.read_txn(self._node_txn, node)

    @staticmethod
    async def _node_txn(conn: AsyncConnection, node: str) -> NodeRecord | None:
        row = (await conn.execute(sa.select(_N.id, _N.node, _N.config).where(_N.node == node))).first()
        return None if row is None else _record(row)

    async def nodes(self) -> list[NodeRecord]:
        return await self._db.read_txn(self._nodes_txn)

    @staticmethod
    async def _nodes_txn(conn: AsyncConnection) -> list[NodeRecord]:
        return [_record(r) for r in await conn.execute(sa.select(_N.id, _N.node, _N.config).order_by(_N.node))]

    async def create(self, node: str, config: dict[str, Any], owner: str, max_per_owner: int) -> NodeRecord:
        return await self._db.run_txn(self._create_txn, node, config, owner, max_per_owner)

    @staticmethod
    async def _create_txn(conn: AsyncConnection, node: str, config: dict[str, Any], owner: str, max_per_owner: int) -> NodeRecord:
        if (await conn.execute(sa.select(_N.id).where(_N.node == node))).first() is not None:
            raise NodeExists(node)
        owned = (await conn.execute(
            sa.select(sa.func.count()).select_from(pubsub_affiliations).where(_A.jid == owner, _A.affiliation == "owner")
        )).scalar_one()
        if owned >= max_per_owner:
            raise TooManyNodes(f"at most {max_per_owner} nodes per owner")
        res = await conn.execute(pubsub_nodes.insert().values(node=node, config=json.dumps(config), seq=0))
        assert res.inserted_primary_key is not None
        node_id = int(res.inserted_primary_key[0])
        await conn.execute(pubsub_affiliations.insert().values(node_id=node_id, jid=owner, affiliation="owner"))
        return NodeRecord(node_id, node, dict(config))

    async def configure(self, node_id: int, config: dict[str, Any], keep: int) -> None:
        await self._db.run_txn(self._configure_txn, node_id, config, keep)

    @staticmethod
    async def _configure_txn(conn: AsyncConnection, node_id: int, config: dict[str, Any], keep: int) -> None:
        await conn.execute(pubsub_nodes.update().where(_N.id == node_id).values(config=json.dumps(config)))
        await _ITEMS.trim_txn(conn, node_id, keep)

    async def delete(self, node_id: int) -> None:
        await self._db.run_txn(self._delete_txn, node_id)

    @staticmethod
    async def _delete_txn(conn: AsyncConnection, node_id: int) -> None:
        await _ITEMS.purge_txn(conn, node_id)
        for t in (pubsub_affiliations, pubsub_subscriptions):
            await conn.execute(t.delete().where(t.c.node_id == node_id))
        await conn.execute(pubsub_nodes.delete().where(_N.id == node_id))

    # ------------------------------------------------------------------ items

    async def publish(self, node_id: int, item: Item, keep: int) -> list[str]:
        return await self._db.run_txn(_ITEMS.put_txn, node_id, item, keep)

    async def items(self, node_id: int, ids: Sequence[str] | None = None, newest: int | None = None) -> list[Item]:
        return await self._db.read_txn(_ITEMS.items_txn, node_id, ids, newest)

    async def retract(self, node_id: int, ids: Sequence[str]) -> list[str]:
        return await self._db.run_txn(_ITEMS.retract_txn, node_id, ids)

    async def purge(self, node_id: int) -> None:
        await self._db.run_txn(_ITEMS.purge_txn, node_id)

    # ------------------------------------------------------------------ affiliations

    async def affiliation(self, node_id: int, bare: str) -> str:
        return await self._db.read_txn(self._affiliation_txn, node_id, bare)

    @staticmethod
    async def _affiliation_txn(conn: AsyncConnection, node_id: int, bare: str) -> str:
        got = (await conn.execute(sa.select(_A.affiliation).where(_A.node_id == node_id, _A.jid == bare))).scalar()
        return got or "none"

    async def affiliations(self, node_id: int | None = None, jid: str | None = None) -> list[Affiliation]:
        return await self._db.read_txn(self._affiliations_txn, node_id, jid)

    @staticmethod
    async def _affiliations_txn(conn: AsyncConnection, node_id: int | None, jid: str | None) -> list[Affiliation]:
        q = sa.select(_N.node, _A.jid, _A.affiliation).select_from(pubsub_affiliations.join(pubsub_nodes, _N.id == _A.node_id))
        if node_id is not None:
            q = q.where(_A.node_id == node_id)
        if jid is not None:
            q = q.where(_A.jid == jid)
        return [Affiliation(r.node, r.jid, r.affiliation) for r in await conn.execute(q.order_by(_N.node, _A.jid))]

    async def set_affiliations(self, node_id: int, changes: Sequence[tuple[str, str]]) -> None:
        """Apply (bare JID, affiliation) changes ('none' removes); the node keeps an owner or nothing changes."""
        await self._db.run_txn(self._set_affiliations_txn, node_id, changes)

    @staticmethod
    async def _set_affiliations_txn(conn: AsyncConnection, node_id: int, changes: Sequence[tuple[str, str]]) -> None:
        await conn.execute(sa.select(_N.id).where(_N.id == node_id).with_for_update())
        for jid, aff in changes:
            await conn.execute(pubsub_affiliations.delete().where(_A.node_id == node_id, _A.jid == jid))
            if aff != "none":
                await conn.execute(pubsub_affiliations.insert().values(node_id=node_id, jid=jid, affiliation=aff))
            if aff == "outcast":
                await conn.execute(pubsub_subscriptions.delete().where(_S.node_id == node_id, _S.bare == jid))
        owners = (await conn.execute(
            sa.select(sa.func.count()).select_from(pubsub_affiliations).where(_A.node_id == node_id, _A.affiliation == "owner"))).scalar_one()
        if owners == 0:
            raise ValueError("a node keeps at least one owner")

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, node_id: int, jid: str, bare: str, subid: str, max_subscriptions: int) -> Subscription:
        return await self._db.run_txn(self._subscribe_txn, node_id, jid, bare, subid, max_subscriptions)

    @staticmethod
    async def _subscribe_txn(conn: AsyncConnection, node_id: int, jid: str, bare: str, subid: str, max_subscriptions: int) -> Subscription:
        node = (await conn.execute(sa.select(_N.node).where(_N.id == node_id).with_for_update())).scalar_one()
        existing = (await conn.execute(sa.select(_S.subid).where(_S.node_id == node_id, _S.jid == jid))).scalar()
        if existing is not None:
            return Subscription(node, jid, existing)
        count = (await conn.execute(sa.select(sa.func.count()).select_from(pubsub_subscriptions).where(_S.node_id == node_id))).scalar_one()
        if count >= max_subscriptions:
            raise TooManySubscriptions(f"at most {max_subscriptions} subscriptions per node")
        await conn.execute(pubsub_subscriptions.insert().values(node_id=node_id, jid=jid, bare=bare, subid=subid))
        return Subscription(node, jid, subid)

    async def unsubscribe(self, node_id: int, jid: str) -> bool:
        return await self._db.run_txn(self._unsubscribe_txn, node_id, jid)

    @staticmethod
    async def _unsubscribe_txn(conn: AsyncConnection, node_id: int, jid: str) -> bool:
        return bool((await conn.execute(pubsub_subscriptions.delete().where(_S.node_id == node_id, _S.jid == jid))).rowcount)

    async def subscriptions(self, node_id: int | None = None, bare: str | None = None) -> list[Subscription]:
        return await self._db.read_txn(self._subscriptions_txn, node_id, bare)

    @staticmethod
    async def _subscriptions_txn(conn: AsyncConnection, node_id: int | None, bare: str | None) -> list[Subscription]:
        q = sa.select(_N.node, _S.jid, _S.subid).select_from(pubsub_subscriptions.join(pubsub_nodes, _N.id == _S.node_id))
        if node_id is not None:
            q = q.where(_S.node_id == node_id)
        if bare is not None:
            q = q.where(_S.bare == bare)
        return [Subscription(r.node, r.jid, r.subid) for r in await conn.execute(q.order_by(_N.node, _S.jid))]

    # ------------------------------------------------------------------ accounts

    @staticmethod
    async def delete_account_txn(conn: AsyncConnection, bare: str) -> int:
        """Remove ``bare``'s subscriptions and affiliations; delete the nodes left without an owner."""
        await conn.execute(pubsub_subscriptions.delete().where(_S.bare == bare))
        owned = [r.node_id for r in await conn.execute(sa.select(_A.node_id).where(_A.jid == bare, _A.affiliation == "owner"))]
        await conn.execute(pubsub_affiliations.delete().where(_A.jid == bare))
        orphans = [nid for nid in owned if not (await conn.execute(
            sa.select(_A.jid).where(_A.node_id == nid, _A.affiliation == "owner").limit(1))).first()]
        for nid in orphans:
            await PubSubRepository._delete_txn(conn, nid)
        return len(orphans)
