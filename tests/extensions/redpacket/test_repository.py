"""Red packets (urn:xmppd:redpacket:0): repository contract on memory, SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import random

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from xmppd_extensions.redpacket import split
from xmppd_extensions.redpacket.models import (
    SYSTEM_WALLET,
    AllGone,
    AlreadyGrabbed,
    ClientIdReused,
    InsufficientFunds,
    NewPacket,
    PacketExpired,
    PacketNotFound,
)
from xmppd_extensions.redpacket.sql import SqlRedPacketRepository
from xmppd_extensions.redpacket.tables import wallets

from .conftest import at

A, B, C = "alice@example.com", "bob@example.com", "carol@example.com"


def new(pid: str = "p1", shares: tuple[int, ...] = (300, 200, 500), *, sender: str = A, client_id: str | None = None,
        expires: float = 3600, kind: str = "lucky", target: str = "room@conference.example.com") -> NewPacket:
    return NewPacket(
        id=pid, sender=sender, kind=kind, greeting="恭喜发财", target=target, is_room=True, exclusive_to=None,
        client_id=client_id or f"c-{pid}", lang="zh", created_at=at(0), expires_at=at(expires), shares=shares,
    )


async def test_topup_and_balance_with_ledger(rp_repo):
    assert await rp_repo.balance(A) == 0
    e1 = await rp_repo.topup(A, 1000, at(0))
    e2 = await rp_repo.topup(A, 250, at(1), "card")
    assert (e1.kind, e1.amount, e1.balance_after) == ("topup", 1000, 1000)
    assert (e2.balance_after, e2.reason) == (1250, "card")
    assert await rp_repo.balance(A) == 1250
    entries, more = await rp_repo.history(A, limit=10)
    assert [e.amount for e in entries] == [250, 1000] and not more
    assert (await rp_repo.audit()).ok


async def test_non_positive_topup_is_refused(rp_repo):
    for bad in (0, -5, True):
        with pytest.raises(ValueError):
            await rp_repo.topup(A, bad, at())


async def test_adjust_both_ways_needs_a_reason_and_never_overdraws(rp_repo):
    await rp_repo.topup(A, 100, at())
    assert (await rp_repo.adjust(A, -40, "chargeback", at())).balance_after == 60
    assert (await rp_repo.adjust(B, 15, "goodwill", at())).balance_after == 15
    with pytest.raises(InsufficientFunds):
        await rp_repo.adjust(A, -61, "too much", at())
    with pytest.raises(ValueError):
        await rp_repo.adjust(A, 5, "", at())
    assert await rp_repo.balance(A) == 60
    report = await rp_repo.audit()
    assert report.ok and report.total_adjustments == -25 and report.total_balances == 75


async def test_send_debits_and_writes_the_shares(rp_repo):
    await rp_repo.topup(A, 1500, at())
    result = await rp_repo.send(new())
    assert result.created and result.balance == 500
    assert result.packet.remaining_amount == 1000 and result.packet.remaining_count == 3
    assert [s.amount for s in await rp_repo.shares("p1")] == [300, 200, 500]
    report = await rp_repo.audit()
    assert report.ok and report.unclaimed == 1000 and report.total_balances == 500


async def test_send_without_funds_changes_nothing(rp_repo):
    await rp_repo.topup(A, 999, at())
    with pytest.raises(InsufficientFunds) as info:
        await rp_repo.send(new())
    assert (info.value.balance, info.value.needed) == (999, 1000)
    assert await rp_repo.get_packet("p1") is None
    assert await rp_repo.balance(A) == 999
    with pytest.raises(InsufficientFunds):
        await rp_repo.send(new(sender=C))  # no wallet at all
    assert (await rp_repo.audit()).ok


async def test_retried_send_with_same_client_id_debits_once(rp_repo):
    await rp_repo.topup(A, 5000, at())
    first = await rp_repo.send(new("p1", client_id="same"))
    again = await rp_repo.send(new("p2", (500, 300, 200), client_id="same"))  # new random split, same request
    assert not again.created and again.packet.id == "p1" and again.balance == 4000
    with pytest.raises(ClientIdReused):
        await rp_repo.send(new("p3", (1, 1), client_id="same"))
    assert await rp_repo.balance(A) == 4000 and first.created
    assert await rp_repo.get_packet("p2") is None


async def test_concurrent_retries_debit_once(sql_rp_repo):
    await sql_rp_repo.topup(A, 5000, at())
    results = await asyncio.gather(*(sql_rp_repo.send(new(f"p{i}", client_id="dup")) for i in range(8)))
    assert sum(r.created for r in results) == 1
    assert len({r.packet.id for r in results}) == 1
    assert await sql_rp_repo.balance(A) == 4000
    assert (await sql_rp_repo.audit()).ok


async def test_grab_claims_shares_in_order_once_per_person(rp_repo):
    await rp_repo.topup(A, 1000, at())
    await rp_repo.send(new())
    g1 = await rp_repo.grab("p1", B, at(1))
    assert (g1.amount, g1.seq, g1.balance, g1.remaining_count, g1.remaining_amount) == (300, 0, 300, 2, 700)
    with pytest.raises(AlreadyGrabbed) as info:
        await rp_repo.grab("p1", B, at(2))
    assert info.value.amount == 300 and info.value.grabbed_at == at(1)
    g2 = await rp_repo.grab("p1", A, at(3))  # in a room the sender may grab too
    g3 = await rp_repo.grab("p1", C, at(4))
    assert (g2.amount, g3.amount) == (200, 500)
    assert g2.best_luck is None
    assert g3.best_luck is not None and (g3.best_luck.grabbed_by, g3.best_luck.amount) == (C, 500)
    with pytest.raises(AllGone):
        await rp_repo.grab("p1", "dave@example.com", at(5))
    packet = await rp_repo.get_packet("p1")
    assert packet.status == "finished" and packet.best_luck == C and packet.finished_at == at(4)
    assert await rp_repo.refund("p1", at(99999)) is None
    report = await rp_repo.audit()
    assert report.ok and report.unclaimed == 0 and report.total_balances == 1000


async def test_best_luck_tie_goes_to_the_earliest_grab(rp_repo):
    await rp_repo.topup(A, 900, at())
    await rp_repo.send(new(shares=(300, 300, 300)))
    for i, who in enumerate((B, C, A)):
        last = await rp_repo.grab("p1", who, at(i))
    assert last.best_luck.grabbed_by == B


@pytest.mark.parametrize("kind,shares", [("equal", (300, 300)), ("lucky", (500,)), ("equal", (500,))])
async def test_equal_and_single_share_packets_store_no_best_luck(rp_repo, kind, shares):
    await rp_repo.topup(A, 1000, at())
    await rp_repo.send(new(kind=kind, shares=shares))
    for i, who in enumerate((B, C)[: len(shares)]):
        last = await rp_repo.grab("p1", who, at(i + 1))
    assert last.remaining_count == 0 and last.best_luck is None
    packet = await rp_repo.get_packet("p1")
    assert packet.status == "finished" and packet.best_luck is None


async def test_grab_unknown_and_expired(rp_repo):
    with pytest.raises(PacketNotFound):
        await rp_repo.grab("nope", B, at())
    await rp_repo.topup(A, 1000, at())
    await rp_repo.send(new(expires=10))
    with pytest.raises(PacketExpired):
        await rp_repo.grab("p1", B, at(10))
    assert (await rp_repo.audit()).ok


async def test_refund_exactly_once_after_expiry(rp_repo):
    await rp_repo.topup(A, 1000, at())
    await rp_repo.send(new(expires=10))
    await rp_repo.grab("p1", B, at(1))
    assert await rp_repo.due_refunds(at(5)) == []
    assert await rp_repo.refund("p1", at(5)) is None  # not yet
    assert await rp_repo.next_expiry() == at(10)
    assert await rp_repo.due_refunds(at(10)) == ["p1"]
    r = await rp_repo.refund("p1", at(10))
    assert (r.sender, r.amount, r.balance) == (A, 700, 700)
    assert await rp_repo.refund("p1", at(11)) is None
    assert await rp_repo.due_refunds(at(11)) == [] and await rp_repo.next_expiry() is None
    with pytest.raises(PacketExpired):
        await rp_repo.grab("p1", C, at(11))
    packet = await rp_repo.get_packet("p1")
    assert packet.refunded and packet.refund_amount == 700 and packet.status == "expired"
    report = await rp_repo.audit()
    assert report.ok and report.unclaimed == 0 and report.total_balances == 1000


async def test_forced_refund_before_expiry(rp_repo):
    await rp_repo.topup(A, 1000, at())
    await rp_repo.send(new())
    assert (await rp_repo.refund("p1", at(1), force=True)).amount == 1000
    with pytest.raises(PacketNotFound):
        await rp_repo.refund("zzz", at(1), force=True)
    assert (await rp_repo.audit()).ok


async def test_transfer_out_moves_the_whole_balance(rp_repo):
    await rp_repo.topup(A, 123, at())
    assert await rp_repo.transfer_out(A, SYSTEM_WALLET, "account deleted", at()) == 123
    assert await rp_repo.balance(A) == 0 and await rp_repo.balance(SYSTEM_WALLET) == 123
    assert await rp_repo.transfer_out(A, SYSTEM_WALLET, "again", at()) == 0
    report = await rp_repo.audit()
    assert report.ok and report.total_adjustments == 0


async def test_history_pages_and_records_totals(rp_repo):
    for i in range(5):
        await rp_repo.topup(A, 100 + i, at(i))
    page1, more = await rp_repo.history(A, limit=2)
    page2, more2 = await rp_repo.history(A, limit=2, before=page1[-1].id)
    page3, more3 = await rp_repo.history(A, limit=2, before=page2[-1].id)
    assert [e.amount for e in page1 + page2 + page3] == [104, 103, 102, 101, 100]
    assert (more, more2, more3) == (True, True, False)
    await rp_repo.send(new(shares=(100, 100)))
    await rp_repo.grab("p1", B, at(9))
    assert await rp_repo.totals(A, "send_debit") == (200, 1)
    assert await rp_repo.totals(B, "grab_credit") == (100, 1)
    sent, _ = await rp_repo.history(A, kinds=("send_debit",))
    assert [(e.kind, e.amount, e.packet_id) for e in sent] == [("send_debit", -200, "p1")]


async def test_database_refuses_a_negative_balance(sql_rp_repo):
    db = sql_rp_repo._db
    await sql_rp_repo.topup(A, 5, at())
    with pytest.raises(DBAPIError, match="balance_non_negative|CHECK constraint failed"):
        async with db.transaction() as conn:
            await conn.execute(wallets.update().where(wallets.c.owner == A).values(balance=-1))
    assert await sql_rp_repo.balance(A) == 5


async def test_audit_catches_money_created_outside_the_ledger(sql_rp_repo):
    await sql_rp_repo.topup(A, 5, at())
    async with sql_rp_repo._db.transaction() as conn:
        await conn.execute(wallets.update().where(wallets.c.owner == A).values(balance=6))
    report = await sql_rp_repo.audit()
    assert not report.ok and any("invariant" in p for p in report.problems)
    assert "audit FAILED" in str(report)


async def test_grab_storm_each_share_exactly_once(sql_rp_repo):
    """200 concurrent grabbers on a 100-share packet: 100 win one share each, the rest see all-gone."""
    rng = random.Random(9)
    shares = tuple(split.lucky(20000, 100, rng))
    await sql_rp_repo.topup(A, 20000, at())
    await sql_rp_repo.send(new(shares=shares))
    grabbers = [f"u{i}@example.com" for i in range(200)]

    async def one(who):
        try:
            return await sql_rp_repo.grab("p1", who, at(1))
        except AllGone:
            return None

    results = await asyncio.gather(*(one(w) for w in grabbers))
    won = [r for r in results if r is not None]
    assert len(won) == 100
    assert sorted(r.seq for r in won) == list(range(100))
    assert sum(r.amount for r in won) == 20000
    assert len({r.grabber for r in won}) == 100
    assert sum(1 for r in won if r.best_luck is not None) == 1
    report = await sql_rp_repo.audit()
    assert report.ok, str(report)
    assert report.total_balances == 20000 and report.unclaimed == 0


async def test_refund_racing_grabs_never_pays_twice(sql_rp_repo):
    await sql_rp_repo.topup(A, 5000, at())
    await sql_rp_repo.send(new(shares=tuple([50] * 100), expires=10))

    async def grab(i):
        try:
            return await sql_rp_repo.grab("p1", f"u{i}@example.com", at(9.999))
        except (AllGone, PacketExpired):
            return None

    async def refund():
        return await sql_rp_repo.refund("p1", at(10))

    tasks = [grab(i) for i in range(60)] + [refund(), refund(), refund()]
    random.Random(3).shuffle(tasks)
    results = await asyncio.gather(*tasks)
    refunds = [r for r in results if r is not None and hasattr(r, "sender")]
    assert len(refunds) == 1
    report = await sql_rp_repo.audit()
    assert report.ok, str(report)
    assert report.total_balances == 5000


async def test_audit_counts_match_on_sql(sql_rp_repo):
    await sql_rp_repo.topup(A, 300, at())
    await sql_rp_repo.send(new(shares=(100, 200)))
    await sql_rp_repo.grab("p1", B, at(1))
    report = await sql_rp_repo.audit()
    assert (report.wallets, report.packets, report.total_topups, report.unclaimed) == (2, 1, 300, 200)
    async with sql_rp_repo._db.transaction() as conn:
        n = (await conn.execute(sa.text("SELECT COUNT(*) FROM redpacket_ledger"))).scalar_one()
    assert n == 3
    assert isinstance(sql_rp_repo, SqlRedPacketRepository)


class _Statements:
    """Statements and transaction ends the repository sends to the database."""

    def __init__(self, repo: SqlRedPacketRepository) -> None:
        self.texts: list[str] = []
        engine = repo._db.engine.sync_engine
        self._sqlite = repo._db.is_sqlite
        if self._sqlite:  # SQLite's trace also sees statements run on the driver's thread directly
            sa.event.listen(engine, "checkout", self._checkout)
        else:
            sa.event.listen(engine, "before_cursor_execute", self._stmt)
        sa.event.listen(engine, "commit", self._commit)
        sa.event.listen(engine, "rollback", self._rollback)
        self._engine = engine

    def _checkout(self, dbapi_connection, *args) -> None:
        def trace(sql: str) -> None:
            if self._engine is not None and sql not in ("COMMIT", "ROLLBACK") and not sql.startswith("PRAGMA"):
                self.texts.append(" ".join(sql.split()))

        dbapi_connection.driver_connection._conn.set_trace_callback(trace)

    def _stmt(self, conn, cursor, statement, *args) -> None:
        self.texts.append(" ".join(statement.split()))

    def _commit(self, conn) -> None:
        self.texts.append("COMMIT")

    def _rollback(self, conn) -> None:
        self.texts.append("ROLLBACK")

    def close(self) -> None:
        if self._sqlite:
            sa.event.remove(self._engine, "checkout", self._checkout)
        else:
            sa.event.remove(self._engine, "before_cursor_execute", self._stmt)
        sa.event.remove(self._engine, "commit", self._commit)
        sa.event.remove(self._engine, "rollback", self._rollback)
        self._engine = None  # traces left on pooled connections stop recording


async def test_first_grab_creates_the_wallet_in_the_grab_transaction(sql_rp_repo):
    await sql_rp_repo.topup(A, 1000, at())
    await sql_rp_repo.send(new())
    seen = _Statements(sql_rp_repo)
    try:
        got = await sql_rp_repo.grab("p1", B, at(1))
    finally:
        seen.close()
    assert (got.amount, got.balance) == (300, 300)
    assert seen.texts.count("COMMIT") == 1 and "ROLLBACK" not in seen.texts, seen.texts
    # claim, count, credit (upsert), ledger; MariaDB also locks the packet row and reads the share
    statements = [t for t in seen.texts if t not in ("COMMIT", "BEGIN IMMEDIATE")]
    assert 4 <= len(statements) <= 6, seen.texts
    entries, _ = await sql_rp_repo.history(B)
    assert [(e.kind, e.amount, e.balance_after) for e in entries] == [("grab_credit", 300, 300)]
    assert (await sql_rp_repo.audit()).ok


async def test_opens_of_a_finished_packet_only_read(sql_rp_repo):
    await sql_rp_repo.topup(A, 1000, at())
    await sql_rp_repo.send(new(shares=(400, 600)))
    await sql_rp_repo.grab("p1", B, at(1))
    last = await sql_rp_repo.grab("p1", C, at(2))
    assert last.remaining_count == 0 and last.best_luck.grabbed_by == C
    seen = _Statements(sql_rp_repo)
    try:
        with pytest.raises(AllGone):
            await sql_rp_repo.grab("p1", "dave@example.com", at(3))
        with pytest.raises(AlreadyGrabbed) as info:
            await sql_rp_repo.grab("p1", B, at(4))
    finally:
        seen.close()
    assert info.value.amount == 400 and info.value.grabbed_at == at(1)
    writes = [t for t in seen.texts if t.startswith(("UPDATE", "INSERT", "BEGIN IMMEDIATE")) or "FOR UPDATE" in t]
    assert writes == [], seen.texts
    assert (await sql_rp_repo.audit()).ok


async def test_a_grab_after_expiry_leaves_no_claim_behind(sql_rp_repo):
    await sql_rp_repo.topup(A, 1000, at())
    await sql_rp_repo.send(new(expires=10))
    with pytest.raises(PacketExpired):
        await sql_rp_repo.grab("p1", B, at(10))
    assert all(s.grabbed_by is None for s in await sql_rp_repo.shares("p1"))
    assert await sql_rp_repo.balance(B) == 0
    report = await sql_rp_repo.audit()
    assert report.ok and report.unclaimed == 1000


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_grab_on_the_driver_thread_matches_the_portable_grab(request, backend):
    """The one-hand-off SQLite grab (the storage fast path) and the portable grab it falls back
    to without a driver thread give the same results and refusals on SQLite."""
    from xmppd_extensions.redpacket import models as rp

    from .conftest import redpacket_database

    async with redpacket_database(request, backend) as database:
        repo = SqlRedPacketRepository(database)
        await repo.topup(A, 4000, at())
        outcomes: dict[str, list[object]] = {}
        for pid, txn in (("fast", repo._grab_sqlite_txn), ("slow", repo._grab_locking_txn)):
            await repo.send(new(pid, shares=(300, 500, 200), expires=100))
            seen = []
            for name, when in (("b", 1), ("c", 2), ("b", 3), ("e", 4), ("f", 5)):
                who = f"{name}.{pid}@example.com"  # fresh wallets per packet: equal balances
                try:
                    g = await database.run_txn(txn, pid, who, at(when))
                    best = (g.best_luck.grabbed_by.split(".")[0], g.best_luck.amount, g.best_luck.grabbed_at) if g.best_luck else None
                    seen.append((g.amount, g.seq, g.balance, g.remaining_count, g.remaining_amount, best))
                except rp.RedPacketError as exc:
                    seen.append((type(exc).__name__, getattr(exc, "amount", None), getattr(exc, "grabbed_at", None)))
            outcomes[pid] = seen
        assert outcomes["fast"] == outcomes["slow"]
        assert outcomes["fast"][2] == ("AlreadyGrabbed", 300, at(1))
        assert outcomes["fast"][0] == (300, 0, 300, 2, 700, None)
        assert outcomes["fast"][3] == (200, 2, 200, 0, 0, ("c", 500, at(2))) and outcomes["fast"][4][0] == "AllGone"
        await repo.send(new("late", expires=10))
        for txn in (repo._grab_sqlite_txn, repo._grab_locking_txn):
            with pytest.raises(PacketExpired):
                await database.run_txn(txn, "late", B, at(10))
            with pytest.raises(PacketNotFound):
                await database.run_txn(txn, "nope", B, at(1))
        report = await repo.audit()
        assert report.ok, str(report)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_both_sqlite_grab_paths_store_no_best_luck_for_equal_packets(request, backend):
    """The driver-thread grab and the statement grab agree: an equal packet has no best luck."""
    from .conftest import redpacket_database

    async with redpacket_database(request, backend) as database:
        repo = SqlRedPacketRepository(database)
        await repo.topup(A, 4000, at())
        for pid, txn in (("fast", repo._grab_sqlite_txn), ("slow", repo._grab_locking_txn)):
            await repo.send(new(pid, kind="equal", shares=(300, 300), expires=100))
            await database.run_txn(txn, pid, f"b.{pid}@example.com", at(1))
            last = await database.run_txn(txn, pid, f"c.{pid}@example.com", at(2))
            assert last.remaining_count == 0 and last.best_luck is None
            assert (await repo.get_packet(pid)).best_luck is None


async def test_move_once_applies_a_key_once_and_refuses_it_for_another_move(rp_repo) -> None:
    from xmppd_extensions.redpacket.models import IdempotencyConflict, InsufficientFunds

    entry, replayed = await rp_repo.move_once("k1", "a@x", "topup", 100, None, at())
    assert not replayed and entry.balance_after == 100
    again, replayed = await rp_repo.move_once("k1", "a@x", "topup", 100, None, at(1))
    assert replayed and again == entry
    assert await rp_repo.balance("a@x") == 100
    with pytest.raises(IdempotencyConflict):
        await rp_repo.move_once("k1", "a@x", "topup", 99, None, at())
    with pytest.raises(IdempotencyConflict):
        await rp_repo.move_once("k1", "b@x", "topup", 100, None, at())
    with pytest.raises(InsufficientFunds):
        await rp_repo.move_once("k2", "a@x", "adjust", -101, "withdraw", at())
    out, replayed = await rp_repo.move_once("k2", "a@x", "adjust", -40, "withdraw", at())
    assert not replayed and out.balance_after == 60
    with pytest.raises(ValueError):
        await rp_repo.move_once("k3", "a@x", "adjust", -1, None, at())
    assert (await rp_repo.audit()).ok
