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
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from xmppd.jid import JID
from xmppd.storage.accounts import accounts
from xmppd.storage.engine import Database
from xmppd.storage.metadata import MYSQL_TABLE_KWARGS, id_type, indexed_string, metadata

from .states import SubState

__all__ = [
    "Changes",
    "MemoryRosterRepository",
    "RosterItem",
    "RosterRepository",
    "SqlRosterRepository",
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
        key = str(owner)
        rows = self._rows.setdefault(key, {})
        version, floor = self._versions.get(key, (0, 0))
        raw = rows.get(contact)
        before = _live(raw)
        new = change(before)
        if new is not None:
            new = replace(new, contact=contact, groups=tuple(sorted(set(new.groups))))
        stored, version, tomb = _normalise(raw, new, version)
        if stored is None:
            rows.pop(contact, None)
        else:
            rows[contact] = replace(stored, contact=contact)
            if tomb:
                floor = self._prune(rows, floor)
        self._versions[key] = (version, floor)
        return before, _live(rows.get(contact))

    def _prune(self, rows: dict[str, RosterItem], floor: int) -> int:
        tombs = sorted((r.version, c) for c, r in rows.items() if not r.listed and not r.pending_in)
        excess = len(tombs) - self.max_tombstones
        for v, c in tombs[: max(0, excess)]:
            del rows[c]
            floor = max(floor, v)
        return floor

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
        q = sa.select(accounts.c.id).where(accounts.c.domain == owner.domain, accounts.c.username == (owner.local or ""))
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

    # -- writes

    async def update(self, owner: JID, contact: str, change: Change) -> tuple[RosterItem | None, RosterItem | None]:
        return await self._db.run_txn(self._update_txn, owner, contact, change)

    async def _update_txn(self, conn: AsyncConnection, owner: JID, contact: str, change: Change) -> tuple[RosterItem | None, RosterItem | None]:
        account_id = await self._account_id_txn(conn, owner, lock=True)
        if account_id is None:
            raise UnknownOwner(str(owner))
        counter = await self._counter_txn(conn, account_id)
        if counter is None:
            await conn.execute(roster_versions.insert().values(account_id=account_id, version=0, floor=0))
            counter = (0, 0)
        version, floor = counter
        rows = await self._rows_txn(conn, account_id, _I.contact == contact)
        raw = rows[0] if rows else None
        before = _live(raw)
        new = change(before)
        if new is not None:
            new = replace(new, contact=contact, groups=tuple(sorted(set(new.groups))))
        stored, new_version, tomb = _normalise(raw, new, version)
        where = sa.and_(_I.account_id == account_id, _I.contact == contact)
        if stored is None:
            if raw is not None:
                await conn.execute(roster_items.delete().where(where))
        else:
            values = {
                "name": stored.name,
                "subscription": stored.subscription,
                "ask": stored.ask,
                "approved": stored.approved,
                "pending_in": stored.pending_in,
                "pending_stanza": stored.pending_stanza,
                "listed": stored.listed,
                "version": stored.version,
            }
            if raw is None:
                await conn.execute(roster_items.insert().values(account_id=account_id, contact=contact, **values))
            else:
                await conn.execute(roster_items.update().where(where).values(**values))
            if raw is None or raw.groups != stored.groups:
                await conn.execute(roster_groups.delete().where(_G.account_id == account_id, _G.contact == contact))
                if stored.groups:
                    await conn.execute(
                        roster_groups.insert(),
                        [{"account_id": account_id, "contact": contact, "name": g} for g in stored.groups],
                    )
            if tomb:
                floor = await self._prune_txn(conn, account_id, floor)
        if (new_version, floor) != counter:
            await conn.execute(roster_versions.update().where(_V.account_id == account_id).values(version=new_version, floor=floor))
        after = replace(stored, contact=contact) if stored is not None else None
        return before, _live(after)

    async def _prune_txn(self, conn: AsyncConnection, account_id: int, floor: int) -> int:
        tomb = sa.and_(_I.account_id == account_id, _I.listed == sa.false(), _I.pending_in == sa.false())
        n = int((await conn.execute(sa.select(sa.func.count()).select_from(roster_items).where(tomb))).scalar() or 0)
        excess = n - self.max_tombstones
        if excess <= 0:
            return floor
        old = (await conn.execute(sa.select(_I.contact, _I.version).where(tomb).order_by(_I.version).limit(excess))).all()
        await conn.execute(roster_items.delete().where(_I.account_id == account_id, _I.contact.in_([c for c, _v in old])))
        return max([floor, *(int(v) for _c, v in old)])

    async def delete_all(self, owner: JID) -> None:
        await self._db.run_txn(self._delete_all_txn, owner)

    async def _delete_all_txn(self, conn: AsyncConnection, owner: JID) -> None:
        account_id = await self._account_id_txn(conn, owner)
        if account_id is None:
            return
        await conn.execute(roster_groups.delete().where(_G.account_id == account_id))
        await conn.execute(roster_items.delete().where(_I.account_id == account_id))
        await conn.execute(roster_versions.delete().where(_V.account_id == account_id))
