#!/usr/bin/env python3
"""What one full login asks of the database: round trips, transactions and statements per login,
by caller, on any backend (MariaDB with ``--url``).

Full logins (SCRAM-SHA-1, bind, session, initial presence, its echo, then the client leaves)
against an in-process server (every installed feature, the default configuration with the limits
a load test needs lifted), one at a time. Counted with SQLAlchemy's engine and pool events:
checkouts, pre-pings (``do_ping``: one COM_PING round trip each), statements (by the repository
function that ran them), commits and rollbacks (one round trip each on MariaDB), plus the process
CPU per login.

    PYTHONPATH=. python bench/storage_per_login.py --url mysql+aiomysql://root@127.0.0.1:3306 [--logins 200] [--messages 2000]

With ``--url`` a database of its own is created there, migrated, and dropped afterwards; without
it the server runs on SQLite in a temporary directory (whose hot reads bypass SQLAlchemy: only
what still goes through the engine is counted).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import Target  # noqa: E402
from loadgen.core import Context  # noqa: E402
from run import _mysql_database  # noqa: E402  (bench/run.py)

from tests.helpers import running_server  # noqa: E402

counts: collections.Counter[str] = collections.Counter()
callers: collections.Counter[str] = collections.Counter()


def _caller() -> str:
    """The innermost xmppd/extensions frame outside the storage engine (the repository call)."""
    for frame in reversed(traceback.extract_stack(limit=60)):
        f = frame.filename
        if ("/xmppd/" in f or "/extensions/" in f) and "/xmppd/storage/engine.py" not in f and "/xmppd/storage/fastpath.py" not in f and "/xmppd/storage/direct.py" not in f:
            return f"{f.split('/xmppd/')[-1] if '/xmppd/' in f else f.split('/extensions/')[-1]}:{frame.name}"
    return "?"


_current = ["?"]


def instrument(db: Any) -> None:
    import sqlalchemy as sa

    # The engine's events run inside SQLAlchemy's greenlet, whose stack does not reach the
    # caller: remember the caller where the connection is taken (logins run one at a time).
    cls = type(db.engine)
    connect = cls.connect

    def tagged_connect(self: Any) -> Any:
        _current[0] = _caller()
        return connect(self)

    cls.connect = tagged_connect  # type: ignore[method-assign]

    engine = db.engine.sync_engine
    dialect = engine.dialect
    ping = dialect.do_ping

    def do_ping(conn: Any) -> Any:
        counts["pre-ping (round trip)"] += 1
        return ping(conn)

    dialect.do_ping = do_ping  # type: ignore[method-assign]
    sa.event.listen(engine, "checkout", lambda *_a: counts.update(["pool checkout"]))
    sa.event.listen(engine, "commit", lambda *_a: counts.update(["COMMIT (round trip)"]))
    sa.event.listen(engine, "rollback", lambda *_a: counts.update(["ROLLBACK (round trip)"]))

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        counts["statement (round trip)"] += 1
        callers[f"{_current[0]}  {statement.split()[0]}"] += 1

    sa.event.listen(engine, "before_cursor_execute", before)

    try:  # the fast path's direct MariaDB reads (xmppd.storage.direct), outside SQLAlchemy's engine
        from xmppd.storage import direct
    except ImportError:
        return
    execute = direct.DirectConnection.execute

    async def counted(self: Any, stmt: Any, params: Any = None) -> Any:
        counts["direct statement (round trip)"] += 1
        callers[f"{_caller()}  direct SELECT"] += 1
        return await execute(self, stmt, params)

    direct.DirectConnection.execute = counted  # type: ignore[method-assign]
    raw_sql = direct.DirectConnection.exec_driver_sql

    async def counted_sql(self: Any, sql: str, params: Any = ()) -> Any:
        counts["direct statement (round trip)"] += 1
        callers[f"{_caller()}  direct {sql.split()[0]}"] += 1
        return await raw_sql(self, sql, params)

    direct.DirectConnection.exec_driver_sql = counted_sql  # type: ignore[method-assign]
    write = direct.DirectPath.write

    async def counted_write(self: Any, portable: Any) -> Any:
        counts["direct write transaction: its COMMIT (round trip)"] += 1
        return await write(self, portable)

    direct.DirectPath.write = counted_write  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> None:
    extra: list[str] = []
    name = f"xmppd_probe_{os.getpid()}"
    if args.url:
        _mysql_database(name, create=True, server=args.url)
        extra = [f"storage.url={args.url.rstrip('/')}/{name}", "storage.auto_upgrade=true"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_server(
                Path(tmp), "c2s.require_tls=false", "registration.open=true", "registration.per_ip_per_hour=1000000",
                "c2s.rate_bytes=0", "c2s.rate_stanzas=0", "c2s.preauth_rate_bytes=0", "c2s.preauth_rate_stanzas=0",
                "c2s.auth_failures_per_ip=1000000", "c2s.max_connections_per_ip=100000", *extra, *args.set,
            ) as server:
                ctx = Context(Target("xmppd", "127.0.0.1", server.ports["c2s"], server.domain))
                names = await ctx.accounts(args.logins)
                for c in await ctx.login_many(names[:20], 5, presence=True, wait_echo=True):  # warm-up
                    c.close()
                await asyncio.sleep(0.5)
                instrument(server.db)
                prof = None
                if args.profile:
                    import cProfile

                    prof = cProfile.Profile(time.thread_time)  # CPU of the loop thread, not wall
                    prof.enable()
                t0, c0 = time.perf_counter(), time.process_time()
                for u in names:
                    c = await ctx.login(u, presence=True, wait_echo=True)
                    c.close()
                await asyncio.sleep(0.3)  # the logouts' work
                cpu = time.process_time() - c0
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(args.profile)
                n = len(names)
                print(f"{n} full logins one at a time: {1000 * (time.perf_counter() - t0) / n:.2f} ms wall each, "
                      f"{1000 * cpu / n:.2f} ms process CPU each (client included)")
                for key, v in sorted(counts.items()):
                    print(f"  {v / n:6.2f} per login  {key}")
                print("statements per login, by caller:")
                for key, v in callers.most_common():
                    print(f"  {v / n:6.2f}  {key}")
                if args.messages:
                    from loadgen.scenarios import one2one_latency

                    counts.clear()
                    callers.clear()
                    got = await one2one_latency(ctx, pairs=4, messages=args.messages, seconds=60.0)
                    m = got["messages"]
                    print(f"{m} one-to-one messages, one in flight per pair (4 pairs), after their logins:")
                    for key, v in sorted(counts.items()):
                        print(f"  {v / m:6.2f} per message  {key}")
                    for key, v in callers.most_common():
                        print(f"  {v / m:6.2f}  {key}")
    finally:
        if args.url:
            _mysql_database(name, create=False, server=args.url)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logins", type=int, default=200)
    p.add_argument("--url", default="", help="a MariaDB/MySQL server URL without a database, e.g. mysql+aiomysql://root@127.0.0.1:3306")
    p.add_argument("--messages", type=int, default=0, help="then count the same per one-to-one message (one2one_latency, 4 pairs)")
    p.add_argument("--profile", default="", help="write a cProfile of the timed logins to this file")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    asyncio.run(main(p.parse_args()))
