"""XEP-0313 archive repository contract on memory, SQLite and MariaDB: paging both ways, every
filter, unknown and garbled ids, duplicates, retention purge, preferences, deleting an archive,
the id key and node id leases."""
from __future__ import annotations

import pytest

from xmppd.features.mam.ids import EPOCH_US, MAX_NODE, IdCodec, seq_floor, time_of
from xmppd.features.mam.repository import (
    ArchivedMessage,
    ArchiveQuery,
    MemoryMamRepository,
    Prefs,
    SqlMamRepository,
    UnknownId,
    mam_nodes,
    stanza_bytes,
)

OWNER = "alice@localhost"
T0 = 1_700_000_000_000_000  # 2023-11-14, µs
NODES = {OWNER: 1, "bob@localhost": 2}  # as if each archive were written by another node


def _ts(i: int) -> int:
    return T0 + 1_000_000 * (i + 1)


def _seq(i: int, owner: str = OWNER) -> int:
    return seq_floor(_ts(i)) | NODES[owner]


@pytest.fixture
async def repo(backend):
    r = backend.repo(SqlMamRepository, MemoryMamRepository)
    r.test_ids = await r.open()
    return r


def _msg(repo, i: int, owner: str = OWNER, with_jid: str = "bob@localhost", res: str = "desk") -> ArchivedMessage:
    seq = _seq(i, owner)
    return ArchivedMessage(owner, repo.test_ids.encode(seq), _ts(i), with_jid, res, f"<message><body>m{i}</body></message>", seq)


def _id(repo, i: int, owner: str = OWNER) -> str:
    return repo.test_ids.encode(_seq(i, owner))


async def _fill(repo, n: int = 20) -> None:
    # every third message is with carol, the rest with bob; another archive is interleaved
    await repo.store_many([_msg(repo, i, with_jid="carol@localhost" if i % 3 == 0 else "bob@localhost") for i in range(n)])
    await repo.store_many([_msg(repo, i, owner="bob@localhost") for i in range(5)])


def nums(page) -> list[int]:
    return [int(m.stanza.split("<body>m")[1].split("<")[0]) for m in page.items]


async def test_forward_paging_walks_the_archive_once(repo):
    await _fill(repo)
    seen: list[int] = []
    after = None
    while True:
        page = await repo.query(ArchiveQuery(OWNER, 6, after=after))
        assert page.count == 20
        seen += nums(page)
        if page.complete:
            break
        after = page.items[-1].stanza_id
    assert seen == list(range(20))


async def test_items_carry_what_was_stored(repo):
    await _fill(repo, 3)
    page = await repo.query(ArchiveQuery(OWNER, 10))
    assert page.items == [_msg(repo, i, with_jid="carol@localhost" if i % 3 == 0 else "bob@localhost") for i in range(3)]


async def test_backward_paging_from_the_end(repo):
    await _fill(repo)
    page = await repo.query(ArchiveQuery(OWNER, 6, before=""))
    assert nums(page) == list(range(14, 20)) and not page.complete
    seen = nums(page)
    while not page.complete:
        page = await repo.query(ArchiveQuery(OWNER, 6, before=page.items[0].stanza_id))
        seen = nums(page) + seen
    assert seen == list(range(20))
    assert nums(page) == [0, 1]


async def test_filters(repo):
    await _fill(repo)
    carol = await repo.query(ArchiveQuery(OWNER, 100, with_jid="carol@localhost"))
    assert nums(carol) == list(range(0, 20, 3)) and carol.count == 7
    full = await repo.query(ArchiveQuery(OWNER, 100, with_jid="bob@localhost", with_resource="desk"))
    assert full.count == 13
    nobody = await repo.query(ArchiveQuery(OWNER, 100, with_jid="bob@localhost", with_resource="phone"))
    assert nobody.items == [] and nobody.complete and nobody.count == 0
    window = await repo.query(ArchiveQuery(OWNER, 100, start=_ts(4), end=_ts(7)))  # inclusive at both ends
    assert nums(window) == [4, 5, 6, 7]
    inside = await repo.query(ArchiveQuery(OWNER, 100, start=_ts(4) + 1, end=_ts(7) - 1))
    assert nums(inside) == [5, 6]
    assert (await repo.query(ArchiveQuery(OWNER, 100, start=_ts(19) + 1))).count == 0
    assert (await repo.query(ArchiveQuery(OWNER, 100, end=_ts(0) - 1))).count == 0
    assert (await repo.query(ArchiveQuery(OWNER, 100, start=0, end=EPOCH_US - 1))).count == 0  # before 2020: nothing
    assert (await repo.query(ArchiveQuery(OWNER, 100, start=0))).count == 20
    between = await repo.query(ArchiveQuery(OWNER, 100, after_id=_id(repo, 10), before_id=_id(repo, 14)))
    assert nums(between) == [11, 12, 13]
    chosen = await repo.query(ArchiveQuery(OWNER, 100, ids=(_id(repo, 2), _id(repo, 17), "nope", "0" * 32, _id(repo, 3, "bob@localhost"))))
    assert nums(chosen) == [2, 17]
    assert (await repo.query(ArchiveQuery(OWNER, 100, ids=()))).count == 0
    combined = await repo.query(ArchiveQuery(OWNER, 2, with_jid="carol@localhost", start=_ts(3), after=_id(repo, 6)))
    assert nums(combined) == [9, 12] and not combined.complete and combined.count == 6
    back = await repo.query(ArchiveQuery(OWNER, 2, with_jid="carol@localhost", before=_id(repo, 12)))
    assert nums(back) == [6, 9] and not back.complete
    flipped = await repo.query(ArchiveQuery(OWNER, 3, start=_ts(2), end=_ts(10), before=""))  # the last page of a window
    assert nums(flipped) == [8, 9, 10] and not flipped.complete and flipped.count == 9


async def test_unknown_ids_raise(repo):
    await _fill(repo)
    garbled = _id(repo, 10)
    garbled = garbled[:-1] + ("0" if garbled[-1] != "0" else "1")
    # an id of alice's archive is not one of bob's: ids are per archive
    for bad in ("nope", "", garbled, "f" * 32, "zz" * 16, _id(repo, 10).upper() + "0", _id(repo, 7) + " "):
        for q in (ArchiveQuery(OWNER, 5, after=bad or "x"), ArchiveQuery(OWNER, 5, before=bad or "x"),
                  ArchiveQuery(OWNER, 5, after_id=bad), ArchiveQuery(OWNER, 5, before_id=bad)):
            with pytest.raises(UnknownId):
                await repo.query(q)
    with pytest.raises(UnknownId):
        await repo.query(ArchiveQuery("bob@localhost", 5, after=_id(repo, 10)))
    with pytest.raises(UnknownId):  # decodes, but was never stored
        await repo.query(ArchiveQuery(OWNER, 5, after=repo.test_ids.encode(_seq(50))))


async def test_max_zero_counts_only(repo):
    await _fill(repo)
    page = await repo.query(ArchiveQuery(OWNER, 0))
    assert page.items == [] and page.count == 20 and not page.complete


async def test_a_retried_record_is_stored_once(repo):
    await repo.store_many([_msg(repo, 1), _msg(repo, 2)])
    await repo.store_many([_msg(repo, 2), _msg(repo, 3)])  # the same seq: the same record again
    page = await repo.query(ArchiveQuery(OWNER, 10))
    assert nums(page) == [1, 2, 3]


async def test_stored_names_which_seqs_are_stored(repo):
    # (the journal's replay: 1,200 seqs, more than one look-up's worth)
    await _fill(repo)
    asked = [_seq(i) for i in range(0, 1200, 2)] + [_seq(i, "bob@localhost") for i in range(5)] + [_seq(3) + (1 << 40)]
    assert await repo.stored(asked) == {_seq(i) for i in range(0, 20, 2)} | {_seq(i, "bob@localhost") for i in range(5)}
    assert await repo.stored([]) == set()


async def test_archive_order_is_seq_order_whatever_the_store_order(repo):
    # Two nodes write into one archive; their batches reach the database out of order.
    msgs = [_msg(repo, i) for i in range(6)]
    await repo.store_many([msgs[4], msgs[1]])
    await repo.store_many([msgs[5], msgs[0], msgs[3], msgs[2]])
    assert nums(await repo.query(ArchiveQuery(OWNER, 10))) == list(range(6))
    assert nums(await repo.query(ArchiveQuery(OWNER, 2, after=msgs[2].stanza_id))) == [3, 4]


async def test_purge_and_delete_owner(repo):
    await _fill(repo)
    assert await repo.purge_before(_ts(10), 1000) == 10 + 5
    page = await repo.query(ArchiveQuery(OWNER, 100))
    assert nums(page)[0] == 10 and page.count == 10
    with pytest.raises(UnknownId):  # a purged message's id is unknown now
        await repo.query(ArchiveQuery(OWNER, 5, after=_id(repo, 3)))
    assert await repo.purge_before(_ts(10), 1000) == 0
    await repo.set_prefs(OWNER, Prefs("never"))
    assert await repo.delete_owner(OWNER) == 10
    assert (await repo.query(ArchiveQuery(OWNER, 100))).count == 0
    assert await repo.get_prefs(OWNER) is None
    assert await repo.usage(OWNER) == 0


def _bytes(repo, ids, owner: str = OWNER) -> int:
    return sum(stanza_bytes(_msg(repo, i, owner).stanza) for i in ids)


async def test_usage_counts_stored_bytes_through_retries_bounded_purges_and_deletion(repo):
    await repo.store_many([_msg(repo, i) for i in range(12)] + [_msg(repo, i, "bob@localhost") for i in range(3)])
    assert await repo.usage(OWNER) == _bytes(repo, range(12))
    await repo.store_many([_msg(repo, 11), _msg(repo, 12)])  # a retried record counts once
    assert await repo.usage(OWNER) == _bytes(repo, range(13))
    assert await repo.usage("bob@localhost") == _bytes(repo, range(3), "bob@localhost")
    assert await repo.usage("nobody@localhost") == 0
    # The purge goes oldest first, at most `limit` rows per call, taking their bytes off.
    assert await repo.purge_before(_ts(8), 4) == 4  # alice's 0..1 and bob's 0..1 (interleaved by time)
    assert await repo.usage(OWNER) == _bytes(repo, range(2, 13))
    assert await repo.usage("bob@localhost") == _bytes(repo, [2], "bob@localhost")
    assert await repo.purge_before(_ts(8), 4) == 4
    assert await repo.purge_before(_ts(8), 4) == 3
    assert await repo.purge_before(_ts(8), 4) == 0
    assert await repo.usage(OWNER) == _bytes(repo, range(8, 13))
    assert nums(await repo.query(ArchiveQuery(OWNER, 100))) == list(range(8, 13))
    assert await repo.delete_owner(OWNER) == 5
    assert await repo.usage(OWNER) == 0


async def test_prefs_round_trip(repo):
    assert await repo.get_prefs(OWNER) is None
    await repo.set_prefs(OWNER, Prefs("roster", ("bob@localhost",), ("spam@localhost", "ads@localhost")))
    assert await repo.get_prefs(OWNER) == Prefs("roster", ("bob@localhost",), ("spam@localhost", "ads@localhost"))
    await repo.set_prefs(OWNER, Prefs("always"))
    assert await repo.get_prefs(OWNER) == Prefs("always")


async def test_a_large_batch_keeps_its_order(repo):
    # larger than one multi-row INSERT chunk on SQLite (500 rows), two archives interleaved
    await repo.store_many([_msg(repo, i, owner=OWNER if i % 2 else "bob@localhost") for i in range(1203)])
    page = await repo.query(ArchiveQuery(OWNER, 1000))
    assert page.count == 601 and len(page.items) == 601 and page.complete
    assert nums(page) == list(range(1, 1203, 2))
    assert page.items[-1].stanza == "<message><body>m1201</body></message>" and page.items[-1].ts == _ts(1201)
    assert (await repo.query(ArchiveQuery("bob@localhost", 1, before=""))).items[0].stanza_id == _id(repo, 1202, "bob@localhost")


async def test_max_seq(repo):
    assert await repo.max_seq() == -1
    await _fill(repo)
    assert await repo.max_seq() == _seq(19)
    assert time_of(await repo.max_seq()) == _ts(19)


async def test_the_id_key_is_made_once_and_shared(sql_backend):
    first = await SqlMamRepository(sql_backend.db).open()
    second = await SqlMamRepository(sql_backend.db).open()  # another node on the same database
    assert isinstance(first, IdCodec)
    assert first.encode(12345) == second.encode(12345) and second.decode(first.encode(12345)) == 12345


async def _lease_directly(backend, repo, nodes: range, holder: str, expires: int) -> None:
    """Setup shortcut: many leases at once (claiming 2,000 ids one by one is slow on MariaDB)."""
    if backend.db is None:
        for n in nodes:
            repo._nodes[n] = (f"{holder}{n}", expires)
        return
    async with backend.db.transaction() as conn:
        await conn.execute(mam_nodes.insert(), [{"node": n, "holder": f"{holder}{n}", "expires": expires} for n in nodes])


async def test_node_leases(backend, repo):
    ttl, now = 300_000_000, T0
    a = await repo.claim_node("a", now, ttl)
    b = await repo.claim_node("b", now, ttl)
    c = await repo.claim_node("c", now, ttl)
    assert (a, b, c) == (0, 1, 2)  # a single node gets 0
    assert await repo.renew_node(b, "b", now + 1, ttl)
    assert not await repo.renew_node(b, "a", now + 1, ttl)  # only the holder renews
    await repo.release_node(b, "b")
    assert await repo.claim_node("d", now + 2, ttl) == b  # a released id is free at once
    assert await repo.claim_node("e", now + ttl // 2, ttl) == 3  # none expired yet: a fresh id
    # c stops renewing. Once its lease expired, a never-used id still goes first ...
    late = now + ttl + 10
    for node, holder in ((a, "a"), (b, "d"), (3, "e")):
        assert await repo.renew_node(node, holder, now + ttl - 1, ttl)
    assert await repo.claim_node("f", late, ttl) == 4
    # ... and when none is left, c's expired one is taken; c then learns that it lost it.
    await _lease_directly(backend, repo, range(5, MAX_NODE + 1), "filler", late + ttl)
    assert await repo.claim_node("g", late, ttl) == c
    assert not await repo.renew_node(c, "c", late + 1, ttl)
    await repo.release_node(c, "c")  # not its own any more: nothing happens
    assert await repo.renew_node(c, "g", late + 2, ttl)
    with pytest.raises(RuntimeError, match="leased"):
        await repo.claim_node("h", late + 3, ttl)


async def test_preferences_and_usage_are_read_through_the_storage_fast_path(sql_backend, monkeypatch):
    """The two reads a chat message may need before it is archived (its owner's preferences and
    archive size) go through the storage fast path -- on SQLite the loop's thread, on MariaDB the
    fast path's own connections -- never a read transaction through SQLAlchemy's pool (through
    aiosqlite, each of its hand-offs waits for the GIL on a busy loop)."""
    repo = SqlMamRepository(sql_backend.db)
    await repo.open()
    await repo.set_prefs(OWNER, Prefs("roster", ("bob@localhost",), ()))
    await repo.store_many([ArchivedMessage(OWNER, "x", _ts(0), "bob@localhost", "", "<message/>", _seq(0))])

    async def no_read_txn(*_args, **_kwargs):
        raise AssertionError("read through Database.read_txn")

    monkeypatch.setattr(sql_backend.db, "read_txn", no_read_txn)
    assert await repo.get_prefs(OWNER) == Prefs("roster", ("bob@localhost",), ())
    assert await repo.get_prefs("nobody@localhost") is None
    assert await repo.usage(OWNER) == stanza_bytes("<message/>")
    assert await repo.usage("nobody@localhost") == 0
