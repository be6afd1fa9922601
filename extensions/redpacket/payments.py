"""Red packets: payment hooks -- top-ups and withdrawals the app confirms (docs/webhooks.md §4).

A user (ad-hoc command ``#payment``) or the app asks for a top-up or a withdrawal; the server
records a *pending* request and writes ``payment.requested`` to the webhook outbox in the same
transaction. A withdrawal holds its amount at once (an ``adjust`` ledger entry taking it out of
the wallet), so the money cannot be spent twice while the app pays out. The wallet moves only
when the app posts its signed confirmation (``POST /api/v1/payments/<id>/confirm`` or
``/reject``, body signed with ``webhooks.secret``: xmppd_extensions.redpacket.payments_http):

===========  ====================================  =====================================
kind         confirmed                             rejected
===========  ====================================  =====================================
topup        ``topup`` entry: the wallet grows      nothing moves
withdraw     nothing moves (the hold leaves)       ``adjust`` entry: the hold comes back
===========  ====================================  =====================================

Each settlement is one transaction: the request row is locked, moved from ``pending`` by a
conditional ``UPDATE`` (rowcount checked), the wallet entry written, and ``payment.confirmed`` /
``payment.rejected`` added to the outbox. Settling again with the same outcome is answered with
the settled request and changes nothing (idempotent); the other outcome is refused. Money is
integer minor units. The wallet audit (``balances + unclaimed == topups + adjustments``) holds
throughout; and ``balances + unclaimed + pending withdrawals`` changes only by confirmed top-ups
and withdrawals.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.storage.engine import Database, is_unique_violation
from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, UtcDateTime, indexed_string, metadata
from xmppd.timestamps import millis
from xmppd.webhooks import events as E
from xmppd.webhooks.outbox import DISABLED, Outbox

from .models import RedPacketError
from .sql import SqlRedPacketRepository
from .tables import wallets

__all__ = [
    "KINDS",
    "Payment",
    "PaymentConflict",
    "PaymentNotFound",
    "PaymentRepository",
    "payments",
]

KINDS: Final = ("topup", "withdraw")
PENDING, CONFIRMED, REJECTED = "pending", "confirmed", "rejected"

payments = sa.Table(
    "redpacket_payments",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", indexed_string(), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("reference", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("settled_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("owner", "client_id"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("kind IN ('topup', 'withdraw')", name="kind_known"),
    sa.CheckConstraint("status IN ('pending', 'confirmed', 'rejected')", name="status_known"),
    sa.Index(None, "status"),
    **MYSQL_TABLE_KWARGS,
)


class PaymentNotFound(RedPacketError):
    fields, text = ("payment_id",), "no payment request {payment_id!r}"
    payment_id: str


class PaymentConflict(RedPacketError):
    """The request is already settled the other way, or a client id was reused differently."""

    fields, text = ("message", "payment"), "{message}"
    message: str
    payment: Payment | None


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    owner: str
    kind: str
    amount: int
    status: str
    client_id: str
    reference: str | None
    created_at: datetime
    settled_at: datetime | None
    balance: int | None = None  # the wallet's balance after the operation that returned it

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "owner": self.owner, "kind": self.kind, "amount": self.amount, "status": self.status,
            "reference": self.reference, "created_at": millis(self.created_at),
            "settled_at": millis(self.settled_at) if self.settled_at else None, "balance": self.balance,
        }


def _payment(r: Any, balance: int | None = None) -> Payment:
    return Payment(r.id, r.owner, r.kind, int(r.amount), r.status, r.client_id, r.reference, r.created_at, r.settled_at, balance)


def _check_amount(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0 or amount > 2**62:
        raise ValueError(f"amount must be a positive integer of minor units, not {amount!r}")
    return amount


class PaymentRepository:
    """Payment requests on SQL, sharing the wallets' one way of moving money (``_apply_txn``)."""

    def __init__(self, db: Database, outbox: Outbox = DISABLED) -> None:
        self._db = db
        self._outbox = outbox
        self._wallets = SqlRedPacketRepository(db, outbox)

    async def request(self, owner: str, kind: str, amount: int, client_id: str, now: datetime) -> tuple[Payment, bool]:
        """Record a pending request (a withdrawal holds its amount); (request, created). A retry
        with the same ``client_id`` returns the first request."""
        if kind not in KINDS:
            raise ValueError(f"kind is 'topup' or 'withdraw', not {kind!r}")
        _check_amount(amount)
        if not client_id or len(client_id) > 64:
            raise ValueError("client_id is 1 to 64 characters")
        try:
            return await self._wallets._with_wallets(self._request_txn, owner, kind, amount, client_id, now)  # type: ignore[no-any-return]
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
        return await self._wallets._with_wallets(self._request_txn, owner, kind, amount, client_id, now)  # type: ignore[no-any-return]

    async def _request_txn(
        self, conn: AsyncConnection, owner: str, kind: str, amount: int, client_id: str, now: datetime
    ) -> tuple[Payment, bool]:
        p = payments.c
        row = (await conn.execute(sa.select(payments).where(p.owner == owner, p.client_id == client_id))).first()
        if row is not None:
            if (row.kind, int(row.amount)) != (kind, amount):
                raise PaymentConflict(f"client id {client_id!r} was used for a different request", _payment(row))
            return _payment(row), False
        payment_id = secrets.token_hex(8)
        balance = None
        if kind == "withdraw":  # the hold: raises InsufficientFunds (and rolls back) without the money
            entry = await SqlRedPacketRepository._apply_txn(conn, owner, "adjust", -amount, now, None, f"withdrawal {payment_id} held")
            balance = entry.balance_after
        else:  # the wallet's row lock orders this event among the wallet's others (its subject)
            await conn.execute(sa.select(wallets.c.owner).where(wallets.c.owner == owner).with_for_update())
        await conn.execute(payments.insert().values(
            id=payment_id, owner=owner, kind=kind, amount=amount, status=PENDING, client_id=client_id, reference=None,
            created_at=now, settled_at=None,
        ))
        payment = Payment(payment_id, owner, kind, amount, PENDING, client_id, None, now, None, balance)
        await self._outbox.write_txn(conn, E.PAYMENT_REQUESTED, f"wallet:{owner}", payment.as_json(), now)
        return payment, True

    async def settle(self, payment_id: str, outcome: str, now: datetime, reference: str | None = None) -> tuple[Payment, bool]:
        """Confirm or reject a pending request; (request, changed). Idempotent for the same outcome."""
        if outcome not in (CONFIRMED, REJECTED):
            raise ValueError(f"outcome is 'confirmed' or 'rejected', not {outcome!r}")
        return await self._wallets._with_wallets(self._settle_txn, payment_id, outcome, now, reference)  # type: ignore[no-any-return]

    async def _settle_txn(
        self, conn: AsyncConnection, payment_id: str, outcome: str, now: datetime, reference: str | None
    ) -> tuple[Payment, bool]:
        p = payments.c
        row = (await conn.execute(sa.select(payments).where(p.id == payment_id).with_for_update())).first()
        if row is None:
            raise PaymentNotFound(payment_id)
        if row.status == outcome:
            return _payment(row), False
        if row.status != PENDING:
            raise PaymentConflict(f"payment {payment_id} is already {row.status}", _payment(row))
        moved = await conn.execute(
            payments.update().where(p.id == payment_id, p.status == PENDING)
            .values(status=outcome, settled_at=now, reference=reference)
        )
        if moved.rowcount != 1:  # settled by someone else since the read (only without the row lock)
            raise PaymentConflict(f"payment {payment_id} was settled meanwhile")
        owner, amount = row.owner, int(row.amount)
        balance: int | None = None
        if row.kind == "topup" and outcome == CONFIRMED:
            balance = (await SqlRedPacketRepository._apply_txn(conn, owner, "topup", amount, now, None, f"payment {payment_id}")).balance_after
        elif row.kind == "withdraw" and outcome == REJECTED:
            balance = (await SqlRedPacketRepository._apply_txn(
                conn, owner, "adjust", amount, now, None, f"withdrawal {payment_id} rejected")).balance_after
        payment = Payment(payment_id, owner, row.kind, amount, outcome, row.client_id, reference, row.created_at, now, balance)
        event = E.PAYMENT_CONFIRMED if outcome == CONFIRMED else E.PAYMENT_REJECTED
        await self._outbox.write_txn(conn, event, f"wallet:{owner}", payment.as_json(), now)
        return payment, True

    async def get(self, payment_id: str) -> Payment | None:
        async with self._db.transaction(readonly=True) as conn:
            row = (await conn.execute(sa.select(payments).where(payments.c.id == payment_id))).first()
        return _payment(row) if row is not None else None

    async def pending_total(self, kind: str = "withdraw") -> int:
        """The money held by pending requests of ``kind``."""
        p = payments.c
        async with self._db.transaction(readonly=True) as conn:
            value = (await conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(p.amount), 0)).where(p.kind == kind, p.status == PENDING)
            )).scalar_one()
        return int(value)

    async def list(self, owner: str | None = None, status: str | None = None, limit: int = 100) -> list[Payment]:
        p = payments.c
        q = sa.select(payments).order_by(p.created_at.desc(), p.id).limit(limit)
        if owner is not None:
            q = q.where(p.owner == owner)
        if status is not None:
            q = q.where(p.status == status)
        async with self._db.transaction(readonly=True) as conn:
            return [_payment(r) for r in (await conn.execute(q)).all()]
