"""XEP-0163 PEP (XEP-0060 on accounts, XEP-0223 private nodes) over the wire with slixmpp and aioxmpp."""
from __future__ import annotations

from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from xmppd.jid import JID

from ..helpers import running_server, slix_close
from .pep_support import EVENT, PUBSUB, PepClient, befriend

TUNE = "http://jabber.org/protocol/tune"
OWNER = PUBSUB + "#owner"
ERRORS = PUBSUB + "#errors"


def publish(node: str, payload: str, item: str | None = None, options: dict[str, str] | None = None) -> str:
    idattr = f" id='{item}'" if item else ""
    po = ""
    if options:
        fields = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in options.items())
        po = ("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
              f"<value>{PUBSUB}#publish-options</value></field>{fields}</x></publish-options>")
    return f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item{idattr}>{payload}</item></publish>{po}</pubsub>"


def tune(artist: str) -> str:
    return f"<tune xmlns='{TUNE}'><artist>{artist}</artist></tune>"


def items(node: str, max_items: int | None = None) -> str:
    m = f" max_items='{max_items}'" if max_items else ""
    return f"<pubsub xmlns='{PUBSUB}'><items node='{node}'{m}/></pubsub>"


def error_of(err: pytest.ExceptionInfo[IqError]) -> tuple[str, str | None]:
    """(defined condition, pubsub#errors condition or None)."""
    xml = err.value.iq.xml
    app = xml.find(f"{{jabber:client}}error/{{{ERRORS}}}*")
    return err.value.iq["error"]["condition"], (app.tag.split("}")[1] if app is not None else None)


def item_ids(result) -> list[str]:
    return [i.get("id") for i in result.iter(f"{{{PUBSUB}}}item")]


async def close(*clients: PepClient) -> None:
    for c in clients:
        await slix_close(c.c)


async def test_publish_auto_creates_and_notifies_by_caps_and_presence(server):
    alice = await PepClient.login(server, "alice", (TUNE,))
    bob = await PepClient.login(server, "bob", (TUNE,))
    carol = await PepClient.login(server, "carol")  # a contact without +notify
    dave = await PepClient.login(server, "dave", (TUNE,))  # interested, not a contact
    await befriend(server, alice.bare, bob.bare)
    await befriend(server, alice.bare, carol.bare)
    try:
        result = await alice.iq("set", publish(TUNE, tune("Yes"), "current"))
        assert item_ids(result) == ["current"]
        for who in (bob, alice):  # contacts and the owner's own resources
            msg = await who.event(TUNE)
            assert msg.get("from") == alice.bare and msg.get("type") == "headline"
            assert msg.findtext(f"{{{EVENT}}}event/{{{EVENT}}}items/{{{EVENT}}}item/{{{TUNE}}}tune/{{{TUNE}}}artist") == "Yes"
        await carol.no_event()
        await dave.no_event()
        # retrieval: contacts read (presence access model), strangers are refused
        got = await bob.iq("get", items(TUNE), to=alice.bare)
        assert item_ids(got) == ["current"]
        with pytest.raises(IqError) as err:
            await dave.iq("get", items(TUNE), to=alice.bare)
        assert error_of(err) == ("not-authorized", "presence-subscription-required")
        # only the owner publishes
        with pytest.raises(IqError) as err:
            await bob.iq("set", publish(TUNE, tune("No")), to=alice.bare)
        assert error_of(err)[0] == "forbidden"
        # the account advertises PEP
        info = await bob.c.plugin["xep_0030"].get_info(jid=alice.bare)
        assert ("pubsub", "pep", None, None) in info["disco_info"]["identities"]
        features = info["disco_info"]["features"]
        for f in ("publish", "auto-create", "publish-options", "access-whitelist", "filtered-notifications", "last-published"):
            assert f"{PUBSUB}#{f}" in features
        assert f"{PUBSUB}#subscribe" not in features  # explicit PEP subscriptions are not offered
    finally:
        await close(alice, bob, carol, dave)


async def test_last_item_is_delivered_on_available_presence(server):
    alice = await PepClient.login(server, "alice", (TUNE,))
    await PepClient.login(server, "bob", presence=False)  # create the account
    await befriend(server, alice.bare, f"bob@{server.domain}")
    try:
        await alice.iq("set", publish(TUNE, tune("Old")))
        await alice.iq("set", publish(TUNE, tune("New")))
        bob = await PepClient.login(server, "bob", (TUNE,), create=False)
        msg = await bob.event(TUNE)
        assert msg.findtext(f".//{{{TUNE}}}artist") == "New"
        assert msg.find("{urn:xmpp:delay}delay") is not None
        # its own last item too, on a second resource of the owner
        alice2 = await PepClient.login(server, "alice", (TUNE,), create=False)
        assert (await alice2.event(TUNE)).findtext(f".//{{{TUNE}}}artist") == "New"
        await close(bob, alice2)
    finally:
        await close(alice)


async def test_publish_options_preconditions_max_items_and_private_nodes(server):
    alice = await PepClient.login(server, "alice", (TUNE,))
    bob = await PepClient.login(server, "bob", ("urn:example:private",))
    await befriend(server, alice.bare, bob.bare)
    node = "urn:example:private"
    private = {"access_model": "whitelist", "persist_items": "true", "max_items": "max"}
    try:
        for i in range(3):
            await alice.iq("set", publish(node, f"<p xmlns='{node}'>{i}</p>", f"i{i}", private))
        got = await alice.iq("get", items(node))
        assert item_ids(got) == ["i0", "i1", "i2"]  # max = the server's bound: all kept
        assert item_ids(await alice.iq("get", items(node, 2))) == ["i1", "i2"]
        await bob.no_event()  # whitelist: nobody but the owner is notified
        with pytest.raises(IqError) as err:
            await bob.iq("get", items(node), to=alice.bare)
        assert error_of(err) == ("not-allowed", "closed-node")
        # a publish-option that differs from the node's configuration
        with pytest.raises(IqError) as err:
            await alice.iq("set", publish(node, f"<p xmlns='{node}'/>", None, {"access_model": "open"}))
        assert error_of(err) == ("conflict", "precondition-not-met")
        with pytest.raises(IqError) as err:
            await alice.iq("set", publish(node, f"<p xmlns='{node}'/>", None, {"max_items": "100000"}))
        assert error_of(err) == ("conflict", "precondition-not-met")
        with pytest.raises(IqError) as err:
            await alice.iq("set", publish(node, f"<p xmlns='{node}'/>", None, {"unknown_option": "1"}))
        assert error_of(err) == ("conflict", "precondition-not-met")
        # the configuration form, and a change of max_items that drops the oldest items
        form = await alice.iq("get", f"<pubsub xmlns='{OWNER}'><configure node='{node}'/></pubsub>")
        values = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form.iter("{jabber:x:data}field")}
        assert values["pubsub#access_model"] == "whitelist" and values["pubsub#max_items"] == "256"
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><configure node='{node}'><x xmlns='jabber:x:data' type='submit'>"
                              f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field>"
                              "<field var='pubsub#max_items'><value>1</value></field></x></configure></pubsub>")
        assert item_ids(await alice.iq("get", items(node))) == ["i2"]
        with pytest.raises(IqError) as err:
            await bob.iq("get", f"<pubsub xmlns='{OWNER}'><configure node='{node}'/></pubsub>", to=alice.bare)
        assert error_of(err)[0] == "forbidden"
    finally:
        await close(alice, bob)


async def test_retract_purge_delete_and_not_found(storage_server):
    """On SQLite and MariaDB: the item store PEP and PubSub share (xmppd/features/pep/items.py)."""
    server = storage_server
    alice = await PepClient.login(server, "alice", (TUNE,))
    bob = await PepClient.login(server, "bob", (TUNE,))
    await befriend(server, alice.bare, bob.bare)
    try:
        await alice.iq("set", publish(TUNE, tune("A"), "a", {"max_items": "10"}))
        await alice.iq("set", publish(TUNE, tune("B"), "b"))
        for _ in range(2):
            await bob.event(TUNE)
        await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><retract node='{TUNE}' notify='true'><item id='a'/></retract></pubsub>")
        ev = await bob.event(TUNE)
        assert ev.find(f".//{{{EVENT}}}retract").get("id") == "a"
        assert item_ids(await bob.iq("get", items(TUNE), to=alice.bare)) == ["b"]
        with pytest.raises(IqError) as err:
            await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><retract node='{TUNE}'><item id='a'/></retract></pubsub>")
        assert error_of(err)[0] == "item-not-found"
        with pytest.raises(IqError) as err:
            await bob.iq("get", items("urn:example:none"), to=alice.bare)
        assert error_of(err)[0] == "item-not-found"
        with pytest.raises(IqError) as err:
            await bob.iq("set", f"<pubsub xmlns='{OWNER}'><purge node='{TUNE}'/></pubsub>", to=alice.bare)
        assert error_of(err)[0] == "forbidden"
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><purge node='{TUNE}'/></pubsub>")
        assert (await bob.event(TUNE)).find(f".//{{{EVENT}}}purge") is not None
        assert item_ids(await bob.iq("get", items(TUNE), to=alice.bare)) == []
        await alice.iq("set", f"<pubsub xmlns='{OWNER}'><delete node='{TUNE}'/></pubsub>")
        assert (await bob.event(TUNE)).find(f".//{{{EVENT}}}delete") is not None
        with pytest.raises(IqError) as err:
            await bob.iq("get", items(TUNE), to=alice.bare)
        assert error_of(err)[0] == "item-not-found"
        with pytest.raises(IqError) as err:
            await alice.iq("set", f"<pubsub xmlns='{OWNER}'><delete node='{TUNE}'/></pubsub>")
        assert error_of(err)[0] == "item-not-found"
        # explicit create, then conflict
        await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><create node='urn:example:made'/></pubsub>")
        with pytest.raises(IqError) as err:
            await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><create node='urn:example:made'/></pubsub>")
        assert error_of(err)[0] == "conflict"
        with pytest.raises(IqError) as err:
            await alice.iq("set", f"<pubsub xmlns='{PUBSUB}'><subscribe node='{TUNE}' jid='{alice.bare}'/></pubsub>")
        assert error_of(err) == ("feature-not-implemented", "unsupported")
    finally:
        await close(alice, bob)


async def test_roster_access_model_admits_allowed_groups_only(server):
    alice = await PepClient.login(server, "alice")
    bob = await PepClient.login(server, "bob", ("urn:example:fam",))
    carol = await PepClient.login(server, "carol", ("urn:example:fam",))
    await befriend(server, alice.bare, bob.bare, groups=("Family",))
    await befriend(server, alice.bare, carol.bare, groups=("Work",))
    try:
        opts = {"access_model": "roster", "roster_groups_allowed": "Family"}
        await alice.iq("set", publish("urn:example:fam", "<f xmlns='urn:example:fam'/>", "x", opts))
        await bob.event("urn:example:fam")
        await carol.no_event()
        assert item_ids(await bob.iq("get", items("urn:example:fam"), to=alice.bare)) == ["x"]
        with pytest.raises(IqError) as err:
            await carol.iq("get", items("urn:example:fam"), to=alice.bare)
        assert error_of(err) == ("not-authorized", "not-in-roster-group")
    finally:
        await close(alice, bob, carol)


async def test_limits_on_item_size_nodes_and_items(tmp_path: Path):
    async with running_server(tmp_path, "pep.max_item_size=1024", "pep.max_nodes=2", "pep.max_items=3") as server:
        alice = await PepClient.login(server, "alice")
        try:
            with pytest.raises(IqError) as err:
                await alice.iq("set", publish("urn:x:a", f"<a xmlns='urn:x:a'>{'x' * 1100}</a>"))
            assert error_of(err) == ("not-acceptable", "payload-too-big")
            for n in range(4):
                await alice.iq("set", publish("urn:x:a", f"<a xmlns='urn:x:a'>{n}</a>", f"i{n}", {"max_items": "max"}))
            assert item_ids(await alice.iq("get", items("urn:x:a"))) == ["i1", "i2", "i3"]
            await alice.iq("set", publish("urn:x:b", "<b xmlns='urn:x:b'/>"))
            with pytest.raises(IqError) as err:
                await alice.iq("set", publish("urn:x:c", "<c xmlns='urn:x:c'/>"))
            assert error_of(err) == ("not-allowed", "max-nodes-exceeded")
            for bad in (f"<pubsub xmlns='{PUBSUB}'><publish node='urn:x:a'><item><a xmlns='urn:x:a'/><b xmlns='urn:x:b'/></item></publish></pubsub>",
                        f"<pubsub xmlns='{PUBSUB}'><publish node='urn:x:a'><item/></publish></pubsub>",
                        f"<pubsub xmlns='{PUBSUB}'><publish><item><a xmlns='urn:x:a'/></item></publish></pubsub>"):
                with pytest.raises(IqError) as err:
                    await alice.iq("set", bad)
                assert error_of(err)[0] == "bad-request"
        finally:
            await close(alice)


async def test_aioxmpp_pep_client_gets_caps_filtered_notifications_and_publishes_with_options(server):
    import asyncio

    import aioxmpp
    import aioxmpp.avatar.xso
    import aioxmpp.entitycaps
    import aioxmpp.pep

    from ..aiox import aioxmpp_client
    from ..helpers import add_user

    metadata = "urn:xmpp:avatar:metadata"
    bob_jid = await add_user(server, "bob")
    alice = await PepClient.login(server, "alice")
    await befriend(server, alice.bare, bob_jid)
    try:
        async with aioxmpp_client(server, bob_jid) as bob:
            bob.summon(aioxmpp.EntityCapsService)
            pep = bob.summon(aioxmpp.PEPClient)
            claimed = pep.claim_pep_node(metadata, notify=True)
            got: asyncio.Queue = asyncio.Queue()
            claimed.on_item_publish.connect(lambda jid, node, item, message=None: got.put_nowait((str(jid), node, item.id_)))
            await asyncio.sleep(0)  # the caps service recomputes its ver
            bob.summon(aioxmpp.PresenceServer).resend_presence()
            caps = server.features["caps"].cache
            for _ in range(500):  # until the server learnt bob's +notify from his caps
                sessions = server.sessions.of(JID.parse(bob_jid))
                if sessions and caps.supports(sessions[0], metadata + "+notify"):
                    break
                await asyncio.sleep(0.01)
            await alice.iq("set", publish(metadata, f"<metadata xmlns='{metadata}'/>", "m1"))
            assert await asyncio.wait_for(got.get(), 5) == (alice.bare, metadata, "m1")
            # aioxmpp publishes with an access-model precondition; a different one is refused
            assert await pep.available()
            await pep.publish("urn:xmpp:avatar:data", aioxmpp.avatar.xso.Data(b"\x89PNG"), id_="d1", access_model="whitelist")
            with pytest.raises(IqError) as err:
                await alice.iq("get", items("urn:xmpp:avatar:data"), to=bob_jid)
            assert error_of(err) == ("not-allowed", "closed-node")
            with pytest.raises(aioxmpp.errors.XMPPCancelError) as cancel:
                await pep.publish("urn:xmpp:avatar:data", aioxmpp.avatar.xso.Data(b"\x89PNG"), id_="d2", access_model="presence")
            assert cancel.value.condition == aioxmpp.ErrorCondition.CONFLICT
    finally:
        await close(alice)


async def test_hostile_and_malformed_requests_get_standard_errors(server):
    alice = await PepClient.login(server, "alice")
    bob = await PepClient.login(server, "bob")
    try:
        await alice.iq("set", publish("urn:x:a", "<a xmlns='urn:x:a'/>", "1"))
        affs = await alice.iq("get", f"<pubsub xmlns='{PUBSUB}'><affiliations/></pubsub>")
        assert [(a.get("node"), a.get("affiliation")) for a in affs.iter(f"{{{PUBSUB}}}affiliation")] == [("urn:x:a", "owner")]
        cases = [
            (alice, "set", publish("n" * 300, "<a xmlns='urn:x:a'/>"), None, "not-acceptable"),
            (alice, "set", publish("urn:x:a", "<a xmlns='urn:x:a'/>", "i" * 300), None, "not-acceptable"),
            (alice, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='urn:x:a'><item><a xmlns='urn:x:a'/></item></publish>"
                           "<publish-options><x xmlns='jabber:x:data' type='bogus'/></publish-options></pubsub>", None, "bad-request"),
            (alice, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='urn:x:a'><item><a xmlns='urn:x:a'/></item></publish>"
                           "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:wrong</value></field>"
                           "</x></publish-options></pubsub>", None, "bad-request"),
            (alice, "set", f"<pubsub xmlns='{OWNER}'><configure node='urn:x:a'><x xmlns='jabber:x:data' type='submit'>"
                           "<field var='pubsub#access_model'><value>authorize</value></field></x></configure></pubsub>", None, "not-acceptable"),
            (alice, "set", f"<pubsub xmlns='{OWNER}'><configure node='urn:x:a'/></pubsub>", None, "bad-request"),
            (alice, "get", f"<pubsub xmlns='{PUBSUB}'><items node='urn:x:a' max_items='-1'/></pubsub>", None, "bad-request"),
            (alice, "get", f"<pubsub xmlns='{PUBSUB}'/>", None, "bad-request"),
            (alice, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='urn:x:a'/><retract node='urn:x:a'/></pubsub>", None, "bad-request"),
            (bob, "get", f"<pubsub xmlns='{PUBSUB}'><affiliations/></pubsub>", alice.bare, "forbidden"),
            (bob, "get", items("urn:x:a"), f"nobody@{server.domain}", "item-not-found"),
            (bob, "set", f"<pubsub xmlns='{PUBSUB}'><create node='urn:x:b'/></pubsub>", alice.bare, "forbidden"),
            (bob, "set", f"<pubsub xmlns='{OWNER}'><delete node='urn:x:a'/></pubsub>", alice.bare, "forbidden"),
        ]
        for who, typ, xml, to, condition in cases:
            with pytest.raises(IqError) as err:
                await who.iq(typ, xml, to=to)
            assert error_of(err)[0] == condition, xml
        assert item_ids(await alice.iq("get", items("urn:x:a"))) == ["1"]  # nothing changed
    finally:
        await close(alice, bob)
