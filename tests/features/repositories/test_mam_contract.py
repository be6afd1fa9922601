"""XEP-0313 archive repository contract on memory, SQLite and MariaDB: paging both ways, every
filter, unknown ids, duplicates, retention purge, preferences, deleting an archive."""
from __future__ import annotations

import pytest

from xmppd.features.mam.repository import (
    ArchivedMessage,
    ArchiveQuery,
    MemoryMamRepository,
    Prefs,
    SqlMamRepository,
    UnknownId,
)

OWNER = "alice@localhost"


def _msg(i: int, owner: str = OWNER, with_jid: str = "bob@localhost", res: str = "desk") -> ArchivedMessage:
    return ArchivedMessage(owner, f"id{i:03d}", 1_000_000 * (i + 1), with_jid, res, f"<message><body>m{i}</body></message>")


@pytest.fixture
async def repo(backend):
    return backend.repo(SqlMamRepository, MemoryMamRepository)


async def _fill(repo, n: int = 20) -> None:
    # every third message is with carol, the rest with bob; another archive is interleaved
    await repo.store_many([_msg(i, with_jid="carol@localhost" if i % 3 == 0 else "bob@localhost") for i in range(n)])
    await repo.store_many([_msg(i, owner="bob@localhost") for i in range(5)])


def ids(page) -> list[str]:
    return [m.stanza_id for m in page.items]


async def test_forward_paging_walks_the_archive_once(repo):
    await _fill(repo)
    seen: list[str] = []
    after = None
    while True:
        page = await repo.query(ArchiveQuery(OWNER, 6, after=after))
        assert page.count == 20
        seen += ids(page)
        if page.complete:
            break
        after = page.items[-1].stanza_id
    assert seen == [f"id{i:03d}" for i in range(20)]


async def test_backward_paging_from_the_end(repo):
    await _fill(repo)
    page = await repo.query(ArchiveQuery(OWNER, 6, before=""))
    assert ids(page) == [f"id{i:03d}" for i in range(14, 20)] and not page.complete
    seen = ids(page)
    while not page.complete:
        page = await repo.query(ArchiveQuery(OWNER, 6, before=page.items[0].stanza_id))
        seen = ids(page) + seen
    assert seen == [f"id{i:03d}" for i in range(20)]
    assert ids(page) == ["id000", "id001"]


async def test_filters(repo):
    await _fill(repo)
    carol = await repo.query(ArchiveQuery(OWNER, 100, with_jid="carol@localhost"))
    assert ids(carol) == [f"id{i:03d}" for i in range(0, 20, 3)] and carol.count == 7
    full = await repo.query(ArchiveQuery(OWNER, 100, with_jid="bob@localhost", with_resource="desk"))
    assert full.count == 13
    nobody = await repo.query(ArchiveQuery(OWNER, 100, with_jid="bob@localhost", with_resource="phone"))
    assert nobody.items == [] and nobody.complete and nobody.count == 0
    window = await repo.query(ArchiveQuery(OWNER, 100, start=5_000_000, end=8_000_000))
    assert ids(window) == ["id004", "id005", "id006", "id007"]
    between = await repo.query(ArchiveQuery(OWNER, 100, after_id="id010", before_id="id014"))
    assert ids(between) == ["id011", "id012", "id013"]
    chosen = await repo.query(ArchiveQuery(OWNER, 100, ids=("id002", "id017", "nope")))
    assert ids(chosen) == ["id002", "id017"]
    combined = await repo.query(ArchiveQuery(OWNER, 2, with_jid="carol@localhost", start=4_000_000, after="id006"))
    assert ids(combined) == ["id009", "id012"] and not combined.complete and combined.count == 6
    back = await repo.query(ArchiveQuery(OWNER, 2, with_jid="carol@localhost", before="id012"))
    assert ids(back) == ["id006", "id009"] and not back.complete


async def test_unknown_ids_raise(repo):
    await _fill(repo)
    # "id010" exists in alice's archive, not in bob's: ids are per archive
    for q in (ArchiveQuery(OWNER, 5, after="nope"), ArchiveQuery(OWNER, 5, before="nope"),
              ArchiveQuery(OWNER, 5, after_id="nope"), ArchiveQuery(OWNER, 5, before_id="nope"),
              ArchiveQuery("bob@localhost", 5, after="id010")):
        with pytest.raises(UnknownId):
            await repo.query(q)


async def test_max_zero_counts_only(repo):
    await _fill(repo)
    page = await repo.query(ArchiveQuery(OWNER, 0))
    assert page.items == [] and page.count == 20 and not page.complete


async def test_duplicate_ids_are_skipped(repo):
    await repo.store_many([_msg(1), _msg(2)])
    await repo.store_many([_msg(2), _msg(3)])
    page = await repo.query(ArchiveQuery(OWNER, 10))
    assert ids(page) == ["id001", "id002", "id003"]


async def test_purge_and_delete_owner(repo):
    await _fill(repo)
    assert await repo.purge_before(11_000_000) == 10 + 5
    page = await repo.query(ArchiveQuery(OWNER, 100))
    assert ids(page)[0] == "id010" and page.count == 10
    await repo.set_prefs(OWNER, Prefs("never"))
    assert await repo.delete_owner(OWNER) == 10
    assert (await repo.query(ArchiveQuery(OWNER, 100))).count == 0
    assert await repo.get_prefs(OWNER) is None


async def test_prefs_round_trip(repo):
    assert await repo.get_prefs(OWNER) is None
    await repo.set_prefs(OWNER, Prefs("roster", ("bob@localhost",), ("spam@localhost", "ads@localhost")))
    assert await repo.get_prefs(OWNER) == Prefs("roster", ("bob@localhost",), ("spam@localhost", "ads@localhost"))
    await repo.set_prefs(OWNER, Prefs("always"))
    assert await repo.get_prefs(OWNER) == Prefs("always")


async def test_a_large_batch_keeps_its_order(repo):
    # larger than one multi-row INSERT chunk on SQLite (500 rows), two archives interleaved
    await repo.store_many([_msg(i, owner=OWNER if i % 2 else "bob@localhost") for i in range(1203)])
    page = await repo.query(ArchiveQuery(OWNER, 1000))
    assert page.count == 601 and len(page.items) == 601 and page.complete
    assert ids(page) == [f"id{i:03d}" for i in range(1, 1203, 2)]
    assert page.items[-1].stanza == "<message><body>m1201</body></message>" and page.items[-1].ts == 1_202_000_000
    assert (await repo.query(ArchiveQuery("bob@localhost", 1, before=""))).items[0].stanza_id == "id1202"
