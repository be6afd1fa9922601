"""Name tables (xmppd.xml.names): stanzas keep working whatever dictionary their names live in."""
from __future__ import annotations

import copy
import gc

import pytest
from lxml import etree

from xmppd.xml import names
from xmppd.xml.parser import StanzaElement, StreamParser, WebSocketFramer

HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"to='localhost' version='1.0'>"
)
STANZA = (
    b"<message to='bob@localhost' id='m%d'><body>hi %d</body>"
    b"<x%d xmlns='urn:example:x' a%d='v'><p:y xmlns:p='urn:example:p' p:b%d='w'/></x%d></message>"
)


@pytest.fixture(params=[names.GENERATION_BYTES, 1], ids=["default-generations", "generation-per-call"])
def generations(request, monkeypatch):
    monkeypatch.setattr(names, "GENERATION_BYTES", request.param)


def _tcp_stanzas(n: int) -> list[etree._Element]:
    parser = StreamParser()
    out = []
    for ev in parser.feed(HEADER):
        assert not isinstance(ev, StanzaElement)
    for i in range(n):
        out.extend(e.element for e in parser.feed(STANZA % ((i,) * 6)) if isinstance(e, StanzaElement))
    parser.close()
    return out


def _ws_stanzas(n: int) -> list[etree._Element]:
    framer = WebSocketFramer()
    out = []
    for i in range(n):
        data = (STANZA % ((i,) * 6)).replace(b"<message ", b"<message xmlns='jabber:client' ", 1)
        out.extend(e.element for e in framer.feed_message(data) if isinstance(e, StanzaElement))
        framer.reset()
    framer.close()
    return out


@pytest.mark.parametrize("source", [_tcp_stanzas, _ws_stanzas], ids=["tcp", "websocket"])
def test_stanzas_keep_working_after_their_parser_and_generations_are_gone(generations, source):
    kept = source(50)
    assert len(kept) == 50
    for _ in range(5):
        names.new_generation()
    gc.collect()
    room_history = etree.Element("{urn:example:room}history")
    for i, el in enumerate(kept):
        xml = etree.tostring(el)
        assert xml.startswith(b'<message xmlns="jabber:client" to="bob@localhost"')
        assert el.findtext("{jabber:client}body") == f"hi {i}"
        x = el.find(f"{{urn:example:x}}x{i}")
        assert x is not None and x.get(f"a{i}") == "v"
        assert el.xpath(f"//p:y/@p:b{i}", namespaces={"p": "urn:example:p"}) == ["w"]
        clone = copy.deepcopy(el)
        clone.set("from", "alice@localhost/r")
        assert etree.tostring(etree.fromstring(etree.tostring(clone))) == etree.tostring(clone)
        room_history.append(el)  # moved into a document of another dictionary
        names.new_generation()
    assert [m.get("id") for m in room_history.iterfind("{jabber:client}message")] == [f"m{i}" for i in range(50)]
    assert etree.fromstring(etree.tostring(room_history)).findall("{jabber:client}message/{jabber:client}body")[7].text == "hi 7"


def test_a_stream_restart_releases_the_previous_document_and_its_stanzas_survive():
    parser = StreamParser()
    parser.feed(HEADER)
    before = [e.element for e in parser.feed(STANZA % ((1,) * 6)) if isinstance(e, StanzaElement)]
    parser.reset()  # as after SASL success
    parser.feed(HEADER)
    after = [e.element for e in parser.feed(STANZA % ((2,) * 6)) if isinstance(e, StanzaElement)]
    parser.close()
    assert parser.feed(STANZA % ((3,) * 6)) == []
    gc.collect()
    assert [m.findtext("{jabber:client}body") for m in before + after] == ["hi 1", "hi 2"]
