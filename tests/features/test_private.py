"""XEP-0049 Private XML Storage over the wire with slixmpp."""
from __future__ import annotations

from pathlib import Path

import pytest
from slixmpp import ET
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0048.stanza import Bookmarks

from ..helpers import add_user, running_server, slix, slix_close


async def _client(server, name: str):
    c = await slix(server, await add_user(server, name), plugins=("xep_0049", "xep_0048"))
    return c


async def _raw(client, typ: str, inner: str, to: str | None = None):
    iq = client.make_iq_set(ito=to) if typ == "set" else client.make_iq_get(ito=to)
    iq.append(ET.fromstring(f"<query xmlns='jabber:iq:private'>{inner}</query>"))
    return await iq.send(timeout=5)


async def test_store_and_retrieve_bookmarks(server):
    alice = await _client(server, "alice")
    try:
        empty = await alice.plugin["xep_0049"].retrieve("bookmarks")
        assert len(empty["private"]["bookmarks"]["conferences"]) == 0
        marks = Bookmarks()
        marks.add_conference("room@conference.localhost", "Alice", name="The room", autojoin=True)
        await alice.plugin["xep_0049"].store(marks)
        got = await alice.plugin["xep_0049"].retrieve("bookmarks")
        conf = got["private"]["bookmarks"]["conferences"][0]
        assert conf["jid"] == "room@conference.localhost" and conf["nick"] == "Alice" and conf["autojoin"]
        # Another namespace stays apart; replacing one leaves the other.
        await _raw(alice, "set", "<prefs xmlns='urn:example:prefs'><colour>blue</colour></prefs>")
        got = await _raw(alice, "get", "<prefs xmlns='urn:example:prefs'/>")
        assert got.xml.find("{jabber:iq:private}query/{urn:example:prefs}prefs/{urn:example:prefs}colour").text == "blue"
        got = await alice.plugin["xep_0049"].retrieve("bookmarks")
        assert len(got["private"]["bookmarks"]["conferences"]) == 1
    finally:
        await slix_close(alice)


async def test_reserved_namespaces_other_accounts_and_bad_requests(server):
    alice = await _client(server, "alice")
    await add_user(server, "bob")
    try:
        cases = [
            ("set", "<query xmlns='jabber:iq:roster'/>", None, "not-acceptable"),
            ("get", "<x xmlns='jabber:x:data'/>", None, "not-acceptable"),
            ("get", "<storage xmlns='storage:bookmarks'/>", f"bob@{server.domain}", "forbidden"),
            ("set", "<storage xmlns='storage:bookmarks'/>", f"bob@{server.domain}", "forbidden"),
            ("get", "", None, "bad-request"),
            ("get", "<a xmlns='urn:x:a'/><b xmlns='urn:x:b'/>", None, "bad-request"),
            ("set", "", None, "bad-request"),
            ("set", "<a xmlns='urn:x:a'/><a xmlns='urn:x:a'>2</a>", None, "bad-request"),
        ]
        for typ, inner, to, condition in cases:
            with pytest.raises(IqError) as err:
                await _raw(alice, typ, inner, to)
            assert err.value.iq["error"]["condition"] == condition, (typ, inner, to)
        assert await server.features["private"].repo.namespaces("bob", server.domain) == []
    finally:
        await slix_close(alice)


async def test_size_and_count_limits(tmp_path: Path):
    async with running_server(tmp_path, "private.max_size=512", "private.max_items=2") as server:
        alice = await _client(server, "alice")
        try:
            with pytest.raises(IqError) as err:
                await _raw(alice, "set", f"<big xmlns='urn:x:big'>{'x' * 600}</big>")
            assert err.value.iq["error"]["condition"] == "not-acceptable"
            await _raw(alice, "set", "<a xmlns='urn:x:a'/><b xmlns='urn:x:b'/>")
            with pytest.raises(IqError) as err:
                await _raw(alice, "set", "<c xmlns='urn:x:c'/>")
            assert err.value.iq["error"]["condition"] == "not-acceptable"
            await _raw(alice, "set", "<a xmlns='urn:x:a'>replaced</a>")
            got = await _raw(alice, "get", "<a xmlns='urn:x:a'/>")
            assert got.xml.find("{jabber:iq:private}query/{urn:x:a}a").text == "replaced"
        finally:
            await slix_close(alice)
