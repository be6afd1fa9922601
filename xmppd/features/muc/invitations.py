"""XEP-0045 §7.8.2/§7.8.3: the invitations a room has relayed and not yet seen declined, and the
per-sender rate of invitations and declines.

A room relays a ``<decline/>`` only from someone it invited: the pending table is the proof. It
lives in memory (a restart forgets it: a late decline is then refused, which costs nothing but
a courtesy message), is bounded per room (the oldest entry goes first) and entries expire.
"""
from __future__ import annotations

import collections
from collections.abc import Callable

from ...core.limits import SlidingCounter
from ...jid import JID


class PendingInvitations:
    """(invitee bare JID, inviter bare JID) -> (inviter's full JID, expiry time), oldest first."""

    __slots__ = ("_clock", "_entries", "max_entries", "ttl")

    def __init__(self, max_entries: int, ttl: float, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: collections.OrderedDict[tuple[JID, JID], tuple[JID, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self) -> None:
        now = self._clock()
        while self._entries:
            key, (_full, expires) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[key]

    def add(self, invitee: JID, inviter: JID) -> None:
        """Remember that ``inviter`` (a full JID) invited ``invitee``; renews an earlier invitation."""
        self._prune()
        key = (invitee.bare, inviter.bare)
        self._entries.pop(key, None)
        self._entries[key] = (inviter, self._clock() + self.ttl)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pending(self, invitee: JID, inviter: JID) -> bool:
        self._prune()
        return (invitee.bare, inviter.bare) in self._entries

    def take(self, invitee: JID, inviter: JID) -> JID | None:
        """Consume the invitation of ``invitee`` by ``inviter`` (bare JIDs match): the inviter's
        full JID it came from, or None when there is no such pending invitation."""
        self._prune()
        entry = self._entries.pop((invitee.bare, inviter.bare), None)
        return entry[0] if entry is not None else None


class SenderRate(SlidingCounter):
    """Invitations and declines per sender (bare JID) in a sliding window, bounded keys."""

    def used(self, key: str) -> int:
        q = self._prune(key)
        return len(q) if q is not None else 0

    def allows(self, key: str, n: int) -> bool:
        return self.used(key) + n <= self.limit

    def add_many(self, key: str, n: int) -> None:
        for _ in range(n):
            self.add(key)
