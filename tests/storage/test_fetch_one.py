"""``Database.fetch_one``: one read-only statement in autocommit (SQLite: no BEGIN/ROLLBACK; MariaDB:
the fast path's direct read, no COMMIT)."""

from __future__ import annotations

import sqlalchemy as sa

from xmppd.storage.engine import Database

_T = sa.table("fetch_one_probe", sa.column("k", sa.Integer), sa.column("v", sa.String))
_Q = sa.select(_T.c.v).where(_T.c.k == sa.bindparam("k"))


async def test_fetch_one_reads_a_row_or_none_without_a_transaction_on_sqlite(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.exec_driver_sql("CREATE TABLE fetch_one_probe (k INTEGER PRIMARY KEY, v VARCHAR(10))")
        await conn.execute(_T.insert(), [{"k": 1, "v": "one"}, {"k": 2, "v": "two"}])
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0].upper())

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        row = await db.fetch_one(_Q, {"k": 2})
        assert row is not None and row.v == "two"
        assert await db.fetch_one(_Q, {"k": 3}) is None
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    # MariaDB: the fast path's direct reads, outside SQLAlchemy's engine (tests/storage/test_direct.py).
    assert statements == (["SELECT", "SELECT"] if db.is_sqlite else [])
    # The connections went back to the pool clean: a write transaction still works.
    async with db.transaction() as conn:
        await conn.execute(_T.update().where(_T.c.k == 2).values(v="deux"))
    row = await db.fetch_one(_Q, {"k": 2})
    assert row is not None and row.v == "deux"
    async with db.transaction() as conn:
        await conn.exec_driver_sql("DROP TABLE fetch_one_probe")
