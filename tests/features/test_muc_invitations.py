"""XEP-0045 §7.8 invitations and declines over the wire (issue 15 item 4): a room relays a decline
only from an invitee with a pending invitation, one per message; invitations are a few per
message and rate-limited per sender; the recipient's blocklist (XEP-0191) applies to both."""
from __future__ import annotations

import asyncio

import pytest

from ..helpers import add_user, running_server, slix_close
from .muc_support import MUC_USER, create, room_jid, user

pytestmark = pytest.mark.interop

INVITE_RATE = 8


@pytest.fixture
async def srv(tmp_path):
    async with running_server(tmp_path, f"muc.invite_rate={INVITE_RATE}", "muc.max_invites_per_message=3") as s:
        yield s


def declines(n: int, to: str, reason: str = "no") -> str:
    return "".join(f"<decline to='{to}'><reason>{reason}</reason></decline>" for _ in range(n))


def raw(room: str, inner: str, id: str) -> str:
    return f"<message to='{room}' id='{id}'><x xmlns='{MUC_USER}'>{inner}</x></message>"


def has(tag: str):
    return lambda m: m.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}{tag}") is not None


def error_for(id: str):
    return lambda m: m["type"] == "error" and m["id"] == id


def condition(m) -> str:
    """The defined condition as sent (slixmpp does not know every RFC 6120 condition)."""
    [el] = [c for c in m.xml.find("{jabber:client}error") if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}")
            and not c.tag.endswith("}text")]
    return el.tag.split("}")[1]


async def nothing(client, pred, timeout: float = 0.5) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await client.inbox.message(pred, timeout=timeout)


async def test_a_decline_needs_a_pending_invitation_and_comes_one_per_message(srv):
    alice, eve = await user(srv, "alice"), await user(srv, "eve")
    victim = f"victim@{srv.domain}"
    await add_user(srv, "victim")
    room = room_jid(srv, "club")
    offline = srv.features["offline"].repo
    try:
        await create(alice, room, "Alice")
        # eve was never invited: her decline "to" anybody (online or offline) is refused, not relayed
        eve.send_raw(raw(room, declines(1, f"alice@{srv.domain}"), "d1"))
        err = await eve.inbox.message(error_for("d1"))
        assert err["error"]["condition"] == "not-acceptable" and "no pending invitation" in err["error"]["text"]
        await nothing(alice, has("decline"))
        # one stanza with 500 declines to an offline victim: refused whole, the offline store stays empty
        eve.send_raw(raw(room, declines(500, victim), "d2"))
        err = await eve.inbox.message(error_for("d2"))
        assert err["error"]["condition"] == "not-acceptable" and "one invitation per message" in err["error"]["text"]
        assert await offline.count("victim", srv.domain) == 0
        # invited, eve may decline once; the inviter gets exactly that decline
        alice.plugin["xep_0045"].invite(room, f"eve@{srv.domain}", reason="come")
        await eve.inbox.message(has("invite"))
        eve.plugin["xep_0045"].decline(room, f"alice@{srv.domain}", reason="busy")
        dec = await alice.inbox.message(has("decline"))
        assert dec.xml.find(f".//{{{MUC_USER}}}decline").get("from") == f"eve@{srv.domain}"
        assert dec.xml.findtext(f".//{{{MUC_USER}}}reason") == "busy"
        eve.send_raw(raw(room, declines(1, f"alice@{srv.domain}"), "d3"))  # the invitation is used up
        assert (await eve.inbox.message(error_for("d3")))["error"]["condition"] == "not-acceptable"
        await nothing(alice, has("decline"))
        # invite and decline in one message: bad-request
        eve.send_raw(raw(room, f"<invite to='{victim}'/>" + declines(1, f"alice@{srv.domain}"), "d4"))
        assert (await eve.inbox.message(error_for("d4")))["error"]["condition"] == "bad-request"
    finally:
        await slix_close(alice)
        await slix_close(eve)


async def test_the_inviters_blocklist_applies_to_the_decline_and_the_invitees_to_the_invitation(srv):
    alice, carol, dave = await user(srv, "alice"), await user(srv, "carol"), await user(srv, "dave")
    for c in (alice, dave):
        c.register_plugin("xep_0191")
    room = room_jid(srv, "club")
    try:
        await create(alice, room, "Alice")
        alice.plugin["xep_0045"].invite(room, f"carol@{srv.domain}")
        await carol.inbox.message(has("invite"))
        await alice.plugin["xep_0191"].block([f"carol@{srv.domain}"], timeout=5)
        carol.send_raw(raw(room, declines(1, f"alice@{srv.domain}", "let me tell you"), "b1"))
        err = await carol.inbox.message(error_for("b1"))
        assert err["error"]["condition"] == "service-unavailable"
        await nothing(alice, has("decline"))
        # dave blocked alice: her invitation through the room does not reach him
        await dave.plugin["xep_0191"].block([f"alice@{srv.domain}"], timeout=5)
        alice.send_raw(raw(room, f"<invite to='dave@{srv.domain}'><reason>hi</reason></invite>", "b2"))
        err = await alice.inbox.message(error_for("b2"))
        assert err["error"]["condition"] == "service-unavailable"
        await nothing(dave, has("invite"))
        # and he can't be made to decline anything either (no invitation is pending)
        dave.send_raw(raw(room, declines(1, f"alice@{srv.domain}"), "b3"))
        assert (await dave.inbox.message(error_for("b3")))["error"]["condition"] == "not-acceptable"
    finally:
        for c in (alice, carol, dave):
            await slix_close(c)


async def test_invitations_are_few_per_message_and_rate_limited_per_sender(srv):
    alice, bob = await user(srv, "alice"), await user(srv, "bob")
    room = room_jid(srv, "club")
    names = [f"u{i}@{srv.domain}" for i in range(4)]
    try:
        await create(alice, room, "Alice")
        alice.send_raw(raw(room, "".join(f"<invite to='{n}'/>" for n in names), "r1"))  # 4 > 3 per message
        err = await alice.inbox.message(error_for("r1"))
        assert err["error"]["condition"] == "not-acceptable" and "at most 3" in err["error"]["text"]
        await nothing(bob, lambda m: True, timeout=0.2)
        sent = 0
        for i in range(INVITE_RATE):
            alice.plugin["xep_0045"].invite(room, f"bob@{srv.domain}", reason=f"#{i}")
            await bob.inbox.message(has("invite"))
            sent += 1
        alice.send_raw(raw(room, f"<invite to='bob@{srv.domain}'/>", "r2"))
        err = await alice.inbox.message(error_for("r2"))
        assert condition(err) == "policy-violation" and "too many" in err["error"]["text"]
        await nothing(bob, has("invite"))
        assert sent == INVITE_RATE
    finally:
        await slix_close(alice)
        await slix_close(bob)
