"""Group mute (urn:xmppd:mute:0, docs/mute.md): timed member mute, mute-all and platform mute.

Mutes belong to bare JIDs and live in storage, so they hold across rejoins, resources and
restarts; one expiry task, on the injected clock, ends them (and every check also compares
the end time with now, so a late timer never blocks anybody).

Enforcement is on the server:

* MUC's speech gate (``events.SPEECH``) refuses whatever a muted member would put in front of
  others in a room — groupchat and private messages whatever their payload, subject and nick
  changes, status text (dropped from the relayed presence), invitations, and what features post
  on the member's behalf (red packets) — before history, archiving or subscribers see it; the
  sender gets ``forbidden`` with ``<muted/>``, ``<all-muted/>`` or ``<platform-muted/>``.
* The server's one-to-one speech gate (``hooks.SPEECH``) refuses a platform-muted account's
  content to other accounts (except server admins), its messages and 1:1 red packets alike.
* XEP-0045 voice obeys the mute hierarchy (``events.ROLE_CHANGE_REQUEST``): a voice grant
  lifts a mute only when its actor could lift it through the mute protocol.
* Anything in our namespace in clients' messages and presence is the server's to write
  (``server_owned``): the router strips it before any feature sees the stanza.

Standard clients see XEP-0045: a muted occupant becomes a ``visitor`` (voice revoked, with a
presence broadcast) and a participant again when the mute ends, and the room gets a readable
notice. A moderator's plain voice revoke is recorded as an open-ended mute; granting voice
lifts it. Apps use the iq protocol; standard clients the ad-hoc commands.

Several cluster nodes: every node keeps every mute in memory, so every change (a mute, a lift,
an expiry, mute-all, a destroyed room, a deleted account) publishes the invalidation ``mute``
(xmppd/core/invalidation.py) and the other nodes re-read that one row at once: a mute set on one
node is enforced on every node as soon as the message arrives (milliseconds). A lost connection
to the other nodes reloads every mute. Every node's expiry timer tries to end a due mute; only
the one whose conditional delete succeeds records and announces it.

This module holds the setup, the mutes in memory, the permission checks and the actions with
their notices; MUC's events (the room speech gate among them) are in ``rooms.py``, the iq
requests in ``iqs.py``, the ad-hoc commands in ``commands.py``, all seeing the feature through
``service.MuteService`` (docs/mute.md §11).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from xmppd.config import AtLeast, AtMost, Positive, PositiveInt
from xmppd.core import hooks as H
from xmppd.core.feature import Feature, hook
from xmppd.core.hooks import AccountEvent, Flow
from xmppd.core.server_owned import owned_namespace
from xmppd.errors import Condition, StanzaError
from xmppd.features.muc.affiliations import Affiliation, Role, default_role
from xmppd.features.muc.view import RoomDirectoryView, RoomView
from xmppd.jid import JID
from xmppd.xml.builder import stanza

from . import policy
from . import protocol as P
from .bans import TimedBans
from .commands import MuteCommands
from .deadlines import Deadlines
from .iqs import MuteIqs
from .platform_keywords import PlatformKeywords
from .protocol import NS
from .repository import PLATFORM, Mute, MuteAll, MuteRepository, NewAuditEntry, SqlMuteRepository
from .rooms import MuteRooms
from .service import TicketDesk

log = logging.getLogger(__name__)

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")



@dataclass(frozen=True, slots=True)
class MuteOptions:
    max_seconds: PositiveInt = 2592000  # longest timed mute (30 days); longer requests are refused
    allow_open_ended: bool = True  # a mute without 'seconds' lasts until lifted
    default_lang: str = "en"  # notices when neither the room nor the actor names a language
    audit_page_max: PositiveInt = 100  # most audit entries in one answer
    timer_tick: Positive = 60.0  # longest sleep of the expiry task, seconds (it also wakes on new mutes)
    max_batch: Annotated[int, AtLeast(1), AtMost(1000)] = 50  # most members muted in one request
    max_slow_seconds: Annotated[int, AtLeast(1), AtMost(86400)] = 3600  # longest slow-mode interval a room may set
    max_keywords: Annotated[int, AtLeast(1), AtMost(10000)] = 200  # most words in a room's keyword filter
    appeal_queue: str = ""  # customer-service queue that takes platform-mute appeals as tickets; "" = no appeals
    max_ban_seconds: Annotated[int, AtLeast(1), AtMost(315360000)] = 2592000  # longest timed ban (30 days); a ban without a duration is XEP-0045's, until lifted
    max_platform_keywords: Annotated[int, AtLeast(1), AtMost(100000)] = 1000  # most words in the platform keyword list
    filter_chat: bool = True  # the platform keyword list applies to one-to-one messages too (as WeChat and Tencent IM)


def _now_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _bad(text: str) -> StanzaError:
    return StanzaError(Condition.BAD_REQUEST, text)


class MuteFeature(Feature):
    """Timed member mute, mute-all and platform mute over MUC and ad-hoc commands."""

    name = "mute"
    implements = ()
    disco_features = (NS,)
    depends = ("disco", "muc", "adhoc")
    Options = MuteOptions
    migrations = MIGRATIONS
    server_owned = owned_namespace(NS)  # in messages and presence, anything of ours is the server's

    def __init__(self, ctx: Any, options: MuteOptions) -> None:
        super().__init__(ctx, options)
        self.repo: MuteRepository = None  # type: ignore[assignment]
        self.mutes: dict[tuple[str, JID], Mute] = {}  # (room JID or PLATFORM, bare JID) -> mute
        self.all_muted: dict[str, MuteAll] = {}
        self._ends = Deadlines(ctx.clock, options.timer_tick, self._expire, "mute")
        self.applying: set[tuple[str, JID]] = set()  # role changes we make ourselves
        self.desk: TicketDesk | None = None  # customer service's tickets (appeals), when loaded

    # ================================================================== lifecycle

    async def setup(self) -> None:
        self.repo = SqlMuteRepository(self.ctx.db, self.ctx.outbox)
        self.muc: RoomDirectoryView = self.ctx.feature("muc")  # rooms through MUC's typed view
        self.muc_domain: str = self.muc.domain
        for m in await self.repo.mutes():
            self._remember(m)
        for s in await self.repo.mute_alls():
            self.all_muted[s.room] = s
        self._inval = self.ctx.invalidation("mute", self._invalidated, self._reload)
        self.rooms = MuteRooms(self)
        self.rooms.register()
        MuteIqs(self).register()
        self.bans = TimedBans(self)
        await self.bans.start()
        self.platform_words = PlatformKeywords(self)
        await self.platform_words.start()
        MuteCommands(self).register()
        if self.ctx.has_feature("cs"):
            self.desk = self.ctx.feature("cs")
        self.ctx.spawn(self._ends.run(), name="mute-expiry")
        from .api import operations

        self.ctx.add_api(operations(self))  # /api/v1/rooms/{room}/mutes, /api/v1/mutes (docs/api.md)

    # ================================================================== state

    def now(self) -> datetime:
        return _now_dt(self.ctx.clock.now())

    def _remember(self, m: Mute) -> None:
        self.mutes[(m.room, JID.parse(m.jid))] = m
        if m.until is not None:
            self._ends.add(m.room, m.jid, m.until)

    # Invalidation keys: "m\n<room>\n<jid>" one mute, "a\n<room>" mute-all, "r\n<room>" a
    # destroyed room, "j\n<jid>" a deleted account.

    async def _invalidated(self, key: str) -> None:
        """Another node changed what ``key`` names: read it again."""
        kind, _, rest = key.partition("\n")
        if kind == "m":
            room, _, jid_s = rest.partition("\n")
            bare = JID.parse(jid_s)
            m = await self.repo.get(room, jid_s)
            if m is None:
                self.mutes.pop((room, bare), None)
            else:
                self._remember(m)
        elif kind == "a":
            state = next((s for s in await self.repo.mute_alls() if s.room == rest), None)
            if state is None:
                self.all_muted.pop(rest, None)
            else:
                self.all_muted[rest] = state
        elif kind == "r":
            for k in [k for k in self.mutes if k[0] == rest]:
                del self.mutes[k]
            self.all_muted.pop(rest, None)
        elif kind == "j":
            bare = JID.parse(rest)
            for k in [k for k in self.mutes if k[1] == bare]:
                del self.mutes[k]

    async def _reload(self) -> None:
        """Invalidations may have been missed: every mute read again."""
        mutes = await self.repo.mutes()
        alls = await self.repo.mute_alls()
        self.mutes = {}
        self._ends.clear()
        for m in mutes:
            self._remember(m)
        self.all_muted = {s.room: s for s in alls}

    def _changed(self, room: str, bare: JID | str) -> None:
        self._inval.publish(f"m\n{room}\n{bare}")

    def active(self, room: str, bare: JID) -> Mute | None:
        """The mute of ``bare`` in ``room`` (PLATFORM: server-wide) if it holds now."""
        m = self.mutes.get((room, bare))
        if m is None:
            return None
        if m.until is not None and m.until <= self.now():
            self._ends.wake()  # stale: the expiry task ends it; it blocks nobody meanwhile
            return None
        return m

    def exempt_from_all(self, room: RoomView, bare: JID, role: Role | None) -> bool:
        if room.affiliation(bare).rank >= Affiliation.ADMIN.rank or self.ctx.is_admin(bare):
            return True
        extra = room.config.extra
        if role is Role.MODERATOR and extra.get(P.EXEMPT_MODERATORS_FIELD, ["0"])[:1] == ["1"]:
            return True
        return str(bare) in extra.get(P.ALLOWLIST_FIELD, ())

    def room_block(self, room: RoomView, bare: JID, role: Role | None, *, platform: bool = True) -> StanzaError | None:
        """Why ``bare`` may not speak in ``room`` now (None: it may); ``platform=False`` leaves the
        platform mute out (the caller has decided about it)."""
        if self.mutes:
            pm = self.active(PLATFORM, bare) if platform else None
            if pm is not None:
                return P.platform_muted_error(pm)
            m = self.active(room.jid_s, bare)
            if m is not None:
                return P.muted_error(room.jid_s, m)
        state = self.all_muted.get(room.jid_s)
        if state is not None and not self.exempt_from_all(room, bare, role):
            return P.all_muted_error(room.jid_s, state)
        return None

    # ================================================================== enforcement (one-to-one; rooms: rooms.py)

    @hook(H.SPEECH, priority=50)
    async def _chat_speech(self, ev: H.Speech) -> Flow:
        """One-to-one: a platform-muted account's content reaches only server admins (so that it can
        appeal); chat states and receipts are not content. Features acting on the account's
        behalf (``ev.feature``: a red packet) are refused whatever they carry."""
        if ev.to.bare == ev.sender:
            return Flow.CONTINUE
        if self.mutes and not self.ctx.is_admin(ev.to.bare) and (ev.feature is not None or policy.is_content(ev.stanza)):
            pm = self.active(PLATFORM, ev.sender)
            if pm is not None:
                raise P.platform_muted_error(pm)
        if self.options.filter_chat and ev.feature is None:  # the platform keyword list (§3.7)
            err = await self.platform_words.refuse(None, ev.sender, ev.stanza)
            if err is not None:
                raise err
            self.platform_words.mask(ev.sender, ev.stanza)
        return Flow.CONTINUE

    # ---------------------------------------------------------------- slow mode and keyword filter

    def privileged(self, room: RoomView, bare: JID, role: Role | None) -> bool:
        """Moderators, owners, admins and server admins: neither slow mode nor the keyword filter holds them."""
        return (role is Role.MODERATOR or room.affiliation(bare).rank >= Affiliation.ADMIN.rank
                or self.ctx.is_admin(bare))

    def keyword_rule(self, room: RoomView) -> policy.KeywordRule | None:
        return policy.keyword_rule(room.config.extra, self.options.max_keywords, self.options.max_seconds // 60)

    async def set_keywords(self, room: RoomView, actor: JID, words: list[str], action: str, minutes: int) -> policy.KeywordRule | None:
        """Owners and admins (and server admins) set the room's keyword filter; no words turn it off."""
        self.check_room_admin(room, actor, "only owners and admins may set the keyword filter")
        if action not in policy.KEYWORD_ACTIONS:
            raise _bad(f"the action is one of {', '.join(policy.KEYWORD_ACTIONS)}")
        if len(words) > self.options.max_keywords:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"at most {self.options.max_keywords} words")
        if any(len(w.strip()) > policy.MAX_KEYWORD for w in words):
            raise _bad(f"a word or phrase has at most {policy.MAX_KEYWORD} characters")
        if not 1 <= minutes <= self.options.max_seconds // 60:
            raise _bad(f"minutes are 1 to {self.options.max_seconds // 60}")
        new = room.config.copy()
        new.extra[policy.KEYWORDS_FIELD] = [w.strip() for w in words if w.strip()]
        new.extra[policy.KEYWORDS_ACTION_FIELD] = [action]
        new.extra[policy.KEYWORDS_MINUTES_FIELD] = [str(minutes)]
        await room.reconfigure(new)
        return self.keyword_rule(room)

    async def set_slow_mode(self, room: RoomView, actor: JID, seconds: int) -> None:
        """Owners and admins (and server admins) set the room's slow mode; 0 turns it off."""
        self.check_room_admin(room, actor, "only owners and admins may set slow mode")
        new = room.config.copy()
        new.extra[policy.SLOW_FIELD] = [str(seconds)]
        await room.reconfigure(new)

    # ================================================================== a room or an account gone

    async def forget_room(self, room: str) -> None:
        """A destroyed room: its mutes and mute-all go, from memory, storage and the other nodes."""
        for key in [k for k in self.mutes if k[0] == room]:
            del self.mutes[key]
        self.all_muted.pop(room, None)
        await self.repo.forget_room(room)
        self._inval.publish(f"r\n{room}")

    @classmethod
    async def delete_account_txn(cls, conn: Any, deletion: Any) -> None:
        """A deleted account's mutes go with it: a namesake starts unmuted."""
        await SqlMuteRepository.forget_jid_txn(conn, deletion.jid)

    @hook(H.ACCOUNT_DELETED)
    async def _account_deleted(self, ev: AccountEvent) -> Flow:
        bare = ev.jid
        for key in [k for k in self.mutes if k[1] == bare]:
            del self.mutes[key]
        self._inval.publish(f"j\n{bare}")
        return Flow.CONTINUE

    # ================================================================== actions (iq and commands)

    def room_of(self, jid: JID) -> RoomView:
        room = self.muc.get_room(jid)
        if room is None or jid.resource is not None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"there is no room {jid.bare}")
        return room

    def acts_as_admin(self, actor: JID) -> bool:
        """A server admin, or the server itself (its domain JID, which no client can be: the
        REST API acts as it), with a server admin's authority over mutes."""
        return self.ctx.is_admin(actor) or (actor.local is None and actor.domain == self.ctx.domain)

    def is_moderator(self, room: RoomView, requester: JID) -> bool:
        if self.acts_as_admin(requester) or room.affiliation(requester.bare).rank >= Affiliation.ADMIN.rank:
            return True
        occ = room.occupants.of_jid(requester)
        return occ is not None and occ.role is Role.MODERATOR

    def check_can_mute(self, room: RoomView, actor: JID, target: JID) -> None:
        """XEP-0045 hierarchy: moderators only, and nobody mutes an equal or higher affiliation.

        Server admins act as owners. A moderator without affiliation may mute occupants without
        affiliation (else such moderators could mute nobody); only admins and owners mute a moderator.
        """
        if not self.is_moderator(room, actor):
            raise StanzaError(Condition.FORBIDDEN, "only moderators may mute or unmute members of this room")
        if target == actor.bare:
            raise StanzaError(Condition.NOT_ALLOWED, "you can't mute yourself")
        actor_aff = Affiliation.OWNER if self.acts_as_admin(actor) else room.affiliation(actor.bare)
        target_aff = room.affiliation(target)
        if target_aff.rank >= actor_aff.rank and not (target_aff is Affiliation.NONE and actor_aff is Affiliation.NONE):
            raise StanzaError(Condition.NOT_ALLOWED, f"a {actor_aff.value} can't mute a {target_aff.value} of this room"
                              if actor_aff is not Affiliation.NONE else "you can't mute an affiliated member of this room")
        occ = room.occupants.of_bare(target)
        if occ is not None and occ.role is Role.MODERATOR and actor_aff.rank < Affiliation.ADMIN.rank:
            raise StanzaError(Condition.NOT_ALLOWED, "only admins and owners may mute a moderator")

    def _rank(self, room: RoomView, who: JID) -> int:
        """Rank for lifting mutes: server admin above owner above admin, member, none."""
        if self.acts_as_admin(who.bare):
            return Affiliation.OWNER.rank + 1
        return max(room.affiliation(who.bare).rank, Affiliation.NONE.rank)

    def check_can_lift(self, room: RoomView, actor: JID, m: Mute) -> None:
        """docs/mute.md §2: a mute is lifted only by someone who ranks at least as high as whoever
        set it — through the mute protocol, its commands and an XEP-0045 voice grant alike."""
        setter = JID.parse(m.actor)
        if setter.local is None or self._rank(room, actor) >= self._rank(room, setter):
            return
        what = "a server administrator" if self.ctx.is_admin(setter) else f"somebody with affiliation {room.affiliation(setter).value}"
        raise StanzaError(Condition.NOT_ALLOWED, f"this mute was set by {what}; only someone of that rank or higher may lift it")

    def seconds(self, raw: str | None) -> int | None:
        if raw is None or raw == "":
            if not self.options.allow_open_ended:
                raise StanzaError(Condition.NOT_ACCEPTABLE, f"give 'seconds' (1 to {self.options.max_seconds})")
            return None
        if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
            raise _bad(f"'seconds' is a positive whole number, not {raw!r}")
        n = int(raw)
        if n > self.options.max_seconds:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"a mute lasts at most {self.options.max_seconds} seconds")
        return n

    def _until(self, seconds: int | None) -> datetime | None:
        if seconds is None:
            return None
        return _now_dt(math.ceil(self.ctx.clock.now() + seconds))

    def _lang(self, room: RoomView | None, actor_lang: str | None) -> str:
        if room is not None:
            configured = (room.config.extra.get(P.LANG_FIELD) or [""])[0]
            if configured:
                return configured
        return actor_lang or self.options.default_lang

    async def mute_member(self, room: RoomView, actor: JID, target: JID, seconds: int | None, reason: str | None,
                          lang: str | None = None) -> Mute:
        self.check_can_mute(room, actor, target)
        m = Mute(room.jid_s, str(target), self._until(seconds), reason or None, str(actor.bare), self.now())
        await self.store(m, actor.bare, seconds)
        occ = room.occupants.of_bare(target)
        # XEP-0045 §5.1: admins keep the moderator role; their mute is enforced, not shown as a role.
        if occ is not None and occ.role.rank > Role.VISITOR.rank and room.affiliation(target).rank < Affiliation.ADMIN.rank:
            await self._set_role(room, occ, Role.VISITOR, actor, reason)
        await self.room_notice(room, "mute", target, actor.bare, seconds, reason, m.until, lang)
        return m

    async def unmute_member(self, room: RoomView, actor: JID, target: JID, lang: str | None = None) -> None:
        self.check_can_mute(room, actor, target)
        m = self.mutes.get((room.jid_s, target))
        if m is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"{target} is not muted in this room")
        self.check_can_lift(room, actor, m)
        await self.lift(room.jid_s, target, actor.bare, lang=lang)

    async def store(self, m: Mute, actor: JID, seconds: int | None) -> None:
        await self.repo.put(m)
        self._remember(m)
        self._changed(m.room, m.jid)
        await self.repo.record(NewAuditEntry(m.created_at, str(actor), "mute", m.room, m.jid, seconds, m.until, m.reason))

    async def lift(self, room_s: str, bare: JID, actor: JID, *, lang: str | None, restore: bool = True,
                   action: str = "unmute") -> None:
        self.mutes.pop((room_s, bare), None)
        await self.repo.remove(room_s, str(bare))
        self._changed(room_s, bare)
        await self.repo.record(NewAuditEntry(self.now(), str(actor), action, room_s, str(bare)))
        await self._after_lift(room_s, bare, actor, action, lang, restore)

    async def _after_lift(self, room_s: str, bare: JID, actor: JID, action: str, lang: str | None, restore: bool) -> None:
        if room_s == PLATFORM:
            await self._platform_notice(bare, action, actor, None, None, None)
            return
        room = self.muc.get_room(room_s)
        if room is None:
            return
        occ = room.occupants.of_bare(bare)
        if restore and occ is not None and occ.role is Role.VISITOR:
            back = default_role(room.affiliation(bare), room.config.moderated)
            if back.rank > Role.VISITOR.rank:
                await self._set_role(room, occ, back, None if action == "expire" else actor, None)
        await self.room_notice(room, action, bare, actor, None, None, None, lang)

    async def _set_role(self, room: RoomView, occ: Any, role: Role, actor: JID | None, reason: str | None) -> None:
        key = (room.jid_s, occ.bare)
        self.applying.add(key)
        try:
            await room.set_role(occ.nick, role, actor=actor, reason=reason)
        finally:
            self.applying.discard(key)

    async def set_mute_all(self, room: RoomView, actor: JID, reason: str | None, lang: str | None = None) -> MuteAll:
        self.check_room_admin(room, actor)
        state = MuteAll(room.jid_s, str(actor.bare), reason or None, self.now())
        await self.repo.set_mute_all(state)
        self.all_muted[room.jid_s] = state
        self._inval.publish(f"a\n{room.jid_s}")
        await self.repo.record(NewAuditEntry(state.since, str(actor.bare), "mute-all", room.jid_s, reason=state.reason))
        await self.room_notice(room, "mute-all", None, actor.bare, None, reason, None, lang)
        return state

    async def lift_mute_all(self, room: RoomView, actor: JID, lang: str | None = None) -> None:
        self.check_room_admin(room, actor)
        if self.all_muted.pop(room.jid_s, None) is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "this room is not muted for everyone")
        await self.repo.clear_mute_all(room.jid_s)
        self._inval.publish(f"a\n{room.jid_s}")
        await self.repo.record(NewAuditEntry(self.now(), str(actor.bare), "unmute-all", room.jid_s))
        await self.room_notice(room, "unmute-all", None, actor.bare, None, None, None, lang)

    def check_room_admin(self, room: RoomView, actor: JID, text: str = "only owners and admins may mute or unmute everyone") -> None:
        if not (self.acts_as_admin(actor) or room.affiliation(actor.bare).rank >= Affiliation.ADMIN.rank):
            raise StanzaError(Condition.FORBIDDEN, text)

    async def platform_mute(self, actor: JID, target: JID, seconds: int | None, reason: str | None) -> Mute:
        self.check_server_admin(actor)
        if self.ctx.is_admin(target):
            raise StanzaError(Condition.NOT_ALLOWED, "server administrators can't be muted")
        if target.domain != self.ctx.domain:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"{target} is not an account of this server")
        m = Mute(PLATFORM, str(target), self._until(seconds), reason or None, str(actor.bare), self.now())
        await self.store(m, actor.bare, seconds)
        await self._platform_notice(target, "mute", actor.bare, seconds, reason, m.until)
        return m

    async def platform_unmute(self, actor: JID, target: JID) -> None:
        self.check_server_admin(actor)
        if (PLATFORM, target) not in self.mutes:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"{target} is not muted on this server")
        await self.lift(PLATFORM, target, actor.bare, lang=None)

    def check_server_admin(self, actor: JID) -> None:
        if not self.acts_as_admin(actor):
            raise StanzaError(Condition.FORBIDDEN, "only server administrators may do this")

    # ================================================================== notices

    def display(self, room: RoomView, bare: JID) -> tuple[str, str | None]:
        """(name shown in the body, nick for the element): the nick in the room, else the reserved
        nick, else the JID's local part."""
        occ = room.occupants.of_bare(bare)
        if occ is not None:
            return occ.nick, occ.nick
        a = room.affiliations.get(bare)
        if a is not None and a.nick:
            return a.nick, a.nick
        return bare.local or str(bare), None

    async def room_notice(self, room: RoomView, action: str, target: JID | None, actor: JID, seconds: int | None,
                          reason: str | None, until: datetime | None, lang: str | None = None) -> None:
        lang = self._lang(room, lang)
        show_jids = room.config.whois == "anyone"
        t_name, t_nick = self.display(room, target) if target is not None else ("", None)
        if actor.local is None:
            a_name, a_nick = P.text(lang, "actor.server"), None
        else:
            a_name, a_nick = self.display(room, actor)
        text = P.notice_body(action, lang, target=t_name, actor=a_name, seconds=seconds, reason=reason)
        el = P.notice(action, nick=t_nick, jid=str(target) if target is not None and show_jids else None,
                      actor_nick=a_nick if actor.local else None, actor=str(actor) if show_jids and actor.local else None,
                      seconds=seconds, until=until, reason=reason)
        await room.send_notice(text, children=[el], lang=lang)

    async def _platform_notice(self, bare: JID, action: str, actor: JID, seconds: int | None, reason: str | None,
                               until: datetime | None) -> None:
        lang = self.ctx.languages.of(bare)  # the muted user's language (xmppd/i18n.py)
        who = P.text(lang, "actor.admin")
        text = P.notice_body(action, lang, target=bare.local or str(bare), actor=who, seconds=seconds, reason=reason,
                             scope="platform")
        msg = stanza("message", to=str(bare), frm=self.ctx.domain, type="headline")
        P.body(msg, text, lang)
        msg.append(P.notice(action, jid=str(bare), seconds=seconds, until=until, reason=reason, scope="platform"))
        await self.ctx.send(msg)

    # ================================================================== expiry

    async def _expire(self, room_s: str, jid_s: str, until: datetime) -> None:
        bare = JID.parse(jid_s)
        m = self.mutes.get((room_s, bare))
        if m is None or m.until != until:
            return  # lifted or renewed since the timer was armed
        del self.mutes[(room_s, bare)]
        if not await self.repo.expire(room_s, str(bare), until):
            return  # another node's timer ended it first (and announced it), or it was lifted
        self._changed(room_s, bare)
        await self.repo.record(NewAuditEntry(self.now(), self.ctx.domain, "expire", room_s, str(bare), until=until))
        await self._after_lift(room_s, bare, JID(None, self.ctx.domain), "expire", None, True)

    # ================================================================== one room's mutes (the iq handlers are in iqs.py)

    def room_mutes(self, room_s: str) -> list[Mute]:
        now = self.now()
        return sorted((m for (r, _j), m in self.mutes.items() if r == room_s and m.active(now)), key=lambda m: m.jid)

    # ================================================================== what holds for one account

    def mutes_of(self, bare: JID) -> list[tuple[str, str, Mute | MuteAll]]:
        """Every mute that holds for ``bare`` now, as (room or PLATFORM, kind, mute): its member
        mutes, the rooms it is in (an occupant or affiliated) muted for everyone and not exempt,
        and its platform mute. Read from memory: no storage read."""
        out: list[tuple[str, str, Mute | MuteAll]] = []
        pm = self.active(PLATFORM, bare)
        if pm is not None:
            out.append((PLATFORM, "platform", pm))
        now = self.now()
        out += sorted(((r, "member", m) for (r, j), m in self.mutes.items() if j == bare and r != PLATFORM and m.active(now)),
                      key=lambda t: t[0])
        for room_s, state in sorted(self.all_muted.items()):
            room = self.muc.get_room(JID.parse(room_s))
            if room is None:
                continue
            occ = room.occupants.of_bare(bare)
            if occ is None and room.affiliation(bare).rank < Affiliation.MEMBER.rank:
                continue
            if not self.exempt_from_all(room, bare, occ.role if occ is not None else None):
                out.append((room_s, "everyone", state))
        return out


__all__ = ["MuteFeature", "MuteOptions", "NS"]
