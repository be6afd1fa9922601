"""XEP-0045 §8-§10 over the wire: the role and affiliation permission matrix, entry rules, invitations, voice, destruction."""
from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError, PresenceError

from ..helpers import running_server, slix_close
from .muc_support import MUC_USER, codes, configure, create, join, room_jid, user

pytestmark = pytest.mark.interop


@pytest.fixture
async def srv(tmp_path):
    async with running_server(tmp_path, "muc.max_rooms_per_user=2") as s:
        yield s


@pytest.fixture
async def crowd(srv):
    """owner alice, admin adam, member mary, participant pete, in room 'club'."""
    names = ("alice", "adam", "mary", "pete", "olga")
    clients = {n: await user(srv, n) for n in names}
    room = room_jid(srv, "club")
    await create(clients["alice"], room, "Alice")
    muc = clients["alice"].plugin["xep_0045"]
    await muc.set_affiliation(room, "admin", jid=f"adam@{srv.domain}", timeout=5)
    await muc.set_affiliation(room, "member", jid=f"mary@{srv.domain}", timeout=5)
    for n in ("adam", "mary", "pete"):
        await join(clients[n], room, n.capitalize())
    yield room, clients
    for c in clients.values():
        await slix_close(c)


async def _iq_error(coro):
    with pytest.raises(IqError) as err:
        await coro
    return err.value.condition


async def test_roles_follow_affiliations(crowd):
    room, c = crowd
    muc = c["alice"].plugin["xep_0045"]
    mods = await muc.get_roles_list(room, "moderator", timeout=5)
    assert sorted(mods) == ["Adam", "Alice"]
    members = await c["adam"].plugin["xep_0045"].get_affiliation_list(room, "member", timeout=5)
    assert [str(j) for j in members] == ["mary@localhost"]


async def test_participant_cannot_kick_and_member_cannot_configure(crowd):
    room, c = crowd
    assert await _iq_error(c["pete"].plugin["xep_0045"].set_role(room, "Mary", "none", timeout=5)) == "forbidden"
    assert await _iq_error(c["mary"].plugin["xep_0045"].get_room_config(room, timeout=5)) == "forbidden"
    assert await _iq_error(c["adam"].plugin["xep_0045"].get_room_config(room, timeout=5)) == "forbidden"
    assert await _iq_error(c["mary"].plugin["xep_0045"].set_affiliation(room, "outcast", jid="pete@localhost", timeout=5)) == "forbidden"
    assert await _iq_error(c["pete"].plugin["xep_0045"].get_affiliation_list(room, "member", timeout=5)) == "forbidden"


async def test_admin_cannot_ban_owner_nor_grant_admin(crowd):
    room, c = crowd
    adam = c["adam"].plugin["xep_0045"]
    assert await _iq_error(adam.set_affiliation(room, "outcast", jid="alice@localhost", timeout=5)) == "not-allowed"
    assert await _iq_error(adam.set_role(room, "Alice", "none", timeout=5)) == "not-allowed"
    assert await _iq_error(adam.set_affiliation(room, "admin", jid="pete@localhost", timeout=5)) == "forbidden"
    # the last owner can't step down
    assert await _iq_error(c["alice"].plugin["xep_0045"].set_affiliation(room, "member", jid="alice@localhost", timeout=5)) == "conflict"


async def test_moderator_cannot_kick_admin(crowd):
    room, c = crowd
    alice = c["alice"].plugin["xep_0045"]
    await alice.set_role(room, "Mary", "moderator", timeout=5)  # a member made moderator
    mary = c["mary"].plugin["xep_0045"]
    assert await _iq_error(mary.set_role(room, "Adam", "none", timeout=5)) == "not-allowed"
    assert await _iq_error(mary.set_role(room, "Adam", "visitor", timeout=5)) == "not-allowed"
    # but may kick a participant: 307 to everyone, with 110 to the kicked
    c["olga"].inbox.drain()
    await mary.set_role(room, "Pete", "none", reason="spam", timeout=5)
    kicked = await c["pete"].inbox.presence(lambda p: p["type"] == "unavailable" and str(p["from"]) == f"{room}/Pete")
    assert {"110", "307"} <= codes(kicked)
    assert kicked.xml.find(f".//{{{MUC_USER}}}reason").text == "spam"
    seen = await c["alice"].inbox.presence(lambda p: p["type"] == "unavailable" and str(p["from"]) == f"{room}/Pete")
    assert codes(seen) == {"307"}


async def test_ban_and_entry_rules(crowd, srv):
    room, c = crowd
    await c["alice"].plugin["xep_0045"].set_affiliation(room, "outcast", jid="pete@localhost", reason="bye", timeout=5)
    banned = await c["pete"].inbox.presence(lambda p: p["type"] == "unavailable")
    assert {"110", "301"} <= codes(banned)
    with pytest.raises(PresenceError) as err:
        await join(c["pete"], room, "Pete")
    assert err.value.condition == "forbidden"
    # members-only: 407 for non-members; members get in
    await configure(c["alice"], room, members_only=True)
    with pytest.raises(PresenceError) as err:
        await join(c["olga"], room, "Olga")
    assert err.value.condition == "registration-required"
    # password: 401 without it or with a wrong one
    await configure(c["alice"], room, members_only=False, password="s3cret")
    with pytest.raises(PresenceError) as err:
        await join(c["olga"], room, "Olga", password="wrong")
    assert err.value.condition == "not-authorized"
    await join(c["olga"], room, "Olga", password="s3cret")


async def test_max_occupants_and_room_creation_limit(srv):
    a, b, d = await user(srv, "alice"), await user(srv, "bob"), await user(srv, "dora")
    try:
        room = room_jid(srv, "tiny")
        await create(a, room, "Alice", max_occupants=5)
        srv.features["muc"].get_room(room).config.max_occupants = 2
        await join(b, room, "Bob")
        with pytest.raises(PresenceError) as err:
            await join(d, room, "Dora")
        assert err.value.condition == "service-unavailable"
        await create(a, room_jid(srv, "second"), "Alice")
        with pytest.raises(PresenceError) as err:
            await join(a, room_jid(srv, "third"), "Alice")
        assert err.value.condition == "not-allowed"
    finally:
        for cl in (a, b, d):
            await slix_close(cl)


async def test_moderated_room_voice_grant_revoke_and_request(crowd):
    room, c = crowd
    await configure(c["alice"], room, moderated=True)
    await join(c["olga"], room, "Olga")  # no affiliation: a visitor
    c["olga"].send_message(mto=room, mbody="can I talk?", mtype="groupchat")
    err = await c["olga"].inbox.message(lambda m: m["type"] == "error")
    assert err["error"]["condition"] == "forbidden"
    # §7.13 voice request -> moderators get the form; approval grants voice
    c["olga"].plugin["xep_0045"].request_voice(room, "participant")
    req = await c["adam"].inbox.message(lambda m: m.xml.find("{jabber:x:data}x") is not None)
    form = req.xml.find("{jabber:x:data}x")
    values = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form.findall("{jabber:x:data}field")}
    assert values["muc#roomnick"] == "Olga" and values["muc#role"] == "participant"
    approve = c["adam"].make_message(mto=room)
    approve.append(__import__("slixmpp").plugins.xep_0004.Form())
    approve["form"]["type"] = "submit"
    approve["form"].add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#request")
    approve["form"].add_field(var="muc#roomnick", value="Olga")
    approve["form"].add_field(var="muc#request_allow", value="true")
    approve.send()
    voiced = await c["olga"].inbox.presence(lambda p: str(p["from"]) == f"{room}/Olga" and p["muc"]["role"] == "participant")
    assert "110" in codes(voiced)
    # revoke voice from a member participant
    await c["adam"].plugin["xep_0045"].set_role(room, "Olga", "visitor", timeout=5)
    await c["olga"].inbox.presence(lambda p: str(p["from"]) == f"{room}/Olga" and p["muc"]["role"] == "visitor")
    # a participant can't grant voice
    assert await _iq_error(c["pete"].plugin["xep_0045"].set_role(room, "Olga", "participant", timeout=5)) == "forbidden"


async def test_mediated_invitation_and_decline(crowd, srv):
    room, c = crowd
    await configure(c["alice"], room, members_only=True)
    c["alice"].plugin["xep_0045"].invite(room, "olga@localhost", reason="join us")
    inv = await c["olga"].inbox.message(lambda m: m.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite") is not None)
    assert str(inv["from"]) == room
    assert inv.xml.find(f".//{{{MUC_USER}}}invite").get("from").startswith("alice@localhost")
    # §7.8.2: in a members-only room the invitee becomes a member and may enter
    await join(c["olga"], room, "Olga")
    c["olga"].plugin["xep_0045"].decline(room, "alice@localhost", reason="busy later")
    dec = await c["alice"].inbox.message(lambda m: m.xml.find(f".//{{{MUC_USER}}}decline") is not None)
    assert dec.xml.find(f".//{{{MUC_USER}}}decline").get("from") == "olga@localhost"
    # a member may not invite when invitations are reserved to admins
    c["mary"].plugin["xep_0045"].invite(room, "dave@localhost")
    err = await c["mary"].inbox.message(lambda m: m["type"] == "error")
    assert err["error"]["condition"] == "forbidden"


async def test_direct_invitation_is_routed(crowd):
    room, c = crowd
    c["pete"].plugin["xep_0249"].send_invitation("olga@localhost", room, reason="come")
    got = await c["olga"].inbox.message(lambda m: m.xml.find("{jabber:x:conference}x") is not None)
    assert got.xml.find("{jabber:x:conference}x").get("jid") == room


async def test_destroy_with_alternate_venue(crowd, srv):
    room, c = crowd
    assert await _iq_error(c["adam"].plugin["xep_0045"].destroy(room, timeout=5)) == "forbidden"
    await c["alice"].plugin["xep_0045"].destroy(room, reason="moving", altroom=room_jid(srv, "newclub"), timeout=5)
    gone = await c["pete"].inbox.presence(lambda p: p["type"] == "unavailable" and p.xml.find(f".//{{{MUC_USER}}}destroy") is not None)
    d = gone.xml.find(f".//{{{MUC_USER}}}destroy")
    assert d.get("jid") == room_jid(srv, "newclub") and d.findtext(f"{{{MUC_USER}}}reason") == "moving"
    assert srv.features["muc"].get_room(room) is None


async def test_config_change_notifies_104_and_172(crowd):
    room, c = crowd
    await configure(c["alice"], room, whois="anyone", name="The Club")
    msg = await c["pete"].inbox.message(lambda m: m.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}status") is not None)
    assert {s.get("code") for s in msg.xml.findall(f".//{{{MUC_USER}}}status")} == {"104", "172"}
    # a bad value is not-acceptable
    with pytest.raises(IqError) as err:
        await configure(c["alice"], room, whois="everybody")
    assert err.value.condition == "not-acceptable"
