"""Red packets' messages as users see them, over real sockets: best luck only where there is
luck (lucky packets of two shares or more), a retried send posts the packet once, and every body
the feature sends carries its language. Actions go through slixmpp; what arrives is read as the
bytes the server wrote, by raw clients (tests/extensions/redpacket/rawclients.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import slixmpp
from lxml import etree

from xmppd_extensions.redpacket import slixmpp_plugin
from xmppd_extensions.redpacket.feature import NS

from ...features.muc_support import PLUGINS, create, join
from ...helpers import add_user, slix, slix_close
from .rawclients import Raw, login
from .schema_check import assert_valid_xml
from .servers import STRANGERS, rp_running_server

pytestmark = pytest.mark.interop

ROOM = "party@conference.localhost"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
BODY = "{jabber:client}body"
_MESSAGE = re.compile(rb"<message\b.*?</message>", re.S)


@pytest.fixture
async def server(tmp_path: Path):
    async with rp_running_server(tmp_path, STRANGERS, "redpacket.expiry=60.0", "c2s.require_tls=false", muc=True) as srv:
        yield srv


async def member(server, name: str) -> slixmpp.ClientXMPP:
    c = await slix(server, await add_user(server, name), plugins=PLUGINS)
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


class Watcher:
    """A raw session of an account: every ``<message/>`` the server writes to it, parsed from
    the bytes as written (nothing a client library adds or drops)."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.seen: list[etree._Element] = []  # every message, in arrival order
        self._unclaimed: list[etree._Element] = []  # those no message() call has returned yet

    @classmethod
    async def online(cls, server, user: str) -> Watcher:
        raw = await login(server.ports["c2s"], user)
        await raw.send("<presence/>")
        return cls(raw)

    async def join(self, room: str, nick: str) -> None:
        await self.raw.send(f"<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        while not re.search(rb"""code=["']110["']""", await self.raw.until(b"</presence>")):
            pass  # others' presences first; then the self-presence: now an occupant

    async def message(self, pred, timeout: float = 10) -> etree._Element:
        """The first message matching ``pred`` that no earlier call returned."""
        while True:
            for m in self._unclaimed:
                if pred(m):
                    self._unclaimed.remove(m)
                    return m
            chunk = await self.raw.until(b"</message>", timeout)
            for raw in _MESSAGE.findall(chunk):
                m = etree.fromstring(b"<w xmlns='jabber:client'>" + raw + b"</w>")[0]
                self.seen.append(m)
                self._unclaimed.append(m)

    def close(self) -> None:
        self.raw.close()


def ours(m: etree._Element, name: str, packet_id: str | None = None) -> etree._Element | None:
    el = m.find(f"{{{NS}}}{name}")
    if el is None or (packet_id is not None and el.get("id") != packet_id):
        return None
    return el


def body_lang(m: etree._Element) -> tuple[str | None, str]:
    body = m.find(BODY)
    assert body is not None, etree.tostring(m)
    return body.get(XML_LANG), body.text or ""


def finished_of(packet_id: str):
    return lambda m: ours(m, "finished", packet_id) is not None


async def assert_no_best_luck(watcher: Watcher, sender, packet_id: str, *, kind: str) -> None:
    """The finished notice and the stored details say every share is taken, and nothing of best luck."""
    done = await watcher.message(finished_of(packet_id))
    child = ours(done, "finished", packet_id)
    assert_valid_xml(etree.tostring(child))
    assert "best-luck" not in child.attrib and "amount" not in child.attrib, etree.tostring(done)
    lang, text = body_lang(done)
    assert "best luck" not in text and text == "All shares of the red packet are taken", text
    details = await sender.plugin["redpacket"].details(packet_id)
    assert details["status"] == "finished" and details["kind"] == kind
    assert details.xml.get("best-luck") is None
    grabs = slixmpp_plugin.entries(details, slixmpp_plugin.Grab)
    assert grabs and all(g.xml.get("best") is None for g in grabs)


async def test_equal_and_single_share_packets_finish_without_best_luck(server):
    feat = server.features["redpacket"]
    a, b = await member(server, "alice"), await member(server, "bob")
    await add_user(server, "carol")
    alice_notices, carol = await Watcher.online(server, "alice"), await Watcher.online(server, "carol")
    try:
        await create(a, ROOM, "Alice")
        await join(b, ROOM, "Bob")
        await carol.join(ROOM, "Carol")
        await feat.repo.topup("alice@localhost", 5000, feat.now())
        # an equal room packet: both shares are the same, nobody is luckier
        eq = await a.plugin["redpacket"].send_packet(ROOM, client_id="eq", kind="equal", each=50, count=2, lang="en")
        await a.plugin["redpacket"].open_packet(eq["id"])
        await b.plugin["redpacket"].open_packet(eq["id"])
        await assert_no_best_luck(alice_notices, a, eq["id"], kind="equal")  # the sender's headline
        await assert_no_best_luck(carol, a, eq["id"], kind="equal")  # the room's notice
        # an exclusive room packet (one share) and a one-to-one packet (one share)
        ex = await a.plugin["redpacket"].send_packet(ROOM, client_id="ex", total=88, exclusive="bob@localhost", lang="en")
        await b.plugin["redpacket"].open_packet(ex["id"])
        await assert_no_best_luck(alice_notices, a, ex["id"], kind="lucky")
        await assert_no_best_luck(carol, a, ex["id"], kind="lucky")
        one = await a.plugin["redpacket"].send_packet("bob@localhost", client_id="one", total=66, lang="en")
        await b.plugin["redpacket"].open_packet(one["id"])
        await assert_no_best_luck(alice_notices, a, one["id"], kind="lucky")
        for packet_id in (eq["id"], ex["id"], one["id"]):  # the stored state has none either
            assert (await feat.repo.get_packet(packet_id)).best_luck is None
        # a lucky packet of two shares still names its best luck, in the notice and the details
        lucky = await a.plugin["redpacket"].send_packet(ROOM, client_id="lucky", total=300, count=2, lang="en")
        got = {"alice@localhost": int((await a.plugin["redpacket"].open_packet(lucky["id"]))["amount"]),
               "bob@localhost": int((await b.plugin["redpacket"].open_packet(lucky["id"]))["amount"])}
        best = max(got, key=lambda who: (got[who], who == "alice@localhost"))  # ties: the earliest grab
        for watcher in (alice_notices, carol):
            child = ours(await watcher.message(finished_of(lucky["id"])), "finished")
            assert (child.get("best-luck"), child.get("amount")) == (best, str(got[best]))
        details = await a.plugin["redpacket"].details(lucky["id"])
        assert details["best-luck"] == best
        marks = [(g["by"], g.xml.get("best")) for g in slixmpp_plugin.entries(details, slixmpp_plugin.Grab)]
        assert [by for by, mark in marks if mark == "true"] == [best]
    finally:
        for x in (alice_notices, carol):
            x.close()
        for c in (a, b):
            await slix_close(c)


async def test_retried_send_posts_the_packet_once(server):
    feat = server.features["redpacket"]
    a, b = await member(server, "alice"), await member(server, "bob")
    await add_user(server, "carol")
    bob, carol = await Watcher.online(server, "bob"), await Watcher.online(server, "carol")
    try:
        await create(a, ROOM, "Alice")
        await carol.join(ROOM, "Carol")
        await feat.repo.topup("alice@localhost", 5000, feat.now())
        for to, watcher in ((ROOM, carol), ("bob@localhost", bob)):
            count = 3 if to == ROOM else 1
            first = await a.plugin["redpacket"].send_packet(to, client_id=f"retry-{to}", total=300, count=count)
            for _ in range(3):  # the same request again: the first result, nothing posted
                again = await a.plugin["redpacket"].send_packet(to, client_id=f"retry-{to}", total=300, count=count)
                assert (again["id"], again["retry"], again["balance"]) == (first["id"], "true", first["balance"])
            # a new packet after the retries: everything posted before it has arrived by then
            marker = await a.plugin["redpacket"].send_packet(to, client_id=f"marker-{to}", total=10)
            await watcher.message(lambda m, pid=marker["id"]: ours(m, "redpacket", pid) is not None)
            posted = [m for m in watcher.seen if ours(m, "redpacket", first["id"]) is not None]
            assert len(posted) == 1, [etree.tostring(m) for m in posted]
        assert await a.plugin["redpacket"].balance() == 5000 - 300 - 10 - 300 - 10
    finally:
        for x in (bob, carol):
            x.close()
        for c in (a, b):
            await slix_close(c)


async def test_every_body_the_feature_sends_carries_its_language(server):
    feat = server.features["redpacket"]
    a, b = await member(server, "alice"), await member(server, "bob")
    await add_user(server, "carol")
    alice, bob, carol = (await Watcher.online(server, "alice"), await Watcher.online(server, "bob"),
                         await Watcher.online(server, "carol"))
    try:
        await create(a, ROOM, "Alice")
        await join(b, ROOM, "Bob")
        await carol.join(ROOM, "Carol")
        await feat.repo.topup("alice@localhost", 5000, feat.now())
        room = await a.plugin["redpacket"].send_packet(ROOM, client_id="room", total=300, count=2, lang="zh")
        chat = await a.plugin["redpacket"].send_packet("bob@localhost", client_id="chat", total=100, lang="zh")
        late = await a.plugin["redpacket"].send_packet("bob@localhost", client_id="late", total=50, lang="zh")
        await a.plugin["redpacket"].open_packet(room["id"])
        await b.plugin["redpacket"].open_packet(room["id"])
        await b.plugin["redpacket"].open_packet(chat["id"])
        await feat.refund(late["id"], force=True)
        expected = [
            (carol, "redpacket", room["id"]),  # the room's packet
            (bob, "redpacket", chat["id"]),  # the one-to-one packet
            (alice, "grabbed", room["id"]),  # the sender's notices
            (alice, "finished", room["id"]),
            (carol, "finished", room["id"]),  # the room's notice of the end
            (alice, "grabbed", chat["id"]),
            (alice, "finished", chat["id"]),
            (alice, "refunded", late["id"]),
        ]
        for watcher, name, packet_id in expected:
            m = await watcher.message(lambda m, n=name, p=packet_id: ours(m, n, p) is not None)
            lang, text = body_lang(m)
            assert lang == "zh" and text, (name, etree.tostring(m, encoding="unicode"))
    finally:
        for x in (alice, bob, carol):
            x.close()
        for c in (a, b):
            await slix_close(c)
