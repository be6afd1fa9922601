"""Rooms across cluster nodes (docs/cluster.md §5): one owner node per room, by lease.

Made by ``Muc.join_cluster`` when ``cluster.redis_url`` is set; without it none of this exists
and the service keeps every room in its own memory as on one node.

- A stanza for a room (``MucService.receive``) is handled where the room's lease is held. On
  another node it is forwarded to the owner through the bus (one ``XADD`` into the owner's
  stream, ``ClusterPort.forward``). A room nobody owns is acquired by its preferred node
  (rendezvous hashing over the live nodes; the node where the stanza arrived forwards it there),
  which claims the room's fencing token in the database and loads the persistent room (config,
  subject, affiliations, MUC/Sub subscribers). A temporary room that empties gives its lease back.
- The owner writes the room with the lease's token (``Room.fence``, ``repository.FencedOut``),
  renews the lease every heartbeat (``Leases.renew``) and drops the room at once when a renewal
  fails, telling the occupants it can reach to join again.
- Each node remembers which of its own sessions joined a room owned elsewhere (and the owner
  node), so that a closing session leaves those rooms, and the owner remembers the node of each
  occupant it got through the bus, so that a dead node's occupants leave its rooms.
- Node loss: every survivor sends its own sessions in the dead node's rooms an unavailable
  presence (status 332, "join again"); the next stanza for such a room finds no lease, a survivor
  acquires and loads it, and a self-ping (XEP-0410) from an occupant that has not rejoined is
  answered ``not-acceptable`` by the new owner (it is not an occupant there). A temporary room
  dies with its node.
- Graceful stop (``leave``): the owner stores each persistent room, tells every occupant to
  join again, and releases the lease: the next stanza finds the room unowned.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lxml import etree

from ...cluster.gates import Gates
from ...core.hooks import Flow, NodeEvent, Routed
from ...errors import Condition, StanzaError
from ...jid import JID
from ...xml import ns
from . import const as C
from . import events as E
from .repository import FencedOut

if TYPE_CHECKING:
    from .room import Room
    from .service import MucService

log = logging.getLogger(__name__)

TAG = "muc"  # the bus envelopes for a room's owner
KIND = "room"  # the leases
MAX_HOPS = 3
MAX_CACHED = 100_000  # rooms whose owner this node remembers
_PING = C.q(C.PING, "ping")
REJOIN_TEXT = "the room moved to another cluster node: join it again"
REWRITE_EVERY = 30  # heartbeats between two whole rewrites of this node's P:rooms:<node>


def _unreachable() -> tuple[type[BaseException], ...]:
    from ...cluster.connection import unreachable_errors

    return unreachable_errors()


class RoomCluster:
    def __init__(self, service: "MucService", port: Any) -> None:
        self.service = service
        self.port = port
        self.leases = port.leases
        self.name: str = port.name
        # This node's sessions in rooms owned by another node: real full JID -> room -> nick.
        self.remote_joined: dict[JID, dict[JID, str]] = {}
        self.owner_seen: dict[JID, str] = {}  # room -> the node it was last forwarded to
        # room -> (owner node, until): the lease read less than a heartbeat ago, so that a busy
        # room costs its other nodes one GET per heartbeat rather than one per stanza. A stale
        # entry costs one more hop: the node that no longer owns the room forwards it on.
        self._owners: dict[JID, tuple[str, float]] = {}
        self._clock = asyncio.get_running_loop().time
        # Owner side: the node of each occupant whose stanzas came through the bus.
        self.occupant_node: dict[JID, str] = {}
        self._gates = Gates()  # one look-up (and acquisition, and load) at a time per room
        # A graceful stop began (``leave``): this node acquires nothing any more, and what still
        # reaches it (its stream is read until it stops) is forwarded to a node that stays.
        self.leaving = False
        self._removers = [self.leases.on_lost(KIND, self._lost), port.every_beat(self._sync_listed)]
        # What ``P:rooms:<this node>`` holds (public temporary rooms: only this node's memory
        # knows them); None: to be written whole (at start, after Redis failed, and every
        # REWRITE_EVERY heartbeats: a Redis that restarted empty without a failed command).
        self._listed: dict[str, str] | None = None
        self._beats = 0
        port.serve(TAG, self._from_bus)  # until the node stops: see ``leave``

    # ---------------------------------------------------------------- where a stanza goes

    async def here(self, r: Routed, hops: int) -> bool:
        """True when this node owns the room of ``r.to`` (acquired now if nobody did): handle it
        here. False: forwarded to the owner, or answered with an error."""
        svc = self.service
        room_jid = r.to.bare  # type: ignore[union-attr]
        if room_jid in svc.rooms and self.leases.token(KIND, str(room_jid)) is not None:
            return True
        if self.leaving:
            await self._pass_on(r, hops, room_jid)
            return False
        cached = self._owners.get(room_jid)
        if cached is not None and hops == 0:
            if cached[1] > self._clock() and self.port.is_live(cached[0]):
                await self._forward(cached[0], r, hops)
                return False
            del self._owners[room_jid]
        # One look-up (and acquisition, and load) at a time per room on this node: two stanzas
        # arriving together must not load the room twice.
        async with self._gates.hold(room_jid):
            return await self._locate(r, hops, room_jid)

    async def _locate(self, r: Routed, hops: int, room_jid: JID) -> bool:
        svc = self.service
        name = str(room_jid)
        if room_jid in svc.rooms and self.leases.token(KIND, name) is not None:
            return True
        try:
            lease = await self.leases.owner(KIND, name)
            if lease is not None and lease.node != self.name:
                await self._drop_stale(room_jid)
                if await self.port.alive(lease.node):
                    if len(self._owners) >= MAX_CACHED:
                        self._owners.clear()
                    self._owners[room_jid] = (lease.node, self._clock() + self.port.heartbeat)
                    await self._forward(lease.node, r, hops)
                    return False
                if not await self.leases.break_dead(KIND, name, lease):
                    await self._owner_gone(r)
                    return False
                log.info("room %s: its owner node %s is down, taking the room over", name, lease.node)
                lease = None
            if lease is None:
                if hops == 0:
                    preferred = self.port.preferred(name)
                    # Only to a node that is there now: a node that just left (or died) is still
                    # among the peers until the next heartbeat, and its bus is read by nobody.
                    if preferred != self.name and await self.port.present(preferred):
                        await self._forward(preferred, r, hops)
                        return False
                lease = await self.leases.acquire(KIND, name, await svc.repo.fence_of(name))
                if lease is None or lease.node != self.name:  # another node was quicker
                    if lease is not None:
                        await self._forward(lease.node, r, hops)
                    else:
                        await self._refuse(r, "the room is changing nodes: try again")
                    return False
            elif self.leases.token(KIND, name) is None and not await self.leases.adopt(KIND, name, lease):
                await self._refuse(r, "the room is changing nodes: try again")
                return False
            return await self._load(room_jid, lease.token, r)
        except _unreachable() as exc:
            if room_jid in svc.rooms:
                return True  # cut off from Redis: serve what we hold until the lease runs out
            log.warning("room %s: the cluster cannot be reached (%s)", name, exc or type(exc).__name__)
            await self._refuse(r, "the room cannot be reached now")
            return False
        except Exception:  # the database failed while claiming or loading the room
            log.exception("room %s could not be located or loaded", name)
            if room_jid not in svc.rooms:
                await self.leases.release(KIND, name)
            await self.service._bounce(r, StanzaError(Condition.INTERNAL_SERVER_ERROR, "the room could not be loaded"))
            return False

    async def _load(self, room_jid: JID, token: int, r: Routed) -> bool:
        svc = self.service
        name = str(room_jid)
        room = svc.rooms.get(room_jid)
        if room is not None and room.fence == token:
            return True
        if not await svc.repo.claim(name, token):
            await self.leases.release(KIND, name)
            await self._refuse(r, "the room is changing nodes: try again")
            return False
        if room is not None:  # in memory already (a temporary room, or one held since start)
            room.fence = token
            return True
        stored = await svc.repo.load_room(name)
        if stored is not None:
            from .room import Room

            room = Room.from_stored(svc, stored)
            room.config.persistent = True
            room.fence = token
            svc.rooms[room_jid] = room
            if svc.events.has(E.ROOM_LOADED):
                await svc.events.run(E.ROOM_LOADED, E.RoomLoaded(room))
            log.info("room %s now lives on node %s (token %d, %d messages of history)", name, self.name, token, len(room.history))
        return True

    def token(self, room_jid: JID) -> int:
        return self.leases.token(KIND, str(room_jid)) or 0

    async def _forward(self, node: str, r: Routed, hops: int) -> None:
        room_jid = r.to.bare  # type: ignore[union-attr]
        if hops >= MAX_HOPS:  # the owner changed under the stanza again and again: give up
            await self._refuse(r, "the room is changing nodes: try again")
            return
        self.owner_seen[room_jid] = node
        if r.origin is not None and r.kind == "presence" and r.to.resource is not None:  # type: ignore[union-attr]
            typ = r.stanza.get("type")
            if typ is None:
                self.remote_joined.setdefault(r.from_jid, {})[room_jid] = r.to.resource  # type: ignore[union-attr]
            elif typ == "unavailable":
                self._unjoin(r.from_jid, room_jid)

        async def not_taken(r: Routed) -> None:
            await self._not_taken(r, hops)

        self.port.forward(node, TAG, r, hops, not_taken)

    def _unjoin(self, full: JID, room_jid: JID) -> None:
        rooms = self.remote_joined.get(full)
        if rooms is not None:
            rooms.pop(room_jid, None)
            if not rooms:
                del self.remote_joined[full]

    async def _not_taken(self, r: Routed, hops: int) -> None:
        """The owner (or preferred) node the stanza was forwarded to is no longer registered (it
        left or died after this node's last look: ``ClusterPort.forward`` appends only to a
        registered node's stream) or Redis failed: forget what this node believed and locate the
        room again (one more hop, so this ends), rather than lose the stanza."""
        room_jid = r.to.bare  # type: ignore[union-attr]
        self._owners.pop(room_jid, None)
        log.info("room %s: the node a stanza was for is no longer registered (or Redis failed): locating the room again", room_jid)
        hops += 1
        if self.leaving or hops >= MAX_HOPS:
            await self._refuse(r, "the room's node cannot be reached now")
            return
        await self.service.receive(r, hops=hops)

    async def _pass_on(self, r: Routed, hops: int, room_jid: JID) -> None:
        """This node is leaving: the stanza goes to the room's owner if another node holds it,
        else to the preferred node among those still registered, which acquires the room."""
        name = str(room_jid)
        try:
            lease = await self.leases.owner(KIND, name)
            if lease is not None and lease.node != self.name and await self.port.present(lease.node):
                await self._forward(lease.node, r, hops)
                return
            others = [n for n in self.port.live_nodes() if n != self.name and await self.port.present(n)]
        except _unreachable():
            others = []
        if others:
            from ...cluster.leases import rendezvous

            await self._forward(rendezvous(others, name), r, hops)
        else:
            await self._refuse(r, "the room's node is shutting down: try again")

    async def _refuse(self, r: Routed, text: str) -> None:
        await self.service._bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, text))

    async def _owner_gone(self, r: Routed) -> None:
        """The lease names a node that is down and has not expired yet: a self-ping learns the
        occupant is out (XEP-0410 ``not-acceptable``), anything else is refused for now."""
        payload = r.stanza[0] if r.kind == "iq" and len(r.stanza) else None
        if payload is not None and payload.tag == _PING and r.to.resource is not None:  # type: ignore[union-attr]
            await self.service._bounce(r, StanzaError(Condition.NOT_ACCEPTABLE, REJOIN_TEXT))
            return
        await self._refuse(r, "the room's node went down: try again in a few seconds")

    async def _from_bus(self, r: Routed, hops: int, origin: str) -> None:
        """A stanza another node forwarded to this node as the room's (preferred) owner."""
        svc = self.service
        if origin and origin != self.name and r.from_jid.resource is not None:
            self.occupant_node[r.from_jid] = origin
        await svc.receive(r, hops=hops)
        if r.from_jid not in svc.joined:
            self.occupant_node.pop(r.from_jid, None)

    # ---------------------------------------------------------------- the service's lists

    def _listable(self) -> dict[str, str]:
        return {room.jid_s: room.config.name or (room.jid.local or "") for room in self.service.rooms.values()
                if not room.config.persistent and room.config.public and not room.locked}

    async def _sync_listed(self) -> None:
        """After every heartbeat: this node's public temporary rooms into ``P:rooms:<node>``
        (only what changed), so that the other nodes' service lists name them. Persistent rooms
        are listed from the database."""
        if self.leaving:
            return
        self._beats += 1
        if self._beats % REWRITE_EVERY == 0:
            self._listed = None
        now = self._listable()
        before = self._listed
        key = self.port.keys.listed(self.name)
        try:
            async with self.port.redis.pipeline(transaction=True) as pipe:
                if before is None:
                    pipe.delete(key)  # what an earlier life of this node left
                    gone, changed = [], now
                else:
                    gone = [j for j in before if j not in now]
                    changed = {j: n for j, n in now.items() if before.get(j) != n}
                if not gone and not changed and before is not None:
                    return
                if gone:
                    pipe.hdel(key, *gone)
                if changed:
                    pipe.hset(key, mapping=changed)
                await pipe.execute()
        except _unreachable():
            self._listed = None
            return
        self._listed = now

    async def listed_elsewhere(self) -> dict[str, str]:
        """The public temporary rooms the other live nodes hold (room JID -> name), as their
        last heartbeat wrote them; {} when Redis does not answer."""
        peers = [n for n in self.port.live_nodes() if n != self.name]
        if not peers:
            return {}
        try:
            async with self.port.redis.pipeline(transaction=False) as pipe:
                for node in peers:
                    pipe.hgetall(self.port.keys.listed(node))
                found = await pipe.execute()
        except _unreachable():
            return {}
        out: dict[str, str] = {}
        for rooms in found:
            out.update(rooms)
        return out

    # ---------------------------------------------------------------- ownership ends

    async def released(self, room_jid: JID) -> None:
        """The room is gone from this node (a temporary room emptied, a room destroyed)."""
        if self.service.rooms.get(room_jid) is None:
            await self.leases.release(KIND, str(room_jid))

    async def _drop_stale(self, room_jid: JID) -> None:
        room = self.service.rooms.pop(room_jid, None)
        if room is not None:
            log.warning("room %s is owned by another node now: dropped here", room_jid)
            self.leases.forget(KIND, str(room_jid))
            await self._tell_rejoin(room)

    async def fenced_out(self, room_jid: JID, exc: FencedOut) -> None:
        log.warning("room %s: %s; another node owns it, dropped here", room_jid, exc)
        self.leases.forget(KIND, str(room_jid))
        room = self.service.rooms.pop(room_jid, None)
        if room is not None:
            await self._tell_rejoin(room)

    async def _lost(self, name: str, token: int) -> None:
        room = self.service.rooms.get(JID.parse(name))
        if room is None or room.fence != token:
            return
        del self.service.rooms[room.jid]
        await self._tell_rejoin(room)

    async def _tell_rejoin(self, room: "Room") -> None:
        """Every occupant: an unavailable presence with status 332 and a text saying to join again."""
        svc = self.service
        for occ in room.occupant_list():
            fulls = list(occ.sessions)
            for full in fulls:
                svc.unindex(full, room)
            await svc.fanout(rejoin_presence(room.jid_s, occ.nick, room.affiliation(occ.bare).value), fulls, "presence")

    async def leave(self) -> None:
        """Graceful stop: store each room, tell its occupants, release its lease. The node's
        stream is still read until it stops, and stanzas for rooms forwarded here meanwhile are
        passed on to a node that stays (``leaving``): the bus handler stays registered, since a
        stanza that found no handler would be dropped."""
        svc = self.service
        self.leaving = True
        for room in list(svc.rooms.values()):
            try:
                if room.config.persistent:
                    await svc.repo.save_room(room.stored())
            except FencedOut as exc:
                log.warning("room %s was not stored: %s", room.jid, exc)
            except Exception:
                log.exception("storing room %s before leaving the cluster failed", room.jid)
            try:
                await self._tell_rejoin(room)
            except Exception:
                log.exception("telling the occupants of room %s failed", room.jid)
            del svc.rooms[room.jid]
            await self.leases.release(KIND, room.jid_s)
        for remove in self._removers:
            remove()
        try:
            await self.port.redis.delete(self.port.keys.listed(self.name))
        except _unreachable():
            pass  # its entry is gone, so nobody reads it

    # ---------------------------------------------------------------- sessions and nodes

    def joined_elsewhere(self, full: JID) -> bool:
        return full in self.remote_joined

    async def session_gone(self, full: JID) -> None:
        """A session of this node closed: it leaves the rooms other nodes own."""
        for room_jid, nick in list(self.remote_joined.pop(full, {}).items()):
            p = etree.Element(ns.PRESENCE, {"type": "unavailable", "from": str(full), "to": f"{room_jid}/{nick}"}, nsmap={None: ns.CLIENT})
            await self.service.receive(Routed(p, "presence", full, JID.parse(f"{room_jid}/{nick}"), None))

    async def node_down(self, ev: NodeEvent) -> Flow:
        svc = self.service
        # Owner side: the dead node's occupants leave this node's rooms.
        for full, node in list(self.occupant_node.items()):
            if node == ev.node:
                del self.occupant_node[full]
                if full in svc.joined:
                    await svc.session_gone(full)
        # Occupant side: this node's sessions in the dead node's rooms must join again (a node
        # that left gracefully told them itself).
        for full, rooms in list(self.remote_joined.items()):
            for room_jid, nick in list(rooms.items()):
                if self.owner_seen.get(room_jid) != ev.node:
                    continue
                self._unjoin(full, room_jid)
                if ev.graceful:
                    continue
                p = rejoin_presence(str(room_jid), nick, None)
                p.set("to", str(full))
                await svc.ctx.router.deliver_to(full, p, "presence")
        for room_jid, node in list(self.owner_seen.items()):
            if node == ev.node:
                del self.owner_seen[room_jid]
        for room_jid, (node, _) in list(self._owners.items()):
            if node == ev.node:
                del self._owners[room_jid]
        try:  # its temporary rooms died with it (a node reads only live nodes' lists anyway)
            await self.port.redis.delete(self.port.keys.listed(ev.node))
        except _unreachable():
            pass
        return Flow.CONTINUE


def rejoin_presence(room: str, nick: str, affiliation: str | None) -> etree._Element:
    p = etree.Element(ns.PRESENCE, {"from": f"{room}/{nick}", "type": "unavailable"}, nsmap={None: ns.CLIENT})
    x = etree.SubElement(p, C.X_USER, nsmap={None: C.MUC_USER})
    item = etree.SubElement(x, C.q(C.MUC_USER, "item"), {"role": "none"})
    if affiliation is not None:
        item.set("affiliation", affiliation)
    etree.SubElement(x, C.q(C.MUC_USER, "status"), {"code": C.S_SHUTDOWN})
    status = etree.SubElement(p, C.q(ns.CLIENT, "status"))
    status.text = REJOIN_TEXT
    return p


__all__ = ["RoomCluster", "rejoin_presence"]
