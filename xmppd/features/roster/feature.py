"""RFC 6121 §2: roster management, with XEP-0237 roster versioning.

Handles ``jabber:iq:roster`` get and set on the user's own account, pushes every visible
change to the user's interested resources (sessions that requested the roster), advertises
roster versioning and subscription pre-approval as stream features, lets contacts that
receive the owner's presence see the account in service discovery, and cleans rosters up when
an account is deleted.

Public API (for other features: ``ctx.feature("roster")``, declare ``depends = ("roster",)``):

* ``async items(owner_bare) -> list[RosterItem]``: the roster's items (listed ones).
* ``async subscription(owner_bare, contact_bare) -> str``: ``none``, ``to``, ``from`` or
  ``both`` (``none`` when the contact is not in the roster).
* ``async subscribers(owner_bare) -> tuple[JID, ...]``: listed contacts with ``from``/``both``
  (they receive the owner's presence); ``async subscriptions(owner_bare)``: ``to``/``both``.
* ``async pending_in(owner_bare) -> list[RosterItem]``: rows with a pending subscription request.
* ``async item(owner_bare, contact_bare) -> RosterItem | None``: the stored row, including
  pending subscription requests from contacts not in the roster.
* ``async update(owner_bare, contact_bare, change) -> (before, after)``: apply a pure change
  function to one row atomically and push the result if clients can see the difference.
* ``async push(owner_bare, item)``: send a roster push of ``item`` (unlisted: removal).
* ``async remove_account(username)``: what happens on ``ACCOUNT_DELETING`` (run by this
  feature's own hook): every contact gets the cancellations RFC 6121 §3.2/§3.3 prescribe
  (``unavailable``, ``unsubscribe``, ``unsubscribed`` from the deleted account), so their
  rosters are updated and pushed, then every row of the account is deleted.

``owner_bare`` and ``contact_bare`` are bare JIDs (``JID`` or ``str``).

Every read and write goes through ``self.repo``, a :class:`~.cache.CachedRosterRepository`: the
rosters of accounts with a session on this node are read from the database once and kept current
by every write, and another cluster node's writes drop the entry (invalidation ``roster``; see
``cache.py`` for the rules).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lxml import etree

from ...config import NonNegativeInt, PositiveInt
from ...core import hooks as H
from ...core.dispatch import NO_REPLY, IqRequest, Target, _NoReply
from ...core.feature import Feature, hook, iq_handler
from ...core.hooks import AccountEvent, Flow, SessionEvent
from ...errors import Condition, StanzaError
from ...jid import JID, JIDError
from ...xml.builder import element, stanza, sub
from .cache import CachedRosterRepository
from .repository import MAX_CONTACT_LENGTH, MAX_GROUP_LENGTH, Change, RosterItem, SqlRosterRepository

NS_ROSTER = "jabber:iq:roster"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
NS_PREAPPROVAL = "urn:xmpp:features:pre-approval"
QUERY = f"{{{NS_ROSTER}}}query"
ITEM = f"{{{NS_ROSTER}}}item"
GROUP = f"{{{NS_ROSTER}}}group"


@dataclass(frozen=True, slots=True)
class RosterOptions:
    max_items: PositiveInt = 1000  # items per roster; adding more is refused with not-allowed
    max_name_length: PositiveInt = 1023  # characters of an item's name (longer: not-acceptable)
    max_groups: NonNegativeInt = 64  # groups per item (more: not-acceptable)


def _bare(j: JID | str) -> JID:
    return (JID.parse(j) if isinstance(j, str) else j).bare


class Roster(Feature):
    name = "roster"
    implements = ("RFC 6121", "XEP-0237")
    depends = ("disco",)
    Options = RosterOptions
    migrations = str(Path(__file__).parent / "migrations")

    repo: CachedRosterRepository

    async def setup(self) -> None:
        sessions = self.ctx.sessions
        # Another node's write of a roster drops it here (xmppd/core/invalidation.py).
        self._inval = self.ctx.invalidation("roster", lambda key: self.repo.invalidate(JID.parse(key)), lambda: self.repo.clear())
        self.repo = CachedRosterRepository(
            SqlRosterRepository(self.ctx.db, max_tombstones=self.options.max_items), sessions.has_account_sessions,
            lambda owner: self._inval.publish(str(owner)),
        )
        self.ctx.add_stream_feature(self._stream_features)
        self.ctx.on_teardown(self.ctx.feature("disco").add_account_visibility(self._visible))
        from ...api import roster as roster_api

        self.ctx.add_api(roster_api.operations(self))
        self.ctx.on_teardown(self.ctx.router.add_check("roster-push", self._pushed_elsewhere))

    # ------------------------------------------------------------------ public API

    async def items(self, owner_bare: JID | str) -> list[RosterItem]:
        return (await self.repo.roster(_bare(owner_bare)))[1]

    async def item(self, owner_bare: JID | str, contact_bare: JID | str) -> RosterItem | None:
        return await self.repo.get(_bare(owner_bare), str(_bare(contact_bare)))

    async def subscription(self, owner_bare: JID | str, contact_bare: JID | str) -> str:
        row = await self.item(owner_bare, contact_bare)
        return row.subscription if row is not None and row.listed else "none"

    async def subscribers(self, owner_bare: JID | str) -> tuple[JID, ...]:
        owner = _bare(owner_bare)
        e = await self.repo.entry(owner)
        if e is not None:
            return e.subscribers()
        return _jids((await self.repo.roster(owner))[1], ("from", "both"))

    async def subscriptions(self, owner_bare: JID | str) -> tuple[JID, ...]:
        owner = _bare(owner_bare)
        e = await self.repo.entry(owner)
        if e is not None:
            return e.subscriptions()
        return _jids((await self.repo.roster(owner))[1], ("to", "both"))

    async def pending_in(self, owner_bare: JID | str) -> list[RosterItem]:
        return await self.repo.pending_in(_bare(owner_bare))

    async def update(self, owner_bare: JID | str, contact_bare: JID | str, change: Change) -> tuple[RosterItem | None, RosterItem | None]:
        owner = _bare(owner_bare)
        contact = str(_bare(contact_bare))
        applied = await self.repo.change(owner, contact, change)
        before, after = applied.before, applied.after
        old_v = before.visible() if before is not None else None
        new_v = after.visible() if after is not None else None
        if old_v != new_v:
            if after is not None and after.listed:
                await self.push(owner, after)
            else:
                await self.push(owner, RosterItem(contact, listed=False, version=applied.version))
        return before, after

    async def push(self, owner_bare: JID | str, item: RosterItem) -> None:
        """RFC 6121 §2.1.6: a roster push to every interested resource of the owner."""
        owner = _bare(owner_bare)
        for session in self.ctx.sessions.of(owner):
            if session.interested and not session.is_closed:
                iq = stanza("iq", to=str(session.jid), type="set", id=self.ctx.router.tracker.new_id())
                q = sub(iq, QUERY, {"ver": str(item.version)})
                q.append(_item_element(item))
                await self.ctx.router.deliver_to(session.jid, iq, "iq")  # type: ignore[arg-type]
        if self.ctx.router.clustered:  # its interested resources on the other nodes
            iq = stanza("iq", type="set", id=self.ctx.router.tracker.new_id())
            sub(iq, QUERY, {"ver": str(item.version)}).append(_item_element(item))
            self.ctx.router.to_resources_elsewhere(owner, iq, "iq", only_if="roster-push")

    def _pushed_elsewhere(self, session: Any) -> bool:
        """On the node holding ``session``: a push written by another node. The roster changed
        behind this node's cache (another node wrote it), so the cached entry goes; the push
        goes to the session if it asked for the roster (RFC 6121 §2.1.6)."""
        if session.jid is not None:
            self.repo.forget(session.jid.bare)
        return bool(session.interested)

    async def remove_account(self, username: str) -> None:
        owner = JID(username, self.ctx.domain)
        rows = [*(await self.repo.roster(owner))[1], *[r for r in await self.repo.pending_in(owner) if not r.listed]]
        for row in rows:
            await self._cancel_all(owner, row, resources=False)
        await self.repo.delete_all(owner)

    # ------------------------------------------------------------------ hooks and handlers

    @hook(H.ACCOUNT_DELETING)
    async def _account_deleting(self, event: AccountEvent) -> Flow:
        """Before the deleting transaction (the cancellations need the stored roster); the rows
        then go with the account (ON DELETE CASCADE)."""
        if event.domain == self.ctx.domain:
            await self.remove_account(event.username)
        return Flow.CONTINUE

    @hook(H.ACCOUNT_DELETED)
    async def _account_deleted(self, event: AccountEvent) -> Flow:
        if event.domain == self.ctx.domain:
            self.repo.forget(JID(event.username, self.ctx.domain))
        return Flow.CONTINUE

    @hook(H.ACCOUNT_CREATED)
    async def _account_created(self, event: AccountEvent) -> Flow:
        if event.domain == self.ctx.domain:  # a name used before: nothing of the old account stays
            self.repo.forget(JID(event.username, self.ctx.domain))
        return Flow.CONTINUE

    @hook(H.SESSION_CLOSED, priority=-1000)
    async def _session_closed(self, event: SessionEvent) -> Flow:
        """After every other feature's cleanup (presence reads the roster for its unavailable
        broadcast): the roster of an account without sessions here leaves the cache."""
        jid = event.session.jid
        if jid is not None and not self.ctx.sessions.has_account_sessions(jid.bare):
            self.repo.forget(jid.bare)
        return Flow.CONTINUE

    def _stream_features(self, authenticated: bool) -> list[etree._Element]:
        if not authenticated:
            return []
        return [element(f"{{{NS_ROSTERVER}}}ver", default_ns=NS_ROSTERVER), element(f"{{{NS_PREAPPROVAL}}}sub", default_ns=NS_PREAPPROVAL)]

    async def _visible(self, requester: JID, owner: JID) -> bool:
        """XEP-0030 on accounts: contacts the owner shares presence with may see it."""
        return (await self.subscription(owner, requester.bare)) in ("from", "both")

    @iq_handler("get", QUERY, target=Target.BARE)
    async def roster_get(self, req: IqRequest) -> etree._Element | _NoReply | None:
        """RFC 6121 §2.2 and XEP-0237 §2.3."""
        self._check_own(req)
        owner = req.to.bare
        session = req.origin
        if session is not None:
            session.interested = True
        ver = req.payload.get("ver")
        if ver is not None and session is not None:
            changes = await self.repo.changes_since(owner, _parse_version(ver))
            if changes is not None:
                # Known version: an empty result, then a push per change since.
                self.ctx.router.answer(req)
                for row in changes.items:
                    iq = stanza("iq", to=str(session.jid), type="set", id=self.ctx.router.tracker.new_id())
                    sub(iq, QUERY, {"ver": str(row.version)}).append(_item_element(row))
                    await self.ctx.router.deliver_to(session.jid, iq, "iq")  # type: ignore[arg-type]
                return NO_REPLY
        version, items = await self.repo.roster(owner)
        q = element(QUERY, default_ns=NS_ROSTER)
        if ver is not None:
            q.set("ver", str(version))
        for it in items:
            q.append(_item_element(it))
        return q

    @iq_handler("set", QUERY, target=Target.BARE)
    async def roster_set(self, req: IqRequest) -> None:
        """RFC 6121 §2.3 (add, update) and §2.5 (remove), errors of §2.3.3."""
        self._check_own(req)
        owner = req.to.bare
        children = [c for c in req.payload if c.tag == ITEM]
        if len(children) != 1:
            raise StanzaError(Condition.BAD_REQUEST, f"a roster set carries exactly one item, not {len(children)}")
        el = children[0]
        contact = self._contact(el.get("jid"), owner)
        if el.get("subscription") == "remove":
            await self._remove(owner, contact)
            return None
        await self.set_item(owner, contact, el.get("name"), [g.text or "" for g in el.iterchildren(GROUP)])
        return None

    async def set_item(self, owner: JID, contact: str, name: str | None, groups: list[str]) -> RosterItem:
        """RFC 6121 §2.3: add or update ``contact`` (a bare JID, checked by ``check_contact``) in
        ``owner``'s roster with ``name`` and ``groups`` (the limits of [roster] checked), pushed
        to the owner's interested resources. Raises ``StanzaError``. The subscription is left
        as it is (a new item: none)."""
        if name is not None and len(name) > self.options.max_name_length:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"the name is longer than {self.options.max_name_length} characters")
        seen: list[str] = []
        for text in groups:
            if not text:
                raise StanzaError(Condition.NOT_ACCEPTABLE, "a group name is empty (omit <group/> for no group)")
            if len(text) > MAX_GROUP_LENGTH:
                raise StanzaError(Condition.NOT_ACCEPTABLE, f"a group name is longer than {MAX_GROUP_LENGTH} characters")
            if text in seen:
                raise StanzaError(Condition.BAD_REQUEST, f"the group {text!r} is given twice")
            seen.append(text)
        if len(seen) > self.options.max_groups:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"an item is in at most {self.options.max_groups} groups")
        await self.check_room(owner, contact)

        def change(old: RosterItem | None) -> RosterItem:
            base = old if old is not None else RosterItem(contact)
            return replace(base, name=name or None, groups=tuple(seen), listed=True)

        _before, after = await self.update(owner, contact, change)
        assert after is not None
        return after

    async def befriend(self, a: JID, b: JID) -> None:
        """Two local accounts become mutual contacts (subscription ``both`` on each side, any
        pending request settled), as an app that manages "friends" itself wants; each side is
        pushed, and each gets the other's current presence (a probe, as after an approval)."""
        for owner, contact in ((a, b), (b, a)):
            await self.check_room(owner, str(contact))

            def change(old: RosterItem | None, contact: JID = contact) -> RosterItem:
                base = old if old is not None else RosterItem(str(contact))
                return replace(base, listed=True, subscription="both", ask=False, pending_in=False, pending_stanza=None, approved=False)

            await self.update(owner, contact, change)
        for owner, contact in ((a, b), (b, a)):
            await self.ctx.send(stanza("presence", to=str(contact), frm=str(owner), type="probe"))

    async def remove_item(self, owner: JID, contact: str) -> None:
        """RFC 6121 §2.5: remove ``contact`` and cancel the subscriptions both ways (raises
        ``StanzaError`` item-not-found when it is not in the roster)."""
        await self._remove(owner, contact)

    def check_contact(self, value: str | None, owner: JID) -> str:
        """``value`` as a roster item's bare JID, or ``StanzaError`` (jid-malformed ...)."""
        return self._contact(value, owner)

    # ------------------------------------------------------------------ helpers

    async def check_room(self, owner: JID, contact: str) -> None:
        """Refuse a new item when the roster is full (``not-allowed``)."""
        existing = await self.repo.get(owner, contact)
        if existing is not None and existing.listed:
            return
        if await self.repo.count(owner) >= self.options.max_items:
            raise StanzaError(Condition.NOT_ALLOWED, f"the roster is full (at most {self.options.max_items} items)")

    @staticmethod
    def _check_own(req: IqRequest) -> None:
        # RFC 6121 §2.1.5 / §2.3.3: only the account's own resources touch its roster.
        if not req.is_self or req.origin is None:
            raise StanzaError(Condition.FORBIDDEN, "you may only manage your own roster")

    @staticmethod
    def _contact(value: str | None, owner: JID) -> str:
        if not value:
            raise StanzaError(Condition.BAD_REQUEST, "the item has no 'jid'")
        try:
            jid = JID.parse(value)
        except JIDError as exc:
            raise StanzaError(Condition.JID_MALFORMED, f"invalid JID {value!r}: {exc}") from None
        if jid.resource is not None:
            raise StanzaError(Condition.JID_MALFORMED, "a roster item's JID is a bare JID, without resource")
        text = str(jid)
        if len(text) > MAX_CONTACT_LENGTH:
            raise StanzaError(Condition.JID_MALFORMED, f"the JID is longer than {MAX_CONTACT_LENGTH} characters")
        if jid == owner:
            raise StanzaError(Condition.NOT_ALLOWED, "your own account is not a contact of your roster")
        return text

    async def _remove(self, owner: JID, contact: str) -> None:
        """RFC 6121 §2.5.2: delete the item and cancel the subscriptions in both directions."""
        before, _after = await self.update(owner, contact, lambda old: None)
        if before is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"{contact} is not in your roster")
        await self._cancel_all(owner, before, resources=True)

    async def _cancel_all(self, owner: JID, row: RosterItem, *, resources: bool) -> None:
        """Tell the contact that every subscription with ``owner`` is gone (as from the owner)."""
        frm = str(owner)
        if row.subscription in ("from", "both"):
            # The contact no longer receives the owner's presence (RFC 6121 §3.2.2).
            senders = [str(s.jid) for s in self.ctx.sessions.of(owner) if s.available] if resources else []
            for sender in senders or [frm]:
                await self.ctx.send(stanza("presence", to=row.contact, frm=sender, type="unavailable"))
        if row.subscription in ("to", "both") or row.ask:
            await self.ctx.send(stanza("presence", to=row.contact, frm=frm, type="unsubscribe"))
        if row.subscription in ("from", "both") or row.pending_in:
            await self.ctx.send(stanza("presence", to=row.contact, frm=frm, type="unsubscribed"))


def _jids(items: list[RosterItem], subscriptions: tuple[str, ...]) -> tuple[JID, ...]:
    out = []
    for it in items:
        if it.subscription in subscriptions:
            try:
                out.append(JID.parse(it.contact))
            except JIDError:
                continue
    return tuple(out)


def _parse_version(ver: str) -> int:
    try:
        v = int(ver)
    except ValueError:
        return -1
    return v if str(v) == ver else -1


def _item_element(item: RosterItem) -> etree._Element:
    el = etree.Element(ITEM, {"jid": item.contact})
    if not item.listed:
        el.set("subscription", "remove")
        return el
    if item.name:
        el.set("name", item.name)
    el.set("subscription", item.subscription)
    if item.ask:
        el.set("ask", "subscribe")
    if item.approved:
        el.set("approved", "true")
    for g in item.groups:
        etree.SubElement(el, GROUP).text = g
    return el

