"""The PEP repository contract on memory, SQLite and MariaDB (per-node order, limits), and the
schema's cascades on SQLite and MariaDB."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from xmppd.features.pep.repository import (
    Item,
    MemoryPepRepository,
    NodeExists,
    SqlPepRepository,
    TooManyNodes,
    pep_items,
    pep_nodes,
)
from xmppd.storage.accounts import AccountNotFound

D = "localhost"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = {"access_model": "presence", "max_items": 2}


def item(i: str, payload: str = "<p xmlns='urn:x'/>") -> Item:
    return Item(i, payload, "alice@localhost", T0)


async def test_pep_publish_trims_to_the_node_max_and_replaces_by_id(backend):
    await backend.add_account("alice")
    repo = backend.repo(SqlPepRepository, MemoryPepRepository)
    rec, created, dropped = await repo.publish("alice", D, "urn:x", CONFIG, item("a"), 100, 10)
    assert created and dropped == [] and rec.config == CONFIG
    await repo.publish("alice", D, "urn:x", {}, item("b"), 100, 10)
    _rec, created, dropped = await repo.publish("alice", D, "urn:x", {}, item("c"), 100, 10)
    assert not created and dropped == ["a"]
    await repo.publish("alice", D, "urn:x", {}, item("b", "<p xmlns='urn:x'>new</p>"), 100, 10)  # b is newest now
    assert [(i.id, i.payload) for i in await repo.items(rec.id)] == [("c", "<p xmlns='urn:x'/>"), ("b", "<p xmlns='urn:x'>new</p>")]
    assert [i.id for i in await repo.items(rec.id, newest=1)] == ["b"]
    assert [i.id for i in await repo.items(rec.id, ids=["c", "zz"])] == ["c"]
    # the server's bound caps a node's own max_items
    await repo.configure(rec.id, {**CONFIG, "max_items": 50}, 1)
    assert [i.id for i in await repo.items(rec.id)] == ["b"]
    # a node that does not persist items stores none
    rec2, _c, _d = await repo.publish("alice", D, "urn:y", {"persist_items": False}, item("t"), 100, 10)
    assert await repo.items(rec2.id) == []


async def test_pep_nodes_limits_retract_purge_delete_and_last_items(backend):
    await backend.add_account("alice")
    await backend.add_account("bob")
    repo = backend.repo(SqlPepRepository, MemoryPepRepository)
    a = await repo.create("alice", D, "urn:a", CONFIG, 2)
    with pytest.raises(NodeExists):
        await repo.create("alice", D, "urn:a", CONFIG, 2)
    await repo.publish("alice", D, "urn:b", CONFIG, item("1"), 100, 2)
    with pytest.raises(TooManyNodes):
        await repo.publish("alice", D, "urn:c", CONFIG, item("1"), 100, 2)
    with pytest.raises(AccountNotFound):
        await repo.publish("nobody", D, "urn:c", CONFIG, item("1"), 100, 2)
    await repo.publish("alice", D, "urn:a", CONFIG, item("x"), 100, 2)
    await repo.publish("alice", D, "urn:a", CONFIG, item("y"), 100, 2)
    await repo.publish("bob", D, "urn:a", CONFIG, item("z"), 100, 2)
    last = {(owner, rec.node): it.id for owner, rec, it in await repo.last_items(["alice", "bob"], D)}
    assert last == {("alice", "urn:a"): "y", ("alice", "urn:b"): "1", ("bob", "urn:a"): "z"}
    assert await repo.retract(a.id, ["x", "nope"]) == ["x"]
    assert await repo.retract(a.id, ["x"]) == []
    assert await repo.purge(a.id) == 1
    assert await repo.items(a.id) == []
    assert await repo.delete(a.id) is True
    assert await repo.node("alice", D, "urn:a") is None
    assert [n.node for n in await repo.nodes("alice", D)] == ["urn:b"]


async def test_pep_rows_go_with_the_account(sql_backend):
    account_id = await sql_backend.add_account("alice")
    repo = SqlPepRepository(sql_backend.db)
    rec, _c, _d = await repo.publish("alice", D, "urn:x", CONFIG, item("a"), 100, 10)
    assert await sql_backend.rows_of(pep_nodes, account_id) == 1
    assert await sql_backend.accounts.delete("alice", D) is True
    assert await sql_backend.rows_of(pep_nodes, account_id) == 0
    async with sql_backend.db.transaction(readonly=True) as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(pep_items).where(pep_items.c.node_id == rec.id))).scalar_one()
    assert left == 0
