"""XEP-0045 persistent rooms across restarts (SQLite and MariaDB), and MUC/Sub delivery to offline members."""
from __future__ import annotations

import asyncio

import pytest
from slixmpp.exceptions import IqError, PresenceError

from ..helpers import add_user, running_server, slix, slix_close
from .muc_support import create, join, room_jid, user

pytestmark = pytest.mark.interop

MUCSUB = "urn:xmpp:mucsub:0"
EVENT = "http://jabber.org/protocol/pubsub#event"


@pytest.fixture(params=["sqlite", "mariadb"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        return []
    server = request.getfixturevalue("mariadb_server")
    url = server.create_database()
    return [f"storage.url={url.render_as_string(hide_password=False)}", "storage.auto_upgrade=true"]


async def test_persistent_room_survives_restart(tmp_path, storage):
    room = "club@conference.localhost"
    async with running_server(tmp_path, *storage) as srv:
        a = await user(srv, "alice")
        await add_user(srv, "bob")
        await add_user(srv, "eve")
        try:
            await create(a, room, "Alice", persistent=True, name="The Club", members_only=True, password="pw")
            muc = a.plugin["xep_0045"]
            await muc.set_affiliation(room, "member", jid="bob@localhost", timeout=5)
            await muc.set_affiliation(room, "outcast", jid="eve@localhost", timeout=5)
            muc.set_subject(room, "Rules: be nice")
            await a.inbox.message(lambda m: m["subject"] == "Rules: be nice")
            # a temporary room vanishes when its last occupant leaves and is not stored
            await create(a, room_jid(srv, "temp"), "Alice")
        finally:
            await slix_close(a)
        await asyncio.sleep(0.2)
        assert srv.features["muc"].get_room(room_jid(srv, "temp")) is None
        assert srv.features["muc"].get_room(room) is not None  # persistent: kept while empty
    async with running_server(tmp_path, *storage) as srv:
        muc_f = srv.features["muc"]
        r = muc_f.get_room(room)
        assert r is not None and r.config.name == "The Club" and r.config.members_only and r.config.persistent
        assert r.subject == "Rules: be nice"
        assert muc_f.get_room(room_jid(srv, "temp")) is None
        b, e = await user(srv, "bob", create=False), await user(srv, "eve", create=False)
        try:
            _p, subject, _o, _h = await join(b, room, "Bob", password="pw")
            assert subject["subject"] == "Rules: be nice"
            assert _p["muc"]["affiliation"] == "member"
            with pytest.raises(PresenceError) as err:
                await join(e, room, "Eve", password="pw")
            assert err.value.condition == "forbidden"
            items = await b.plugin["xep_0030"].get_items(jid="conference.localhost", timeout=5)
            assert ("club@conference.localhost", None, "The Club") in items["disco_items"]["items"]
        finally:
            await slix_close(b)
            await slix_close(e)


def _subscribe(client, room, nick, nodes, **attrs):
    from slixmpp.xmlstream import ET

    iq = client.make_iq_set(ito=room)
    sub = ET.Element(f"{{{MUCSUB}}}subscribe", {"nick": nick, **attrs})
    for n in nodes:
        ET.SubElement(sub, f"{{{MUCSUB}}}event", {"node": n})
    iq.append(sub)
    return iq.send(timeout=5)


def _events(client):
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    q: asyncio.Queue = asyncio.Queue()
    client.register_handler(Callback("mucsub-events", MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event"), q.put_nowait))
    return q


async def test_mucsub_member_offline_gets_every_message_at_login(tmp_path):
    room = "family@conference.localhost"
    async with running_server(tmp_path) as srv:
        a = await user(srv, "alice")
        b = await user(srv, "bob")
        c = await user(srv, "carol")
        try:
            await create(a, room, "Alice", persistent=True, members_only=True)
            await a.plugin["xep_0045"].set_affiliation(room, "member", jid="bob@localhost", timeout=5)
            # non-members can't subscribe to a members-only room
            with pytest.raises(IqError) as err:
                await _subscribe(c, room, "Carol", ["urn:xmpp:mucsub:nodes:messages"])
            assert err.value.condition == "registration-required"
            with pytest.raises(IqError) as err:
                await _subscribe(b, room, "Bob", [])
            assert err.value.condition == "bad-request"
            res = await _subscribe(b, room, "Bob", ["urn:xmpp:mucsub:nodes:messages", "urn:xmpp:mucsub:nodes:subject"])
            got = res.xml.find(f"{{{MUCSUB}}}subscribe")
            assert got.get("nick") == "Bob" and len(got.findall(f"{{{MUCSUB}}}event")) == 2
            # lists: the user's subscriptions (service) and the room's subscribers (moderators only)
            mine = await b.make_iq_get(ito="conference.localhost").append(_el("subscriptions")).send(timeout=5)
            assert [s.get("jid") for s in mine.xml.iter(f"{{{MUCSUB}}}subscription")] == [room]
            subs = await a.make_iq_get(ito=room).append(_el("subscriptions")).send(timeout=5)
            assert [(s.get("jid"), s.get("nick")) for s in subs.xml.iter(f"{{{MUCSUB}}}subscription")] == [("bob@localhost", "Bob")]
            with pytest.raises(IqError) as err:
                await b.make_iq_get(ito=room).append(_el("subscriptions")).send(timeout=5)
            assert err.value.condition == "forbidden"
            # online, not joined: events on the session
            live = _events(b)
            a.send_message(mto=room, mbody="dinner at 7", mtype="groupchat")
            ev = await asyncio.wait_for(live.get(), 5)
            items = ev.xml.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
            assert items.get("node") == "urn:xmpp:mucsub:nodes:messages" and str(ev["from"]) == room
            inner = items.find(f"{{{EVENT}}}item/{{jabber:client}}message")
            assert inner.get("from") == f"{room}/Alice" and inner.findtext("{jabber:client}body") == "dinner at 7"
        finally:
            await slix_close(b)
            await slix_close(c)
        await asyncio.sleep(0.3)
        for i in range(5):
            a.send_message(mto=room, mbody=f"while you were out {i}", mtype="groupchat")
        await a.inbox.message(lambda m: m["body"] == "while you were out 4")
        await asyncio.sleep(0.3)
        # back online: every event from the offline store, in order, at initial presence
        b = await slix(srv, "bob@localhost", plugins=("xep_0030", "xep_0045"))
        try:
            live = _events(b)
            b.send_presence()
            bodies = []
            for _ in range(5):
                ev = await asyncio.wait_for(live.get(), 5)
                bodies.append(ev.xml.find(f".//{{{EVENT}}}item/{{jabber:client}}message").findtext("{jabber:client}body"))
            assert bodies == [f"while you were out {i}" for i in range(5)]
            # unsubscribe: no more events
            await b.make_iq_set(ito=room).append(_el("unsubscribe")).send(timeout=5)
            assert srv.features["muc"].get_room(room).subscribers == {}
        finally:
            await slix_close(b)
            await slix_close(a)


def _el(name):
    from slixmpp.xmlstream import ET

    return ET.Element(f"{{{MUCSUB}}}{name}")
