"""XEP-0191: Blocking Command.

Blocklist get/block/unblock/unblock-all on the user's own account, with pushes to every
resource that requested the blocklist (``session.data["blocking"]``). JIDs match as XEP-0016
§2.1 (which XEP-0191 §6 points to): an item blocks exactly that full JID, a bare JID blocks all
its resources, a domain blocks everyone there, ``domain/resource`` that resource of the domain.

Enforcement (§3.5), in both directions:

* inbound — stanzas from a blocked JID to the user, checked once per stanza at routing
  (``MESSAGE_*`` / ``PRESENCE_*`` hooks, before offline storage) and, as a catch-all for what
  features deliver themselves (iqs to full JIDs, presence broadcasts), on ``DELIVER``:
  messages get ``service-unavailable``, iq get/set ``service-unavailable``, presence and
  iq result/error are dropped silently — the user appears offline;
* outbound — the user's own stanzas to a blocked JID (``STANZA_IN``): messages and iq get/set
  get ``not-acceptable`` with ``<blocked xmlns='urn:xmpp:blocking:errors'/>``, the rest is
  dropped; presence the server broadcasts for the user is dropped on ``DELIVER``.

On blocking, unavailable presence goes from each of the user's available resources to the
blocked contact's available resources (§3.3), so that the user appears offline to it.

Blocklists are cached in memory (loaded at session bind or on demand, replaced whenever they
change, bounded LRU), so the hot path costs a dict lookup. The usernames whose blocklist is not
empty are loaded at start and kept up to date by every change: for everyone else (most users)
nothing is read from the database and the enforcement hooks return at once.

Several cluster nodes: every change (and an account's deletion) publishes the invalidation
``blocking`` (xmppd/core/invalidation.py); the other nodes then take the account for a possible
owner, drop its cached list and reload it at once if it has sessions there (so the enforcement
hooks, which read only pinned lists, hold from then on). A lost connection to the other nodes
reloads the owners and every pinned list.
"""
from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from ...config import PositiveInt
from ...core import hooks as H
from ...core.dispatch import NO_REPLY, IqRequest, Target
from ...core.feature import Feature, hook, iq_handler
from ...core.hooks import AccountEvent, Delivery, Flow, Routed, SessionEvent
from ...errors import Condition, StanzaError
from ...jid import JID, JIDError
from ...storage.accounts import AccountNotFound
from ...xml.builder import element, stanza, sub
from .repository import MAX_JID_LENGTH, BlockingRepository, BlocklistFull, SqlBlockingRepository

if TYPE_CHECKING:
    from ...core.session import Session

__all__ = ["Blocking", "BlockingOptions", "BLOCKING", "BLOCKING_ERRORS", "matches"]

BLOCKING = "urn:xmpp:blocking"
BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
_B = f"{{{BLOCKING}}}"
_BLOCKLIST = _B + "blocklist"
_BLOCK = _B + "block"
_UNBLOCK = _B + "unblock"
_ITEM = _B + "item"
_SESSION_KEY = "blocking"
_EMPTY: frozenset[str] = frozenset()

# (user bare JID, newly blocked, newly unblocked) -> None: for the presence feature.
ChangeListener = Callable[[JID, frozenset[str], frozenset[str]], object]


@dataclass(frozen=True, slots=True)
class BlockingOptions:
    # JIDs one account may block.
    max_items: PositiveInt = 1000
    # Accounts whose blocklist is kept in memory (least recently used ones are dropped).
    cache_size: PositiveInt = 10000


def matches(blocked: frozenset[str], jid: JID) -> bool:
    """XEP-0016 §2.1 matching of ``jid`` against a blocklist."""
    if not blocked:
        return False
    if jid.resource is not None:
        if str(jid) in blocked:
            return True
        if jid.local is not None and f"{jid.domain}/{jid.resource}" in blocked:
            return True
    if jid.local is not None and str(jid.bare) in blocked:
        return True
    return jid.domain in blocked


def _blocked_error(text: str) -> StanzaError:
    return StanzaError(Condition.NOT_ACCEPTABLE, text, app=element(f"{{{BLOCKING_ERRORS}}}blocked", default_ns=BLOCKING_ERRORS))


class Blocking(Feature):
    name = "blocking"
    implements = ("XEP-0191",)
    disco_features = (BLOCKING,)
    Options = BlockingOptions
    migrations = str(Path(__file__).parent / "migrations")

    repo: BlockingRepository

    async def setup(self) -> None:
        self.repo = SqlBlockingRepository(self.ctx.db)
        # Blocklists of accounts with sessions (pinned), and an LRU of others loaded on demand.
        self._online: dict[JID, frozenset[str]] = {}
        self._lru: collections.OrderedDict[JID, frozenset[str]] = collections.OrderedDict()
        self._nonempty = 0  # cached blocklists that are not empty: zero makes DELIVER free
        self._listeners: list[ChangeListener] = []
        self._generation = 0  # moves at every invalidation: a load racing with one keeps nothing
        # Local usernames with a non-empty blocklist; every other local account's list is empty.
        self._owners: set[str] = set(await self.repo.owners(self.ctx.domain))
        self._inval = self.ctx.invalidation("blocking", self._invalidated, self._flush)

    def add_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Be told of blocklist changes (synchronously, after the pushes)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ---------------------------------------------------------------- cache

    def _cached(self, bare: JID) -> frozenset[str] | None:
        jids = self._online.get(bare)
        if jids is None:
            jids = self._lru.get(bare)
            if jids is not None:
                self._lru.move_to_end(bare)
        return jids

    def _put(self, bare: JID, jids: frozenset[str]) -> None:
        self._drop(bare)
        if jids:
            self._nonempty += 1
        if self.ctx.sessions.has_account_sessions(bare):
            self._online[bare] = jids
            return
        self._lru[bare] = jids
        while len(self._lru) > self.options.cache_size:
            _, dropped = self._lru.popitem(last=False)
            if dropped:
                self._nonempty -= 1

    def _drop(self, bare: JID) -> None:
        old = self._online.pop(bare, None)
        if old is None:
            old = self._lru.pop(bare, None)
        if old:
            self._nonempty -= 1

    def _known_empty(self, bare: JID) -> bool:
        return bare.local not in self._owners and bare.domain == self.ctx.domain

    def _track(self, bare: JID, jids: frozenset[str]) -> None:
        if jids:
            self._owners.add(bare.local or "")
        else:
            self._owners.discard(bare.local or "")

    async def blocklist(self, bare: JID) -> frozenset[str]:
        """The blocklist of a local account (from the cache, loaded on demand)."""
        if self._known_empty(bare):
            return _EMPTY
        cached = self._cached(bare)
        if cached is not None:
            return cached
        generation = self._generation
        jids = await self.repo.get(bare.local or "", bare.domain)
        if generation == self._generation:  # else invalidated meanwhile: not kept
            self._put(bare, jids)
            if bare.domain == self.ctx.domain:
                self._track(bare, jids)
        return jids

    async def _invalidated(self, key: str) -> None:
        """Another node changed this account's blocklist (or deleted the account)."""
        bare = JID.parse(key)
        self._generation += 1
        if bare.domain == self.ctx.domain:
            self._owners.add(bare.local or "")  # until a load says it is empty
        pinned = bare in self._online
        self._drop(bare)
        if pinned and self.ctx.sessions.has_account_sessions(bare):
            jids = await self.repo.get(bare.local or "", bare.domain)
            self._track(bare, jids)
            self._put(bare, jids)

    async def _flush(self) -> None:
        """Invalidations may have been missed: reload the owners and every pinned list."""
        self._generation += 1
        self._owners = set(await self.repo.owners(self.ctx.domain))
        for bare in list(self._lru):
            self._drop(bare)
        for bare in list(self._online):
            self._put(bare, _EMPTY if self._known_empty(bare) else await self.repo.get(bare.local or "", bare.domain))

    async def is_blocked(self, user: JID, other: JID) -> bool:
        """Has the local account ``user`` blocked ``other``?"""
        return matches(await self.blocklist(user.bare), other)

    @hook(H.SESSION_BOUND)
    async def on_bound(self, e: SessionEvent) -> Flow:
        jid = e.session.jid
        if jid is not None and jid.bare not in self._online:
            # Accounts with sessions are pinned: never evicted while they are online.
            jids = self._lru.get(jid.bare)
            if jids is None:
                jids = _EMPTY if self._known_empty(jid.bare) else await self.repo.get(jid.local or "", jid.domain)
            self._put(jid.bare, jids)
        return Flow.CONTINUE

    @hook(H.SESSION_CLOSED)
    async def on_closed(self, e: SessionEvent) -> Flow:
        jid = e.session.jid
        if jid is not None and not self.ctx.sessions.has_account_sessions(jid.bare):
            self._drop(jid.bare)  # reloaded on demand
        return Flow.CONTINUE

    @hook(H.ACCOUNT_DELETED)
    async def on_account_deleted(self, e: AccountEvent) -> Flow:
        # The rows went with the account (ON DELETE CASCADE): only what is cached here is left.
        self._drop(e.jid)
        if e.domain == self.ctx.domain:
            self._owners.discard(e.username)
        self._inval.publish(str(e.jid))
        return Flow.CONTINUE

    # ---------------------------------------------------------------- protocol

    def _own(self, req: IqRequest) -> JID:
        if not req.is_self:
            raise StanzaError(Condition.FORBIDDEN, "a blocklist is managed by its owner only")
        return req.from_jid.bare

    @staticmethod
    def _items(payload: etree._Element) -> list[str]:
        out: list[str] = []
        for item in payload.iter(_ITEM):
            raw = item.get("jid")
            if not raw:
                raise StanzaError(Condition.BAD_REQUEST, "every <item/> needs a 'jid' attribute")
            try:
                jid = str(JID.parse(raw))
            except JIDError as exc:
                raise StanzaError(Condition.JID_MALFORMED, f"cannot block {raw!r}: {exc}") from None
            if len(jid) > MAX_JID_LENGTH:
                raise StanzaError(Condition.NOT_ACCEPTABLE, f"JIDs longer than {MAX_JID_LENGTH} characters cannot be blocked")
            out.append(jid)
        return out

    @iq_handler("get", _BLOCKLIST, target=Target.BARE)
    async def get_blocklist(self, req: IqRequest) -> etree._Element:
        user = self._own(req)
        if req.origin is not None:
            req.origin.data[_SESSION_KEY] = True  # an interested resource: it gets pushes
        result = element(_BLOCKLIST, default_ns=BLOCKING)
        for jid in sorted(await self.blocklist(user)):
            sub(result, _ITEM, {"jid": jid})
        return result

    @iq_handler("set", _BLOCK, target=Target.BARE)
    async def block(self, req: IqRequest) -> object:
        user = self._own(req)
        jids = self._items(req.payload)
        if not jids:
            raise StanzaError(Condition.BAD_REQUEST, "<block/> needs at least one <item/>")
        before = await self.blocklist(user)
        try:
            after = await self.repo.block(user.local or "", user.domain, jids, self.options.max_items)
        except BlocklistFull as exc:
            raise StanzaError(Condition.RESOURCE_CONSTRAINT, str(exc)) from None
        except AccountNotFound:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "the account no longer exists") from None
        self._answer(req)
        added = after - before
        # §3.3: the contact sees the user go offline — sent before the block is in force,
        # so that the delivery check lets these last presences through.
        await self._send_unavailable(user, added)
        self._track(user, after)
        self._put(user, after)
        self._inval.publish(str(user))
        await self._push(user, _BLOCK, sorted(set(jids)))
        self._notify(user, added, frozenset())
        self.log.info("%s blocked %d JIDs", user, len(added))
        return NO_REPLY

    @iq_handler("set", _UNBLOCK, target=Target.BARE)
    async def unblock(self, req: IqRequest) -> object:
        user = self._own(req)
        jids = self._items(req.payload)
        before = await self.blocklist(user)
        after = await self.repo.unblock(user.local or "", user.domain, jids or None)
        self._track(user, after)
        self._put(user, after)
        self._inval.publish(str(user))
        self._answer(req)
        await self._push(user, _UNBLOCK, sorted(set(jids)))
        self._notify(user, frozenset(), before - after)
        if self.ctx.has_feature("presence"):  # §3.4: current presence to the unblocked contacts
            await self.ctx.feature("presence").resend_after_unblock(user, before - after)
        return NO_REPLY

    def _answer(self, req: IqRequest) -> None:
        # §3.3/§3.4: the result comes before the pushes.
        self.ctx.router.answer(req)

    async def _push(self, user: JID, tag: str, jids: list[str]) -> None:
        for s in self.ctx.sessions.of(user):
            if not s.data.get(_SESSION_KEY) or s.jid is None:
                continue
            push = stanza("iq", type="set", to=str(s.jid), id=self.ctx.router.tracker.new_id())
            payload = sub(push, tag)
            for jid in jids:
                sub(payload, _ITEM, {"jid": jid})
            await self.ctx.router.deliver_to(s.jid, push, "iq")

    async def _send_unavailable(self, user: JID, added: frozenset[str]) -> None:
        mine = [s for s in self.ctx.sessions.of(user) if s.available and s.jid is not None]
        if not mine or not added:
            return
        for raw in added:
            contact = JID.parse(raw)
            if contact.local is None or contact.domain != self.ctx.domain:
                continue  # only local accounts have sessions here (no federation)
            targets = self.ctx.sessions.of(contact.bare) if contact.resource is None else [s for s in [self.ctx.sessions.get(contact)] if s]
            for target in targets:
                if not target.available or target.jid is None:
                    continue
                for s in mine:
                    p = stanza("presence", type="unavailable", frm=str(s.jid), to=str(target.jid))
                    await self.ctx.router.deliver_to(target.jid, p, "presence")

    def _notify(self, user: JID, blocked: frozenset[str], unblocked: frozenset[str]) -> None:
        if blocked or unblocked:
            for listener in list(self._listeners):
                try:
                    listener(user, blocked, unblocked)
                except Exception:
                    self.log.exception("a blocklist listener failed")

    # ---------------------------------------------------------------- enforcement: outbound

    @hook(H.STANZA_IN, priority=100)
    def outbound(self, r: Routed) -> "Flow | Awaitable[Flow]":
        to = r.to
        if to is None or self._known_empty(r.from_jid.bare):
            return Flow.CONTINUE  # (the usual case, without a coroutine: see core.hooks)
        return self._outbound(r, to)

    async def _outbound(self, r: Routed, to: JID) -> Flow:
        user = r.from_jid.bare
        blocked = self._online.get(user)
        if blocked is None:
            blocked = await self.blocklist(user)
        if not blocked or (to.local is None and to.resource is None and to.domain == self.ctx.domain):
            return Flow.CONTINUE  # never cut the user off from their own server
        if to.bare == user or not matches(blocked, to):
            return Flow.CONTINUE
        typ = r.stanza.get("type")
        if r.kind == "message" and typ != "error" or r.kind == "iq" and typ in ("get", "set"):
            self.ctx.router.bounce(r, _blocked_error(f"you have blocked {to}; unblock it to communicate"))
        return Flow.STOP

    # ---------------------------------------------------------------- enforcement: inbound

    def _inbound(self, r: Routed) -> "Flow | Awaitable[Flow]":
        to = r.to
        if to is None or to.local is None:
            return Flow.CONTINUE
        owner = to.bare
        if self._known_empty(owner) or r.from_jid.bare == owner:
            return Flow.CONTINUE  # (the usual case, without a coroutine: see core.hooks)
        return self._inbound_blocked(r, owner)

    async def _inbound_blocked(self, r: Routed, owner: JID) -> Flow:
        if not matches(await self.blocklist(owner), r.from_jid):
            return Flow.CONTINUE
        if r.kind == "message" and r.stanza.get("type") not in ("error", "groupchat", "headline"):
            self.ctx.router.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "the recipient is not available"))
        return Flow.STOP  # presence: no reply at all (§3.5)

    @hook(H.MESSAGE_BARE, priority=100)
    def message_bare(self, r: Routed) -> "Flow | Awaitable[Flow]":
        return self._inbound(r)

    @hook(H.MESSAGE_FULL, priority=100)
    def message_full(self, r: Routed) -> "Flow | Awaitable[Flow]":
        return self._inbound(r)

    @hook(H.PRESENCE_BARE, priority=100)
    def presence_bare(self, r: Routed) -> "Flow | Awaitable[Flow]":
        return self._inbound(r)

    @hook(H.PRESENCE_FULL, priority=100)
    def presence_full(self, r: Routed) -> "Flow | Awaitable[Flow]":
        return self._inbound(r)

    @hook(H.DELIVER, priority=100)
    def on_deliver(self, d: Delivery) -> Flow:  # (never awaits: a plain function, see core.hooks)
        if not self._nonempty:
            return Flow.CONTINUE
        frm_s = d.stanza.get("from")
        owner = d.session.jid
        if not frm_s or owner is None:
            return Flow.CONTINUE
        try:
            frm = JID.parse(frm_s)
        except JIDError:
            return Flow.CONTINUE
        if frm.bare == owner.bare:
            return Flow.CONTINUE
        mine = self._online.get(owner.bare)
        if mine and matches(mine, frm):
            # The recipient blocked the sender.
            typ = d.stanza.get("type")
            live_message = (d.kind == "message" and typ not in ("error", "groupchat", "headline")
                            and d.stanza.find("{urn:xmpp:delay}delay") is None)  # not one stored offline long ago
            if d.kind == "iq" and typ in ("get", "set") or live_message:
                # Straight back to the sender's session (no delivery hooks: the error is ours). A
                # message gets here when another cluster node routed it before it learnt of the
                # block (the invalidation was on its way): the same answer as at routing.
                self.ctx.router.bounce(
                    Routed(d.stanza, d.kind, frm, owner, None),
                    StanzaError(Condition.SERVICE_UNAVAILABLE, "the recipient is not available"),
                )
            return Flow.STOP
        if d.kind != "presence":
            return Flow.CONTINUE  # the user's own stanzas were checked on STANZA_IN
        theirs = self._cached(frm.bare) if frm.local is not None and frm.domain == self.ctx.domain else None
        if theirs and matches(theirs, owner):
            return Flow.STOP  # presence the server broadcasts for a user who blocked this contact
        return Flow.CONTINUE

    @staticmethod
    def interested(session: "Session") -> bool:
        return bool(session.data.get(_SESSION_KEY))

