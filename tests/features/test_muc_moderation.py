"""XEP-0425 moderation, XEP-0424 retraction and XEP-0308 correction in rooms and one-to-one, as the
archive (XEP-0313) keeps them; XEP-0421 occupant-id; XEP-0410 self-ping; XEP-0045 room disco.
Over the wire with slixmpp's plugins (xep_0421/0424/0425/0308/0410) and aioxmpp, on SQLite and MariaDB."""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import aioxmpp
import aioxmpp.muc
import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0410 import PingStatus

from ..aiox import aioxmpp_client
from ..helpers import add_user, running_server, slix, slix_close
from . import muc_support as M
from .test_mam import Results

pytestmark = pytest.mark.interop

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
OID = "urn:xmpp:occupant-id:0"
RETRACT = "urn:xmpp:message-retract:1"
MODERATE = "urn:xmpp:message-moderate:1"
CORRECT = "urn:xmpp:message-correct:0"
PLUGINS = (*M.PLUGINS, "xep_0359", "xep_0421", "xep_0424", "xep_0425", "xep_0308", "xep_0410", "xep_0334", "xep_0428")
_n = iter(range(10**6))


async def user(srv: Any, name: str, *, create: bool = True) -> Any:
    jid = await add_user(srv, name) if create else f"{name}@{srv.domain}"
    c = await slix(srv, jid, plugins=PLUGINS)
    c.inbox = M.Inbox(c)
    c.mam = Results(c)
    c.send_presence()
    return c


async def archive(client: Any, to: str | None = None, **fields: str) -> list[tuple[str, ET.Element]]:
    """(archive id, archived <message/>) of every result of one query."""
    qid = f"m{next(_n)}"
    iq = client.make_iq_set(ito=to)
    q = ET.SubElement(iq.xml, f"{{{MAM}}}query", {"queryid": qid})
    if fields:
        x = ET.SubElement(q, "{jabber:x:data}x", {"type": "submit"})
        f = ET.SubElement(x, "{jabber:x:data}field", {"var": "FORM_TYPE", "type": "hidden"})
        ET.SubElement(f, "{jabber:x:data}value").text = MAM
        for var, value in fields.items():
            f = ET.SubElement(x, "{jabber:x:data}field", {"var": var})
            ET.SubElement(f, "{jabber:x:data}value").text = value
    await iq.send(timeout=10)
    return [(r.get("id"), r.find("{urn:xmpp:forward:0}forwarded/{jabber:client}message")) for r in client.mam.by_query.pop(qid, [])]


def oid(stanza: Any) -> str | None:
    el = stanza.xml.find(f"{{{OID}}}occupant-id") if hasattr(stanza, "xml") else stanza.find(f"{{{OID}}}occupant-id")
    return el.get("id") if el is not None else None


def sid_of(msg: Any, by: str) -> str:
    return next(e.get("id") for e in msg.xml.findall(f"{{{SID}}}stanza-id") if e.get("by") == by)


async def test_occupant_id_moderation_retraction_and_correction_in_a_room(tmp_path, storage_overrides):
    async with running_server(tmp_path, *storage_overrides) as srv:
        owner = await user(srv, "owner")
        guest = await user(srv, "guest")
        late = await user(srv, "late")
        clients = (owner, guest, late)
        room = M.room_jid(srv, "modroom")
        try:
            await M.create(owner, room, "Boss")
            await M.join(guest, room, "Guest")
            # XEP-0421: every presence and message from an occupant carries its occupant-id
            p = await owner.inbox.presence(lambda p: str(p["from"]) == f"{room}/Guest")
            guest_id = oid(p)
            assert guest_id and len(guest_id) >= 16 and "guest" not in guest_id
            forged = guest.make_message(mto=room, mbody="spam spam", mtype="groupchat")
            ET.SubElement(forged.xml, f"{{{OID}}}occupant-id", {"id": "forged"})
            forged.send()
            spam = await owner.inbox.message(lambda m: m["body"] == "spam spam")
            assert oid(spam) == guest_id  # the client's own occupant-id is replaced
            assert spam["occupant-id"]["id"] == guest_id  # (slixmpp xep_0421 stanza plugin)
            spam_sid = sid_of(spam, room)
            owner.send_message(mto=room, mbody="rules", mtype="groupchat")
            rules = await guest.inbox.message(lambda m: m["body"] == "rules")
            owner_id = oid(rules)
            assert owner_id and owner_id != guest_id

            # XEP-0425: an occupant who is not a moderator may not moderate
            with pytest.raises(IqError) as exc:
                await guest.plugin["xep_0425"].moderate(JID(room), sid_of(rules, room), "no", timeout=5)
            assert exc.value.iq["error"]["condition"] == "forbidden"
            with pytest.raises(IqError) as exc:
                await owner.plugin["xep_0425"].moderate(JID(room), "no-such-id", timeout=5)
            assert exc.value.iq["error"]["condition"] == "item-not-found"
            # raw requests (no plugin sends these): no <retract/>, no id
            for attrs, child, condition in (({"id": spam_sid}, False, "feature-not-implemented"), ({}, True, "bad-request")):
                iq = owner.make_iq_set(ito=room)
                m = ET.SubElement(iq.xml, f"{{{MODERATE}}}moderate", attrs)
                if child:
                    ET.SubElement(m, f"{{{RETRACT}}}retract")
                with pytest.raises(IqError) as exc:
                    await iq.send(timeout=5)
                assert exc.value.iq["error"]["condition"] == condition
            # the moderator retracts the spam: every occupant is told, with who and why
            await owner.plugin["xep_0425"].moderate(JID(room), spam_sid, "spam", timeout=5)
            for c in (owner, guest):
                note = await c.inbox.message(lambda m: m.xml.find(f"{{{RETRACT}}}retract") is not None)
                r = note.xml.find(f"{{{RETRACT}}}retract")
                assert str(note["from"]) == room and note["type"] == "groupchat" and r.get("id") == spam_sid
                mod = r.find(f"{{{MODERATE}}}moderated")
                assert mod.get("by") == f"{room}/Boss" and mod.find(f"{{{OID}}}occupant-id").get("id") == owner_id
                assert r.findtext(f"{{{RETRACT}}}reason") == "spam"
            # the archive keeps a tombstone in the message's place, and the notice after it
            items = await archive(guest, room)
            ids = [i for i, _ in items]
            stone = dict(items)[spam_sid]
            assert stone.find("{jabber:client}body") is None and stone.get("from") == f"{room}/Guest"
            retracted = stone.find(f"{{{RETRACT}}}retracted")
            assert retracted.get("stamp") and retracted.findtext(f"{{{RETRACT}}}reason") == "spam"
            assert retracted.find(f"{{{MODERATE}}}moderated").get("by") == f"{room}/Boss"
            assert stone.find(f"{{{OID}}}occupant-id").get("id") == guest_id
            notice = items[-1][1]
            assert notice.find(f"{{{RETRACT}}}retract").get("id") == spam_sid and ids.index(spam_sid) < len(ids) - 1
            assert "spam spam" not in ET.tostring(stone, encoding="unicode")
            # a second moderation of the same message is harmless; the history a newcomer gets holds the tombstone
            await owner.plugin["xep_0425"].moderate(JID(room), spam_sid, timeout=5)
            await M.join(late, room, "Late")
            hist = await late.inbox.message(lambda m: m.xml.find(f"{{{RETRACT}}}retracted") is not None)
            assert hist["body"] == "" and str(hist["from"]) == f"{room}/Guest"

            # XEP-0424 in the room: only the author's retraction changes the archive
            guest.send_message(mto=room, mbody="oops", mtype="groupchat")
            oops = await owner.inbox.message(lambda m: m["body"] == "oops")
            oops_sid = sid_of(oops, room)
            owner.plugin["xep_0424"].send_retraction(JID(room), oops_sid, mtype="groupchat")
            await guest.inbox.message(lambda m: m.xml.find(f"{{{RETRACT}}}retract") is not None and str(m["from"]) == f"{room}/Boss")
            assert dict(await archive(guest, room))[oops_sid].findtext("{jabber:client}body") == "oops"
            # a forged <moderated/> in an occupant's retraction is removed
            fake = guest.make_message(mto=room, mtype="groupchat", mbody="fallback")
            r = ET.SubElement(fake.xml, f"{{{RETRACT}}}retract", {"id": oops_sid})
            ET.SubElement(r, f"{{{MODERATE}}}moderated", {"by": f"{room}/Boss"})
            fake.send()
            got = await owner.inbox.message(lambda m: m["body"] == "fallback")
            assert got.xml.find(f"{{{RETRACT}}}retract/{{{MODERATE}}}moderated") is None
            stone = dict(await archive(owner, room))[oops_sid]
            assert stone.find("{jabber:client}body") is None and stone.find(f"{{{RETRACT}}}retracted/{{{MODERATE}}}moderated") is None

            # XEP-0308: a correction is archived as sent, linked to the original by <replace id=''/>
            guest.send_message(mto=room, mbody="helo", mtype="groupchat")
            helo = await owner.inbox.message(lambda m: m["body"] == "helo")
            fix = guest.plugin["xep_0308"].build_correction(helo["id"], JID(room), mtype="groupchat", mbody="hello")
            fix.send()
            got = await owner.inbox.message(lambda m: m["body"] == "hello")
            assert got["replace"]["id"] == helo["id"] and oid(got) == oid(helo) == guest_id
            tail = [m for _, m in await archive(owner, room)][-2:]
            assert [m.findtext("{jabber:client}body") for m in tail] == ["helo", "hello"]
            assert tail[1].find(f"{{{CORRECT}}}replace").get("id") == tail[0].get("id") == helo["id"]
            assert oid(tail[0]) == oid(tail[1]) == guest_id
        finally:
            for c in clients:
                await slix_close(c)


async def test_one_to_one_retraction_tombstones_both_archives_only_for_the_author(tmp_path, storage_overrides):
    async with running_server(tmp_path, *storage_overrides) as srv:
        alice = await user(srv, "alice")
        bob = await user(srv, "bob")
        try:
            msg = alice.make_message(mto=bob.boundjid.bare, mbody="wrong window", mtype="chat")
            msg["origin_id"]["id"] = "orig-1"
            msg.send()
            await bob.inbox.message(lambda m: m["body"] == "wrong window")
            bob.send_message(mto=alice.boundjid.bare, mbody="what?", mtype="chat")
            what = await alice.inbox.message(lambda m: m["body"] == "what?")
            # bob can't retract alice's message, nor alice bob's (ids that are not their own)
            bob.plugin["xep_0424"].send_retraction(alice.boundjid.bare, "orig-1")
            await alice.inbox.message(lambda m: m.xml.find(f"{{{RETRACT}}}retract") is not None)
            alice.plugin["xep_0424"].send_retraction(bob.boundjid.bare, what["id"])
            await bob.inbox.message(lambda m: m.xml.find(f"{{{RETRACT}}}retract") is not None)
            for c in (alice, bob):
                bodies = [m.findtext("{jabber:client}body") for _, m in await archive(c)]
                assert bodies[:2] == ["wrong window", "what?"]
            # alice retracts her own message: a tombstone in her archive and in bob's
            alice.plugin["xep_0424"].send_retraction(bob.boundjid.bare, "orig-1")
            await bob.inbox.message(lambda m: len(m.xml.findall(f"{{{RETRACT}}}retract")) == 1 and m["from"].bare == alice.boundjid.bare
                                    and m.xml.find(f"{{{RETRACT}}}retract").get("id") == "orig-1")
            for c in (alice, bob):
                items = [m for _, m in await archive(c)]
                first = items[0]
                assert first.find("{jabber:client}body") is None and first.find(f"{{{RETRACT}}}retracted").get("stamp")
                assert first.find(f"{{{SID}}}origin-id").get("id") == "orig-1"
                assert items[1].findtext("{jabber:client}body") == "what?"  # bob's is untouched
                assert items[-1].find(f"{{{RETRACT}}}retract").get("id") == "orig-1"  # the retraction is archived
            # XEP-0308 one-to-one: the correction is archived with its <replace/>
            fix = bob.plugin["xep_0308"].build_correction(what["id"], alice.boundjid.bare, mbody="what!?")
            fix.send()
            await alice.inbox.message(lambda m: m["body"] == "what!?")
            last = (await archive(alice))[-1][1]
            assert last.find(f"{{{CORRECT}}}replace").get("id") == what["id"] and last.findtext("{jabber:client}body") == "what!?"
        finally:
            for c in (alice, bob):
                await slix_close(c)


async def test_room_disco_self_ping_and_aioxmpp_sees_occupant_ids(tmp_path):
    async with running_server(tmp_path) as srv:
        owner = await user(srv, "owner")
        other = await user(srv, "other")
        await add_user(srv, "carol")
        room = M.room_jid(srv, "discoroom")
        try:
            await M.create(owner, room, "Boss", name="Disco")
            info = (await owner.plugin["xep_0030"].get_info(jid=room, timeout=5))["disco_info"]
            feats = set(info["features"])
            assert {"muc_temporary", "muc_public", "muc_open", "muc_unmoderated", "muc_semianonymous", "muc_unsecured",
                    OID, MODERATE, RETRACT, "http://jabber.org/protocol/muc#stable_id",
                    "http://jabber.org/protocol/muc#self-ping-optimization"} <= feats
            form = info["form"].get_values()
            assert form["muc#roominfo_occupants"] == "1" and form["muc#roomconfig_roomname"] == "Disco"
            assert form["muc#roominfo_subjectmod"] in (False, "0")
            await M.configure(owner, room, persistent=True, public=False, members_only=True, moderated=True,
                              whois="anyone", password="s3cret")
            feats = set((await owner.plugin["xep_0030"].get_info(jid=room, timeout=5))["disco_info"]["features"])
            assert {"muc_persistent", "muc_hidden", "muc_membersonly", "muc_moderated", "muc_nonanonymous",
                    "muc_passwordprotected"} <= feats
            assert not feats & {"muc_temporary", "muc_public", "muc_open", "muc_unmoderated", "muc_semianonymous", "muc_unsecured"}
            await M.configure(owner, room, public=True, members_only=False, moderated=False, password="")

            # XEP-0410: joined -> JOINED, not joined -> not-acceptable (DISCONNECTED)
            ping = owner.plugin["xep_0410"]
            assert await ping.send_self_ping(JID(f"{room}/Boss"), timeout=5) is PingStatus.JOINED
            assert await other.plugin["xep_0410"].send_self_ping(JID(f"{room}/Boss"), timeout=5) is PingStatus.DISCONNECTED
            with pytest.raises(IqError) as exc:  # the condition on the wire (XEP-0410 §3.2)
                await other.plugin["xep_0199"].send_ping(JID(f"{room}/Boss"), timeout=5)
            assert exc.value.iq["error"]["condition"] == "not-acceptable"

            # aioxmpp: presence and messages carry the same occupant-id per user
            async with aioxmpp_client(srv, "carol@localhost") as client:
                seen: asyncio.Queue = asyncio.Queue()
                muc = client.summon(aioxmpp.muc.MUCClient)
                mroom, joined = muc.join(aioxmpp.JID.fromstr(room), "Carol", history=aioxmpp.muc.xso.History(maxstanzas=0))
                mroom.on_message.connect(lambda msg, member, source, **kw: seen.put_nowait(msg))
                await asyncio.wait_for(joined, 5)
                p = await owner.inbox.presence(lambda p: str(p["from"]) == f"{room}/Carol")
                carol_id = oid(p)
                reply = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT, to=aioxmpp.JID.fromstr(room))
                reply.body[None] = "from aioxmpp"
                await client.send(reply)
                got = await owner.inbox.message(lambda m: m["body"] == "from aioxmpp")
                assert carol_id and oid(got) == carol_id
                await asyncio.wait_for(mroom.leave(), 5)
            # stable per user and room: the same after leaving and coming back under another nick,
            # different in another room, different for another user
            await M.join(other, room, "Other")
            first = oid(await owner.inbox.presence(lambda p: str(p["from"]) == f"{room}/Other"))
            other.plugin["xep_0045"].leave_muc(room, "Other")
            await owner.inbox.presence(lambda p: str(p["from"]) == f"{room}/Other" and p["type"] == "unavailable")
            await M.join(other, room, "Renamed")
            again = oid(await owner.inbox.presence(lambda p: str(p["from"]) == f"{room}/Renamed"))
            assert first == again and first != carol_id
            room2 = M.room_jid(srv, "discoroom2")
            await M.create(owner, room2, "Boss")
            await M.join(other, room2, "Other")
            elsewhere = oid(await owner.inbox.presence(lambda p: str(p["from"]) == f"{room2}/Other"))
            assert elsewhere and elsewhere != first
        finally:
            for c in (owner, other):
                await slix_close(c)
