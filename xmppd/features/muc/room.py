"""XEP-0045: one room — entering and leaving, messages, subject, invitations, voice, admin and owner use cases."""
from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lxml import etree

from ...core.hooks import Flow, Routed
from ...errors import Condition, StanzaError
from ...jid import JID
from ...xml import ns
from ...xml.attrs import jid_attr
from ...xml.builder import error_reply
from ...xml.forms import Field, Form
from . import const as C
from . import events as E
from . import moderation as MOD
from . import occupant_id as OID
from .affiliations import (
    Affiliation,
    Role,
    check_affiliation_change,
    check_role_change,
    default_role,
    parse_affiliation,
    parse_role,
)
from .config_form import RoomConfig, apply_submission, config_form
from .const import (
    ADMIN_QUERY,
    BODY,
    MUC_ADMIN,
    MUC_REQUEST,
    MUC_USER,
    NODE_AFFILIATIONS,
    NODE_CONFIG,
    NODE_MESSAGES,
    NODE_PRESENCE,
    NODE_SUBJECT,
    OWNER_QUERY,
    SID,
    SUBJECT,
    X_DATA,
    X_MUC,
    X_USER,
    q,
)
from .history import History, parse_request
from .invitations import PendingInvitations
from .occupants import Occupant, Occupants
from .repository import StoredAffiliation, StoredRoom, StoredSubscription
from .subscriptions import Subscription, wrap

if TYPE_CHECKING:
    from .service import MucService

log = logging.getLogger(__name__)
_ITEM = q(MUC_USER, "item")
_STANZA_ID = q(SID, "stanza-id")
# Presence children that say nothing to others (availability, capabilities, avatar hash, idle
# time); anything else — status text, a XEP-0172 nick, unknown payloads — is speech (kind STATUS).
_PRESENCE_SIGNALS = frozenset((
    C.SHOW, f"{{{ns.CLIENT}}}priority", q("http://jabber.org/protocol/caps", "c"), q("vcard-temp:x:update", "x"),
    q("urn:xmpp:idle:1", "idle"), q(ns.DELAY, "delay"), X_MUC, X_USER,
))
Speak = E.SpeechKind
_ERROR = f"{{{ns.CLIENT}}}error"
# RFC 6120 conditions of an error reply that mean "this session is not there" (Prosody's list):
# the occupant is removed with status 333. Others (not-acceptable, policy-violation,
# resource-constraint ...) refuse one stanza and leave the occupant in the room.
_SESSION_GONE = frozenset((
    "gone", "internal-server-error", "item-not-found", "jid-malformed", "recipient-unavailable", "redirect",
    "remote-server-not-found", "remote-server-timeout", "service-unavailable",
))


class Room:
    """A room's state in memory; persistent rooms are mirrored to the repository."""

    def __init__(self, service: "MucService", jid: JID, config: RoomConfig) -> None:
        self.service = service
        self.jid = jid
        self.jid_s = str(jid)
        self.config = config
        self.occupants = Occupants()
        self.affiliations: dict[JID, StoredAffiliation] = {}
        self.subscribers: dict[JID, Subscription] = {}
        self.subject = ""
        self.subject_nick = ""
        self.history = History(config.history_length)
        self.locked = False  # §10.1.1: a new room is locked until its owner configures it
        self.destroyed = False
        self.fence = 0  # the cluster lease's token this node holds the room with (0: no cluster)
        o = service.options
        self.invitations = PendingInvitations(o.max_pending_invitations, o.invitation_ttl, service.now)

    # ================================================================ public API (extensions)

    def affiliation(self, bare: JID) -> Affiliation:
        a = self.affiliations.get(bare.bare)
        return Affiliation(a.affiliation) if a is not None else Affiliation.NONE

    def is_member(self, bare: JID) -> bool:
        """Affiliation member or above."""
        return self.affiliation(bare).rank >= Affiliation.MEMBER.rank

    def role_of(self, full: JID) -> Role:
        occ = self.occupants.of_jid(full)
        return occ.role if occ is not None else Role.NONE

    def occupant_list(self) -> list[Occupant]:
        return list(self.occupants)

    def occupant_id(self, bare: JID) -> str:
        """XEP-0421: the stable, anonymous id of the user ``bare`` in this room."""
        return self.service.occupant_ids.of(self.jid_s, bare)

    async def set_role(self, nick: str, role: Role, *, actor: JID | None = None, reason: str | None = None) -> None:
        """Change an occupant's role and tell the room (kick when ``role`` is none); no permission check."""
        occ = self.occupants.get(nick)
        if occ is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"no occupant with the nick {nick!r}")
        await self._apply_role(occ, role, actor, reason)

    async def set_affiliation(self, jid: JID, aff: Affiliation, *, actor: JID | None = None, reason: str | None = None, nick: str | None = None) -> None:
        """Change a user's affiliation (stored when the room is persistent); no permission check."""
        await self._apply_affiliation(jid.bare, aff, actor, reason, nick)

    async def set_affiliations(self, changes: "Iterable[tuple[JID, Affiliation]]", *, reason: str | None = None) -> None:
        """Affiliation changes made by the service itself (the REST API: no actor, so no rank is
        checked), all checked before any is applied: the room keeps at least one owner."""
        changes = [(j.bare, a) for j, a in changes]
        new_affs = {j: Affiliation(a.affiliation) for j, a in self.affiliations.items()}
        for target, aff in changes:
            if aff is Affiliation.NONE:
                new_affs.pop(target, None)
            else:
                new_affs[target] = aff
        if self.affiliations and not any(a is Affiliation.OWNER for a in new_affs.values()):
            raise StanzaError(Condition.CONFLICT, "a room keeps at least one owner")
        for target, aff in changes:
            await self._apply_affiliation(target, aff, None, reason, None)

    async def may_speak(self, speaker: JID, kind: E.SpeechKind, *, stanza: etree._Element | None = None,
                        recipient: Occupant | None = None, feature: str | None = None, role: Role | None = None) -> None:
        """The speech gate (``events.Speech``): raises ``StanzaError`` when ``speaker`` (a full JID
        in the room, or a member's bare JID) may not put this ``kind`` of content in front of others.

        Features posting into the room on a member's behalf call it with ``Speak.POST`` *before*
        acting (a red packet debits nothing when refused)."""
        occ = self.occupants.of_jid(speaker) if speaker.resource is not None else self.occupants.of_bare(speaker)
        if role is None:
            role = occ.role if occ is not None else default_role(self.affiliation(speaker), self.config.moderated)
        ev = E.Speech(self, speaker.bare, occ, role, kind, stanza, recipient, feature)
        events = self.service.events
        if events.has(E.SPEECH) and await events.run(E.SPEECH, ev) is Flow.STOP:
            raise StanzaError(Condition.FORBIDDEN, "you may not speak in this room now")
        cfg = self.config
        if kind in (Speak.GROUPCHAT, Speak.POST) and role.rank < Role.PARTICIPANT.rank:
            raise StanzaError(Condition.FORBIDDEN, "visitors may not speak in this moderated room; request voice")
        if kind is Speak.SUBJECT and not (role is Role.MODERATOR or (cfg.change_subject and role is Role.PARTICIPANT)):
            raise StanzaError(Condition.FORBIDDEN, "you may not change the subject of this room")
        if kind is Speak.NICK and role is Role.VISITOR and not cfg.allow_visitor_nickchange:
            raise StanzaError(Condition.NOT_ALLOWED, "visitors may not change their nick in this room")
        if kind is Speak.STATUS and role is Role.VISITOR and not cfg.allow_visitor_status:
            raise StanzaError(Condition.FORBIDDEN, "this room does not show visitors' status text")

    async def send_notice(self, body: str | None = None, *, children: Iterable[etree._Element] = (), lang: str | None = None,
                          id: str | None = None, archive: bool = False) -> str:
        """A server-authored groupchat message from the room's bare JID to every occupant and subscriber
        (``lang``: the body's xml:lang; ``id``: the message id, else a fresh one). ``archive``: the
        message is part of the room's history, so it passes the before-broadcast chain (with no
        occupant) where the room's archive (MAM) keeps it. Returns its XEP-0359 stanza-id."""
        msg = etree.Element(ns.MESSAGE, {"from": self.jid_s, "type": "groupchat", "id": id or self.service.new_id()}, nsmap={None: ns.CLIENT})
        if body is not None:
            b = etree.SubElement(msg, BODY)
            b.text = body
            if lang:
                b.set(ns.XML_LANG, lang)
        for c in children:
            msg.append(c)
        svc = self.service
        if archive and svc.events.has(E.GROUPCHAT_BEFORE_BROADCAST):
            if await svc.events.run(E.GROUPCHAT_BEFORE_BROADCAST, E.GroupchatBeforeBroadcast(self, None, self.jid, msg)) is Flow.STOP:
                return ""
        sid = self._stamp_id(msg, keep_ours=archive)
        if body is not None:
            self.history.add(msg, self.service.now())
        await self.service.fanout(msg, list(self.occupants.full_jids()), "message")
        await self.notify(NODE_MESSAGES, msg, sid)
        return sid

    # ================================================================ helpers

    @property
    def is_empty(self) -> bool:
        return len(self.occupants) == 0

    def can_see_jids(self, viewer: Occupant | None) -> bool:
        return self.config.whois == "anyone" or (viewer is not None and viewer.role is Role.MODERATOR)

    def check_nick_free(self, nick: str, bare: JID) -> None:
        occ = self.occupants.get(nick)
        if occ is not None and occ.bare != bare:
            raise StanzaError(Condition.CONFLICT, f"the nick {nick!r} is in use in this room")
        for jid, a in self.affiliations.items():
            if a.nick == nick and jid != bare:
                raise StanzaError(Condition.CONFLICT, f"the nick {nick!r} is reserved by a member")
        for jid, s in self.subscribers.items():
            if s.nick == nick and jid != bare:
                raise StanzaError(Condition.CONFLICT, f"the nick {nick!r} is taken by a subscriber")

    def _stamp_id(self, msg: etree._Element, *, keep_ours: bool = False) -> str:
        if keep_ours:  # the archive (MAM) stamped its own id in a before-broadcast handler: that is the id
            for old in msg.findall(_STANZA_ID):
                if old.get("by") == self.jid_s and old.get("id"):
                    return old.get("id")  # type: ignore[return-value]
        for old in msg.findall(_STANZA_ID):
            msg.remove(old)
        sid = self.service.new_id()
        etree.SubElement(msg, _STANZA_ID, {"id": sid, "by": self.jid_s}, nsmap={None: SID})
        return sid

    def _x_user(self, parent: etree._Element, occ: Occupant | None, aff: Affiliation, role: Role, *, jid: JID | None = None,
                codes: Iterable[str] = (), actor: JID | None = None, actor_nick: str | None = None,
                reason: str | None = None, nick: str | None = None) -> etree._Element:
        x = etree.SubElement(parent, X_USER, nsmap={None: MUC_USER})
        item = etree.SubElement(x, _ITEM, {"affiliation": aff.value, "role": role.value})
        if jid is not None:
            item.set("jid", str(jid))
        if nick is not None:
            item.set("nick", nick)
        if actor is not None or actor_nick is not None:
            a = etree.SubElement(item, q(MUC_USER, "actor"))
            if actor_nick:
                a.set("nick", actor_nick)
            elif actor is not None:
                a.set("jid", str(actor.bare))
        if reason:
            etree.SubElement(item, q(MUC_USER, "reason")).text = reason
        for code in codes:
            etree.SubElement(x, q(MUC_USER, "status"), {"code": code})
        return x

    def _presence(self, occ: Occupant, *, with_jid: bool, type: str | None = None, codes: Iterable[str] = (),
                  role: Role | None = None, actor: JID | None = None, reason: str | None = None,
                  new_nick: str | None = None, source: etree._Element | None = None, jid: JID | None = None) -> etree._Element:
        """Presence of ``occ`` as the room shows it (from room/nick, no 'to')."""
        p = etree.Element(ns.PRESENCE, {"from": f"{self.jid_s}/{occ.nick}"}, nsmap={None: ns.CLIENT})
        if type:
            p.set("type", type)
        src = source if source is not None else (occ.presence if occ.sessions else None)
        if src is not None and type is None:
            for child in src:
                if child.tag not in (X_MUC, X_USER) and child.tag != f"{{{ns.CLIENT}}}priority":
                    p.append(copy.deepcopy(child))
        elif src is not None:
            st = src.find(C.STATUS)
            if st is not None:
                p.append(copy.deepcopy(st))
        actor_nick = None
        if actor is not None:
            a_occ = self.occupants.of_bare(actor.bare)
            actor_nick = a_occ.nick if a_occ is not None else None
        self._x_user(p, occ, self.affiliation(occ.bare), role or occ.role,
                     jid=(jid or (occ.primary if occ.sessions else occ.bare)) if with_jid else None,
                     codes=codes, actor=actor, actor_nick=actor_nick, reason=reason, nick=new_nick)
        OID.stamp(p, self.occupant_id(occ.bare))
        return p

    async def _broadcast_presence(self, occ: Occupant, *, type: str | None = None, codes: Iterable[str] = (),
                                  self_codes: Iterable[str] = (), role: Role | None = None, actor: JID | None = None,
                                  reason: str | None = None, new_nick: str | None = None,
                                  self_targets: Iterable[JID] | None = None, others: bool = True,
                                  source: etree._Element | None = None) -> None:
        """One presence change of ``occ`` to the room: others by JID visibility, its own sessions with 110."""
        kw = dict(type=type, role=role, actor=actor, reason=reason, new_nick=new_nick, source=source)
        if others:
            own = set(occ.sessions) if self_targets is None else set(occ.sessions) | set(self_targets)
            see, blind = [], []
            anyone = self.config.whois == "anyone"
            for other in self.occupants:
                targets = [j for j in other.sessions if j not in own]
                if not targets:
                    continue
                (see if anyone or other.role is Role.MODERATOR else blind).extend(targets)
            if see:
                await self.service.fanout(self._presence(occ, with_jid=True, codes=codes, **kw), see, "presence")  # type: ignore[arg-type]
            if blind:
                await self.service.fanout(self._presence(occ, with_jid=False, codes=codes, **kw), blind, "presence")  # type: ignore[arg-type]
        mine = list(occ.sessions) if self_targets is None else list(self_targets)
        if mine:
            sc = ["110", *self_codes, *codes]
            await self.service.fanout(self._presence(occ, with_jid=True, codes=sc, **kw), mine, "presence")  # type: ignore[arg-type]
        if type is not None or self_targets is None:
            await self.notify(NODE_PRESENCE, self._presence(occ, with_jid=anyone_sees(self), codes=codes, **kw), None)  # type: ignore[arg-type]

    async def notify(self, node: str, inner: etree._Element, item_id: str | None) -> None:
        """MUC/Sub: the event to subscribers on every available session not in the room (or offline)."""
        if not self.subscribers:
            return
        svc = self.service
        for bare, sub in list(self.subscribers.items()):
            if node not in sub.nodes:
                continue
            occ = self.occupants.of_bare(bare)
            joined = occ.sessions if occ is not None else {}
            sessions = [s for s in svc.ctx.sessions.of(bare) if s.available and s.jid not in joined]
            iid = item_id or svc.new_id()
            if sessions:
                for s in sessions:
                    await svc.ctx.send(wrap(self.jid_s, str(s.jid), node, iid, inner))
            elif not joined:
                await svc.ctx.send(wrap(self.jid_s, str(bare), node, iid, inner))

    async def _error(self, stanza: etree._Element, err: StanzaError) -> None:
        reply = error_reply(stanza, err)
        if reply.get("to"):
            await self.service.ctx.send(reply)

    # ================================================================ presence

    async def presence(self, r: Routed, nick: str | None) -> None:
        stanza = r.stanza
        typ = stanza.get("type")
        full = r.from_jid
        if typ == "error":
            # A session bouncing the room's presence is out of the room, whatever the condition.
            await self.remove_bounced(full)
            return
        if typ == "unavailable":
            await self.leave(full, stanza)
            return
        if typ is not None:
            return  # subscriptions and probes mean nothing to a room
        if nick is None:
            await self._error(stanza, StanzaError(Condition.JID_MALFORMED, "join the room as room@service/nick"))
            return
        try:
            await self.join(full, nick, stanza)
        except StanzaError as err:
            reply = error_reply(stanza, err)
            x = stanza.find(X_MUC)
            if x is not None:
                reply.insert(0, etree.Element(X_MUC, nsmap={None: C.MUC}))
            await self.service.ctx.send(reply)

    async def join(self, full: JID, nick: str, stanza: etree._Element) -> None:
        bare = full.bare
        current = self.occupants.of_jid(full)
        src = _presence_source(stanza)
        if current is not None:
            if current.nick == nick:
                current.sessions[full] = await self._relayable(full, src)  # status/show change (§7.7)
                await self._broadcast_presence(current, source=src)
                return
            await self._change_nick(current, full, nick, src)
            return
        aff = self.affiliation(bare)
        existing = self.occupants.get(nick)
        self.check_nick_free(nick, bare)
        if self.locked and aff is not Affiliation.OWNER:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "the room is locked until its owner configures it")
        if aff is Affiliation.OUTCAST:
            raise StanzaError(Condition.FORBIDDEN, "you are banned from this room")
        if self.config.members_only and aff.rank < Affiliation.MEMBER.rank:
            raise StanzaError(Condition.REGISTRATION_REQUIRED, "this room is for members only")
        x = stanza.find(X_MUC)
        if self.config.password and aff.rank < Affiliation.ADMIN.rank:
            given = x.findtext(q(C.MUC, "password")) if x is not None else None
            if given != self.config.password:
                raise StanzaError(Condition.NOT_AUTHORIZED, "this room needs the right password")
        if existing is None and len(self.occupants) >= self.config.max_occupants and aff.rank < Affiliation.ADMIN.rank:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "the room is full")
        if existing is None:
            other = self.occupants.of_bare(bare)
            if other is not None:
                raise StanzaError(Condition.CONFLICT, f"you are in this room as {other.nick!r}; join with that nick")
        hist = parse_request(x)
        role = existing.role if existing is not None else default_role(aff, self.config.moderated)
        if self.service.events.has(E.PRE_JOIN):
            pj = E.PreJoin(self, full, nick, aff, role, stanza)
            if await self.service.events.run(E.PRE_JOIN, pj) is Flow.STOP:
                raise StanzaError(Condition.NOT_ALLOWED, "you may not enter this room")
            role = pj.role
        src = await self._relayable(full, src, role)
        created = self.service.take_created(self)
        occ = existing or Occupant(nick, bare, role)
        # Existing occupants' presence first (§7.2.3), then ours to everybody, then history and subject.
        others = [o for o in self.occupants if o is not occ]
        self.occupants.add(occ, full, src)
        self.service.index(full, self)
        svc = self.service
        for o in others:
            p = self._presence(o, with_jid=self.can_see_jids(occ))
            p.set("to", str(full))
            await svc.ctx.send(p)
        codes: list[str] = []
        if self.config.whois == "anyone":
            codes.append(C.S_NON_ANONYMOUS)
        if created:
            codes.append(C.S_CREATED)
        if svc.loggers and svc.logged(self):
            codes.append(C.S_LOGGING)
        if existing is None:
            await self._broadcast_presence(occ, self_codes=codes, source=src)
        else:
            await self._broadcast_presence(occ, self_codes=codes, source=src, self_targets=[full], others=False)
        now = svc.now()
        for h in self.history.select(hist, now, self.jid_s):
            h.set("to", str(full))
            await svc.ctx.send(h)
        subj = etree.Element(ns.MESSAGE, {"from": f"{self.jid_s}/{self.subject_nick}" if self.subject_nick else self.jid_s,
                                          "to": str(full), "type": "groupchat", "id": svc.new_id()}, nsmap={None: ns.CLIENT})
        etree.SubElement(subj, SUBJECT).text = self.subject
        await svc.ctx.send(subj)

    async def _change_nick(self, occ: Occupant, full: JID, nick: str, src: etree._Element) -> None:
        """§7.6: unavailable with 303 and the new nick, then available under the new nick."""
        self.check_nick_free(nick, occ.bare)
        if self.occupants.get(nick) is not None:
            raise StanzaError(Condition.CONFLICT, f"the nick {nick!r} is in use in this room")
        await self.may_speak(full, Speak.NICK)
        src = await self._relayable(full, src)
        await self._broadcast_presence(occ, type="unavailable", codes=[C.S_NEW_NICK], new_nick=nick)
        self.occupants.rename(occ, nick)
        occ.sessions[full] = src
        await self._broadcast_presence(occ, source=src)

    async def _relayable(self, full: JID, src: etree._Element, role: Role | None = None) -> etree._Element:
        """``src`` as the room may relay it: its content (status text ...) only if the speech gate
        lets ``full`` show it (kind STATUS); availability and capabilities always."""
        if all(child.tag in _PRESENCE_SIGNALS for child in src):
            return src
        try:
            await self.may_speak(full, Speak.STATUS, stanza=src, role=role)
        except StanzaError:
            for child in list(src):
                if child.tag not in _PRESENCE_SIGNALS:
                    src.remove(child)
        return src

    async def leave(self, full: JID, stanza: etree._Element | None) -> None:
        occ = self.occupants.of_jid(full)
        if occ is None:
            return
        src = _presence_source(stanza) if stanza is not None else None
        if src is not None:
            src = await self._relayable(full, src)
        if len(occ.sessions) > 1:
            self.occupants.remove_session(full)
            self.service.unindex(full, self)
            await self._broadcast_presence(occ, type="unavailable", role=Role.NONE, self_targets=[full], others=False, source=src)
            return
        await self._broadcast_presence(occ, type="unavailable", role=Role.NONE, source=src)
        self.occupants.remove_session(full)
        self.service.unindex(full, self)
        await self.service.maybe_vanish(self)

    async def remove_bounced(self, full: JID) -> None:
        """XEP-0045 status 333: the session ``full`` answered room traffic with an error, so it is
        not there (a ghost: a dead s2s link, a crashed client). That session leaves; when it was
        the occupant's last, everybody sees the occupant leave with 333 (its own copy, if it is
        reachable at all, with 110). Nobody else sees the error."""
        occ = self.occupants.of_jid(full)
        if occ is None:
            return
        log.info("muc %s: %s (%s) removed after an error reply", self.jid_s, occ.nick, full)
        if len(occ.sessions) > 1:
            self.occupants.remove_session(full)
            self.service.unindex(full, self)
            await self._broadcast_presence(occ, type="unavailable", role=Role.NONE, codes=[C.S_ERROR_REPLY],
                                           self_targets=[full], others=False)
            return
        await self._remove(occ, [C.S_ERROR_REPLY], None, None)

    async def _remove(self, occ: Occupant, codes: list[str], actor: JID | None, reason: str | None) -> None:
        """Kick, ban, or removal by affiliation or configuration change: everybody is told with ``codes``."""
        await self._broadcast_presence(occ, type="unavailable", codes=codes, role=Role.NONE, actor=actor, reason=reason)
        self.occupants.remove(occ)
        for full in list(occ.sessions):
            self.service.unindex(full, self)
        await self.service.maybe_vanish(self)

    # ================================================================ messages

    async def message(self, r: Routed, nick: str | None) -> None:
        stanza = r.stanza
        typ = stanza.get("type") or "normal"
        if typ == "error":
            await self._error_reply(r, nick)
            return
        try:
            if nick is not None:
                await self._private(r, nick, typ)
            elif typ == "groupchat":
                await self._groupchat(r)
            else:
                await self._to_room(r)
        except StanzaError as err:
            await self._error(stanza, err)

    async def _error_reply(self, r: Routed, nick: str | None) -> None:
        """A message error from an occupant: the answer of its client (or its server) to something
        the room sent it — a groupchat message (from room/nick), a notice or subject (from the
        room), a private message (from room/sender).

        A condition saying the session is not there (``session_gone``) removes it with status 333.
        Any other (the client refused this one message) goes back to the occupant it names, as
        a private message's error would (§7.5): only the ``<error/>``, from room/bouncer-nick, and
        only if the speech gate lets the bouncer say that much to that occupant."""
        full = r.from_jid
        occ = self.occupants.of_jid(full)
        if occ is None:
            return
        if session_gone(r.stanza):
            await self.remove_bounced(full)
            return
        target = self.occupants.get(nick) if nick is not None else None
        err = r.stanza.find(_ERROR)
        if target is None or target is occ or err is None:
            return
        try:
            await self.may_speak(full, Speak.PRIVATE, stanza=r.stanza, recipient=target)
        except StanzaError:
            return
        attrs = {"from": f"{self.jid_s}/{occ.nick}", "type": "error"}
        if r.stanza.get("id") is not None:
            attrs["id"] = r.stanza.get("id")  # type: ignore[assignment]
        for t in list(target.sessions):
            out = etree.Element(ns.MESSAGE, {**attrs, "to": str(t)}, nsmap={None: ns.CLIENT})
            out.append(copy.deepcopy(err))
            await self.service.ctx.send(out)

    async def _groupchat(self, r: Routed) -> None:
        stanza = r.stanza
        occ = self.occupants.of_jid(r.from_jid)
        if occ is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "you are not in this room")
        body = stanza.find(BODY)
        subject = stanza.find(SUBJECT)
        if subject is not None and body is None:
            await self.may_speak(r.from_jid, Speak.SUBJECT, stanza=stanza)
            await self._change_subject(occ, r.from_jid, subject.text or "", stanza)
            return
        await self.may_speak(r.from_jid, Speak.GROUPCHAT, stanza=stanza)
        out = etree.Element(ns.MESSAGE, {"from": f"{self.jid_s}/{occ.nick}", "type": "groupchat"}, nsmap={None: ns.CLIENT})
        if stanza.get("id") is not None:
            out.set("id", stanza.get("id"))  # type: ignore[arg-type]
        for child in stanza:
            if child.tag == _STANZA_ID or child.tag == X_USER:
                continue
            out.append(copy.deepcopy(child))
        MOD.strip_forged(out)
        OID.stamp(out, self.occupant_id(occ.bare))
        svc = self.service
        if svc.events.has(E.GROUPCHAT_BEFORE_BROADCAST):
            if await svc.events.run(E.GROUPCHAT_BEFORE_BROADCAST, E.GroupchatBeforeBroadcast(self, occ, r.from_jid, out)) is Flow.STOP:
                return
        sid = self._stamp_id(out, keep_ours=True)  # (the sender's own stanza-ids were not copied)
        if body is not None:
            self.history.add(out, svc.now())
        if out.find(MOD.RETRACT_EL) is not None:  # XEP-0424: stored copies become tombstones first
            await MOD.own_retraction(self, occ, out)
        await svc.fanout(out, list(self.occupants.full_jids()), "message")
        await self.notify(NODE_MESSAGES, out, sid)

    async def announce(self, msg: etree._Element) -> None:
        """A message from the room itself (a moderation notice) to every occupant and MUC/Sub
        subscriber, with the room's stanza-id (an archive's, if one stamped it)."""
        sid = self._stamp_id(msg, keep_ours=True)
        await self.service.fanout(msg, list(self.occupants.full_jids()), "message")
        await self.notify(NODE_MESSAGES, msg, sid)

    async def _change_subject(self, occ: Occupant, full: JID, text: str, stanza: etree._Element) -> None:
        """§8.1: moderators, or participants when the room allows it (checked by the speech gate)."""
        self.subject, self.subject_nick = text, occ.nick
        out = etree.Element(ns.MESSAGE, {"from": f"{self.jid_s}/{occ.nick}", "type": "groupchat", "id": stanza.get("id") or self.service.new_id()}, nsmap={None: ns.CLIENT})
        etree.SubElement(out, SUBJECT).text = text
        OID.stamp(out, self.occupant_id(occ.bare))
        await self.service.fanout(out, list(self.occupants.full_jids()), "message")
        await self.notify(NODE_SUBJECT, out, None)
        await self.service.persist_state(self)

    async def _private(self, r: Routed, nick: str, typ: str) -> None:
        """§7.5: between occupants, from room/sender-nick, with an empty muc#user x."""
        if typ == "groupchat":
            raise StanzaError(Condition.BAD_REQUEST, "groupchat messages go to the room's bare JID")
        sender = self.occupants.of_jid(r.from_jid)
        if sender is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "only occupants may send private messages")
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"no occupant with the nick {nick!r}")
        await self.may_speak(r.from_jid, Speak.PRIVATE, stanza=r.stanza, recipient=target)
        out = etree.Element(ns.MESSAGE, {"from": f"{self.jid_s}/{sender.nick}", "type": typ}, nsmap={None: ns.CLIENT})
        if r.stanza.get("id") is not None:
            out.set("id", r.stanza.get("id"))  # type: ignore[arg-type]
        for child in r.stanza:
            if child.tag != X_USER:
                out.append(copy.deepcopy(child))
        etree.SubElement(out, X_USER, nsmap={None: MUC_USER})
        OID.stamp(out, self.occupant_id(sender.bare))
        if self.service.events.has(E.PRIVATE_MESSAGE):
            if await self.service.events.run(E.PRIVATE_MESSAGE, E.PrivateMessage(self, sender, target, out)) is Flow.STOP:
                return
        for full in list(target.sessions):
            m = copy.deepcopy(out)
            m.set("to", str(full))
            await self.service.ctx.send(m)

    async def _to_room(self, r: Routed) -> None:
        """Non-groupchat messages to the room: invitations, declines, voice requests and approvals."""
        stanza = r.stanza
        x = stanza.find(X_USER)
        if x is not None and (x.find(q(MUC_USER, "invite")) is not None or x.find(q(MUC_USER, "decline")) is not None):
            await self._invitations(r, x)
            return
        form_el = stanza.find(X_DATA)
        if form_el is not None:
            form = Form.from_element(form_el)
            if form.form_type == MUC_REQUEST:
                await self._voice(r, form)
                return
        raise StanzaError(Condition.BAD_REQUEST, "send groupchat messages to the room, or private messages to room/nick")

    async def _invitations(self, r: Routed, x: etree._Element) -> None:
        """§7.8.2 mediated invitations and §7.8.3 declines (a message does one or the other)."""
        invites = x.findall(q(MUC_USER, "invite"))
        declines = x.findall(q(MUC_USER, "decline"))
        if invites and declines:
            raise StanzaError(Condition.BAD_REQUEST, "a message either invites or declines, not both")
        if declines:
            await self._decline(r.from_jid, declines)
        else:
            await self._invite(r.from_jid, invites)

    def _count_invitations(self, full: JID, n: int) -> None:
        """Invitations and declines per sender (``[muc] invite_rate`` per ``invite_window``)."""
        rate, key = self.service.invite_rate, str(full.bare)
        if not rate.allows(key, n):
            raise StanzaError(Condition.POLICY_VIOLATION, f"you sent too many invitations or declines; at most "
                              f"{rate.limit} every {rate.window:g} seconds")
        rate.add_many(key, n)

    async def _blocked(self, owner: JID, other: JID) -> bool:
        """Has the local account ``owner`` blocked ``other`` (XEP-0191)? What the room relays on a
        user's behalf obeys the recipient's blocklist as the user's own message would."""
        ctx = self.service.ctx
        if owner.local is None or owner.domain != ctx.domain or not ctx.has_feature("blocking"):
            return False
        return bool(await ctx.feature("blocking").is_blocked(owner.bare, other))

    async def _decline(self, full: JID, declines: list[etree._Element]) -> None:
        """§7.8.3: only an invitee with a pending invitation declines it, once, one per message."""
        if len(declines) != 1:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "decline one invitation per message")
        decline = declines[0]
        to = jid_attr(decline, "to", required=True, bare=False)
        self._count_invitations(full, 1)
        reason = decline.findtext(q(MUC_USER, "reason"))
        if not self.invitations.pending(full.bare, to.bare):
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"you have no pending invitation from {to.bare} to this room")
        await self.may_speak(full, Speak.DECLINE, stanza=decline)
        self.invitations.take(full.bare, to.bare)
        if await self._blocked(to, full):
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "the inviter is not available")
        svc = self.service
        out = etree.Element(ns.MESSAGE, {"from": self.jid_s, "to": str(to), "id": svc.new_id()}, nsmap={None: ns.CLIENT})
        ux = etree.SubElement(out, X_USER, nsmap={None: MUC_USER})
        d = etree.SubElement(ux, q(MUC_USER, "decline"), {"from": str(full.bare)})
        if reason:
            etree.SubElement(d, q(MUC_USER, "reason")).text = reason
        await svc.ctx.send(out)

    async def _invite(self, full: JID, invites: list[etree._Element]) -> None:
        """§7.8.2: occupants invite (per the room's rules), a few per message, each invitee remembered
        so that only it may decline; everything is checked before anything is sent."""
        svc = self.service
        occ = self.occupants.of_jid(full)
        if occ is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "only occupants may invite")
        aff = self.affiliation(full)
        if self.config.members_only and not self.config.allow_invites and aff.rank < Affiliation.ADMIN.rank:
            raise StanzaError(Condition.FORBIDDEN, "only admins and owners may invite to this members-only room")
        most = svc.options.max_invites_per_message
        if len(invites) > most:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"invite at most {most} people per message")
        plan: dict[JID, etree._Element] = {}
        for inv in invites:
            to = jid_attr(inv, "to", required=True)
            if to == full.bare:
                raise StanzaError(Condition.BAD_REQUEST, "you can't invite yourself")
            if self.config.members_only and self.affiliation(to) is Affiliation.OUTCAST:
                raise StanzaError(Condition.FORBIDDEN, f"{to} is banned from this room")
            plan.setdefault(to, inv)
        self._count_invitations(full, len(plan))
        await self.may_speak(full, Speak.INVITE, stanza=invites[0].getparent())
        for to in plan:
            if await self._blocked(to, full):
                raise StanzaError(Condition.SERVICE_UNAVAILABLE, f"{to} is not available")
        for to, inv in plan.items():
            if self.config.members_only and self.affiliation(to).rank < Affiliation.MEMBER.rank:
                await self._apply_affiliation(to, Affiliation.MEMBER, full, None, None)
            out = etree.Element(ns.MESSAGE, {"from": self.jid_s, "to": str(to), "id": svc.new_id()}, nsmap={None: ns.CLIENT})
            reason = inv.findtext(q(MUC_USER, "reason"))
            ux = etree.SubElement(out, X_USER, nsmap={None: MUC_USER})
            i = etree.SubElement(ux, q(MUC_USER, "invite"), {"from": str(full)})
            if reason:
                etree.SubElement(i, q(MUC_USER, "reason")).text = reason
            if self.config.password:
                etree.SubElement(ux, q(MUC_USER, "password")).text = self.config.password
            etree.SubElement(out, BODY).text = f"{full.bare} invites you to the room {self.jid_s}" + (f": {reason}" if reason else "")
            self.invitations.add(to, full)
            await svc.ctx.send(out)

    async def _voice(self, r: Routed, form: Form) -> None:
        """§7.13 voice requests to moderators, and §8.6 their approval."""
        full = r.from_jid
        occ = self.occupants.of_jid(full)
        if occ is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "only occupants may request voice")
        vals = {f.var: f.values for f in form.fields if f.var}
        if form.type == "submit" and "muc#request_allow" in vals:
            if occ.role is not Role.MODERATOR:
                raise StanzaError(Condition.FORBIDDEN, "only moderators may approve voice requests")
            allow = (vals["muc#request_allow"] or ("",))[0].lower() in ("1", "true")
            nick = (vals.get("muc#roomnick") or ("",))[0]
            target = self.occupants.get(nick)
            if target is None:
                raise StanzaError(Condition.ITEM_NOT_FOUND, f"no occupant with the nick {nick!r}")
            if allow and target.role is Role.VISITOR:
                check_role_change(occ.role, self.affiliation(full), self.affiliation(target.bare), target.role, Role.PARTICIPANT)
                await self._ask_role_change(target, Role.PARTICIPANT, full)
                await self._apply_role(target, Role.PARTICIPANT, full, None)
            return
        if occ.role is not Role.VISITOR:
            # A voice request asks for the participant role. A member who has it but may still not
            # speak (everyone muted, a platform mute, a muted admin) learns why: voice can't help.
            await self.may_speak(full, Speak.GROUPCHAT)
            raise StanzaError(Condition.NOT_ACCEPTABLE, "you have voice already")
        # A request is not speech (a muted visitor may ask), but it lands in every moderator's
        # inbox: one per requester and room every [muc] voice_request_interval seconds.
        limit, key = self.service.voice_requests, f"{self.jid_s} {full.bare}"
        if limit.exceeded(key):
            raise StanzaError(Condition.RESOURCE_CONSTRAINT, f"you asked for voice in this room less than "
                              f"{limit.window:g} seconds ago; wait for the moderators, or ask again later")
        limit.add(key)
        req = Form("form", title="Voice request", instructions=("To approve this request for voice, select the 'Grant voice' checkbox and submit the form.",), fields=(
            Field("FORM_TYPE", "hidden", values=(MUC_REQUEST,)),
            Field("muc#role", "list-single", "Requested role", values=("participant",)),
            Field("muc#jid", "jid-single", "User ID", values=(str(full),)),
            Field("muc#roomnick", "text-single", "Room Nickname", values=(occ.nick,)),
            Field("muc#request_allow", "boolean", "Grant voice to this person?", values=("false",)),
        ))
        for mod in self.occupants:
            if mod.role is Role.MODERATOR:
                for mfull in list(mod.sessions):
                    m = etree.Element(ns.MESSAGE, {"from": self.jid_s, "to": str(mfull), "id": self.service.new_id()}, nsmap={None: ns.CLIENT})
                    m.append(req.to_element())
                    await self.service.ctx.send(m)

    # ================================================================ roles and affiliations

    async def _ask_role_change(self, occ: Occupant, new: Role, actor: JID | None, *, implicit: bool = False) -> Role:
        """``events.RoleChangeRequest``: extensions (mute's hierarchy) may refuse a moderator's role
        change, or lower the role an affiliation change gives; returns the role to apply."""
        if new is occ.role or not self.service.events.has(E.ROLE_CHANGE_REQUEST):
            return new
        ev = E.RoleChangeRequest(self, occ, occ.role, new, actor, implicit)
        await self.service.events.run(E.ROLE_CHANGE_REQUEST, ev)
        return ev.new if implicit else new

    async def _apply_role(self, occ: Occupant, role: Role, actor: JID | None, reason: str | None) -> None:
        old = occ.role
        if role is Role.NONE:
            await self._remove(occ, [C.S_KICKED], actor, reason)
        else:
            occ.role = role
            if old is not role:
                await self._broadcast_presence(occ, actor=actor, reason=reason)
        if old is not role and self.service.events.has(E.OCCUPANT_ROLE_CHANGED):
            await self.service.events.run(E.OCCUPANT_ROLE_CHANGED, E.OccupantRoleChanged(self, occ.nick, occ.bare, old, role, actor, reason))

    async def _apply_affiliation(self, bare: JID, aff: Affiliation, actor: JID | None, reason: str | None, nick: str | None,
                                 item: etree._Element | None = None) -> None:
        old = self.affiliation(bare)
        if aff is Affiliation.NONE:
            self.affiliations.pop(bare, None)
        else:
            self.affiliations[bare] = StoredAffiliation(aff.value, nick, reason)
        svc = self.service
        if self.config.persistent:
            await svc.repo.set_affiliation(self.jid_s, str(bare), self.affiliations.get(bare), self.fence)
        occ = self.occupants.of_bare(bare)
        if aff is Affiliation.OUTCAST or (self.config.members_only and aff.rank < Affiliation.MEMBER.rank):
            if bare in self.subscribers:
                await self.set_subscription(bare, None)
            if occ is not None:
                await self._remove(occ, [C.S_BANNED if aff is Affiliation.OUTCAST else C.S_AFFILIATION_REMOVED], actor, reason)
        elif occ is not None:
            new_role = default_role(aff, self.config.moderated)
            if (aff.rank < Affiliation.ADMIN.rank and occ.role is Role.MODERATOR and old.rank >= Affiliation.ADMIN.rank
                    or new_role.rank > occ.role.rank):
                occ.role = await self._ask_role_change(occ, new_role, actor, implicit=True)
            await self._broadcast_presence(occ, actor=actor, reason=reason)
        if old is not aff:
            note = etree.Element(ns.MESSAGE, {"from": self.jid_s}, nsmap={None: ns.CLIENT})
            x = etree.SubElement(note, X_USER, nsmap={None: MUC_USER})
            etree.SubElement(x, _ITEM, {"jid": str(bare), "affiliation": aff.value})
            await self.notify(NODE_AFFILIATIONS, note, None)
        if (old is not aff or item is not None) and svc.events.has(E.AFFILIATION_CHANGED):
            await svc.events.run(E.AFFILIATION_CHANGED, E.AffiliationChanged(self, bare, old, aff, actor, reason, item))

    async def set_subscription(self, bare: JID, sub: Subscription | None) -> None:
        if sub is None:
            if self.subscribers.pop(bare, None) is None:
                return
        else:
            self.subscribers[bare] = sub
        if self.config.persistent:
            await self.service.repo.set_subscription(self.jid_s, str(bare), StoredSubscription(sub.nick, tuple(sorted(sub.nodes))) if sub else None, self.fence)
        if sub is None:
            await self.service.maybe_vanish(self)

    # ================================================================ iq

    async def admin_get(self, full: JID, query: etree._Element) -> etree._Element:
        """§9.5/§8.5: lists by affiliation (admins and owners) or by role (moderators)."""
        item = query.find(q(MUC_ADMIN, "item"))
        if item is None:
            raise StanzaError(Condition.BAD_REQUEST, "ask for the items of one affiliation or role")
        out = etree.Element(ADMIN_QUERY, nsmap={None: MUC_ADMIN})
        if item.get("affiliation") is not None:
            want = parse_affiliation(item.get("affiliation"))
            if self.affiliation(full).rank < Affiliation.ADMIN.rank:
                raise StanzaError(Condition.FORBIDDEN, "only admins and owners may see affiliation lists")
            if want is Affiliation.NONE:
                raise StanzaError(Condition.BAD_REQUEST, "there is no list of users without affiliation")
            for jid, a in sorted(self.affiliations.items(), key=lambda kv: str(kv[0])):
                if a.affiliation == want.value:
                    el = etree.SubElement(out, q(MUC_ADMIN, "item"), {"affiliation": a.affiliation, "jid": str(jid)})
                    if a.nick:
                        el.set("nick", a.nick)
                    if a.reason:
                        etree.SubElement(el, q(MUC_ADMIN, "reason")).text = a.reason
                    if self.service.events.has(E.AFFILIATION_LIST_ITEM):
                        await self.service.events.run(E.AFFILIATION_LIST_ITEM, E.AffiliationListItem(self, jid, want, el))
            return out
        want_role = parse_role(item.get("role"))
        viewer = self.occupants.of_jid(full)
        if viewer is None or viewer.role is not Role.MODERATOR:
            raise StanzaError(Condition.FORBIDDEN, "only moderators may see role lists")
        for occ in self.occupants:
            if occ.role is want_role:
                etree.SubElement(out, q(MUC_ADMIN, "item"), {"nick": occ.nick, "role": occ.role.value,
                                                           "affiliation": self.affiliation(occ.bare).value, "jid": str(occ.primary)})
        return out

    async def admin_set(self, full: JID, query: etree._Element) -> None:
        """§8/§9/§10: role and affiliation changes, all checked before any is applied."""
        items = query.findall(q(MUC_ADMIN, "item"))
        if not items:
            raise StanzaError(Condition.BAD_REQUEST, "no item to change")
        actor_aff = self.affiliation(full)
        actor_occ = self.occupants.of_jid(full)
        actor_role = actor_occ.role if actor_occ is not None else Role.NONE
        plan: list[tuple[str, object, object, str | None, str | None, etree._Element]] = []
        new_affs = {j: Affiliation(a.affiliation) for j, a in self.affiliations.items()}
        for item in items:
            reason = item.findtext(q(MUC_ADMIN, "reason"))
            if item.get("affiliation") is not None:
                aff = parse_affiliation(item.get("affiliation"))
                if item.get("jid"):
                    target = jid_attr(item, "jid", required=True)
                elif item.get("nick"):
                    o = self.occupants.get(item.get("nick"))  # type: ignore[arg-type]
                    if o is None:
                        raise StanzaError(Condition.ITEM_NOT_FOUND, f"no occupant with the nick {item.get('nick')!r}")
                    target = o.bare
                else:
                    raise StanzaError(Condition.BAD_REQUEST, "an affiliation change names a jid")
                check_affiliation_change(actor_aff, self.affiliation(target), aff)
                if self.service.events.has(E.AFFILIATION_CHANGE_REQUEST):
                    await self.service.events.run(E.AFFILIATION_CHANGE_REQUEST, E.AffiliationChangeRequest(
                        self, target, self.affiliation(target), aff, full, item))
                if aff is Affiliation.NONE:
                    new_affs.pop(target, None)
                else:
                    new_affs[target] = aff
                plan.append(("aff", target, aff, reason, item.get("nick") if item.get("jid") else None, item))
            elif item.get("role") is not None:
                role = parse_role(item.get("role"))
                nick = item.get("nick")
                if not nick:
                    raise StanzaError(Condition.BAD_REQUEST, "a role change names an occupant's nick")
                occ = self.occupants.get(nick)
                if occ is None:
                    raise StanzaError(Condition.ITEM_NOT_FOUND, f"no occupant with the nick {nick!r}")
                check_role_change(actor_role, actor_aff, self.affiliation(occ.bare), occ.role, role)
                if role is Role.PARTICIPANT and self.affiliation(occ.bare) is Affiliation.OUTCAST:
                    raise StanzaError(Condition.NOT_ALLOWED, "an outcast can't get voice")
                await self._ask_role_change(occ, role, full)
                plan.append(("role", occ, role, reason, None, item))
            else:
                raise StanzaError(Condition.BAD_REQUEST, "an item names a role or an affiliation")
        if self.affiliations and not any(a is Affiliation.OWNER for a in new_affs.values()):
            raise StanzaError(Condition.CONFLICT, "a room keeps at least one owner")
        for kind, target, value, reason, nick, src in plan:
            if kind == "aff":
                await self._apply_affiliation(target, value, full, reason, nick, src)  # type: ignore[arg-type]
            else:
                occ = target  # type: ignore[assignment]
                if self.occupants.get(occ.nick) is occ:  # type: ignore[attr-defined]
                    await self._apply_role(occ, value, full, reason)  # type: ignore[arg-type]

    async def owner_get(self, full: JID) -> etree._Element:
        if self.affiliation(full) is not Affiliation.OWNER:
            raise StanzaError(Condition.FORBIDDEN, "only owners may configure the room")
        out = etree.Element(OWNER_QUERY, nsmap={None: C.MUC_OWNER})
        out.append((await self._form()).to_element())
        return out

    async def _form(self) -> Form:
        extra: list[Field] = []
        if self.service.events.has(E.CONFIG_FORM):
            cf = E.ConfigForm(self)
            await self.service.events.run(E.CONFIG_FORM, cf)
            extra = cf.fields  # type: ignore[assignment]
        return config_form(self.config, self.service.options.max_occupants_limit, extra)

    async def owner_set(self, full: JID, query: etree._Element) -> None:
        if self.affiliation(full) is not Affiliation.OWNER:
            raise StanzaError(Condition.FORBIDDEN, "only owners may configure or destroy the room")
        destroy = query.find(q(C.MUC_OWNER, "destroy"))
        if destroy is not None:
            await self.destroy(destroy.findtext(q(C.MUC_OWNER, "reason")), destroy.get("jid"), destroy.findtext(q(C.MUC_OWNER, "password")))
            return
        x = query.find(X_DATA)
        if x is None:
            raise StanzaError(Condition.BAD_REQUEST, "send a data form or a destroy request")
        if x.get("type") == "cancel":
            if self.locked:
                await self.destroy(None, None, None)  # §10.1.3: cancelling a new room's form destroys it
            return
        asked = await self._form()
        extra_vars = {f.var for f in asked.fields if f.var} - {f.var for f in config_form(RoomConfig(), self.service.options.max_occupants_limit).fields}
        new = apply_submission(self.config, asked, x, self.service.options.max_history_length, extra_vars)  # type: ignore[arg-type]
        await self.reconfigure(new)

    async def reconfigure(self, new: RoomConfig) -> None:
        old = self.config
        svc = self.service
        was_logged = svc.logged(self)
        self.config = new
        self.history.resize(new.history_length)
        was_locked, self.locked = self.locked, False
        if new.persistent and not old.persistent:
            await svc.repo.save_room(self.stored())
        elif old.persistent and not new.persistent:
            await svc.repo.delete_room(self.jid_s, self.fence)
        elif new.persistent:
            await svc.persist_state(self)
        if new.members_only and not old.members_only:
            for occ in self.occupants:
                if self.affiliation(occ.bare).rank < Affiliation.MEMBER.rank:
                    await self._remove(occ, [C.S_MEMBERS_ONLY], None, "the room is now members-only")
        if not was_locked:
            codes = [C.S_CONFIG_NON_PRIVACY]
            if new.whois != old.whois:
                codes.append(C.S_NOW_NON_ANONYMOUS if new.whois == "anyone" else C.S_NOW_SEMI_ANONYMOUS)
            if (now_logged := svc.logged(self)) != was_logged:
                codes.append(C.S_LOGGING if now_logged else C.S_NOT_LOGGING)
            msg = etree.Element(ns.MESSAGE, {"from": self.jid_s, "type": "groupchat", "id": svc.new_id()}, nsmap={None: ns.CLIENT})
            x = etree.SubElement(msg, X_USER, nsmap={None: MUC_USER})
            for c in codes:
                etree.SubElement(x, q(MUC_USER, "status"), {"code": c})
            await svc.fanout(msg, list(self.occupants.full_jids()), "message")
            await self.notify(NODE_CONFIG, msg, None)

    async def destroy(self, reason: str | None, alternate: str | None, password: str | None) -> None:
        """§10.9: every occupant leaves with the reason and the alternate venue; storage forgets the room."""
        self.destroyed = True
        for occ in self.occupants:
            for full in list(occ.sessions):
                p = etree.Element(ns.PRESENCE, {"from": f"{self.jid_s}/{occ.nick}", "to": str(full), "type": "unavailable"}, nsmap={None: ns.CLIENT})
                x = etree.SubElement(p, X_USER, nsmap={None: MUC_USER})
                etree.SubElement(x, _ITEM, {"affiliation": "none", "role": "none"})
                d = etree.SubElement(x, q(MUC_USER, "destroy"))
                if alternate:
                    d.set("jid", alternate)
                if reason:
                    etree.SubElement(d, q(MUC_USER, "reason")).text = reason
                if password:
                    etree.SubElement(d, q(MUC_USER, "password")).text = password
                etree.SubElement(x, q(MUC_USER, "status"), {"code": C.S_SELF})
                await self.service.ctx.send(p)
                self.service.unindex(full, self)
        self.occupants = Occupants()
        await self.service.forget(self)
        if self.service.events.has(E.ROOM_DESTROYED):
            await self.service.events.run(E.ROOM_DESTROYED, E.RoomDestroyed(self, reason, alternate))

    # ================================================================ storage

    def stored(self) -> StoredRoom:
        return StoredRoom(
            self.jid_s, self.config.to_json(), self.subject, self.subject_nick,
            {str(j): StoredAffiliation(a.affiliation, a.nick, a.reason) for j, a in self.affiliations.items()},
            {str(j): StoredSubscription(s.nick, tuple(sorted(s.nodes))) for j, s in self.subscribers.items()},
            self.fence,
        )

    @classmethod
    def from_stored(cls, service: "MucService", s: StoredRoom) -> "Room":
        room = cls(service, JID.parse(s.jid), RoomConfig.from_json(s.config))
        room.subject, room.subject_nick = s.subject, s.subject_nick
        room.affiliations = {JID.parse(j): StoredAffiliation(a.affiliation, a.nick, a.reason) for j, a in s.affiliations.items()}
        room.subscribers = {JID.parse(j): Subscription(v.nick, frozenset(v.nodes)) for j, v in s.subscriptions.items()}
        return room


def anyone_sees(room: Room) -> bool:
    return room.config.whois == "anyone"


def session_gone(stanza: etree._Element) -> bool:
    """Whether an error reply says its sender's session is gone (``_SESSION_GONE``, or no
    readable condition at all)."""
    err = stanza.find(_ERROR)
    if err is None:
        return True
    for child in err:
        if isinstance(child.tag, str) and child.tag.startswith(f"{{{ns.STANZAS}}}") and child.tag != f"{{{ns.STANZAS}}}text":
            return etree.QName(child).localname in _SESSION_GONE
    return True


def _presence_source(stanza: etree._Element | None) -> etree._Element:
    """What of a client's presence the room relays (show, status, caps ...), without addressing."""
    p = etree.Element(ns.PRESENCE, nsmap={None: ns.CLIENT})
    if stanza is not None:
        for child in stanza:
            if child.tag not in (X_MUC, X_USER):
                p.append(copy.deepcopy(child))
    return p


