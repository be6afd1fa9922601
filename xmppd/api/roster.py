"""REST API: an account's roster (``/users/{username}/roster``), through the roster feature.

Registered by the roster feature (``Roster.setup``). Reading, adding (with the limits of
``[roster]``, pushed to the owner's interested resources) and removing (with the cancellations
RFC 6121 §2.5 prescribes) are the feature's own methods, as its XMPP door uses them;
``mutual: true`` makes two accounts of this server friends at once (subscription ``both`` on
each side), for apps that manage friendship themselves.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import StanzaError
from ..jid import JID
from .framework import (
    JID_SCHEMA,
    ApiRequest,
    Operation,
    bad_request,
    from_stanza_error,
    not_found,
    obj,
    page_query,
    page_schema,
    paged,
    xml_text,
)
from .users import USERNAME

if TYPE_CHECKING:
    from ..features.roster.feature import Roster
    from ..features.roster.repository import RosterItem

ITEM = obj(
    {
        "jid": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "groups": {"type": "array", "items": {"type": "string"}},
        "subscription": {"type": "string", "enum": ["none", "to", "from", "both"]},
        "ask": {"type": "boolean"},
    },
    ["jid", "name", "groups", "subscription", "ask"],
)


def item_json(it: "RosterItem") -> dict[str, Any]:
    return {"jid": it.contact, "name": it.name, "groups": list(it.groups), "subscription": it.subscription, "ask": it.ask}


def operations(roster: "Roster") -> list[Operation]:
    ctx = roster.ctx
    max_page = ctx.config.api.max_page

    async def owner(req: ApiRequest) -> JID:
        try:
            name = ctx.account_service.prepare(req.params["username"])
        except ValueError as exc:
            raise bad_request("invalid_username", str(exc)) from None
        if await ctx.accounts.get(name, ctx.domain) is None:
            raise not_found("user_not_found", f"no account {name}@{ctx.domain}")
        return JID(name, ctx.domain)

    async def read(req: ApiRequest) -> Any:
        items = await roster.items(await owner(req))
        return paged([item_json(i) for i in sorted(items, key=lambda i: i.contact)], req)

    async def add(req: ApiRequest) -> Any:
        me = await owner(req)
        b = req.body
        try:
            contact = roster.check_contact(b["jid"], me)
            item = await roster.set_item(me, contact, b.get("name"), list(b.get("groups", [])))
            if b.get("mutual"):
                other = JID.parse(contact)
                if other.domain != ctx.domain or other.local is None or await ctx.accounts.get(other.local, ctx.domain) is None:
                    raise bad_request("not_local_account", "mutual: the contact must be an account of this server")
                await roster.befriend(me, other)
                item = await roster.item(me, other) or item
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return item_json(item)

    async def remove(req: ApiRequest) -> Any:
        me = await owner(req)
        try:
            contact = roster.check_contact(req.params["contact"], me)
            await roster.remove_item(me, contact)
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return None

    p = {"username": USERNAME}
    return [
        Operation("GET", "/users/{username}/roster", read, "Read an account's roster", "roster", "getRoster",
                  response=page_schema(ITEM), params=p, query=page_query(max_page), errors=(404,)),
        Operation("POST", "/users/{username}/roster", add, "Add or update a contact", "roster", "addRosterItem",
                  body=obj({"jid": JID_SCHEMA, "name": xml_text(1023), "groups": {"type": "array", "maxItems": 64, "items": xml_text(1023)},
                            "mutual": {"type": "boolean"}}, ["jid"]),
                  response=ITEM, params=p, errors=(404, 422),
                  description="`mutual: true` (a contact of this server): both accounts get subscription `both` and "
                  "each other's current presence."),
        Operation("DELETE", "/users/{username}/roster/{contact}", remove, "Remove a contact (subscriptions cancelled)",
                  "roster", "removeRosterItem", status=204, params={**p, "contact": JID_SCHEMA}, errors=(404,)),
    ]
