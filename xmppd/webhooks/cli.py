"""``xmppctl webhooks list|retry|purge``: the outbox's dead letters (and backlog), on storage.

``list`` shows dead letters (``--pending``: events still waiting; ``--all``: both) with their
attempts and last error, and the counts; ``retry [EVENT_ID ...]`` puts dead letters back in the
queue (every one without ids: ``--all``); ``purge [EVENT_ID ...]`` deletes them. xmppctl may run
while the server runs: a retried event is delivered by whichever node claims it first.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from ..timestamps import millis
from .delivery import OutboxStore


async def _store(ctl: Any) -> OutboxStore:
    return OutboxStore(await ctl.db())


async def _list(ctl: Any, args: argparse.Namespace) -> int:
    store = await _store(ctl)
    dead: bool | None = None if args.all else (False if args.pending else True)
    rows = await store.list(dead=dead, limit=args.limit)
    if args.json:
        print(json.dumps([{
            "id": r.event_id, "event": r.event, "subject": r.subject, "created_at": millis(r.created_at),
            "attempts": r.attempts, "dead_at": millis(r.dead_at) if r.dead_at else None, "last_error": r.last_error,
        } for r in rows], indent=1))
    else:
        for r in rows:
            state = f"dead since {millis(r.dead_at)}" if r.dead_at else f"next {millis(r.next_at)}"
            print(f"{r.event_id}  {r.event:<20} {r.subject}  created {millis(r.created_at)}  attempts {r.attempts}  {state}"
                  + (f"  last error: {r.last_error}" if r.last_error else ""))
    waiting, dead_n = await store.counts()
    print(f"{waiting} events waiting, {dead_n} dead letters", file=sys.stderr)
    return 0


def _ids(ctl: Any, args: argparse.Namespace) -> list[str] | None:
    from xmppd.cli import CtlError

    if args.ids and args.all:
        raise CtlError("give event ids or --all, not both")
    if not args.ids and not args.all:
        raise CtlError("give the event ids (see `xmppctl webhooks list`) or --all")
    return None if args.all else list(args.ids)


async def _retry(ctl: Any, args: argparse.Namespace) -> int:
    n = await (await _store(ctl)).retry(_ids(ctl, args), datetime.now(UTC))
    print(f"{n} dead letters queued again")
    return 0


async def _purge(ctl: Any, args: argparse.Namespace) -> int:
    n = await (await _store(ctl)).purge(_ids(ctl, args))
    print(f"{n} dead letters deleted")
    return 0


def add_cli(sub: Any) -> None:
    hooks = sub.add_parser("webhooks", help="webhook outbox: list, retry, purge dead letters").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    p = hooks.add_parser("list", help="dead letters (--pending: waiting events; --all: both)")
    p.add_argument("--pending", action="store_true")
    p.add_argument("--all", action="store_true")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list, readonly=True)
    p = hooks.add_parser("retry", help="queue dead letters again (ids, or --all)")
    p.add_argument("ids", nargs="*", metavar="EVENT_ID")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=_retry)
    p = hooks.add_parser("purge", help="delete dead letters (ids, or --all)")
    p.add_argument("ids", nargs="*", metavar="EVENT_ID")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=_purge)
