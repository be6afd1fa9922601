"""Durable before acknowledged or delivered (xmppd.core.durability): a server killed with SIGKILL
in the middle of a message stream, restarted on the same SQLite file, has archived every message
it acknowledged to the sender (XEP-0198 ``<a h=''/>``) or delivered to the recipient -- in both
the sender's and the recipient's archive -- however wide the archive's commit window is. With the
archive's journal (the default on one SQLite process) the acknowledged records are in the
journal at the kill, and the restart stores them before it listens."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from xmppd.accounts import AccountService
from xmppd.features.mam.journal import journal_path, read_journal
from xmppd.storage.accounts import SqlAccountRepository
from xmppd.storage.engine import Database

from ..helpers import PASSWORD, start_xmppd
from .smacks_support import SM, SmClient

pytestmark = pytest.mark.interop

ROUNDS = 3
MESSAGES = 300  # per round, more than are sent before the kill
_BODY = re.compile(r"<body>([^<]*)</body>")


def start(tmp: Path, journal: bool) -> tuple[subprocess.Popen[bytes], int]:
    # commit_interval=3: records nobody waits for linger up to 3 s before their commit, so that
    # the kill always lands inside a commit window.
    return start_xmppd(tmp, "mam.commit_interval=3", "smacks.request_every=0", f"mam.journal={str(journal).lower()}")


def archived(db: Path) -> dict[str, set[str]]:
    """Bodies in each archive, read from the database file itself."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT owner, stanza FROM mam_messages").fetchall()
    out: dict[str, set[str]] = {}
    for owner, stanza in rows:
        out.setdefault(owner, set()).update(_BODY.findall(stanza))
    return out


async def one_round(port: int, prefix: str, kill_after: int, proc: subprocess.Popen[bytes]) -> tuple[list[str], int, set[str]]:
    """alice streams messages to bob, asking for an ack after each; the server is killed once
    ``kill_after`` of them are acknowledged. Returns (bodies sent in order, highest h, bodies bob got)."""
    server = SimpleNamespace(ports={"c2s": port})
    bob = await SmClient.login(server, "bob", enable=False)
    alice = await SmClient.login(server, "alice", resume=False)
    bodies = [f"{prefix}-{i}" for i in range(MESSAGES)]
    acked = 0
    got: set[str] = set()
    killed = asyncio.Event()

    async def read_acks() -> None:
        nonlocal acked
        while True:
            el = await alice.inbox.get()
            if el.tag == f"{{{SM}}}a":
                acked = max(acked, int(el.get("h")))
                if acked >= kill_after and not killed.is_set():
                    proc.send_signal(signal.SIGKILL)
                    killed.set()

    async def read_bob() -> None:
        while True:
            el = await bob.inbox.get()
            got.update(b.text or "" for b in el.iter("{jabber:client}body"))

    tasks = [asyncio.create_task(read_acks()), asyncio.create_task(read_bob())]
    try:
        for body in bodies:
            if killed.is_set():
                break
            alice.send_stanza(f"<message to='bob@localhost/phone' type='chat'><body>{body}</body></message>")
            alice.write(f"<r xmlns='{SM}'/>")
            await asyncio.sleep(0.002)
        await asyncio.wait_for(killed.wait(), 30)
        await asyncio.wait_for(asyncio.gather(alice.closed.wait(), bob.closed.wait()), 10)
    finally:
        for t in tasks:
            t.cancel()
        alice.cut()
        bob.cut()
    return bodies, acked, got


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "commit-first"])
async def test_sigkill_mid_stream_loses_no_acknowledged_or_delivered_message_from_either_archive(tmp_path, journal):
    rng = random.Random(15)
    db_file = tmp_path / "xmppd.db"
    journal_file = journal_path(str(db_file))
    proc, port = start(tmp_path, journal)
    try:
        db = Database.from_url(f"sqlite+aiosqlite:///{db_file}")
        try:
            accounts = AccountService(SqlAccountRepository(db), "localhost")
            await accounts.create("alice", PASSWORD)
            await accounts.create("bob", PASSWORD)
        finally:
            await db.dispose()
        lost: list[str] = []
        journaled = 0
        for r in range(ROUNDS):
            kill_after = rng.randrange(5, 60)  # a random moment in the middle of the stream
            bodies, acked, delivered = await one_round(port, f"r{r}", kill_after, proc)
            proc.wait(10)
            assert acked >= kill_after
            journaled += len(read_journal(journal_file))  # (what the kill left to replay)
            # The restart stores what the journal holds before it listens: read the file then.
            proc, port = start(tmp_path, journal)
            assert not journal or journal_file.stat().st_size == 0, "the journal is replayed and emptied at start"
            store = archived(db_file)
            for owner in ("alice@localhost", "bob@localhost"):
                have = store.get(owner, set())
                lost += [f"round {r}: {b} acknowledged (h={acked}) but not in {owner}'s archive" for b in bodies[:acked] if b not in have]
                lost += [f"round {r}: {b} delivered to bob but not in {owner}'s archive" for b in sorted(delivered - have)]
        assert not lost, f"{len(lost)} missing, e.g. {lost[:5]}"
        # commit_interval=3: acknowledged records wait in the journal, not in the database (and
        # without it, every one waited for is committed to the database first).
        assert journaled > 0 if journal else journaled == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    assert not journal_file.exists(), "a clean stop stores everything and removes the journal"
