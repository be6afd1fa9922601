"""The archive's journal (xmppd/features/mam/journal.py) on a server: on one SQLite process a
record is durable once appended to the journal, in one write per turn of the event loop, and
what waits for it goes out then; the writer stores the records in the table later and empties
the journal; a journal a crash left is stored at the next start before anything else; a
journal that fails falls back to committing before delivering. The crash itself, through the
wire: test_durability_crash.py."""
from __future__ import annotations

import asyncio
import errno
import functools
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import xmppd.features.mam as mam_module
import xmppd.features.mam.journal as journal_module
from xmppd.core import durability
from xmppd.features.mam.ids import NODE_BITS, time_of
from xmppd.features.mam.journal import Journal, journal_path, read_journal
from xmppd.features.mam.repository import ArchivedMessage, ArchiveQuery

from ..helpers import add_user, running_server, slix_close
from .test_mam import client, query
from .test_mam_writer import concurrent_conversations, record, table_owners, two_stanzas_in_one_turn

pytestmark = pytest.mark.interop


def _table_seqs(path: str) -> set[int]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT seq FROM mam_messages")}


async def _until(predicate: Any, seconds: float = 5) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 (the writer task's state, no event to wait on)
            await asyncio.sleep(0.01)


def _count_appends(journal: Journal) -> list[int]:
    appends: list[int] = []
    real_append = journal.append
    journal.append = lambda records: (appends.append(len(records := list(records))), real_append(records))[1]
    return appends


async def test_a_quiet_archive_appends_each_record_as_it_comes_and_holds_nothing(tmp_path):
    async with running_server(tmp_path) as srv:
        mam = srv.features["mam"]
        journal = mam._journal
        assert journal is not None and journal.path == journal_path(srv.db.sqlite_file)
        appends = _count_appends(journal)
        seqs = [(await mam._new_id())[0] for _ in range(2)]
        assert mam._quiet
        async with mam._lock:  # the writer task cannot store meanwhile
            with durability.scope() as barrier:  # one stanza: the sender's and the recipient's copy
                for seq in seqs:
                    await mam._enqueue(record(mam, "alice@localhost", seq))
                    assert [r.seq for r in read_journal(journal.path)][-1] == seq  # durable at once
            assert barrier.settled and not barrier.failed  # nothing to wait for
            assert appends == [1, 1]
            assert not _table_seqs(srv.db.sqlite_file) & set(seqs)
        await _until(lambda: mam._stored == mam._enqueued)
        assert set(seqs) <= _table_seqs(srv.db.sqlite_file)
        assert journal.path.stat().st_size == 0


async def test_under_load_the_records_of_one_turn_share_one_append_and_reach_the_table_later(tmp_path):
    async with running_server(tmp_path) as srv:
        mam = srv.features["mam"]
        path = srv.db.sqlite_file
        journal = mam._journal
        appends = _count_appends(journal)
        mam._quiet = False  # (what a turn of more than QUIET_RECORDS records leaves)
        async with mam._lock:  # the writer task cannot store meanwhile
            seqs, barriers = await two_stanzas_in_one_turn(mam)
            assert not any(b.settled for b in barriers)  # nothing durable during the turn
            done = asyncio.Event()
            barriers[-1].when_settled(done.set)
            await asyncio.wait_for(done.wait(), 5)
            assert appends == [4] and all(b.settled and not b.failed for b in barriers)
            assert [r.seq for r in read_journal(journal.path)] == seqs  # durable in the journal ...
            assert not _table_seqs(path) & set(seqs)  # ... not yet in the table
        await _until(lambda: mam._stored == mam._enqueued)
        assert set(seqs) <= _table_seqs(path)
        assert journal.path.stat().st_size == 0, "the journal is emptied once every record in it is stored"
        for owner, pair in (("alice@localhost", seqs[:2]), ("bob@localhost", seqs[2:])):
            assert [m.seq for m in (await mam.repo.query(ArchiveQuery(owner, 10))).items] == pair


async def test_every_delivered_message_is_in_the_journal_or_the_table_when_it_arrives(tmp_path):
    """Three conversations at once through the wire: when each message reaches its recipient,
    both copies are durable (in the journal file or the table, read from the files by this
    test), and a query right after sees every one (it stores what is queued first). The
    writer is made to linger (as if it had just committed, commit_interval 10 s): every message
    arrives durable through the journal alone."""
    async with running_server(tmp_path, "mam.commit_interval=10") as srv:
        mam = srv.features["mam"]
        mam._last_commit = mam._loop_time()
        jpath = journal_path(srv.db.sqlite_file)
        journaled = 0

        def owners(reader: sqlite3.Connection, needle: str) -> list[str]:
            nonlocal journaled
            in_journal = [r.owner for r in read_journal(jpath) if needle in r.stanza]
            journaled += bool(in_journal)
            return table_owners(reader, needle) + in_journal

        with closing(sqlite3.connect(srv.db.sqlite_file)) as reader:
            assert await concurrent_conversations(srv, functools.partial(owners, reader)) == []
        assert journaled == 3 * 15  # (the writer lingered: none was in the table yet)
    assert not jpath.exists(), "a clean stop stores everything and removes the journal"


async def test_a_journal_that_fails_falls_back_to_committing_before_delivering(tmp_path, caplog):
    async with running_server(tmp_path) as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        mam = srv.features["mam"]
        journal = mam._journal

        def full(records: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        journal.append = full
        committed = []
        real_now = mam.repo.store_now
        mam.repo.store_now = lambda batch: (committed.append(len(batch)), real_now(batch))[1]
        alice = await client(srv, "alice@localhost/a")
        bob = await client(srv, "bob@localhost/b")
        got: asyncio.Queue[str] = asyncio.Queue()
        bob.add_event_handler("message", lambda m: got.put_nowait(m["body"]) if m["body"] else None)
        try:
            with caplog.at_level(logging.ERROR, logger="xmppd.features.mam"):
                for k in range(3):
                    alice.send_message(mto="bob@localhost/b", mbody=f"m{k}", mtype="chat")
                    assert await asyncio.wait_for(got.get(), 5) == f"m{k}"
                    # delivered only once committed to the table (read from the file)
                    with sqlite3.connect(srv.db.sqlite_file) as conn:
                        n = conn.execute("SELECT count(*) FROM mam_messages WHERE instr(stanza, ?) > 0",
                                         (f"<body>m{k}</body>",)).fetchone()[0]
                    assert n == 2
            assert journal.broken and committed
            assert any("archive journal" in r.getMessage() and "No space left" in r.getMessage() for r in caplog.records)
            page, _ = await query(bob)
            assert [body for _, body in page] == ["m0", "m1", "m2"]
        finally:
            await slix_close(alice)
            await slix_close(bob)


async def test_a_journal_left_by_a_crash_is_stored_at_start_once_and_new_ids_come_after_it(tmp_path):
    async with running_server(tmp_path) as srv:
        mam = srv.features["mam"]
        db_file = srv.db.sqlite_file
        seq_stored = (await mam._new_id())[0]
        stored = record(mam, "alice@localhost", seq_stored, "stored")
        await mam._enqueue(stored)
        await mam.flush()
        codec = mam.ids
    # What a SIGKILL leaves: the journal holds a stored record and two that are not, the last
    # write torn in the middle of a record. Their seqs are a minute ahead of the clock: new ids
    # come after them only if the replay happens before the seq clock starts.
    seqs = [seq_stored + (60_000_000 << NODE_BITS), seq_stored + (60_000_001 << NODE_BITS)]
    records = [stored] + [ArchivedMessage(owner, codec.encode(s), time_of(s), "peer@localhost", "r",
                                f"<message xmlns='jabber:client'><body>journaled ✓ {s}\nline 2</body></message>", s)
                for owner, s in zip(("alice@localhost", "bob@localhost"), seqs, strict=True)]
    path = journal_path(db_file)
    j = Journal(path)
    j.append(records)
    j.close(remove=False)
    path.write_bytes(path.read_bytes() + b"\x40\x00\x00\x00\x01\x02")  # a torn header and payload
    async with running_server(tmp_path, "mam.journal=false") as srv:  # replayed however configured
        mam = srv.features["mam"]
        assert mam._journal is None and not path.exists()
        alice = (await mam.repo.query(ArchiveQuery("alice@localhost", 10))).items
        assert [m.seq for m in alice] == [seq_stored, seqs[0]]  # the stored one once
        assert alice[1] == records[1]  # every field as journaled (Unicode, newline)
        assert [m.seq for m in (await mam.repo.query(ArchiveQuery("bob@localhost", 10))).items] == [seqs[1]]
        sizes = {m.owner: len(m.stanza.encode()) for m in records[1:]}
        assert await mam.repo.usage("bob@localhost") == sizes["bob@localhost"]
        assert await mam.repo.usage("alice@localhost") == len(records[0].stanza.encode()) + sizes["alice@localhost"]
        assert (await mam._new_id())[0] > seqs[1]  # the seq clock starts after the replayed records


async def test_no_journal_on_mariadb_or_when_turned_off(tmp_path, mariadb_url):
    async with running_server(tmp_path, f"storage.url={mariadb_url}", "storage.auto_upgrade=true") as srv:
        assert srv.features["mam"]._journal is None
        assert not list(tmp_path.glob("*journal*"))
    async with running_server(tmp_path, "mam.journal=false") as srv:
        assert srv.features["mam"]._journal is None
        assert not journal_path(srv.db.sqlite_file).exists()


def test_journal_path_is_beside_the_database(tmp_path):
    assert journal_path(str(tmp_path / "x.db")) == tmp_path / "x.db-mam-journal"
    assert Path(journal_path("rel.db")).is_absolute()


async def test_the_archive_is_quiet_again_after_a_busy_turn_and_a_large_journal_is_rewritten(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "MAX_BYTES", 2000)
    async with running_server(tmp_path, "mam.batch_size=2") as srv:
        mam = srv.features["mam"]
        journal = mam._journal
        n = mam_module.QUIET_RECORDS + 8
        seqs = [(await mam._new_id())[0] for _ in range(n + 1)]
        async with mam._lock:
            for seq in seqs[:n]:  # one busy turn
                await mam._enqueue(record(mam, "alice@localhost", seq, "x" * 50))
            await asyncio.sleep(0)  # its _kick
            assert not mam._quiet
            with durability.scope() as barrier:
                await mam._enqueue(record(mam, "alice@localhost", seqs[n]))
            assert not barrier.settled  # under load: held until the next turn's append
            done = asyncio.Event()
            barrier.when_settled(done.set)
            await asyncio.wait_for(done.wait(), 5)
            assert mam._quiet  # that turn brought one record
            assert journal.size > journal_module.MAX_BYTES
        # The writer stores what waits, two records a batch (batch_size 2): after the first, the
        # journal, over its bound and not caught up, is rewritten with only what is not stored.
        rewrites: list[tuple[int, list[int], list[int]]] = []
        real_rewrite = journal.rewrite

        def rewrite(unstored: list[Any]) -> None:
            real_rewrite(unstored)
            rewrites.append((mam._stored, [r.seq for r in unstored], [r.seq for r in read_journal(journal.path)]))

        journal.rewrite = rewrite
        await _until(lambda: mam._stored == mam._enqueued)
        stored, unstored, kept = rewrites[0]
        assert stored == 2 and unstored == kept == seqs[2:]
        assert journal.path.stat().st_size == 0
        page = await mam.repo.query(ArchiveQuery("alice@localhost", 100))
        assert [m.seq for m in page.items] == seqs


async def test_a_second_server_on_the_same_database_neither_replays_nor_uses_the_first_ones_journal(tmp_path, caplog):
    async with running_server(tmp_path) as first:
        mam = first.features["mam"]
        seq = (await mam._new_id())[0]
        async with mam._lock:  # a record only in the journal while the second one starts
            await mam._enqueue(record(mam, "alice@localhost", seq))
            assert [r.seq for r in read_journal(mam._journal.path)] == [seq]
            with caplog.at_level(logging.WARNING, logger="xmppd.features.mam"):
                async with running_server(tmp_path) as second:
                    assert second.features["mam"]._journal is None
            assert any("held by another process" in r.getMessage() for r in caplog.records)
            assert [r.seq for r in read_journal(mam._journal.path)] == [seq]  # neither replayed nor removed
        await mam.flush()
        assert [m.seq for m in (await mam.repo.query(ArchiveQuery("alice@localhost", 10))).items] == [seq]
