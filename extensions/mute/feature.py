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
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from xmppd.config import Positive, PositiveInt
from xmppd.core import hooks as H
from xmppd.core.dispatch import IqRequest, Target
from xmppd.core.feature import Feature, hook
from xmppd.core.hooks import AccountEvent, Flow
from xmppd.core.server_owned import owned_namespace
from xmppd.errors import Condition, StanzaError
from xmppd.features.adhoc import Command, Execution, Field, Form, FormError, Note, Option, Result
from xmppd.features.muc import events as E
from xmppd.features.muc.affiliations import Affiliation, Role, default_role
from xmppd.jid import JID, JIDError
from xmppd.xml import ns
from xmppd.xml.attrs import int_attr, jid_attr
from xmppd.xml.builder import element, stanza

from . import protocol as P
from .protocol import NS, q
from .repository import PLATFORM, AuditEntry, Mute, MuteAll, MuteRepository, NewAuditEntry, SqlMuteRepository

log = logging.getLogger(__name__)

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")

CMD_MUTE = NS + "#mute"
CMD_UNMUTE = NS + "#unmute"
CMD_MUTE_ALL = NS + "#mute-all"
CMD_UNMUTE_ALL = NS + "#unmute-all"
CMD_LIST = NS + "#list"
CMD_PLATFORM_MUTE = NS + "#platform-mute"
CMD_PLATFORM_UNMUTE = NS + "#platform-unmute"
CMD_PLATFORM_LIST = NS + "#platform-list"
CMD_AUDIT = NS + "#audit"
CMD_MY_MUTES = NS + "#my-mutes"

_DURATIONS = (("300", "5 minutes"), ("600", "10 minutes"), ("3600", "1 hour"), ("86400", "1 day"),
              ("604800", "7 days"), ("0", "Until lifted"))


@dataclass(frozen=True, slots=True)
class MuteOptions:
    max_seconds: PositiveInt = 2592000  # longest timed mute (30 days); longer requests are refused
    allow_open_ended: bool = True  # a mute without 'seconds' lasts until lifted
    default_lang: str = "en"  # notices when neither the room nor the actor names a language
    audit_page_max: PositiveInt = 100  # most audit entries in one answer
    timer_tick: Positive = 60.0  # longest sleep of the expiry task, seconds (it also wakes on new mutes)


def _now_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _bad(text: str) -> StanzaError:
    return StanzaError(Condition.BAD_REQUEST, text)


def _lang_of(st: etree._Element | None, payload: etree._Element | None = None) -> str | None:
    for el in (payload, st):
        if el is not None and el.get(ns.XML_LANG):
            return el.get(ns.XML_LANG)[:35]  # type: ignore[index]
    return None


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
        self._heap: list[tuple[float, str, str, datetime]] = []
        self._wake = asyncio.Event()
        self._applying: set[tuple[str, JID]] = set()  # role changes we make ourselves

    # ================================================================== lifecycle

    async def setup(self) -> None:
        self.repo = SqlMuteRepository(self.ctx.db, self.ctx.outbox)
        self.muc = self.ctx.feature("muc")
        self.muc_domain: str = self.muc.domain
        for m in await self.repo.mutes():
            self._remember(m)
        for s in await self.repo.mute_alls():
            self.all_muted[s.room] = s
        self._inval = self.ctx.invalidation("mute", self._invalidated, self._reload)
        ev = self.muc.events
        for h, fn in ((E.PRE_JOIN, self._pre_join), (E.SPEECH, self._speech),
                      (E.ROLE_CHANGE_REQUEST, self._role_change_request), (E.OCCUPANT_ROLE_CHANGED, self._role_changed),
                      (E.AFFILIATION_CHANGED, self._affiliation_changed), (E.CONFIG_FORM, self._config_form),
                      (E.ROOM_DESTROYED, self._room_destroyed), (E.ROOM_DISCO_INFO, self._room_disco)):
            self.ctx.on_teardown(ev.add(h, fn, priority=100))  # type: ignore[arg-type]
        room_iqs = (("set", "mute", self.iq_room_mute), ("set", "unmute", self.iq_room_unmute),
                    ("set", "mute-all", self.iq_mute_all), ("set", "unmute-all", self.iq_unmute_all),
                    ("get", "list", self.iq_room_list), ("get", "status", self.iq_room_status))
        for typ, local, handler in room_iqs:
            self.ctx.add_iq_handler(typ, q(local), handler, target=Target.BARE, domain=self.muc_domain)
        server_iqs = (("set", "mute", self.iq_platform_mute), ("set", "unmute", self.iq_platform_unmute),
                      ("get", "list", self.iq_platform_list), ("get", "status", self.iq_platform_status),
                      ("get", "audit", self.iq_audit))
        for typ, local, handler in server_iqs:
            self.ctx.add_iq_handler(typ, q(local), handler)
        adhoc = self.ctx.feature("adhoc")
        self.ctx.on_teardown(adhoc.register_provider(self.muc_domain, self._room_commands))
        for cmd in self._server_commands():
            self.ctx.on_teardown(adhoc.register(cmd))
        self.ctx.spawn(self._expirer(), name="mute-expiry")
        from .api import operations

        self.ctx.add_api(operations(self))  # /api/v1/rooms/{room}/mutes, /api/v1/mutes (docs/api.md)

    # ================================================================== state

    def now(self) -> datetime:
        return _now_dt(self.ctx.clock.now())

    def _remember(self, m: Mute) -> None:
        self.mutes[(m.room, JID.parse(m.jid))] = m
        if m.until is not None:
            heapq.heappush(self._heap, (m.until.timestamp(), m.room, m.jid, m.until))
            self._wake.set()

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
        self._heap = []
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
            self._wake.set()  # stale: the expiry task ends it; it blocks nobody meanwhile
            return None
        return m

    def _exempt_from_all(self, room: Any, bare: JID, role: Role | None) -> bool:
        if room.affiliation(bare).rank >= Affiliation.ADMIN.rank or self.ctx.is_admin(bare):
            return True
        extra = room.config.extra
        if role is Role.MODERATOR and extra.get(P.EXEMPT_MODERATORS_FIELD, ["0"])[:1] == ["1"]:
            return True
        return str(bare) in extra.get(P.ALLOWLIST_FIELD, ())

    def room_block(self, room: Any, bare: JID, role: Role | None, *, platform: bool = True) -> StanzaError | None:
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
        if state is not None and not self._exempt_from_all(room, bare, role):
            return P.all_muted_error(room.jid_s, state)
        return None

    def _block_private(self, room: Any) -> bool:
        return room.config.extra.get(P.BLOCK_PRIVATE_FIELD, ["1"])[:1] != ["0"]

    # ================================================================== enforcement

    @hook(H.SPEECH, priority=50)
    async def _chat_speech(self, ev: H.Speech) -> Flow:
        """One-to-one: a platform-muted account's content reaches only server admins (so that it can
        appeal); chat states and receipts are not content. Features acting on the account's
        behalf (``ev.feature``: a red packet) are refused whatever they carry."""
        if not self.mutes or ev.to.bare == ev.sender or self.ctx.is_admin(ev.to.bare):
            return Flow.CONTINUE
        if ev.feature is None and not is_content(ev.stanza):
            return Flow.CONTINUE
        pm = self.active(PLATFORM, ev.sender)
        if pm is not None:
            raise P.platform_muted_error(pm)
        return Flow.CONTINUE

    async def _speech(self, ev: E.Speech) -> Flow:
        """MUC's speech gate: whatever a muted member would put in front of others is refused."""
        err = self.speech_block(ev.room, ev.speaker, ev.role, ev.kind, ev.recipient)
        if err is not None:
            raise err
        return Flow.CONTINUE

    def speech_block(self, room: Any, bare: JID, role: Role | None, kind: E.SpeechKind,
                     recipient: Any = None) -> StanzaError | None:
        """Why ``bare`` may not say this ``kind`` of thing in ``room`` now (None: it may).

        Every kind is refused under any mute (platform, member, everyone) except: private messages
        when the room lets muted members send them (``xmppd#mute_block_private`` = 0; a platform
        mute still refuses them, except to a server admin), and declines, which only a platform
        mute refuses (the decliner is not speaking in the room)."""
        if kind is E.SpeechKind.DECLINE:
            pm = self.active(PLATFORM, bare) if self.mutes else None
            return P.platform_muted_error(pm) if pm is not None else None
        if kind is E.SpeechKind.PRIVATE:
            pm = self.active(PLATFORM, bare) if self.mutes else None
            if pm is not None and not (recipient is not None and self.ctx.is_admin(recipient.bare)):
                return P.platform_muted_error(pm)
            if not self._block_private(room):
                return None
            return self.room_block(room, bare, role, platform=False)
        return self.room_block(room, bare, role)

    async def _pre_join(self, ev: E.PreJoin) -> Flow:
        if ev.role.rank > Role.VISITOR.rank and ev.affiliation.rank < Affiliation.ADMIN.rank:
            if self.active(ev.room.jid_s, ev.jid.bare) is not None:
                ev.role = Role.VISITOR
        return Flow.CONTINUE

    # ================================================================== MUC events

    async def _role_change_request(self, ev: E.RoleChangeRequest) -> Flow:
        """XEP-0045 voice obeys the mute hierarchy (§2): a voice revoke is a mute, so it needs the
        right to mute; a voice (or moderator) grant to a muted visitor lifts the mute, so it needs
        the right to lift it (``not-allowed`` otherwise); an affiliation change below admin keeps a
        muted occupant a visitor."""
        room, bare = ev.room, ev.occupant.bare
        if (room.jid_s, bare) in self._applying:
            return Flow.CONTINUE
        if ev.new is Role.VISITOR and ev.old.rank >= Role.PARTICIPANT.rank and ev.actor is not None and not ev.implicit:
            self.check_can_mute(room, ev.actor, bare)  # a voice revoke is a mute (§5): the same hierarchy
            return Flow.CONTINUE
        if ev.new.rank <= Role.VISITOR.rank:
            return Flow.CONTINUE
        m = self.active(room.jid_s, bare)
        if m is None:
            return Flow.CONTINUE
        if ev.implicit:
            if room.affiliation(bare).rank < Affiliation.ADMIN.rank:
                ev.new = Role.VISITOR
            return Flow.CONTINUE
        if ev.old is Role.VISITOR and ev.actor is not None:
            self.check_can_mute(room, ev.actor, bare)
            self.check_can_lift(room, ev.actor, m)
        return Flow.CONTINUE

    async def _role_changed(self, ev: E.OccupantRoleChanged) -> Flow:
        """XEP-0045 §8.4/§8.3: a moderator's voice revoke is an open-ended mute; a voice grant lifts it."""
        room, bare = ev.room, ev.jid.bare
        if (room.jid_s, bare) in self._applying or ev.actor is None:
            return Flow.CONTINUE
        if ev.new is Role.VISITOR and ev.old.rank >= Role.PARTICIPANT.rank:
            now = self.now()
            m = Mute(room.jid_s, str(bare), None, ev.reason, str(ev.actor.bare), now, "voice")
            await self._store(m, ev.actor.bare, None)
            await self._room_notice(room, "mute", bare, ev.actor.bare, None, ev.reason, None)
        elif ev.old is Role.VISITOR and ev.new.rank >= Role.PARTICIPANT.rank and (room.jid_s, bare) in self.mutes:
            await self._lift(room.jid_s, bare, ev.actor.bare, lang=None, restore=False)
        return Flow.CONTINUE

    async def _affiliation_changed(self, ev: E.AffiliationChanged) -> Flow:
        # Admins and owners can't be muted in their room: a promotion lifts the mute.
        if ev.new.rank >= Affiliation.ADMIN.rank and (ev.room.jid_s, ev.jid.bare) in self.mutes:
            await self._lift(ev.room.jid_s, ev.jid.bare, (ev.actor or JID(None, self.ctx.domain)).bare, lang=None, restore=False)
        return Flow.CONTINUE

    async def _config_form(self, ev: E.ConfigForm) -> Flow:
        ev.fields.extend([
            Field(P.LANG_FIELD, "text-single", "Natural language for room discussions (mute notices)",
                  values=(self.options.default_lang,)),
            Field(P.BLOCK_PRIVATE_FIELD, "boolean", "Muted members may not send private messages either", values=("1",)),
            Field(P.EXEMPT_MODERATORS_FIELD, "boolean", "Moderators may speak when everyone is muted", values=("0",)),
            Field(P.ALLOWLIST_FIELD, "jid-multi", "Who else may speak when everyone is muted"),
        ])
        return Flow.CONTINUE

    async def _room_disco(self, ev: E.RoomDiscoInfo) -> Flow:
        ev.features.append(NS)
        if ev.room.jid_s in self.all_muted:
            ev.fields.append(("xmppd#mute_all", "1"))
        return Flow.CONTINUE

    async def _room_destroyed(self, ev: E.RoomDestroyed) -> Flow:
        room = ev.room.jid_s
        for key in [k for k in self.mutes if k[0] == room]:
            del self.mutes[key]
        self.all_muted.pop(room, None)
        await self.repo.forget_room(room)
        self._inval.publish(f"r\n{room}")
        return Flow.CONTINUE

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

    def _room(self, jid: JID) -> Any:
        room = self.muc.get_room(jid)
        if room is None or jid.resource is not None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"there is no room {jid.bare}")
        return room

    def acts_as_admin(self, actor: JID) -> bool:
        """A server admin, or the server itself (its domain JID, which no client can be: the
        REST API acts as it), with a server admin's authority over mutes."""
        return self.ctx.is_admin(actor) or (actor.local is None and actor.domain == self.ctx.domain)

    def is_moderator(self, room: Any, requester: JID) -> bool:
        if self.acts_as_admin(requester) or room.affiliation(requester.bare).rank >= Affiliation.ADMIN.rank:
            return True
        occ = room.occupants.of_jid(requester)
        return occ is not None and occ.role is Role.MODERATOR

    def check_can_mute(self, room: Any, actor: JID, target: JID) -> None:
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

    def _rank(self, room: Any, who: JID) -> int:
        """Rank for lifting mutes: server admin above owner above admin, member, none."""
        if self.acts_as_admin(who.bare):
            return Affiliation.OWNER.rank + 1
        return max(room.affiliation(who.bare).rank, Affiliation.NONE.rank)

    def check_can_lift(self, room: Any, actor: JID, m: Mute) -> None:
        """docs/mute.md §2: a mute is lifted only by someone who ranks at least as high as whoever
        set it — through the mute protocol, its commands and an XEP-0045 voice grant alike."""
        setter = JID.parse(m.actor)
        if setter.local is None or self._rank(room, actor) >= self._rank(room, setter):
            return
        what = "a server administrator" if self.ctx.is_admin(setter) else f"somebody with affiliation {room.affiliation(setter).value}"
        raise StanzaError(Condition.NOT_ALLOWED, f"this mute was set by {what}; only someone of that rank or higher may lift it")

    def _seconds(self, raw: str | None) -> int | None:
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

    def _target(self, room: Any, payload: etree._Element) -> JID:
        jid_s, nick = payload.get("jid"), payload.get("nick")
        if bool(jid_s) == bool(nick):
            raise _bad("name the member with 'jid' or 'nick' (one of them)")
        if nick:
            occ = room.occupants.get(nick)
            if occ is None:
                raise StanzaError(Condition.ITEM_NOT_FOUND, f"no occupant with the nick {nick!r}")
            return occ.bare
        return jid_attr(payload, "jid", required=True, account=True)

    def _lang(self, room: Any | None, actor_lang: str | None) -> str:
        if room is not None:
            configured = (room.config.extra.get(P.LANG_FIELD) or [""])[0]
            if configured:
                return configured
        return actor_lang or self.options.default_lang

    async def mute_member(self, room: Any, actor: JID, target: JID, seconds: int | None, reason: str | None,
                          lang: str | None = None) -> Mute:
        self.check_can_mute(room, actor, target)
        m = Mute(room.jid_s, str(target), self._until(seconds), reason or None, str(actor.bare), self.now())
        await self._store(m, actor.bare, seconds)
        occ = room.occupants.of_bare(target)
        # XEP-0045 §5.1: admins keep the moderator role; their mute is enforced, not shown as a role.
        if occ is not None and occ.role.rank > Role.VISITOR.rank and room.affiliation(target).rank < Affiliation.ADMIN.rank:
            await self._set_role(room, occ, Role.VISITOR, actor, reason)
        await self._room_notice(room, "mute", target, actor.bare, seconds, reason, m.until, lang)
        return m

    async def unmute_member(self, room: Any, actor: JID, target: JID, lang: str | None = None) -> None:
        self.check_can_mute(room, actor, target)
        m = self.mutes.get((room.jid_s, target))
        if m is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"{target} is not muted in this room")
        self.check_can_lift(room, actor, m)
        await self._lift(room.jid_s, target, actor.bare, lang=lang)

    async def _store(self, m: Mute, actor: JID, seconds: int | None) -> None:
        await self.repo.put(m)
        self._remember(m)
        self._changed(m.room, m.jid)
        await self.repo.record(NewAuditEntry(m.created_at, str(actor), "mute", m.room, m.jid, seconds, m.until, m.reason))

    async def _lift(self, room_s: str, bare: JID, actor: JID, *, lang: str | None, restore: bool = True,
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
        await self._room_notice(room, action, bare, actor, None, None, None, lang)

    async def _set_role(self, room: Any, occ: Any, role: Role, actor: JID | None, reason: str | None) -> None:
        key = (room.jid_s, occ.bare)
        self._applying.add(key)
        try:
            await room.set_role(occ.nick, role, actor=actor, reason=reason)
        finally:
            self._applying.discard(key)

    async def set_mute_all(self, room: Any, actor: JID, reason: str | None, lang: str | None = None) -> MuteAll:
        self._check_room_admin(room, actor)
        state = MuteAll(room.jid_s, str(actor.bare), reason or None, self.now())
        await self.repo.set_mute_all(state)
        self.all_muted[room.jid_s] = state
        self._inval.publish(f"a\n{room.jid_s}")
        await self.repo.record(NewAuditEntry(state.since, str(actor.bare), "mute-all", room.jid_s, reason=state.reason))
        await self._room_notice(room, "mute-all", None, actor.bare, None, reason, None, lang)
        return state

    async def lift_mute_all(self, room: Any, actor: JID, lang: str | None = None) -> None:
        self._check_room_admin(room, actor)
        if self.all_muted.pop(room.jid_s, None) is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "this room is not muted for everyone")
        await self.repo.clear_mute_all(room.jid_s)
        self._inval.publish(f"a\n{room.jid_s}")
        await self.repo.record(NewAuditEntry(self.now(), str(actor.bare), "unmute-all", room.jid_s))
        await self._room_notice(room, "unmute-all", None, actor.bare, None, None, None, lang)

    def _check_room_admin(self, room: Any, actor: JID) -> None:
        if not (self.acts_as_admin(actor) or room.affiliation(actor.bare).rank >= Affiliation.ADMIN.rank):
            raise StanzaError(Condition.FORBIDDEN, "only owners and admins may mute or unmute everyone")

    async def platform_mute(self, actor: JID, target: JID, seconds: int | None, reason: str | None) -> Mute:
        self._check_server_admin(actor)
        if self.ctx.is_admin(target):
            raise StanzaError(Condition.NOT_ALLOWED, "server administrators can't be muted")
        if target.domain != self.ctx.domain:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"{target} is not an account of this server")
        m = Mute(PLATFORM, str(target), self._until(seconds), reason or None, str(actor.bare), self.now())
        await self._store(m, actor.bare, seconds)
        await self._platform_notice(target, "mute", actor.bare, seconds, reason, m.until)
        return m

    async def platform_unmute(self, actor: JID, target: JID) -> None:
        self._check_server_admin(actor)
        if (PLATFORM, target) not in self.mutes:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"{target} is not muted on this server")
        await self._lift(PLATFORM, target, actor.bare, lang=None)

    def _check_server_admin(self, actor: JID) -> None:
        if not self.acts_as_admin(actor):
            raise StanzaError(Condition.FORBIDDEN, "only server administrators may do this")

    # ================================================================== notices

    def _display(self, room: Any, bare: JID) -> tuple[str, str | None]:
        """(name shown in the body, nick for the element): the nick in the room, else the reserved
        nick, else the JID's local part."""
        occ = room.occupants.of_bare(bare)
        if occ is not None:
            return occ.nick, occ.nick
        a = room.affiliations.get(bare)
        if a is not None and a.nick:
            return a.nick, a.nick
        return bare.local or str(bare), None

    async def _room_notice(self, room: Any, action: str, target: JID | None, actor: JID, seconds: int | None,
                           reason: str | None, until: datetime | None, lang: str | None = None) -> None:
        lang = self._lang(room, lang)
        show_jids = room.config.whois == "anyone"
        t_name, t_nick = self._display(room, target) if target is not None else ("", None)
        if actor.local is None:
            a_name, a_nick = P.text(lang, "actor.server"), None
        else:
            a_name, a_nick = self._display(room, actor)
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

    async def _expirer(self) -> None:
        while True:
            self._wake.clear()
            now = self.ctx.clock.now()
            while self._heap and self._heap[0][0] <= now:
                _ts, room_s, jid_s, until = heapq.heappop(self._heap)
                try:
                    await self._expire(room_s, JID.parse(jid_s), until)
                except Exception:
                    log.exception("ending the mute of %s in %r failed", jid_s, room_s)
            delay = self.options.timer_tick
            if self._heap:
                delay = min(delay, max(0.0, self._heap[0][0] - now))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def _expire(self, room_s: str, bare: JID, until: datetime) -> None:
        m = self.mutes.get((room_s, bare))
        if m is None or m.until != until:
            return  # lifted or renewed since the timer was armed
        del self.mutes[(room_s, bare)]
        if not await self.repo.expire(room_s, str(bare), until):
            return  # another node's timer ended it first (and announced it), or it was lifted
        self._changed(room_s, bare)
        await self.repo.record(NewAuditEntry(self.now(), self.ctx.domain, "expire", room_s, str(bare), until=until))
        await self._after_lift(room_s, bare, JID(None, self.ctx.domain), "expire", None, True)

    # ================================================================== iq: rooms

    async def iq_room_mute(self, req: IqRequest) -> etree._Element:
        room = self._room(req.to)
        target = self._target(room, req.payload)
        seconds = self._seconds(req.payload.get("seconds"))
        reason = _reason_of(req.payload)
        m = await self.mute_member(room, req.from_jid, target, seconds, reason, _lang_of(req.stanza, req.payload))
        return P.item(m, self.now(), nick=self._nick(room, target))

    async def iq_room_unmute(self, req: IqRequest) -> None:
        room = self._room(req.to)
        await self.unmute_member(room, req.from_jid, self._target(room, req.payload), _lang_of(req.stanza, req.payload))

    async def iq_mute_all(self, req: IqRequest) -> None:
        room = self._room(req.to)
        reason = _reason_of(req.payload)
        await self.set_mute_all(room, req.from_jid, reason, _lang_of(req.stanza, req.payload))

    async def iq_unmute_all(self, req: IqRequest) -> None:
        room = self._room(req.to)
        await self.lift_mute_all(room, req.from_jid, _lang_of(req.stanza, req.payload))

    async def iq_room_list(self, req: IqRequest) -> etree._Element:
        room = self._room(req.to)
        if not self.is_moderator(room, req.from_jid):
            raise StanzaError(Condition.FORBIDDEN, "only moderators may list the muted members")
        out = element(q("list"), default_ns=NS)
        state = self.all_muted.get(room.jid_s)
        if state is not None:
            out.append(P.all_element(state))
        now = self.now()
        for m in self._room_mutes(room.jid_s):
            out.append(P.item(m, now, nick=self._nick(room, JID.parse(m.jid))))
        return out

    def _room_mutes(self, room_s: str) -> list[Mute]:
        now = self.now()
        return sorted((m for (r, _j), m in self.mutes.items() if r == room_s and m.active(now)), key=lambda m: m.jid)

    def _nick(self, room: Any, bare: JID) -> str | None:
        occ = room.occupants.of_bare(bare)
        return occ.nick if occ is not None else None

    async def iq_room_status(self, req: IqRequest) -> etree._Element:
        room = self._room(req.to)
        who = req.from_jid.bare
        if req.payload.get("jid") or req.payload.get("nick"):
            other = self._target(room, req.payload)
            if other != who and not self.is_moderator(room, req.from_jid):
                raise StanzaError(Condition.FORBIDDEN, "only moderators may ask about somebody else")
            who = other
        occ = room.occupants.of_bare(who)
        state = self.all_muted.get(room.jid_s)
        if state is not None and self._exempt_from_all(room, who, occ.role if occ is not None else None):
            state = None
        return P.status(muted=self.active(room.jid_s, who), all_muted=state, platform=self.active(PLATFORM, who),
                        now=self.now())

    # ================================================================== iq: server

    async def iq_platform_mute(self, req: IqRequest) -> etree._Element:
        self._check_server_admin(req.from_jid)
        target = jid_attr(req.payload, "jid", required=True, account=True)
        seconds = self._seconds(req.payload.get("seconds"))
        reason = _reason_of(req.payload)
        m = await self.platform_mute(req.from_jid, target, seconds, reason)  # type: ignore[arg-type]
        return P.item(m, self.now())

    async def iq_platform_unmute(self, req: IqRequest) -> None:
        self._check_server_admin(req.from_jid)
        await self.platform_unmute(req.from_jid, jid_attr(req.payload, "jid", required=True, account=True))

    async def iq_platform_list(self, req: IqRequest) -> etree._Element:
        self._check_server_admin(req.from_jid)
        out = element(q("list"), default_ns=NS)
        now = self.now()
        for m in self._room_mutes(PLATFORM):
            out.append(P.item(m, now))
        return out

    async def iq_platform_status(self, req: IqRequest) -> etree._Element:
        who = req.from_jid.bare
        other = jid_attr(req.payload, "jid", account=True)
        if other is not None and other != who:
            self._check_server_admin(req.from_jid)
            who = other
        return P.status(muted=None, all_muted=None, platform=self.active(PLATFORM, who), now=self.now())

    async def iq_audit(self, req: IqRequest) -> etree._Element:
        self._check_server_admin(req.from_jid)
        p = req.payload
        limit = int_attr(p, "max", min(50, self.options.audit_page_max), low=1, high=self.options.audit_page_max)
        before = int_attr(p, "before", high=2**62)
        room = p.get("room")
        if p.get("scope") == "platform":
            room = PLATFORM
        target = jid_attr(p, "jid", account=True)
        entries = await self.repo.audit(room=room, target=str(target) if target else None,
                                        before=before, limit=limit + 1)
        out = element(q("audit"), default_ns=NS)
        for e in entries[:limit]:
            out.append(P.audit_entry(e))
        if len(entries) > limit:
            out.set("more", "true")
        return out

    # ================================================================== ad-hoc commands

    def _room_commands(self, requester: JID, target: JID) -> Iterable[Command]:
        room = self.muc.get_room(target)
        if room is None or target.local is None:
            return ()
        mod = lambda who, where: self._may(where, who, admin=False)  # noqa: E731
        adm = lambda who, where: self._may(where, who, admin=True)  # noqa: E731
        return (
            Command(CMD_MUTE, "Mute a member", self._cmd_mute, form=_mute_form(self.options, "Mute a member", "member",
                    "text-single", "Member (nick or JID)"), may_run=mod),
            Command(CMD_UNMUTE, "Unmute a member", self._cmd_unmute, form=self._unmute_form, may_run=mod),
            Command(CMD_LIST, "List muted members", self._cmd_list, may_run=mod),
            Command(CMD_MUTE_ALL, "Mute everyone", self._cmd_mute_all, form=Form("form", title="Mute everyone", fields=(
                Field("FORM_TYPE", "hidden", values=(NS,)), Field("reason", "text-single", "Reason", validate=_reason_ok))), may_run=adm),
            Command(CMD_UNMUTE_ALL, "Lift the mute on everyone", self._cmd_unmute_all, may_run=adm),
        )

    def _may(self, target: JID, requester: JID, *, admin: bool) -> bool:
        room = self.muc.get_room(target)
        if room is None:
            return False
        if admin:
            return self.ctx.is_admin(requester) or room.affiliation(requester.bare).rank >= Affiliation.ADMIN.rank
        return self.is_moderator(room, requester)

    def _member(self, room: Any, value: str) -> JID:
        value = value.strip()
        occ = room.occupants.get(value)
        if occ is not None:
            return occ.bare  # type: ignore[no-any-return]
        try:
            j = JID.parse(value)
        except JIDError:
            j = None
        if j is None or j.local is None or j.resource is not None:
            raise FormError("member", f"{value!r} is neither the nick of an occupant nor a JID")
        return j.bare

    async def _cmd_mute(self, ex: Execution) -> Result:
        room = self._room(ex.target)
        target = self._member(room, ex.values["member"])
        seconds = int(ex.values["seconds"] or "0") or None
        try:
            m = await self.mute_member(room, ex.requester, target, seconds, ex.values.get("reason"))
        except StanzaError as err:
            raise FormError("member", err.text or err.condition.value) from None
        how = f"for {P.duration(seconds, 'en')}" if seconds else "until lifted"
        return Result((Note(f"{target} is muted {how}" + (f" (until {P.iso(m.until)})." if m.until else ".")),))

    async def _unmute_form(self, ex: Execution) -> Form:
        room = self._room(ex.target)
        now = self.now()
        opts = []
        for m in self._room_mutes(room.jid_s):
            left = P.remaining(m.until, now)
            label = f"{self._display(room, JID.parse(m.jid))[0]} ({m.jid}, " + (f"{left} s left)" if left is not None else "until lifted)")
            opts.append(Option(m.jid, label))
        if not opts:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "nobody is muted in this room")
        return Form("form", title="Unmute a member", fields=(
            Field("FORM_TYPE", "hidden", values=(NS,)),
            Field("member", "list-single", "Member", required=True, options=tuple(opts)),
        ))

    async def _cmd_unmute(self, ex: Execution) -> Result:
        room = self._room(ex.target)
        target = JID.parse(ex.values["member"])
        try:
            await self.unmute_member(room, ex.requester, target)
        except StanzaError as err:
            raise FormError("member", err.text or err.condition.value) from None
        return Result((Note(f"{target} may speak again."),))

    async def _cmd_list(self, ex: Execution) -> Result:
        room = self._room(ex.target)
        now = self.now()
        rows = []
        for m in self._room_mutes(room.jid_s):
            left = P.remaining(m.until, now)
            rows.append((
                Field("nick", values=(self._display(room, JID.parse(m.jid))[0],)), Field("jid", "jid-single", values=(m.jid,)),
                Field("until", values=(P.iso(m.until) if m.until else "until lifted",)),
                Field("remaining", values=(str(left) if left is not None else "",)),
                Field("by", "jid-single", values=(m.actor,)), Field("reason", values=(m.reason or "",)),
            ))
        state = self.all_muted.get(room.jid_s)
        notes = [Note(f"{len(rows)} member(s) muted." + (f" Everyone is muted since {P.iso(state.since)}." if state else ""))]
        return Result(tuple(notes), _table("Muted members", rows, ("nick", "jid", "until", "remaining", "by", "reason")))

    async def _cmd_mute_all(self, ex: Execution) -> Result:
        room = self._room(ex.target)
        await self.set_mute_all(room, ex.requester, ex.values.get("reason"))
        return Result((Note("Everyone is muted; owners and admins may still speak."),))

    async def _cmd_unmute_all(self, ex: Execution) -> Result:
        room = self._room(ex.target)
        await self.lift_mute_all(room, ex.requester)
        return Result((Note("Everyone may speak again."),))

    def _server_commands(self) -> list[Command]:
        audit_form = Form("form", title="Mute audit log", fields=(
            Field("FORM_TYPE", "hidden", values=(NS,)),
            Field("room", "jid-single", "Room (empty: every room and the platform)"),
            Field("jid", "jid-single", "Member (empty: everybody)"),
            Field("max", "list-single", "Entries", values=("50",), options=tuple(Option(v) for v in ("10", "50", "100"))),
        ))
        return [
            Command(CMD_PLATFORM_MUTE, "Mute an account on the whole server", self._cmd_platform_mute, admin_only=True,
                    form=_mute_form(self.options, "Mute an account on the whole server", "member", "jid-single", "Account")),
            Command(CMD_PLATFORM_UNMUTE, "Unmute an account on the whole server", self._cmd_platform_unmute, admin_only=True,
                    form=Form("form", title="Unmute an account", fields=(
                        Field("FORM_TYPE", "hidden", values=(NS,)), Field("member", "jid-single", "Account", required=True)))),
            Command(CMD_PLATFORM_LIST, "List accounts muted on the whole server", self._cmd_platform_list, admin_only=True),
            Command(CMD_AUDIT, "Read the mute audit log", self._cmd_audit, admin_only=True, form=audit_form),
            Command(CMD_MY_MUTES, "My mutes", self._cmd_my_mutes,
                    may_run=lambda who, where: who.local is not None and who.domain == self.ctx.domain),
        ]

    async def _cmd_platform_mute(self, ex: Execution) -> Result:
        target = ex.values["member"].bare
        seconds = int(ex.values["seconds"] or "0") or None
        try:
            await self.platform_mute(ex.requester, target, seconds, ex.values.get("reason"))
        except StanzaError as err:
            raise FormError("member", err.text or err.condition.value) from None
        how = f"for {P.duration(seconds, 'en')}" if seconds else "until lifted"
        return Result((Note(f"{target} is muted on the whole server {how}."),))

    async def _cmd_platform_unmute(self, ex: Execution) -> Result:
        target = ex.values["member"].bare
        try:
            await self.platform_unmute(ex.requester, target)
        except StanzaError as err:
            raise FormError("member", err.text or err.condition.value) from None
        return Result((Note(f"{target} may speak again."),))

    async def _cmd_platform_list(self, ex: Execution) -> Result:
        now = self.now()
        rows = []
        for m in self._room_mutes(PLATFORM):
            left = P.remaining(m.until, now)
            rows.append((Field("jid", "jid-single", values=(m.jid,)),
                         Field("until", values=(P.iso(m.until) if m.until else "until lifted",)),
                         Field("remaining", values=(str(left) if left is not None else "",)),
                         Field("by", "jid-single", values=(m.actor,)), Field("reason", values=(m.reason or "",))))
        return Result((Note(f"{len(rows)} account(s) muted on the whole server."),),
                      _table("Accounts muted on the whole server", rows, ("jid", "until", "remaining", "by", "reason")))

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
            if not self._exempt_from_all(room, bare, occ.role if occ is not None else None):
                out.append((room_s, "everyone", state))
        return out

    async def _cmd_my_mutes(self, ex: Execution) -> Result:
        """The requester's own mutes (read-only): where, which, since and until when, by whom, why,
        in the requesting session's language."""
        lang = self.ctx.languages.of(ex.requester)

        def t(key: str, /, **fields: Any) -> str:
            return P.text(lang, "my." + key, **fields)

        now = self.now()
        mutes = self.mutes_of(ex.requester.bare)
        rows = []
        for where, kind, m in mutes:
            if isinstance(m, MuteAll):
                since, until, left = m.since, t("until_lifted"), ""
            else:
                since, until = m.created_at, P.iso(m.until) if m.until else t("until_lifted")
                left = str(P.remaining(m.until, now)) if m.until else ""
            rows.append((
                Field("room", "jid-single", values=(where,) if where != PLATFORM else ()),
                Field("kind", values=(t("kind_" + kind),)), Field("since", values=(P.iso(since),)),
                Field("until", values=(until,)), Field("remaining", values=(left,)),
                Field("by", "jid-single", values=(m.actor,)), Field("reason", values=(m.reason or "",)),
            ))
        platform = any(kind == "platform" for _w, kind, _m in mutes)
        rooms = len({where for where, _k, _m in mutes if where != PLATFORM})
        text = t("platform_yes" if platform else "platform_no") + (t("rooms", n=rooms) if rooms else t("no_rooms"))
        columns = ("room", "kind", "since", "until", "remaining", "by", "reason")
        reported = tuple(Field(c, "jid-single" if c in ("room", "by") else "text-single", t("col_" + c)) for c in columns)
        return Result((Note(text),), Form("result", title=t("title"), reported=reported, items=tuple(rows)))

    async def _cmd_audit(self, ex: Execution) -> Result:
        room = ex.values.get("room")
        who = ex.values.get("jid")
        entries = await self.repo.audit(room=str(room.bare) if room else None, target=str(who.bare) if who else None,
                                        limit=int(ex.values.get("max") or "50"))
        rows = [_audit_row(e) for e in entries]
        return Result((Note(f"{len(rows)} entries, newest first."),),
                      _table("Mute audit log", rows, ("id", "at", "actor", "action", "room", "target", "seconds", "until", "reason")))


MAX_REASON = 1024


def _reason_of(payload: etree._Element) -> str | None:
    reason = (payload.findtext(q("reason")) or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON:
        raise _bad(f"a reason is at most {MAX_REASON} characters")
    return reason


def _reason_ok(value: Any) -> None:
    if value is not None and len(value) > MAX_REASON:
        raise ValueError(f"at most {MAX_REASON} characters")


# Namespaces of message payloads that carry nothing to read: chat states, receipts, chat markers,
# processing hints, carbons' <private/>, origin ids. Anything else (a body, a subject, reactions,
# an OOB link, a correction, an unknown payload) is content.
_SIGNALS = frozenset((
    "http://jabber.org/protocol/chatstates", "urn:xmpp:receipts", "urn:xmpp:chat-markers:0", ns.HINTS,
    "urn:xmpp:carbons:2", "urn:xmpp:sid:0",
))
_THREAD = f"{{{ns.CLIENT}}}thread"


def is_content(st: etree._Element) -> bool:
    """Whether a message carries anything for a person to read or see."""
    for child in st:
        tag = child.tag
        if not isinstance(tag, str) or tag == _THREAD:
            continue
        if etree.QName(tag).namespace not in _SIGNALS:
            return True
    return False


def _mute_form(o: MuteOptions, title: str, var: str, ftype: str, label: str) -> Form:
    options = [Option(v, lbl) for v, lbl in _DURATIONS if v == "0" and o.allow_open_ended or v != "0" and int(v) <= o.max_seconds]
    return Form("form", title=title, fields=(
        Field("FORM_TYPE", "hidden", values=(NS,)),
        Field(var, ftype, label, required=True),
        Field("seconds", "list-single", "Duration", values=(options[0].value,), options=tuple(options)),
        Field("reason", "text-single", "Reason", validate=_reason_ok),
    ))


def _table(title: str, rows: Sequence[tuple[Field, ...]], columns: tuple[str, ...]) -> Form:
    reported = tuple(Field(c, "jid-single" if c in ("jid", "by", "actor", "target", "room") else "text-single", c.capitalize())
                     for c in columns)
    return Form("result", title=title, reported=reported, items=tuple(rows))


def _audit_row(e: AuditEntry) -> tuple[Field, ...]:
    return (
        Field("id", values=(str(e.id),)), Field("at", values=(P.iso(e.at),)), Field("actor", "jid-single", values=(e.actor,)),
        Field("action", values=(e.action,)), Field("room", "jid-single", values=(e.room,) if e.room else ()),
        Field("target", "jid-single", values=(e.target,) if e.target else ()),
        Field("seconds", values=(str(e.seconds),) if e.seconds is not None else ()),
        Field("until", values=(P.iso(e.until),) if e.until else ()), Field("reason", values=(e.reason,) if e.reason else ()),
    )


__all__ = ["MuteFeature", "MuteOptions", "NS"]
