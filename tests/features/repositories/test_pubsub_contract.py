"""The PubSub service repository on SQLite and MariaDB: nodes, items, affiliations,
subscriptions and what an account's deletion leaves."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from xmppd.features.pep.repository import Item, NodeExists, TooManyNodes
from xmppd.features.pubsub.repository import PubSubRepository, TooManySubscriptions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_pubsub_nodes_items_affiliations_and_subscriptions(sql_backend):
    repo = PubSubRepository(sql_backend.db)
    rec = await repo.create("news", {"access_model": "open", "max_items": 2}, "alice@localhost", 1)
    with pytest.raises(NodeExists):
        await repo.create("news", {}, "bob@localhost", 1)
    with pytest.raises(TooManyNodes):
        await repo.create("more", {}, "alice@localhost", 1)
    for i in ("a", "b", "c"):
        await repo.publish(rec.id, Item(i, f"<p xmlns='urn:x'>{i}</p>", "alice@localhost", T0), 2)
    assert [i.id for i in await repo.items(rec.id)] == ["b", "c"]
    assert await repo.retract(rec.id, ["b", "zz"]) == ["b"]
    assert await repo.affiliation(rec.id, "alice@localhost") == "owner"
    await repo.set_affiliations(rec.id, [("bob@localhost", "publisher"), ("eve@localhost", "outcast")])
    assert {(a.jid, a.affiliation) for a in await repo.affiliations(node_id=rec.id)} == {
        ("alice@localhost", "owner"), ("bob@localhost", "publisher"), ("eve@localhost", "outcast")}
    with pytest.raises(ValueError):
        await repo.set_affiliations(rec.id, [("alice@localhost", "none")])
    assert await repo.affiliation(rec.id, "alice@localhost") == "owner"  # rolled back
    s1 = await repo.subscribe(rec.id, "bob@localhost/phone", "bob@localhost", "s1", 2)
    assert (await repo.subscribe(rec.id, "bob@localhost/phone", "bob@localhost", "other", 2)).subid == s1.subid
    await repo.subscribe(rec.id, "carol@localhost", "carol@localhost", "s2", 2)
    with pytest.raises(TooManySubscriptions):
        await repo.subscribe(rec.id, "dan@localhost", "dan@localhost", "s3", 2)
    assert [s.jid for s in await repo.subscriptions(bare="bob@localhost")] == ["bob@localhost/phone"]
    assert await repo.unsubscribe(rec.id, "carol@localhost") is True
    assert await repo.unsubscribe(rec.id, "carol@localhost") is False


async def test_an_account_deletion_removes_its_rows_and_the_nodes_it_alone_owned(sql_backend):
    repo = PubSubRepository(sql_backend.db)
    solo = await repo.create("solo", {}, "alice@localhost", 10)
    shared = await repo.create("shared", {}, "alice@localhost", 10)
    await repo.set_affiliations(shared.id, [("bob@localhost", "owner")])
    await repo.publish(solo.id, Item("1", "<p xmlns='urn:x'/>", "alice@localhost", T0), 10)
    await repo.subscribe(shared.id, "alice@localhost", "alice@localhost", "s", 10)
    async with sql_backend.db.transaction() as conn:
        assert await PubSubRepository.delete_account_txn(conn, "alice@localhost") == 1
    assert await repo.node("solo") is None and await repo.items(solo.id) == []
    assert await repo.node("shared") is not None
    assert await repo.affiliations(jid="alice@localhost") == [] and await repo.subscriptions(bare="alice@localhost") == []
