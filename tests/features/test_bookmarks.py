"""XEP-0402 PEP native bookmarks and the XEP-0048 views of them (private storage, XEP-0411 PEP),
with slixmpp (native and legacy) and aioxmpp's BookmarkClient (XEP-0048 in private storage)."""
from __future__ import annotations

import aioxmpp
import aioxmpp.bookmarks
import pytest
from slixmpp.exceptions import IqError

from ..aiox import aioxmpp_client
from ..helpers import slix_close
from .pep_support import EVENT, PUBSUB, PepClient, befriend

NATIVE = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
OPTIONS = {"persist_items": "true", "max_items": "max", "send_last_published_item": "never", "access_model": "whitelist"}


def publish_conference(room: str, name: str, nick: str, autojoin: bool = True) -> str:
    fields = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in OPTIONS.items())
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{NATIVE}'><item id='{room}'>"
            f"<conference xmlns='{NATIVE}' name='{name}' autojoin='{'true' if autojoin else 'false'}'><nick>{nick}</nick>"
            "<extensions><state xmlns='urn:example:client'>pinned</state></extensions></conference></item></publish>"
            "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{PUBSUB}#publish-options</value></field>{fields}</x></publish-options></pubsub>")


async def native_items(client: PepClient) -> dict[str, tuple[str | None, str | None, bool]]:
    got = await client.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{NATIVE}'/></pubsub>")
    out = {}
    for item in got.iter(f"{{{PUBSUB}}}item"):
        conf = item.find(f"{{{NATIVE}}}conference")
        out[item.get("id")] = (conf.get("name"), conf.findtext(f"{{{NATIVE}}}nick"),
                               conf.find(f"{{{NATIVE}}}extensions") is not None)
    return out


async def test_native_bookmarks_are_seen_and_changed_through_private_storage(server):
    native = await PepClient.login(server, "alice", (NATIVE,))
    legacy = await PepClient.login(server, "alice", create=False, plugins=("xep_0048", "xep_0049"))
    bob = await PepClient.login(server, "bob", (NATIVE,))
    await befriend(server, native.bare, bob.bare)
    try:
        info = await native.c.plugin["xep_0030"].get_info(jid=native.bare)
        for f in (f"{NATIVE}#compat", f"{NATIVE}#compat-pep", "urn:xmpp:bookmarks-conversion:0", f"{PUBSUB}#config-node-max"):
            assert f in info["disco_info"]["features"]
        await native.iq("set", publish_conference("room@muc.example.org", "The Room", "Al"))
        ev = await native.event(NATIVE)
        assert ev.find(f".//{{{EVENT}}}item").get("id") == "room@muc.example.org"
        await bob.no_event()  # whitelist: the owner's resources only
        with pytest.raises(IqError) as err:
            await bob.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{NATIVE}'/></pubsub>", to=native.bare)
        assert err.value.iq["error"]["condition"] == "not-allowed"
        # the XEP-0048 view through private storage
        got = await legacy.c.plugin["xep_0049"].retrieve("bookmarks")
        confs = got["private"]["bookmarks"]["conferences"]
        assert [(c["jid"], c["name"], c["nick"], c["autojoin"]) for c in confs] == [("room@muc.example.org", "The Room", "Al", True)]
        # a legacy client rewrites the whole list: one renamed, one added
        from slixmpp.plugins.xep_0048.stanza import Bookmarks
        marks = Bookmarks()
        marks.add_conference("room@muc.example.org", "Alice", name="Renamed", autojoin=True)
        marks.add_conference("other@muc.example.org", "Alice", name="Other", autojoin=False)
        await legacy.c.plugin["xep_0049"].store(marks)
        items = await native_items(native)
        assert items == {"room@muc.example.org": ("Renamed", "Alice", True),  # extensions kept
                         "other@muc.example.org": ("Other", "Alice", False)}
        # then drops one: the native client is told it was retracted
        marks = Bookmarks()
        marks.add_conference("other@muc.example.org", "Alice", name="Other", autojoin=False)
        await legacy.c.plugin["xep_0049"].store(marks)
        while True:
            ev = await native.event(NATIVE)
            retract = ev.find(f".//{{{EVENT}}}retract")
            if retract is not None:
                assert retract.get("id") == "room@muc.example.org"
                break
        assert list(await native_items(native)) == ["other@muc.example.org"]
    finally:
        for c in (native, legacy, bob):
            await slix_close(c.c)


async def test_aioxmpp_bookmark_client_and_legacy_pep_node(server):
    native = await PepClient.login(server, "alice", (NATIVE, LEGACY))
    try:
        async with aioxmpp_client(server, native.bare) as client:
            bookmarks = client.summon(aioxmpp.bookmarks.BookmarkClient)
            await bookmarks.add_bookmark(aioxmpp.bookmarks.Conference(
                "Chess", aioxmpp.JID.fromstr("chess@muc.example.org"), autojoin=True, nick="Knight"))
            assert await native_items(native) == {"chess@muc.example.org": ("Chess", "Knight", False)}
            # XEP-0411: a legacy client publishing <storage/> to PEP changes the native node too
            await native.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='{LEGACY}'><item id='current'>"
                                   f"<storage xmlns='{LEGACY}'><conference jid='go@muc.example.org' name='Go' autojoin='false'>"
                                   "<nick>Stone</nick></conference></storage></item></publish></pubsub>")
            assert await native_items(native) == {"go@muc.example.org": ("Go", "Stone", False)}
            got = await bookmarks.get_bookmarks()
            assert [(str(b.jid), b.name, b.nick) for b in got] == [("go@muc.example.org", "Go", "Stone")]
            # and a native change republishes the legacy PEP item, whose subscribers are notified
            await native.iq("set", publish_conference("chess@muc.example.org", "Chess", "Knight"))
            while True:
                ev = await native.event(LEGACY)
                jids = sorted(c.get("jid") for c in ev.iter(f"{{{LEGACY}}}conference"))
                if jids == ["chess@muc.example.org", "go@muc.example.org"]:
                    break
    finally:
        await slix_close(native.c)
