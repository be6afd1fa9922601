"""Does this account exist? Answered from memory for accounts seen before (docs/cluster.md §2).

Features that act on a message for an account without a session on this node (the archive:
``xmppd/features/mam``) must know whether the account exists; reading the accounts table for
every such message costs a database round trip per message -- and in a cluster, a recipient on
another node has no session *here* for every message. :class:`KnownAccounts` keeps the accounts
known to exist, a bounded LRU of positives only (an account created meanwhile is simply read
once, never refused from memory):

* an account with a session on this node exists (no look-up at all);
* a positive answer is kept; ``ACCOUNT_DELETED`` drops it here and publishes the deletion
  (invalidation ``account``) so that every other node drops it too; a lost connection to the
  other nodes flushes everything.

The one gap, as for every invalidation: between the deleting node's commit and the arrival of
the invalidation (milliseconds), another node may still take the account for existing.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from . import hooks as H
from .hooks import AccountEvent, Flow, HookChains

if TYPE_CHECKING:
    from ..jid import JID
    from ..storage.accounts import AccountRepository
    from .invalidation import Invalidations
    from .sessions import SessionRegistry

KEPT = 100_000  # accounts remembered (about 100 bytes each)


class KnownAccounts:
    def __init__(self, accounts: "AccountRepository", sessions: "SessionRegistry", invalidations: "Invalidations",
                 hooks: HookChains, *, kept: int = KEPT) -> None:
        self._accounts = accounts
        self._sessions = sessions
        self._kept = kept
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.reads = 0  # database look-ups, for tests and benchmarks
        self._generation = 0  # moves at every drop: a look-up that raced with one keeps nothing
        self._inval = invalidations.register("account", self._drop_key, self.clear)
        self._remove_hook = hooks.add(H.ACCOUNT_DELETED, self._deleted)

    def close(self) -> None:
        self._inval.close()
        self._remove_hook()

    async def exists(self, bare: "JID") -> bool:
        """Whether the local account ``bare`` (a bare JID with a local part) exists now."""
        if bare.local is None:
            return False
        if self._sessions.has_account_sessions(bare):
            return True
        key = (bare.local, bare.domain)
        known = self._known
        if key in known:
            known.move_to_end(key)
            return True
        self.reads += 1
        generation = self._generation
        if await self._accounts.get(bare.local, bare.domain) is None:
            return False
        if generation != self._generation:
            return True  # deleted (here or elsewhere) during the look-up, maybe: not remembered
        known[key] = None
        if len(known) > self._kept:
            known.popitem(last=False)
        return True

    def clear(self) -> None:
        self._generation += 1
        self._known.clear()

    def _drop_key(self, key: str) -> None:
        local, _, domain = key.partition("@")
        self._generation += 1
        self._known.pop((local, domain), None)

    async def _deleted(self, ev: AccountEvent) -> Flow:
        self._generation += 1
        self._known.pop((ev.username, ev.domain), None)
        self._inval.publish(f"{ev.username}@{ev.domain}")
        return Flow.CONTINUE
