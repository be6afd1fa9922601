"""The archive's writer (xmppd.features.mam: _enqueue, _kick, _write_loop) on an SQLite file
committing before it delivers (``mam.journal=false``: what a cluster and MariaDB do): records of
several sessions taken in during one turn of the event loop share one commit, made on the
loop's thread in the next turn, and nothing is delivered before its commit. With the journal
(the default on one SQLite process) see test_mam_journal.py."""
from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import xmppd.features.mam as mam_module
from xmppd.core import durability
from xmppd.features.mam.ids import time_of
from xmppd.features.mam.repository import ArchivedMessage, ArchiveQuery

from ..helpers import add_user, running_server, slix_close
from .test_mam import client, count_batches, query

pytestmark = pytest.mark.interop

COMMIT_FIRST = "mam.journal=false"


def record(mam: Any, owner: str, seq: int, body: str = "") -> ArchivedMessage:
    """An archive record of *owner* with this *seq* (and its id), as the hooks make them."""
    return ArchivedMessage(owner, mam.ids.encode(seq), time_of(seq), "peer@localhost", "",
                           f"<message xmlns='jabber:client' id='r{seq}'><body>{body}</body></message>", seq)


async def two_stanzas_in_one_turn(mam: Any) -> tuple[list[int], list[Any]]:
    """Two stanzas of two sessions taken in during one turn, two records each (alice's, bob's):
    their seqs and their durability barriers, as the turn leaves them."""
    seqs = [(await mam._new_id())[0] for _ in range(4)]
    barriers = []
    for owner, pair in (("alice@localhost", seqs[:2]), ("bob@localhost", seqs[2:])):
        with durability.scope() as barrier:
            for seq in pair:
                await mam._enqueue(record(mam, owner, seq))
            barriers.append(barrier)
    return seqs, barriers


async def test_records_of_two_stanzas_taken_in_one_turn_share_one_commit_on_the_loop_thread(tmp_path):
    async with running_server(tmp_path, COMMIT_FIRST) as srv:
        mam = srv.features["mam"]
        batches, _ = count_batches(mam)
        seqs, barriers = await two_stanzas_in_one_turn(mam)
        assert not any(b.settled for b in barriers)  # nothing committed during the turn
        done = asyncio.Event()
        for b in barriers:
            b.when_settled(done.set)  # somebody waits: committed in the next turn
        await asyncio.wait_for(done.wait(), 5)
        assert batches == [4] and all(b.settled and not b.failed for b in barriers)
        for owner, pair in (("alice@localhost", seqs[:2]), ("bob@localhost", seqs[2:])):
            page = await mam.repo.query(ArchiveQuery(owner, 10))
            assert [m.seq for m in page.items] == pair


async def test_records_of_stanzas_taken_in_successive_turns_share_one_commit(tmp_path):
    # At one message in flight per conversation the next conversation's stanza arrives a turn
    # later: while each turn brings records the commit waits (at most GATHER_TURNS turns).
    async with running_server(tmp_path, COMMIT_FIRST) as srv:
        mam = srv.features["mam"]
        batches, _ = count_batches(mam)
        seqs = [(await mam._new_id())[0] for _ in range(3)]
        barriers = []
        for owner, seq in zip(("alice@localhost", "bob@localhost", "carol@localhost"), seqs, strict=True):
            with durability.scope() as barrier:
                await mam._enqueue(record(mam, owner, seq))
            barriers.append(barrier)
            barrier.when_settled(lambda: None)  # waited for (a held delivery): hurried
            await asyncio.sleep(0)  # the next stanza comes a turn later
        done = asyncio.Event()
        barriers[-1].when_settled(done.set)
        await asyncio.wait_for(done.wait(), 5)
        assert batches == [3] and all(b.settled and not b.failed for b in barriers)
        # and a lone record waits no more than the empty turns after it
        seq = (await mam._new_id())[0]
        with durability.scope() as barrier:
            await mam._enqueue(record(mam, "alice@localhost", seq))
        barrier.when_settled(lambda: None)
        for _ in range(mam_module.GATHER_TURNS + 1):
            await asyncio.sleep(0)
        assert batches == [3, 1] and barrier.settled


async def test_a_backlog_beyond_batch_size_is_committed_batch_by_batch_without_lingering(tmp_path):
    # commit_interval=5: lingering would hold the second and third batch for seconds.
    async with running_server(tmp_path, COMMIT_FIRST, "mam.batch_size=2", "mam.commit_interval=5") as srv:
        mam = srv.features["mam"]
        batches, _ = count_batches(mam)
        seqs = [(await mam._new_id())[0] for _ in range(5)]
        with durability.scope() as barrier:
            for seq in seqs:
                await mam._enqueue(record(mam, "alice@localhost", seq))
        done = asyncio.Event()
        barrier.when_settled(done.set)
        await asyncio.wait_for(done.wait(), 2)  # (a linger would be 5 s)
        assert batches == [2, 2, 1] and not barrier.failed
        assert [m.seq for m in (await mam.repo.query(ArchiveQuery("alice@localhost", 10))).items] == seqs


async def test_a_commit_that_cannot_run_on_the_loop_thread_is_the_writer_tasks(tmp_path):
    # Another writer of this process holds SQLite's write turn: the kick leaves the batch to the
    # writer task, which commits it once the turn is free; the barrier waits meanwhile.
    async with running_server(tmp_path, COMMIT_FIRST) as srv:
        mam = srv.features["mam"]
        seq, _ = await mam._new_id()
        async with srv.db.transaction() as conn:  # holds the write turn
            with durability.scope() as barrier:
                await mam._enqueue(record(mam, "alice@localhost", seq))
            done = asyncio.Event()
            barrier.when_settled(done.set)
            for _ in range(5):
                await asyncio.sleep(0)
            assert not barrier.settled
            await conn.exec_driver_sql("SELECT 1")
        await asyncio.wait_for(done.wait(), 5)
        assert not barrier.failed
        assert [m.seq for m in (await mam.repo.query(ArchiveQuery("alice@localhost", 10))).items] == [seq]


async def concurrent_conversations(srv: Any, owners_of: Callable[[str], list[str]], pairs: int = 3, n: int = 15) -> list[str]:
    """Three conversations at once through the wire (a{i} -> b{i}, ``n`` messages each): at the
    moment each message reaches its recipient, ``owners_of(needle)`` (read from the files, in
    the recipient's handler) must name both archives of the message whose serialised form holds
    ``needle``; returns the ids for which it did not. Each conversation keeps its order in
    delivery and in the archive (asserted)."""
    for i in range(pairs):
        await add_user(srv, f"a{i}")
        await add_user(srv, f"b{i}")
    missing: list[str] = []
    received: dict[int, list[str]] = {i: [] for i in range(pairs)}
    senders, receivers = [], []
    all_in = asyncio.Event()

    def on_message(i: int, msg: Any) -> None:
        if msg.xml.find("{urn:xmpp:mam:2}result") is not None:
            return  # (the query's results at the end)
        mid = msg["id"]
        received[i].append(mid)
        if sorted(set(owners_of(f'id="{mid}"'))) != [f"a{i}@localhost", f"b{i}@localhost"]:
            missing.append(mid)
        if sum(len(v) for v in received.values()) == pairs * n:
            all_in.set()

    try:
        for i in range(pairs):
            receivers.append(b := await client(srv, f"b{i}@localhost/r"))
            b.register_handler(Callback(f"chk{i}", MatchXPath("{jabber:client}message"),
                                        lambda m, i=i: on_message(i, m)))
            senders.append(await client(srv, f"a{i}@localhost/s"))
        for k in range(n):
            for i, a in enumerate(senders):
                m = a.make_message(mto=f"b{i}@localhost/r", mbody=f"{i}-{k}", mtype="chat")
                m["id"] = f"c{i}-{k}"
                m.send()
        await asyncio.wait_for(all_in.wait(), 10)
        for i in range(pairs):
            page, _ = await query(receivers[i])
            assert [body for _, body in page] == [f"{i}-{k}" for k in range(n)]
            assert [m.get("id") for m in receivers[i].mam.last_messages] == received[i]
    finally:
        for c in senders + receivers:
            await slix_close(c)
    return missing


def table_owners(reader: sqlite3.Connection, needle: str) -> list[str]:
    """The archives whose stored copy in the table holds *needle*."""
    return [r[0] for r in reader.execute("SELECT owner FROM mam_messages WHERE instr(stanza, ?) > 0", (needle,))]


async def test_every_delivered_message_of_concurrent_conversations_is_in_the_archive_when_it_arrives(tmp_path):
    """At the moment each message of three conversations reaches its recipient, both copies are
    committed in the database file (read by another connection, without flushing)."""
    async with running_server(tmp_path, COMMIT_FIRST) as srv:
        with closing(sqlite3.connect(srv.db.sqlite_file)) as reader:
            assert await concurrent_conversations(srv, functools.partial(table_owners, reader)) == []
