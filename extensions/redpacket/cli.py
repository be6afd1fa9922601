"""Red packets (urn:xmppd:redpacket:0): ``xmppctl wallet ...`` verbs, straight on storage.

``wallet topup JID AMOUNT``, ``wallet adjust JID AMOUNT --reason R``, ``wallet balance JID``,
``wallet audit``, ``wallet packet ID`` and ``wallet refund ID`` (force the refund of an open
packet's remainder). Amounts are integer minor units. Every change is one ledger entry in the
same transaction as the balance, exactly as when the server does it, so xmppctl may run while
the server is running.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from xmppd.cli import Ctl, CtlError, _split_jid

from .repository import InsufficientFunds, PacketNotFound, SqlRedPacketRepository


async def _repo(ctl: Ctl) -> SqlRedPacketRepository:
    return SqlRedPacketRepository(await ctl.db())


def _owner(ctl: Ctl, text: str) -> str:
    return f"{_split_jid(ctl, text)}@{ctl.config.server.domain}"


def _now() -> datetime:
    return datetime.now(UTC)


async def _topup(ctl: Ctl, args: argparse.Namespace) -> int:
    owner = _owner(ctl, args.jid)
    if args.amount <= 0:
        raise CtlError("a top-up is a positive number of minor units")
    entry = await (await _repo(ctl)).topup(owner, args.amount, _now(), args.reason)
    print(f"{owner}: +{args.amount}, balance {entry.balance_after} (ledger entry {entry.id})")
    return 0


async def _adjust(ctl: Ctl, args: argparse.Namespace) -> int:
    owner = _owner(ctl, args.jid)
    if args.amount == 0:
        raise CtlError("an adjustment is a non-zero number of minor units")
    if not args.reason.strip():
        raise CtlError("--reason must say why")
    try:
        entry = await (await _repo(ctl)).adjust(owner, args.amount, args.reason.strip(), _now())
    except InsufficientFunds as exc:
        raise CtlError(f"{owner} has {exc.balance}: the balance cannot go below zero") from None
    print(f"{owner}: {args.amount:+d}, balance {entry.balance_after} (ledger entry {entry.id})")
    return 0


async def _balance(ctl: Ctl, args: argparse.Namespace) -> int:
    owner = _owner(ctl, args.jid)
    print(f"{owner}: {await (await _repo(ctl)).balance(owner)}")
    return 0


async def _audit(ctl: Ctl, args: argparse.Namespace) -> int:
    report = await (await _repo(ctl)).audit()
    print(report)
    return 0 if report.ok else 3


async def _packet(ctl: Ctl, args: argparse.Namespace) -> int:
    repo = await _repo(ctl)
    packet = await repo.get_packet(args.id)
    if packet is None:
        raise CtlError(f"no red packet {args.id}")
    print(f"{packet.id}: {packet.kind} from {packet.sender} to {packet.target}, total {packet.total} in {packet.count} shares, "
          f"status {packet.status}, {packet.remaining_count} shares ({packet.remaining_amount}) left"
          + (f", refunded {packet.refund_amount}" if packet.refunded else "")
          + (f", best luck {packet.best_luck}" if packet.best_luck else ""))
    for s in await repo.shares(args.id):
        print(f"  #{s.seq}: {s.amount}" + (f" by {s.grabbed_by} at {s.grabbed_at:%Y-%m-%d %H:%M:%S}" if s.grabbed_by else ""))
    return 0


async def _refund(ctl: Ctl, args: argparse.Namespace) -> int:
    try:
        result = await (await _repo(ctl)).refund(args.id, _now(), force=True)
    except PacketNotFound:
        raise CtlError(f"no red packet {args.id}") from None
    if result is None:
        raise CtlError(f"{args.id} has nothing to refund (already refunded or every share taken)")
    print(f"refunded {result.amount} to {result.sender}, balance {result.balance}")
    return 0


def register(subparsers: Any) -> None:
    wallet = subparsers.add_parser("wallet", help="red-packet wallets: topup, adjust, balance, audit, packet, refund")
    verbs = wallet.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("topup", help="credit a wallet (minor units)")
    p.add_argument("jid")
    p.add_argument("amount", type=int)
    p.add_argument("--reason", default=None)
    p.set_defaults(func=_topup)
    p = verbs.add_parser("adjust", help="correct a wallet by a signed amount, with a reason")
    p.add_argument("jid")
    p.add_argument("amount", type=int)
    p.add_argument("--reason", required=True)
    p.set_defaults(func=_adjust)
    p = verbs.add_parser("balance", help="show a wallet's balance")
    p.add_argument("jid")
    p.set_defaults(func=_balance)
    verbs.add_parser("audit", help="check the money invariant (exit 3 when it fails)").set_defaults(func=_audit)
    p = verbs.add_parser("packet", help="inspect a red packet and its shares")
    p.add_argument("id")
    p.set_defaults(func=_packet)
    p = verbs.add_parser("refund", help="refund an open packet's remainder to its sender now")
    p.add_argument("id")
    p.set_defaults(func=_refund)
