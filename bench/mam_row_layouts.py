#!/usr/bin/env python3
"""SQLite's CPU per archived chat message: the archive's table as shipped against one row for
both local copies (the redesign weighed in docs/performance.md, "Session 11").

A chat message between two local accounts is archived twice today: one ``mam_messages`` row
per owner, each with its two owner-first index entries (``(owner, seq)``, ``(owner, with_jid,
seq)``) -- the DDL here is the shipped table's own, compiled from :mod:`xmppd.features.mam.repository`.
The alternative keeps one row per message, readable from both archives through three indexes:
``(sender, seq)``, ``(recipient, seq)`` and ``(pair, seq)`` for the ``with`` filter (``pair``:
the two bare JIDs, sorted). Both are written the way the archive's writer writes: batches of
``--batch`` rows' worth of messages between ``--owners`` accounts in one transaction
(``executemany``, the per-owner usage upsert, ``COMMIT``) on a WAL file with the inline
writer's connection settings (``WRITER_PRAGMAS``: ``synchronous=NORMAL``, its page cache), a
passive checkpoint every ``--checkpoint-every`` batches.
Prints the process CPU per chat message for each layout, in turn, ``--rounds`` times, and the
rows each holds at the end (SQLite alone: no server, no Python of the archive's hooks).

    python bench/mam_row_layouts.py [--owners 200] [--batch 4000] [--batches 60] [--rounds 2]
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.dialects import sqlite as sqlite_dialect  # noqa: E402

from xmppd.features.mam.repository import _INSERT, _USAGE_ADD, mam_messages, mam_usage  # noqa: E402
from xmppd.storage.inline import WRITER_PRAGMAS  # noqa: E402

STANZA = ("<message xmlns='jabber:client' from='{a}/r' to='{b}/r' type='chat' id='m1'><body>" + "x" * 120
          + "</body><stanza-id xmlns='urn:xmpp:sid:0' by='{b}' id='0123456789abcdef0123456789abcdef'/></message>")

ONE_ROW_DDL = (
    "CREATE TABLE mam_pairs (seq INTEGER NOT NULL PRIMARY KEY, sender VARCHAR(255) NOT NULL, "
    "recipient VARCHAR(255) NOT NULL, pair VARCHAR(511) NOT NULL, stanza_id VARCHAR(64) NOT NULL, "
    "ts BIGINT NOT NULL, resource VARCHAR(1023) NOT NULL, stanza TEXT NOT NULL)",
    "CREATE INDEX ix_mam_pairs_sender_seq ON mam_pairs (sender, seq)",
    "CREATE INDEX ix_mam_pairs_recipient_seq ON mam_pairs (recipient, seq)",
    "CREATE INDEX ix_mam_pairs_pair_seq ON mam_pairs (pair, seq)",
)
ONE_ROW_INSERT = ("INSERT INTO mam_pairs (sender, recipient, pair, stanza_id, ts, resource, stanza, seq) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def ddl_of(*tables: sa.Table) -> list[str]:
    """The shipped tables and their indexes, as SQLite DDL."""
    dialect = sqlite_dialect.dialect()
    out = []
    for table in tables:
        out.append(str(sa.schema.CreateTable(table).compile(dialect=dialect)))
        out.extend(str(sa.schema.CreateIndex(ix).compile(dialect=dialect)) for ix in table.indexes)
    return out


def connect(path: Path, ddl: list[str] | tuple[str, ...]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", *WRITER_PRAGMAS):  # (WAL: what the engine sets on the file)
        conn.execute(f"PRAGMA {pragma}")
    for statement in ddl:
        conn.execute(statement)
    return conn


def run(layout: str, directory: Path, owners: int, batch: int, batches: int, checkpoint_every: int) -> tuple[float, int]:
    """µs of process CPU per chat message, and the rows the table holds at the end."""
    path = directory / f"{layout}.db"
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)
    if layout == "shipped":
        conn = connect(path, ddl_of(mam_messages, mam_usage))
        insert, table = _INSERT.sqlite, "mam_messages"
    else:
        conn = connect(path, (*ONE_ROW_DDL, *ddl_of(mam_usage)))
        insert, table = ONE_ROW_INSERT, "mam_pairs"
    usage = [(f"user{o}@bench.localhost", 300) for o in range(owners)]
    seq, messages = 1 << 40, 0
    started = time.process_time()
    for b in range(batches):
        rows: list[tuple[object, ...]] = []
        for i in range(batch // 2):  # the same messages either way: two rows each, or one
            a, z = f"user{i % owners}@bench.localhost", f"user{(i % owners) ^ 1}@bench.localhost"
            stanza = STANZA.format(a=a, b=z)
            seq += 2048
            if layout == "shipped":
                rows.append((a, f"{seq:032x}", seq, z, "r", stanza, seq))
                seq += 2048
                rows.append((z, f"{seq:032x}", seq, a, "r", stanza, seq))
            else:
                rows.append((a, z, f"{min(a, z)} {max(a, z)}", f"{seq:032x}", seq, "r", stanza, seq))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, rows)
        conn.executemany(_USAGE_ADD.sqlite, usage)
        conn.execute("COMMIT")
        if b % checkpoint_every == checkpoint_every - 1:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        messages += batch // 2
    cpu = time.process_time() - started
    held = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    conn.close()
    return cpu / max(messages, 1) * 1e6, held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--owners", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4000, help="rows of today's layout per transaction (the writer's batch_size)")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--checkpoint-every", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where the databases go (default: a temporary directory)")
    args = ap.parse_args()
    if args.owners < 2 or args.owners % 2 or args.batch < 2:
        raise SystemExit("--owners must be even (the accounts talk in pairs), --batch at least 2")
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.dir or Path(tmp)
        for n in range(args.rounds):
            for layout in ("shipped", "one-row"):
                us, held = run(layout, directory, args.owners, args.batch, args.batches, args.checkpoint_every)
                print(f"round {n + 1} {layout}: {us:.2f} µs of process CPU per chat message; {held} rows")


if __name__ == "__main__":
    main()
