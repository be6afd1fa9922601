"""The sans-I/O stream parser: framing, restricted XML, limits, chunking (RFC 6120 §4, §11; RFC 7395)."""
from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from xmppd.errors import StreamErrorCondition as C
from xmppd.xml.parser import (
    NS_FRAMING,
    NS_STREAM,
    ParseError,
    StanzaElement,
    StreamEnd,
    StreamOpen,
    StreamParser,
    WebSocketFramer,
)

REPO = Path(__file__).resolve().parents[2]

HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"to='capulet.lit' version='1.0' xml:lang='en'>"
)

# A realistic session: XML declaration, header, stanzas with namespaces, attributes, unicode
# (multi-byte UTF-8 that chunking splits inside characters), CDATA, escapes, a stream-namespace
# nonza, whitespace keepalives, and the closing tag.
SESSION = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    "to='capulet.lit' version='1.0' xml:lang='en' id='c2s-1'>\n"
    "  <iq type='get' id='r1'><query xmlns='jabber:iq:roster' ver=''/></iq>\n"
    " \t\r\n"
    "<presence><show>chat</show><status>Ünïcödé ✓ 红包 😀</status>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://x.example' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/>"
    "</presence>"
    "<message to='juliet@capulet.lit/balcony' type='chat' id='m1' xml:lang='fr'>"
    "<body>Tom &amp; Jerry &lt;3 &quot;quotes&quot; &apos;apos&apos; &#65;&#x1F600; "
    "<![CDATA[<not-a-tag> & raw ]]> 你好</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/>"
    "<x:data xmlns:x='urn:example:prefixed' x:attr='v'><x:item>1</x:item></x:data>"
    "</message>"
    " "
    "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    "\n\n"
    "<r xmlns='urn:xmpp:sm:3' h='5'/>"
    "   "
    "</stream:stream>"
).encode()


def summary(events: list[object]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, StanzaElement):
            out.append(("stanza", etree.tostring(e.element)))
        elif isinstance(e, StreamOpen):
            out.append(("open", tuple(sorted(e.attrs.items())), e.default_ns))
        elif isinstance(e, StreamEnd):
            out.append(("end",))
        elif isinstance(e, ParseError):
            out.append(("error", e.condition))
        else:  # pragma: no cover
            raise AssertionError(e)
    return out


def feed_chunks(chunks: list[bytes], parser: StreamParser | None = None, **limits: int) -> list[object]:
    p = parser or StreamParser(**limits)
    events: list[object] = []
    for c in chunks:
        events.extend(p.feed(c))
    return events


def feed_bytewise(data: bytes, **limits: int) -> list[object]:
    return feed_chunks([data[i : i + 1] for i in range(len(data))], **limits)


def stanzas(events: list[object]) -> list[etree._Element]:
    return [e.element for e in events if isinstance(e, StanzaElement)]


def error_of(events: list[object]) -> ParseError:
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, ParseError), summary(events)
    assert sum(isinstance(e, ParseError) for e in events) == 1
    return last


def after_header(body: bytes, **limits: int) -> list[object]:
    p = StreamParser(**limits)
    opened = p.feed(HEADER)
    assert [type(e) for e in opened] == [StreamOpen]
    return p.feed(body)


# ---------------------------------------------------------------- a whole session


def test_session_events_and_serialisation() -> None:
    events = StreamParser().feed(SESSION)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["StreamOpen"] + ["StanzaElement"] * 5 + ["StreamEnd"]
    opened = events[0]
    assert isinstance(opened, StreamOpen)
    assert opened.attrs == {"to": "capulet.lit", "version": "1.0", "xml:lang": "en", "id": "c2s-1"}
    assert opened.default_ns == "jabber:client"
    iq, presence, message, error, ack = stanzas(events)
    assert iq.tag == "{jabber:client}iq"
    assert iq[0].tag == "{jabber:iq:roster}query"
    assert etree.tostring(iq) == (
        b'<iq xmlns="jabber:client" type="get" id="r1"><query xmlns="jabber:iq:roster" ver=""/></iq>'
    )
    assert presence.findtext("{jabber:client}status") == "Ünïcödé ✓ 红包 😀"
    assert message.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr"
    assert message.findtext("{jabber:client}body") == (
        "Tom & Jerry <3 \"quotes\" 'apos' A\U0001F600 <not-a-tag> & raw  你好"
    )
    data = message.find("{urn:example:prefixed}data")
    assert data is not None and data.get("{urn:example:prefixed}attr") == "v"
    serialised = etree.tostring(message)
    assert serialised.startswith(b'<message xmlns="jabber:client" to="juliet@capulet.lit/balcony"')
    assert b"xmlns:stream" not in serialised
    assert b'<x:data xmlns:x="urn:example:prefixed" x:attr="v">' in serialised
    # a stream-namespace nonza keeps its prefix and declares it
    assert error.tag == f"{{{NS_STREAM}}}error"
    assert etree.tostring(error) == (
        b'<stream:error xmlns:stream="http://etherx.jabber.org/streams">'
        b'<not-well-formed xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>'
    )
    assert etree.tostring(ack) == b'<r xmlns="urn:xmpp:sm:3" h="5"/>'
    # re-parsing the serialisation gives the same element: nothing was lost in detaching
    assert etree.tostring(etree.fromstring(serialised)) == serialised


def test_emitted_elements_are_detached_standalone_and_tailless() -> None:
    events = after_header(b"<message><body>a</body></message>   \n<presence/>  <iq type='get' id='1'/>\n")
    for el in stanzas(events):
        assert el.getparent() is None
        assert el.tail is None
        assert el.getroottree().getroot() is el
        assert not etree.tostring(el).endswith(b" ")


def test_stream_prefix_declared_only_when_used() -> None:
    events = after_header(
        b"<message><body>x</body></message>"
        b"<message><stream:features/></message>"
        b"<iq xmlns:stream='urn:other' type='get' id='2'/>"
    )
    plain, uses_prefix, redeclares = [etree.tostring(e) for e in stanzas(events)]
    assert plain == b'<message xmlns="jabber:client"><body>x</body></message>'
    assert b'xmlns:stream="http://etherx.jabber.org/streams"' in uses_prefix
    assert b"<stream:features/>" in uses_prefix
    # its own declaration of the prefix is kept (it is part of what the client sent)
    assert redeclares == b'<iq xmlns:stream="urn:other" xmlns="jabber:client" type="get" id="2"/>'


def test_element_without_namespace_inside_stanza_keeps_no_namespace() -> None:
    (msg,) = stanzas(after_header(b"<message><x xmlns=''><y/></x></message>"))
    assert msg[0].tag == "x" and msg[0][0].tag == "y"
    assert etree.tostring(msg) == b'<message xmlns="jabber:client"><x xmlns=""><y/></x></message>'


def test_emitted_element_outlives_parser_and_reset() -> None:
    p = StreamParser()
    p.feed(HEADER)
    (event,) = p.feed(b"<message id='keep'><body>still here</body></message>")
    assert isinstance(event, StanzaElement)
    p.reset()
    p.feed(HEADER)
    p.feed(b"<message><body>other</body></message>" * 50)
    del p
    assert event.element.findtext("{jabber:client}body") == "still here"
    assert event.element.get("id") == "keep"


def test_tree_never_grows() -> None:
    p = StreamParser()
    p.feed(HEADER)
    for i in range(2000):
        out = p.feed(b"<message id='%d'><body>hi</body></message> \n" % i)
        assert len(out) == 1
    root = p._root  # white box: the stream root holds no finished stanzas and no text
    assert root is not None
    assert len(root) == 0
    assert root.text is None
    p.feed(b"<message><body>open")
    assert len(root) == 1  # only the stanza being received


def test_whitespace_between_stanzas_is_ignored() -> None:
    events = after_header(b"  \n\t <presence/>\r\n   \n<presence/> " + b" " * 1000)
    assert summary(events) == [("stanza", b'<presence xmlns="jabber:client"/>')] * 2
    # keepalives alone produce nothing
    p = StreamParser()
    p.feed(HEADER)
    assert all(p.feed(b" ") == [] for _ in range(500))
    assert summary(p.feed(b"<presence/>")) == [("stanza", b'<presence xmlns="jabber:client"/>')]


def test_duplicate_xml_id_in_different_stanzas_is_not_an_error() -> None:
    # libxml2 would keep a per-document ID table and report repeats; collect_ids is off
    events = after_header(b"<message xml:id='a'/><message xml:id='a'/>")
    assert [type(e) for e in events] == [StanzaElement, StanzaElement]


# ---------------------------------------------------------------- chunking


def test_split_at_every_byte_boundary_gives_identical_events() -> None:
    expected = summary(StreamParser().feed(SESSION))
    assert expected[-1] == ("end",) and len(expected) == 7
    for i in range(1, len(SESSION)):
        got = summary(feed_chunks([SESSION[:i], SESSION[i:]]))
        assert got == expected, f"split at byte {i}"


def test_byte_by_byte_gives_identical_events() -> None:
    expected = summary(StreamParser().feed(SESSION))
    assert summary(feed_bytewise(SESSION)) == expected


def test_random_multi_splits_give_identical_events() -> None:
    expected = summary(StreamParser().feed(SESSION))
    rng = random.Random(7395)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(SESSION)), rng.randint(2, 40)))
        chunks = [SESSION[a:b] for a, b in zip([0, *cuts], [*cuts, len(SESSION)], strict=False)]
        assert summary(feed_chunks(chunks)) == expected, cuts


def test_every_split_with_a_tight_stanza_limit_gives_identical_events() -> None:
    # With the limit at the largest stanza (plus the whitespace before it), every chunking must
    # still accept everything: the slow, exact path and the fast path agree.
    full = StreamParser().feed(SESSION)
    body_start = SESSION.index(b"'c2s-1'>") + len(b"'c2s-1'>")
    # each stanza's raw size: bytes from the previous stanza's end (or the header's) to its end
    ends = []
    p = StreamParser()
    for i in range(len(SESSION)):
        if any(isinstance(e, StanzaElement) for e in p.feed(SESSION[i : i + 1])):
            ends.append(i + 1)
    sizes = [b - a for a, b in zip([body_start, *ends], ends, strict=False)]
    tight = max(sizes)
    expected = summary(full)
    for i in range(1, len(SESSION)):
        got = summary(feed_chunks([SESSION[:i], SESSION[i:]], max_stanza_size=tight))
        assert got == expected, f"split at byte {i}"
    assert summary(feed_bytewise(SESSION, max_stanza_size=tight)) == expected
    # one byte less and the exact (byte-by-byte) path refuses the largest stanza
    assert error_of(feed_bytewise(SESSION, max_stanza_size=tight - 1)).condition is C.POLICY_VIOLATION


def test_random_chunking_with_keepalives_stress() -> None:
    rng = random.Random(6120)
    parts = [HEADER]
    expected = []
    for i in range(400):
        ws = " " * rng.randint(0, 3) + "\n" * rng.randint(0, 2)
        stanza = f"<message id='{i}'><body>{'é' * rng.randint(0, 30)}{i}</body></message>".encode()
        parts.append(ws.encode() + stanza)
        expected.append(("stanza", etree.tostring(etree.fromstring(stanza.replace(b"<message", b"<message xmlns='jabber:client'", 1)))))
    data = b"".join(parts) + b"   "
    for _ in range(5):
        chunks = []
        pos = 0
        while pos < len(data):
            n = rng.choice([1, 2, 3, 7, 50, 333, 4096])
            chunks.append(data[pos : pos + n])
            pos += n
        got = summary(feed_chunks(chunks))
        assert got[0][0] == "open"
        assert got[1:] == expected


def test_bytes_like_input_is_accepted() -> None:
    p = StreamParser()
    assert [type(e) for e in p.feed(bytearray(HEADER))] == [StreamOpen]
    assert [type(e) for e in p.feed(memoryview(b"<presence/>"))] == [StanzaElement]
    assert p.feed(b"") == []


# ---------------------------------------------------------------- stream open / end / reset


def test_stream_end_and_silence_afterwards() -> None:
    p = StreamParser()
    p.feed(HEADER)
    assert summary(p.feed(b"<presence/></stream:stream>")) == [
        ("stanza", b'<presence xmlns="jabber:client"/>'),
        ("end",),
    ]
    assert p.feed(b"<presence/>") == []
    assert p.feed(b"garbage <<<") == []


def test_self_closing_header_is_open_then_end() -> None:
    events = StreamParser().feed(HEADER[:-1] + b"/>")
    assert [type(e) for e in events] == [StreamOpen, StreamEnd]


def test_header_attributes_and_default_namespace() -> None:
    (opened,) = StreamParser().feed(
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server' "
        b"from='a.example' to='b.example' id='x1' version='1.0' xml:lang='de'>"
    )
    assert isinstance(opened, StreamOpen)
    assert opened.attrs == {"from": "a.example", "to": "b.example", "id": "x1", "version": "1.0", "xml:lang": "de"}
    assert opened.default_ns == "jabber:server"
    (no_default,) = StreamParser().feed(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='x'>")
    assert isinstance(no_default, StreamOpen) and no_default.default_ns is None


def test_header_split_and_followed_by_stanzas_in_the_same_chunk() -> None:
    data = b"<?xml version='1.0'?>" + HEADER + b"<presence/><message><body>x</body></message>"
    assert summary(StreamParser().feed(data)) == summary(feed_bytewise(data))
    assert [t for t, *_ in summary(feed_bytewise(data))] == ["open", "stanza", "stanza"]


def test_reset_after_restart_starts_a_new_document() -> None:
    p = StreamParser()
    p.feed(b"<?xml version='1.0'?>" + HEADER)
    # <starttls/> with plaintext pipelined after it (the STARTTLS command injection pattern) and
    # the start of another stanza still inside libxml2's buffer
    events = p.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='set' id='evil'/><iq id='evil2'")
    assert [e.element.tag for e in events if isinstance(e, StanzaElement)] == [
        "{urn:ietf:params:xml:ns:xmpp-tls}starttls",
        "{jabber:client}iq",
    ]
    p.reset()  # the caller restarts at <starttls/> and drops the events after it
    events = p.feed(
        b"<?xml version='1.0'?>" + HEADER + b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>"
    )
    assert [type(e) for e in events] == [StreamOpen, StanzaElement]
    assert events[1].element.get("mechanism") == "PLAIN"
    assert b"evil" not in b"".join(etree.tostring(e.element) for e in events if isinstance(e, StanzaElement))
    p.reset()  # SASL success
    events = p.feed(HEADER + b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert [type(e) for e in events] == [StreamOpen, StanzaElement]
    assert etree.tostring(events[1].element).startswith(b'<iq xmlns="jabber:client"')


def test_reset_mid_stanza_discards_the_partial_stanza() -> None:
    p = StreamParser()
    p.feed(HEADER + b"<message><body>half")
    p.reset()
    events = p.feed(HEADER + b"<presence/>")
    assert summary(events)[1:] == [("stanza", b'<presence xmlns="jabber:client"/>')]


def test_reset_revives_after_parse_error() -> None:
    p = StreamParser()
    assert error_of(p.feed(b"<!DOCTYPE x>")).condition is C.RESTRICTED_XML
    assert p.feed(HEADER) == []
    p.reset()
    assert [type(e) for e in p.feed(HEADER)] == [StreamOpen]


def test_silence_after_parse_error() -> None:
    p = StreamParser()
    p.feed(HEADER)
    assert error_of(p.feed(b"<a></b>")).condition is C.NOT_WELL_FORMED
    assert p.feed(b"<presence/>") == []
    assert p.feed(b"</stream:stream>") == []


def test_stanzas_completed_before_an_error_in_the_same_chunk_are_delivered() -> None:
    data = HEADER + b"<presence/><message></iq>"
    whole = summary(StreamParser().feed(data))
    assert whole == [whole[0], ("stanza", b'<presence xmlns="jabber:client"/>'), ("error", C.NOT_WELL_FORMED)]
    assert summary(feed_bytewise(data)) == whole


# ---------------------------------------------------------------- restricted XML (RFC 6120 §11.1)

BILLION_LAUGHS = (
    b"<?xml version='1.0'?>"
    b"<!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]>"
)

XXE = b"<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"


def test_billion_laughs_is_restricted_and_never_expanded() -> None:
    data = BILLION_LAUGHS + HEADER + b"<message><body>&lol9;</body></message>"
    start = time.perf_counter()
    events = StreamParser().feed(data)
    assert time.perf_counter() - start < 1.0  # generous; expansion would take far longer
    assert summary(events) == [("error", C.RESTRICTED_XML)]
    assert summary(feed_bytewise(data)) == [("error", C.RESTRICTED_XML)]


def test_xxe_is_restricted_and_reads_nothing() -> None:
    data = XXE + HEADER + b"<message><body>&xxe;</body></message>"
    for events in (StreamParser().feed(data), feed_bytewise(data)):
        assert summary(events) == [("error", C.RESTRICTED_XML)]
        assert "root:" not in repr(events)


def test_external_entity_reference_inside_the_stream_is_restricted() -> None:
    events = after_header(b"<message><body>&xxe;</body></message>")
    assert error_of(events).condition is C.RESTRICTED_XML
    assert not stanzas(events)


@pytest.mark.parametrize(
    "prolog",
    [
        b"<!DOCTYPE stream>",
        b"<!DOCTYPE stream:stream SYSTEM 'http://example.com/x.dtd'>",
        b"<?xml version='1.0'?><!DOCTYPE stream>",
        b"<?xml version='1.0'?>\n<!DOCTYPE stream [<!ENTITY x 'y'>]>",  # internal entity
    ],
)
def test_doctype_before_the_header_is_restricted(prolog: bytes) -> None:
    data = prolog + HEADER
    assert error_of(StreamParser().feed(data)).condition is C.RESTRICTED_XML
    assert error_of(feed_bytewise(data)).condition is C.RESTRICTED_XML


@pytest.mark.parametrize(
    "markup",
    [
        b"<!DOCTYPE x>",
        b"<!DOCTYPE x [<!ENTITY a 'b'>]>",
        b"<!ENTITY x 'y'>",
        b"<message><!DOCTYPE x></message>",
        b"<message><!ENTITY x 'y'></message>",
    ],
)
def test_doctype_or_entity_declaration_inside_the_stream_is_restricted(markup: bytes) -> None:
    assert error_of(after_header(markup)).condition is C.RESTRICTED_XML
    assert error_of(feed_bytewise(HEADER + markup)).condition is C.RESTRICTED_XML


@pytest.mark.parametrize("body", [b"<body>&foo;</body>", b"<body a='&foo;'/>", b"<body>&amp;&bar;</body>"])
def test_undefined_entity_is_restricted(body: bytes) -> None:
    events = after_header(b"<message>" + body + b"</message><iq type='get' id='next'/>")
    assert error_of(events).condition is C.RESTRICTED_XML
    assert not stanzas(events)


def test_undefined_entity_does_not_desynchronise_the_stream() -> None:
    # Regression for lxml with resolve_entities=False: feed() swallowed the error and the next
    # stanza came out as a new document, without its namespace.
    p = StreamParser()
    p.feed(HEADER)
    first = p.feed(b"<message><body>a &foo; b</body></message>")
    assert error_of(first).condition is C.RESTRICTED_XML
    assert p.feed(b"<iq type='get' id='x'/>") == []


def test_predefined_entities_and_character_references_are_allowed() -> None:
    (msg,) = stanzas(after_header(b"<message a='&lt;&quot;&#x41;'><body>&lt;&gt;&amp;&quot;&apos;&#65;&#x42;&#x4F60;</body></message>"))
    assert msg.findtext("{jabber:client}body") == "<>&\"'AB你"
    assert msg.get("a") == '<"A'


@pytest.mark.parametrize("where", ["before-header", "between-stanzas", "inside-stanza"])
def test_comments_are_restricted(where: str) -> None:
    comment = b"<!-- hello -->"
    data = {
        "before-header": comment + HEADER,
        "between-stanzas": HEADER + b"<presence/>" + comment,
        "inside-stanza": HEADER + b"<message>" + comment + b"</message>",
    }[where]
    assert error_of(StreamParser().feed(data)).condition is C.RESTRICTED_XML
    assert error_of(feed_bytewise(data)).condition is C.RESTRICTED_XML


@pytest.mark.parametrize(
    "data",
    [
        b"<?php echo 1; ?>" + HEADER,
        b"<?xml version='1.0'?><?xml-stylesheet href='a.xsl'?>" + HEADER,
        b"<?xml-stylesheet href='a.xsl'?>" + HEADER,
        HEADER + b"<?pi data?>",
        HEADER + b"<message><?pi data?></message>",
    ],
)
def test_processing_instructions_are_restricted(data: bytes) -> None:
    assert error_of(StreamParser().feed(data)).condition is C.RESTRICTED_XML
    assert error_of(feed_bytewise(data)).condition is C.RESTRICTED_XML


@pytest.mark.parametrize(
    "decl",
    [
        b"<?xml version='1.0'?>",
        b'<?xml version="1.0" encoding="UTF-8"?>',
        b"<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n",
        b"<?xml version='1.0'?>  \r\n\t",
    ],
)
def test_xml_declaration_at_the_start_is_allowed(decl: bytes) -> None:
    for events in (StreamParser().feed(decl + HEADER + b"<presence/>"), feed_bytewise(decl + HEADER + b"<presence/>")):
        assert [type(e) for e in events] == [StreamOpen, StanzaElement]


@pytest.mark.parametrize("data", [b"  <?xml version='1.0'?>" + HEADER, HEADER + b"<?xml version='1.0'?>"])
def test_xml_declaration_elsewhere_is_not_well_formed(data: bytes) -> None:
    assert error_of(StreamParser().feed(data)).condition is C.NOT_WELL_FORMED


# ---------------------------------------------------------------- not well-formed, encodings


@pytest.mark.parametrize(
    "body",
    [
        b"<message><body>\xff</body></message>",  # invalid UTF-8 byte
        b"<message><body>\xc0\xaf</body></message>",  # overlong encoding of '/'
        b"<message><body>\xe4\xbd</body></message>",  # truncated sequence
        b"<message><body>\xed\xa0\x80</body></message>",  # UTF-8-encoded surrogate
        b"<message to='\xff'/>",
        b"<message><body>\x00</body></message>",
        b"<message><body>\x01</body></message>",
        b"<message><body>\x1b[31m</body></message>",
        b"<message><body>&#1;</body></message>",
        b"<message><body>&#0;</body></message>",
        b"<message><body>&#xD800;</body></message>",
        b"<message><body>&#xDFFF;</body></message>",
        b"<message a='&#x1B;'/>",
        b"<message></iq>",
        b"<message a='1' a='2'/>",
        b"<message><body>a & b; c</body></message>",  # libxml2 waits for the ';' before it decides
        b"<message xmlns:p=''/>",
    ],
)
def test_not_well_formed(body: bytes) -> None:
    events = after_header(body)
    assert error_of(events).condition is C.NOT_WELL_FORMED
    assert not stanzas(events)
    assert error_of(feed_bytewise(HEADER + body)).condition is C.NOT_WELL_FORMED


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\x01", b"hello" + HEADER])
def test_garbage_instead_of_a_header_is_not_well_formed(data: bytes) -> None:
    assert error_of(StreamParser().feed(data)).condition is C.NOT_WELL_FORMED


@pytest.mark.parametrize(
    "data",
    [
        b"<?xml version='1.0' encoding='ISO-8859-1'?>" + HEADER,
        b'<?xml version="1.0" encoding="UTF-16"?>' + HEADER,
        b"<?xml version='1.0' encoding = 'latin1' ?>" + HEADER,
        b"\xff\xfe<\x00s\x00",  # UTF-16LE with BOM
        b"\xfe\xff\x00<\x00s",  # UTF-16BE with BOM
        b"<\x00?\x00x\x00",  # UTF-16LE without BOM
    ],
)
def test_encodings_other_than_utf8_are_unsupported(data: bytes) -> None:
    assert error_of(StreamParser().feed(data)).condition is C.UNSUPPORTED_ENCODING
    assert error_of(feed_bytewise(data)).condition is C.UNSUPPORTED_ENCODING


def test_declared_latin1_is_not_silently_accepted() -> None:
    # libxml2 would decode \xe9 as é if it honoured the declaration
    events = StreamParser().feed(b"<?xml version='1.0' encoding='ISO-8859-1'?>" + HEADER + b"<message><body>\xe9</body></message>")
    assert summary(events) == [("error", C.UNSUPPORTED_ENCODING)]


def test_utf8_byte_order_mark_is_not_well_formed() -> None:
    # RFC 6120 §11.6: U+FEFF is a character, never a BOM; character data before the root
    data = b"\xef\xbb\xbf" + HEADER
    assert error_of(StreamParser().feed(data)).condition is C.NOT_WELL_FORMED
    assert error_of(feed_bytewise(data)).condition is C.NOT_WELL_FORMED


# ---------------------------------------------------------------- namespaces


@pytest.mark.parametrize(
    "header",
    [
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streamz'>",
        b"<stream xmlns='jabber:client'>",
        b"<stream:stream xmlns='jabber:client'>",  # undeclared stream prefix
        b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'>",  # wrong element name
        b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x'/>",  # WebSocket framing over TCP
    ],
)
def test_wrong_header_is_invalid_namespace(header: bytes) -> None:
    assert error_of(StreamParser().feed(header)).condition is C.INVALID_NAMESPACE
    assert error_of(feed_bytewise(header)).condition is C.INVALID_NAMESPACE


@pytest.mark.parametrize("body", [b"<message><foo:bar/></message>", b"<message foo:a='1'/>", b"<foo:message/>"])
def test_undeclared_prefix_is_bad_namespace_prefix_and_not_emitted(body: bytes) -> None:
    # libxml2 only logs this (feed() does not raise); the element would keep a literal
    # "foo:bar" name and be re-serialised without a declaration
    events = after_header(b"<presence/>" + body)
    assert error_of(events).condition is C.BAD_NAMESPACE_PREFIX
    assert all(b"foo:" not in etree.tostring(el) for el in stanzas(events))
    assert error_of(feed_bytewise(HEADER + body)).condition is C.BAD_NAMESPACE_PREFIX


def test_duplicate_namespaced_attribute_is_not_well_formed() -> None:
    events = after_header(b"<message xmlns:x='u' xmlns:y='u' x:a='1' y:a='2'/>")
    assert error_of(events).condition is C.NOT_WELL_FORMED


def test_warnings_are_tolerated_and_do_not_hide_a_later_namespace_error() -> None:
    # A relative namespace URI is only a libxml2 warning. libxml2 keeps at most 100 warnings per
    # document, and counts errors separately: an undeclared prefix after many warnings is caught.
    p = StreamParser()
    p.feed(HEADER)
    assert len(stanzas(p.feed(b"<message xmlns='relative'/>" * 150))) == 150
    assert error_of(p.feed(b"<message><foo:bar/></message>")).condition is C.BAD_NAMESPACE_PREFIX
    assert len(p._parser.feed_error_log) <= 101  # white box: the log stays bounded


def test_invalid_namespace_uri_is_not_well_formed() -> None:
    assert error_of(after_header(b"<message xmlns='http://a b'/>")).condition is C.NOT_WELL_FORMED


def test_character_data_between_stanzas_is_ignored() -> None:
    # not whitespace, but meaningless at depth 1: never delivered, and freed with the next stanza
    events = after_header(b"junk<presence/>more junk<presence/>")
    assert summary(events) == [("stanza", b'<presence xmlns="jabber:client"/>')] * 2


# ---------------------------------------------------------------- limits


def test_oversized_stanza_fails_while_it_streams_in() -> None:
    p = StreamParser(max_stanza_size=1000)
    p.feed(HEADER)
    assert p.feed(b"<message to='a@b'><body>") == []
    fed = len(b"<message to='a@b'><body>")
    events: list[object] = []
    while not events:
        events = p.feed(b"x" * 50)
        fed += 50
        assert fed < 5000, "no error although the stanza passed the limit"
    err = error_of(events)
    assert err.condition is C.POLICY_VIOLATION
    assert "1000" in err.text
    assert 1000 < fed <= 1050  # reported in the chunk that crossed the limit, before completion
    assert p.feed(b"</body></message>") == []


def test_oversized_stanza_in_one_chunk() -> None:
    big = b"<message><body>" + b"x" * 2000 + b"</body></message>"
    err = error_of(after_header(b"<presence/>" + big, max_stanza_size=1000))
    assert err.condition is C.POLICY_VIOLATION and "1000" in err.text
    # and in a chunk shared with the header
    assert error_of(StreamParser(max_stanza_size=1000).feed(HEADER + big)).condition is C.POLICY_VIOLATION


@pytest.mark.parametrize("how", ["whole", "halves", "bytewise", "with-header"])
def test_stanza_exactly_at_the_limit_is_accepted_and_one_more_byte_is_not(how: str) -> None:
    def stanza(size: int) -> bytes:
        head, tail = b"<message><body>", b"</body></message>"
        return head + b"x" * (size - len(head) - len(tail)) + tail

    def run(s: bytes) -> list[object]:
        if how == "with-header":
            return StreamParser(max_stanza_size=500).feed(HEADER + s)
        p = StreamParser(max_stanza_size=500)
        p.feed(HEADER)
        if how == "whole":
            chunks = [s]
        elif how == "halves":
            chunks = [s[: len(s) // 2], s[len(s) // 2 :]]
        else:
            chunks = [s[i : i + 1] for i in range(len(s))]
        return feed_chunks(chunks, parser=p)

    assert len(stanzas(run(stanza(500)))) == 1
    assert error_of(run(stanza(501))).condition is C.POLICY_VIOLATION


def test_many_small_stanzas_are_not_one_big_one() -> None:
    small = b"<message><body>" + b"y" * 80 + b"</body></message>"  # 112 bytes
    data = small * 100
    assert len(stanzas(after_header(data, max_stanza_size=200))) == 100  # one chunk far over the limit
    p = StreamParser(max_stanza_size=200)
    p.feed(HEADER)
    assert len(stanzas(feed_chunks([data[i : i + 150] for i in range(0, len(data), 150)], parser=p))) == 100


def test_whitespace_flood_between_stanzas_is_limited() -> None:
    p = StreamParser(max_stanza_size=1000)
    p.feed(HEADER + b"<presence/>")
    events: list[object] = []
    for _ in range(100):
        events = p.feed(b" " * 100)
        if events:
            break
    assert error_of(events).condition is C.POLICY_VIOLATION


def test_deep_nesting_is_a_policy_violation() -> None:
    def nested(depth: int) -> bytes:
        return b"<a>" * depth + b"</a>" * depth

    assert len(stanzas(after_header(nested(5), max_depth=5))) == 1
    err = error_of(after_header(nested(6), max_depth=5))
    assert err.condition is C.POLICY_VIOLATION and "5" in err.text
    # default limit, and the error comes while the elements stream in, before any end tag
    p = StreamParser()
    p.feed(HEADER)
    assert p.feed(b"<a>" * 64) == []
    assert error_of(p.feed(b"<a>")).condition is C.POLICY_VIOLATION


def test_too_many_attributes_is_a_policy_violation() -> None:
    def attrs(n: int) -> bytes:
        return b" ".join(b"a%d='v'" % i for i in range(n))

    assert len(stanzas(after_header(b"<message " + attrs(3) + b"><x " + attrs(3) + b"/></message>", max_attrs=3))) == 1
    assert error_of(after_header(b"<message " + attrs(4) + b"/>", max_attrs=3)).condition is C.POLICY_VIOLATION
    assert error_of(after_header(b"<message><x " + attrs(4) + b"/></message>", max_attrs=3)).condition is C.POLICY_VIOLATION
    assert error_of(after_header(b"<message " + attrs(101) + b"/>")).condition is C.POLICY_VIOLATION
    header = HEADER[:-1] + b" " + attrs(4) + b">"
    assert error_of(StreamParser(max_attrs=3).feed(header)).condition is C.POLICY_VIOLATION


def test_oversized_header_is_a_policy_violation() -> None:
    big = HEADER[:-1] + b" pad='" + b"x" * 300 + b"'>"
    err = error_of(StreamParser(max_header_size=256).feed(big))
    assert err.condition is C.POLICY_VIOLATION and "256" in err.text
    # streaming: no '>' yet, but already over the limit
    p = StreamParser(max_header_size=256)
    assert p.feed(HEADER[:-1]) == []
    assert error_of(p.feed(b" pad='" + b"x" * 300)).condition is C.POLICY_VIOLATION
    # whitespace before the header counts too
    assert error_of(StreamParser(max_header_size=256).feed(b" " * 300)).condition is C.POLICY_VIOLATION
    # a header within the limit, immediately followed by a big stanza, is fine
    events = StreamParser(max_header_size=len(HEADER)).feed(HEADER + b"<message>" + b"z" * 5000 + b"</message>")
    assert [type(e) for e in events] == [StreamOpen, StanzaElement]


# ---------------------------------------------------------------- WebSocket (RFC 7395)

OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='capulet.lit' version='1.0' xml:lang='en'/>"
CLOSE = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"


def ws(*messages: str | bytes, **limits: int) -> list[object]:
    f = WebSocketFramer(**limits)
    events: list[object] = []
    for m in messages:
        events.extend(f.feed_message(m))
    return events


def test_websocket_open_stanza_close() -> None:
    events = ws(
        OPEN,
        "<message xmlns='jabber:client' to='juliet@capulet.lit'><body>hi &amp; bye 😀</body></message>",
        b"<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        CLOSE,
    )
    assert [type(e) for e in events] == [StreamOpen, StanzaElement, StanzaElement, StreamEnd]
    opened = events[0]
    assert isinstance(opened, StreamOpen)
    assert opened.attrs == {"to": "capulet.lit", "version": "1.0", "xml:lang": "en"}
    assert opened.default_ns is None
    msg = events[1].element
    assert msg.tag == "{jabber:client}message" and msg.getparent() is None and msg.tail is None
    assert etree.tostring(msg, encoding="utf-8") == (
        '<message xmlns="jabber:client" to="juliet@capulet.lit"><body>hi &amp; bye 😀</body></message>'
    ).encode()


def test_websocket_events_match_tcp_events() -> None:
    stanza = b"<message to='a@b' id='1'><body>x</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    tcp = summary(after_header(stanza))
    over_ws = summary(ws(stanza.replace(b"<message", b"<message xmlns='jabber:client'", 1)))
    without_xmlns = summary(ws(stanza))  # lenient: no namespace means jabber:client, as over TCP
    assert tcp == over_ws == without_xmlns


def test_websocket_close_then_silence_and_reset() -> None:
    f = WebSocketFramer()
    assert [type(e) for e in f.feed_message(CLOSE)] == [StreamEnd]
    assert f.feed_message("<presence/>") == []
    f.reset()
    assert [type(e) for e in f.feed_message(OPEN)] == [StreamOpen]


def test_websocket_xml_declaration_and_whitespace_around_the_element() -> None:
    events = ws("<?xml version='1.0'?>" + OPEN, "\n <presence/> \n")
    assert [type(e) for e in events] == [StreamOpen, StanzaElement]


@pytest.mark.parametrize(
    "message",
    [
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' to='x' version='1.0'>",
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='x' version='1.0'/>",
        "<open to='capulet.lit' version='1.0'/>",  # no framing namespace
        "<open xmlns='jabber:client' to='capulet.lit' version='1.0'/>",
        "<close/>",
    ],
)
def test_websocket_bad_namespace(message: str) -> None:
    assert error_of(ws(message)).condition is C.INVALID_NAMESPACE


@pytest.mark.parametrize(
    "message",
    [
        "",
        "   ",
        "hello",
        "<message xmlns='jabber:client'>",  # not a complete document
        "<message xmlns='jabber:client'><body>x</message>",
        "<presence/><presence/>",  # two elements
        "<presence/>trailing text",
        "leading<presence/>",
        "<presence/></xmppd-ws-message><presence/>",  # trying to break out of the framing
        "</stream:stream>",
        b"<message><body>\xff</body></message>",
        "<message><body>\x00</body></message>",
        "<message><body>&#xD800;</body></message>",
        "<message><body>\ud800</body></message>",  # lone surrogate in the str
    ],
)
def test_websocket_not_a_single_element_is_not_well_formed(message: str | bytes) -> None:
    err = error_of(ws(message))
    assert err.condition is C.NOT_WELL_FORMED
    assert "xmppd-ws-message" not in err.text  # our wrapper never leaks into error texts


@pytest.mark.parametrize(
    "message",
    [
        "<presence/><!-- c -->",
        "<presence><!-- c --></presence>",
        "<?pi x?><presence/>",
        "<presence><?pi x?></presence>",
        "<!DOCTYPE presence><presence/>",
        (BILLION_LAUGHS + b"<message><body>&lol9;</body></message>").decode(),
        (XXE + b"<message><body>&xxe;</body></message>").decode(),
        "<message><body>&foo;</body></message>",
    ],
)
def test_websocket_restricted_xml(message: str) -> None:
    assert error_of(ws(OPEN, message)).condition is C.RESTRICTED_XML


def test_websocket_limits() -> None:
    big = "<message><body>" + "x" * 600 + "</body></message>"
    err = error_of(ws(big, max_stanza_size=500))
    assert err.condition is C.POLICY_VIOLATION and "500" in err.text
    assert len(stanzas(ws(big, max_stanza_size=len(big)))) == 1
    assert error_of(ws("<a>" * 6 + "</a>" * 6, max_depth=5)).condition is C.POLICY_VIOLATION
    assert len(stanzas(ws("<a>" * 5 + "</a>" * 5, max_depth=5))) == 1
    assert error_of(ws("<a x='1' y='2' z='3'/>", max_attrs=2)).condition is C.POLICY_VIOLATION
    assert error_of(ws("<message xmlns='jabber:client'><foo:bar/></message>")).condition is C.BAD_NAMESPACE_PREFIX


def test_websocket_encoding_declaration() -> None:
    assert error_of(ws("<?xml version='1.0' encoding='ISO-8859-1'?><presence/>")).condition is C.UNSUPPORTED_ENCODING


def test_websocket_silence_after_error() -> None:
    f = WebSocketFramer()
    assert error_of(f.feed_message("<a/><b/>")).condition is C.NOT_WELL_FORMED
    assert f.feed_message(OPEN) == []


def test_websocket_reset_keeps_a_clean_parser_and_replaces_a_failed_one() -> None:
    f = WebSocketFramer()
    assert [type(e) for e in f.feed_message(OPEN)] == [StreamOpen]
    parser = f._parser
    f.reset()  # the stream restart after SASL: every message was a whole document
    assert f._parser is parser
    assert [type(e) for e in f.feed_message(OPEN)] == [StreamOpen]
    assert [type(e) for e in f.feed_message("<presence/>")] == [StanzaElement]
    assert error_of(f.feed_message("<message><body>cut short")).condition is C.NOT_WELL_FORMED
    f.reset()
    assert f._parser is not parser
    assert [type(e) for e in f.feed_message("<presence xmlns='jabber:client'/>")] == [StanzaElement]


# ---------------------------------------------------------------- no I/O


def test_parser_module_imports_no_io_libraries() -> None:
    code = (
        "import sys; import xmppd.xml.parser; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'asyncio', 'socket', '_socket', 'ssl', '_ssl', 'sqlalchemy', 'selectors'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_namespace_constants() -> None:
    assert NS_STREAM == "http://etherx.jabber.org/streams"
    assert NS_FRAMING == "urn:ietf:params:xml:ns:xmpp-framing"
