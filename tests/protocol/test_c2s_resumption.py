"""XEP-0198 in the stream core without I/O: <resume/> before bind is a nonza event, the driver's
``resumed(jid)`` establishes the stream without a bind reply, and a lost connection says so."""
from __future__ import annotations

from xmppd.jid import JID
from xmppd.protocol import events as ev
from xmppd.protocol.c2s import C2SStream, State, StreamConfig

from .test_c2s import CREDS, HEADER, out, plain

SM = "urn:xmpp:sm:3"


def authenticated() -> C2SStream:
    s = C2SStream(StreamConfig("example.com", tls_available=True, nonza_namespaces=frozenset({SM})))
    s.receive_data(HEADER.encode())
    s.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    s.tls_established(("tls-server-end-point", b"x" * 32))
    s.receive_data(HEADER.encode())
    s.receive_data(plain().encode())
    s.credentials_result(CREDS)
    s.receive_data(HEADER.encode())
    out(s)
    assert s.state is State.WAIT_BIND
    return s


def test_resume_before_bind_is_a_nonza_and_resumed_establishes_without_a_bind_reply():
    s = authenticated()
    [nonza] = s.receive_data(f"<resume xmlns='{SM}' previd='abc' h='3'/>".encode())
    assert isinstance(nonza, ev.NonzaReceived) and nonza.element.get("previd") == "abc"
    s.resumed(JID.parse("alice@example.com/phone"))
    assert s.state is State.ESTABLISHED and out(s) == ""
    [msg] = s.receive_data(b"<message to='bob@example.com'><body>hi</body></message>")
    assert isinstance(msg, ev.StanzaReceived) and msg.element.get("from") == "alice@example.com/phone"


def test_resumed_is_ignored_once_bound():
    s = authenticated()
    [bind] = s.receive_data(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert isinstance(bind, ev.BindRequested)
    s.bind_result(JID.parse("alice@example.com/r"))
    s.resumed(JID.parse("alice@example.com/other"))
    assert s.jid == JID.parse("alice@example.com/r")


def test_connection_lost_is_marked_lost_but_a_close_is_not():
    s = authenticated()
    [closed] = s.connection_lost()
    assert isinstance(closed, ev.StreamClosed) and closed.lost and closed.by_peer
    t = authenticated()
    [closed] = t.receive_data(b"</stream:stream>")
    assert isinstance(closed, ev.StreamClosed) and not closed.lost
