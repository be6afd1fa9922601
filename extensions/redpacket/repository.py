"""Red packets (urn:xmppd:redpacket:0): the wallet ledger and the packets, in storage.

Money is integer minor units (fen for CNY). Its rules are the database's, not the process's:

* A wallet's balance changes only together with one ``redpacket_ledger`` row in the same
  transaction (kinds ``topup``, ``send_debit``, ``grab_credit``, ``refund``, ``adjust``), and a
  ``CHECK (balance >= 0)`` makes an overdraft impossible even for a buggy caller.
* Sending debits the sender, writes the packet and its precomputed shares, all in one
  transaction. ``UNIQUE (sender, client_id)`` makes a retried send return the first packet
  instead of debiting twice.
* Grabbing is one transaction. On SQLite (``BEGIN IMMEDIATE``: one writer) four statements, run
  in one call on the driver's thread: claim the lowest unclaimed share
  (``UPDATE ... WHERE seq = (SELECT min(seq) ...) AND grabbed_by IS NULL RETURNING``), count it
  on the packet if still open (``UPDATE ... RETURNING`` the counters; best luck on the last
  share of a lucky packet with two shares or more), credit the grabber (an upsert that creates a missing wallet, ``RETURNING`` the
  balance) and append the ledger row. On MariaDB the packet row is locked first
  (``SELECT ... FOR UPDATE``), then the lowest share is read and claimed (rowcount checked),
  counted, credited (upsert) and entered. ``UNIQUE (packet_id, grabbed_by)`` makes a second
  share for the same person impossible; a refusal rolls everything back and is explained by
  one read. Packets seen with every share gone are remembered: opening them again is a read.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, NoReturn, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.storage.accounts import accounts
from xmppd.storage.engine import Database, is_deadlock, is_unique_violation
from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, id_type, indexed_string, metadata
from xmppd.timestamps import millis
from xmppd.webhooks import events as E
from xmppd.webhooks.outbox import DISABLED, Outbox

__all__ = [
    "KINDS",
    "LEDGER_KINDS",
    "SYSTEM_WALLET",
    "AllGone",
    "AlreadyGrabbed",
    "AuditReport",
    "ClientIdReused",
    "GrabResult",
    "InsufficientFunds",
    "LedgerEntry",
    "MemoryRedPacketRepository",
    "NewPacket",
    "Packet",
    "PacketExpired",
    "PacketNotFound",
    "RedPacketError",
    "RecipientGone",
    "RedPacketRepository",
    "RefundResult",
    "SendResult",
    "Share",
    "SqlRedPacketRepository",
    "delete_account_txn",
    "has_best_luck",
    "tombstone",
]

#: Where the balance of a deleted account goes (not a JID any account can have: no '@').
SYSTEM_WALLET: Final = "system:escheat"
KINDS: Final = ("lucky", "equal")
LEDGER_KINDS: Final = ("topup", "send_debit", "grab_credit", "refund", "adjust")
OPEN, FINISHED, EXPIRED = "open", "finished", "expired"
_MAX_DEADLOCK_RETRIES: Final = 30
_FINISHED_MEMORY: Final = 10000  # finished packet ids remembered (forgotten all at once past this)


def has_best_luck(kind: str, count: int) -> bool:
    """Best luck (手气最佳, the largest share) exists only where shares differ by luck: a lucky
    packet of two shares or more. Equal and single-share packets finish with none stored."""
    return kind == "lucky" and count >= 2

# -- live tables (the migration spells the same thing out, frozen) ---------------------------

wallets = sa.Table(
    "redpacket_wallets",
    metadata,
    sa.Column("owner", indexed_string(), primary_key=True),
    sa.Column("balance", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("balance >= 0", name="balance_non_negative"),
    **MYSQL_TABLE_KWARGS,
)

packets = sa.Table(
    "redpacket_packets",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("sender", indexed_string(), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("total", sa.BigInteger(), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("greeting", sa.Text(), nullable=False),
    sa.Column("target", indexed_string(), nullable=False),
    sa.Column("is_room", sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column("exclusive_to", indexed_string(), nullable=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("lang", sa.String(35), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("remaining_count", sa.Integer(), nullable=False),
    sa.Column("remaining_amount", sa.BigInteger(), nullable=False),
    sa.Column("refunded", sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column("refund_amount", sa.BigInteger(), server_default="0", nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("best_luck", indexed_string(), nullable=True),
    sa.UniqueConstraint("sender", "client_id"),
    sa.CheckConstraint("total > 0", name="total_positive"),
    sa.CheckConstraint("count > 0", name="count_positive"),
    sa.CheckConstraint("remaining_count >= 0 AND remaining_count <= count", name="remaining_count_range"),
    sa.CheckConstraint("remaining_amount >= 0 AND remaining_amount <= total", name="remaining_amount_range"),
    sa.CheckConstraint("kind IN ('lucky', 'equal')", name="kind_known"),
    sa.Index(None, "refunded", "expires_at"),
    **MYSQL_TABLE_KWARGS,
)

shares = sa.Table(
    "redpacket_shares",
    metadata,
    sa.Column("packet_id", sa.String(32), sa.ForeignKey("redpacket_packets.id"), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("grabbed_by", indexed_string(), nullable=True),
    sa.Column("grabbed_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("packet_id", "grabbed_by"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.Index(None, "grabbed_by"),
    **MYSQL_TABLE_KWARGS,
)

ledger = sa.Table(
    "redpacket_ledger",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("owner", indexed_string(), sa.ForeignKey("redpacket_wallets.owner"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("balance_after", sa.BigInteger(), nullable=False),
    sa.Column("packet_id", sa.String(32), sa.ForeignKey("redpacket_packets.id"), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("amount <> 0", name="amount_non_zero"),
    sa.CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
    sa.CheckConstraint(
        "kind IN ('topup', 'send_debit', 'grab_credit', 'refund', 'adjust')", name="kind_known"
    ),
    sa.Index(None, "owner", "id"),
    sa.Index(None, "packet_id"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_KWARGS,
)

# Wallet moves asked for with an idempotency key (the REST API's Idempotency-Key): written in
# the transaction of the ledger entry they made, so a retried request finds it and changes nothing.
idempotency = sa.Table(
    "redpacket_idempotency",
    metadata,
    sa.Column("key", indexed_string(), primary_key=True),
    sa.Column("owner", indexed_string(), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("ledger_id", id_type(), sa.ForeignKey("redpacket_ledger.id"), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    **MYSQL_TABLE_KWARGS,
)


# -- values ---------------------------------------------------------------------------------


class RedPacketError(Exception):
    """Base of the repository's refusals (each maps to one protocol error)."""


class InsufficientFunds(RedPacketError):
    def __init__(self, owner: str, balance: int, needed: int) -> None:
        super().__init__(f"{owner} has {balance}, needs {needed}")
        self.owner, self.balance, self.needed = owner, balance, needed


class IdempotencyConflict(RedPacketError):
    """An idempotency key used before for a different wallet move."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the idempotency key {key!r} was used for a different request")
        self.key = key


class PacketNotFound(RedPacketError):
    def __init__(self, packet_id: str) -> None:
        super().__init__(f"no red packet {packet_id!r}")
        self.packet_id = packet_id


class AlreadyGrabbed(RedPacketError):
    def __init__(self, packet_id: str, amount: int, grabbed_at: datetime) -> None:
        super().__init__(f"already grabbed {amount} from {packet_id}")
        self.packet_id, self.amount, self.grabbed_at = packet_id, amount, grabbed_at


class AllGone(RedPacketError):
    def __init__(self, packet_id: str) -> None:
        super().__init__(f"every share of {packet_id} has been taken")
        self.packet_id = packet_id


class PacketExpired(RedPacketError):
    def __init__(self, packet_id: str) -> None:
        super().__init__(f"red packet {packet_id} has expired")
        self.packet_id = packet_id


class RecipientGone(RedPacketError):
    """The local account a packet is for was deleted before the packet could be written."""

    def __init__(self, jid: str) -> None:
        super().__init__(f"{jid} does not exist")
        self.jid = jid


class ClientIdReused(RedPacketError):
    def __init__(self, client_id: str) -> None:
        super().__init__(f"client id {client_id!r} was used for a different packet")
        self.client_id = client_id


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    owner: str
    kind: str
    amount: int  # signed: credits positive, debits negative
    balance_after: int
    packet_id: str | None
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewPacket:
    """What the feature asks to create; ``shares`` come from :mod:`.split` and sum to ``total``."""

    id: str
    sender: str
    kind: str
    greeting: str
    target: str
    is_room: bool
    exclusive_to: str | None
    client_id: str
    lang: str
    created_at: datetime
    expires_at: datetime
    shares: tuple[int, ...]
    # The local account (bare JID) the packet is addressed to, one-to-one or exclusive: it must
    # still exist when the packet is written (SQL: read under a shared lock of its row, so a
    # send and that account's deletion are ordered: either the deletion refunds the packet, or
    # the send fails with RecipientGone). The memory twin has no accounts and ignores it.
    recipient: str | None = None

    @property
    def total(self) -> int:
        return sum(self.shares)

    @property
    def count(self) -> int:
        return len(self.shares)


@dataclass(frozen=True, slots=True)
class Packet:
    id: str
    sender: str
    kind: str
    total: int
    count: int
    greeting: str
    target: str
    is_room: bool
    exclusive_to: str | None
    client_id: str
    lang: str
    created_at: datetime
    expires_at: datetime
    status: str
    remaining_count: int
    remaining_amount: int
    refunded: bool
    refund_amount: int
    finished_at: datetime | None
    best_luck: str | None

    def same_request(self, new: NewPacket) -> bool:
        """A retry of the request that made this packet (shares aside: they are random)."""
        return (self.kind, self.total, self.count, self.greeting, self.target, self.exclusive_to) == (
            new.kind, new.total, new.count, new.greeting, new.target, new.exclusive_to
        )


@dataclass(frozen=True, slots=True)
class Share:
    seq: int
    amount: int
    grabbed_by: str | None
    grabbed_at: datetime | None


@dataclass(frozen=True, slots=True)
class SendResult:
    packet: Packet
    created: bool  # False: a retry with the same client id; nothing was debited again
    balance: int


@dataclass(frozen=True, slots=True)
class GrabResult:
    packet_id: str
    grabber: str
    amount: int
    seq: int
    grabbed_at: datetime
    balance: int
    remaining_count: int
    remaining_amount: int
    best_luck: Share | None  # set when this grab took the last share


@dataclass(frozen=True, slots=True)
class RefundResult:
    packet_id: str
    sender: str
    amount: int
    balance: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The money invariant and the consistency checks behind it."""

    total_balances: int
    unclaimed: int  # unclaimed shares of packets not refunded
    total_topups: int
    total_adjustments: int
    ledger_total: int
    wallets: int
    packets: int
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [
            f"wallets {self.wallets}, packets {self.packets}",
            f"balances {self.total_balances} + unclaimed {self.unclaimed} = {self.total_balances + self.unclaimed}",
            f"topups {self.total_topups} + adjustments {self.total_adjustments} = {self.total_topups + self.total_adjustments}",
            f"ledger total {self.ledger_total}",
            "audit OK" if self.ok else "audit FAILED:",
        ]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


def _report(
    balances: dict[str, int],
    ledger_by_owner: dict[str, int],
    topups: int,
    adjustments: int,
    packet_rows: Sequence[tuple[str, int, int, int, bool, int, int]],
    unclaimed_by_packet: dict[str, int],
    granted_by_packet: dict[str, int],
    grabbed_count_by_packet: dict[str, int],
) -> AuditReport:
    """Shared by both implementations. ``packet_rows``: (id, total, remaining_amount,
    remaining_count, refunded, refund_amount, count)."""
    problems: list[str] = []
    for owner in sorted(set(balances) | set(ledger_by_owner)):
        if balances.get(owner, 0) != ledger_by_owner.get(owner, 0):
            problems.append(f"wallet {owner}: balance {balances.get(owner, 0)} != ledger sum {ledger_by_owner.get(owner, 0)}")
        if balances.get(owner, 0) < 0:
            problems.append(f"wallet {owner}: negative balance")
    unclaimed = 0
    for pid, total, remaining_amount, remaining_count, refunded, refund_amount, count in packet_rows:
        left = unclaimed_by_packet.get(pid, 0)
        granted = granted_by_packet.get(pid, 0)
        if left != remaining_amount:
            problems.append(f"packet {pid}: unclaimed shares {left} != remaining_amount {remaining_amount}")
        if left + granted != total:
            problems.append(f"packet {pid}: granted {granted} + unclaimed {left} != total {total}")
        if count - grabbed_count_by_packet.get(pid, 0) != remaining_count:
            problems.append(f"packet {pid}: remaining_count {remaining_count} disagrees with the shares")
        if refunded:
            if refund_amount != left:
                problems.append(f"packet {pid}: refunded {refund_amount} but {left} was unclaimed")
        else:
            unclaimed += left
    total_balances = sum(balances.values())
    if total_balances + unclaimed != topups + adjustments:
        problems.append(
            f"invariant broken: balances {total_balances} + unclaimed {unclaimed} != topups {topups} + adjustments {adjustments}"
        )
    ledger_total = sum(ledger_by_owner.values())
    if ledger_total != total_balances:
        problems.append(f"ledger total {ledger_total} != balances {total_balances}")
    return AuditReport(
        total_balances, unclaimed, topups, adjustments, ledger_total, len(balances), len(packet_rows), tuple(problems)
    )


def _positive(amount: int, what: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"{what} must be a positive integer of minor units, not {amount!r}")
    return amount


def _check_move(key: str, kind: str, amount: int, reason: str | None) -> None:
    if not key or len(key) > 191:
        raise ValueError("an idempotency key has 1 to 191 characters")
    if kind == "topup":
        _positive(amount)
    elif kind == "adjust":
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise ValueError("an adjustment is a non-zero integer of minor units")
        if not reason:
            raise ValueError("an adjustment needs a reason")
    else:
        raise ValueError(f"a wallet move is a topup or an adjust, not {kind!r}")


def _check_new(new: NewPacket) -> None:
    if new.kind not in KINDS:
        raise ValueError(f"unknown packet kind {new.kind!r}")
    if not new.shares:
        raise ValueError("a packet has at least one share")
    for s in new.shares:
        _positive(s, "a share")
    if new.expires_at <= new.created_at:
        raise ValueError("a packet expires after it is created")


class RedPacketRepository(Protocol):
    """Wallets, ledger and packets (memory, SQL): the same contract."""

    async def balance(self, owner: str) -> int: ...

    async def topup(self, owner: str, amount: int, now: datetime, reason: str | None = None) -> LedgerEntry: ...

    async def adjust(self, owner: str, amount: int, reason: str, now: datetime) -> LedgerEntry: ...

    async def transfer_out(self, owner: str, to: str, reason: str, now: datetime) -> int: ...

    async def move_once(
        self, key: str, owner: str, kind: str, amount: int, reason: str | None, now: datetime
    ) -> tuple[LedgerEntry, bool]:
        """A top-up (``kind`` "topup", ``amount`` > 0) or an adjustment ("adjust", signed, with a
        reason) made at most once per ``key``: the first call moves the money and remembers the
        key in the same transaction; a later call with the same key and values returns that
        entry with ``True`` (a replay) and moves nothing; with other values it raises
        ``IdempotencyConflict``. ``InsufficientFunds`` as ``adjust``."""
        ...

    async def packets(self, sender: str | None = None, *, limit: int = 50, offset: int = 0) -> builtins.list[Packet]:
        """Packets, newest first (``sender``: only theirs)."""
        ...

    async def send(self, new: NewPacket) -> SendResult: ...

    async def grab(self, packet_id: str, grabber: str, now: datetime) -> GrabResult: ...

    async def refund(self, packet_id: str, now: datetime, *, force: bool = False) -> RefundResult | None: ...

    async def get_packet(self, packet_id: str) -> Packet | None: ...

    async def shares(self, packet_id: str) -> list[Share]: ...

    async def due_refunds(self, now: datetime, limit: int = 100) -> list[str]: ...

    async def next_expiry(self) -> datetime | None: ...

    async def history(
        self, owner: str, *, limit: int = 20, before: int | None = None, kinds: tuple[str, ...] | None = None
    ) -> tuple[builtins.list[LedgerEntry], bool]: ...

    async def totals(self, owner: str, kind: str) -> tuple[int, int]: ...

    async def audit(self) -> AuditReport: ...


# -- memory ---------------------------------------------------------------------------------


class MemoryRedPacketRepository(RedPacketRepository):
    """The in-memory twin: every method runs without awaiting, so each is atomic."""

    def __init__(self) -> None:
        self._balances: dict[str, int] = {}
        self._ledger: list[LedgerEntry] = []
        self._packets: dict[str, Packet] = {}
        self._shares: dict[str, list[Share]] = {}
        self._by_client: dict[tuple[str, str], str] = {}
        self._keys: dict[str, tuple[str, str, int, int]] = {}  # idempotency key -> owner, kind, amount, ledger id

    def _apply(self, owner: str, kind: str, amount: int, now: datetime, packet_id: str | None = None, reason: str | None = None) -> LedgerEntry:
        balance = self._balances.get(owner, 0) + amount
        if balance < 0:
            raise InsufficientFunds(owner, self._balances.get(owner, 0), -amount)
        self._balances[owner] = balance
        entry = LedgerEntry(len(self._ledger) + 1, owner, kind, amount, balance, packet_id, reason, now)
        self._ledger.append(entry)
        return entry

    async def balance(self, owner: str) -> int:
        return self._balances.get(owner, 0)

    async def topup(self, owner: str, amount: int, now: datetime, reason: str | None = None) -> LedgerEntry:
        return self._apply(owner, "topup", _positive(amount), now, reason=reason)

    async def adjust(self, owner: str, amount: int, reason: str, now: datetime) -> LedgerEntry:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise ValueError("an adjustment is a non-zero integer of minor units")
        if not reason:
            raise ValueError("an adjustment needs a reason")
        return self._apply(owner, "adjust", amount, now, reason=reason)

    async def move_once(
        self, key: str, owner: str, kind: str, amount: int, reason: str | None, now: datetime
    ) -> tuple[LedgerEntry, bool]:
        _check_move(key, kind, amount, reason)
        seen = self._keys.get(key)
        if seen is not None:
            if seen[:3] != (owner, kind, amount):
                raise IdempotencyConflict(key)
            return self._ledger[seen[3] - 1], True
        entry = self._apply(owner, kind, amount, now, reason=reason)
        self._keys[key] = (owner, kind, amount, entry.id)
        return entry, False

    async def packets(self, sender: str | None = None, *, limit: int = 50, offset: int = 0) -> builtins.list[Packet]:
        found = [p for p in self._packets.values() if sender is None or p.sender == sender]
        found.sort(key=lambda p: (p.created_at, p.id), reverse=True)
        return found[offset : offset + limit]

    async def transfer_out(self, owner: str, to: str, reason: str, now: datetime) -> int:
        amount = self._balances.get(owner, 0)
        if amount > 0:
            self._apply(owner, "adjust", -amount, now, reason=reason)
            self._apply(to, "adjust", amount, now, reason=reason)
        return amount

    async def send(self, new: NewPacket) -> SendResult:
        _check_new(new)
        existing = self._by_client.get((new.sender, new.client_id))
        if existing is not None:
            packet = self._packets[existing]
            if not packet.same_request(new):
                raise ClientIdReused(new.client_id)
            return SendResult(packet, False, self._balances.get(new.sender, 0))
        if new.id in self._packets:
            raise ValueError(f"packet id {new.id} exists")
        have = self._balances.get(new.sender, 0)
        if have < new.total:
            raise InsufficientFunds(new.sender, have, new.total)
        packet = Packet(
            new.id, new.sender, new.kind, new.total, new.count, new.greeting, new.target, new.is_room,
            new.exclusive_to, new.client_id, new.lang, new.created_at, new.expires_at, OPEN,
            new.count, new.total, False, 0, None, None,
        )
        self._packets[new.id] = packet
        self._shares[new.id] = [Share(i, a, None, None) for i, a in enumerate(new.shares)]
        self._by_client[(new.sender, new.client_id)] = new.id
        entry = self._apply(new.sender, "send_debit", -new.total, new.created_at, packet_id=new.id)
        return SendResult(packet, True, entry.balance_after)

    async def grab(self, packet_id: str, grabber: str, now: datetime) -> GrabResult:
        packet = self._packets.get(packet_id)
        if packet is None:
            raise PacketNotFound(packet_id)
        shares_ = self._shares[packet_id]
        for s in shares_:
            if s.grabbed_by == grabber:
                assert s.grabbed_at is not None
                raise AlreadyGrabbed(packet_id, s.amount, s.grabbed_at)
        if packet.remaining_count == 0:
            raise AllGone(packet_id)
        if packet.refunded or now >= packet.expires_at:
            raise PacketExpired(packet_id)
        share = next(s for s in shares_ if s.grabbed_by is None)
        claimed = Share(share.seq, share.amount, grabber, now)
        shares_[share.seq] = claimed
        remaining_count = packet.remaining_count - 1
        best = None
        if remaining_count == 0 and has_best_luck(packet.kind, packet.count):
            best = max(shares_, key=lambda s: (s.amount, -s.seq))
        self._packets[packet_id] = replace(
            packet,
            remaining_count=remaining_count,
            remaining_amount=packet.remaining_amount - share.amount,
            status=FINISHED if remaining_count == 0 else OPEN,
            finished_at=now if remaining_count == 0 else None,
            best_luck=best.grabbed_by if best else None,
        )
        entry = self._apply(grabber, "grab_credit", share.amount, now, packet_id=packet_id)
        return GrabResult(
            packet_id, grabber, share.amount, share.seq, now, entry.balance_after,
            remaining_count, packet.remaining_amount - share.amount, best,
        )

    async def refund(self, packet_id: str, now: datetime, *, force: bool = False) -> RefundResult | None:
        packet = self._packets.get(packet_id)
        if packet is None:
            raise PacketNotFound(packet_id)
        if packet.refunded or packet.remaining_count == 0 or (not force and now < packet.expires_at):
            return None
        amount = packet.remaining_amount
        self._packets[packet_id] = replace(packet, refunded=True, refund_amount=amount, status=EXPIRED)
        entry = self._apply(packet.sender, "refund", amount, now, packet_id=packet_id)
        return RefundResult(packet_id, packet.sender, amount, entry.balance_after)

    async def get_packet(self, packet_id: str) -> Packet | None:
        return self._packets.get(packet_id)

    async def shares(self, packet_id: str) -> list[Share]:
        return list(self._shares.get(packet_id, ()))

    async def due_refunds(self, now: datetime, limit: int = 100) -> list[str]:
        due = [p for p in self._packets.values() if not p.refunded and p.remaining_count > 0 and p.expires_at <= now]
        due.sort(key=lambda p: p.expires_at)
        return [p.id for p in due[:limit]]

    async def next_expiry(self) -> datetime | None:
        times = [p.expires_at for p in self._packets.values() if not p.refunded and p.remaining_count > 0]
        return min(times) if times else None

    async def history(
        self, owner: str, *, limit: int = 20, before: int | None = None, kinds: tuple[str, ...] | None = None
    ) -> tuple[builtins.list[LedgerEntry], bool]:
        rows = [
            e for e in reversed(self._ledger)
            if e.owner == owner and (before is None or e.id < before) and (kinds is None or e.kind in kinds)
        ]
        return rows[:limit], len(rows) > limit

    async def totals(self, owner: str, kind: str) -> tuple[int, int]:
        rows = [e.amount for e in self._ledger if e.owner == owner and e.kind == kind]
        return abs(sum(rows)), len(rows)

    async def audit(self) -> AuditReport:
        ledger_by_owner: dict[str, int] = {}
        for e in self._ledger:
            ledger_by_owner[e.owner] = ledger_by_owner.get(e.owner, 0) + e.amount
        topups = sum(e.amount for e in self._ledger if e.kind == "topup")
        adjustments = sum(e.amount for e in self._ledger if e.kind == "adjust")
        rows = [
            (p.id, p.total, p.remaining_amount, p.remaining_count, p.refunded, p.refund_amount, p.count)
            for p in self._packets.values()
        ]
        unclaimed = {pid: sum(s.amount for s in ss if s.grabbed_by is None) for pid, ss in self._shares.items()}
        granted = {pid: sum(s.amount for s in ss if s.grabbed_by is not None) for pid, ss in self._shares.items()}
        grabbed = {pid: sum(1 for s in ss if s.grabbed_by is not None) for pid, ss in self._shares.items()}
        return _report(dict(self._balances), ledger_by_owner, topups, adjustments, rows, unclaimed, granted, grabbed)


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


_SQL_CLAIM: Final = (
    "UPDATE redpacket_shares SET grabbed_by = ?, grabbed_at = ? "
    "WHERE packet_id = ? AND grabbed_by IS NULL AND seq = "
    "(SELECT min(seq) FROM redpacket_shares WHERE packet_id = ? AND grabbed_by IS NULL) "
    "RETURNING seq, amount"
)
_SQL_COUNT: Final = (
    "UPDATE redpacket_packets SET remaining_count = remaining_count - 1, remaining_amount = remaining_amount - ?, "
    f"status = CASE WHEN remaining_count = 1 THEN '{FINISHED}' ELSE '{OPEN}' END, "
    "finished_at = CASE WHEN remaining_count = 1 THEN ? END, "
    "best_luck = CASE WHEN remaining_count = 1 AND kind = 'lucky' AND count >= 2 THEN (SELECT grabbed_by "
    "FROM redpacket_shares WHERE packet_id = ? AND grabbed_by IS NOT NULL ORDER BY amount DESC, seq LIMIT 1) END "
    "WHERE id = ? AND refunded = 0 AND expires_at > ? RETURNING remaining_count, remaining_amount, kind, count"
)
_SQL_BEST: Final = (
    "SELECT seq, amount, grabbed_by, grabbed_at FROM redpacket_shares WHERE packet_id = ? "
    "ORDER BY amount DESC, seq LIMIT 1"
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
_SQL_REFUSAL: Final = (
    "SELECT p.remaining_count, p.refunded, p.expires_at, s.amount, s.grabbed_at FROM redpacket_packets p "
    "LEFT OUTER JOIN redpacket_shares s ON s.packet_id = p.id AND s.grabbed_by = ? WHERE p.id = ?"
)


def _first(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> tuple[Any, ...] | None:
    """The first row of ``sql``, the statement run to its end (RETURNING included)."""
    rows = db.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _sqlite_refusal(db: sqlite3.Connection, packet_id: str, grabber: str, now: datetime) -> Exception:
    row = _first(db, _SQL_REFUSAL, (grabber, packet_id))
    if row is None:
        return PacketNotFound(packet_id)
    remaining_count, refunded, expires_at, amount, grabbed_at = row
    if amount is not None:
        return AlreadyGrabbed(packet_id, int(amount), _from_sqlite_time(grabbed_at))
    if int(remaining_count) == 0:
        return AllGone(packet_id)
    if refunded or now >= _from_sqlite_time(expires_at):
        return PacketExpired(packet_id)
    return _LostRace()  # a share is free after all: the caller reruns the grab


def _sqlite_grab(db: sqlite3.Connection, packet_id: str, grabber: str, now: datetime, outbox: Outbox = DISABLED) -> GrabResult:
    """The grab on SQLite, run on the connection's own thread inside the caller's ``BEGIN
    IMMEDIATE`` transaction (so nothing else writes meanwhile): the same four statements as
    :meth:`SqlRedPacketRepository._grab_sqlite_statements`, in one hand-off instead of about fifteen.
    Raising (a refusal, or any database error) makes the caller roll the transaction back."""
    at = _sqlite_time(now)
    try:
        pick = _first(db, _SQL_CLAIM, (grabber, at, packet_id, packet_id))
    except sqlite3.IntegrityError as exc:
        if getattr(exc, "sqlite_errorname", "") != "SQLITE_CONSTRAINT_UNIQUE":
            raise
        pick = None  # UNIQUE (packet_id, grabbed_by): a second share for the same person
    if pick is None:
        raise _sqlite_refusal(db, packet_id, grabber, now)
    seq, amount = int(pick[0]), int(pick[1])
    counted = _first(db, _SQL_COUNT, (amount, at, packet_id, packet_id, at))
    if counted is None:  # refunded or expired (the claim proved the rest)
        raise PacketExpired(packet_id)
    left, left_amount = int(counted[0]), int(counted[1])
    best: Share | None = None
    if left == 0 and has_best_luck(counted[2], int(counted[3])):
        top = _first(db, _SQL_BEST, (packet_id,))
        assert top is not None
        best = Share(int(top[0]), int(top[1]), top[2], _from_sqlite_time(top[3]))
    credited = _first(db, _SQL_CREDIT, (grabber, amount, at))
    assert credited is not None
    balance = int(credited[0])
    db.execute(_SQL_LEDGER, (grabber, amount, balance, packet_id, at))
    result = GrabResult(packet_id, grabber, amount, seq, now, balance, left, left_amount, best)
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
        int(m[c.refund_amount]), m[c.finished_at], m[c.best_luck],
    )


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
        _positive(amount)
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
        _check_move(key, kind, amount, reason)
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
        query = sa.select(packets)
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
        _check_new(new)
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
            await conn.execute(sa.select(packets).where(p.sender == new.sender, p.client_id == new.client_id))
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
        await conn.execute(packets.insert().values(**values))
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
            new.count, new.total, False, 0, None, None,
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
                run, db = await self._on_driver_thread(conn)
                if run is not None:
                    raise await run(lambda: _sqlite_refusal(db(), packet_id, grabber, now))
                raise await self._refusal(conn, packet_id, grabber, now) or AllGone(packet_id)
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

    async def _refusal(self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime) -> RedPacketError | None:
        """Why ``grabber`` cannot have a share of ``packet_id`` (one statement), or None if they can."""
        p, s = packets.c, shares.c
        row = (
            await conn.execute(
                sa.select(p.remaining_count, p.refunded, p.expires_at, s.amount, s.grabbed_at)
                .select_from(packets.outerjoin(shares, sa.and_(s.packet_id == p.id, s.grabbed_by == grabber)))
                .where(p.id == packet_id)
            )
        ).first()
        if row is None:
            return PacketNotFound(packet_id)
        if row.amount is not None:
            return AlreadyGrabbed(packet_id, int(row.amount), row.grabbed_at)
        if int(row.remaining_count) == 0:
            return AllGone(packet_id)
        if row.refunded or now >= row.expires_at:
            return PacketExpired(packet_id)
        return None

    async def _claim_rest(
        self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime, seq: int, amount: int,
        remaining_count: int, remaining_amount: int, kind: str, count: int,
    ) -> GrabResult:
        """After the claim: best luck on the last share of a lucky packet of two shares or more
        (:func:`has_best_luck`), and the grabber's credit (upsert + ledger)."""
        best: Share | None = None
        if remaining_count == 0 and has_best_luck(kind, count):
            s = shares.c
            top = (
                await conn.execute(
                    sa.select(s.seq, s.amount, s.grabbed_by, s.grabbed_at)
                    .where(s.packet_id == packet_id)
                    .order_by(s.amount.desc(), s.seq)
                    .limit(1)
                )
            ).one()
            best = Share(int(top.seq), int(top.amount), top.grabbed_by, top.grabbed_at)
        entry = await self._apply_txn(conn, grabber, "grab_credit", amount, now, packet_id)
        result = GrabResult(packet_id, grabber, amount, seq, now, entry.balance_after, remaining_count, remaining_amount, best)
        for event, data in grab_events(result):
            await self._outbox.write_txn(conn, event, f"redpacket:{packet_id}", data, now)
        return result

    async def _grab_sqlite_txn(self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime) -> GrabResult:
        """SQLite: the statements of :meth:`_grab_sqlite_statements` in one call on aiosqlite's
        connection thread (:func:`_sqlite_grab`): one hand-off to that thread instead of about
        fifteen (each statement costs a cursor, an execute, a fetch and a close, each a wait for
        the event loop), so the write lock is held that much shorter."""
        run, db = await self._on_driver_thread(conn)
        if run is None:
            return await self._grab_sqlite_statements(conn, packet_id, grabber, now)
        outbox = self._outbox
        outbox.mark(conn)
        return await run(lambda: _sqlite_grab(db(), packet_id, grabber, now, outbox))  # type: ignore[no-any-return]

    async def _on_driver_thread(self, conn: AsyncConnection) -> tuple[Any, Callable[[], sqlite3.Connection]]:
        """On SQLite with aiosqlite: its way to run a call on the connection's own thread (where
        the ``sqlite3`` connection may be used) and the ``sqlite3`` connection; else ``None``."""
        if not self._db.is_sqlite:
            return None, lambda: None  # type: ignore[return-value]
        driver = (await conn.get_raw_connection()).driver_connection
        run = getattr(driver, "_execute", None)
        if run is None or not hasattr(type(driver), "_conn"):
            return None, lambda: None  # type: ignore[return-value]
        return run, lambda: driver._conn

    async def _grab_sqlite_statements(
        self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime
    ) -> GrabResult:
        """SQLite (BEGIN IMMEDIATE: this is the only writer): claim, count, credit; 4 statements.

        1. claim the lowest unclaimed share, ``RETURNING`` it (``UNIQUE (packet_id, grabbed_by)``
           refuses a second share to the same person);
        2. count it on the packet if the packet is still open (not refunded, not expired),
           ``RETURNING`` the counters; the last share also fixes best luck;
        3. credit the wallet, creating it if needed (upsert ``RETURNING`` the balance);
        4. append the ledger entry.
        A refusal rolls the whole transaction back and is explained by one more read.
        """
        p, s = packets.c, shares.c
        lowest = (
            sa.select(sa.func.min(s.seq)).where(s.packet_id == packet_id, s.grabbed_by.is_(None)).scalar_subquery()
        )
        try:
            pick = (
                await conn.execute(
                    shares.update()
                    .where(s.packet_id == packet_id, s.seq == lowest, s.grabbed_by.is_(None))
                    .values(grabbed_by=grabber, grabbed_at=now)
                    .returning(s.seq, s.amount)
                )
            ).first()
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            pick = None
        if pick is None:
            await self._refused(conn, packet_id, grabber, now)
        amount = int(pick.amount)
        last = p.remaining_count == 1
        lucky = sa.and_(p.kind == "lucky", p.count >= 2)  # has_best_luck, in SQL
        best_sub = (
            sa.select(s.grabbed_by)
            .where(s.packet_id == packet_id, s.grabbed_by.is_not(None))
            .order_by(s.amount.desc(), s.seq)
            .limit(1)
            .scalar_subquery()
        )
        counted = (
            await conn.execute(
                packets.update()
                .where(p.id == packet_id, p.refunded == sa.false(), p.expires_at > now)
                .values(
                    remaining_count=p.remaining_count - 1,
                    remaining_amount=p.remaining_amount - amount,
                    status=sa.case((last, FINISHED), else_=OPEN),
                    finished_at=sa.case((last, now), else_=None),
                    best_luck=sa.case((sa.and_(last, lucky), best_sub), else_=None),
                )
                .returning(p.remaining_count, p.remaining_amount, p.kind, p.count)
            )
        ).first()
        if counted is None:  # refunded or expired (the claim proved the rest): undo the claim
            raise PacketExpired(packet_id)
        return await self._claim_rest(
            conn, packet_id, grabber, now, int(pick.seq), amount, int(counted.remaining_count), int(counted.remaining_amount),
            counted.kind, int(counted.count),
        )

    async def _refused(self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime) -> NoReturn:
        """Explain a refused grab by raising: the transaction rolls back (the claim, if any, with it)."""
        raise await self._refusal(conn, packet_id, grabber, now) or _LostRace()

    async def _grab_locking_txn(
        self, conn: AsyncConnection, packet_id: str, grabber: str, now: datetime
    ) -> GrabResult:
        """MariaDB/MySQL (no UPDATE ... RETURNING): lock the packet row, then claim, count, credit;
        five statements.

        The packet row lock (``SELECT ... FOR UPDATE``, which also reads the lowest free share)
        orders the grabs and refunds of one packet, so that share is the one the claim takes.
        """
        p, s = packets.c, shares.c

        def lowest(column: sa.ColumnElement[int]) -> sa.ScalarSelect[int]:
            return (
                sa.select(column).where(s.packet_id == p.id, s.grabbed_by.is_(None)).order_by(s.seq).limit(1)
                .scalar_subquery()
            )

        # The lowest free share rides along; the claim below re-checks it (a stale read is a
        # lost race, rerun), so the read need not lock it.
        row = (
            await conn.execute(
                sa.select(
                    p.remaining_count, p.remaining_amount, p.refunded, p.expires_at, p.kind, p.count,
                    lowest(s.seq).label("seq"), lowest(s.amount).label("amount"),
                )
                .where(p.id == packet_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            raise PacketNotFound(packet_id)
        remaining_count, remaining_amount = int(row.remaining_count), int(row.remaining_amount)
        if remaining_count == 0 or row.refunded or now >= row.expires_at or row.seq is None:
            await self._refused(conn, packet_id, grabber, now)
        pick = row
        try:
            claimed = await conn.execute(
                shares.update()
                .where(s.packet_id == packet_id, s.seq == pick.seq, s.grabbed_by.is_(None))
                .values(grabbed_by=grabber, grabbed_at=now)
            )
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            await self._refused(conn, packet_id, grabber, now)
        if claimed.rowcount != 1:
            await self._refused(conn, packet_id, grabber, now)
        amount = int(pick.amount)
        left = remaining_count - 1
        finished = left == 0
        lucky = has_best_luck(row.kind, int(row.count))
        best_sub = (
            sa.select(s.grabbed_by)
            .where(s.packet_id == packet_id, s.grabbed_by.is_not(None))
            .order_by(s.amount.desc(), s.seq)
            .limit(1)
            .scalar_subquery()
        )
        await conn.execute(
            packets.update()
            .where(p.id == packet_id)
            .values(
                remaining_count=left,
                remaining_amount=remaining_amount - amount,
                status=FINISHED if finished else OPEN,
                finished_at=now if finished else None,
                best_luck=best_sub if finished and lucky else None,
            )
        )
        return await self._claim_rest(
            conn, packet_id, grabber, now, int(pick.seq), amount, left, remaining_amount - amount, row.kind, int(row.count)
        )

    async def refund(self, packet_id: str, now: datetime, *, force: bool = False) -> RefundResult | None:
        return await self._with_wallets(self._refund_txn, packet_id, now, force)  # type: ignore[no-any-return]

    async def _refund_txn(self, conn: AsyncConnection, packet_id: str, now: datetime, force: bool) -> RefundResult | None:
        p = packets.c
        # Lock the packet row by primary key first, like a grab does: one lock order.
        locked = (await conn.execute(sa.select(p.id).where(p.id == packet_id).with_for_update())).first()
        if locked is None:
            raise PacketNotFound(packet_id)
        where = [p.id == packet_id, p.refunded == sa.false(), p.remaining_count > 0]
        if not force:
            where.append(p.expires_at <= now)
        marked = await conn.execute(
            packets.update().where(*where).values(refunded=True, status=EXPIRED, refund_amount=p.remaining_amount)
        )
        if marked.rowcount == 0:
            return None
        row = (await conn.execute(sa.select(p.sender, p.refund_amount).where(p.id == packet_id))).one()
        amount = int(row.refund_amount)
        entry = await self._apply_txn(conn, row.sender, "refund", amount, now, packet_id)
        result = RefundResult(packet_id, row.sender, amount, entry.balance_after)
        await self._outbox.write_txn(conn, E.REDPACKET_REFUNDED, f"redpacket:{packet_id}", _refund_data(result, "expired" if not force else "forced"), now)
        return result

    async def get_packet(self, packet_id: str) -> Packet | None:
        async with self._db.transaction(readonly=True) as conn:
            row = (await conn.execute(sa.select(packets).where(packets.c.id == packet_id))).mappings().first()
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
        report = _report(balances, by_owner, by_kind.get("topup", 0), by_kind.get("adjust", 0), rows, unclaimed, granted, taken)
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
