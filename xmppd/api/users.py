"""REST API: accounts and their sessions (``/users``), through ``AccountService`` and ``kick``.

The same service the admin ad-hoc commands (XEP-0133), in-band registration and ``xmppctl``
use: the username policy, the password length, the account hooks, the one-transaction deletion
and the end of a disabled account's sessions all happen there.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import timestamps
from ..accounts import AccountExists, AccountNotFound, InvalidAccount, ReservedUsername
from ..errors import StreamErrorCondition
from ..jid import JID, JIDError
from ..storage.accounts import Account
from .framework import ApiError, ApiRequest, Operation, bad_request, conflict, not_found, obj, page, page_query, page_schema, xml_text

if TYPE_CHECKING:
    from ..app import Server

USERNAME = {"type": "string", "minLength": 1, "maxLength": 1023, "pattern": "^[^@/\\s]+$"}
RESOURCE = {"type": "string", "minLength": 1, "maxLength": 1023}
PASSWORD = xml_text(1023, min_length=1)
USER = obj(
    {
        "jid": {"type": "string"},
        "username": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "disabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
    },
    ["jid", "username", "created_at", "disabled", "disabled_reason"],
)
SESSION = obj(
    {
        "jid": {"type": "string"},
        "resource": {"type": "string"},
        "node": {"type": ["string", "null"]},
        "transport": {"type": ["string", "null"], "enum": ["tcp", "websocket", None]},
        "address": {"type": ["string", "null"]},
        "available": {"type": "boolean"},
        "priority": {"type": "integer"},
        "connected_seconds": {"type": ["number", "null"]},
    },
    ["jid", "resource", "node", "transport", "address", "available", "priority", "connected_seconds"],
)


def user_json(a: Account) -> dict[str, Any]:
    return {
        "jid": f"{a.username}@{a.domain}",
        "username": a.username,
        "created_at": timestamps.auto(a.created_at),
        "disabled": a.disabled,
        "disabled_reason": a.disabled_reason,
    }


def operations(server: "Server") -> list[Operation]:
    svc = server.account_service
    domain = server.domain
    max_page = server.config.api.max_page

    def username(req: ApiRequest) -> str:
        try:
            return svc.prepare(req.params["username"])
        except InvalidAccount as exc:
            raise bad_request("invalid_username", str(exc)) from None

    async def account(name: str) -> Account:
        found = await server.accounts.get(name, domain)
        if found is None:
            raise not_found("user_not_found", f"no account {name}@{domain}")
        return found

    async def list_users(req: ApiRequest) -> Any:
        items = await server.accounts.list(domain, limit=req.query["limit"], offset=req.query["offset"])
        return page([user_json(a) for a in items], req, await server.accounts.count(domain))

    async def create_user(req: ApiRequest) -> Any:
        try:
            created = await svc.create(req.body["username"], req.body["password"])
        except AccountExists:
            raise conflict("user_exists", f"{req.body['username']}@{domain} exists already") from None
        except ReservedUsername as exc:
            raise bad_request("reserved_username", str(exc)) from None
        except InvalidAccount as exc:
            code = "invalid_password" if "password" in str(exc) else "invalid_username"
            raise bad_request(code, str(exc)) from None
        return user_json(created)

    async def get_user(req: ApiRequest) -> Any:
        return user_json(await account(username(req)))

    async def delete_user(req: ApiRequest) -> Any:
        name = username(req)
        if not await svc.delete(name):
            raise not_found("user_not_found", f"no account {name}@{domain}")
        return None

    async def set_disabled(req: ApiRequest, disabled: bool) -> Any:
        name = username(req)
        reason = (req.body or {}).get("reason") or ("disabled through the REST API" if disabled else None)
        try:
            await svc.set_disabled(name, disabled, reason)
        except AccountNotFound:
            raise not_found("user_not_found", f"no account {name}@{domain}") from None
        return user_json(await account(name))

    async def disable(req: ApiRequest) -> Any:
        return await set_disabled(req, True)

    async def enable(req: ApiRequest) -> Any:
        return await set_disabled(req, False)

    async def set_password(req: ApiRequest) -> Any:
        name = username(req)
        try:
            await svc.set_password(name, req.body["password"])
        except AccountNotFound:
            raise not_found("user_not_found", f"no account {name}@{domain}") from None
        except InvalidAccount as exc:
            raise bad_request("invalid_password", str(exc)) from None
        return None

    def session_json(s: Any) -> dict[str, Any]:
        return {
            "jid": str(s.jid),
            "resource": s.jid.resource,
            "node": server.router.node_name,
            "transport": "websocket" if s.websocket else "tcp",
            "address": s.peer,
            "available": s.available,
            "priority": s.priority,
            "connected_seconds": round(server.clock.monotonic() - s.connected_at, 3),
        }

    async def sessions(req: ApiRequest) -> Any:
        name = username(req)
        bare = JID(name, domain)
        items = [session_json(s) for s in server.sessions.of(bare) if s.jid is not None]
        # Sessions on the other nodes of a cluster: what the registry says of them (the node
        # holding a session knows its transport, address and age; they are null here).
        for e in (await server.router.elsewhere([bare])).get(bare, []):
            items.append({"jid": str(e.full), "resource": e.full.resource, "node": e.node, "transport": None,
                          "address": None, "available": e.available, "priority": e.priority, "connected_seconds": None})
        return {"items": sorted(items, key=lambda i: i["resource"] or "")}

    async def kick(req: ApiRequest) -> Any:
        name = username(req)
        resource = req.params.get("resource")
        try:
            jid = JID.parse(f"{name}@{domain}/{resource}") if resource else JID(name, domain)
        except JIDError as exc:
            raise bad_request("invalid_resource", f"invalid resource: {exc}") from None
        ended = await server.kick(jid, StreamErrorCondition.POLICY_VIOLATION, "an administrator ended your session")
        if resource and not ended:
            raise not_found("session_not_found", f"no session {jid}")
        return {"ended": ended}

    name_param = {"username": USERNAME}
    user_errors = (404,)
    return [
        Operation("GET", "/users", list_users, "List accounts", "users", "listUsers",
                  response=page_schema(USER), query=page_query(max_page)),
        Operation("POST", "/users", create_user, "Create an account", "users", "createUser",
                  body=obj({"username": USERNAME, "password": PASSWORD}, ["username", "password"]),
                  response=USER, status=201, errors=(409,)),
        Operation("GET", "/users/{username}", get_user, "Read an account", "users", "getUser",
                  response=USER, params=name_param, errors=user_errors),
        Operation("DELETE", "/users/{username}", delete_user, "Delete an account and everything of it", "users",
                  "deleteUser", status=204, params=name_param, errors=user_errors),
        Operation("POST", "/users/{username}/disable", disable, "Disable an account (its sessions end)", "users",
                  "disableUser", body=obj({"reason": xml_text(1000)}), body_required=False, response=USER, params=name_param, errors=user_errors),
        Operation("POST", "/users/{username}/enable", enable, "Enable a disabled account", "users", "enableUser",
                  body=obj({}), body_required=False, response=USER, params=name_param, errors=user_errors),
        Operation("PUT", "/users/{username}/password", set_password, "Change an account's password", "users",
                  "setUserPassword", body=obj({"password": PASSWORD}, ["password"]), status=204, params=name_param,
                  errors=user_errors),
        Operation("GET", "/users/{username}/sessions", sessions, "The account's sessions on every node", "users",
                  "listUserSessions", response=obj({"items": {"type": "array", "items": SESSION}}, ["items"]),
                  params=name_param),
        Operation("DELETE", "/users/{username}/sessions", kick, "End every session of the account", "users",
                  "kickUser", response=obj({"ended": {"type": "integer"}}, ["ended"]), params=name_param),
        Operation("DELETE", "/users/{username}/sessions/{resource}", kick, "End one session", "users",
                  "kickUserSession", response=obj({"ended": {"type": "integer"}}, ["ended"]),
                  params={**name_param, "resource": RESOURCE}, errors=(404,)),
    ]


__all__ = ["operations", "user_json", "ApiError"]
