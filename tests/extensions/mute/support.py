"""Helpers of the group-mute tests: a server with MUC, ad-hoc and mute; clients with the plugin."""

from __future__ import annotations

import asyncio
import contextlib
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import aioxmpp
import aioxmpp.dispatcher
import aioxmpp.muc
import xmlschema
from lxml import etree

from xmppd.app import Server
from xmppd.core.loader import discover
from xmppd_extensions.mute import slixmpp_plugin

from ...aiox import aioxmpp_client
from ...features.muc_support import PLUGINS, Inbox
from ...helpers import add_user, running_server, slix

NEEDED = {"disco", "muc", "adhoc", "admin", "mute", "ping", "presence", "roster"}
XSD = Path(__file__).resolve().parents[3] / "schemas" / "mute-0.xsd"
ADMIN = "admin@localhost"


def disabled_option() -> str:
    return f"features.disabled={json.dumps(sorted(n for n in discover() if n not in NEEDED))}"


@contextlib.asynccontextmanager
async def mute_server(data_dir: Path, *overrides: str) -> AsyncIterator[Server]:
    async with running_server(data_dir, disabled_option(), f'server.admins=["{ADMIN}"]', "mute.timer_tick=0.5",
                              *overrides) as srv:
        yield srv


async def client(server: Server, name: str, *, create: bool = True, lang: str | None = None) -> Any:
    jid = await add_user(server, name) if create else f"{name}@{server.domain}"
    c = await slix(server, jid, plugins=PLUGINS)
    c.register_plugin("mute", module=slixmpp_plugin)
    c.inbox = Inbox(c)
    c.send_presence()
    return c


@lru_cache(maxsize=1)
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def assert_valid(el: Any) -> None:
    """Validate an lxml element, a slixmpp stanza's XML or bytes against schemas/mute-0.xsd."""
    if hasattr(el, "xml"):
        el = etree.fromstring(str(el).encode())
    elif isinstance(el, ET.Element):
        el = etree.fromstring(ET.tostring(el))
    elif isinstance(el, (bytes, str)):
        el = etree.fromstring(el.encode() if isinstance(el, str) else el)
    schema().validate(etree.tostring(el).decode())


def app_element(stanza: Any, local: str) -> Any:
    """The <local xmlns='urn:xmppd:mute:0'/> inside a stanza's <error/> (as lxml)."""
    root = etree.fromstring(str(stanza).encode())
    for error in root.iter("{jabber:client}error", "error"):
        found = error.find(f"{{urn:xmppd:mute:0}}{local}")
        if found is not None:
            return found
    return None


class AioOccupant:
    """An aioxmpp client in a room (a standard client knowing nothing of our namespace): it says
    things and keeps the message errors the room sends back."""

    def __init__(self, client: Any, room: str) -> None:
        self.client, self.room = client, aioxmpp.JID.fromstr(room)
        self.errors: asyncio.Queue = asyncio.Queue()
        client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(
            aioxmpp.MessageType.ERROR, self.room, self.errors.put_nowait)

    async def say(self, text: str) -> None:
        msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT, to=self.room)
        msg.body[None] = text
        await self.client.send(msg)

    async def error(self) -> Any:
        return (await asyncio.wait_for(self.errors.get(), 5)).error


@contextlib.asynccontextmanager
async def aioxmpp_in_room(server: Server, jid: str, room: str, nick: str) -> AsyncIterator[AioOccupant]:
    async with aioxmpp_client(server, jid) as aio:
        _room, joined = aio.summon(aioxmpp.muc.MUCClient).join(
            aioxmpp.JID.fromstr(room), nick, history=aioxmpp.muc.xso.History(maxstanzas=0))
        await asyncio.wait_for(joined, 5)
        yield AioOccupant(aio, room)
