"""RFC 7395 framing through the client-stream state machine, without I/O: one output unit per
WebSocket message, <open/>/<close/> in place of the stream tags, the stream error recorded."""
from __future__ import annotations

import base64

from lxml import etree

from xmppd.errors import StreamErrorCondition
from xmppd.jid import JID
from xmppd.protocol import events as ev
from xmppd.protocol.c2s import C2SStream, State, StreamConfig
from xmppd.protocol.sasl import make_credentials

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='example.com' version='1.0'/>"
CREDS = make_credentials("secret", "SHA-256")


def ws(**kw) -> C2SStream:
    return C2SStream(StreamConfig("example.com", require_tls=False, websocket=True, **kw))


def tags(units: list[bytes]) -> list[str]:
    return [etree.fromstring(u).tag for u in units]


def test_every_output_unit_is_one_complete_element():
    s = ws()
    s.receive_message(OPEN)
    units = s.data_to_send()
    assert tags(units) == [f"{{{FRAMING}}}open", "{http://etherx.jabber.org/streams}features"]
    opened = etree.fromstring(units[0])
    assert opened.get("from") == "example.com" and opened.get("version") == "1.0" and opened.get("id")
    token = base64.b64encode(b"\0alice\0secret").decode()
    s.receive_message(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    s.credentials_result(CREDS)
    assert tags(s.data_to_send()) == ["{urn:ietf:params:xml:ns:xmpp-sasl}success"]
    # the restart is a new <open/>, with a new id
    s.receive_message(OPEN)
    again = s.data_to_send()
    assert etree.fromstring(again[0]).get("id") != opened.get("id")
    [bind] = s.receive_message("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert isinstance(bind, ev.BindRequested)
    s.bind_result(JID.parse("alice@example.com/r"))
    assert s.state is State.ESTABLISHED
    s.data_to_send()
    [st] = s.receive_message("<message to='bob@example.com'><body>hi</body></message>")
    assert isinstance(st, ev.StanzaReceived) and st.element.tag == "{jabber:client}message"


def test_stream_error_is_header_error_close_as_three_messages_and_is_recorded():
    s = ws()
    events = s.receive_message("not xml at all")
    assert isinstance(events[-1], ev.StreamClosed) and events[-1].error is StreamErrorCondition.NOT_WELL_FORMED
    assert tags(s.data_to_send()) == [
        f"{{{FRAMING}}}open",
        "{http://etherx.jabber.org/streams}error",
        f"{{{FRAMING}}}close",
    ]
    assert s.error is StreamErrorCondition.NOT_WELL_FORMED
    assert s.receive_message(OPEN) == []  # closed: nothing more is read


def test_close_by_the_server_after_open_records_the_condition():
    s = ws()
    s.receive_message(OPEN)
    s.data_to_send()
    s.close(StreamErrorCondition.SYSTEM_SHUTDOWN, "bye")
    assert tags(s.data_to_send()) == ["{http://etherx.jabber.org/streams}error", f"{{{FRAMING}}}close"]
    assert s.error is StreamErrorCondition.SYSTEM_SHUTDOWN


def test_peer_close_is_answered_with_close_and_no_error():
    s = ws()
    s.receive_message(OPEN)
    s.data_to_send()
    [closed] = s.receive_message(f"<close xmlns='{FRAMING}'/>")
    assert isinstance(closed, ev.StreamClosed) and closed.by_peer
    assert tags(s.data_to_send()) == [f"{{{FRAMING}}}close"]
    assert s.error is None


def test_websocket_stream_marked_tls_offers_plain_with_tls_required():
    """A wss:// or trusted-proxy https connection: the driver calls set_direct_tls(None)."""
    s = C2SStream(StreamConfig("example.com", require_tls=True, tls_available=False, websocket=True))
    s.set_direct_tls(None)
    s.receive_message(OPEN)
    features = etree.fromstring(s.data_to_send()[1])
    mechs = [m.text for m in features.iter("{urn:ietf:params:xml:ns:xmpp-sasl}mechanism")]
    assert "PLAIN" in mechs and not any(m.endswith("-PLUS") for m in mechs)
    assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
    assert s.state is State.WAIT_SASL
