"""Red packets: the money rules as pure functions (no storage, no I/O): the grab (which share,
whether the packet is finished, who has best luck, why a grab is refused), the daily limits,
what a wallet move or a new packet may be, and the audit's verdict.

Every repository (:mod:`.memory`, and :mod:`.sql` on its SQLite fast path and its portable
path) keeps only its I/O around :func:`claim`: read the packet's :class:`GrabState` and its
shares, ask the rule, write the :class:`Claim` (and the credit) in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .models import (
    FINISHED,
    KINDS,
    OPEN,
    AllGone,
    AlreadyGrabbed,
    AuditReport,
    DailyLimitExceeded,
    NewPacket,
    PacketExpired,
    PacketNotFound,
    RedPacketError,
    Share,
)


def has_best_luck(kind: str, count: int) -> bool:
    """Best luck (手气最佳, the largest share) exists only where shares differ by luck: a lucky
    packet of two shares or more. Equal and single-share packets finish with none stored."""
    return kind == "lucky" and count >= 2


@dataclass(frozen=True, slots=True)
class GrabState:
    """What a grab reads of a packet (under its row lock, or SQLite's one writer)."""

    remaining_count: int
    remaining_amount: int
    refunded: bool
    expires_at: datetime
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What a grab writes: the share it takes (``seq``, ``amount``) and the packet's new counters;
    ``finished_at`` when it took the last share, and then ``best`` (best luck) if the packet has one."""

    seq: int
    amount: int
    remaining_count: int
    remaining_amount: int
    status: str
    finished_at: datetime | None
    best: Share | None

    @property
    def best_luck(self) -> str | None:
        return self.best.grabbed_by if self.best is not None else None


def grab_refusal(packet_id: str, state: GrabState | None, own: Share | None, now: datetime) -> RedPacketError | None:
    """Why a grab is refused, in this order: no such packet, the grabber has a share already
    (``own``), every share is taken, the packet was refunded or expired; None: it may go on."""
    if state is None:
        return PacketNotFound(packet_id)
    if own is not None:
        assert own.grabbed_at is not None
        return AlreadyGrabbed(packet_id, own.amount, own.grabbed_at)
    if state.remaining_count == 0:
        return AllGone(packet_id)
    if state.refunded or now >= state.expires_at:
        return PacketExpired(packet_id)
    return None


def best_share(shares: Iterable[Share]) -> Share | None:
    """Best luck among the taken shares: the largest; ties go to the earliest grab (the lowest
    seq, as shares are taken in seq order)."""
    taken = [s for s in shares if s.grabbed_by is not None]
    return max(taken, key=lambda s: (s.amount, -s.seq)) if taken else None


def claim(packet_id: str, state: GrabState | None, shares: Sequence[Share], grabber: str, now: datetime) -> Claim:
    """The grab rule: ``grabber`` takes the lowest unclaimed share of the packet (``shares``: all
    of them, as stored); the last share finishes it, and a packet with best luck
    (:func:`has_best_luck`) names it then. Raises the refusal (:func:`grab_refusal`)."""
    own = next((s for s in shares if s.grabbed_by == grabber), None)
    refused = grab_refusal(packet_id, state, own, now)
    if refused is not None:
        raise refused
    assert state is not None
    free = [s for s in shares if s.grabbed_by is None]
    if not free:  # the counters say a share is left and the shares disagree: refuse, never overpay
        raise AllGone(packet_id)
    share = min(free, key=lambda s: s.seq)
    left = state.remaining_count - 1
    if left > 0:
        return Claim(share.seq, share.amount, left, state.remaining_amount - share.amount, OPEN, None, None)
    best = None
    if has_best_luck(state.kind, state.count):
        best = best_share(Share(s.seq, s.amount, grabber, now) if s.seq == share.seq else s for s in shares)
    return Claim(share.seq, share.amount, 0, state.remaining_amount - share.amount, FINISHED, now, best)


def daily_refusal(new: "NewPacket", count: int, amount: int) -> DailyLimitExceeded | None:
    """Policy: may ``new`` be sent when its sender sent ``count`` packets of ``amount`` units
    since ``new.day_start``? (0 limits: none.)"""
    if new.day_start is None:
        return None
    if (new.daily_count and count + 1 > new.daily_count) or (new.daily_amount and amount + new.total > new.daily_amount):
        return DailyLimitExceeded(new.sender, count, amount, new.daily_count, new.daily_amount)
    return None


def audit_report(
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


def positive_units(amount: int, what: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"{what} must be a positive integer of minor units, not {amount!r}")
    return amount


def check_move(key: str, kind: str, amount: int, reason: str | None) -> None:
    if not key or len(key) > 191:
        raise ValueError("an idempotency key has 1 to 191 characters")
    if kind == "topup":
        positive_units(amount)
    elif kind == "adjust":
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise ValueError("an adjustment is a non-zero integer of minor units")
        if not reason:
            raise ValueError("an adjustment needs a reason")
    else:
        raise ValueError(f"a wallet move is a topup or an adjust, not {kind!r}")


def check_new(new: NewPacket) -> None:
    if new.kind not in KINDS:
        raise ValueError(f"unknown packet kind {new.kind!r}")
    if not new.shares:
        raise ValueError("a packet has at least one share")
    for s in new.shares:
        positive_units(s, "a share")
    if new.expires_at <= new.created_at:
        raise ValueError("a packet expires after it is created")
