"""XEP-0060 PubSub service (pubsub.<domain>) over the wire with slixmpp and aioxmpp."""
from __future__ import annotations

from pathlib import Path

import aioxmpp
import aioxmpp.pubsub
import pytest
from slixmpp.exceptions import IqError

from ..aiox import aioxmpp_client
from ..helpers import add_user, running_server, slix_close
from .pep_support import EVENT, PUBSUB, PepClient

OWNER = PUBSUB + "#owner"


def form(fields: dict[str, str], form_type: str = PUBSUB + "#node_config") -> str:
    body = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>"
            f"{body}</x>")


def cond(err: pytest.ExceptionInfo[IqError]) -> tuple[str, str | None]:
    app = err.value.iq.xml.find(f"{{jabber:client}}error/{{{PUBSUB}#errors}}*")
    return err.value.iq["error"]["condition"], (app.tag.split("}")[1] if app is not None else None)


async def test_nodes_subscriptions_affiliations_and_notifications(storage_server):
    """On SQLite and MariaDB: the item store PEP and PubSub share (xmppd/features/pep/items.py)."""
    server = storage_server
    svc = f"pubsub.{server.domain}"
    alice = await PepClient.login(server, "alice")
    bob = await PepClient.login(server, "bob")
    carol = await PepClient.login(server, "carol")
    try:
        info = await alice.c.plugin["xep_0030"].get_items(jid=server.domain)
        assert svc in [i[0] for i in info["disco_items"]["items"]]
        await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><create node='news'/><configure>{form({'title': 'News', 'max_items': '10'})}</configure></pubsub>", to=svc)
        with pytest.raises(IqError) as err:
            await bob.iq("set", f"<pubsub xmlns='{PUBSUB}'><create node='news'/></pubsub>", to=svc)
        assert cond(err)[0] == "conflict"
        sub = await bob.c.plugin["xep_0060"].subscribe(svc, "news")
        assert sub["pubsub"]["subscription"]["subscription"] == "subscribed"
        # only owners and publishers publish
        with pytest.raises(IqError) as err:
            await bob.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='news'><item><p xmlns='urn:x'/></item></publish></pubsub>", to=svc)
        assert cond(err)[0] == "forbidden"
        await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='news'><item id='1'><p xmlns='urn:x'>hello</p></item></publish></pubsub>", to=svc)
        ev = await bob.event("news")
        assert ev.get("from") == svc and ev.findtext(f".//{{{EVENT}}}item/{{urn:x}}p") == "hello"
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><affiliations node='news'><affiliation jid='{bob.bare}' affiliation='publisher'/></affiliations></pubsub>", to=svc)
        await bob.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='news'><item id='2'><p xmlns='urn:x'>from bob</p></item></publish></pubsub>", to=svc)
        assert (await bob.event("news")).find(f".//{{{EVENT}}}item").get("id") == "2"
        got = await carol.c.plugin["xep_0060"].get_items(svc, "news")
        assert [i["id"] for i in got["pubsub"]["items"]] == ["1", "2"]
        affs = await alice.iq("get", f"<pubsub xmlns='{OWNER}'><affiliations node='news'/></pubsub>", to=svc)
        assert {(a.get("jid"), a.get("affiliation")) for a in affs.iter(f"{{{OWNER}}}affiliation")} == {(alice.bare, "owner"), (bob.bare, "publisher")}
        mine = await bob.iq("get", f"<pubsub xmlns='{PUBSUB}'><subscriptions/></pubsub>", to=svc)
        assert [s.get("node") for s in mine.iter(f"{{{PUBSUB}}}subscription")] == ["news"]
        with pytest.raises(IqError) as err:
            await bob.iq("get", f"<pubsub xmlns='{OWNER}'><configure node='news'/></pubsub>", to=svc)
        assert cond(err)[0] == "forbidden"
        with pytest.raises(IqError) as err:  # subscribing someone else
            await carol.iq("set", f"<pubsub xmlns='{PUBSUB}'><subscribe node='news' jid='{bob.bare}'/></pubsub>", to=svc)
        assert cond(err) == ("bad-request", "invalid-jid")
        await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><retract node='news' notify='1'><item id='1'/></retract></pubsub>", to=svc)
        assert (await bob.event("news")).find(f".//{{{EVENT}}}retract").get("id") == "1"
        # whitelist: members only; outcasts nothing
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><configure node='news'>{form({'access_model': 'whitelist'})}</configure></pubsub>", to=svc)
        with pytest.raises(IqError) as err:
            await carol.c.plugin["xep_0060"].get_items(svc, "news")
        assert cond(err) == ("not-allowed", "closed-node")
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><affiliations node='news'><affiliation jid='{carol.bare}' affiliation='member'/></affiliations></pubsub>", to=svc)
        assert [i["id"] for i in (await carol.c.plugin["xep_0060"].get_items(svc, "news"))["pubsub"]["items"]] == ["2"]
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><affiliations node='news'><affiliation jid='{carol.bare}' affiliation='outcast'/></affiliations></pubsub>", to=svc)
        with pytest.raises(IqError) as err:
            await carol.c.plugin["xep_0060"].subscribe(svc, "news")
        assert cond(err)[0] == "forbidden"
        with pytest.raises(IqError) as err:  # the last owner stays
            await alice.iq("set", f"<pubsub xmlns='{OWNER}'><affiliations node='news'><affiliation jid='{alice.bare}' affiliation='none'/></affiliations></pubsub>", to=svc)
        assert cond(err)[0] == "not-acceptable"
        # purge and delete are told to subscribers
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><purge node='news'/></pubsub>", to=svc)
        assert (await bob.event("news")).find(f".//{{{EVENT}}}purge") is not None
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><delete node='news'/></pubsub>", to=svc)
        assert (await bob.event("news")).find(f".//{{{EVENT}}}delete") is not None
        with pytest.raises(IqError) as err:
            await bob.c.plugin["xep_0060"].get_items(svc, "news")
        assert cond(err)[0] == "item-not-found"
    finally:
        for c in (alice, bob, carol):
            await slix_close(c.c)


async def test_aioxmpp_subscribes_and_reads_and_the_last_item_comes_on_subscription(server):
    svc = f"pubsub.{server.domain}"
    alice = await PepClient.login(server, "alice")
    bob_jid = await add_user(server, "bob")
    try:
        await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><create node='feed'/><configure>{form({'send_last_published_item': 'on_sub'})}</configure></pubsub>", to=svc)
        await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='feed'><item id='a'><entry xmlns='http://www.w3.org/2005/Atom'><title>first</title></entry></item></publish></pubsub>", to=svc)
        async with aioxmpp_client(server, bob_jid) as bob:
            pubsub = bob.summon(aioxmpp.PubSubClient)
            features = await pubsub.get_features(aioxmpp.JID.fromstr(svc))
            assert aioxmpp.pubsub.xso.Feature.SUBSCRIBE in features and aioxmpp.pubsub.xso.Feature.PUBLISH in features
            nodes = await pubsub.get_nodes(aioxmpp.JID.fromstr(svc))
            assert [n[0] for n in nodes] == ["feed"]
            received = []
            pubsub.on_item_published.connect(lambda jid, node, item, **kw: received.append((node, item.id_)))
            await pubsub.subscribe(aioxmpp.JID.fromstr(svc), "feed")
            items = await pubsub.get_items(aioxmpp.JID.fromstr(svc), "feed")
            assert [i.id_ for i in items.payload.items] == ["a"]
            await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='feed'><item id='b'><entry xmlns='http://www.w3.org/2005/Atom'/></item></publish></pubsub>", to=svc)
            import asyncio
            for _ in range(500):
                if ("feed", "b") in received:
                    break
                await asyncio.sleep(0.01)
            assert received[0] == ("feed", "a") and ("feed", "b") in received  # the last item on subscription, then the new one
    finally:
        await slix_close(alice.c)


async def test_node_limits_and_account_deletion(tmp_path: Path):
    async with running_server(tmp_path, "pubsub.max_nodes_per_user=1", "pubsub.max_item_size=1024") as server:
        svc = f"pubsub.{server.domain}"
        alice = await PepClient.login(server, "alice")
        try:
            await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><create node='one'/></pubsub>", to=svc)
            with pytest.raises(IqError) as err:
                await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><create node='two'/></pubsub>", to=svc)
            assert cond(err) == ("not-allowed", "max-nodes-exceeded")
            with pytest.raises(IqError) as err:
                await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='one'><item><a xmlns='urn:a'>{'x' * 1100}</a></item></publish></pubsub>", to=svc)
            assert cond(err) == ("not-acceptable", "payload-too-big")
            with pytest.raises(IqError) as err:
                await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='nope'><item><a xmlns='urn:a'/></item></publish></pubsub>", to=svc)
            assert cond(err)[0] == "item-not-found"
            with pytest.raises(IqError) as err:
                await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='one'><item><a xmlns='urn:a'/></item></publish>"
                                      f"<publish-options>{form({'access_model': 'whitelist'}, PUBSUB + '#publish-options')}</publish-options></pubsub>", to=svc)
            assert cond(err) == ("conflict", "precondition-not-met")
        finally:
            await slix_close(alice.c)
        assert await server.account_service.delete("alice")
        assert await server.features["pubsub"].repo.node("one") is None
