"""Red packets (urn:xmppd:redpacket:0): ``xmppctl wallet ...`` verbs, straight on storage.

``wallet topup JID AMOUNT``, ``wallet adjust JID AMOUNT --reason R``, ``wallet balance JID``,
``wallet audit``, ``wallet packet ID`` and ``wallet refund ID`` (force the refund of an open
packet's remainder). Amounts are written and shown in display units (``12.34``), exactly as in
the ad-hoc commands (money.py). Only existing accounts have wallets credited. Every change is one
ledger entry in the same transaction as the balance, exactly as when the server does it, so
xmppctl may run while the server is running. The verbs that only read never create a database.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from xmppd.cli import Ctl, CtlError, _split_jid

from .models import InsufficientFunds, PacketNotFound
from .money import format_amount, parse_amount
from .sql import SqlRedPacketRepository


async def _repo(ctl: Ctl) -> SqlRedPacketRepository:
    return SqlRedPacketRepository(await ctl.db(), ctl.outbox())


async def _existing_owner(ctl: Ctl, text: str, *, required: bool = True) -> str:
    """The wallet of an account that exists: money is never credited to a name nobody holds
    (whoever registered it later would find it). Reading a wallet without an account (what a
    test or an old deletion left) works, with a note on stderr."""
    username = _split_jid(ctl, text)
    owner = f"{username}@{ctl.config.server.domain}"
    if await (await ctl.accounts()).repo.get(username, ctl.config.server.domain) is None:
        if required:
            raise CtlError(f"there is no account {owner}")
        print(f"xmppctl: note: there is no account {owner}", file=sys.stderr)
    return owner


def _amount(ctl: Ctl, text: str, *, signed: bool) -> int:
    try:
        return parse_amount(text, ctl.config.section("redpacket").precision, signed=signed)
    except ValueError as exc:
        raise CtlError(f"amount: {exc}") from None


def _money(ctl: Ctl, amount: int) -> str:
    opts = ctl.config.section("redpacket")
    return format_amount(amount, opts.precision, opts.currency)


def _now() -> datetime:
    return datetime.now(UTC)


async def _topup(ctl: Ctl, args: argparse.Namespace) -> int:
    amount = _amount(ctl, args.amount, signed=False)
    owner = await _existing_owner(ctl, args.jid)
    entry = await (await _repo(ctl)).topup(owner, amount, _now(), args.reason)
    print(f"{owner}: +{_money(ctl, amount)}, balance {_money(ctl, entry.balance_after)} (ledger entry {entry.id})")
    return 0


async def _adjust(ctl: Ctl, args: argparse.Namespace) -> int:
    amount = _amount(ctl, args.amount, signed=True)
    if not args.reason.strip():
        raise CtlError("--reason must say why")
    owner = await _existing_owner(ctl, args.jid)
    try:
        entry = await (await _repo(ctl)).adjust(owner, amount, args.reason.strip(), _now())
    except InsufficientFunds as exc:
        raise CtlError(f"{owner} has {_money(ctl, exc.balance)}: the balance cannot go below zero") from None
    sign = "+" if amount > 0 else ""
    print(f"{owner}: {sign}{_money(ctl, amount)}, balance {_money(ctl, entry.balance_after)} (ledger entry {entry.id})")
    return 0


async def _balance(ctl: Ctl, args: argparse.Namespace) -> int:
    owner = await _existing_owner(ctl, args.jid, required=False)
    print(f"{owner}: {_money(ctl, await (await _repo(ctl)).balance(owner))}")
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
    money = lambda amount: _money(ctl, amount)  # noqa: E731
    print(f"{packet.id}: {packet.kind} from {packet.sender} to {packet.target}, total {money(packet.total)} in {packet.count} shares, "
          f"status {packet.status}, {packet.remaining_count} shares ({money(packet.remaining_amount)}) left"
          + (f", refunded {money(packet.refund_amount)}" if packet.refunded else "")
          + (f", best luck {packet.best_luck}" if packet.best_luck else ""))
    for s in await repo.shares(args.id):
        print(f"  #{s.seq}: {money(s.amount)}" + (f" by {s.grabbed_by} at {s.grabbed_at:%Y-%m-%d %H:%M:%S}" if s.grabbed_by else ""))
    return 0


async def _refund(ctl: Ctl, args: argparse.Namespace) -> int:
    try:
        result = await (await _repo(ctl)).refund(args.id, _now(), force=True)
    except PacketNotFound:
        raise CtlError(f"no red packet {args.id}") from None
    if result is None:
        raise CtlError(f"{args.id} has nothing to refund (already refunded or every share taken)")
    print(f"refunded {_money(ctl, result.amount)} to {result.sender}, balance {_money(ctl, result.balance)}")
    return 0


def register(subparsers: Any) -> None:
    wallet = subparsers.add_parser("wallet", help="red-packet wallets: topup, adjust, balance, audit, packet, refund")
    verbs = wallet.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("topup", help="credit an existing account's wallet (AMOUNT in display units, e.g. 12.34)")
    p.add_argument("jid")
    p.add_argument("amount")
    p.add_argument("--reason", default=None)
    p.set_defaults(func=_topup)
    p = verbs.add_parser("adjust", help="correct a wallet by a signed amount in display units (e.g. -1.50), with a reason")
    p.add_argument("jid")
    p.add_argument("amount")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=_adjust)
    p = verbs.add_parser("balance", help="show a wallet's balance")
    p.add_argument("jid")
    p.set_defaults(func=_balance, readonly=True)
    verbs.add_parser("audit", help="check the money invariant (exit 3 when it fails)").set_defaults(func=_audit, readonly=True)
    p = verbs.add_parser("packet", help="inspect a red packet and its shares")
    p.add_argument("id")
    p.set_defaults(func=_packet, readonly=True)
    p = verbs.add_parser("refund", help="refund an open packet's remainder to its sender now")
    p.add_argument("id")
    p.set_defaults(func=_refund)
