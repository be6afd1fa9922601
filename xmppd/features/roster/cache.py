"""The roster cache: rosters of accounts with sessions on this node, read once, kept current.

:class:`CachedRosterRepository` is a :class:`~.repository.RosterRepository` in front of the
SQL one. For an owner the ``cacheable`` predicate accepts (the roster feature: the account has a
session bound here) the first read or write loads a :class:`~.repository.Snapshot` of every
stored row (items with subscription state, ask, groups, pending requests, tombstones) and the
version counter; later reads are dictionary look-ups, and every write goes through
:meth:`RosterRepository.apply`, which writes without reading, and then updates the snapshot.
Owners the predicate refuses are read and written in the database directly, as before.

Consistency rules (the cache is never stale as long as this process is the only writer):

* One owner's loads and writes are serialised by a per-owner lock: the database write happens,
  then the snapshot is updated, before the next write of that owner starts, so racing writes
  reach the database and the cache in the same order.
* A write that fails (a database error, cancellation) drops the owner's entry: the next use
  reloads it. A write the database refuses as stale (:class:`~.repository.StaleRoster`: a row or
  the counter is not what the snapshot says) drops it and is redone as a read-modify-write.
* :meth:`delete_all` drops the entry, and so does :meth:`forget`, which the roster feature calls
  when an account's last session ends, when an account is created (a name reused) and deleted.
  Memory is therefore bounded by the accounts with sessions here; every ``SWEEP_EVERY`` loads,
  entries of owners no longer cacheable are dropped too (should a session-end hook not have run).

Several nodes on one MariaDB: a node only caches rosters of accounts with sessions on that node,
but any node writes the roster of any account of the domain (the subscription handshake writes
the contact's roster on the sender's node). So every write (``change``, ``apply``,
``delete_all``), committed or not, calls ``written(owner)``: the roster feature publishes the
invalidation ``roster`` (xmppd/core/invalidation.py), and every other node runs
:meth:`invalidate` (drop the owner's entry; reloaded at its next use). A load that raced with an
invalidation keeps nothing (a generation counter), and a lost connection to the other nodes
runs :meth:`clear`. The guarded writes above remain the backstop for the milliseconds an
invalidation takes to arrive.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from xmppd.jid import JID

from .repository import Applied, Change, Changes, RosterItem, RosterRepository, Snapshot, StaleRoster

__all__ = ["CachedRosterRepository", "Entry"]

SWEEP_EVERY = 1024
_FROM = frozenset(("from", "both"))
_TO = frozenset(("to", "both"))


class Entry:
    """A cached roster: the snapshot plus what presence asks for on every broadcast."""

    __slots__ = ("snap", "_subscribers", "_subscriptions")

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self._subscribers: tuple[JID, ...] | None = None
        self._subscriptions: tuple[JID, ...] | None = None

    def subscribers(self) -> tuple[JID, ...]:
        """Listed contacts that receive the owner's presence (``from``/``both``), bare JIDs."""
        s = self._subscribers
        if s is None:
            s = self._subscribers = _jids(r for r in self.snap.rows.values() if r.listed and r.subscription in _FROM)
        return s

    def subscriptions(self) -> tuple[JID, ...]:
        """Listed contacts whose presence the owner receives (``to``/``both``), bare JIDs."""
        s = self._subscriptions
        if s is None:
            s = self._subscriptions = _jids(r for r in self.snap.rows.values() if r.listed and r.subscription in _TO)
        return s

    def commit(self, contact: str, applied: Applied) -> None:
        self.snap.commit(contact, applied)
        if applied.written:
            self._subscribers = self._subscriptions = None


def _jids(rows: object) -> tuple[JID, ...]:
    out = []
    for r in sorted(rows, key=lambda r: r.contact):  # type: ignore[attr-defined]
        try:
            out.append(JID.parse(r.contact))
        except ValueError:  # stored before validation: never a presence target
            continue
    return tuple(out)


class CachedRosterRepository:
    """A write-through cache of whole rosters in front of ``backend`` (see the module doc)."""

    def __init__(self, backend: RosterRepository, cacheable: Callable[[JID], bool],
                 written: Callable[[JID], None] | None = None) -> None:
        self.backend = backend
        self._cacheable = cacheable
        self._written = written or (lambda owner: None)
        self._generation = 0  # moves at every invalidation: a load racing with one keeps nothing
        self._entries: dict[JID, Entry] = {}
        self._locks: dict[JID, list] = {}  # type: ignore[type-arg]  # owner -> [lock, users]
        self._since_sweep = 0
        # Counters for tests and diagnostics.
        self.loads = 0
        self.drops = 0
        self.stale = 0

    # ------------------------------------------------------------------ cache management

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, owner: JID) -> Entry | None:
        """The cached entry, without loading."""
        return self._entries.get(owner)

    async def entry(self, owner: JID) -> Entry | None:
        """The owner's entry, loaded if the owner is cacheable; None otherwise (or no account)."""
        e = self._entries.get(owner)
        if e is not None or not self._cacheable(owner):
            return e
        async with self._locked(owner):
            return await self._load_locked(owner)

    def forget(self, owner: JID) -> None:
        """Drop the owner's entry (the next use reloads it, if the owner is still cacheable)."""
        if self._entries.pop(owner, None) is not None:
            self.drops += 1

    def invalidate(self, owner: JID) -> None:
        """Another node wrote the owner's roster: drop the entry (a load in progress keeps nothing)."""
        self._generation += 1
        self.forget(owner)

    def clear(self) -> None:
        """Invalidations may have been missed: drop every entry."""
        self._generation += 1
        self.drops += len(self._entries)
        self._entries.clear()

    async def stale_entries(self) -> list[JID]:
        """Owners whose cached roster differs from what the backend holds (a consistency check
        for tests and diagnostics: empty unless something wrote behind the cache)."""
        out = []
        for owner, e in list(self._entries.items()):
            async with self._locked(owner):
                if self._entries.get(owner) is e and await self.backend.snapshot(owner) != e.snap:
                    out.append(owner)
        return out

    async def _load_locked(self, owner: JID) -> Entry | None:
        e = self._entries.get(owner)
        if e is None and self._cacheable(owner):
            generation = self._generation
            snap = await self.backend.snapshot(owner)
            self.loads += 1
            if generation != self._generation:
                # Invalidated while loading: the snapshot may predate another node's write.
                return None
            # The owner's last session may have ended meanwhile (forget found nothing to drop).
            if snap is not None and self._cacheable(owner):
                e = self._entries[owner] = Entry(snap)
                self._since_sweep += 1
                if self._since_sweep >= SWEEP_EVERY:
                    self._since_sweep = 0
                    for other in [o for o in self._entries if not self._cacheable(o)]:
                        self.forget(other)
        return e

    @asynccontextmanager
    async def _locked(self, owner: JID) -> AsyncIterator[None]:
        slot = self._locks.get(owner)
        if slot is None:
            slot = self._locks[owner] = [asyncio.Lock(), 0]
        slot[1] += 1
        try:
            async with slot[0]:
                yield
        finally:
            slot[1] -= 1
            if slot[1] == 0 and self._locks.get(owner) is slot:
                del self._locks[owner]

    # ------------------------------------------------------------------ reads

    async def roster(self, owner: JID) -> tuple[int, list[RosterItem]]:
        e = await self.entry(owner)
        return e.snap.roster() if e is not None else await self.backend.roster(owner)

    async def get(self, owner: JID, contact: str) -> RosterItem | None:
        e = await self.entry(owner)
        return e.snap.get(contact) if e is not None else await self.backend.get(owner, contact)

    async def changes_since(self, owner: JID, version: int) -> Changes | None:
        e = await self.entry(owner)
        return e.snap.changes_since(version) if e is not None else await self.backend.changes_since(owner, version)

    async def pending_in(self, owner: JID) -> list[RosterItem]:
        e = await self.entry(owner)
        return e.snap.pending_in() if e is not None else await self.backend.pending_in(owner)

    async def count(self, owner: JID) -> int:
        e = await self.entry(owner)
        return e.snap.count() if e is not None else await self.backend.count(owner)

    async def snapshot(self, owner: JID) -> Snapshot | None:
        return await self.backend.snapshot(owner)

    # ------------------------------------------------------------------ writes

    async def update(self, owner: JID, contact: str, change: Change) -> tuple[RosterItem | None, RosterItem | None]:
        applied = await self.change(owner, contact, change)
        return applied.before, applied.after

    async def change(self, owner: JID, contact: str, change: Change) -> Applied:
        # Writes of uncached owners take the lock too: a load racing with them must not read
        # the roster before their commit and keep that.
        async with self._locked(owner):
            try:
                e = await self._load_locked(owner)
                if e is None:
                    return await self.backend.change(owner, contact, change)
                try:
                    applied = await self.backend.apply(e.snap, owner, contact, change)
                except StaleRoster:
                    # Someone else wrote this roster: forget what we knew and read-modify-write.
                    self.stale += 1
                    self.forget(owner)
                    return await self.backend.change(owner, contact, change)
                except BaseException:
                    self.forget(owner)  # committed or not: unknown
                    raise
                e.commit(contact, applied)
                return applied
            finally:
                self._written(owner)

    async def apply(self, snap: Snapshot, owner: JID, contact: str, change: Change) -> Applied:
        """The backend's apply with the caller's own snapshot: the cached entry, which that
        write goes past, is dropped."""
        async with self._locked(owner):
            try:
                return await self.backend.apply(snap, owner, contact, change)
            finally:
                self.forget(owner)
                self._written(owner)

    async def delete_all(self, owner: JID) -> None:
        async with self._locked(owner):
            try:
                await self.backend.delete_all(owner)
            finally:
                self.forget(owner)
                self._written(owner)
