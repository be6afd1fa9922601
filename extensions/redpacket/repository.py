"""Red packets (urn:xmppd:redpacket:0): the wallet ledger and the packets, in storage.

This module is the door: it names what the others hold, one concern each --
:mod:`.models` (values, errors, the repository protocol), :mod:`.policy` (the money rules as
pure functions), :mod:`.tables` (the SQL tables), :mod:`.memory` (the in-memory twin),
:mod:`.sql` (SQLite and MariaDB, account settlement).

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

from .memory import MemoryRedPacketRepository
from .models import (
    EXPIRED,
    FINISHED,
    KINDS,
    LEDGER_KINDS,
    OPEN,
    SYSTEM_WALLET,
    AllGone,
    AlreadyGrabbed,
    AuditReport,
    ClientIdReused,
    DailyLimitExceeded,
    GrabResult,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerEntry,
    NewPacket,
    Packet,
    PacketExpired,
    PacketNotFound,
    RecipientGone,
    RedPacketError,
    RedPacketRepository,
    RefundResult,
    SendResult,
    Share,
)
from .policy import daily_refusal, has_best_luck
from .sql import SqlRedPacketRepository, delete_account_txn, grab_events, tombstone, utcnow
from .tables import idempotency, ledger, packets, shares, transfers, wallets

__all__ = [
    "AllGone",
    "AlreadyGrabbed",
    "AuditReport",
    "ClientIdReused",
    "DailyLimitExceeded",
    "EXPIRED",
    "FINISHED",
    "GrabResult",
    "IdempotencyConflict",
    "InsufficientFunds",
    "KINDS",
    "LEDGER_KINDS",
    "LedgerEntry",
    "MemoryRedPacketRepository",
    "NewPacket",
    "OPEN",
    "Packet",
    "PacketExpired",
    "PacketNotFound",
    "RecipientGone",
    "RedPacketError",
    "RedPacketRepository",
    "RefundResult",
    "SYSTEM_WALLET",
    "SendResult",
    "Share",
    "SqlRedPacketRepository",
    "daily_refusal",
    "delete_account_txn",
    "grab_events",
    "has_best_luck",
    "idempotency",
    "ledger",
    "packets",
    "shares",
    "tombstone",
    "transfers",
    "utcnow",
    "wallets",
]
