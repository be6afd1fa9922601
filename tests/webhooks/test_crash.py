"""Webhooks through the network: a slixmpp client grabs red packets on an xmppd process, a real
HTTP receiver gets the signed events; the receiver is killed, events pile up, the server is
killed with SIGKILL, both come back: every event written arrives (by id, duplicates allowed),
in order per subject. Prints the backlog's drain figures."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import slixmpp
import sqlalchemy as sa

from xmppd.accounts import AccountService
from xmppd.storage.accounts import SqlAccountRepository
from xmppd.storage.engine import Database
from xmppd.webhooks import events as E
from xmppd.webhooks.delivery import OutboxStore
from xmppd.webhooks.outbox import Outbox, outbox
from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.sql import SqlRedPacketRepository

from ..extensions.redpacket.servers import disabled_option
from ..helpers import PASSWORD, start_xmppd
from .receiver import SECRET, Receiver

pytestmark = pytest.mark.interop

BIN = Path(sys.executable).parent
GRABBERS = 6
WALLETS, TOPUPS = 20, 30  # the pile written while the receiver is down


def start(tmp: Path, storage: list[str], url: str) -> tuple[subprocess.Popen[bytes], int]:
    return start_xmppd(
        tmp, disabled_option(), *storage, f"webhooks.url={url}", f"webhooks.secret={SECRET}",
        "webhooks.timeout=2", "webhooks.retry_min=0.2", "webhooks.retry_max=1", "webhooks.poll_interval=0.2",
        "webhooks.concurrency=16",
        "redpacket.contacts_only=false",  # 1:1 packets between strangers: the outbox is under test
    )


async def client(port: int, user: str) -> Any:
    c = slixmpp.ClientXMPP(f"{user}@localhost", PASSWORD)
    c.ssl_context = ssl.create_default_context()
    c.ssl_context.check_hostname = False
    c.ssl_context.verify_mode = ssl.CERT_NONE
    c.enable_direct_tls = False
    c.enable_plaintext = False
    c.register_plugin("redpacket", module=slixmpp_plugin)
    started = asyncio.get_running_loop().create_future()
    c.add_event_handler("session_start", lambda _e: started.done() or started.set_result(None))
    c.add_event_handler("failed_all_auth", lambda e: started.done() or started.set_exception(ConnectionError(str(e))))
    c.connect("127.0.0.1", port)
    await asyncio.wait_for(started, 30)
    return c


async def send_and_grab(port: int, users: list[str], tag: str) -> list[str]:
    alice = await client(port, "alice")
    ids = []
    try:
        for u in users:
            sent = await alice.plugin["redpacket"].send_packet(f"{u}@localhost", client_id=f"{tag}-{u}", total=100, timeout=30)
            ids.append(sent["id"])
    finally:
        alice.disconnect()
    for u, pid in zip(users, ids, strict=True):
        c = await client(port, u)
        try:
            opened = await c.plugin["redpacket"].open_packet(pid, timeout=30)
            assert int(opened["amount"]) == 100
        finally:
            c.disconnect()
    return ids


@pytest.mark.parametrize("stuck", [False, True], ids=["receiver-down", "receiver-stuck"])
@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
async def test_receiver_then_server_killed_every_event_arrives_in_subject_order(tmp_path, request, backend, stuck):
    """receiver-down: the receiver is stopped, the server retries into refused connections.
    receiver-stuck: the receiver takes requests and never answers, so the server is killed with
    claims in flight; they come back once their lease lapses, and the receiver stops after."""
    storage: list[str] = []
    if backend == "mariadb":
        url = request.getfixturevalue("mariadb_server").create_database()
        db_url = url.render_as_string(hide_password=False)
        storage = [f"storage.url={db_url}", "storage.auto_upgrade=true"]
    else:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'xmppd.db'}"
    receiver = Receiver()
    await receiver.start()
    proc, port = start(tmp_path, storage, receiver.url)
    db = Database.from_url(db_url)
    box = Outbox(E.EVENTS)  # what xmppctl writes with webhooks.url set: the server's door
    store = OutboxStore(db)
    try:
        accounts = AccountService(SqlAccountRepository(db, outbox=box), "localhost")
        repo = SqlRedPacketRepository(db, box)
        users = [f"g{i}" for i in range(GRABBERS)]
        for name in ["alice", *users]:
            await accounts.create(name, PASSWORD)
        await repo.topup("alice@localhost", 100 * GRABBERS, datetime.now(UTC))

        # 1. Everything up: events of the first grabs arrive.
        half = GRABBERS // 2
        first_packets = await send_and_grab(port, users[:half], "a")
        await receiver.wait_for(lambda: sum(e["event"] == E.REDPACKET_FINISHED for e in receiver.events) >= half)

        # 2. The receiver dies (or hangs); grabs go on and a pile of wallet events is written.
        if stuck:
            receiver.hang = True
        else:
            await receiver.stop()
        second_packets = await send_and_grab(port, users[half:], "b")
        for n in range(TOPUPS):
            for w in range(WALLETS):
                await repo.topup(f"w{w}@localhost", 1 + n, datetime.now(UTC))

        async def tried() -> None:  # the server keeps trying (and failing) while the receiver is away
            while True:
                async with db.transaction(readonly=True) as conn:
                    if (await conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.attempts > 0))).scalar_one():
                        return
                await asyncio.sleep(0.2)
        await asyncio.wait_for(tried(), 30)

        # 3. SIGKILL the server: claims and backoffs stay behind in the outbox.
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        before = list(receiver.events)  # what arrived before the kill (nothing arrives after it)
        if stuck:
            await receiver.stop()
            receiver.hang = False
        pending = await store.list(dead=None, limit=100000)
        if stuck:
            assert any(r.claim for r in pending), "no request was in flight when the server died"
        written = {e["id"] for e in before} | {r.event_id for r in pending}
        assert len(pending) >= WALLETS * TOPUPS

        # 4. Both come back; the backlog drains.
        await receiver.start(receiver.port)
        t0 = time.monotonic()
        proc, port = start(tmp_path, storage, receiver.url)
        t_up = time.monotonic()
        await receiver.wait_for(lambda: written <= receiver.ids(), timeout=180)
        t1 = time.monotonic()

        async def drained() -> None:
            while await store.counts() != (0, 0):  # noqa: ASYNC110 - polling storage, which the test cannot subscribe to
                await asyncio.sleep(0.1)
        await asyncio.wait_for(drained(), 30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        await db.dispose()
        await receiver.stop()

    assert receiver.bad_signatures == 0
    got = receiver.first_arrivals()
    assert {e["id"] for e in got} == written  # every event, exactly by id, and nothing else
    count = {name: sum(e["event"] == name for e in got) for name in E.EVENTS}
    assert count[E.ACCOUNT_CREATED] == 1 + GRABBERS
    assert count[E.WALLET_TOPUP] == 1 + WALLETS * TOPUPS
    assert count[E.REDPACKET_SENT] == count[E.REDPACKET_GRABBED] == count[E.REDPACKET_FINISHED] == GRABBERS
    # per-subject order: a packet's sent < grabbed < finished; a wallet's balances only grow
    for pid in first_packets + second_packets:
        assert [e["event"] for e in got if e["data"].get("id") == pid] == [E.REDPACKET_SENT, E.REDPACKET_GRABBED, E.REDPACKET_FINISHED]
    for w in range(WALLETS):
        balances = [e["data"]["balance"] for e in got if e["event"] == E.WALLET_TOPUP and e["data"]["owner"] == f"w{w}@localhost"]
        assert balances == sorted(balances) and len(balances) == TOPUPS, (w, balances)
    grab = next(e for e in got if e["event"] == E.REDPACKET_GRABBED)
    assert grab["data"]["grabber"].endswith("@localhost") and grab["data"]["amount"] == 100
    backlog = len(written) - len(before)
    duplicates = len(receiver.events) - len(got)
    print(f"\n[{backend}, {'receiver stuck' if stuck else 'receiver down'}] backlog {backlog} events after SIGKILL; drained {t1 - t0:.2f} s after restart "
          f"(server start {t_up - t0:.2f} s): {backlog / (t1 - t_up):.0f} events/s; duplicates {duplicates}")
