"""XEP-0045: Multi-User Chat service — the ``conference.`` domain, its rooms, disco, and MUC/Sub.

The router hands every stanza for the MUC domain to ``MucService.receive``; rooms live in
memory (persistent ones loaded from the repository at start). Fan-out serialises a stanza once
and the router writes the bytes to each occupant's session with its ``to`` spliced in (see ``fanout``).
"""
from __future__ import annotations

import copy
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from ...config import NonNegativeInt, Positive, PositiveInt
from ...core import hooks as H
from ...core.dispatch import Target
from ...core.feature import Feature
from ...core.hooks import Flow, NodeEvent, Routed, SessionEvent
from ...core.limits import SlidingCounter
from ...core.server_owned import owned
from ...errors import Condition, StanzaError
from ...jid import JID
from ...xml import ns
from ...xml.builder import error_reply, iq_result
from ...xml.forms import Field, Form
from ..adhoc.command import NS as ADHOC_NS
from ..disco import info_element, items_element
from . import const as C
from . import moderation as MOD
from . import occupant_id as OID
from . import subscriptions as S
from .affiliations import Affiliation, Role
from .config_form import RoomConfig
from .directory import MucRoomDirectory, RoomDirectory
from .events import ROOM_DISCO_INFO, RoomDiscoInfo, RoomEvents
from .invitations import SenderRate
from .repository import FencedOut, MucRepository, SqlMucRepository, StoredAffiliation, StoredRoom
from .room import Room

_PING = C.q(C.PING, "ping")
_UNIQUE = C.q(C.MUC_UNIQUE, "unique")
_MAX_PENDING_IQS = 10000


@dataclass(frozen=True, slots=True)
class MucOptions:
    domain: str = ""  # empty: "conference." + server.domain
    name: str = "Chatrooms"
    max_rooms_per_user: NonNegativeInt = 100  # rooms one user may own (0: no limit)
    creation_admins_only: bool = False
    lock_new_rooms: bool = True  # XEP-0045 §10.1.1: new rooms wait for configuration (or an instant-room form)
    max_occupants: PositiveInt = 200  # default maximum occupants of a new room
    max_occupants_limit: PositiveInt = 1000  # highest maximum an owner may configure
    history_length: NonNegativeInt = 20  # default messages of history sent on join
    max_history_length: NonNegativeInt = 100
    persistent_by_default: bool = False
    max_invites_per_message: PositiveInt = 5  # <invite/> elements in one message (XEP-0045 §7.8.2); a decline is always one
    invite_rate: PositiveInt = 20  # invitations plus declines one user may send in invite_window (all rooms together)
    invite_window: Positive = 60.0  # seconds
    max_pending_invitations: PositiveInt = 1000  # per room: invitations remembered so that only invitees may decline
    invitation_ttl: Positive = 86400.0  # seconds an invitation can be declined
    voice_request_interval: Positive = 300.0  # seconds between two voice requests (§7.13) of one user in one room


class MucService:
    """Receives every stanza addressed to the MUC domain."""

    def __init__(self, feature: "Muc", domain: str, repo: MucRepository, occupant_ids: OID.OccupantIds) -> None:
        self.feature = feature
        self.ctx = feature.ctx
        self.options: MucOptions = feature.options
        self.domain = domain
        self.repo = repo
        self.occupant_ids = occupant_ids  # XEP-0421
        self.events = RoomEvents()
        self.rooms: dict[JID, Room] = {}
        self.joined: dict[JID, set[Room]] = {}  # real full JID -> rooms it is in
        self._created: set[int] = set()
        self._boot = secrets.token_hex(3)
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[str, str | None, str]] = {}
        # Predicates "is this room's discussion logged?" (e.g. the XEP-0313 archive); see Muc.add_logger.
        self.loggers: list[Callable[[Room], bool]] = []
        o = self.options
        self.invite_rate = SenderRate(o.invite_rate, o.invite_window, clock=self.ctx.clock.now)
        self.voice_requests = SlidingCounter(1, o.voice_request_interval, clock=self.ctx.clock.now)
        # Rooms across cluster nodes (``clustered.RoomCluster``); None on one node.
        self.cluster: Any = None

    def logged(self, room: Room) -> bool:
        """Whether anything records this room's discussion (XEP-0045 status codes 170/171)."""
        return any(f(room) for f in self.loggers)

    # ---------------------------------------------------------------- small services for rooms

    def new_id(self) -> str:
        return f"{self._boot}{next(self._ids):x}"

    def now(self) -> float:
        return self.ctx.clock.now()

    def index(self, full: JID, room: Room) -> None:
        self.joined.setdefault(full, set()).add(room)

    def unindex(self, full: JID, room: Room) -> None:
        rooms = self.joined.get(full)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self.joined[full]

    def take_created(self, room: Room) -> bool:
        if id(room) in self._created:
            self._created.discard(id(room))
            return True
        return False

    async def maybe_vanish(self, room: Room) -> None:
        """A temporary room without occupants or subscribers is gone (§10.9: not persistent)."""
        if room.is_empty and not room.config.persistent and not room.subscribers and self.rooms.get(room.jid) is room:
            del self.rooms[room.jid]
            self._created.discard(id(room))

    async def forget(self, room: Room) -> None:
        if self.rooms.get(room.jid) is room:
            del self.rooms[room.jid]
        if room.config.persistent:
            await self.repo.delete_room(room.jid_s, room.fence)

    async def persist_state(self, room: Room) -> None:
        if room.config.persistent:
            await self.repo.update_room(room.jid_s, room.config.to_json(), room.subject, room.subject_nick, room.fence)

    async def fanout(self, el: etree._Element, fulls: list[JID], kind: str) -> None:
        """Deliver ``el`` (no 'to', not changed meanwhile) to the occupants' sessions ``fulls``
        through the router's fan-out: serialised once, ``to`` spliced into the bytes."""
        if fulls:
            await self.ctx.router.fan_out(el, fulls, kind)

    # ---------------------------------------------------------------- public API

    def get_room(self, jid: JID | str) -> Room | None:
        j = JID.parse(jid) if isinstance(jid, str) else jid
        return self.rooms.get(j.bare)

    # ---------------------------------------------------------------- entry point

    async def receive(self, r: Routed, hops: int = 0) -> None:
        """A stanza for the service or one of its rooms (``hops``: forwarded by other cluster
        nodes that many times; a room is handled on the node owning it, see ``clustered``)."""
        to = r.to
        assert to is not None
        kind = r.kind
        cluster = self.cluster
        error: StanzaError | None = None
        try:
            if to.local is None:
                await self._to_service(r)
                return
            if cluster is not None and not await cluster.here(r, hops):
                return
            try:
                await self._to_room(r, to, kind)
            except StanzaError as err:
                error = err  # answered below, once a lease this node took for nothing is released
            finally:
                if cluster is not None and to.bare not in self.rooms:
                    await cluster.released(to.bare)
        except StanzaError as err:
            error = err
        except FencedOut as exc:
            if cluster is not None:
                await cluster.fenced_out(to.bare, exc)
            error = StanzaError(Condition.SERVICE_UNAVAILABLE, "the room moved to another node: try again")
        if error is not None:
            await self._bounce(r, error)

    async def _to_room(self, r: Routed, to: JID, kind: str) -> None:
        room = self.rooms.get(to.bare)
        if room is None:
            room = await self._missing(r, to)
            if room is None:
                return
        if kind == "presence":
            await room.presence(r, to.resource)
            if room.is_empty:
                await self.maybe_vanish(room)
        elif kind == "message":
            await room.message(r, to.resource)
        else:
            await self._room_iq(room, r, to.resource)

    async def _bounce(self, r: Routed, err: StanzaError) -> None:
        typ = r.stanza.get("type")
        if typ == "error" or (r.kind == "iq" and typ == "result"):
            return
        reply = error_reply(r.stanza, err)
        if reply.get("to"):
            await self.ctx.send(reply)

    async def _missing(self, r: Routed, to: JID) -> Room | None:
        typ = r.stanza.get("type")
        if r.kind == "presence" and typ is None and to.resource is not None:
            try:
                return self._create(to.bare, r.from_jid, await self._owned_elsewhere(r.from_jid))
            except StanzaError as err:
                reply = error_reply(r.stanza, err)
                reply.insert(0, etree.Element(C.X_MUC, nsmap={None: C.MUC}))
                await self.ctx.send(reply)
                return None
        if r.kind == "presence":
            return None
        raise StanzaError(Condition.ITEM_NOT_FOUND, f"there is no room {to.bare}")

    async def create_room(self, jid: JID, creator: JID, config: RoomConfig | None = None) -> Room:
        """A room made by the service for ``creator`` (the REST API): the rules of a room
        created by presence (who may create, rooms per user), ``creator`` its owner, then
        configured at once with ``config`` (the defaults when None), so it is unlocked."""
        if jid in self.rooms:
            raise StanzaError(Condition.CONFLICT, f"the room {jid} exists already")
        room = self._create(jid, creator, await self._owned_elsewhere(creator))
        self._created.discard(id(room))
        await room.reconfigure(config if config is not None else room.config.copy())
        return room

    def _create(self, jid: JID, creator: JID, owned_elsewhere: int = 0) -> Room:
        """§10.1: the creator becomes owner; the room stays locked until configured.
        ``owned_elsewhere``: rooms the creator owns that other cluster nodes hold."""
        opts = self.options
        if creator.domain != self.ctx.domain:
            raise StanzaError(Condition.NOT_ALLOWED, "only local users may create rooms")
        if opts.creation_admins_only and not self.ctx.is_admin(creator):
            raise StanzaError(Condition.NOT_ALLOWED, "only server administrators may create rooms")
        if opts.max_rooms_per_user:
            owned = sum(1 for room in self.rooms.values() if room.affiliation(creator) is Affiliation.OWNER)
            owned += owned_elsewhere
            if owned >= opts.max_rooms_per_user and not self.ctx.is_admin(creator):
                raise StanzaError(Condition.NOT_ALLOWED, f"you own {owned} rooms already, the most allowed")
        room = Room(self, jid, RoomConfig(
            max_occupants=min(opts.max_occupants, opts.max_occupants_limit),
            history_length=min(opts.history_length, opts.max_history_length),
            persistent=opts.persistent_by_default,
        ))
        room.affiliations[creator.bare] = StoredAffiliation(Affiliation.OWNER.value)
        room.locked = opts.lock_new_rooms
        if self.cluster is not None:
            room.fence = self.cluster.token(jid)
        self.rooms[jid] = room
        self._created.add(id(room))
        if room.config.persistent:
            self.ctx.spawn(self.repo.save_room(room.stored()), name="muc-save-room")
        return room

    # ---------------------------------------------------------------- the other nodes' rooms

    async def _stored_elsewhere(self) -> list[StoredRoom]:
        """In a cluster: the persistent rooms this node does not hold, as the database has them
        (held by another node, which writes every change through, or by none); [] on one node,
        where every persistent room is in memory."""
        if self.cluster is None:
            return []
        return [s for s in await self.repo.load_rooms() if JID.parse(s.jid) not in self.rooms]

    async def _owned_elsewhere(self, creator: JID) -> int:
        """``max_rooms_per_user`` in a cluster: the persistent rooms ``creator`` owns that this
        node does not hold (``_create`` adds this node's)."""
        if self.cluster is None or not self.options.max_rooms_per_user:
            return 0
        bare = str(creator.bare)
        return sum(1 for s in await self._stored_elsewhere()
                   if (a := s.affiliations.get(bare)) is not None and a.affiliation == Affiliation.OWNER.value)

    # ---------------------------------------------------------------- iq

    async def _reply(self, r: Routed, payload: etree._Element | None) -> None:
        await self.ctx.send(iq_result(r.stanza, payload))

    async def _to_service(self, r: Routed) -> None:
        if r.kind != "iq":
            if r.kind == "message":
                raise StanzaError(Condition.SERVICE_UNAVAILABLE, "the chat service takes no messages; send them to a room")
            return
        typ = r.stanza.get("type")
        if typ not in ("get", "set"):
            return
        payload = r.stanza[0] if len(r.stanza) else None
        tag = payload.tag if payload is not None else None
        if typ == "get" and tag == C.DISCO_INFO_Q and not payload.get("node"):  # type: ignore[union-attr]
            q = etree.Element(C.DISCO_INFO_Q, nsmap={None: ns.DISCO_INFO})
            etree.SubElement(q, C.q(ns.DISCO_INFO, "identity"), {"category": "conference", "type": "text", "name": self.options.name})
            for f in service_features():
                etree.SubElement(q, C.q(ns.DISCO_INFO, "feature"), {"var": f})
            await self._reply(r, q)
        elif typ == "get" and tag == C.DISCO_ITEMS_Q and not payload.get("node"):  # type: ignore[union-attr]
            q = etree.Element(C.DISCO_ITEMS_Q, nsmap={None: ns.DISCO_ITEMS})
            listed = [(str(jid), room.config.name or (jid.local or "")) for jid, room in self.rooms.items()
                      if room.config.public and not room.locked]
            # In a cluster, the public persistent rooms other nodes hold (or none does), and the
            # public temporary rooms they hold (from their last heartbeat).
            for stored in await self._stored_elsewhere():
                if stored.config.get("public", True):
                    listed.append((stored.jid, stored.config.get("name") or JID.parse(stored.jid).local or ""))
            if self.cluster is not None:
                mine = {str(jid) for jid in self.rooms}
                listed += [(jid_s, name) for jid_s, name in (await self.cluster.listed_elsewhere()).items() if jid_s not in mine]
            for jid_s, name in sorted(dict(listed).items()):  # (a room made persistent: listed once)
                etree.SubElement(q, C.q(ns.DISCO_ITEMS, "item"), {"jid": jid_s, "name": name})
            await self._reply(r, q)
        elif typ == "get" and tag == _UNIQUE:
            taken = {JID.parse(s.jid) for s in await self._stored_elsewhere()}
            if self.cluster is not None:
                taken |= {JID.parse(j) for j in await self.cluster.listed_elsewhere()}
            while True:
                name = f"{self.ctx.rng.getrandbits(64):016x}"
                if JID(name, self.domain) not in self.rooms and JID(name, self.domain) not in taken:
                    break
            el = etree.Element(_UNIQUE, nsmap={None: C.MUC_UNIQUE})
            el.text = name
            await self._reply(r, el)
        elif typ == "get" and tag == S.SUBSCRIPTIONS:
            out = S.list_subscriptions(list(self.rooms.values()), r.from_jid)
            # In a cluster, the persistent rooms other nodes hold: their stored subscribers.
            bare = str(r.from_jid.bare)
            for stored in sorted(await self._stored_elsewhere(), key=lambda s: s.jid):
                sub_ = stored.subscriptions.get(bare)
                if sub_ is not None:
                    el = etree.SubElement(out, C.q(C.MUCSUB, "subscription"), {"jid": stored.jid, "nick": sub_.nick})
                    S.event_list(el, sub_.nodes)
            await self._reply(r, out)
        elif typ == "get" and tag == _PING:
            await self._reply(r, None)
        else:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, f"the chat service does not handle {tag}")

    async def _room_iq(self, room: Room, r: Routed, nick: str | None) -> None:
        stanza = r.stanza
        typ = stanza.get("type")
        if nick is not None:
            await self._occupant_iq(room, r, nick)
            return
        if typ not in ("get", "set"):
            return
        payload = stanza[0] if len(stanza) else None
        if payload is None:
            raise StanzaError(Condition.BAD_REQUEST, "an iq get/set carries one payload")
        tag = payload.tag
        full = r.from_jid
        result: etree._Element | None = None
        if typ == "get" and payload.get("node") and tag in (C.DISCO_INFO_Q, C.DISCO_ITEMS_Q):
            result = await self._room_node(room, full, tag, payload.get("node"))  # type: ignore[arg-type]
        elif typ == "get" and tag == C.DISCO_INFO_Q:
            result = await self._room_info(room, full)
        elif typ == "get" and tag == C.DISCO_ITEMS_Q:
            result = etree.Element(C.DISCO_ITEMS_Q, nsmap={None: ns.DISCO_ITEMS})
            # §6.5: occupants are listed to those in the room, and to anyone in public non-anonymous-safe rooms
            if room.occupants.of_jid(full) is not None or room.config.public:
                for occ in room.occupants:
                    etree.SubElement(result, C.q(ns.DISCO_ITEMS, "item"), {"jid": f"{room.jid_s}/{occ.nick}"})
        elif tag == C.ADMIN_QUERY:
            result = await room.admin_get(full, payload) if typ == "get" else await room.admin_set(full, payload)
        elif tag == C.OWNER_QUERY:
            result = await room.owner_get(full) if typ == "get" else await room.owner_set(full, payload)
        elif typ == "set" and tag == S.SUBSCRIBE:
            result = await S.handle_subscribe(room, full, payload)
        elif typ == "set" and tag == S.UNSUBSCRIBE:
            await S.handle_unsubscribe(room, full, payload)
        elif typ == "get" and tag == S.SUBSCRIPTIONS:
            result = S.list_subscribers(room, full)
        elif typ == "get" and tag == _PING:
            pass
        elif typ == "set" and tag == MOD.MODERATE_Q:
            await MOD.moderate(room, full, payload)
        elif self.ctx.router.iq_table.lookup(typ, Target.BARE, self.domain, tag) is not None:  # type: ignore[arg-type]
            # Room iqs of extensions (ad-hoc commands, group mute ...): registered in the server's
            # iq table for (MUC domain, bare JID); the handler gets the room's JID as ``to``.
            await self.ctx.router.dispatch_iq(r, Target.BARE)
            return
        else:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, f"rooms do not handle {tag}")
        await self._reply(r, result)

    async def _room_node(self, room: Room, requester: JID, tag: str, node: str) -> etree._Element:
        """XEP-0050 §2: the ad-hoc commands node of a room and its command nodes (via the adhoc feature)."""
        info = None
        if self.ctx.has_feature("adhoc"):
            adhoc = self.ctx.feature("adhoc")
            if tag == C.DISCO_ITEMS_Q and node == ADHOC_NS:
                info = await adhoc.disco_items(requester, room.jid)
            else:
                info = await adhoc.disco_info(requester, room.jid, node)
        if info is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"the room has no disco node {node!r}")
        return info_element(info, node) if tag == C.DISCO_INFO_Q else items_element(info, node)

    async def _room_info(self, room: Room, requester: JID) -> etree._Element:
        """§6.4: identity, muc_* features from the configuration, and the muc#roominfo form."""
        cfg = room.config
        feats = [
            C.MUC, ns.DISCO_INFO, ns.DISCO_ITEMS, C.SID, C.STABLE_ID, C.SELF_PING_OPTIMIZATION, OID.NS, *MOD.FEATURES,
            "muc_persistent" if cfg.persistent else "muc_temporary",
            "muc_public" if cfg.public else "muc_hidden",
            "muc_membersonly" if cfg.members_only else "muc_open",
            "muc_moderated" if cfg.moderated else "muc_unmoderated",
            "muc_nonanonymous" if cfg.whois == "anyone" else "muc_semianonymous",
            "muc_passwordprotected" if cfg.password else "muc_unsecured",
        ]
        if cfg.allow_subscription:
            feats.append(C.MUCSUB)
        info = RoomDiscoInfo(room, requester, feats, [])
        if self.events.has(ROOM_DISCO_INFO):
            await self.events.run(ROOM_DISCO_INFO, info)
        q = etree.Element(C.DISCO_INFO_Q, nsmap={None: ns.DISCO_INFO})
        etree.SubElement(q, C.q(ns.DISCO_INFO, "identity"), {"category": "conference", "type": "text", "name": cfg.name or (room.jid.local or "")})
        for f in dict.fromkeys(info.features):
            etree.SubElement(q, C.q(ns.DISCO_INFO, "feature"), {"var": f})
        fields = [
            Field("FORM_TYPE", "hidden", values=(C.ROOMINFO,)),
            Field("muc#roominfo_description", "text-single", "Description", values=(cfg.description,)),
            Field("muc#roominfo_subject", "text-single", "Subject", values=(room.subject,)),
            Field("muc#roominfo_occupants", "text-single", "Number of occupants", values=(str(len(room.occupants)),)),
            Field("muc#roomconfig_roomname", "text-single", "Name", values=(cfg.name,)),
            Field("muc#maxhistoryfetch", "text-single", "Maximum history", values=(str(cfg.history_length),)),
            Field("muc#roomconfig_changesubject", "boolean", "Occupants may change the subject", values=("1" if cfg.change_subject else "0",)),
            Field("muc#roomconfig_allowinvites", "boolean", "Occupants may invite", values=("1" if cfg.allow_invites else "0",)),
            Field("muc#roominfo_subjectmod", "boolean", "Occupants may change the subject", values=("1" if cfg.change_subject else "0",)),
        ]
        for var, value in info.fields:
            fields.append(Field(var, "text-single", values=(value,)))
        q.append(Form("result", fields=tuple(fields)).to_element())
        return q

    async def _occupant_iq(self, room: Room, r: Routed, nick: str) -> None:
        """§7.2.x / XEP-0410: self-ping answered here; other iqs relayed to the occupant's real JID."""
        stanza = r.stanza
        typ = stanza.get("type")
        full = r.from_jid
        if typ in ("result", "error"):
            entry = self._pending.pop(stanza.get("id") or "", None)
            if entry is None:
                return
            orig_from, orig_id, target_jid = entry
            out = copy.deepcopy(stanza)
            out.set("to", orig_from)
            out.set("from", target_jid)
            if orig_id is None:
                del out.attrib["id"]
            else:
                out.set("id", orig_id)
            await self.ctx.send(out)
            return
        sender = room.occupants.of_jid(full)
        if sender is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "you are not in this room")
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"no occupant with the nick {nick!r}")
        payload = stanza[0] if len(stanza) else None
        if target is sender and payload is not None and payload.tag == _PING:
            await self._reply(r, None)
            return
        new_id = self.new_id()
        if len(self._pending) >= _MAX_PENDING_IQS:
            self._pending.pop(next(iter(self._pending)))
        self._pending[new_id] = (str(full), stanza.get("id"), f"{room.jid_s}/{nick}")
        out = copy.deepcopy(stanza)
        out.set("from", f"{room.jid_s}/{sender.nick}")
        out.set("to", str(target.primary))
        out.set("id", new_id)
        await self.ctx.send(out)

    # ---------------------------------------------------------------- sessions

    async def session_gone(self, full: JID) -> None:
        for room in list(self.joined.get(full, ())):
            await room.leave(full, None)
        if self.cluster is not None and self.cluster.joined_elsewhere(full):
            await self.cluster.session_gone(full)  # the rooms other nodes own

    async def shutdown(self) -> None:
        """§7.2.x status 332: tell everyone still in a room that the service is going away."""
        for room in list(self.rooms.values()):
            for occ in room.occupant_list():
                for full in list(occ.sessions):
                    p = etree.Element(ns.PRESENCE, {"from": f"{room.jid_s}/{occ.nick}", "to": str(full), "type": "unavailable"}, nsmap={None: ns.CLIENT})
                    x = etree.SubElement(p, C.X_USER, nsmap={None: C.MUC_USER})
                    etree.SubElement(x, C.q(C.MUC_USER, "item"), {"affiliation": room.affiliation(occ.bare).value, "role": "none"})
                    etree.SubElement(x, C.q(C.MUC_USER, "status"), {"code": C.S_SHUTDOWN})
                    await self.ctx.router.deliver_to(full, p, "presence")


def service_features() -> list[str]:
    return [ns.DISCO_INFO, ns.DISCO_ITEMS, C.MUC, C.MUC_UNIQUE, C.MUCSUB, C.CONFERENCE, C.PING]


class Muc(Feature):
    """XEP-0045 Multi-User Chat with ejabberd's MUC/Sub, XEP-0249 routing and XEP-0410 self-ping."""

    name = "muc"
    implements = ("XEP-0045", "XEP-0249", "XEP-0410", "XEP-0421", "XEP-0424", "XEP-0425", "MUC/Sub")
    depends = ("disco",)
    Options = MucOptions
    # XEP-0421 §4: only a room says who an occupant is (rooms also strip what reaches them directly).
    server_owned = owned(OID.NS, "occupant-id")
    migrations = str(__import__("pathlib").Path(__file__).parent / "migrations")

    async def setup(self) -> None:
        domain = self.options.domain or f"conference.{self.ctx.domain}"
        self.domain = domain
        from ...storage.secrets import server_secret

        ids = OID.OccupantIds(await server_secret(self.ctx.db, "muc-occupant-id"))
        self.service = MucService(self, domain, SqlMucRepository(self.ctx.db), ids)
        for stored in await self.service.repo.load_rooms():
            room = Room.from_stored(self.service, stored)
            room.config.persistent = True
            self.service.rooms[room.jid] = room
        self.ctx.add_service(domain, self.service)
        self.ctx.on_teardown(self.ctx.feature("disco").add_item(domain, self.options.name))
        self.ctx.add_hook(H.SESSION_CLOSED, self._session_closed)
        self.ctx.add_hook(H.PRESENCE_BROADCAST, self._presence_broadcast, priority=10)
        from ...api import rooms as rooms_api

        self.ctx.add_api(rooms_api.operations(self))
        self.ctx.add_hook(H.NODE_DOWN, self._node_down)

    async def join_cluster(self, port: Any) -> Callable[[], Any]:
        """The cluster started (docs/cluster.md §5): from now on a room lives on the node that
        holds its lease and is loaded there when acquired, so the rooms loaded at start go."""
        from .clustered import RoomCluster

        svc = self.service
        for room in list(svc.rooms.values()):
            if room.is_empty:
                del svc.rooms[room.jid]
        svc.cluster = RoomCluster(svc, port)
        return svc.cluster.leave

    async def _node_down(self, ev: NodeEvent) -> Flow:
        if self.service.cluster is not None:
            await self.service.cluster.node_down(ev)
        return Flow.CONTINUE

    async def teardown(self) -> None:
        await self.service.shutdown()

    @property
    def events(self) -> RoomEvents:
        """Room events for extensions: ``ctx.on_teardown(muc.events.add(PRE_JOIN, handler))``."""
        return self.service.events

    def get_room(self, jid: JID | str) -> Room | None:
        return self.service.get_room(jid)

    @property
    def directory(self) -> RoomDirectory:
        """The typed view of rooms for extensions (:mod:`.directory`): membership, the speech
        gate, posting as the room into its history."""
        return MucRoomDirectory(self)

    def add_logger(self, is_logged: Callable[[Room], bool]) -> Callable[[], None]:
        """Declare that ``is_logged(room)`` rooms are logged: joining occupants get status 170
        (XEP-0045 §7.2.12) and a configuration change that turns logging on or off tells the
        occupants with 170 / 171 (§10.2.1). Returns the undo, for ``ctx.on_teardown``."""
        self.service.loggers.append(is_logged)
        return lambda: self.service.loggers.remove(is_logged)

    def rooms(self) -> list[Room]:
        return list(self.service.rooms.values())

    def _in_rooms(self, full: JID) -> bool:
        svc = self.service
        return full in svc.joined or (svc.cluster is not None and svc.cluster.joined_elsewhere(full))

    async def _session_closed(self, ev: SessionEvent) -> Flow:
        if ev.session.jid is not None and self._in_rooms(ev.session.jid):
            await self.service.session_gone(ev.session.jid)
        return Flow.CONTINUE

    async def _presence_broadcast(self, r: Routed) -> Flow:
        # RFC 6121 §4.6: a client going offline leaves every room it had joined.
        if r.stanza.get("type") == "unavailable" and self._in_rooms(r.from_jid):
            await self.service.session_gone(r.from_jid)
        return Flow.CONTINUE


__all__: list[Any] = ["Muc", "MucOptions", "MucService", "Role", "Affiliation"]
