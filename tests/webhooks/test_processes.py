"""Two xmppd processes on one database deliver one outbox: every event once (no crash, so no
duplicate), in order per subject, while events keep being written (SQLite and MariaDB)."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from xmppd.storage import migrations
from xmppd.storage.engine import Database
from xmppd.webhooks import events as E
from xmppd.webhooks.delivery import OutboxStore
from xmppd.webhooks.outbox import Outbox

from ..extensions.redpacket.servers import disabled_option
from ..helpers import start_xmppd
from .receiver import SECRET, Receiver

pytestmark = pytest.mark.interop

SUBJECTS, PER_SUBJECT = 12, 25


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
async def test_two_processes_share_the_outbox_each_event_once_in_order(tmp_path: Path, request, backend):
    if backend == "mariadb":
        url = request.getfixturevalue("mariadb_server").create_database()
        db_url = url.render_as_string(hide_password=False)
    else:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    db = Database.from_url(db_url)
    await migrations.upgrade(db)
    receiver = Receiver()
    await receiver.start()
    sets = (disabled_option(), f"storage.url={db_url}", "storage.auto_upgrade=true", f"webhooks.url={receiver.url}",
            f"webhooks.secret={SECRET}", "webhooks.poll_interval=0.1", "webhooks.concurrency=4")
    procs = []
    try:
        for i in range(2):
            (tmp_path / f"n{i}").mkdir()
            procs.append(start_xmppd(tmp_path / f"n{i}", *sets)[0])
        box = Outbox(E.EVENTS)
        for n in range(PER_SUBJECT):  # written while both nodes poll and claim
            for s in range(SUBJECTS):
                async with db.transaction() as conn:
                    await box.write_txn(conn, E.WALLET_TOPUP, f"wallet:s{s}@x", {"owner": f"s{s}@x", "seq": n}, datetime.now(UTC))
        total = SUBJECTS * PER_SUBJECT
        await receiver.wait_for(lambda: len(receiver.ids()) >= total, timeout=120)

        async def drained() -> None:
            while await OutboxStore(db).counts() != (0, 0):  # noqa: ASYNC110 - polling storage, which the test cannot subscribe to
                await asyncio.sleep(0.1)
        await asyncio.wait_for(drained(), 30)
        await asyncio.sleep(1)  # a second delivery would have arrived by now
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        await receiver.stop()
        await db.dispose()
    assert receiver.bad_signatures == 0
    assert len(receiver.events) == total, f"{len(receiver.events) - total} events delivered twice"
    for s in range(SUBJECTS):
        assert [e["data"]["seq"] for e in receiver.events if e["data"]["owner"] == f"s{s}@x"] == list(range(PER_SUBJECT))
