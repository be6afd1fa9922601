"""XEP-0357 push notifications over the wire: a tiny push service (a slixmpp account) gets the
§5 publish when the user is offline, hibernating (XEP-0198) or subscribed to a group (MUC/Sub)."""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from xmppd.jid import JID

from ..helpers import add_user, running_server, slix, slix_close
from . import muc_support as M
from .smacks_support import SmClient

pytestmark = pytest.mark.interop

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
X = "{jabber:x:data}"
SERVICE = "pushsvc@localhost/app"


class PushService:
    """The app server: answers every publish with a result and remembers it."""

    def __init__(self, client) -> None:
        self.client = client
        self.publishes: asyncio.Queue = asyncio.Queue()
        client.register_handler(Callback("push-publish", MatchXPath(f"{{jabber:client}}iq/{{{PUBSUB}}}pubsub"), self._on))

    def _on(self, iq) -> None:
        self.publishes.put_nowait(iq.xml)
        iq.reply().send()

    async def next(self, timeout: float = 5) -> dict:
        iq = await asyncio.wait_for(self.publishes.get(), timeout)
        assert iq.get("type") == "set"
        publish = iq.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        form = publish.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification/{X}x")
        fields = {f.get("var"): f.findtext(f"{X}value") for f in form.findall(f"{X}field")}
        opts = iq.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish-options/{X}x")
        options = {f.get("var"): f.findtext(f"{X}value") for f in opts.findall(f"{X}field")} if opts is not None else {}
        return {"from": iq.get("from"), "node": publish.get("node"), "fields": fields, "options": options}


def _enable(client, node: str, secret: str | None = "s3cret", jid: str = SERVICE):
    iq = client.make_iq_set()
    en = ET.SubElement(iq.xml, f"{{{PUSH}}}enable", {"jid": jid, "node": node})
    if secret:
        x = ET.SubElement(en, f"{X}x", {"type": "submit"})
        for var, value in (("FORM_TYPE", "http://jabber.org/protocol/pubsub#publish-options"), ("secret", secret)):
            f = ET.SubElement(x, f"{X}field", {"var": var})
            ET.SubElement(f, f"{X}value").text = value
    return iq.send(timeout=5)


async def _setup(srv):
    for u in ("alice", "bob", "pushsvc"):
        await add_user(srv, u)
    svc_client = await slix(srv, SERVICE)
    return PushService(svc_client)


async def test_offline_user_gets_a_push_with_the_summary(tmp_path):
    async with running_server(tmp_path, "push.include=body") as srv:
        svc = await _setup(srv)
        alice = await slix(srv, "alice@localhost/phone", plugins=("xep_0030",))
        bob = await slix(srv, "bob@localhost/desk")
        try:
            info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
            assert PUSH in info["disco_info"]["features"]
            await _enable(alice, "node-1")
            # online: no push
            alice.send_presence()
            await asyncio.sleep(0.2)
            bob.send_message(mto="alice@localhost", mbody="are you there?", mtype="chat")
            await asyncio.sleep(0.3)
            assert svc.publishes.empty()
            await slix_close(alice)
            await asyncio.sleep(0.2)
            bob.send_message(mto="alice@localhost", mbody="call me", mtype="chat")
            p = await svc.next()
            assert p["from"] == "alice@localhost" and p["node"] == "node-1"
            assert p["fields"] == {
                "FORM_TYPE": "urn:xmpp:push:summary",
                "message-count": "1",
                "last-message-sender": "bob@localhost/desk",
                "last-message-body": "call me",
            }
            assert p["options"] == {"FORM_TYPE": "http://jabber.org/protocol/pubsub#publish-options", "secret": "s3cret"}
            bob.send_message(mto="alice@localhost/phone", mbody="again", mtype="chat")
            assert (await svc.next())["fields"]["message-count"] == "2"
            # chat states alone wake nobody
            m = bob.make_message(mto="alice@localhost", mtype="chat")
            m.xml.append(ET.fromstring("<composing xmlns='http://jabber.org/protocol/chatstates'/>"))
            m.send()
            await asyncio.sleep(0.3)
            assert svc.publishes.empty()
        finally:
            await slix_close(bob)
            await slix_close(svc.client)


async def test_privacy_level_count_and_disable_and_limits(tmp_path):
    async with running_server(tmp_path, "push.include=count", "push.max_registrations=2") as srv:
        svc = await _setup(srv)
        alice = await slix(srv, "alice@localhost/phone")
        bob = await slix(srv, "bob@localhost/desk")
        try:
            await _enable(alice, "n1", secret=None)
            await _enable(alice, "n1", secret="again")  # the same registration, updated
            await _enable(alice, "n2")
            with pytest.raises(IqError) as exc:
                await _enable(alice, "n3")
            assert exc.value.iq["error"]["condition"] == "resource-constraint"
            iq = alice.make_iq_set()
            ET.SubElement(iq.xml, f"{{{PUSH}}}disable", {"jid": SERVICE, "node": "n2"})
            await iq.send(timeout=5)
            with pytest.raises(IqError) as exc:
                await iq.send(timeout=5)
            assert exc.value.iq["error"]["condition"] == "item-not-found"
            # somebody else's account: forbidden
            iq = bob.make_iq_set(ito="alice@localhost")
            ET.SubElement(iq.xml, f"{{{PUSH}}}enable", {"jid": SERVICE, "node": "evil"})
            with pytest.raises(IqError) as exc:
                await iq.send(timeout=5)
            assert exc.value.iq["error"]["condition"] == "forbidden"
            with pytest.raises(IqError) as exc:
                await _enable(alice, "")
            assert exc.value.iq["error"]["condition"] == "bad-request"
            await slix_close(alice)
            await asyncio.sleep(0.2)
            bob.send_message(mto="alice@localhost", mbody="private words", mtype="chat")
            p = await svc.next()
            assert p["node"] == "n1" and p["fields"] == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1"}
            assert p["options"]["secret"] == "again"
            await asyncio.sleep(0.3)
            assert svc.publishes.empty()  # n2 is gone
        finally:
            await slix_close(bob)
            await slix_close(svc.client)


async def test_hibernating_session_and_group_messages_push(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "smacks.request_every=0") as srv:
        svc = await _setup(srv)
        owner = await M.user(srv, "owner")
        room = M.room_jid(srv, "family")
        await M.create(owner, room, "Mum")
        alice = await SmClient.login(srv, "alice")
        try:
            alice.send_stanza(f"<iq type='set' id='e1'><enable xmlns='{PUSH}' jid='{SERVICE}' node='dev'/></iq>")
            await alice.expect(lambda e: e.get("id") == "e1")
            alice.send_stanza(
                f"<iq type='set' id='s1' to='{room}'><subscribe xmlns='urn:xmpp:mucsub:0' nick='Alice'>"
                "<event node='urn:xmpp:mucsub:nodes:messages'/></subscribe></iq>"
            )
            assert (await alice.expect(lambda e: e.get("id") == "s1")).get("type") == "result"
            alice.send_stanza("<presence/>")
            await alice.drain(0.2)
            session = srv.sessions.get(JID.parse("alice@localhost/phone"))
            alice.cut()
            for _ in range(100):
                if session.hibernating:
                    break
                await asyncio.sleep(0.02)
            assert session.hibernating
            owner.send_message(mto="alice@localhost/phone", mbody="while you sleep", mtype="chat")
            p = await svc.next()
            assert p["fields"]["last-message-sender"].startswith("owner@localhost") and p["fields"]["message-count"] == "1"
            # a message in the group she subscribed to (MUC/Sub event to her bare JID)
            owner.send_message(mto=room, mbody="dinner!", mtype="groupchat")
            p = await svc.next()
            assert p["fields"]["message-count"] == "2" and p["fields"]["last-message-sender"] == room
        finally:
            await slix_close(owner)
            await slix_close(svc.client)
