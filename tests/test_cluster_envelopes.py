"""The cross-node message path's serialisation, in memory (docs/cluster.md §3, §9): the outbox's
ops of the batch script (xmppd/cluster/bus.py), the recipient's delivery of serialised bytes with
an element parsed only on demand (xmppd/core/hooks.py ``SerialisedDelivery``,
``Router.deliver_serialised``), and the carbon copy for other nodes made as text
(xmppd/features/carbons.py ``copy_text``)."""
from __future__ import annotations

import asyncio

from lxml import etree

from xmppd.cluster.bus import op_fan, op_full, op_node, pack, unpack
from xmppd.core import hooks as H
from xmppd.core.hooks import Delivery, Flow, HookChains, SerialisedDelivery
from xmppd.features.carbons import _RECEIVED, _SENT, copy_text
from xmppd.jid import JID


def test_ops_are_one_string_each_and_refuse_a_separator_inside() -> None:
    env = pack({"k": "message", "f": "a@x/r", "x": "<message/>"})["env"]
    assert op_full("P:sess:b@x", "phone", env).split("\x01") == ["F", "P:sess:b@x", "phone", env]
    assert op_full("P:sess:b@x", "", env).split("\x01") == ["F", "P:sess:b@x", "", env]  # (a bare JID's entry)
    assert op_node("beta", env).split("\x01") == ["N", "beta", env]
    targets = [("P:sess:b@x", "phone", "b@x/phone", ""), ("P:sess:c@x", "", "c@x", "tab")]
    assert op_fan(env, targets).split("\x01") == ["M", env, *targets[0], *targets[1]]
    assert op_fan(env, []) == f"M\x01{env}"
    # A part holding SOH cannot be split again: no op (the envelope goes by its own command).
    assert op_full("P:sess:b@x", "ph\x01one", env) is None
    assert op_node("beta", env + "\x01") is None
    assert op_fan(env, [("P:sess:b@x", "", "b@x", "\x01")]) is None
    assert unpack({"env": env}) == {"k": "message", "f": "a@x/r", "x": "<message/>"}


class _Session:
    jid = JID.parse("bob@x/phone")


def test_a_serialised_delivery_parses_only_when_a_hook_reads_the_element() -> None:
    parsed: list[bytes] = []

    def parse(data: bytes) -> etree._Element:
        parsed.append(data)
        return etree.fromstring(data)

    data = b'<message xmlns="jabber:client" from="a@x/r" type="chat"><body>hi</body></message>'
    d = SerialisedDelivery(_Session(), data, "message", parse)  # type: ignore[arg-type]
    assert isinstance(d, Delivery) and d.kind == "message" and d.data == data and not parsed
    assert d.stanza.get("from") == "a@x/r" and d.stanza.findtext("{jabber:client}body") == "hi"
    assert len(parsed) == 1  # once, whoever reads it again
    replaced = etree.Element("x")
    d.stanza = replaced
    assert d.stanza is replaced and len(parsed) == 1


def test_hooks_that_do_not_read_the_element_cost_no_parse() -> None:
    parsed: list[bytes] = []
    seen: list[str] = []

    async def by_session(d: Delivery) -> Flow:  # the usual DELIVER hooks: session state first
        seen.append(d.kind)
        return Flow.CONTINUE

    def parse(data: bytes) -> etree._Element:
        parsed.append(data)
        return etree.fromstring(data)

    async def run() -> Flow:
        chains = HookChains()
        chains.add(H.DELIVER, by_session)
        return await chains.run(H.DELIVER, SerialisedDelivery(_Session(), b"<message/>", "message", parse))  # type: ignore[arg-type]

    assert asyncio.run(run()) is Flow.CONTINUE and seen == ["message"] and parsed == []


def _built(account: JID, msg: etree._Element, wrapper: str) -> etree._Element:
    """What ``Carbons._copy`` builds (without ``to``), as elements."""
    from xmppd.xml import ns

    out = etree.Element(ns.MESSAGE, {"from": str(account), "type": msg.get("type") or "normal"}, nsmap={None: ns.CLIENT})
    w = etree.SubElement(out, wrapper, nsmap={None: "urn:xmpp:carbons:2"})
    etree.SubElement(w, "{urn:xmpp:forward:0}forwarded", nsmap={None: "urn:xmpp:forward:0"}).append(
        etree.fromstring(etree.tostring(msg)))
    return out


def test_the_carbon_copy_made_as_text_is_the_copy_built_as_elements() -> None:
    msg = etree.fromstring(
        '<message xmlns="jabber:client" from="alice@x/phone" to="bob@x/tab" type="chat" id="m&amp;1">'
        '<body>&lt;hi&gt; "there" &amp; caf\u00e9</body><thread>t1</thread>'
        '<active xmlns="http://jabber.org/protocol/chatstates"/></message>')
    account = JID.parse("alice@x")
    for wrapper in (_SENT, _RECEIVED):
        text = copy_text(account, msg, wrapper)
        got = etree.fromstring(text.encode())
        assert etree.tostring(got, method="c14n") == etree.tostring(_built(account, msg, wrapper), method="c14n")
        inner = got.find(f"{wrapper}/{{urn:xmpp:forward:0}}forwarded/{{jabber:client}}message")
        assert inner is not None and inner.findtext("{jabber:client}body") == '<hi> "there" & caf\u00e9'
    normal = etree.fromstring('<message xmlns="jabber:client" from="alice@x/phone"><body>b</body></message>')
    assert etree.fromstring(copy_text(account, normal, _SENT).encode()).get("type") == "normal"
