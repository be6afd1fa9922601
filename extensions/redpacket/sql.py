"""Red packets: the SQL repository (SQLite and MariaDB/MySQL) and account settlement.

Money is integer minor units (fen for CNY). Its rules are the database's, not the process's:

* A wallet's balance changes only together with one ``redpacket_ledger`` row in the same
  transaction (kinds ``topup``, ``send_debit``, ``grab_credit``, ``refund``, ``adjust``), and a
  ``CHECK (balance >= 0)`` makes an overdraft impossible even for a buggy caller.
* Sending debits the sender, writes the packet and its precomputed shares, all in one
  transaction. ``UNIQUE (sender, client_id)`` makes a retried send return the first packet
  instead of debiting twice.
* Grabbing is one transaction around the one grab rule (:func:`.policy.claim`: which share,
  whether finished, best luck; the refusals). On SQLite (``BEGIN IMMEDIATE``: one writer) it
  runs in one call on the driver's thread (the storage fast path); on MariaDB the packet row is
  read under its lock (``SELECT ... FOR UPDATE``). Both read the packet's counters and shares,
  ask the rule, and write the claimed share (rowcount checked), the counters, the credit (an
  upsert that creates a missing wallet) and the ledger row. ``UNIQUE (packet_id, grabbed_by)``
  makes a second share for the same person impossible; a refusal rolls everything back.
  Packets seen with every share gone are remembered: opening them again is a read.
* A refund is ``UPDATE ... SET refunded=1 WHERE id=? AND refunded=0`` (rowcount checked) plus
  the credit, in one transaction, so it happens exactly once even with several server
  processes sweeping the same database.

The invariant :meth:`RedPacketRepository.audit` checks::

    sum(balances) + sum(unclaimed shares of unrefunded packets) == sum(topups) + sum(adjustments)

Accounts and wallets: wallets are keyed by the owner's bare JID and have no foreign key to
``accounts``, so deleting an account can never make money vanish behind an ``ON DELETE
CASCADE``. Deleting an account runs :func:`delete_account_txn` inside the transaction that
deletes the account row, so that nothing of it can reach whoever registers the name next:
every open packet addressed to it (one-to-one, or exclusive in a room) is refunded to its
sender; every open packet it sent is refunded to it; its balance then goes to the system
wallet (:data:`SYSTEM_WALLET`) with two ``adjust`` entries; and its wallet, ledger and sent
packets are re-keyed to :func:`tombstone` (``deleted:<account id>``), so a new account with
the same name starts at zero with an empty history and fresh client ids. Refunds and
``adjust`` pairs keep ``balances + unclaimed`` unchanged, so the audit holds throughout.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.storage.accounts import accounts
from xmppd.storage.engine import Database, is_deadlock, is_unique_violation
from xmppd.timestamps import millis
from xmppd.webhooks import events as E
from xmppd.webhooks.outbox import DISABLED, Outbox

from .models import (
    DECLINED,
    EXPIRED,
    OPEN,
    SYSTEM_WALLET,
    AllGone,
    AuditReport,
    ClientIdReused,
    GrabResult,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerEntry,
    NewPacket,
    Packet,
    PacketNotFound,
    RecipientGone,
    RedPacketError,
    RedPacketRepository,
    RefundResult,
    SendResult,
    Share,
)
from .policy import GrabState, audit_report, check_move, check_new, claim, daily_refusal, grab_refusal, positive_units
from .tables import idempotency, ledger, packets, shares, transfers, wallets

_MAX_DEADLOCK_RETRIES: Final = 30
_FINISHED_MEMORY: Final = 10000  # finished packet ids remembered (forgotten all at once past this)

# -- SQL ------------------------------------------------------------------------------------


class _LostRace(Exception):
    """A grab found its share taken after all (possible only without serialisation): rerun it."""


def _is_sqlite_busy(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlite_errorname", None) in ("SQLITE_BUSY", "SQLITE_LOCKED")


# -- SQLite: a whole grab in one call on the driver's thread --------------------------------

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's DateTime stores a value in SQLite


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).strftime(_SQLITE_TIME)


def _from_sqlite_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


_SQL_STATE: Final = (
    "SELECT remaining_count, remaining_amount, refunded, expires_at, kind, count FROM redpacket_packets WHERE id = ?"
)
_SQL_SHARES: Final = "SELECT seq, amount, grabbed_by, grabbed_at FROM redpacket_shares WHERE packet_id = ? ORDER BY seq"
_SQL_CLAIM: Final = (
    "UPDATE redpacket_shares SET grabbed_by = ?, grabbed_at = ? WHERE packet_id = ? AND seq = ? AND grabbed_by IS NULL"
)
_SQL_COUNT: Final = (
    "UPDATE redpacket_packets SET remaining_count = ?, remaining_amount = ?, status = ?, finished_at = ?, best_luck = ? "
    "WHERE id = ?"
)
_SQL_CREDIT: Final = (
    "INSERT INTO redpacket_wallets (owner, balance, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (owner) DO UPDATE SET balance = balance + excluded.balance, updated_at = excluded.updated_at "
    "RETURNING balance"
)
_SQL_LEDGER: Final = (
    "INSERT INTO redpacket_ledger (owner, kind, amount, balance_after, packet_id, reason, created_at) "
    "VALUES (?, 'grab_credit', ?, ?, ?, NULL, ?)"
)


def _first(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> tuple[Any, ...] | None:
    """The first row of ``sql``, the statement run to its end (RETURNING included)."""
    rows = db.execute(sql, params).fetchall()
    return rows[0] if rows else None


class _ShareRow(NamedTuple):
    """A share as SQLite stores it (``grabbed_at`` as text: converted only where it is read, by
    :func:`_stored_share`), for the rule; far cheaper to make than a :class:`Share` per row."""

    seq: int
    amount: int
    grabbed_by: str | None
    grabbed_at: Any


def _stored_share(s: Any) -> Share:
    at = s.grabbed_at
    return Share(s.seq, s.amount, s.grabbed_by, _from_sqlite_time(at) if isinstance(at, str) else at)


def _sqlite_read(db: sqlite3.Connection, packet_id: str, grabber: str) -> tuple[GrabState | None, list[_ShareRow]]:
    """What the grab rule reads (:func:`.policy.claim`): the packet's counters and its shares
    (the grabber's own with its time, for the refusal)."""
    row = _first(db, _SQL_STATE, (packet_id,))
    if row is None:
        return None, []
    state = GrabState(int(row[0]), int(row[1]), bool(row[2]), _from_sqlite_time(row[3]), row[4], int(row[5]))
    rows = list(map(_ShareRow._make, db.execute(_SQL_SHARES, (packet_id,)).fetchall()))
    for i, r in enumerate(rows):
        if r.grabbed_by == grabber:
            rows[i] = r._replace(grabbed_at=_from_sqlite_time(r.grabbed_at))
    return state, rows


def _sqlite_refusal(db: sqlite3.Connection, packet_id: str, grabber: str, now: datetime) -> Exception:
    state, shares_ = _sqlite_read(db, packet_id, grabber)
    own = next((s for s in shares_ if s.grabbed_by == grabber), None)
    return grab_refusal(packet_id, state, _stored_share(own) if own else None, now) or AllGone(packet_id)


def _sqlite_grab(db: sqlite3.Connection, packet_id: str, grabber: str, now: datetime, outbox: Outbox = DISABLED) -> GrabResult:
    """The grab on SQLite, run on the connection's own thread inside the caller's ``BEGIN
    IMMEDIATE`` transaction (so nothing else writes meanwhile): read the packet and its shares,
    ask the rule (:func:`.policy.claim`), write the claim, the counters, the credit and the
    ledger row, in one hand-off instead of about fifteen. Raising (a refusal, or any database
    error) makes the caller roll the transaction back."""
    state, shares_ = _sqlite_read(db, packet_id, grabber)
    c = claim(packet_id, state, shares_, grabber, now)  # type: ignore[arg-type]  # rows stand for shares
    at = _sqlite_time(now)
    if db.execute(_SQL_CLAIM, (grabber, at, packet_id, c.seq)).rowcount != 1:
        raise _LostRace()  # impossible under SQLite's one writer; rerun rather than guess
    finished = _sqlite_time(c.finished_at) if c.finished_at is not None else None
    db.execute(_SQL_COUNT, (c.remaining_count, c.remaining_amount, c.status, finished, c.best_luck, packet_id))
    credited = _first(db, _SQL_CREDIT, (grabber, c.amount, at))
    assert credited is not None
    balance = int(credited[0])
    db.execute(_SQL_LEDGER, (grabber, c.amount, balance, packet_id, at))
    best = _stored_share(c.best) if c.best is not None else None
    result = GrabResult(packet_id, grabber, c.amount, c.seq, now, balance, c.remaining_count, c.remaining_amount, best)
    for event, data in grab_events(result):
        outbox.write_sqlite(db, event, f"redpacket:{packet_id}", data, now)
    return result


def grab_events(r: GrabResult) -> list[tuple[str, dict[str, Any]]]:
    """The webhook events of one grab: ``redpacket.grabbed``, and ``redpacket.finished`` when it
    took the last share (docs/webhooks.md)."""
    out: list[tuple[str, dict[str, Any]]] = [(E.REDPACKET_GRABBED, {
        "id": r.packet_id, "grabber": r.grabber, "amount": r.amount, "seq": r.seq, "balance": r.balance,
        "remaining_count": r.remaining_count, "remaining_amount": r.remaining_amount,
    })]
    if r.remaining_count == 0:
        out.append((E.REDPACKET_FINISHED, {
            "id": r.packet_id, "best_luck": r.best_luck.grabbed_by if r.best_luck else None,
            "best_amount": r.best_luck.amount if r.best_luck else None,
        }))
    return out


def _refund_data(r: RefundResult, reason: str | None = None) -> dict[str, Any]:
    return {"id": r.packet_id, "sender": r.sender, "amount": r.amount, "balance": r.balance, "reason": reason}


def _packet(m: sa.RowMapping) -> Packet:
    c = packets.c
    return Packet(
        m[c.id], m[c.sender], m[c.kind], int(m[c.total]), int(m[c.count]), m[c.greeting], m[c.target],
        bool(m[c.is_room]), m[c.exclusive_to], m[c.client_id], m[c.lang], m[c.created_at], m[c.expires_at],
        m[c.status], int(m[c.remaining_count]), int(m[c.remaining_amount]), bool(m[c.refunded]),
        int(m[c.refund_amount]), m[c.finished_at], m[c.best_luck], bool(m.get("transfer")),
    )


def _packets_query() -> sa.Select[Any]:
    """Packets with their transfer mark (read through :func:`_packet`)."""
    return sa.select(packets, transfers.c.packet_id.is_not(None).label("transfer")).select_from(
        packets.outerjoin(transfers, transfers.c.packet_id == packets.c.id))


def _entry(m: sa.RowMapping) -> LedgerEntry:
    c = ledger.c
    return LedgerEntry(
        int(m[c.id]), m[c.owner], m[c.kind], int(m[c.amount]), int(m[c.balance_after]), m[c.packet_id],
        m[c.reason], m[c.created_at],
    )


class SqlRedPacketRepository(RedPacketRepository):
    """The repository on SQLite or MariaDB/MySQL; every money movement is one transaction."""

    def __init__(self, db: Database, outbox: Outbox = DISABLED) -> None:
        self._db = db
        self._outbox = outbox  # redpacket.* and wallet.* events (docs/webhooks.md)
        # Packets seen with every share gone (final): their opens are answered by a read.
        self._finished: set[str] = set()

    # -- the one way a balance changes

    @staticmethod
    async def _apply_txn(
        conn: AsyncConnection, owner: str, kind: str, amount: int, now: datetime,
        packet_id: str | None = None, reason: str | None = None,
    ) -> LedgerEntry:
        """Move ``amount`` (signed) on ``owner``'s wallet and append the ledger entry.

        A credit creates a missing wallet in the same statement (an upsert), so no transaction
        ever fails on a first credit; a debit needs the wallet and the money
        (``WHERE balance >= amount``, and the ``CHECK`` behind it).
        """
        w = wallets.c
        dialect = conn.dialect
        if amount > 0:
            if dialect.name == "sqlite":
                ins = sqlite_insert(wallets).values(owner=owner, balance=amount, updated_at=now)
                upsert = ins.on_conflict_do_update(
                    index_elements=[w.owner],
                    set_={"balance": w.balance + ins.excluded.balance, "updated_at": ins.excluded.updated_at},
                )
            else:
                mins = mysql_insert(wallets).values(owner=owner, balance=amount, updated_at=now)
                upsert = mins.on_duplicate_key_update(
                    balance=w.balance + mins.inserted.balance, updated_at=mins.inserted.updated_at
                )
            if dialect.insert_returning:
                balance = int((await conn.execute(upsert.returning(w.balance))).scalar_one())
            else:  # MySQL 8: no RETURNING
                await conn.execute(upsert)
                balance = int((await conn.execute(sa.select(w.balance).where(w.owner == owner))).scalar_one())
        else:
            debit = wallets.update().where(w.owner == owner, w.balance >= -amount).values(
                balance=w.balance + amount, updated_at=now
            )
            if dialect.update_returning:
                got = (await conn.execute(debit.returning(w.balance))).scalar_one_or_none()
            else:
                got = None if (await conn.execute(debit)).rowcount == 0 else (
                    await conn.execute(sa.select(w.balance).where(w.owner == owner))
                ).scalar_one()
            if got is None:
                have = (await conn.execute(sa.select(w.balance).where(w.owner == owner))).scalar_one_or_none()
                raise InsufficientFunds(owner, int(have or 0), -amount)
            balance = int(got)
        inserted = await conn.execute(
            ledger.insert().values(
                owner=owner, kind=kind, amount=amount, balance_after=balance, packet_id=packet_id,
                reason=reason, created_at=now,
            )
        )
        assert inserted.inserted_primary_key is not None
        return LedgerEntry(int(inserted.inserted_primary_key[0]), owner, kind, amount, balance, packet_id, reason, now)

    async def _with_wallets(self, func, *args):  # type: ignore[no-untyped-def]
        """Run ``func`` in a write transaction, rerun whole when the database asks for it.

        A deadlock victim (or an SQLite writer that waited longer than ``busy_timeout`` under
        load) is rolled back whole and rerun: ``func`` only touches the database.
        """
        deadlocks = 0
        while True:
            try:
                return await self._db.run_txn(func, *args)
            except DBAPIError as exc:
                deadlocks += 1
                if not (is_deadlock(exc) or _is_sqlite_busy(exc)) or deadlocks > _MAX_DEADLOCK_RETRIES:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.005 * deadlocks))

    # -- wallets

    async def balance(self, owner: str) -> int:
        async with self._db.transaction(readonly=True) as conn:
            value = (await conn.execute(sa.select(wallets.c.balance).where(wallets.c.owner == owner))).scalar_one_or_none()
        return int(value or 0)

    async def topup(self, owner: str, amount: int, now: datetime, reason: str | None = None) -> LedgerEntry:
        positive_units(amount)
        return await self._with_wallets(self._wallet_txn, owner, "topup", amount, now, reason)  # type: ignore[no-any-return]

    async def _wallet_txn(
        self, conn: AsyncConnection, owner: str, kind: str, amount: int, now: datetime, reason: str | None
    ) -> LedgerEntry:
        """A top-up or an adjustment, and its ``wallet.*`` event, in one transaction."""
        entry = await self._apply_txn(conn, owner, kind, amount, now, None, reason)
        await self._wallet_event_txn(conn, entry)
        return entry

    async def _wallet_event_txn(self, conn: AsyncConnection, entry: LedgerEntry) -> None:
        """``wallet.topup`` / ``wallet.adjusted`` for a ledger entry, in its transaction."""
        await self._outbox.write_txn(conn, E.WALLET_TOPUP if entry.kind == "topup" else E.WALLET_ADJUSTED, f"wallet:{entry.owner}", {
            "owner": entry.owner, "amount": entry.amount, "balance": entry.balance_after, "entry": entry.id,
            "reason": entry.reason,
        }, entry.created_at)

    async def adjust(self, owner: str, amount: int, reason: str, now: datetime) -> LedgerEntry:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise ValueError("an adjustment is a non-zero integer of minor units")
        if not reason:
            raise ValueError("an adjustment needs a reason")
        return await self._with_wallets(self._wallet_txn, owner, "adjust", amount, now, reason)  # type: ignore[no-any-return]

    async def transfer_out(self, owner: str, to: str, reason: str, now: datetime) -> int:
        return await self._db.run_txn(self._transfer_out_txn, owner, to, reason, now)

    async def move_once(
        self, key: str, owner: str, kind: str, amount: int, reason: str | None, now: datetime
    ) -> tuple[LedgerEntry, bool]:
        check_move(key, kind, amount, reason)
        for _attempt in range(3):
            try:
                return await self._with_wallets(self._move_once_txn, key, owner, kind, amount, reason, now)  # type: ignore[no-any-return]
            except IntegrityError:
                # The same key committed by a concurrent request between our look-up and our
                # insert: the next attempt finds it (and answers the replay or the conflict).
                continue
        raise IdempotencyConflict(key)

    async def _move_once_txn(
        self, conn: AsyncConnection, key: str, owner: str, kind: str, amount: int, reason: str | None, now: datetime
    ) -> tuple[LedgerEntry, bool]:
        i = idempotency.c
        seen = (await conn.execute(sa.select(i.owner, i.kind, i.amount, i.ledger_id).where(i.key == key))).first()
        if seen is not None:
            if (seen.owner, seen.kind, int(seen.amount)) != (owner, kind, amount):
                raise IdempotencyConflict(key)
            row = (await conn.execute(sa.select(ledger).where(ledger.c.id == seen.ledger_id))).mappings().one()
            return _entry(row), True
        entry = await SqlRedPacketRepository._apply_txn(conn, owner, kind, amount, now, None, reason)
        await conn.execute(idempotency.insert().values(key=key, owner=owner, kind=kind, amount=amount, ledger_id=entry.id, created_at=now))
        await self._wallet_event_txn(conn, entry)
        return entry, False

    async def packets(self, sender: str | None = None, *, limit: int = 50, offset: int = 0) -> builtins.list[Packet]:
        query = _packets_query()
        if sender is not None:
            query = query.where(packets.c.sender == sender)
        query = query.order_by(packets.c.created_at.desc(), packets.c.id.desc()).limit(limit).offset(offset)
        async with self._db.transaction(readonly=True) as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_packet(r) for r in rows]

    @staticmethod
    async def _transfer_out_txn(conn: AsyncConnection, owner: str, to: str, reason: str, now: datetime) -> int:
        w = wallets.c
        amount = (
            await conn.execute(sa.select(w.balance).where(w.owner == owner).with_for_update())
        ).scalar_one_or_none()
        if not amount:
            return 0
        await SqlRedPacketRepository._apply_txn(conn, owner, "adjust", -int(amount), now, None, reason)
        await SqlRedPacketRepository._apply_txn(conn, to, "adjust", int(amount), now, None, reason)
        return int(amount)

    # -- packets

    async def send(self, new: NewPacket) -> SendResult:
        check_new(new)
        try:
            return await self._with_wallets(self._send_txn, new)  # type: ignore[no-any-return]
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
        # A concurrent retry with the same client id won: answer with its packet.
        return await self._with_wallets(self._send_txn, new)  # type: ignore[no-any-return]

    async def _send_txn(self, conn: AsyncConnection, new: NewPacket) -> SendResult:
        p = packets.c
        row = (
            await conn.execute(_packets_query().where(p.sender == new.sender, p.client_id == new.client_id))
        ).mappings().first()
        if row is not None:
            packet = _packet(row)
            if not packet.same_request(new):
                raise ClientIdReused(new.client_id)
            balance = (await conn.execute(sa.select(wallets.c.balance).where(wallets.c.owner == new.sender))).scalar_one_or_none()
            return SendResult(packet, False, int(balance or 0))
        # Insert the packet first (the ledger row references it); the debit below fails the
        # whole transaction when the sender cannot pay.
        values = dict(
            id=new.id, sender=new.sender, kind=new.kind, total=new.total, count=new.count, greeting=new.greeting,
            target=new.target, is_room=new.is_room, exclusive_to=new.exclusive_to, client_id=new.client_id,
            lang=new.lang, created_at=new.created_at, expires_at=new.expires_at, status=OPEN,
            remaining_count=new.count, remaining_amount=new.total, refunded=False, refund_amount=0,
            finished_at=None, best_luck=None,
        )
        w = wallets.c
        if new.recipient is not None:
            username, _, domain = new.recipient.partition("@")
            a = accounts.c
            alive = (
                await conn.execute(
                    sa.select(a.id).where(a.domain == domain, a.username == username).with_for_update(read=True)
                )
            ).first()
            if alive is None:
                raise RecipientGone(new.recipient)
        debit = await conn.execute(
            wallets.update()
            .where(w.owner == new.sender, w.balance >= new.total)
            .values(balance=w.balance - new.total, updated_at=new.created_at)
        )
        if debit.rowcount == 0:
            have = (await conn.execute(sa.select(w.balance).where(w.owner == new.sender))).scalar_one_or_none()
            raise InsufficientFunds(new.sender, int(have or 0), new.total)
        if new.day_start is not None:
            # After the debit: the sender's wallet row is locked (SQLite: the one writer), so a
            # concurrent send of the same sender waits and then counts this one. A locking read
            # sees what committed meanwhile (not the transaction's first snapshot).
            lg = ledger.c
            sent = (await conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(-lg.amount), 0))
                .where(lg.owner == new.sender, lg.kind == "send_debit", lg.created_at >= new.day_start)
                .with_for_update(read=True)
            )).one()
            refused = daily_refusal(new, int(sent[0]), int(sent[1]))
            if refused is not None:
                raise refused  # the whole transaction (the debit too) rolls back
        await conn.execute(packets.insert().values(**values))
        if new.transfer:
            await conn.execute(transfers.insert().values(packet_id=new.id))
        await conn.execute(
            shares.insert(),
            [{"packet_id": new.id, "seq": i, "amount": a, "grabbed_by": None, "grabbed_at": None} for i, a in enumerate(new.shares)],
        )
        balance = int((await conn.execute(sa.select(w.balance).where(w.owner == new.sender))).scalar_one())
        await conn.execute(
            ledger.insert().values(
                owner=new.sender, kind="send_debit", amount=-new.total, balance_after=balance, packet_id=new.id,
                reason=None, created_at=new.created_at,
            )
        )
        packet = Packet(
            new.id, new.sender, new.kind, new.total, new.count, new.greeting, new.target, new.is_room,
            new.exclusive_to, new.client_id, new.lang, new.created_at, new.expires_at, OPEN,
            new.count, new.total, False, 0, None, None, new.transfer,
        )
        await self._outbox.write_txn(conn, E.REDPACKET_SENT, f"redpacket:{new.id}", {
            "id": new.id, "sender": new.sender, "kind": new.kind, "total": new.total, "count": new.count,
            "target": new.target, "is_room": new.is_room, "exclusive_to": new.exclusive_to,
            "greeting": new.greeting, "expires_at": millis(new.expires_at), "balance": balance,
        }, new.created_at)
        return SendResult(packet, True, balance)

    async def grab(self, packet_id: str, grabber: str, now: datetime) -> GrabResult:
        if packet_id in self._finished:
            # Every share went (final: nothing gives a share back): answer from a read, without
            # queueing for the write lock; "already grabbed" still comes first.
            async with self._db.transaction(readonly=True) as conn:
                refusal = None
                if self._db.is_sqlite:  # the storage fast path: one call on the driver's thread
                    refusal = await self._db.fastpath.in_transaction(conn, lambda raw: _sqlite_refusal(raw, packet_id, grabber, now))
                if refusal is None:
                    refusal = await self._refusal(conn, packet_id, grabber, now) or AllGone(packet_id)
                raise refusal
        txn = self._grab_sqlite_txn if self._db.is_sqlite else self._grab_locking_txn
        for _ in range(_MAX_DEADLOCK_RETRIES):
            try:
                result: GrabResult = await self._with_wallets(txn, packet_id, grabber, now)
            except AllGone:
                self._remember_finished(packet_id)
                raise
            except _LostRace:  # the share looked free and was not (only without serialisation)
                continue
            if result.remaining_count == 0:
                self._remember_finished(packet_id)
            return result
        raise RuntimeError(f"grabbing from {packet_id} kept losing races")

    def _remember_finished(self, packet_id: str) -> None:
        if len(self._finished) >= _FINISHED_MEMORY:
            self._finished.clear()
        self._finished.add(packet_id)

    @staticmethod
    async def _grab_read_txn(
        conn: AsyncConnection, packet_id: str, *, lock: bool
    ) -> tuple[GrabState | None, builtins.list[Share]]:
        """What the grab rule reads (:func:`.policy.claim`): the packet's counters (``lock``: under
        its row lock, which orders the grabs and refunds of one packet) and its shares."""
        p, s = packets.c, shares.c
        query = sa.select(p.remaining_count, p.remaining_amount, p.refunded, p.expires_at, p.kind, p.count).where(
            p.id == packet_id)
        row = (await conn.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            return None, []
        state = GrabState(int(row.remaining_count), int(row.remaining_amount), bool(row.refunded), row.expires_at,
                          row.kind, int(row.count))
        rows = (await conn.execute(
            sa.select(s.seq, s.amount, s.grabbed_by, s.grabbed_at).where(s.packet_id == packet_id).order_by(s.seq)
        )).all()
        return state, [Share(int(r.seq), int(r.amount), r.grabbed_by, r.grabbed_at) for r in rows]

    async def _refusal(self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime) -> RedPacketError | None:
        """Why ``grabber`` cannot have a share of ``packet_id``, or None if they can."""
        state, shares_ = await self._grab_read_txn(conn, packet_id, lock=False)
        return grab_refusal(packet_id, state, next((s for s in shares_ if s.grabbed_by == grabber), None), now)

    async def _grab_sqlite_txn(self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime) -> GrabResult:
        """SQLite: :func:`_sqlite_grab`'s statements in one call on the driver's thread through
        the storage fast path (``db.fastpath.in_transaction``, xmppd/storage/fastpath.py): one
        hand-off instead of about fifteen, so the write lock is held that much shorter. Without
        a driver thread, the portable transaction (SQLite serialises writers: BEGIN IMMEDIATE,
        so its row lock is not needed, and it is correct as it is)."""
        outbox = self._outbox
        outbox.mark(conn)
        result = await self._db.fastpath.in_transaction(conn, lambda raw: _sqlite_grab(raw, packet_id, grabber, now, outbox))
        if result is None:
            return await self._grab_locking_txn(conn, packet_id, grabber, now)
        return result

    async def _grab_locking_txn(
        self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime
    ) -> GrabResult:
        """The portable grab (MariaDB/MySQL, which have no UPDATE ... RETURNING; SQLite without a
        driver thread): lock the packet row and read its shares, ask the rule
        (:func:`.policy.claim`), write the claim (rowcount checked), the counters, the credit."""
        state, shares_ = await self._grab_read_txn(conn, packet_id, lock=True)
        c = claim(packet_id, state, shares_, grabber, now)
        s, p = shares.c, packets.c
        try:
            claimed = await conn.execute(
                shares.update()
                .where(s.packet_id == packet_id, s.seq == c.seq, s.grabbed_by.is_(None))
                .values(grabbed_by=grabber, grabbed_at=now)
            )
        except IntegrityError as exc:  # UNIQUE (packet_id, grabbed_by): explained by the refusal
            if not is_unique_violation(exc):
                raise
            raise await self._refusal(conn, packet_id, grabber, now) or _LostRace() from None
        if claimed.rowcount != 1:
            raise _LostRace()  # the share went meanwhile (only without the row lock): rerun
        await conn.execute(
            packets.update().where(p.id == packet_id).values(
                remaining_count=c.remaining_count, remaining_amount=c.remaining_amount, status=c.status,
                finished_at=c.finished_at, best_luck=c.best_luck,
            )
        )
        entry = await self._apply_txn(conn, grabber, "grab_credit", c.amount, now, packet_id)
        result = GrabResult(packet_id, grabber, c.amount, c.seq, now, entry.balance_after, c.remaining_count,
                            c.remaining_amount, c.best)
        for event, data in grab_events(result):
            await self._outbox.write_txn(conn, event, f"redpacket:{packet_id}", data, now)
        return result

    async def refund(
        self, packet_id: str, now: datetime, *, force: bool = False, declined: bool = False
    ) -> RefundResult | None:
        return await self._with_wallets(self._refund_txn, packet_id, now, force or declined, declined)  # type: ignore[no-any-return]

    async def _refund_txn(
        self, conn: AsyncConnection, packet_id: str, now: datetime, force: bool, declined: bool = False
    ) -> RefundResult | None:
        p = packets.c
        # Lock the packet row by primary key first, like a grab does: one lock order.
        locked = (await conn.execute(sa.select(p.id).where(p.id == packet_id).with_for_update())).first()
        if locked is None:
            raise PacketNotFound(packet_id)
        where = [p.id == packet_id, p.refunded == sa.false(), p.remaining_count > 0]
        if not force:
            where.append(p.expires_at <= now)
        marked = await conn.execute(
            packets.update().where(*where).values(
                refunded=True, status=DECLINED if declined else EXPIRED, refund_amount=p.remaining_amount
            )
        )
        if marked.rowcount == 0:
            return None
        row = (await conn.execute(sa.select(p.sender, p.refund_amount).where(p.id == packet_id))).one()
        amount = int(row.refund_amount)
        entry = await self._apply_txn(conn, row.sender, "refund", amount, now, packet_id, "declined" if declined else None)
        result = RefundResult(packet_id, row.sender, amount, entry.balance_after)
        why = "declined" if declined else "forced" if force else "expired"
        await self._outbox.write_txn(conn, E.REDPACKET_REFUNDED, f"redpacket:{packet_id}", _refund_data(result, why), now)
        return result

    async def get_packet(self, packet_id: str) -> Packet | None:
        async with self._db.transaction(readonly=True) as conn:
            row = (await conn.execute(_packets_query().where(packets.c.id == packet_id))).mappings().first()
        return _packet(row) if row is not None else None

    async def shares(self, packet_id: str) -> list[Share]:
        s = shares.c
        async with self._db.transaction(readonly=True) as conn:
            rows = (
                await conn.execute(
                    sa.select(s.seq, s.amount, s.grabbed_by, s.grabbed_at).where(s.packet_id == packet_id).order_by(s.seq)
                )
            ).all()
        return [Share(int(r.seq), int(r.amount), r.grabbed_by, r.grabbed_at) for r in rows]

    async def due_refunds(self, now: datetime, limit: int = 100) -> list[str]:
        p = packets.c
        async with self._db.transaction(readonly=True) as conn:
            rows = (
                await conn.execute(
                    sa.select(p.id)
                    .where(p.refunded == sa.false(), p.expires_at <= now, p.remaining_count > 0)
                    .order_by(p.expires_at)
                    .limit(limit)
                )
            ).all()
        return [r.id for r in rows]

    async def next_expiry(self) -> datetime | None:
        p = packets.c
        async with self._db.transaction(readonly=True) as conn:
            value = (
                await conn.execute(sa.select(sa.func.min(p.expires_at)).where(p.refunded == sa.false(), p.remaining_count > 0))
            ).scalar_one_or_none()
        return value  # type: ignore[no-any-return]

    async def history(
        self, owner: str, *, limit: int = 20, before: int | None = None, kinds: tuple[str, ...] | None = None
    ) -> tuple[builtins.list[LedgerEntry], bool]:
        c = ledger.c
        query = sa.select(ledger).where(c.owner == owner)
        if before is not None:
            query = query.where(c.id < before)
        if kinds is not None:
            query = query.where(c.kind.in_(kinds))
        async with self._db.transaction(readonly=True) as conn:
            rows = (await conn.execute(query.order_by(c.id.desc()).limit(limit + 1))).mappings().all()
        return [_entry(r) for r in rows[:limit]], len(rows) > limit

    async def totals(self, owner: str, kind: str) -> tuple[int, int]:
        c = ledger.c
        async with self._db.transaction(readonly=True) as conn:
            row = (
                await conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(c.amount), 0), sa.func.count()).where(c.owner == owner, c.kind == kind)
                )
            ).one()
        return abs(int(row[0])), int(row[1])

    async def audit(self) -> AuditReport:
        # One consistent snapshot: a write transaction holds out writers on SQLite; on
        # MariaDB the reads share one REPEATABLE READ snapshot.
        async with self._db.engine.connect() as conn:
            if self._db.is_mysql:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                return await self._audit_txn(conn)

    async def _audit_txn(self, conn: AsyncConnection) -> AuditReport:
        w, c, p, s = wallets.c, ledger.c, packets.c, shares.c
        balances = {r.owner: int(r.balance) for r in (await conn.execute(sa.select(w.owner, w.balance))).all()}
        by_owner = {
            r.owner: int(r.total)
            for r in (await conn.execute(sa.select(c.owner, sa.func.sum(c.amount).label("total")).group_by(c.owner))).all()
        }
        by_kind = {
            r.kind: int(r.total)
            for r in (await conn.execute(sa.select(c.kind, sa.func.sum(c.amount).label("total")).group_by(c.kind))).all()
        }
        rows = [
            (r.id, int(r.total), int(r.remaining_amount), int(r.remaining_count), bool(r.refunded), int(r.refund_amount), int(r.count))
            for r in (
                await conn.execute(
                    sa.select(p.id, p.total, p.remaining_amount, p.remaining_count, p.refunded, p.refund_amount, p.count)
                )
            ).all()
        ]
        grabbed = s.grabbed_by.is_not(None)
        agg = (
            await conn.execute(
                sa.select(
                    s.packet_id,
                    sa.func.sum(sa.case((grabbed, 0), else_=s.amount)).label("unclaimed"),
                    sa.func.sum(sa.case((grabbed, s.amount), else_=0)).label("granted"),
                    sa.func.sum(sa.case((grabbed, 1), else_=0)).label("taken"),
                ).group_by(s.packet_id)
            )
        ).all()
        unclaimed = {r.packet_id: int(r.unclaimed) for r in agg}
        granted = {r.packet_id: int(r.granted) for r in agg}
        taken = {r.packet_id: int(r.taken) for r in agg}
        report = audit_report(balances, by_owner, by_kind.get("topup", 0), by_kind.get("adjust", 0), rows, unclaimed, granted, taken)
        # Every grabbed share has exactly one credit, every packet one debit.
        credits = int(
            (await conn.execute(sa.select(sa.func.count()).select_from(ledger).where(c.kind == "grab_credit"))).scalar_one()
        )
        taken_total = sum(taken.values())
        extra: list[str] = []
        if credits != taken_total:
            extra.append(f"{credits} grab credits for {taken_total} grabbed shares")
        debits = int(
            (await conn.execute(sa.select(sa.func.count()).select_from(ledger).where(c.kind == "send_debit"))).scalar_one()
        )
        if debits != len(rows):
            extra.append(f"{debits} send debits for {len(rows)} packets")
        if extra:
            report = replace(report, problems=report.problems + tuple(extra))
        return report


# -- account deletion --------------------------------------------------------------------


def tombstone(account_id: int) -> str:
    """Where the records of deleted account ``account_id`` are kept (not a JID: no account can
    ever have it)."""
    return f"deleted:{account_id}"


async def delete_account_txn(
    conn: AsyncConnection, jid: str, account_id: int, now: datetime, outbox: Outbox = DISABLED
) -> list[RefundResult]:
    """Settle the wallet of the account ``jid`` inside the transaction deleting it (see the
    module docstring); returns the refunds made to *other* senders, for their notices.

    Locks, in the order grabs and refunds take them: the packet rows (by id), then wallets.
    """
    p, w, c = packets.c, wallets.c, ledger.c
    reason = f"account {jid} deleted"
    still_open = sa.and_(p.refunded == sa.false(), p.remaining_count > 0)
    addressed = sa.or_(sa.and_(p.is_room == sa.false(), p.target == jid), p.exclusive_to == jid)
    due = (
        await conn.execute(
            sa.select(p.id).where(still_open, sa.or_(addressed, p.sender == jid)).order_by(p.id).with_for_update()
        )
    ).scalars().all()
    refunds: list[RefundResult] = []
    for packet_id in due:
        marked = await conn.execute(
            packets.update()
            .where(p.id == packet_id, still_open)
            .values(refunded=True, status=EXPIRED, refund_amount=p.remaining_amount)
        )
        if marked.rowcount == 0:
            continue
        row = (await conn.execute(sa.select(p.sender, p.refund_amount).where(p.id == packet_id))).one()
        amount = int(row.refund_amount)
        entry = await SqlRedPacketRepository._apply_txn(conn, row.sender, "refund", amount, now, packet_id, reason)
        await outbox.write_txn(
            conn, E.REDPACKET_REFUNDED, f"redpacket:{packet_id}",
            _refund_data(RefundResult(packet_id, row.sender, amount, entry.balance_after), "account deleted"), now,
        )
        if row.sender != jid:
            refunds.append(RefundResult(packet_id, row.sender, amount, entry.balance_after))
    await SqlRedPacketRepository._transfer_out_txn(conn, jid, SYSTEM_WALLET, reason, now)
    # The emptied wallet and its history, and the packets it sent, leave the name.
    gone = tombstone(account_id)
    balance = (await conn.execute(sa.select(w.balance).where(w.owner == jid).with_for_update())).scalar_one_or_none()
    if balance is not None:
        # Empty now (escheated above); an id a database reused after a restart finds its wallet.
        if (await conn.execute(sa.select(w.owner).where(w.owner == gone))).first() is None:
            await conn.execute(wallets.insert().values(owner=gone, balance=int(balance), updated_at=now))
        await conn.execute(ledger.update().where(c.owner == jid).values(owner=gone))
        await conn.execute(wallets.delete().where(w.owner == jid))
    # Keys of its moves stay taken (a retry must not move money again) but no longer name it.
    await conn.execute(idempotency.update().where(idempotency.c.owner == jid).values(owner=gone))
    await conn.execute(packets.update().where(p.sender == jid).values(sender=gone))
    return refunds


def utcnow() -> datetime:
    return datetime.now(UTC)
