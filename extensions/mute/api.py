"""REST API: room mutes, mute-all and platform mutes (docs/mute.md), registered by the feature.

The API acts as the server itself (its domain JID), which the mute feature treats with a
server admin's authority (``Mute.acts_as_admin``): the same ``mute_member``, ``set_mute_all``
and ``platform_mute`` the iq protocol and the ad-hoc commands call, with their rules (the
longest mute, open-ended mutes, admins never platform-muted), notices, role changes and audit.
``{room}`` is the room's name on the MUC service, as in ``/rooms``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xmppd.api.framework import (
    JID_SCHEMA,
    ApiRequest,
    Operation,
    bad_request,
    from_stanza_error,
    not_found,
    obj,
    xml_text,
)
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError
from xmppd.timestamps import optional

from .repository import PLATFORM, AuditEntry, Mute

if TYPE_CHECKING:
    from .service import MuteService

ROOM_NAME = {"type": "string", "minLength": 1, "maxLength": 1023, "pattern": "^[^@/\\s\"&'<>:]+$"}
MUTE = obj(
    {
        "room": {"type": "string"}, "jid": {"type": "string"}, "until": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]}, "actor": {"type": "string"}, "created_at": {"type": "string"},
    },
    ["room", "jid", "until", "reason", "actor", "created_at"],
)



def mute_json(m: Mute) -> dict[str, Any]:
    return {"room": m.room, "jid": m.jid, "until": optional(m.until), "reason": m.reason, "actor": m.actor,
            "created_at": optional(m.created_at)}


def audit_json(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "at": optional(e.at), "actor": e.actor, "action": e.action, "room": e.room, "target": e.target,
            "seconds": e.seconds, "until": optional(e.until), "reason": e.reason}


def operations(f: "MuteService") -> list[Operation]:
    ctx = f.ctx
    server = JID.parse(ctx.domain)
    opts = f.options
    seconds_schema = {"type": "integer", "minimum": 1, "maximum": opts.max_seconds}
    mute_body = obj({"seconds": seconds_schema, "reason": xml_text(1000)})

    def room_of(req: ApiRequest) -> Any:
        try:
            jid = JID.parse(f"{req.params['room']}@{f.muc_domain}")
        except JIDError as exc:
            raise bad_request("invalid_room", f"invalid room name: {exc}") from None
        room = f.muc.get_room(jid)
        if room is None or room.destroyed:
            raise not_found("room_not_found", f"no room {jid}")
        return room

    def target(req: ApiRequest) -> JID:
        try:
            jid = JID.parse(req.params["jid"])
        except JIDError as exc:
            raise bad_request("invalid_jid", f"jid: {exc}") from None
        if jid.local is None or jid.resource is not None:
            raise bad_request("invalid_jid", "jid names an account (user@domain)")
        return jid

    def seconds(req: ApiRequest) -> int | None:
        value = (req.body or {}).get("seconds")
        return f.seconds(str(value) if value is not None else None)

    async def room_mutes(req: ApiRequest) -> Any:
        room = room_of(req)
        state = f.all_muted.get(room.jid_s)
        return {
            "items": [mute_json(m) for m in f.room_mutes(room.jid_s)],
            "all_muted": None if state is None else {"actor": state.actor, "reason": state.reason, "since": optional(state.since)},
        }

    async def mute(req: ApiRequest) -> Any:
        room = room_of(req)
        who = target(req)
        try:
            m = await f.mute_member(room, server, who, seconds(req), (req.body or {}).get("reason"))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return mute_json(m)

    async def unmute(req: ApiRequest) -> Any:
        room = room_of(req)
        try:
            await f.unmute_member(room, server, target(req))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return None

    async def mute_all(req: ApiRequest) -> Any:
        room = room_of(req)
        try:
            state = await f.set_mute_all(room, server, (req.body or {}).get("reason"))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return {"actor": state.actor, "reason": state.reason, "since": optional(state.since)}

    async def unmute_all(req: ApiRequest) -> Any:
        room = room_of(req)
        try:
            await f.lift_mute_all(room, server)
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return None

    async def platform_list(req: ApiRequest) -> Any:
        return {"items": [mute_json(m) for m in f.room_mutes(PLATFORM)]}

    async def platform_mute(req: ApiRequest) -> Any:
        who = target(req)
        if await ctx.accounts.get(who.local or "", ctx.domain) is None and who.domain == ctx.domain:
            raise not_found("user_not_found", f"no account {who}")
        try:
            m = await f.platform_mute(server, who, seconds(req), (req.body or {}).get("reason"))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return mute_json(m)

    async def platform_unmute(req: ApiRequest) -> Any:
        try:
            await f.platform_unmute(server, target(req))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return None

    async def audit(req: ApiRequest) -> Any:
        q = req.query
        room = q.get("room")
        if room == "platform":
            room = PLATFORM
        elif room is not None:
            room = room_of(ApiRequest({"room": room}, {}, None, {}, req.scope, req.caller)).jid_s
        entries = await f.repo.audit(room=room, target=q.get("target"), before=q.get("before"), limit=q["limit"])
        return {"items": [audit_json(e) for e in entries],
                "next_before": entries[-1].id if len(entries) == q["limit"] else None}

    rp = {"room": ROOM_NAME}
    rj = {"room": ROOM_NAME, "jid": JID_SCHEMA}
    ok = obj({"items": {"type": "array", "items": MUTE}}, ["items"])
    all_state = {"type": ["object", "null"]}
    return [
        Operation("GET", "/rooms/{room}/mutes", room_mutes, "A room's active mutes and mute-all", "mutes", "listRoomMutes",
                  response=obj({"items": ok["properties"]["items"], "all_muted": all_state}, ["items", "all_muted"]),
                  params=rp, errors=(404,)),
        Operation("PUT", "/rooms/{room}/mutes/{jid}", mute, "Mute a member of a room", "mutes", "muteRoomMember",
                  body=mute_body, body_required=False, response=MUTE, params=rj, errors=(404, 422),
                  description="Without `seconds` the mute is open-ended when `[mute] allow_open_ended` permits it."),
        Operation("DELETE", "/rooms/{room}/mutes/{jid}", unmute, "Lift a member's mute", "mutes", "unmuteRoomMember",
                  status=204, params=rj, errors=(404, 422)),
        Operation("PUT", "/rooms/{room}/mute-all", mute_all, "Mute everyone but owners and admins", "mutes", "muteAll",
                  body=obj({"reason": xml_text(1000)}), body_required=False,
                  response=obj({"actor": {"type": "string"}, "reason": {"type": ["string", "null"]}, "since": {"type": "string"}},
                               ["actor", "reason", "since"]), params=rp, errors=(404, 422)),
        Operation("DELETE", "/rooms/{room}/mute-all", unmute_all, "Lift mute-all", "mutes", "unmuteAll",
                  status=204, params=rp, errors=(404, 422)),
        Operation("GET", "/mutes/platform", platform_list, "Platform-muted accounts", "mutes", "listPlatformMutes", response=ok),
        Operation("PUT", "/mutes/platform/{jid}", platform_mute, "Mute an account everywhere (rooms and one-to-one)", "mutes",
                  "platformMute", body=mute_body, body_required=False, response=MUTE, params={"jid": JID_SCHEMA},
                  errors=(404, 422)),
        Operation("DELETE", "/mutes/platform/{jid}", platform_unmute, "Lift a platform mute", "mutes", "platformUnmute",
                  status=204, params={"jid": JID_SCHEMA}, errors=(404, 422)),
        Operation("GET", "/mutes/audit", audit, "The mute audit trail, newest first", "mutes", "muteAudit",
                  response=obj({"items": {"type": "array", "items": {"type": "object"}}, "next_before": {"type": ["integer", "null"]}},
                               ["items", "next_before"]),
                  query={"room": ROOM_NAME, "target": JID_SCHEMA, "before": {"type": "integer", "minimum": 1, "maximum": 2**62},
                         "limit": {"type": "integer", "minimum": 1, "maximum": opts.audit_page_max, "default": min(50, opts.audit_page_max)}},
                  errors=(404,),
                  description="`room`: a room's name, or `platform`; keyset pages: pass `next_before` as `before`."),
    ]
