"""REST API: multi-user chat rooms (``/rooms``), through the MUC feature's own room methods.

Registered by the MUC feature (``Muc.setup``). ``{room}`` is the room's name on the MUC
service (``team`` for ``team@conference.example.com``). Creating applies the rules of a room
made by presence (``[muc]`` creation rules and rooms per owner) and configures the room at once
(so it is unlocked; persistent unless ``config.persistent`` is false, since a temporary room
nobody has joined would vanish at once); configuration changes run ``Room.reconfigure`` (occupants told, members-
only enforced, storage kept); affiliation changes keep at least one owner and take effect on
occupants at once; destroying tells every occupant (XEP-0045 §10.9); a message from the room
itself is a server notice, one from a user is routed from their session as if they had typed it
(the room's speech gate: moderation, mute).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..errors import StanzaError
from ..jid import JID, JIDError
from ..xml import ns
from ..xml.builder import stanza, sub
from .framework import (
    JID_SCHEMA,
    ApiError,
    ApiRequest,
    Operation,
    bad_request,
    conflict,
    from_stanza_error,
    local_account,
    not_found,
    obj,
    page_query,
    page_schema,
    paged,
    xml_text,
)

if TYPE_CHECKING:
    from ..features.muc.room import Room
    from ..features.muc.service import Muc

ROOM_NAME = {"type": "string", "minLength": 1, "maxLength": 1023, "pattern": "^[^@/\\s\"&'<>:]+$"}
AFFILIATIONS = ["owner", "admin", "member", "none", "outcast"]


def config_schema(max_occupants: int, max_history: int) -> dict[str, Any]:
    return obj({
        "name": xml_text(1023),
        "description": xml_text(4096),
        "persistent": {"type": "boolean"},
        "public": {"type": "boolean"},
        "members_only": {"type": "boolean"},
        "moderated": {"type": "boolean"},
        "password": xml_text(1023),
        "max_occupants": {"type": "integer", "minimum": 1, "maximum": max_occupants},
        "whois": {"type": "string", "enum": ["moderators", "anyone"]},
        "change_subject": {"type": "boolean"},
        "allow_invites": {"type": "boolean"},
        "history_length": {"type": "integer", "minimum": 0, "maximum": max_history},
        "allow_subscription": {"type": "boolean"},
    })


CONFIG_OUT = {"type": "object"}
ROOM = obj(
    {
        "jid": {"type": "string"},
        "name": {"type": "string"},
        "locked": {"type": "boolean"},
        "occupants": {"type": "integer"},
        "config": CONFIG_OUT,
    },
    ["jid", "name", "locked", "occupants", "config"],
)
ROOM_DETAIL = {
    **ROOM,
    "properties": {
        **ROOM["properties"],
        "affiliations": {"type": "array", "items": obj({"jid": {"type": "string"}, "affiliation": {"type": "string"}}, ["jid", "affiliation"])},
        "occupant_list": {"type": "array", "items": obj({"nick": {"type": "string"}, "jid": {"type": "string"}, "role": {"type": "string"}}, ["nick", "jid", "role"])},
    },
    "required": [*ROOM["required"], "affiliations", "occupant_list"],
}


def _config_json(room: "Room") -> dict[str, Any]:
    data = room.config.to_json()
    data.pop("extra", None)
    data["password"] = bool(data.get("password"))  # whether there is one; never the password
    return data


def room_json(room: "Room", *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jid": room.jid_s,
        "name": room.jid.local or "",
        "locked": room.locked,
        "occupants": len(room.occupant_list()),
        "config": _config_json(room),
    }
    if detail:
        out["affiliations"] = sorted(({"jid": str(j), "affiliation": a.affiliation} for j, a in room.affiliations.items()), key=lambda a: a["jid"])
        out["occupant_list"] = sorted(({"nick": o.nick, "jid": str(o.bare), "role": o.role.value} for o in room.occupant_list()), key=lambda o: o["nick"])
    return out


def operations(muc: "Muc") -> list[Operation]:
    ctx = muc.ctx
    service = muc.service
    opts = muc.options
    max_page = ctx.config.api.max_page
    cfg_schema = config_schema(opts.max_occupants_limit, opts.max_history_length)

    def room_jid(req: ApiRequest) -> JID:
        try:
            jid = JID.parse(f"{req.params['room']}@{service.domain}")
        except JIDError as exc:
            raise bad_request("invalid_room", f"invalid room name: {exc}") from None
        if jid.resource is not None:
            raise bad_request("invalid_room", "invalid room name")
        return jid

    def room_of(req: ApiRequest) -> "Room":
        room = muc.get_room(room_jid(req))
        if room is None or room.destroyed:
            raise not_found("room_not_found", f"no room {req.params['room']}@{service.domain}")
        return room

    async def local_user(text: str, field: str) -> JID:
        return await local_account(text, field, ctx.domain, ctx.accounts)

    def with_changes(room_config: Any, changes: dict[str, Any]) -> Any:
        return dataclasses.replace(room_config.copy(), **changes)

    async def list_rooms(req: ApiRequest) -> Any:
        rooms = sorted((r for r in muc.rooms() if not r.destroyed), key=lambda r: r.jid_s)
        return paged([room_json(r) for r in rooms], req)

    async def create(req: ApiRequest) -> Any:
        b = req.body
        jid = room_jid(ApiRequest({"room": b["name"]}, {}, None, {}, req.scope, req.caller))
        owner = await local_user(b["owner"], "owner")
        if muc.get_room(jid) is not None:
            raise conflict("room_exists", f"the room {jid} exists already")
        try:
            from ..features.muc.config_form import RoomConfig

            config = RoomConfig(
                max_occupants=min(opts.max_occupants, opts.max_occupants_limit),
                history_length=min(opts.history_length, opts.max_history_length),
                persistent=True,  # a room nobody is in yet: a temporary one would vanish at once
            )
            room = await service.create_room(jid, owner, with_changes(config, b.get("config", {})))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return room_json(room, detail=True)

    async def get(req: ApiRequest) -> Any:
        return room_json(room_of(req), detail=True)

    async def configure(req: ApiRequest) -> Any:
        room = room_of(req)
        try:
            await room.reconfigure(with_changes(room.config, req.body))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return room_json(room, detail=True)

    async def destroy(req: ApiRequest) -> Any:
        room = room_of(req)
        reason = (req.body or {}).get("reason")
        await room.destroy(reason, None, None)
        return None

    async def affiliations(req: ApiRequest) -> Any:
        room = room_of(req)
        return room_json(room, detail=True)["affiliations"]

    async def set_affiliation(req: ApiRequest) -> Any:
        from ..features.muc.affiliations import Affiliation

        room = room_of(req)
        try:
            target = JID.parse(req.params["jid"])
        except JIDError as exc:
            raise bad_request("invalid_jid", f"jid: {exc}") from None
        if target.local is None or target.resource is not None:
            raise bad_request("invalid_jid", "an affiliation is given to a bare JID")
        try:
            await room.set_affiliations([(target, Affiliation(req.body["affiliation"]))], reason=req.body.get("reason"))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return {"jid": str(target.bare), "affiliation": room.affiliation(target).value}

    async def send(req: ApiRequest) -> Any:
        room = room_of(req)
        b = req.body
        if "from" not in b:
            await room.send_notice(b["body"])
            return {"from": room.jid_s}
        user = await local_user(b["from"], "from")
        occupant = room.occupants.of_bare(user)
        if occupant is None or not occupant.sessions:
            raise ApiError(422, "not_an_occupant", f"{user} is not in the room: a user's message needs one of their sessions in it")
        full = sorted(occupant.sessions, key=str)[0]
        try:
            await room.may_speak(full, _speech_kind(), feature="api")
        except StanzaError as err:
            raise from_stanza_error(err) from None
        msg = stanza("message", to=room.jid_s, frm=str(full), type="groupchat", id=service.new_id())
        sub(msg, f"{{{ns.CLIENT}}}body", text=b["body"])
        await ctx.send(msg)
        return {"from": f"{room.jid_s}/{occupant.nick}"}

    rp = {"room": ROOM_NAME}
    return [
        Operation("GET", "/rooms", list_rooms, "List rooms", "rooms", "listRooms", response=page_schema(ROOM), query=page_query(max_page)),
        Operation("POST", "/rooms", create, "Create and configure a room", "rooms", "createRoom",
                  body=obj({"name": ROOM_NAME, "owner": JID_SCHEMA, "config": cfg_schema}, ["name", "owner"]),
                  response=ROOM_DETAIL, status=201, errors=(404, 409, 422)),
        Operation("GET", "/rooms/{room}", get, "Read a room (configuration, affiliations, occupants)", "rooms", "getRoom",
                  response=ROOM_DETAIL, params=rp, errors=(404,)),
        Operation("PATCH", "/rooms/{room}/config", configure, "Change a room's configuration", "rooms", "configureRoom",
                  body=cfg_schema, response=ROOM_DETAIL, params=rp, errors=(404,)),
        Operation("DELETE", "/rooms/{room}", destroy, "Destroy a room (occupants are told)", "rooms", "destroyRoom",
                  body=obj({"reason": xml_text(1000)}), body_required=False, status=204, params=rp, errors=(404,)),
        Operation("GET", "/rooms/{room}/affiliations", affiliations, "A room's affiliations", "rooms", "listRoomAffiliations",
                  response={"type": "array", "items": ROOM_DETAIL["properties"]["affiliations"]["items"]}, params=rp, errors=(404,)),
        Operation("PUT", "/rooms/{room}/affiliations/{jid}", set_affiliation, "Set a user's affiliation (members, admins, owners, bans)",
                  "rooms", "setRoomAffiliation",
                  body=obj({"affiliation": {"type": "string", "enum": AFFILIATIONS}, "reason": xml_text(1000)}, ["affiliation"]),
                  response=obj({"jid": {"type": "string"}, "affiliation": {"type": "string"}}, ["jid", "affiliation"]),
                  params={**rp, "jid": JID_SCHEMA}, errors=(404, 409)),
        Operation("POST", "/rooms/{room}/messages", send, "Send a message to a room, as the room or as an occupant", "rooms",
                  "sendRoomMessage", body=obj({"body": xml_text(65536, min_length=1), "from": JID_SCHEMA}, ["body"]),
                  response=obj({"from": {"type": "string"}}, ["from"]), params=rp, errors=(404, 422)),
    ]


def _speech_kind() -> Any:
    from ..features.muc import events as E

    return E.SpeechKind.GROUPCHAT
