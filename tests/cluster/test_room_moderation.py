"""XEP-0425 moderation and XEP-0421 occupant ids in a room whose owner node is neither the
moderator's nor the author's (issue 19 on the cluster of issue 17): the moderation request is
forwarded to the room's node, the notice reaches every node, and the room archive keeps the
tombstone."""
from __future__ import annotations

from slixmpp import JID

from ..features.test_mam import Results
from ..features.test_muc_moderation import MODERATE, OID, RETRACT, SID, archive
from .test_rooms import configure, groupchat, join, room_owned_by, three  # noqa: F401  (the fixture)


async def test_moderation_goes_through_the_owner_node(three):  # noqa: F811 (the fixture imported above)
    room = room_owned_by("gamma", "moderated")
    alice = await three.login("alpha", "alice")
    bob = await three.login("beta", "bob")
    for c in (alice, bob):
        c.register_plugin("xep_0421")
        c.register_plugin("xep_0424")
        c.register_plugin("xep_0425")
    await join(alice, room, "Alice")
    await configure(alice, room, name="Moderated across nodes")
    await join(bob, room, "Bob")
    bob.send_message(mto=room, mbody="spam from beta", mtype="groupchat")
    spam = await alice.inbox.message(groupchat("spam from beta"), timeout=10)
    bob_id = spam.xml.find(f"{{{OID}}}occupant-id").get("id")
    sid = next(e.get("id") for e in spam.xml.findall(f"{{{SID}}}stanza-id") if e.get("by") == room)
    await alice.plugin["xep_0425"].moderate(JID(room), sid, "spam", timeout=10)
    note = await bob.inbox.message(lambda m: m.xml.find(f"{{{RETRACT}}}retract") is not None, timeout=10)
    r = note.xml.find(f"{{{RETRACT}}}retract")
    assert r.get("id") == sid and r.find(f"{{{MODERATE}}}moderated").get("by") == f"{room}/Alice"
    # the room's archive (read through beta) holds the tombstone with bob's occupant-id
    bob.mam = Results(bob)
    results = dict(await archive(bob, room))
    stone = results[sid]
    assert stone.find("{jabber:client}body") is None and stone.find(f"{{{RETRACT}}}retracted") is not None
    assert stone.find(f"{{{OID}}}occupant-id").get("id") == bob_id
    assert three.owner(room) == "gamma"
