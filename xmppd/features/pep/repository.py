"""XEP-0163 Personal Eventing Protocol: the repository of nodes and items (Protocol, SQL).

A node belongs to an account (``pep_nodes``, deleted with it) and keeps its configuration as
JSON; its items (``pep_items``) are kept by the item store PubSub shares (:mod:`.items`):
serialised payloads ordered by a per-node sequence number taken from the node row.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.accounts import AccountNotFound, account_id_query, accounts
from ...storage.engine import Database
from ...storage.metadata import MYSQL_TABLE_KWARGS, id_type, indexed_string, metadata
from .items import Item, ItemStore, item_of, items_table

__all__ = [
    "MAX_ID_LENGTH", "Item", "MemoryPepRepository", "NodeExists", "NodeRecord", "PepRepository", "SqlPepRepository",
    "TooManyNodes", "pep_items", "pep_nodes",
]

pep_nodes = sa.Table(
    "pep_nodes",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("node", indexed_string(), nullable=False),
    sa.Column("config", sa.Text(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False, default=0),
    sa.UniqueConstraint("account_id", "node"),
    **MYSQL_TABLE_KWARGS,
)

pep_items = items_table("pep_items", "pep_nodes")
_ITEMS = ItemStore(pep_items, pep_nodes)

#: Longest node name and item id accepted (both are indexed).
MAX_ID_LENGTH = 191


class NodeExists(Exception):
    """The node is there already (create)."""


class TooManyNodes(Exception):
    """Creating the node would exceed the account's number of nodes."""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    id: int
    node: str
    config: dict[str, Any]


class PepRepository(Protocol):
    async def node(self, username: str, domain: str, node: str) -> NodeRecord | None: ...
    async def nodes(self, username: str, domain: str) -> list[NodeRecord]: ...
    async def create(self, username: str, domain: str, node: str, config: dict[str, Any], max_nodes: int) -> NodeRecord:
        """Raises ``NodeExists``, ``TooManyNodes`` or ``AccountNotFound``."""
        ...
    async def publish(
        self, username: str, domain: str, node: str, create_config: dict[str, Any], item: Item | None,
        keep: int, max_nodes: int,
    ) -> tuple[NodeRecord, bool, list[str]]:
        """Store ``item`` in ``node``, created with ``create_config`` when missing, unless the
        node does not persist items; keep the newest ``max_items`` of the node's configuration
        (at most ``keep``). Returns (node, created, ids dropped to fit)."""
        ...
    async def configure(self, node_id: int, config: dict[str, Any], keep: int) -> list[str]: ...
    async def items(self, node_id: int, ids: Sequence[str] | None = None, newest: int | None = None) -> list[Item]: ...
    async def retract(self, node_id: int, ids: Sequence[str]) -> list[str]: ...
    async def purge(self, node_id: int) -> int: ...
    async def delete(self, node_id: int) -> bool: ...
    async def last_items(self, owners: Sequence[str], domain: str) -> list[tuple[str, NodeRecord, Item]]: ...


def _record(row: Any) -> NodeRecord:
    return NodeRecord(row.id, row.node, json.loads(row.config))


_N = pep_nodes.c
_I = pep_items.c


class SqlPepRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ nodes

    async def node(self, username: str, domain: str, node: str) -> NodeRecord | None:
        return await self._db.read_txn(self._node_txn, username, domain, node)

    @staticmethod
    async def _node_txn(conn: AsyncConnection, username: str, domain: str, node: str) -> NodeRecord | None:
        q = sa.select(_N.id, _N.node, _N.config).where(
            _N.account_id == account_id_query(username, domain).scalar_subquery(), _N.node == node)
        row = (await conn.execute(q)).first()
        return None if row is None else _record(row)

    async def nodes(self, username: str, domain: str) -> list[NodeRecord]:
        return await self._db.read_txn(self._nodes_txn, username, domain)

    @staticmethod
    async def _nodes_txn(conn: AsyncConnection, username: str, domain: str) -> list[NodeRecord]:
        q = sa.select(_N.id, _N.node, _N.config).where(
            _N.account_id == account_id_query(username, domain).scalar_subquery()).order_by(_N.node)
        return [_record(r) for r in await conn.execute(q)]

    async def create(self, username: str, domain: str, node: str, config: dict[str, Any], max_nodes: int) -> NodeRecord:
        return await self._db.run_txn(self._create_txn, username, domain, node, config, max_nodes)

    @classmethod
    async def _create_txn(cls, conn: AsyncConnection, username: str, domain: str, node: str, config: dict[str, Any], max_nodes: int) -> NodeRecord:
        found_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if found_id is None:
            raise AccountNotFound(username, domain)
        account_id = int(found_id)  # type: ignore[call-overload]
        found = (await conn.execute(sa.select(_N.id).where(_N.account_id == account_id, _N.node == node))).scalar()
        if found is not None:
            raise NodeExists(node)
        return await cls._insert_node_txn(conn, account_id, node, config, max_nodes)

    @staticmethod
    async def _insert_node_txn(conn: AsyncConnection, account_id: int, node: str, config: dict[str, Any], max_nodes: int) -> NodeRecord:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(pep_nodes).where(_N.account_id == account_id))).scalar_one()
        if count >= max_nodes:
            raise TooManyNodes(f"at most {max_nodes} nodes per account")
        res = await conn.execute(pep_nodes.insert().values(account_id=account_id, node=node, config=json.dumps(config), seq=0))
        assert res.inserted_primary_key is not None
        return NodeRecord(int(res.inserted_primary_key[0]), node, dict(config))

    async def configure(self, node_id: int, config: dict[str, Any], keep: int) -> list[str]:
        return await self._db.run_txn(self._configure_txn, node_id, config, keep)

    @staticmethod
    async def _configure_txn(conn: AsyncConnection, node_id: int, config: dict[str, Any], keep: int) -> list[str]:
        await conn.execute(pep_nodes.update().where(_N.id == node_id).values(config=json.dumps(config)))
        return await _ITEMS.trim_txn(conn, node_id, keep)

    async def delete(self, node_id: int) -> bool:
        return await self._db.run_txn(self._delete_txn, node_id)

    @staticmethod
    async def _delete_txn(conn: AsyncConnection, node_id: int) -> bool:
        await _ITEMS.purge_txn(conn, node_id)  # items first: SQLite cascades only with foreign keys on
        return bool((await conn.execute(pep_nodes.delete().where(_N.id == node_id))).rowcount)

    # ------------------------------------------------------------------ items

    async def publish(
        self, username: str, domain: str, node: str, create_config: dict[str, Any], item: Item | None,
        keep: int, max_nodes: int,
    ) -> tuple[NodeRecord, bool, list[str]]:
        return await self._db.run_txn(self._publish_txn, username, domain, node, create_config, item, keep, max_nodes)

    @classmethod
    async def _publish_txn(
        cls, conn: AsyncConnection, username: str, domain: str, node: str, create_config: dict[str, Any],
        item: Item | None, keep: int, max_nodes: int,
    ) -> tuple[NodeRecord, bool, list[str]]:
        # The account row's lock serialises node creation per account (the count of nodes).
        found_id = (await conn.execute(account_id_query(username, domain).with_for_update())).scalar()
        if found_id is None:
            raise AccountNotFound(username, domain)
        account_id = int(found_id)  # type: ignore[call-overload]
        row = (await conn.execute(
            sa.select(_N.id, _N.node, _N.config).where(_N.account_id == account_id, _N.node == node).with_for_update()
        )).first()
        created = row is None
        record = await cls._insert_node_txn(conn, account_id, node, create_config, max_nodes) if row is None else _record(row)
        if item is None or not record.config.get("persist_items", True):
            return record, created, []
        keep = max(1, min(int(record.config.get("max_items", 1)), keep))
        return record, created, await _ITEMS.put_txn(conn, record.id, item, keep)

    async def items(self, node_id: int, ids: Sequence[str] | None = None, newest: int | None = None) -> list[Item]:
        return await self._db.read_txn(_ITEMS.items_txn, node_id, ids, newest)

    async def retract(self, node_id: int, ids: Sequence[str]) -> list[str]:
        return await self._db.run_txn(_ITEMS.retract_txn, node_id, ids)

    async def purge(self, node_id: int) -> int:
        return await self._db.run_txn(_ITEMS.purge_txn, node_id)

    async def last_items(self, owners: Sequence[str], domain: str) -> list[tuple[str, NodeRecord, Item]]:
        if not owners:
            return []
        return await self._db.read_txn(self._last_items_txn, list(owners), domain)

    @staticmethod
    async def _last_items_txn(conn: AsyncConnection, owners: list[str], domain: str) -> list[tuple[str, NodeRecord, Item]]:
        """The newest item of every node of these accounts (nodes without items left out)."""
        newest = (
            sa.select(_I.node_id, sa.func.max(_I.seq).label("seq")).group_by(_I.node_id).subquery()
        )
        a = accounts.c
        q = (
            sa.select(a.username, _N.id, _N.node, _N.config, _I.item_id, _I.payload, _I.publisher, _I.published_at)
            .select_from(pep_nodes.join(accounts, a.id == _N.account_id)
                         .join(newest, newest.c.node_id == _N.id)
                         .join(pep_items, sa.and_(_I.node_id == _N.id, _I.seq == newest.c.seq)))
            .where(a.domain == domain, a.username.in_(owners))
        )
        return [(r.username, _record(r), item_of(r)) for r in await conn.execute(q)]


class MemoryPepRepository:
    """The in-process twin of :class:`SqlPepRepository` (same contract, tests only)."""

    def __init__(self, accounts: Any) -> None:
        self._accounts = accounts
        self._ids = 0
        self._nodes: dict[int, tuple[int, NodeRecord]] = {}  # node id -> (account id, record)
        self._items: dict[int, dict[str, tuple[int, Item]]] = {}  # node id -> item id -> (seq, item)
        self._seq = 0

    async def _account(self, username: str, domain: str) -> int | None:
        account = await self._accounts.get(username, domain)
        return None if account is None else int(account.id)

    def _find(self, account_id: int, node: str) -> NodeRecord | None:
        return next((r for a, r in self._nodes.values() if a == account_id and r.node == node), None)

    async def node(self, username: str, domain: str, node: str) -> NodeRecord | None:
        account_id = await self._account(username, domain)
        return None if account_id is None else self._find(account_id, node)

    async def nodes(self, username: str, domain: str) -> list[NodeRecord]:
        account_id = await self._account(username, domain)
        return sorted((r for a, r in self._nodes.values() if a == account_id), key=lambda r: r.node)

    def _insert(self, account_id: int, node: str, config: dict[str, Any], max_nodes: int) -> NodeRecord:
        if sum(1 for a, _r in self._nodes.values() if a == account_id) >= max_nodes:
            raise TooManyNodes(f"at most {max_nodes} nodes per account")
        self._ids += 1
        rec = NodeRecord(self._ids, node, dict(config))
        self._nodes[rec.id] = (account_id, rec)
        self._items[rec.id] = {}
        return rec

    async def create(self, username: str, domain: str, node: str, config: dict[str, Any], max_nodes: int) -> NodeRecord:
        account_id = await self._account(username, domain)
        if account_id is None:
            raise AccountNotFound(username, domain)
        if self._find(account_id, node) is not None:
            raise NodeExists(node)
        return self._insert(account_id, node, config, max_nodes)

    async def publish(
        self, username: str, domain: str, node: str, create_config: dict[str, Any], item: Item | None,
        keep: int, max_nodes: int,
    ) -> tuple[NodeRecord, bool, list[str]]:
        account_id = await self._account(username, domain)
        if account_id is None:
            raise AccountNotFound(username, domain)
        rec = self._find(account_id, node)
        created = rec is None
        if rec is None:
            rec = self._insert(account_id, node, create_config, max_nodes)
        if item is None or not rec.config.get("persist_items", True):
            return rec, created, []
        self._seq += 1
        self._items[rec.id][item.id] = (self._seq, item)
        return rec, created, self._trim(rec.id, max(1, min(int(rec.config.get("max_items", 1)), keep)))

    def _trim(self, node_id: int, keep: int) -> list[str]:
        ordered = sorted(self._items[node_id].items(), key=lambda kv: kv[1][0], reverse=True)
        dropped = [i for i, _v in ordered[keep:]]
        for i in dropped:
            del self._items[node_id][i]
        return dropped

    async def configure(self, node_id: int, config: dict[str, Any], keep: int) -> list[str]:
        account_id, rec = self._nodes[node_id]
        self._nodes[node_id] = (account_id, NodeRecord(rec.id, rec.node, dict(config)))
        return self._trim(node_id, keep)

    async def items(self, node_id: int, ids: Sequence[str] | None = None, newest: int | None = None) -> list[Item]:
        ordered = sorted(self._items.get(node_id, {}).values(), key=lambda v: v[0], reverse=True)
        chosen = [it for _s, it in ordered if ids is None or it.id in ids]
        if newest is not None:
            chosen = chosen[:newest]
        chosen.reverse()
        return chosen

    async def retract(self, node_id: int, ids: Sequence[str]) -> list[str]:
        found = [i for i in self._items.get(node_id, {}) if i in ids]
        for i in found:
            del self._items[node_id][i]
        return found

    async def purge(self, node_id: int) -> int:
        n = len(self._items.get(node_id, {}))
        self._items[node_id] = {}
        return n

    async def delete(self, node_id: int) -> bool:
        self._items.pop(node_id, None)
        return self._nodes.pop(node_id, None) is not None

    async def last_items(self, owners: Sequence[str], domain: str) -> list[tuple[str, NodeRecord, Item]]:
        out = []
        for username in owners:
            account_id = await self._account(username, domain)
            for a, rec in self._nodes.values():
                if a == account_id and self._items.get(rec.id):
                    _seq, it = max(self._items[rec.id].values(), key=lambda v: v[0])
                    out.append((username, rec, it))
        return out
