"""urn:xmppd:mute:0 iq requests (docs/mute.md §3, §4): on a room's JID (mute, unmute, mute-all,
slow mode, list, status) and on the server's (platform mute, list, status, appeal, audit). Each
handler reads the request, checks who asks and calls the feature's actions through
``service.MuteService``; the rules themselves live there."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lxml import etree

from xmppd.core.dispatch import IqRequest, Target
from xmppd.errors import Condition, StanzaError
from xmppd.features.muc.view import RoomView
from xmppd.jid import JID
from xmppd.xml.attrs import int_attr, jid_attr
from xmppd.xml.builder import element

from . import policy
from . import protocol as P
from .protocol import NS, q
from .repository import PLATFORM, since_ms

if TYPE_CHECKING:
    from .service import MuteService


class MuteIqs:
    def __init__(self, f: "MuteService") -> None:
        self.f = f

    def register(self) -> None:
        """Through the feature context: undone at teardown."""
        f = self.f
        Handler = Callable[[IqRequest], Awaitable[Any]]
        room_iqs: list[tuple[str, str, Handler]] = [
            ("set", "mute", self.iq_room_mute), ("set", "unmute", self.iq_room_unmute),
            ("set", "mute-all", self.iq_mute_all), ("set", "unmute-all", self.iq_unmute_all),
            ("get", "list", self.iq_room_list), ("get", "status", self.iq_room_status),
            ("set", "slow-mode", self.iq_slow_mode_set), ("get", "slow-mode", self.iq_slow_mode_get)]
        for typ, local, handler in room_iqs:
            f.ctx.add_iq_handler(typ, q(local), handler, target=Target.BARE, domain=f.muc_domain)
        server_iqs: list[tuple[str, str, Handler]] = [
            ("set", "mute", self.iq_platform_mute), ("set", "unmute", self.iq_platform_unmute),
            ("get", "list", self.iq_platform_list), ("get", "status", self.iq_platform_status),
            ("get", "audit", self.iq_audit), ("set", "appeal", self.iq_appeal)]
        for typ, local, handler in server_iqs:
            f.ctx.add_iq_handler(typ, q(local), handler)

    # ------------------------------------------------------------------ rooms

    async def iq_room_mute(self, req: IqRequest) -> etree._Element:
        room = self.f.room_of(req.to)
        members = req.payload.findall(q("member"))
        if members:
            return await self._mute_several(room, req, members)
        target = self.target_of(room, req.payload)
        seconds = self.f.seconds(req.payload.get("seconds"))
        reason = P.reason_of(req.payload)
        m = await self.f.mute_member(room, req.from_jid, target, seconds, reason, P.lang_of(req.stanza, req.payload))
        return P.item(m, self.f.now(), nick=self.nick_in(room, target))

    async def _mute_several(self, room: RoomView, req: IqRequest, members: list[etree._Element]) -> etree._Element:
        """Several members in one request (§3.1): every one is checked before any is muted, so a
        refusal mutes nobody; the answer lists the mutes."""
        if req.payload.get("jid") or req.payload.get("nick"):
            raise StanzaError(Condition.BAD_REQUEST, "name the members with <member/> children or the one member with 'jid' or 'nick', not both")
        if len(members) > self.f.options.max_batch:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"at most {self.f.options.max_batch} members in one request")
        targets = policy.batch_targets([self.target_of(room, m) for m in members], self.f.options.max_batch)
        for target in targets:
            self.f.check_can_mute(room, req.from_jid, target)
        seconds = self.f.seconds(req.payload.get("seconds"))
        reason = P.reason_of(req.payload)
        lang = P.lang_of(req.stanza, req.payload)
        out = element(q("list"), default_ns=NS)
        for target in targets:
            m = await self.f.mute_member(room, req.from_jid, target, seconds, reason, lang)
            out.append(P.item(m, self.f.now(), nick=self.nick_in(room, target)))
        return out

    async def iq_slow_mode_set(self, req: IqRequest) -> None:
        room = self.f.room_of(req.to)
        seconds = int_attr(req.payload, "seconds", required=True, high=self.f.options.max_slow_seconds)
        await self.f.set_slow_mode(room, req.from_jid, seconds)

    async def iq_slow_mode_get(self, req: IqRequest) -> etree._Element:
        room = self.f.room_of(req.to)
        interval = policy.slow_interval(room.config.extra, self.f.options.max_slow_seconds)
        out = element(q("slow-mode"), {"seconds": str(interval)}, default_ns=NS)
        occ = room.occupants.of_jid(req.from_jid)
        if interval and not self.f.privileged(room, req.from_jid.bare, occ.role if occ is not None else None):
            wait = policy.slow_wait((await self.f.rooms.said_in(room.jid_s)).get(req.from_jid.bare), self.f.ctx.clock.now(), interval)
            out.set("wait", str(wait))
        return out

    async def iq_room_unmute(self, req: IqRequest) -> None:
        room = self.f.room_of(req.to)
        await self.f.unmute_member(room, req.from_jid, self.target_of(room, req.payload), P.lang_of(req.stanza, req.payload))

    async def iq_mute_all(self, req: IqRequest) -> None:
        room = self.f.room_of(req.to)
        reason = P.reason_of(req.payload)
        await self.f.set_mute_all(room, req.from_jid, reason, P.lang_of(req.stanza, req.payload))

    async def iq_unmute_all(self, req: IqRequest) -> None:
        room = self.f.room_of(req.to)
        await self.f.lift_mute_all(room, req.from_jid, P.lang_of(req.stanza, req.payload))

    async def iq_room_list(self, req: IqRequest) -> etree._Element:
        room = self.f.room_of(req.to)
        if not self.f.is_moderator(room, req.from_jid):
            raise StanzaError(Condition.FORBIDDEN, "only moderators may list the muted members")
        out = element(q("list"), default_ns=NS)
        state = self.f.all_muted.get(room.jid_s)
        if state is not None:
            out.append(P.all_element(state))
        now = self.f.now()
        for m in self.f.room_mutes(room.jid_s):
            out.append(P.item(m, now, nick=self.nick_in(room, JID.parse(m.jid))))
        return out

    def nick_in(self, room: RoomView, bare: JID) -> str | None:
        occ = room.occupants.of_bare(bare)
        return occ.nick if occ is not None else None

    async def iq_room_status(self, req: IqRequest) -> etree._Element:
        room = self.f.room_of(req.to)
        who = req.from_jid.bare
        if req.payload.get("jid") or req.payload.get("nick"):
            other = self.target_of(room, req.payload)
            if other != who and not self.f.is_moderator(room, req.from_jid):
                raise StanzaError(Condition.FORBIDDEN, "only moderators may ask about somebody else")
            who = other
        occ = room.occupants.of_bare(who)
        state = self.f.all_muted.get(room.jid_s)
        if state is not None and self.f.exempt_from_all(room, who, occ.role if occ is not None else None):
            state = None
        return P.status(muted=self.f.active(room.jid_s, who), all_muted=state, platform=self.f.active(PLATFORM, who),
                        now=self.f.now())

    # ------------------------------------------------------------------ the server

    async def iq_platform_mute(self, req: IqRequest) -> etree._Element:
        self.f.check_server_admin(req.from_jid)
        target = jid_attr(req.payload, "jid", required=True, account=True)
        seconds = self.f.seconds(req.payload.get("seconds"))
        reason = P.reason_of(req.payload)
        m = await self.f.platform_mute(req.from_jid, target, seconds, reason)  # type: ignore[arg-type]
        return P.item(m, self.f.now())

    async def iq_platform_unmute(self, req: IqRequest) -> None:
        self.f.check_server_admin(req.from_jid)
        await self.f.platform_unmute(req.from_jid, jid_attr(req.payload, "jid", required=True, account=True))

    async def iq_platform_list(self, req: IqRequest) -> etree._Element:
        self.f.check_server_admin(req.from_jid)
        out = element(q("list"), default_ns=NS)
        now = self.f.now()
        for m in self.f.room_mutes(PLATFORM):
            out.append(P.item(m, now))
        return out

    async def iq_platform_status(self, req: IqRequest) -> etree._Element:
        who = req.from_jid.bare
        other = jid_attr(req.payload, "jid", account=True)
        if other is not None and other != who:
            self.f.check_server_admin(req.from_jid)
            who = other
        return P.status(muted=None, all_muted=None, platform=self.f.active(PLATFORM, who), now=self.f.now())

    async def iq_appeal(self, req: IqRequest) -> etree._Element:
        """A platform-muted account appeals (docs/mute.md §4.1): a customer-service ticket in
        ``[mute] appeal_queue`` that the queue's agents read; one appeal per mute."""
        who = req.from_jid.bare
        m = self.f.active(PLATFORM, who)
        if m is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "your account is not muted on this server")
        if self.f.desk is None or not self.f.options.appeal_queue:
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, "this server takes no appeals")
        text = P.reason_of(req.payload)
        if not text:
            raise StanzaError(Condition.BAD_REQUEST, "say why in <reason/>")
        key = since_ms(m.created_at)  # one appeal per mute, kept in storage: every node, every restart
        if not await self.f.repo.add_appeal(str(who), key, self.f.now()):
            raise StanzaError(Condition.CONFLICT, "you have already appealed this mute")
        body = P.appeal_body(m, text)
        try:
            ticket = await self.f.desk.open_ticket(self.f.options.appeal_queue, who, body)
        except KeyError:
            await self.f.repo.set_appeal_ticket(str(who), key, None)
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "the appeal desk is not open") from None
        await self.f.repo.set_appeal_ticket(str(who), key, ticket)
        return element(q("appeal"), {"ticket": str(ticket)}, default_ns=NS)

    async def iq_audit(self, req: IqRequest) -> etree._Element:
        self.f.check_server_admin(req.from_jid)
        p = req.payload
        limit = int_attr(p, "max", min(50, self.f.options.audit_page_max), low=1, high=self.f.options.audit_page_max)
        before = int_attr(p, "before", high=2**62)
        room = p.get("room")
        if p.get("scope") == "platform":
            room = PLATFORM
        target = jid_attr(p, "jid", account=True)
        entries = await self.f.repo.audit(room=room, target=str(target) if target else None,
                                        before=before, limit=limit + 1)
        out = element(q("audit"), default_ns=NS)
        for e in entries[:limit]:
            out.append(P.audit_entry(e))
        if len(entries) > limit:
            out.set("more", "true")
        return out

    def target_of(self, room: RoomView, payload: etree._Element) -> JID:
        jid_s, nick = payload.get("jid"), payload.get("nick")
        if bool(jid_s) == bool(nick):
            raise StanzaError(Condition.BAD_REQUEST, "name the member with 'jid' or 'nick' (one of them)")
        if nick:
            occ = room.occupants.get(nick)
            if occ is None:
                raise StanzaError(Condition.ITEM_NOT_FOUND, f"no occupant with the nick {nick!r}")
            return occ.bare
        return jid_attr(payload, "jid", required=True, account=True)


__all__ = ["MuteIqs"]
