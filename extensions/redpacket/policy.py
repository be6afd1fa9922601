"""Red packets: the money rules as pure functions (no storage, no I/O): who has best luck, the
daily limits, what a wallet move or a new packet may be, and the audit's verdict."""

from __future__ import annotations

from collections.abc import Sequence

from .models import KINDS, AuditReport, DailyLimitExceeded, NewPacket


def has_best_luck(kind: str, count: int) -> bool:
    """Best luck (手气最佳, the largest share) exists only where shares differ by luck: a lucky
    packet of two shares or more. Equal and single-share packets finish with none stored."""
    return kind == "lucky" and count >= 2


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
