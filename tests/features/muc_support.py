"""Helpers for the MUC tests: slixmpp clients with the MUC plugins, inboxes, room creation."""
from __future__ import annotations

import asyncio
from typing import Any

from slixmpp.plugins.xep_0004 import Form as SlixForm
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ..helpers import add_user, slix

MUC_USER = "http://jabber.org/protocol/muc#user"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
PLUGINS = ("xep_0030", "xep_0004", "xep_0045", "xep_0249", "xep_0199")


class Inbox:
    """Every message and presence a client receives, in order."""

    def __init__(self, client: Any) -> None:
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        # Raw handlers: slixmpp's events skip some stanzas (repeats from one room, messages
        # from a room's bare JID), and the tests must see exactly what the server sent.
        client.register_handler(Callback("muc-test-messages", MatchXPath("{jabber:client}message"), self.messages.put_nowait))
        client.register_handler(Callback("muc-test-presence", MatchXPath("{jabber:client}presence"), self.presences.put_nowait))

    async def message(self, pred: Any = lambda m: True, timeout: float = 5) -> Any:
        async def go() -> Any:
            while True:
                m = await self.messages.get()
                if pred(m):
                    return m
        return await asyncio.wait_for(go(), timeout)

    async def presence(self, pred: Any = lambda p: True, timeout: float = 5) -> Any:
        async def go() -> Any:
            while True:
                p = await self.presences.get()
                if pred(p):
                    return p
        return await asyncio.wait_for(go(), timeout)

    def drain(self) -> None:
        for q in (self.messages, self.presences):
            while not q.empty():
                q.get_nowait()


async def user(server: Any, name: str, *, create: bool = True) -> Any:
    jid = await add_user(server, name) if create else f"{name}@{server.domain}"
    c = await slix(server, jid, plugins=PLUGINS)
    c.send_presence()
    c.inbox = Inbox(c)
    return c


def room_jid(server: Any, name: str) -> str:
    return f"{name}@conference.{server.domain}"


async def configure(client: Any, room: str, **values: Any) -> None:
    form = SlixForm()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=ROOMCONFIG)
    names = {
        "name": "muc#roomconfig_roomname", "description": "muc#roomconfig_roomdesc",
        "persistent": "muc#roomconfig_persistentroom", "public": "muc#roomconfig_publicroom",
        "members_only": "muc#roomconfig_membersonly", "moderated": "muc#roomconfig_moderatedroom",
        "password": "muc#roomconfig_roomsecret", "max_occupants": "muc#roomconfig_maxusers",
        "whois": "muc#roomconfig_whois", "change_subject": "muc#roomconfig_changesubject",
        "allow_invites": "muc#roomconfig_allowinvites", "history": "muc#maxhistoryfetch",
    }
    for key, value in values.items():
        if isinstance(value, bool):
            value = "1" if value else "0"
        form.add_field(var=names[key], value=str(value))
        if key == "password":
            form.add_field(var="muc#roomconfig_passwordprotectedroom", value="1" if value else "0")
    await client.plugin["xep_0045"].set_room_config(room, form, timeout=5)


async def create(client: Any, room: str, nick: str, **config: Any) -> Any:
    """Join (creating the room), then submit the configuration (an instant room when empty)."""
    pres, *_ = await client.plugin["xep_0045"].join_muc_wait(room, nick, timeout=5)
    await configure(client, room, **config)
    return pres


async def join(client: Any, room: str, nick: str, **kw: Any) -> Any:
    return await client.plugin["xep_0045"].join_muc_wait(room, nick, timeout=5, **kw)


def codes(stanza: Any) -> set[str]:
    return {str(c) for c in stanza["muc"]["status_codes"]}
