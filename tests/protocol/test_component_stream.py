"""XEP-0114 accepting side, sans I/O: the handshake, the namespace each way, every refusal."""
from __future__ import annotations

import hashlib

from lxml import etree

from xmppd.protocol.component import NS, AcceptStream, Authenticated, Closed, Received, State, retag

HEADER = f"<stream:stream xmlns='{NS}' xmlns:stream='http://etherx.jabber.org/streams' to='gw.example'>"
SECRETS = {"gw.example": "0123456789abcdef"}


def opened() -> AcceptStream:
    s = AcceptStream(SECRETS, max_stanza_size=65536)
    assert s.feed(HEADER.encode()) == []
    head = s.take_output()
    assert f"id='{s.stream_id}'".encode() in head and b"from='gw.example'" in head
    return s


def shake(s: AcceptStream, secret: str = "0123456789abcdef") -> list:
    digest = hashlib.sha1((s.stream_id + secret).encode()).hexdigest()
    return s.feed(f"<handshake>{digest.upper()}</handshake>".encode())


def test_handshake_then_stanzas_in_the_client_namespace():
    s = opened()
    assert shake(s) == [Authenticated("gw.example")]
    assert s.take_output() == b""  # confirmed only once the transport attached the domain
    s.accept()
    assert s.take_output() == f"<handshake xmlns='{NS}'/>".encode()
    (ev,) = s.feed(b"<message from='u@gw.example/r' to='a@example.com'><body>hi</body>"
                   b"<x xmlns='jabber:x:data'><field var='a'/></x></message>")
    assert isinstance(ev, Received) and ev.kind == "message"
    assert ev.stanza.tag == "{jabber:client}message"
    assert ev.stanza.find("{jabber:client}body").text == "hi"
    assert ev.stanza.find("{jabber:x:data}x/{jabber:x:data}field").get("var") == "a"


def test_outgoing_stanzas_are_written_in_the_component_namespace():
    s = opened()
    shake(s)
    s.accept()
    s.take_output()
    msg = etree.fromstring(b"<message xmlns='jabber:client' to='gw.example' from='a@example.com/x'><body>yo</body></message>")
    s.send(msg)
    back = etree.fromstring(s.take_output())
    assert back.tag == f"{{{NS}}}message" and back.find(f"{{{NS}}}body").text == "yo"


def test_retag_keeps_attributes_text_and_foreign_namespaces():
    el = etree.fromstring(b"<iq xmlns='jabber:client' type='get' xml:lang='de'><query xmlns='urn:x'>t<a>1</a>tail</query></iq>")
    out = retag(el, "jabber:client", NS)
    assert out.tag == f"{{{NS}}}iq" and out.get("{http://www.w3.org/XML/1998/namespace}lang") == "de"
    q = out.find("{urn:x}query")
    assert q.text == "t" and q.find("{urn:x}a").tail == "tail"


def test_refusals():
    s = AcceptStream(SECRETS, max_stanza_size=65536)
    (ev,) = s.feed(HEADER.replace("gw.example", "other.example").encode())
    assert isinstance(ev, Closed) and b"host-unknown" in s.take_output() and s.state is State.CLOSED

    s = opened()
    (ev,) = shake(s, "wrong")
    assert isinstance(ev, Closed) and b"not-authorized" in s.take_output()

    s = opened()
    (ev,) = s.feed(b"<iq type='get' from='gw.example' to='example.com' id='1'/>")
    assert isinstance(ev, Closed) and b"not-authorized" in s.take_output()

    for stanza, condition in [
        (b"<message from='u@elsewhere.example' to='a@example.com'/>", b"invalid-from"),
        (b"<message to='a@example.com'/>", b"invalid-from"),
        (b"<message from='gw.example'/>", b"improper-addressing"),
        (b"<foo from='gw.example' to='example.com'/>", b"unsupported-stanza-type"),
    ]:
        s = opened()
        shake(s)
        s.accept()
        s.take_output()
        (ev,) = s.feed(stanza)
        assert isinstance(ev, Closed) and condition in s.take_output()
        assert s.feed(b"<message from='gw.example' to='a@example.com'/>") == []  # nothing after the error


def test_close_by_the_component():
    s = opened()
    shake(s)
    s.accept()
    s.take_output()
    assert s.feed(b"</stream:stream>") == [Closed(None)]
    assert s.take_output() == b"</stream:stream>"
