#!/usr/bin/env python3
"""Red packets (urn:xmppd:redpacket:0): database statements and time per open, in process.

    .venv/bin/python bench/redpacket_probe.py                     # SQLite, then MariaDB
    .venv/bin/python bench/redpacket_probe.py --backends sqlite --grabs 200

Runs the feature's own ``open`` iq handler (the code a client's ``<open/>`` reaches) against a
fresh database, with an in-memory room directory and a no-op ``send``, and counts what reaches
the database per open: statements (BEGIN included; SQLite's trace callback, so statements
run on the driver's thread directly count too; SQLAlchemy's ``before_cursor_execute`` on MariaDB), commits/rollbacks and, on SQLite, calls to aiosqlite's connection thread (each
one a hand-off to that thread and back). Four cases: a grabber's first grab (no wallet yet), a grab
into an existing wallet, the grab that takes the last share (best luck), and an open of a
packet whose shares are all gone. Sequential, one open at a time: this measures the cost of
one open, not contention (that is ``bench/redpacket_storm.py``).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lxml import etree  # noqa: E402

from xmppd.core.dispatch import IqRequest  # noqa: E402
from xmppd.errors import StanzaError  # noqa: E402
from xmppd.jid import JID  # noqa: E402
from xmppd.storage.engine import Database  # noqa: E402
from xmppd.storage.migrations import upgrade  # noqa: E402
from xmppd_extensions.redpacket.feature import NS, RedPacket, RedPacketOptions  # noqa: E402
from xmppd_extensions.redpacket.models import NewPacket  # noqa: E402
from xmppd_extensions.redpacket.sql import SqlRedPacketRepository  # noqa: E402

DOMAIN = "probe.example"
ROOM = JID.parse(f"room@conference.{DOMAIN}")
MARIADB = "mysql+aiomysql://root@127.0.0.1:3306"


class Clock:
    def now(self) -> float:
        return time.time()


class Ctx:
    """What ``RedPacket.open`` reads from its context."""

    domain = DOMAIN
    clock = Clock()

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sent = 0

    async def send(self, _msg: Any) -> None:
        self.sent += 1


class Rooms:
    """An in-memory room directory: everyone is a member."""

    def is_room(self, jid: JID) -> bool:
        return jid == ROOM

    async def is_member(self, room: JID, user: JID) -> bool:
        return True

    async def may_post(self, room: JID, user: JID, message: Any) -> None:
        return None

    async def post(self, room: JID, message: Any) -> None:
        return None


@dataclass
class Counter:
    statements: int = 0
    ends: int = 0  # commits and rollbacks
    hops: int = 0  # calls run on aiosqlite's connection thread (SQLite only)
    texts: list[str] = field(default_factory=list)

    def install(self, db: Database) -> None:
        engine = db.engine.sync_engine
        if db.is_sqlite:
            import aiosqlite.core

            original = aiosqlite.core.Connection._execute
            counter = self

            async def counted(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
                counter.hops += 1
                return await original(conn, fn, *args, **kwargs)

            aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]

        def seen(statement: str) -> None:
            self.statements += 1
            self.texts.append(" ".join(statement.split())[:110])

        if db.is_sqlite:
            # SQLite's own trace: also sees statements run on the driver's thread directly.
            @sa.event.listens_for(engine, "checkout")
            def _checkout(dbapi_connection: Any, *args: Any) -> None:
                dbapi_connection.driver_connection._conn.set_trace_callback(
                    lambda sql: None if sql in ("COMMIT", "ROLLBACK") or sql.startswith("PRAGMA") else seen(sql)
                )
        else:
            @sa.event.listens_for(engine, "before_cursor_execute")
            def _stmt(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                seen(statement)

        @sa.event.listens_for(engine, "commit")
        def _commit(conn: Any) -> None:
            self.ends += 1
            self.texts.append("COMMIT")

        @sa.event.listens_for(engine, "rollback")
        def _rollback(conn: Any) -> None:
            self.ends += 1
            self.texts.append("ROLLBACK")

    def reset(self) -> None:
        self.statements, self.ends, self.hops, self.texts = 0, 0, 0, []


def _open_request(packet_id: str, who: str) -> IqRequest:
    iq = etree.Element("{jabber:client}iq", type="set", id="x")
    payload = etree.SubElement(iq, f"{{{NS}}}open", id=packet_id)
    return IqRequest(iq, payload, "set", JID.parse(f"{who}/r"), JID.parse(DOMAIN), None)


async def probe(url: str, grabs: int, show: bool) -> dict[str, Any]:
    db = Database.from_url(url)
    await upgrade(db, [RedPacket.migrations])
    ctx = Ctx(db)
    feat = RedPacket(ctx, RedPacketOptions())  # type: ignore[arg-type]
    feat.repo = SqlRedPacketRepository(db)
    feat.use_rooms(Rooms())
    counter = Counter()
    counter.install(db)
    sender = f"sender@{DOMAIN}"
    now = feat.now()
    from datetime import timedelta

    await feat.repo.topup(sender, 10**9, now)
    users = [f"u{i}@{DOMAIN}" for i in range(grabs + 1)]
    for u in users[: grabs // 2]:  # half the grabbers have a wallet already
        await feat.repo.topup(u, 1, now)

    async def packet(pid: str, count: int) -> None:
        await feat.repo.send(NewPacket(pid, sender, "lucky", "hi", str(ROOM), True, None, f"c-{pid}", "en", now,
                                       now + timedelta(hours=1), tuple([1] * count)))

    await packet("big", grabs + 1)  # never finishes during the first two cases
    cases: dict[str, list[tuple[int, int, float, int]]] = {"existing wallet": [], "first grab (no wallet)": [],
                                                     "last share (best luck)": [], "all gone": []}
    for i in range(grabs):
        who = users[i]
        counter.reset()
        t = time.perf_counter()
        await feat.open(_open_request("big", who))
        d = time.perf_counter() - t
        case = "existing wallet" if i < grabs // 2 else "first grab (no wallet)"
        if show and len(cases[case]) == 0:
            print(f"-- {case}:\n  " + "\n  ".join(counter.texts))
        cases[case].append((counter.statements, counter.ends, d, counter.hops))
    for i in range(min(grabs, 50)):
        await packet(f"one{i}", 1)
        counter.reset()
        t = time.perf_counter()
        await feat.open(_open_request(f"one{i}", users[i]))
        d = time.perf_counter() - t
        if show and i == 0:
            print("-- last share (best luck):\n  " + "\n  ".join(counter.texts))
        cases["last share (best luck)"].append((counter.statements, counter.ends, d, counter.hops))
        counter.reset()
        t = time.perf_counter()
        try:
            await feat.open(_open_request(f"one{i}", users[i + 1]))
            raise AssertionError("a second open of a one-share packet succeeded")
        except StanzaError:
            pass
        d = time.perf_counter() - t
        if show and i == 0:
            print("-- all gone:\n  " + "\n  ".join(counter.texts))
        cases["all gone"].append((counter.statements, counter.ends, d, counter.hops))
    report = await feat.repo.audit()
    await db.dispose()
    out: dict[str, Any] = {"audit": "audit OK" if report.ok else str(report)}
    for case, rows in cases.items():
        out[case] = {
            "statements": statistics.mean(r[0] for r in rows),
            "commits+rollbacks": statistics.mean(r[1] for r in rows),
            "ms_median": round(statistics.median(r[2] for r in rows) * 1000, 2),
            "thread_hops": statistics.mean(r[3] for r in rows),
        }
    return out


def _mariadb(sql: str) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


async def amain(args: argparse.Namespace) -> None:
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                result = await probe(f"sqlite+aiosqlite:///{tmp}/probe.db", args.grabs, args.show)
        elif backend == "mariadb":
            name = f"xmppd_rpprobe_{os.getpid()}"
            _mariadb(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            try:
                result = await probe(f"{MARIADB}/{name}?charset=utf8mb4", args.grabs, args.show)
            finally:
                _mariadb(f"DROP DATABASE IF EXISTS `{name}`")
        else:
            raise SystemExit(f"unknown backend {backend!r}")
        print(f"{backend}: {result.pop('audit')}")
        print(f"  {'case':<24} {'statements':>10} {'commit/rb':>10} {'db thread':>10} {'ms p50':>8}")
        for case, r in result.items():
            hops = f"{r['thread_hops']:>10.1f}" if backend == "sqlite" else f"{'-':>10}"
            print(f"  {case:<24} {r['statements']:>10.1f} {r['commits+rollbacks']:>10.1f} {hops} {r['ms_median']:>8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,mariadb")
    p.add_argument("--grabs", type=int, default=200)
    p.add_argument("--show", action="store_true", help="print the statements of one open of each case")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
