"""Red packets: the values (packets, shares, ledger entries, results), the errors, and the
repository protocol every storage implements (:mod:`.memory`, :mod:`.sql`)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

#: Where the balance of a deleted account goes (not a JID any account can have: no '@').
SYSTEM_WALLET: Final = "system:escheat"
KINDS: Final = ("lucky", "equal")
LEDGER_KINDS: Final = ("topup", "send_debit", "grab_credit", "refund", "adjust")
OPEN, FINISHED, EXPIRED = "open", "finished", "expired"
#: A transfer its recipient declined: refunded to the sender at once (status of the packet row).
DECLINED: Final = "declined"



# -- values ---------------------------------------------------------------------------------


class RedPacketError(Exception):
    """Base of the repository's refusals (each maps to one protocol error). A refusal names its
    ``fields`` (set as attributes from the positional arguments, in order; missing trailing
    ones are None) and its ``text`` (a format string over them)."""

    fields: tuple[str, ...] = ()
    text = "{0}"

    def __init__(self, *values: object) -> None:
        if len(values) > max(len(self.fields), 1):
            raise TypeError(f"{type(self).__name__} takes {self.fields}, not {values!r}")
        named = {name: values[i] if i < len(values) else None for i, name in enumerate(self.fields)}
        super().__init__(self.text.format(*values, **named))
        for name, value in named.items():
            setattr(self, name, value)


class InsufficientFunds(RedPacketError):
    fields, text = ("owner", "balance", "needed"), "{owner} has {balance}, needs {needed}"
    owner: str
    balance: int
    needed: int


class IdempotencyConflict(RedPacketError):
    """An idempotency key used before for a different wallet move."""

    fields, text = ("key",), "the idempotency key {key!r} was used for a different request"
    key: str


class _PacketRefusal(RedPacketError):
    """A refusal about one packet, named by ``packet_id``."""

    fields = ("packet_id",)
    packet_id: str


class PacketNotFound(_PacketRefusal):
    text = "no red packet {packet_id!r}"


class AlreadyGrabbed(_PacketRefusal):
    fields, text = ("packet_id", "amount", "grabbed_at"), "already grabbed {amount} from {packet_id}"
    amount: int
    grabbed_at: datetime


class AllGone(_PacketRefusal):
    text = "every share of {packet_id} has been taken"


class PacketExpired(_PacketRefusal):
    text = "red packet {packet_id} has expired"


class RecipientGone(RedPacketError):
    """The local account a packet is for was deleted before the packet could be written."""

    fields, text = ("jid",), "{jid} does not exist"
    jid: str


class DailyLimitExceeded(RedPacketError):
    """The sender's packets since ``since`` (the start of the UTC day) plus this one would pass
    ``redpacket.daily_count`` or ``daily_amount``; ``count``/``amount``: what was sent already."""

    fields = ("owner", "count", "amount", "limit_count", "limit_amount")
    text = "{owner} sent {count} packets ({amount} units) today; limits {limit_count}/{limit_amount}"
    owner: str
    count: int
    amount: int
    limit_count: int
    limit_amount: int


class ClientIdReused(RedPacketError):
    fields, text = ("client_id",), "client id {client_id!r} was used for a different packet"
    client_id: str


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
    # Per-sender daily limits (redpacket.daily_count/daily_amount): the packets the sender sent
    # since day_start (the UTC day's start) are counted in the send's transaction, under the
    # sender's wallet lock, so concurrent sends cannot both slip under a limit. None: no limit.
    day_start: datetime | None = None
    daily_count: int = 0
    daily_amount: int = 0
    transfer: bool = False  # a 转账 transfer (one share, one-to-one)

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
    transfer: bool = False  # a 转账 transfer: accepted by its recipient, or back to the sender on expiry

    def same_request(self, new: NewPacket) -> bool:
        """A retry of the request that made this packet (shares aside: they are random)."""
        return (self.kind, self.total, self.count, self.greeting, self.target, self.exclusive_to, self.transfer) == (
            new.kind, new.total, new.count, new.greeting, new.target, new.exclusive_to, new.transfer
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

    async def refund(
        self, packet_id: str, now: datetime, *, force: bool = False, declined: bool = False
    ) -> RefundResult | None:
        """Give the unclaimed remainder back to the sender, once (None: nothing to give back: refunded
        already, every share taken, or not yet expired without ``force``). ``declined``: its
        recipient declined a transfer (``force`` implied): the status is ``declined`` and the
        ledger entry's reason ``declined``."""
        ...

    async def get_packet(self, packet_id: str) -> Packet | None: ...

    async def shares(self, packet_id: str) -> list[Share]: ...

    async def due_refunds(self, now: datetime, limit: int = 100) -> list[str]: ...

    async def next_expiry(self) -> datetime | None: ...

    async def history(
        self, owner: str, *, limit: int = 20, before: int | None = None, kinds: tuple[str, ...] | None = None
    ) -> tuple[builtins.list[LedgerEntry], bool]: ...

    async def totals(self, owner: str, kind: str) -> tuple[int, int]: ...

    async def audit(self) -> AuditReport: ...
