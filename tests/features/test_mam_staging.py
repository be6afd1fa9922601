"""The archive's staging table on SQLite (xmppd.features.mam.repository, migration mam_0004): a
small batch is committed into ``mam_staging`` (no owner index: a page or two per commit), a large
one straight into ``mam_messages``; the staged rows move into ``mam_messages`` in one transaction
before any read of the archive, with every STAGE_ROWS-th staged record, and when the repository
closes; a process that died leaves them for the next read."""

from __future__ import annotations

import sqlite3

import pytest

from tests.storage_fixtures import open_database
from xmppd.app import feature_migration_locations
from xmppd.core.loader import discover
from xmppd.features.mam import repository as mam_repo
from xmppd.features.mam.repository import ArchivedMessage, ArchiveQuery, SqlMamRepository


def _locations() -> list[str]:
    return [str(p) for p in feature_migration_locations(discover().values())]


def _record(seq: int, owner: str = "alice@localhost") -> ArchivedMessage:
    return ArchivedMessage(owner, f"id{seq}", seq, "bob@localhost", "desk", f"<message><body>m{seq}</body></message>", seq)


def _tables(path: str) -> dict[str, list[int]]:
    """Seqs in each table, read by another connection (another process's view)."""
    with sqlite3.connect(path) as conn:
        return {t: [r[0] for r in conn.execute(f"SELECT seq FROM {t} ORDER BY seq")] for t in ("mam_messages", "mam_staging")}


async def test_small_batches_are_staged_and_every_read_sees_them_moved(request) -> None:
    async with open_database(request, "sqlite", extra_locations=_locations()) as db:
        repo = SqlMamRepository(db)
        await repo.open()
        assert repo.store_now([_record(1), _record(2, "bob@localhost")])
        await repo.store_many([_record(3)])
        assert _tables(db.url.database) == {"mam_messages": [], "mam_staging": [1, 2, 3]}
        assert await repo.usage("alice@localhost") > 0  # the quota's bytes are kept at once
        page = await repo.query(ArchiveQuery("alice@localhost", 10))
        assert [m.seq for m in page.items] == [1, 3]
        assert _tables(db.url.database) == {"mam_messages": [1, 2, 3], "mam_staging": []}
        await repo.close()


async def test_a_large_batch_goes_straight_into_the_archive(request) -> None:
    async with open_database(request, "sqlite", extra_locations=_locations()) as db:
        repo = SqlMamRepository(db)
        await repo.open()
        big = [_record(i) for i in range(1, mam_repo.STAGE_BELOW + 1)]
        assert repo.store_now(big)
        assert _tables(db.url.database) == {"mam_messages": list(range(1, mam_repo.STAGE_BELOW + 1)), "mam_staging": []}
        await repo.close()


async def test_every_stage_rows_th_record_moves_the_staged_ones_in_its_commit(request, monkeypatch) -> None:
    monkeypatch.setattr(mam_repo, "STAGE_ROWS", 5)
    async with open_database(request, "sqlite", extra_locations=_locations()) as db:
        repo = SqlMamRepository(db)
        await repo.open()
        for seq in (1, 2):
            assert repo.store_now([_record(seq), _record(seq + 100, "bob@localhost")])
        assert _tables(db.url.database)["mam_staging"] == [1, 2, 101, 102]
        assert repo.store_now([_record(3)])  # the fifth: this commit moves all five
        assert _tables(db.url.database) == {"mam_messages": [1, 2, 3, 101, 102], "mam_staging": []}
        await repo.close()


async def test_a_record_stored_again_is_kept_once(request) -> None:
    # A batch retried after its commit: the row by row fallback moves the staged rows first.
    async with open_database(request, "sqlite", extra_locations=_locations()) as db:
        repo = SqlMamRepository(db)
        await repo.open()
        await repo.store_many([_record(1)])
        before = await repo.usage("alice@localhost")
        await repo.store_many([_record(2), _record(1), _record(3)])
        page = await repo.query(ArchiveQuery("alice@localhost", 10))
        assert [m.seq for m in page.items] == [1, 2, 3]
        assert await repo.usage("alice@localhost") == before * 3  # seq 1 counted once
        await repo.close()


async def test_staged_rows_left_by_a_dead_process_are_read_and_deleted_with_their_owner(request) -> None:
    async with open_database(request, "sqlite", extra_locations=_locations()) as db:
        dead = SqlMamRepository(db)
        await dead.open()
        assert dead.store_now([_record(1), _record(2), _record(3, "bob@localhost")])
        # the process dies here: no close(), its rows stay staged
        assert _tables(db.url.database)["mam_staging"] == [1, 2, 3]
        repo = SqlMamRepository(db)  # the next process
        await repo.open()
        assert await repo.max_seq() == 3
        assert [m.seq for m in (await repo.query(ArchiveQuery("alice@localhost", 10))).items] == [1, 2]
        assert dead.store_now([_record(4)])  # staged again, then the account is deleted
        assert await repo.delete_owner("alice@localhost") == 3
        assert _tables(db.url.database) == {"mam_messages": [3], "mam_staging": []}
        assert dead.store_now([_record(5, "bob@localhost")])
        async with db.transaction() as conn:  # the account deletion's own transaction, too
            assert await SqlMamRepository.delete_owner_txn(conn, "bob@localhost") == 2
        assert _tables(db.url.database) == {"mam_messages": [], "mam_staging": []}
        await repo.close()


@pytest.mark.parametrize("backend", ["mariadb"])
async def test_nothing_is_staged_on_mariadb(request, backend) -> None:
    async with open_database(request, backend, extra_locations=_locations()) as db:
        repo = SqlMamRepository(db)
        await repo.open()
        await repo.store_many([_record(1)])
        async with db.transaction(readonly=True) as conn:
            staged = (await conn.exec_driver_sql("SELECT COUNT(*) FROM mam_staging")).scalar_one()
            stored = (await conn.exec_driver_sql("SELECT COUNT(*) FROM mam_messages")).scalar_one()
        assert (staged, stored) == (0, 1)
        await repo.close()
