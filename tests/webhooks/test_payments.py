"""Payment hooks (docs/webhooks.md §4): a user asks for a top-up or a withdrawal with the
#payment ad-hoc command (slixmpp), the app gets payment.requested on its receiver and answers
with a signed confirmation on listen.http; the wallet moves only then, once. And under
concurrency (two engines, SQLite and MariaDB): wallets + pending withdrawals + unclaimed shares
move only by confirmed payments."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from xmppd.storage.engine import Database
from xmppd.webhooks import events as E
from xmppd.webhooks.delivery import sign
from xmppd.webhooks.outbox import Outbox
from xmppd_extensions.redpacket import slixmpp_plugin, split
from xmppd_extensions.redpacket.models import AllGone, InsufficientFunds, NewPacket
from xmppd_extensions.redpacket.payments import PaymentConflict, PaymentRepository
from xmppd_extensions.redpacket.sql import SqlRedPacketRepository
from xmppd_extensions.redpacket.tables import packets, shares, wallets
from xmppd_extensions.redpacket.user_commands import PAYMENT, PAYMENT_FORM_TYPE

from ..extensions.redpacket.servers import rp_running_server
from ..features.test_adhoc import PLUGINS, form_of, notes, run, xform
from ..helpers import add_user, slix, slix_close
from .receiver import SECRET, Receiver

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def server(tmp_path: Path, receiver: Receiver):
    async with rp_running_server(
        tmp_path, "listen.http=127.0.0.1:0", f"webhooks.url={receiver.url}", f"webhooks.secret={SECRET}",
        "webhooks.poll_interval=0.2", "webhooks.retry_min=0.2",
    ) as srv:
        yield srv


async def ask(c: Any, kind: str, amount: str) -> list[tuple[str, str]]:
    first = await run(c, PAYMENT)
    assert first.get("status") == "executing" and xform(first).form_type == PAYMENT_FORM_TYPE
    done = await run(c, PAYMENT, action="complete", sessionid=first.get("sessionid"), payload=form_of(c, kind=kind, amount=amount))
    return notes(done)


async def post(http: aiohttp.ClientSession, server: Any, path: str, doc: Any, secret: str = SECRET) -> tuple[int, dict[str, Any]]:
    body = json.dumps(doc).encode()
    async with http.post(f"http://127.0.0.1:{server.ports['http']}{path}", data=body,
                         headers={"X-Xmppd-Signature": sign(secret, body), "Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


async def requested(receiver: Receiver, n: int) -> dict[str, Any]:
    await receiver.wait_for(lambda: sum(e["event"] == E.PAYMENT_REQUESTED for e in receiver.events) >= n, timeout=30)
    return [e for e in receiver.events if e["event"] == E.PAYMENT_REQUESTED][n - 1]["data"]


@pytest.mark.interop
async def test_user_asks_app_confirms_signed_wallet_moves_once(server, receiver):
    alice = await slix(server, await add_user(server, "alice"), plugins=PLUGINS)
    alice.register_plugin("redpacket", module=slixmpp_plugin)
    rp = alice.plugin["redpacket"]
    try:
        async with aiohttp.ClientSession() as http:
            said = await ask(alice, "topup", "12.34")
            ev = await requested(receiver, 1)
            assert (ev["owner"], ev["kind"], ev["amount"], ev["status"]) == ("alice@localhost", "topup", 1234, "pending")
            assert said == [("info", f"Request {ev['id']} recorded: Top up my wallet of 12.34 CNY, waiting for the app's confirmation.")]
            assert await rp.balance() == 0  # nothing moves before the app confirms
            path = f"/api/v1/payments/{ev['id']}/confirm"
            # refused: a bad signature, another payment's id, a wrong amount, an unknown id
            status, doc = await post(http, server, path, {"id": ev["id"], "amount": 1234}, secret="x" * 20)
            assert (status, doc["error"]["code"]) == (401, "bad_signature")
            assert (await post(http, server, path, {"id": "0" * 16, "amount": 1234}))[0] == 400
            status, doc = await post(http, server, path, {"id": ev["id"], "amount": 99})
            assert (status, doc["error"]["code"]) == (409, "amount_mismatch")
            assert (await post(http, server, "/api/v1/payments/ffff/confirm", {"id": "ffff", "amount": 1}))[0] == 404
            assert (await post(http, server, path, [1, 2]))[0] == 400
            assert await rp.balance() == 0
            # confirmed: the wallet grows once, however often the app says so
            status, doc = await post(http, server, path, {"id": ev["id"], "amount": 1234, "reference": "psp-1"})
            assert (status, doc["status"], doc["balance"], doc["changed"]) == (200, "confirmed", 1234, True)
            status, doc = await post(http, server, path, {"id": ev["id"], "amount": 1234, "reference": "psp-1"})
            assert (status, doc["status"], doc["changed"]) == (200, "confirmed", False)
            status, doc = await post(http, server, f"/api/v1/payments/{ev['id']}/reject", {"id": ev["id"], "amount": 1234})
            assert (status, doc["error"]["code"]) == (409, "already_settled")
            assert await rp.balance() == 1234
            # a withdrawal holds its amount at once; rejected, it comes back; confirmed, it leaves
            await ask(alice, "withdraw", "10")
            w1 = await requested(receiver, 2)
            assert await rp.balance() == 234
            status, doc = await post(http, server, f"/api/v1/payments/{w1['id']}/reject", {"id": w1["id"], "amount": 1000})
            assert (status, doc["status"], doc["balance"]) == (200, "rejected", 1234)
            await ask(alice, "withdraw", "12.34")
            w2 = await requested(receiver, 3)
            assert await rp.balance() == 0
            assert (await ask(alice, "withdraw", "0.01"))[0][1] == "your balance is 0.00 CNY, the withdrawal needs 0.01 CNY"
            status, doc = await post(http, server, f"/api/v1/payments/{w2['id']}/confirm", {"id": w2["id"], "amount": 1234})
            assert (status, doc["status"]) == (200, "confirmed")
            assert await rp.balance() == 0
            await receiver.wait_for(lambda: sum(e["event"] in (E.PAYMENT_CONFIRMED, E.PAYMENT_REJECTED) for e in receiver.events) >= 3)
            settled = [(e["event"], e["data"]["id"]) for e in receiver.events if e["event"] in (E.PAYMENT_CONFIRMED, E.PAYMENT_REJECTED)]
            assert settled == [(E.PAYMENT_CONFIRMED, ev["id"]), (E.PAYMENT_REJECTED, w1["id"]), (E.PAYMENT_CONFIRMED, w2["id"])]
        report = await server.features["redpacket"].repo.audit()
        assert report.ok, str(report)
    finally:
        await slix_close(alice)


async def money(db: Database, repo: PaymentRepository) -> int:
    """wallets + pending withdrawals + unclaimed shares of packets not refunded."""
    async with db.transaction(readonly=True) as conn:
        balances = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(wallets.c.balance), 0)))).scalar_one()
        unclaimed = (await conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(shares.c.amount), 0))
            .select_from(shares.join(packets, packets.c.id == shares.c.packet_id))
            .where(shares.c.grabbed_by.is_(None), packets.c.refunded == sa.false())
        )).scalar_one()
    return int(balances) + int(unclaimed) + await repo.pending_total("withdraw")


async def test_money_invariant_under_concurrent_requests_settlements_and_grabs(migrated_db: Database):
    other = Database.from_url(migrated_db.url)  # a second node on the same database
    box = Outbox(E.EVENTS)
    repos = [PaymentRepository(migrated_db, box), PaymentRepository(other, box)]
    wallets_ = [SqlRedPacketRepository(migrated_db, box), SqlRedPacketRepository(other, box)]
    users = [f"u{i}@x" for i in range(6)]
    now = datetime.now(UTC)
    for u in users:
        await wallets_[0].topup(u, 1000, now)
    start = await money(migrated_db, repos[0])
    assert start == 6000
    rng = random.Random(18)
    confirmed = {"topup": 0, "withdraw": 0}
    outcomes: dict[str, str] = {}

    async def settle(pid: str, amount: int, kind: str, outcome: str, r: PaymentRepository) -> None:
        try:
            payment, changed = await r.settle(pid, outcome, datetime.now(UTC))
        except PaymentConflict:
            return
        if changed:
            assert pid not in outcomes, f"{pid} settled twice"
            outcomes[pid] = outcome
            if outcome == "confirmed":
                confirmed[kind] += amount

    async def life(i: int) -> None:
        r = repos[i % 2]
        u = users[i % len(users)]
        kind = "withdraw" if i % 3 else "topup"
        amount = rng.randint(1, 400)
        try:
            payment, _ = await r.request(u, kind, amount, f"c{i}", datetime.now(UTC))
        except InsufficientFunds:
            return
        # the app answers twice at once, sometimes contradicting itself: one outcome wins
        first, second = ("confirmed", "rejected") if i % 2 else ("rejected", "confirmed")
        await asyncio.gather(settle(payment.id, amount, kind, first, repos[0]), settle(payment.id, amount, kind, second, repos[1]),
                             settle(payment.id, amount, kind, first, repos[1]))

    async def packet_life(i: int) -> None:
        w = wallets_[i % 2]
        sender = users[i % len(users)]
        pid = f"p{i:07d}"
        t = datetime.now(UTC)
        try:
            await w.send(NewPacket(pid, sender, "lucky", "hi", "room@x", True, None, f"pk{i}", "en", t, t + timedelta(hours=1),
                                   tuple(split.lucky(90, 3, rng))))
        except InsufficientFunds:
            return
        for g in users[:4]:
            try:
                await wallets_[(i + 1) % 2].grab(pid, g, datetime.now(UTC))
            except AllGone:
                break
            except Exception as exc:  # AlreadyGrabbed for the sender's own turn is fine
                assert type(exc).__name__ == "AlreadyGrabbed", exc

    try:
        await asyncio.gather(*(life(i) for i in range(60)), *(packet_life(i) for i in range(12)))
        end = await money(migrated_db, repos[0])
        pending = await repos[0].pending_total("withdraw")
        assert pending == 0  # every request got an answer
        assert end == start + confirmed["topup"] - confirmed["withdraw"], (end, start, confirmed)
        assert len(outcomes) > 10 and set(outcomes.values()) == {"confirmed", "rejected"}
        report = await wallets_[0].audit()
        assert report.ok, str(report)
        # and the ledger agrees: one entry per confirmed top-up, one release per rejected withdrawal
        for payment in await repos[0].list(limit=1000):
            assert payment.status == outcomes[payment.id]
    finally:
        await other.dispose()
