"""RFC 6121 §2 rosters and XEP-0237 roster versions: the roster repository.

One row per (owner, contact) holds the roster item (name, groups) and the subscription state
of RFC 6121 §3 (``subscription``, ``ask`` = pending out, ``pending_in`` with the stored request
stanza, ``approved`` = pre-approval). A row may be *unlisted*: a pending-in request from
someone the owner never added (not a roster item, RFC 6121 §3.1.3), or a *tombstone* left by a
removal so that XEP-0237 can tell a client which items went away since its version.

Versions: every owner has a counter; a change that a client can see (an item added, changed or
removed) bumps it and stamps the row with the new value, so "changes since version V" is "rows
whose version is greater than V". Tombstones are kept up to ``max_tombstones`` per owner; when
older ones are pruned, the owner's ``floor`` rises and clients at an older version get the
full roster.

:class:`SqlRosterRepository` and :class:`MemoryRosterRepository` pass the same contract tests
(``tests/features/test_roster_repository.py``).

Caching (``cache.py``): :meth:`snapshot` reads every stored row of one roster (items, pending
requests, tombstones) and its counter; :meth:`apply` runs a change against such a snapshot, so the
write transaction only writes (the row, its groups when they changed, the counter, pruned
tombstones) and the caller updates its snapshot with the returned :class:`Applied`. Every write
path computes the new row with the same pure :func:`plan`.
"""
from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.jid import JID
from xmppd.storage.accounts import account_id_query, accounts
from xmppd.storage.engine import Database
from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, id_type, indexed_string, metadata

from .states import SubState

__all__ = [
    "Applied",
    "Changes",
    "MemoryRosterRepository",
    "RosterItem",
    "RosterRepository",
    "Snapshot",
    "SqlRosterRepository",
    "StaleRoster",
    "UnknownOwner",
    "roster_groups",
    "roster_items",
    "roster_versions",
]

#: Longest contact JID and group name stored (indexed text).
MAX_CONTACT_LENGTH: Final = 191
MAX_GROUP_LENGTH: Final = 191


@dataclass(frozen=True, slots=True)
class RosterItem:
    contact: str  # bare JID
    name: str | None = None
    groups: tuple[str, ...] = ()  # sorted, unique
    subscription: str = "none"
    ask: bool = False  # pending out
    approved: bool = False  # pre-approved (RFC 6121 §3.4)
    pending_in: bool = False
    pending_stanza: str | None = None  # the subscribe request kept for redelivery
    listed: bool = True  # a roster item (False: only a pending-in request, or a tombstone)
    version: int = 0

    @property
    def state(self) -> SubState:
        return SubState(self.subscription, self.ask, self.pending_in, self.approved)

    def with_state(self, s: SubState) -> "RosterItem":
        return replace(self, subscription=s.sub, ask=s.pending_out, pending_in=s.pending_in, approved=s.approved)

    def visible(self) -> tuple[object, ...] | None:
        """What a client sees of this row (None: not in the roster)."""
        if not self.listed:
            return None
        return (self.name, self.groups, self.subscription, self.ask, self.approved)


# old row (None when there is none) -> new row (None or an unlisted row without a pending
# request: remove the item). Must be pure: a SQL transaction may run it again after a deadlock.
Change = Callable[[RosterItem | None], RosterItem | None]


@dataclass(frozen=True, slots=True)
class Changes:
    """Rows changed after a version, oldest change first; an unlisted row is a removal."""

    version: int
    items: list[RosterItem] = field(default_factory=list)


class UnknownOwner(LookupError):
    """The roster's owner has no account."""


class StaleRoster(RuntimeError):
    """:meth:`SqlRosterRepository.apply`: the database no longer holds what the snapshot says
    (another process wrote this roster); nothing was written."""


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one change."""

    before: RosterItem | None  # as get() saw the row
    after: RosterItem | None  # as get() sees it now
    version: int  # the roster version after the change
    floor: int  # the oldest version changes_since() still answers, after the change
    stored: RosterItem | None = None  # the stored row now, a tombstone included (None: no row)
    pruned: tuple[str, ...] = ()  # tombstones deleted to stay within max_tombstones
    written: bool = False  # anything was written at all


@dataclass(slots=True)
class Snapshot:
    """Everything stored for one roster: what a cache keeps, current as long as every write to
    the roster goes through :meth:`apply` with it and :meth:`commit` follows a successful one."""

    account_id: int  # 0 in the memory repository
    version: int
    floor: int
    counter: bool  # the counter row exists
    rows: dict[str, RosterItem]  # contact -> stored row: items, pending requests, tombstones

    def roster(self) -> tuple[int, list[RosterItem]]:
        return self.version, [r for _c, r in sorted(self.rows.items()) if r.listed]

    def get(self, contact: str) -> RosterItem | None:
        return _live(self.rows.get(contact))

    def changes_since(self, version: int) -> Changes | None:
        if version > self.version or version < self.floor:
            return None
        return Changes(self.version, sorted((r for r in self.rows.values() if r.version > version), key=lambda r: r.version))

    def pending_in(self) -> list[RosterItem]:
        return [r for _c, r in sorted(self.rows.items()) if r.pending_in]

    def count(self) -> int:
        return sum(1 for r in self.rows.values() if r.listed)

    def commit(self, contact: str, applied: Applied) -> None:
        """Bring the snapshot to the state ``applied`` wrote."""
        if not applied.written:
            return
        if applied.stored is None:
            self.rows.pop(contact, None)
        else:
            self.rows[contact] = applied.stored
        for c in applied.pruned:
            self.rows.pop(c, None)
        if (applied.version, applied.floor) != (self.version, self.floor):
            self.version, self.floor, self.counter = applied.version, applied.floor, True


class RosterRepository(Protocol):
    async def roster(self, owner: JID) -> tuple[int, list[RosterItem]]:
        """The current version and the listed items, ordered by contact."""

    async def get(self, owner: JID, contact: str) -> RosterItem | None:
        """The row for ``contact`` (listed, or unlisted with a pending request); None otherwise."""

    async def update(self, owner: JID, contact: str, change: Change) -> tuple[RosterItem | None, RosterItem | None]:
        """Apply ``change`` atomically; returns (before, after) as :meth:`get` would see them.

        ``after.version`` is the new roster version when the change is visible to clients.
        Raises :class:`UnknownOwner` when the owner has no account.
        """

    async def changes_since(self, owner: JID, version: int) -> Changes | None:
        """What changed after ``version``; None when that version is unknown or too old."""

    async def pending_in(self, owner: JID) -> list[RosterItem]:
        """Rows with a pending subscription request from the contact."""

    async def count(self, owner: JID) -> int:
        """How many items the roster lists."""

    async def delete_all(self, owner: JID) -> None:
        """Forget the owner's roster, requests and version."""

    async def change(self, owner: JID, contact: str, change: Change) -> Applied:
        """:meth:`update` with the whole outcome (the new roster version included)."""

    async def snapshot(self, owner: JID) -> Snapshot | None:
        """Every stored row and the counter (None when the owner has no account)."""

    async def apply(self, snap: Snapshot, owner: JID, contact: str, change: Change) -> Applied:
        """Apply ``change`` to the roster ``snap`` holds exactly; the caller then commits the
        result to ``snap``. Raises :class:`StaleRoster` when the store disagrees with ``snap``."""


def plan(raw: RosterItem | None, contact: str, change: Change, counter: int) -> tuple[RosterItem | None, RosterItem | None, int, bool]:
    """The pure part of every write: (before, row to store, new counter, tombstone?) for the
    stored row ``raw`` (None: no row) under the roster version ``counter``."""
    before = _live(raw)
    new = change(before)
    if new is not None:
        new = replace(new, contact=contact, groups=tuple(sorted(set(new.groups))))
    stored, version, tomb = _normalise(raw, new, counter)
    if stored is not None and stored.contact != contact:
        stored = replace(stored, contact=contact)
    return before, stored, version, tomb


def prune_plan(rows: dict[str, RosterItem], max_tombstones: int, floor: int) -> tuple[tuple[str, ...], int]:
    """Tombstones beyond ``max_tombstones`` (oldest first) and the floor after deleting them."""
    tombs = sorted((r.version, c) for c, r in rows.items() if not r.listed and not r.pending_in)
    excess = len(tombs) - max_tombstones
    if excess <= 0:
        return (), floor
    gone = tombs[:excess]
    return tuple(c for _v, c in gone), max(floor, *(v for v, _c in gone))


def _normalise(old_raw: RosterItem | None, new: RosterItem | None, counter: int) -> tuple[RosterItem | None, int, bool]:
    """The row to store after a change, the new counter, and whether the row is a tombstone."""
    if new is not None and not new.listed and not new.pending_in:
        new = None
    old_visible = old_raw.visible() if old_raw is not None else None
    new_visible = new.visible() if new is not None else None
    if old_visible != new_visible:
        counter += 1
        version = counter
    else:
        version = old_raw.version if old_raw is not None else 0
    if new is None:
        if version > 0:  # it was visible once: keep a tombstone for roster versioning
            return RosterItem(old_raw.contact if old_raw else "", listed=False, version=version), counter, True  # type: ignore[union-attr]
        return None, counter, False
    return replace(new, version=version), counter, False


def _live(row: RosterItem | None) -> RosterItem | None:
    if row is None or (not row.listed and not row.pending_in):
        return None
    return row


# ---------------------------------------------------------------------------------- memory


class MemoryRosterRepository:
    """In-process twin of :class:`SqlRosterRepository`: no method awaits, so each is atomic."""

    def __init__(self, *, max_tombstones: int = 1000) -> None:
        self.max_tombstones = max_tombstones
        self._rows: dict[str, dict[str, RosterItem]] = {}
        self._versions: dict[str, tuple[int, int]] = {}  # owner -> (version, floor)

    async def roster(self, owner: JID) -> tuple[int, list[RosterItem]]:
        key = str(owner)
        rows = self._rows.get(key, {})
        return self._versions.get(key, (0, 0))[0], [r for _c, r in sorted(rows.items()) if r.listed]

    async def get(self, owner: JID, contact: str) -> RosterItem | None:
        return _live(self._rows.get(str(owner), {}).get(contact))

    async def update(self, owner: JID, contact: str, change: Change) -> tuple[RosterItem | None, RosterItem | None]:
        applied = await self.change(owner, contact, change)
        return applied.before, applied.after

    async def change(self, owner: JID, contact: str, change: Change) -> Applied:
        return self._write(str(owner), contact, change)

    async def snapshot(self, owner: JID) -> Snapshot | None:
        key = str(owner)
        version, floor = self._versions.get(key, (0, 0))
        return Snapshot(0, version, floor, key in self._versions, dict(self._rows.get(key, {})))

    async def apply(self, snap: Snapshot, owner: JID, contact: str, change: Change) -> Applied:
        key = str(owner)
        if self._versions.get(key, (0, 0)) != (snap.version, snap.floor) or self._rows.get(key, {}).get(contact) != snap.rows.get(contact):
            raise StaleRoster(key)
        return self._write(key, contact, change)

    def _write(self, key: str, contact: str, change: Change) -> Applied:
        rows = self._rows.setdefault(key, {})
        counter = self._versions.get(key, (0, 0))
        version, floor = counter
        raw = rows.get(contact)
        before, stored, version, tomb = plan(raw, contact, change, version)
        pruned: tuple[str, ...] = ()
        if stored is None:
            rows.pop(contact, None)
        else:
            rows[contact] = stored
            if tomb:
                pruned, floor = prune_plan(rows, self.max_tombstones, floor)
                for c in pruned:
                    del rows[c]
        if (version, floor) != counter:  # like the SQL counter row: written when it changes
            self._versions[key] = (version, floor)
        stored = rows.get(contact)
        return Applied(before, _live(stored), version, floor, stored, pruned, written=True)

    async def changes_since(self, owner: JID, version: int) -> Changes | None:
        key = str(owner)
        current, floor = self._versions.get(key, (0, 0))
        if version > current or version < floor:
            return None
        rows = self._rows.get(key, {}).values()
        return Changes(current, sorted((r for r in rows if r.version > version), key=lambda r: r.version))

    async def pending_in(self, owner: JID) -> list[RosterItem]:
        return [r for _c, r in sorted(self._rows.get(str(owner), {}).items()) if r.pending_in]

    async def count(self, owner: JID) -> int:
        return sum(1 for r in self._rows.get(str(owner), {}).values() if r.listed)

    async def delete_all(self, owner: JID) -> None:
        self._rows.pop(str(owner), None)
        self._versions.pop(str(owner), None)


# ---------------------------------------------------------------------------------- SQL

roster_items = sa.Table(
    "roster_items",
    metadata,
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    sa.Column("contact", indexed_string(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("subscription", sa.String(4), nullable=False, server_default="none"),
    sa.Column("ask", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("approved", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("pending_in", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("pending_stanza", sa.Text(), nullable=True),
    sa.Column("listed", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Index(None, "account_id", "version"),
    **MYSQL_TABLE_KWARGS,
)

roster_groups = sa.Table(
    "roster_groups",
    metadata,
    sa.Column("account_id", id_type(), primary_key=True, autoincrement=False),
    sa.Column("contact", indexed_string(), primary_key=True),
    sa.Column("name", indexed_string(), primary_key=True),
    sa.ForeignKeyConstraint(
        ["account_id", "contact"], ["roster_items.account_id", "roster_items.contact"], ondelete="CASCADE"
    ),
    **MYSQL_TABLE_KWARGS,
)

roster_versions = sa.Table(
    "roster_versions",
    metadata,
    sa.Column("account_id", id_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("floor", sa.BigInteger(), nullable=False, server_default="0"),
    **MYSQL_TABLE_KWARGS,
)

_I = roster_items.c
_G = roster_groups.c
_V = roster_versions.c


class SqlRosterRepository:
    """Rosters in SQL (``roster_items``, ``roster_groups``, ``roster_versions``)."""

    def __init__(self, db: Database, *, max_tombstones: int = 1000) -> None:
        self._db = db
        self.max_tombstones = max_tombstones

    # -- helpers

    async def _account_id_txn(self, conn: AsyncConnection, owner: JID, *, lock: bool = False) -> int | None:
        q = account_id_query(owner.local or "", owner.domain)
        if lock and self._db.is_mysql:
            q = q.with_for_update()  # serialises one owner's roster updates (SQLite: BEGIN IMMEDIATE)
        found = (await conn.execute(q)).scalar()
        return None if found is None else int(found)

    @staticmethod
    async def _rows_txn(conn: AsyncConnection, account_id: int, where: sa.ColumnElement[bool] | None = None) -> list[RosterItem]:
        q = sa.select(roster_items).where(_I.account_id == account_id)
        if where is not None:
            q = q.where(where)
        rows = (await conn.execute(q.order_by(_I.contact))).mappings().all()
        if not rows:
            return []
        gq = sa.select(_G.contact, _G.name).where(_G.account_id == account_id)
        if len(rows) == 1:
            gq = gq.where(_G.contact == rows[0]["contact"])
        groups: dict[str, list[str]] = {}
        for contact, name in (await conn.execute(gq)).all():
            groups.setdefault(contact, []).append(name)
        return [
            RosterItem(
                contact=m["contact"],
                name=m["name"],
                groups=tuple(sorted(groups.get(m["contact"], ()))),
                subscription=m["subscription"],
                ask=bool(m["ask"]),
                approved=bool(m["approved"]),
                pending_in=bool(m["pending_in"]),
                pending_stanza=m["pending_stanza"],
                listed=bool(m["listed"]),
                version=int(m["version"]),
            )
            for m in rows
        ]

    @staticmethod
    async def _counter_txn(conn: AsyncConnection, account_id: int) -> tuple[int, int] | None:
        row = (await conn.execute(sa.select(_V.version, _V.floor).where(_V.account_id == account_id))).first()
        return None if row is None else (int(row[0]), int(row[1]))

    # -- reads

    async def roster(self, owner: JID) -> tuple[int, list[RosterItem]]:
        return await self._db.read_txn(self._roster_txn, owner)

    async def _roster_txn(self, conn: AsyncConnection, owner: JID) -> tuple[int, list[RosterItem]]:
        account_id = await self._account_id_txn(conn, owner)
        if account_id is None:
            return 0, []
        counter = await self._counter_txn(conn, account_id)
        return (counter[0] if counter else 0), await self._rows_txn(conn, account_id, _I.listed == sa.true())

    async def get(self, owner: JID, contact: str) -> RosterItem | None:
        return await self._db.read_txn(self._get_txn, owner, contact)

    async def _get_txn(self, conn: AsyncConnection, owner: JID, contact: str) -> RosterItem | None:
        account_id = await self._account_id_txn(conn, owner)
        if account_id is None:
            return None
        rows = await self._rows_txn(conn, account_id, _I.contact == contact)
        return _live(rows[0]) if rows else None

    async def changes_since(self, owner: JID, version: int) -> Changes | None:
        return await self._db.read_txn(self._changes_txn, owner, version)

    async def _changes_txn(self, conn: AsyncConnection, owner: JID, version: int) -> Changes | None:
        account_id = await self._account_id_txn(conn, owner)
        if account_id is None:
            return None
        current, floor = await self._counter_txn(conn, account_id) or (0, 0)
        if version > current or version < floor:
            return None
        rows = await self._rows_txn(conn, account_id, _I.version > version)
        return Changes(current, sorted(rows, key=lambda r: r.version))

    async def pending_in(self, owner: JID) -> list[RosterItem]:
        return await self._db.read_txn(self._pending_txn, owner)

    async def _pending_txn(self, conn: AsyncConnection, owner: JID) -> list[RosterItem]:
        account_id = await self._account_id_txn(conn, owner)
        return [] if account_id is None else await self._rows_txn(conn, account_id, _I.pending_in == sa.true())

    async def count(self, owner: JID) -> int:
        return await self._db.read_txn(self._count_txn, owner)

    async def _count_txn(self, conn: AsyncConnection, owner: JID) -> int:
        account_id = await self._account_id_txn(conn, owner)
        if account_id is None:
            return 0
        q = sa.select(sa.func.count()).select_from(roster_items).where(_I.account_id == account_id, _I.listed == sa.true())
        return int((await conn.execute(q)).scalar() or 0)

    # -- snapshots (the cache's reads and writes)

    async def snapshot(self, owner: JID) -> Snapshot | None:
        """Two reads in one transaction; on SQLite on the loop's thread when it need not wait
        (the login's roster load), else in one call on the driver's thread (the fast path);
        elsewhere one statement (MariaDB: one round trip on the fast path's direct side)."""
        return await self._db.fastpath.read(
            functools.partial(_sqlite_snapshot, owner), lambda conn: self._snapshot_txn(conn, owner), inline=True
        )

    async def _snapshot_txn(self, conn: AsyncConnection, owner: JID) -> Snapshot | None:
        # One statement, one round trip (MariaDB's login read): the head's columns on every row,
        # one row with no contact when the roster is empty, none when there is no account.
        found = (await conn.execute(_SNAPSHOT, {"domain": owner.domain, "username": owner.local or ""})).all()
        if not found:
            return None
        head = found[0]
        account_id = int(head[0])
        rows = _joined([r[3:] for r in found if r[3] is not None])
        counter = head[1] is not None
        return Snapshot(account_id, int(head[1]) if counter else 0, int(head[2]) if counter else 0, counter, {r.contact: r for r in rows})

    async def apply(self, snap: Snapshot, owner: JID, contact: str, change: Change) -> Applied:
        """One write transaction without reads: the row (when it changed), its groups (when they
        changed), pruned tombstones, the counter (when it changed). Every statement that
        expects a row checks that it found one, and the counter update expects the snapshot's
        version: a roster written by anyone else since the snapshot raises :class:`StaleRoster`.
        On SQLite the whole transaction is one call on the driver's thread."""
        raw = snap.rows.get(contact)
        before, stored, version, tomb = plan(raw, contact, change, snap.version)
        if stored == raw and version == snap.version:
            return Applied(before, _live(raw), version, snap.floor, raw)
        floor, pruned = snap.floor, ()
        if tomb:
            pruned, floor = prune_plan({**snap.rows, contact: stored}, self.max_tombstones, floor)  # type: ignore[dict-item]
        old_counter = (snap.version, snap.floor) if snap.counter else None
        ops = [
            *_row_ops(snap.account_id, contact, raw, stored),
            *_prune_ops(snap.account_id, pruned),
            *_counter_ops(snap.account_id, old_counter, (version, floor)),
        ]
        await self._write(ops)
        if contact in pruned:
            stored = None
        return Applied(before, _live(stored), version, floor, stored, pruned, written=True)

    async def _write(self, ops: list[_Op]) -> None:
        """The operations in one write transaction: on SQLite in the next group commit."""
        try:
            await self._db.fastpath.write(functools.partial(_sqlite_run, ops), lambda conn: _sa_run(conn, ops), group=True)
        except sqlite3.IntegrityError as exc:  # a row the snapshot did not know of (or no account)
            raise StaleRoster(str(exc)) from exc
        except IntegrityError as exc:
            raise StaleRoster(str(exc.orig)) from exc

    # -- writes without a snapshot

    async def update(self, owner: JID, contact: str, change: Change) -> tuple[RosterItem | None, RosterItem | None]:
        applied = await self.change(owner, contact, change)
        return applied.before, applied.after

    async def change(self, owner: JID, contact: str, change: Change) -> Applied:
        return await self._db.run_txn(self._change_txn, owner, contact, change)

    async def _change_txn(self, conn: AsyncConnection, owner: JID, contact: str, change: Change) -> Applied:
        """Read-modify-write: the account and its counter (locked on MySQL; SQLite: BEGIN
        IMMEDIATE), the row with its groups, then the same writes as :meth:`apply`."""
        params = {"domain": owner.domain, "username": owner.local or ""}
        head = (await conn.execute(_HEAD_LOCKED if self._db.is_mysql else _HEAD, params)).first()
        if head is None:
            raise UnknownOwner(str(owner))
        account_id = int(head[0])
        counter = (int(head[1]), int(head[2])) if head[1] is not None else None
        version, floor = counter or (0, 0)
        found = _joined((await conn.execute(_ROW, {"k_account": account_id, "k_contact": contact})).all())
        raw = found[0] if found else None
        before, stored, new_version, tomb = plan(raw, contact, change, version)
        if stored == raw and new_version == version:
            return Applied(before, _live(raw), version, floor, raw)
        await _sa_run(conn, _row_ops(account_id, contact, raw, stored))
        pruned: tuple[str, ...] = ()
        if tomb:
            pruned, floor = await self._prune_txn(conn, account_id, floor)
        await _sa_run(conn, _counter_ops(account_id, counter, (new_version, floor)))
        if contact in pruned:
            stored = None
        return Applied(before, _live(stored), new_version, floor, stored, pruned, written=True)

    async def _prune_txn(self, conn: AsyncConnection, account_id: int, floor: int) -> tuple[tuple[str, ...], int]:
        tomb = sa.and_(_I.account_id == account_id, _I.listed == sa.false(), _I.pending_in == sa.false())
        n = int((await conn.execute(sa.select(sa.func.count()).select_from(roster_items).where(tomb))).scalar() or 0)
        excess = n - self.max_tombstones
        if excess <= 0:
            return (), floor
        old = (await conn.execute(sa.select(_I.contact, _I.version).where(tomb).order_by(_I.version).limit(excess))).all()
        await conn.execute(roster_items.delete().where(_I.account_id == account_id, _I.contact.in_([c for c, _v in old])))
        return tuple(c for c, _v in old), max([floor, *(int(v) for _c, v in old)])

    async def delete_all(self, owner: JID) -> None:
        await self._db.run_txn(self._delete_all_txn, owner)

    async def _delete_all_txn(self, conn: AsyncConnection, owner: JID) -> None:
        account_id = await self._account_id_txn(conn, owner)
        if account_id is None:
            return
        await conn.execute(roster_groups.delete().where(_G.account_id == account_id))
        await conn.execute(roster_items.delete().where(_I.account_id == account_id))
        await conn.execute(roster_versions.delete().where(_V.account_id == account_id))


# -- prebuilt statements (compiled once: SQLAlchemy's cache serves every call)

_b = sa.bindparam
_ITEM_COLUMNS: Final = ("name", "subscription", "ask", "approved", "pending_in", "pending_stanza", "listed", "version")
_HEAD = (
    sa.select(accounts.c.id, _V.version, _V.floor)
    .select_from(accounts.outerjoin(roster_versions, _V.account_id == accounts.c.id))
    .where(accounts.c.domain == _b("domain"), accounts.c.username == _b("username"))
)
_HEAD_LOCKED = _HEAD.with_for_update()  # MySQL: serialises read-modify-writes of one roster
_JOINED = sa.select(
    _I.contact, _I.name, _I.subscription, _I.ask, _I.approved, _I.pending_in, _I.pending_stanza, _I.listed, _I.version,
    _G.name.label("group_name"),
).select_from(roster_items.outerjoin(roster_groups, sa.and_(_G.account_id == _I.account_id, _G.contact == _I.contact)))
# The portable snapshot: the head (_HEAD) and every row (_JOINED) in one statement.
_SNAPSHOT = (
    sa.select(accounts.c.id, _V.version, _V.floor, *_JOINED.selected_columns)
    .select_from(
        accounts.outerjoin(roster_versions, _V.account_id == accounts.c.id)
        .outerjoin(roster_items, _I.account_id == accounts.c.id)
        .outerjoin(roster_groups, sa.and_(_G.account_id == _I.account_id, _G.contact == _I.contact))
    )
    .where(accounts.c.domain == _b("domain"), accounts.c.username == _b("username"))
    .order_by(_I.contact)
)
_ROW = _JOINED.where(_I.account_id == _b("k_account"), _I.contact == _b("k_contact"))
_INSERT_ITEM = roster_items.insert()
_UPDATE_ITEM = (
    roster_items.update()
    .where(_I.account_id == _b("k_account"), _I.contact == _b("k_contact"))
    .values({c: _b(f"v_{c}") for c in _ITEM_COLUMNS})
)
_DELETE_ITEM = roster_items.delete().where(_I.account_id == _b("k_account"), _I.contact == _b("k_contact"))
_DELETE_GROUPS = roster_groups.delete().where(_G.account_id == _b("k_account"), _G.contact == _b("k_contact"))
_INSERT_GROUPS = roster_groups.insert()
_PRUNE = roster_items.delete().where(_I.account_id == _b("k_account"), _I.contact.in_(_b("k_contacts", expanding=True)))
_INSERT_COUNTER = roster_versions.insert()
_UPDATE_COUNTER = (
    roster_versions.update()
    .where(_V.account_id == _b("k_account"), _V.version == _b("k_version"), _V.floor == _b("k_floor"))
    .values(version=_b("v_version"), floor=_b("v_floor"))
)


def _joined(rows: list[sa.Row]) -> list[RosterItem]:  # type: ignore[type-arg]
    """Items from rows of ``_JOINED`` (one per group, ordered or at least grouped by contact)."""
    items: dict[str, list] = {}  # type: ignore[type-arg]
    for contact, name, subscription, ask, approved, pending_in, pending_stanza, listed, version, group in rows:
        got = items.get(contact)
        if got is None:
            items[contact] = [name, subscription, ask, approved, pending_in, pending_stanza, listed, version, [group] if group is not None else []]
        elif group is not None:
            got[8].append(group)
    return [
        RosterItem(
            contact=c, name=name, groups=tuple(sorted(groups)), subscription=sub, ask=bool(ask), approved=bool(appr),
            pending_in=bool(pin), pending_stanza=pst, listed=bool(listed), version=int(version),
        )
        for c, (name, sub, ask, appr, pin, pst, listed, version, groups) in items.items()
    ]


def _values(row: RosterItem) -> tuple[object, ...]:
    return (row.name, row.subscription, row.ask, row.approved, row.pending_in, row.pending_stanza, row.listed, row.version)


# -- writes as a list of operations, run by SQLAlchemy (MySQL, and SQLite reads-then-writes) or by
# sqlite3 on the driver's thread (SQLite snapshot writes). An operation: (statement key, parameters
# -- a list for several rows --, the number of rows it must touch or None).

_Op = tuple[str, Any, "int | None"]

_SA_STATEMENTS: Final[dict[str, sa.Executable]] = {
    "insert_item": _INSERT_ITEM,
    "update_item": _UPDATE_ITEM,
    "delete_item": _DELETE_ITEM,
    "delete_groups": _DELETE_GROUPS,
    "insert_groups": _INSERT_GROUPS,
    "prune": _PRUNE,
    "insert_counter": _INSERT_COUNTER,
    "update_counter": _UPDATE_COUNTER,
}
# The same statements for sqlite3, with the same named parameters.
_SQLITE_STATEMENTS: Final[dict[str, str]] = {
    "insert_item": (
        "INSERT INTO roster_items (account_id, contact, name, subscription, ask, approved, pending_in, pending_stanza, listed, version)"
        " VALUES (:account_id, :contact, :name, :subscription, :ask, :approved, :pending_in, :pending_stanza, :listed, :version)"
    ),
    "update_item": (
        "UPDATE roster_items SET name = :v_name, subscription = :v_subscription, ask = :v_ask, approved = :v_approved,"
        " pending_in = :v_pending_in, pending_stanza = :v_pending_stanza, listed = :v_listed, version = :v_version"
        " WHERE account_id = :k_account AND contact = :k_contact"
    ),
    "delete_item": "DELETE FROM roster_items WHERE account_id = :k_account AND contact = :k_contact",
    "delete_groups": "DELETE FROM roster_groups WHERE account_id = :k_account AND contact = :k_contact",
    "insert_groups": "INSERT INTO roster_groups (account_id, contact, name) VALUES (:account_id, :contact, :name)",
    "prune": "DELETE FROM roster_items WHERE account_id = :k_account AND contact IN ({})",
    "insert_counter": "INSERT INTO roster_versions (account_id, version, floor) VALUES (:account_id, :version, :floor)",
    "update_counter": (
        "UPDATE roster_versions SET version = :v_version, floor = :v_floor"
        " WHERE account_id = :k_account AND version = :k_version AND floor = :k_floor"
    ),
}
_SQLITE_HEAD: Final = (
    "SELECT a.id, v.version, v.floor FROM accounts AS a LEFT OUTER JOIN roster_versions AS v ON v.account_id = a.id"
    " WHERE a.domain = ? AND a.username = ?"
)
_SQLITE_ALL_ROWS: Final = (
    "SELECT i.contact, i.name, i.subscription, i.ask, i.approved, i.pending_in, i.pending_stanza, i.listed, i.version, g.name"
    " FROM roster_items AS i LEFT OUTER JOIN roster_groups AS g ON g.account_id = i.account_id AND g.contact = i.contact"
    " WHERE i.account_id = ? ORDER BY i.contact"
)


def _row_ops(account_id: int, contact: str, raw: RosterItem | None, stored: RosterItem | None) -> list[_Op]:
    """Store ``stored`` (None: delete) where ``raw`` is: one statement, plus the groups when they changed."""
    key = {"k_account": account_id, "k_contact": contact}
    if stored is None:
        return [("delete_item", key, 1)] if raw is not None else []  # groups go by ON DELETE CASCADE
    ops: list[_Op] = []
    values = _values(stored)
    if raw is None:
        ops.append(("insert_item", {"account_id": account_id, "contact": contact, **dict(zip(_ITEM_COLUMNS, values, strict=True))}, None))
    elif _values(raw) != values:
        ops.append(("update_item", {**key, **{f"v_{c}": v for c, v in zip(_ITEM_COLUMNS, values, strict=True)}}, 1))
    old_groups = raw.groups if raw is not None else ()
    if old_groups != stored.groups:
        if old_groups:
            ops.append(("delete_groups", key, len(old_groups)))
        if stored.groups:
            ops.append(("insert_groups", [{"account_id": account_id, "contact": contact, "name": g} for g in stored.groups], None))
    return ops


def _prune_ops(account_id: int, pruned: tuple[str, ...]) -> list[_Op]:
    return [("prune", {"k_account": account_id, "k_contacts": list(pruned)}, len(pruned))] if pruned else []


def _counter_ops(account_id: int, old: tuple[int, int] | None, new: tuple[int, int]) -> list[_Op]:
    if old is None:
        return [("insert_counter", {"account_id": account_id, "version": new[0], "floor": new[1]}, None)] if new != (0, 0) else []
    if new == old:
        return []
    return [("update_counter", {"k_account": account_id, "k_version": old[0], "k_floor": old[1], "v_version": new[0], "v_floor": new[1]}, 1)]


async def _sa_run(conn: AsyncConnection, ops: list[_Op]) -> None:
    for key, params, expect in ops:
        result = await conn.execute(_SA_STATEMENTS[key], params)
        if expect is not None and result.rowcount != expect:
            raise StaleRoster(f"{key}: {result.rowcount} rows, expected {expect}")


def _sqlite_run(ops: list[_Op], db: sqlite3.Connection) -> None:
    """:func:`_sa_run` with sqlite3, inside the fast path's transaction (``db.fastpath.write``)."""
    for key, params, expect in ops:
        sql = _SQLITE_STATEMENTS[key]
        if key == "insert_groups":
            db.executemany(sql, params)
            continue
        if key == "prune":
            names = [f"c{i}" for i in range(len(params["k_contacts"]))]
            sql = sql.format(", ".join(f":{n}" for n in names))
            params = {"k_account": params["k_account"], **dict(zip(names, params["k_contacts"], strict=True))}
        n = db.execute(sql, params).rowcount
        if expect is not None and n != expect:
            raise StaleRoster(f"{key}: {n} rows, expected {expect}")


def _sqlite_snapshot(owner: JID, db: sqlite3.Connection) -> Snapshot | None:
    """:meth:`SqlRosterRepository._snapshot_txn` with sqlite3, inside the fast path's read
    transaction (the loop's thread or the driver's)."""
    head = db.execute(_SQLITE_HEAD, (owner.domain, owner.local or "")).fetchone()
    if head is None:
        return None
    account_id = int(head[0])
    rows = _joined(db.execute(_SQLITE_ALL_ROWS, (account_id,)).fetchall())
    counter = head[1] is not None
    return Snapshot(account_id, int(head[1]) if counter else 0, int(head[2]) if counter else 0, counter, {r.contact: r for r in rows})
