"""Red packets: the in-memory twin of the SQL repository (tests and the contract both pass)."""

from __future__ import annotations

import builtins
from dataclasses import replace
from datetime import datetime

from .models import (
    DECLINED,
    EXPIRED,
    OPEN,
    AuditReport,
    ClientIdReused,
    GrabResult,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerEntry,
    NewPacket,
    Packet,
    PacketNotFound,
    RedPacketRepository,
    RefundResult,
    SendResult,
    Share,
)
from .policy import GrabState, audit_report, check_move, check_new, claim, daily_refusal, positive_units

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
        return self._apply(owner, "topup", positive_units(amount), now, reason=reason)

    async def adjust(self, owner: str, amount: int, reason: str, now: datetime) -> LedgerEntry:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise ValueError("an adjustment is a non-zero integer of minor units")
        if not reason:
            raise ValueError("an adjustment needs a reason")
        return self._apply(owner, "adjust", amount, now, reason=reason)

    async def move_once(
        self, key: str, owner: str, kind: str, amount: int, reason: str | None, now: datetime
    ) -> tuple[LedgerEntry, bool]:
        check_move(key, kind, amount, reason)
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
        check_new(new)
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
        if new.day_start is not None:
            sent = [e for e in self._ledger if e.owner == new.sender and e.kind == "send_debit" and e.created_at >= new.day_start]
            refused = daily_refusal(new, len(sent), -sum(e.amount for e in sent))
            if refused is not None:
                raise refused
        packet = Packet(
            new.id, new.sender, new.kind, new.total, new.count, new.greeting, new.target, new.is_room,
            new.exclusive_to, new.client_id, new.lang, new.created_at, new.expires_at, OPEN,
            new.count, new.total, False, 0, None, None, new.transfer,
        )
        self._packets[new.id] = packet
        self._shares[new.id] = [Share(i, a, None, None) for i, a in enumerate(new.shares)]
        self._by_client[(new.sender, new.client_id)] = new.id
        entry = self._apply(new.sender, "send_debit", -new.total, new.created_at, packet_id=new.id)
        return SendResult(packet, True, entry.balance_after)

    async def grab(self, packet_id: str, grabber: str, now: datetime) -> GrabResult:
        packet = self._packets.get(packet_id)
        state = None if packet is None else GrabState(
            packet.remaining_count, packet.remaining_amount, packet.refunded, packet.expires_at, packet.kind, packet.count
        )
        shares_ = self._shares.get(packet_id, [])
        c = claim(packet_id, state, shares_, grabber, now)
        assert packet is not None
        shares_[c.seq] = Share(c.seq, c.amount, grabber, now)
        self._packets[packet_id] = replace(
            packet, remaining_count=c.remaining_count, remaining_amount=c.remaining_amount, status=c.status,
            finished_at=c.finished_at, best_luck=c.best_luck,
        )
        entry = self._apply(grabber, "grab_credit", c.amount, now, packet_id=packet_id)
        return GrabResult(
            packet_id, grabber, c.amount, c.seq, now, entry.balance_after, c.remaining_count, c.remaining_amount, c.best,
        )

    async def refund(
        self, packet_id: str, now: datetime, *, force: bool = False, declined: bool = False
    ) -> RefundResult | None:
        packet = self._packets.get(packet_id)
        if packet is None:
            raise PacketNotFound(packet_id)
        if packet.refunded or packet.remaining_count == 0 or (not (force or declined) and now < packet.expires_at):
            return None
        amount = packet.remaining_amount
        self._packets[packet_id] = replace(packet, refunded=True, refund_amount=amount, status=DECLINED if declined else EXPIRED)
        entry = self._apply(packet.sender, "refund", amount, now, packet_id=packet_id, reason="declined" if declined else None)
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
        return audit_report(dict(self._balances), ledger_by_owner, topups, adjustments, rows, unclaimed, granted, grabbed)
