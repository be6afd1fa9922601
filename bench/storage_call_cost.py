#!/usr/bin/env python3
"""CPU and wall time of one storage fast-path call on MariaDB: a write shaped like the archive's
group commit of one message (``Sql.executemany`` INSERT + usage upsert, COMMIT) and a one-row read
(``FastPath.read``), 2,000 calls each, in a database of its own (dropped afterwards).

    PYTHONPATH=. python bench/storage_call_cost.py LABEL [mysql+aiomysql://root@127.0.0.1:3306]

Run it with PYTHONPATH pointing at two checkouts, alternately, to compare them.
"""
import asyncio
import sys
import time

import pymysql
import sqlalchemy as sa

from xmppd.storage.engine import Database
from xmppd.storage.fastpath import Sql

SERVER = sys.argv[2] if len(sys.argv) > 2 else "mysql+aiomysql://root@127.0.0.1:3306"
NAME = f"xmppd_callcost_{sys.argv[1]}"
URL = f"{SERVER}/{NAME}"



def admin(sql: str) -> None:
    u = sa.engine.make_url(SERVER)
    c = pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root", password=u.password or "", autocommit=True)
    try:
        with c.cursor() as cur:
            cur.execute(sql)
    finally:
        c.close()


INS = Sql("INSERT INTO w (owner, body) VALUES (?, ?)")
UPS = Sql(
    "INSERT INTO u (owner, n) VALUES (?, ?) ON CONFLICT (owner) DO UPDATE SET n = n + excluded.n",
    mysql="INSERT INTO u (owner, n) VALUES (?, ?) ON DUPLICATE KEY UPDATE n = n + VALUES(n)",
)
_U = sa.table("u", sa.column("owner"), sa.column("n"))
_READ = sa.select(_U.c.owner, _U.c.n).where(_U.c.owner == sa.bindparam("o"))


async def main() -> None:
    admin(f"DROP DATABASE IF EXISTS {NAME}")
    admin(f"CREATE DATABASE {NAME} CHARACTER SET utf8mb4")
    db = Database.from_url(URL)
    try:
        async with db.transaction() as c:
            await c.exec_driver_sql("CREATE TABLE w (id INTEGER AUTO_INCREMENT PRIMARY KEY, owner VARCHAR(50), body TEXT)")
            await c.exec_driver_sql("CREATE TABLE u (owner VARCHAR(50) PRIMARY KEY, n INTEGER)")

        async def store(conn):  # type: ignore[no-untyped-def]
            await INS.executemany(conn, [("alice", "Benchmark message number 1, some ordinary chat text.")])
            await UPS.executemany(conn, [("alice", 60)])

        async def read(conn):  # type: ignore[no-untyped-def]
            return (await conn.execute(_READ, {"o": "alice"})).first()

        def nolite(_conn):  # type: ignore[no-untyped-def]
            raise AssertionError("MariaDB only")

        calls = (("write", lambda: db.fastpath.write(nolite, store)), ("read", lambda: db.fastpath.read(nolite, read)))
        for name, call in calls:
            for _ in range(200):
                await call()
            n = 2000
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                await call()
            cpu, wall = (time.process_time() - c0) / n * 1e6, (time.perf_counter() - w0) / n * 1e6
            print(f"{sys.argv[1]:8} {name:6} {cpu:6.0f} µs CPU {wall:7.0f} µs wall")
    finally:
        await db.dispose()
        admin(f"DROP DATABASE IF EXISTS {NAME}")


asyncio.run(main())
