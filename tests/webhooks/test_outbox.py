"""Webhooks: the outbox and its delivery on SQLite and MariaDB, with a real HTTP receiver.

Two workers with their own engines (two nodes) share one outbox: every event arrives once, in
order per subject; a failing subject waits in backoff while the others go on, becomes a dead
letter after webhooks.dead_after, and `retry` sends it again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from xmppd.config import WebhooksOptions
from xmppd.storage.engine import Database
from xmppd.webhooks import events as E
from xmppd.webhooks.delivery import DeliveryWorker, OutboxStore, sign, verify
from xmppd.webhooks.outbox import Outbox, outbox

from .receiver import SECRET, Receiver

pytestmark = pytest.mark.asyncio


def options(url: str, **kw: object) -> WebhooksOptions:
    base: dict[str, object] = dict(url=url, secret=SECRET, timeout=5.0, retry_min=0.1, retry_max=0.5, poll_interval=0.2)
    base.update(kw)
    return WebhooksOptions(**base)  # type: ignore[arg-type]


async def write(db: Database, box: Outbox, event: str, subject: str, data: dict[str, object]) -> str | None:
    async with db.transaction() as conn:
        return await box.write_txn(conn, event, subject, data, datetime.now(UTC))


async def drained(store: OutboxStore, timeout: float = 30) -> None:
    async def go() -> None:
        while await store.counts() != (0, 0):  # noqa: ASYNC110 - polling storage, which the test cannot subscribe to
            await asyncio.sleep(0.1)

    await asyncio.wait_for(go(), timeout)


async def test_signature_round_trip() -> None:
    body = b'{"id":"x"}'
    assert sign("k" * 16, body).startswith("sha256=")
    assert verify("k" * 16, body, sign("k" * 16, body))
    assert not verify("k" * 16, body + b" ", sign("k" * 16, body))
    assert not verify("", body, sign("", body))


async def test_filter_and_rollback_write_nothing(migrated_db: Database) -> None:
    box = Outbox(E.selected(["wallet.*"]))
    assert await write(migrated_db, box, E.ACCOUNT_CREATED, "user:a@x", {"jid": "a@x"}) is None
    with pytest.raises(RuntimeError):
        async with migrated_db.transaction() as conn:
            await box.write_txn(conn, E.WALLET_TOPUP, "wallet:a@x", {"amount": 1}, datetime.now(UTC))
            raise RuntimeError("the change fails: its event goes with it")
    kept = await write(migrated_db, box, E.WALLET_TOPUP, "wallet:a@x", {"amount": 2})
    rows = await OutboxStore(migrated_db).list(dead=None)
    assert [(r.event_id, r.event) for r in rows] == [(kept, E.WALLET_TOPUP)]
    with pytest.raises(ValueError):
        Outbox(["no.such.event"])


async def test_two_workers_deliver_each_event_once_in_subject_order(migrated_db: Database) -> None:
    receiver = Receiver()
    await receiver.start()
    box = Outbox(E.EVENTS)
    subjects, per_subject = 20, 15
    for n in range(per_subject):
        for s in range(subjects):
            await write(migrated_db, box, E.WALLET_TOPUP, f"wallet:u{s}@x", {"owner": f"u{s}@x", "seq": n})
    other = Database.from_url(migrated_db.url)
    workers = [DeliveryWorker(migrated_db, options(receiver.url)), DeliveryWorker(other, options(receiver.url))]
    try:
        for w in workers:
            w.start()
        total = subjects * per_subject
        await receiver.wait_for(lambda: len(receiver.events) >= total and not receiver.refused)
        await drained(OutboxStore(migrated_db))
        await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
    finally:
        for w in workers:
            await w.stop()
        await other.dispose()
        await receiver.stop()
    assert receiver.bad_signatures == 0
    assert len(receiver.events) == total == len(receiver.ids()), "an event was delivered twice without a crash"
    assert all(w.delivered > 0 for w in workers), [w.delivered for w in workers]
    for s in range(subjects):
        seqs = [e["data"]["seq"] for e in receiver.events if e["data"]["owner"] == f"u{s}@x"]
        assert seqs == list(range(per_subject)), (s, seqs)
    assert await OutboxStore(migrated_db).counts() == (0, 0)


async def test_failing_subject_backs_off_dies_and_is_retried(migrated_db: Database) -> None:
    broken = {"on": True}
    receiver = Receiver(status=lambda e: 500 if broken["on"] and e["data"].get("owner") == "bad@x" else 200)
    await receiver.start()
    box = Outbox(E.EVENTS)
    first_bad = await write(migrated_db, box, E.WALLET_TOPUP, "wallet:bad@x", {"owner": "bad@x", "seq": 0})
    second_bad = await write(migrated_db, box, E.WALLET_TOPUP, "wallet:bad@x", {"owner": "bad@x", "seq": 1})
    good = [await write(migrated_db, box, E.WALLET_TOPUP, f"wallet:g{i}@x", {"owner": f"g{i}@x", "seq": 0}) for i in range(5)]
    worker = DeliveryWorker(migrated_db, options(receiver.url, dead_after=2.0))
    store = OutboxStore(migrated_db)
    worker.start()
    try:
        await receiver.wait_for(lambda: set(good) <= receiver.ids())  # the failing subject blocks nobody
        async def dead() -> None:
            while not await store.list(dead=True):  # noqa: ASYNC110 - polling storage, which the test cannot subscribe to
                await asyncio.sleep(0.2)
        await asyncio.wait_for(dead(), 30)
        letters = await store.list(dead=True)
        assert letters[0].event_id == first_bad  # the head dies first; its successor waited behind it
        assert letters[0].attempts >= 2 and letters[0].last_error == "HTTP 500"
        # The dead head left the queue: the next event of its subject is tried now; as old as the
        # head, it dies at its first failure. The receiver is mended; `retry` sends both again.
        async def both_dead() -> None:
            while len(await store.list(dead=True)) < 2:  # noqa: ASYNC110 - polling storage, which the test cannot subscribe to
                await asyncio.sleep(0.2)
        await asyncio.wait_for(both_dead(), 30)
        broken["on"] = False
        assert await store.retry(None, datetime.now(UTC)) == 2
        await receiver.wait_for(lambda: {first_bad, second_bad} <= receiver.ids())
        bad = [e["data"]["seq"] for e in receiver.events if e["data"]["owner"] == "bad@x"]
        assert bad == [0, 1]  # retried in their order
        await drained(store)  # the last deletions commit after the receiver answered
    finally:
        await worker.stop()
        await receiver.stop()
    assert await store.counts() == (0, 0)
    assert worker.failures >= 3 and worker.dead == 2


async def test_purge_deletes_only_dead_letters(migrated_db: Database) -> None:
    box = Outbox(E.EVENTS)
    a = await write(migrated_db, box, E.MUTE_SET, "mute:r:a", {"jid": "a"})
    b = await write(migrated_db, box, E.MUTE_SET, "mute:r:b", {"jid": "b"})
    async with migrated_db.transaction() as conn:
        await conn.execute(outbox.update().where(outbox.c.event_id == a).values(dead_at=datetime.now(UTC)))
    store = OutboxStore(migrated_db)
    assert await store.purge([b]) == 0
    assert await store.purge(None) == 1
    assert [r.event_id for r in await store.list(dead=None)] == [b]
    async with migrated_db.transaction(readonly=True) as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 1
