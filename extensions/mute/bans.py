"""Timed bans (docs/mute.md §3.6): an XEP-0045 ban (affiliation ``outcast``) that ends by itself.

A ban gets its duration from ``<ban xmlns='urn:xmppd:mute:0' seconds='…'/>`` inside the admin
request's ``<item affiliation='outcast'/>`` (or from the ``#ban`` ad-hoc command). The end time
is stored (``mute_bans``); the outcast affiliation itself stays MUC's (stored with a persistent
room). At the end the room's owner node — the node that holds the room in memory, one at a time
in a cluster (docs/cluster.md §5) — removes the affiliation, through the room, so the room's own
write is fenced and the user may join again.

Every node keeps every timed ban in memory (for the ban list and the timer) and hears of the
others' changes through the invalidation ``mute-bans``. A due ban of a room this node does not
hold is left for the node that holds it; a node that loads a room (``ROOM_LOADED``: it acquired
the lease) reads the room's bans and lifts the due ones at once, and a restarted node arms its
timer from storage, so an expiry missed while no node held the room, or while the server was
down, is caught up.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from xmppd.core.hooks import Flow
from xmppd.errors import Condition, StanzaError
from xmppd.features.muc import events as E
from xmppd.features.muc.affiliations import Affiliation, check_affiliation_change
from xmppd.features.muc.view import RoomView
from xmppd.jid import JID

from . import protocol as P
from .deadlines import Deadlines
from .protocol import q
from .repository import Ban

if TYPE_CHECKING:
    from .service import MuteService

log = logging.getLogger(__name__)


class TimedBans:
    """The timed bans of every room: memory, storage, the expiry timer and MUC's events."""

    def __init__(self, feature: "MuteService") -> None:
        self.f = feature
        self.bans: dict[tuple[str, str], Ban] = {}  # (room, bare JID) -> ban
        self._ends = Deadlines(feature.ctx.clock, feature.options.timer_tick, self._expire, "ban")

    async def start(self) -> None:
        f = self.f
        for b in await f.repo.bans():
            self._remember(b)
        self._inval = f.ctx.invalidation("mute-bans", self._invalidated, self._reload)
        ev = f.muc.events
        for h, fn in ((E.AFFILIATION_CHANGE_REQUEST, self._change_request), (E.AFFILIATION_CHANGED, self._changed),
                      (E.AFFILIATION_LIST_ITEM, self._list_item), (E.ROOM_LOADED, self._room_loaded),
                      (E.ROOM_DESTROYED, self._room_destroyed)):
            f.ctx.on_teardown(ev.add(h, fn, priority=100))  # type: ignore[arg-type]
        f.ctx.spawn(self._ends.run(), name="mute-ban-expiry")

    # ------------------------------------------------------------------ state

    def _remember(self, b: Ban) -> None:
        self.bans[(b.room, b.jid)] = b
        self._ends.add(b.room, b.jid, b.until)

    async def _invalidated(self, key: str) -> None:
        room, _, jid = key.partition("\n")
        for k in [k for k in self.bans if k[0] == room and (not jid or k[1] == jid)]:
            del self.bans[k]
        for b in await self.f.repo.bans(room):
            if not jid or b.jid == jid:
                self._remember(b)

    async def _reload(self) -> None:
        self.bans = {}
        self._ends.clear()
        for b in await self.f.repo.bans():
            self._remember(b)

    def of(self, room: str, bare: JID | str) -> Ban | None:
        return self.bans.get((room, str(bare)))

    async def put(self, room: RoomView, target: JID, seconds: int, actor: JID, reason: str | None) -> Ban:
        now = self.f.now()
        until = datetime.fromtimestamp(math.ceil(self.f.ctx.clock.now() + seconds), UTC)
        b = Ban(room.jid_s, str(target.bare), until, reason or None, str(actor.bare), now)
        await self.f.repo.put_ban(b)
        self._remember(b)
        self._inval.publish(f"{b.room}\n{b.jid}")
        return b

    async def drop(self, room_s: str, jid_s: str) -> None:
        """The ban no longer ends by itself (lifted, changed, made permanent)."""
        if self.bans.pop((room_s, jid_s), None) is not None:
            await self.f.repo.remove_ban(room_s, jid_s)
            self._inval.publish(f"{room_s}\n{jid_s}")

    # ------------------------------------------------------------------ the two doors

    def seconds(self, raw: str | None) -> int:
        """A ban's duration: 1 to ``[mute] max_ban_seconds``."""
        high = self.f.options.max_ban_seconds
        if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
            raise StanzaError(Condition.BAD_REQUEST, f"a ban's 'seconds' is a positive whole number, not {raw!r}")
        if int(raw) > high:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"a timed ban lasts at most {high} seconds")
        return int(raw)

    async def _change_request(self, ev: E.AffiliationChangeRequest) -> Flow:
        """An admin request carrying ``<ban seconds/>``: only on an outcast item, seconds checked
        before anything of the request is applied."""
        el = ev.item.find(q("ban"))
        if el is not None:
            if ev.new is not Affiliation.OUTCAST:
                raise StanzaError(Condition.BAD_REQUEST, "a ban's duration goes with affiliation='outcast'")
            self.seconds(el.get("seconds"))
        return Flow.CONTINUE

    async def _changed(self, ev: E.AffiliationChanged) -> Flow:
        room, bare = ev.room, ev.jid.bare
        if ev.new is not Affiliation.OUTCAST:
            await self.drop(room.jid_s, str(bare))
        elif ev.item is not None:  # an admin request: with <ban/> timed, without permanent
            el = ev.item.find(q("ban"))
            if el is None:
                await self.drop(room.jid_s, str(bare))
            else:
                await self.put(room, bare, self.seconds(el.get("seconds")), ev.actor or JID(None, self.f.ctx.domain),
                               ev.reason)
        return Flow.CONTINUE

    async def ban(self, room: RoomView, actor: JID, target: JID, seconds: int | None, reason: str | None) -> Ban | None:
        """The ``#ban`` command: XEP-0045's rules (§9.1: owners and admins; an admin bans no
        admin or owner; the room keeps an owner), then the ban, timed when ``seconds``."""
        f = self.f
        actor_aff = Affiliation.OWNER if f.acts_as_admin(actor) else room.affiliation(actor.bare)
        if actor_aff.rank < Affiliation.ADMIN.rank:
            raise StanzaError(Condition.FORBIDDEN, "only owners and admins may ban")
        target = target.bare
        if target == actor.bare:
            raise StanzaError(Condition.NOT_ALLOWED, "you can't ban yourself")
        check_affiliation_change(actor_aff, room.affiliation(target), Affiliation.OUTCAST)
        owners = [j for j, a in room.affiliations.items() if a.affiliation == Affiliation.OWNER.value]
        if owners == [target]:
            raise StanzaError(Condition.CONFLICT, "a room keeps at least one owner")
        if seconds is not None:
            seconds = self.seconds(str(seconds))
        await room.set_affiliation(target, Affiliation.OUTCAST, actor=actor.bare, reason=reason or None)
        if seconds is None:
            await self.drop(room.jid_s, str(target))
            return None
        return await self.put(room, target, seconds, actor, reason)

    # ------------------------------------------------------------------ what the room shows

    async def _list_item(self, ev: E.AffiliationListItem) -> Flow:
        b = self.of(ev.room.jid_s, ev.jid)
        if ev.affiliation is Affiliation.OUTCAST and b is not None:
            ev.element.append(P.ban_element(b, self.f.now()))
        return Flow.CONTINUE

    # ------------------------------------------------------------------ expiry

    async def _expire(self, room_s: str, jid_s: str, until: datetime) -> None:
        b = self.bans.get((room_s, jid_s))
        if b is None or b.until != until:
            return  # lifted or renewed since the timer was armed
        room = self.f.muc.get_room(room_s)
        if room is None:
            return  # another node holds the room: its owner lifts the ban (or the next one that loads it)
        bare = JID.parse(jid_s)
        if room.affiliation(bare) is Affiliation.OUTCAST:
            await room.set_affiliation(bare, Affiliation.NONE, reason="the ban ended")  # -> _changed drops the ban
        else:
            await self.drop(room_s, jid_s)

    async def _room_loaded(self, ev: E.RoomLoaded) -> Flow:
        """This node now holds the room (it acquired the lease): its bans, read again, and the
        due ones lifted by the timer at once."""
        for b in await self.f.repo.bans(ev.room.jid_s):
            self._remember(b)
        return Flow.CONTINUE

    async def _room_destroyed(self, ev: E.RoomDestroyed) -> Flow:
        room_s = ev.room.jid_s
        for key in [k for k in self.bans if k[0] == room_s]:
            del self.bans[key]
            await self.f.repo.remove_ban(*key)
        self._inval.publish(f"{room_s}\n")
        return Flow.CONTINUE
