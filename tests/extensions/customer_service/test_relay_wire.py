"""The relay carries what chats carry (docs §4.3): links and uploads (XEP-0066 OOB), chat states
(XEP-0085), receipts (XEP-0184) and corrections (XEP-0308), both ways, through the wire with
slixmpp; the relayed message keeps its sender's id, so receipts and corrections point at it."""
from __future__ import annotations

from .conftest import Site
from .test_routing_wire import agents_online, open_chat, users

CS = "http://jabber.org/protocol/chatstates"
RECEIPTS = "urn:xmpp:receipts"
CORRECT = "urn:xmpp:message-correct:0"
OOB = "jabber:x:oob"
BODY = "{jabber:client}body"
URL = "https://upload.localhost/abc/receipt.png"


def raw(frm_client: object, to: str, inner: str, id: str, body: str | None = None) -> None:
    b = f"<body>{body}</body>" if body is not None else ""
    frm_client.xmpp.send_raw(f"<message xmlns='jabber:client' to='{to}' type='chat' id='{id}'>{b}{inner}</message>")  # type: ignore[attr-defined]


async def test_links_chat_states_receipts_and_corrections_cross_both_ways(site: Site) -> None:
    await users(site, "ann", "vera", "eve")
    await site.queue_with("support", {"ann": "Ann"})
    (ann,) = await agents_online(site, "support", ["ann"])
    vera = await site.client("vera")
    sid = await open_chat(site, vera, "support")
    await vera.cs_event("agent", session=sid)
    support, chat = site.queue("support"), f"s-{sid}@{site.domain}"

    # visitor -> agent: an upload's link with a receipt request, the id kept
    raw(vera, support, f"<x xmlns='{OOB}'><url>{URL}</url></x><request xmlns='{RECEIPTS}'/>", "v-1", URL)
    got = await ann.next(lambda m: m.get("id") == "v-1")
    assert got.findtext(BODY) == URL and got.findtext(f"{{{OOB}}}x/{{{OOB}}}url") == URL
    assert got.find(f"{{{RECEIPTS}}}request") is not None and got.get("from") == chat
    # agent -> visitor: the receipt, then a chat state (no body), then a reply and its correction
    raw(ann, chat, f"<received xmlns='{RECEIPTS}' id='v-1'/>", "a-1")
    receipt = await vera.next(lambda m: m.find(f"{{{RECEIPTS}}}received") is not None)
    assert receipt.find(f"{{{RECEIPTS}}}received").get("id") == "v-1" and receipt.get("from") == support
    raw(ann, chat, f"<composing xmlns='{CS}'/>", "a-2")
    typing = await vera.next(lambda m: m.find(f"{{{CS}}}composing") is not None)
    assert typing.findtext(BODY) is None
    raw(ann, chat, f"<active xmlns='{CS}'/>", "a-3", "Thanks, lookng")
    assert (await vera.next(lambda m: m.get("id") == "a-3")).findtext(BODY) == "Ann: Thanks, lookng"
    raw(ann, chat, f"<replace xmlns='{CORRECT}' id='a-3'/>", "a-4", "Thanks, looking")
    fixed = await vera.next(lambda m: m.get("id") == "a-4")
    assert fixed.find(f"{{{CORRECT}}}replace").get("id") == "a-3" and fixed.findtext(BODY) == "Ann: Thanks, looking"
    # a link the agent sends alone stays a bare link (clients preview it)
    raw(ann, chat, f"<x xmlns='{OOB}'><url>{URL}</url></x>", "a-5", URL)
    link = await vera.next(lambda m: m.get("id") == "a-5")
    assert link.findtext(BODY) == URL and link.findtext(f"{{{OOB}}}x/{{{OOB}}}url") == URL

    # the transcript keeps the link; someone else's chat state reaches nobody
    lines = await ann.cs.transcript(chat, sid)
    assert any(URL in (ln.text or "") for ln in lines)
    eve = await site.client("eve")
    raw(eve, chat, f"<composing xmlns='{CS}'/>", "e-1")
    await eve.sync()  # a round trip on eve's stream: the server has handled her message
    raw(ann, chat, f"<paused xmlns='{CS}'/>", "a-6")
    after = await vera.next(lambda m: m.find(f"{{{CS}}}paused") is not None)
    assert after.get("id") == "a-6"
    assert not [m for m in vera.messages if m.get("id") == "e-1"]
