"""Migration mam_0002 (server-assigned time-ordered seq, encrypted ids, two indexes) on a database
with rows written under mam_0001, on SQLite and MariaDB: order kept, old ids still resolve, time
filters, the new schema, downgrade; and a server started on such a database, over the wire."""
from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from slixmpp.exceptions import IqError

from xmppd.features.mam.ids import EPOCH_US, time_of
from xmppd.features.mam.repository import ArchivedMessage, ArchiveQuery, SqlMamRepository, UnknownId
from xmppd.storage.engine import Database
from xmppd.storage.migrations import alembic_config, upgrade

from ..helpers import add_user, running_server, slix_close
from .test_mam import SID, _stamps, client, query, rsm

T = 1_750_000_000_000_000  # 2025-06-15, µs
STANZA = "<message xmlns='jabber:client' from='{w}/r' to='{o}' type='chat'><body>{b}</body></message>"


async def _alembic(db: Database, locations: list[str], action: Callable[..., None], target: str) -> None:
    cfg = alembic_config(None, locations)

    def run(conn: sa.Connection) -> None:
        cfg.attributes["connection"] = conn
        action(cfg, target)

    async with db.transaction() as conn:
        await conn.run_sync(run)


async def _insert_old(db: Database, rows: list[tuple[str, str, int, str, str]]) -> None:
    """Rows as mam_0001 code wrote them: (owner, stanza_id, ts, with_jid, body), seq by AUTOINCREMENT."""
    async with db.transaction() as conn:
        for i in range(0, len(rows), 500):
            await conn.execute(
                sa.text("INSERT INTO mam_messages (owner, stanza_id, ts, with_jid, with_resource, stanza) VALUES (:o, :s, :t, :w, 'r', :x)"),
                [{"o": o, "s": s, "t": t, "w": w, "x": STANZA.format(w=w, o=o, b=b)} for o, s, t, w, b in rows[i : i + 500]],
            )


def _old_id() -> str:
    return secrets.token_hex(12)  # what mam_0001 code issued: 24 hex digits


async def _rows(db: Database) -> list[Any]:
    async with db.transaction(readonly=True) as conn:
        return list(await conn.execute(sa.text("SELECT seq, owner, stanza_id, ts FROM mam_messages ORDER BY seq")))


async def _indexes(db: Database) -> set[str]:
    async with db.transaction(readonly=True) as conn:
        return await conn.run_sync(lambda c: {i["name"] for i in sa.inspect(c).get_indexes("mam_messages")})


async def test_rows_of_the_old_schema_keep_their_order_and_ids(db: Database, migration_locations: list[str]) -> None:
    await _alembic(db, migration_locations, command.upgrade, "mam_0001")
    assert "uq_mam_messages_owner_stanza_id" in await _indexes(db)
    old: list[tuple[str, str, int, str, str]] = []

    def add(owner: str, ts: int, with_jid: str = "bob@localhost") -> None:
        old.append((owner, _old_id(), ts, with_jid, f"n{len(old)}"))

    for _ in range(2):
        add("alice@localhost", 1_000_000)  # a clock in 1970
    for i in range(10):
        add("alice@localhost", T + i * 1_000_000, "carol@localhost" if i % 2 else "bob@localhost")
    for i in range(3000):  # more rows in one µs than the 2048 an id has room for
        add("alice@localhost" if i % 2 else "bob@localhost", T + 20_000_000)
    for i in range(5):  # the clock stepped back
        add("alice@localhost", T + 10_000_000 + i)
    for i in range(10):
        add("alice@localhost", T + 30_000_000 + i * 1_000_000, "carol@localhost" if i % 2 else "bob@localhost")
    await _insert_old(db, old)

    assert await upgrade(db, migration_locations)  # mam_0002 and whatever else is pending
    rows = await _rows(db)
    assert [r.stanza_id for r in rows] == [o[1] for o in old]  # the old order, every row
    seqs = [r.seq for r in rows]
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    assert all(time_of(r.seq) >= max(r.ts, EPOCH_US) for r in rows)
    assert [time_of(r.seq) for r in rows[2:12]] == [r.ts for r in rows[2:12]]  # exact where time went forward
    assert [time_of(r.seq) for r in rows[-10:]] == [r.ts for r in rows[-10:]]
    assert time_of(rows[12 + 2047].seq) == T + 20_000_000 and time_of(rows[12 + 2048].seq) == T + 20_000_001
    assert await _indexes(db) == {"ix_mam_messages_owner_seq", "ix_mam_messages_owner_with_jid_seq"}
    async with db.transaction(readonly=True) as conn:
        settings = dict(list(await conn.execute(sa.text("SELECT name, value FROM mam_settings"))))  # type: ignore[arg-type]
    assert settings == {"legacy_max_seq": str(seqs[-1])}

    repo = SqlMamRepository(db)
    ids = await repo.open()
    alice = [o for o in old if o[0] == "alice@localhost"]
    assert (await repo.query(ArchiveQuery("alice@localhost", 0))).count == len(alice)
    tail = alice[-10:]
    page = await repo.query(ArchiveQuery("alice@localhost", 4, after=alice[-11][1]))
    assert [m.stanza_id for m in page.items] == [o[1] for o in tail[:4]] and not page.complete
    page = await repo.query(ArchiveQuery("alice@localhost", 3, before=tail[5][1]))
    assert [m.stanza_id for m in page.items] == [o[1] for o in tail[2:5]]
    page = await repo.query(ArchiveQuery("alice@localhost", 100, after_id=tail[1][1], before_id=tail[6][1]))
    assert [m.stanza_id for m in page.items] == [o[1] for o in tail[2:6]]
    page = await repo.query(ArchiveQuery("alice@localhost", 100, ids=(tail[7][1], alice[3][1], _old_id())))
    assert [m.stanza_id for m in page.items] == [alice[3][1], tail[7][1]]
    page = await repo.query(ArchiveQuery("alice@localhost", 100, start=T + 31_000_000, end=T + 33_000_000))
    assert [m.stanza_id for m in page.items] == [o[1] for o in tail[1:4]]
    page = await repo.query(ArchiveQuery("alice@localhost", 100, with_jid="carol@localhost", start=T))
    assert [m.stanza_id for m in page.items] == [o[1] for o in alice if o[3] == "carol@localhost"]
    for bad in (_old_id(), old[20][1]):  # never issued; issued in bob's archive
        with pytest.raises(UnknownId):
            await repo.query(ArchiveQuery("alice@localhost", 5, after=bad))

    # New rows go after the old ones and mix with them in queries.
    seq = seqs[-1] + 2048
    await repo.store_many([ArchivedMessage("alice@localhost", ids.encode(seq), time_of(seq), "bob@localhost", "", "<message/>", seq)])
    page = await repo.query(ArchiveQuery("alice@localhost", 2, after=tail[-1][1]))
    assert [m.seq for m in page.items] == [seq]
    page = await repo.query(ArchiveQuery("alice@localhost", 2, before=ids.encode(seq)))
    assert [m.stanza_id for m in page.items] == [o[1] for o in tail[-2:]]
    # the purge goes by each row's id time
    assert await repo.purge_before(T + 30_000_000, 10**6) == len(old) - 10
    assert (await repo.query(ArchiveQuery("alice@localhost", 0))).count == 11

    # Downgrade: mam_0001's schema back, every row kept (the new one with its public id).
    await _alembic(db, migration_locations, command.downgrade, "mam_0001")
    assert await _indexes(db) == {"ix_mam_messages_owner_seq", "ix_mam_messages_owner_ts", "ix_mam_messages_owner_with_jid_seq",
                                  "uq_mam_messages_owner_stanza_id", "ix_mam_messages_ts"}
    back = await _rows(db)
    assert [r.stanza_id for r in back] == [o[1] for o in tail] + [ids.encode(seq)]
    await upgrade(db, migration_locations)
    assert [r.stanza_id for r in await _rows(db)] == [r.stanza_id for r in back]


async def test_a_fresh_archive_has_no_old_ids_to_look_up(db: Database, migration_locations: list[str]) -> None:
    await upgrade(db, migration_locations)
    async with db.transaction(readonly=True) as conn:
        assert (await conn.execute(sa.text("SELECT COUNT(*) FROM mam_settings"))).scalar_one() == 0
    repo = SqlMamRepository(db)
    await repo.open()
    assert repo._legacy_max is None
    async with db.transaction(readonly=True) as conn:  # the first open() made the key
        assert (await conn.execute(sa.text("SELECT name FROM mam_settings"))).scalar_one() == "id_key"


def _storage_url(tmp_path: Path, overrides: list[str]) -> str:
    for o in overrides:
        if o.startswith("storage.url="):
            return o.split("=", 1)[1]
    return f"sqlite+aiosqlite:///{(tmp_path / 'xmppd.db').as_posix()}"  # the embedded default


@pytest.mark.interop
async def test_a_server_on_an_archive_written_before_mam_0002(tmp_path, storage_overrides, migration_locations):
    # The database as the previous release left it: mam at mam_0001, with alice's archive.
    db = Database.from_url(_storage_url(tmp_path, storage_overrides))
    now = datetime.now(UTC)
    t0 = int((now - timedelta(hours=1)).timestamp() * 1_000_000)
    try:
        await _alembic(db, migration_locations, command.upgrade, "mam_0001")
        old = [("alice@localhost", _old_id(), t0 + i * 60_000_000, "carol@localhost" if i % 3 == 0 else "bob@localhost", f"old{i}")
               for i in range(12)]
        await _insert_old(db, old)
    finally:
        await db.dispose()
    old_ids = [o[1] for o in old]

    def at(i: int) -> str:
        return datetime.fromtimestamp(old[i][2] / 1_000_000, UTC).isoformat()

    async with running_server(tmp_path, *storage_overrides) as srv:  # upgrades the schema
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        alice = await client(srv, "alice@localhost/a")
        bob = await client(srv, "bob@localhost/b")
        try:
            bob.send_message(mto="alice@localhost", mbody="new0", mtype="chat")
            got = await asyncio.wait_for(alice.mam.inbox.get(), 5)
            new_id = got.xml.find(f"{{{SID}}}stanza-id").get("id")
            page, fin = await query(alice)
            assert page == [(o[1], o[4]) for o in old] + [(new_id, "new0")] and rsm(fin)[2] == 13
            # the ids clients already hold: RSM both ways, after-id/before-id, ids
            page, fin = await query(alice, max=3, after=old_ids[4])
            assert [b for _, b in page] == ["old5", "old6", "old7"] and not rsm(fin)[3]
            page, fin = await query(alice, max=3, after=old_ids[10])
            assert [b for _, b in page] == ["old11", "new0"] and rsm(fin)[3]
            page, _ = await query(alice, max=2, before=new_id)
            assert [b for _, b in page] == ["old10", "old11"]
            page, _ = await query(alice, max=2, before=old_ids[3])
            assert [b for _, b in page] == ["old1", "old2"]
            page, _ = await query(alice, after_id=old_ids[8], before_id=new_id)
            assert [b for _, b in page] == ["old9", "old10", "old11"]
            page, _ = await query(alice, ids=[old_ids[7], new_id, old_ids[0]])
            assert [b for _, b in page] == ["old0", "old7", "new0"]
            # time filters by the old timestamps, with and without 'with'
            page, _ = await query(alice, start=at(3), end=at(6))
            assert [b for _, b in page] == ["old3", "old4", "old5", "old6"]
            page, _ = await query(alice, with_="carol@localhost", start=at(1))
            assert [b for _, b in page] == ["old3", "old6", "old9"]
            page, _ = await query(alice, start=at(11))
            assert [b for _, b in page] == ["old11", "new0"]
            # delay stamps are the old timestamps
            stamps = await _stamps(alice)
            assert [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps[:12]] == [
                datetime.fromtimestamp(o[2] / 1_000_000, UTC) for o in old]
            with pytest.raises(IqError) as exc:
                await query(alice, after=old_ids[4][:-1] + "x")
            assert exc.value.iq["error"]["condition"] == "item-not-found"
        finally:
            for c in (alice, bob):
                await slix_close(c)
