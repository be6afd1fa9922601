"""The client-stream state machine without any I/O: bytes in, events and bytes out."""
from __future__ import annotations

import base64
import subprocess
import sys

from lxml import etree
from scramp import ScramClient

from xmppd.errors import Condition, SaslCondition, StreamErrorCondition
from xmppd.jid import JID
from xmppd.protocol import events as ev
from xmppd.protocol.c2s import C2SStream, State, StreamConfig
from xmppd.protocol.sasl import make_credentials

HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
)
CREDS = make_credentials("secret", "SHA-256")


def out(stream: C2SStream) -> str:
    return b"".join(stream.data_to_send()).decode()


def plain(user: str = "alice", password: str = "secret", authzid: str = "") -> str:
    data = base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()
    return f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{data}</auth>"


def established(**kw) -> C2SStream:
    """A stream that went through TLS, PLAIN and bind."""
    s = C2SStream(StreamConfig("example.com", tls_available=True, **kw))
    s.receive_data(HEADER.encode())
    s.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    s.tls_established(("tls-server-end-point", b"x" * 32))
    s.receive_data(HEADER.encode())
    [need] = s.receive_data(plain().encode())
    assert isinstance(need, ev.CredentialsNeeded) and need.username == "alice"
    events = s.credentials_result(CREDS)
    assert any(isinstance(e, ev.Authenticated) for e in events)
    s.receive_data(HEADER.encode())
    [bind] = s.receive_data(
        b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>"
    )
    assert isinstance(bind, ev.BindRequested) and bind.resource == "r"
    s.bind_result(JID.parse("alice@example.com/r"))
    assert s.state is State.ESTABLISHED
    out(s)
    return s


def test_header_and_starttls_required_features():
    s = C2SStream(StreamConfig("example.com", tls_available=True))
    [opened] = s.receive_data(HEADER.encode())
    assert isinstance(opened, ev.StreamOpened)
    text = out(s)
    assert "<stream:stream" in text and "from='example.com'" in text
    assert "<starttls" in text and "<required/>" in text and "mechanisms" not in text
    assert s.state is State.WAIT_STARTTLS


def test_auth_before_starttls_is_encryption_required_and_the_stream_ends_saying_why():
    s = C2SStream(StreamConfig("example.com", tls_available=True))
    s.receive_data(HEADER.encode())
    out(s)
    events = s.receive_data(plain().encode())
    text = out(s)
    assert "<encryption-required/>" in text
    assert "<policy-violation xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in text and "negotiate STARTTLS" in text
    assert text.endswith("</stream:stream>")
    assert [type(e) for e in events] == [ev.AuthFailed, ev.AuthUnavailable, ev.StreamClosed]
    assert s.state is State.CLOSED


def test_no_way_to_authenticate_is_a_stream_error_not_empty_features():
    """TLS required and none to be had (plain WebSocket, or a listener without TLS): the
    stream opens and ends with policy-violation and a reason; never empty features."""
    for websocket in (False, True):
        s = C2SStream(StreamConfig("example.com", tls_available=False, websocket=websocket))
        header = HEADER if not websocket else "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>"
        events = s.receive_data(header.encode()) if not websocket else s.receive_message(header)
        text = out(s)
        assert "features" not in text and "<policy-violation" in text
        assert ("wss://" if websocket else "direct TLS") in text
        assert [type(e) for e in events] == [ev.StreamOpened, ev.AuthUnavailable, ev.StreamClosed]
        assert events[-1].error is StreamErrorCondition.POLICY_VIOLATION


def test_nothing_is_written_after_the_streams_close():
    """Output ends at the closing tag: a late bind answer or pre-auth reply queued after the
    close is never handed out."""
    s = established()
    s.receive_data(b"</stream:stream>")
    s.send_element(etree.Element("late"))
    s.bind_result(JID.parse("alice@example.com/r"))
    assert out(s) == "</stream:stream>" and s.state is State.CLOSED
    s.send_element(etree.Element("later"))
    assert out(s) == ""


def test_stanza_before_auth_is_not_authorized_stream_error():
    s = C2SStream(StreamConfig("example.com", require_tls=False))
    s.receive_data(HEADER.encode())
    events = s.receive_data(b"<message to='bob@example.com'><body>hi</body></message>")
    assert isinstance(events[-1], ev.StreamClosed)
    assert events[-1].error is StreamErrorCondition.NOT_AUTHORIZED
    assert "<not-authorized xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in out(s)
    assert s.state is State.CLOSED


def test_wrong_host_is_host_unknown():
    s = C2SStream(StreamConfig("example.com"))
    events = s.receive_data(HEADER.replace("example.com", "other.org").encode())
    assert events[-1].error is StreamErrorCondition.HOST_UNKNOWN
    text = out(s)
    assert text.index("<stream:stream") < text.index("host-unknown")


def test_wrong_default_namespace_is_invalid_namespace():
    s = C2SStream(StreamConfig("example.com"))
    events = s.receive_data(HEADER.replace("jabber:client", "jabber:server").encode())
    assert events[-1].error is StreamErrorCondition.INVALID_NAMESPACE


def test_missing_version_is_unsupported_version():
    s = C2SStream(StreamConfig("example.com"))
    events = s.receive_data(HEADER.replace("to='example.com' version='1.0'", "to='example.com'").encode())
    assert events[-1].error is StreamErrorCondition.UNSUPPORTED_VERSION


def test_full_scram_plus_exchange_and_restart():
    s = C2SStream(StreamConfig("example.com", tls_available=True))
    s.receive_data(HEADER.encode())
    s.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert "<proceed" in out(s)
    cb = ("tls-server-end-point", b"\x01" * 32)
    s.tls_established(cb)
    s.receive_data(HEADER.encode())
    assert "SCRAM-SHA-256-PLUS" in out(s)
    client = ScramClient(["SCRAM-SHA-256-PLUS"], "alice", "secret", channel_binding=cb)
    first = base64.b64encode(client.get_client_first().encode()).decode()
    [need] = s.receive_data(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>{first}</auth>".encode())
    assert need.hash_name == "SHA-256"
    s.credentials_result(CREDS)
    challenge = etree.fromstring(out(s).encode())
    client.set_server_first(base64.b64decode(challenge.text).decode())
    final = base64.b64encode(client.get_client_final().encode()).decode()
    events = s.receive_data(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>".encode())
    assert [type(e) for e in events] == [ev.Authenticated]
    success = etree.fromstring(out(s).encode())
    client.set_server_final(base64.b64decode(success.text).decode())  # verifies the server signature
    assert s.state is State.WAIT_STREAM
    s.receive_data(HEADER.encode())
    assert "urn:ietf:params:xml:ns:xmpp-bind" in out(s)


def test_wrong_password_then_too_many_attempts_closes():
    s = C2SStream(StreamConfig("example.com", require_tls=False, max_auth_attempts=2))
    s.receive_data(HEADER.encode())
    out(s)
    for _attempt in range(2):
        s.receive_data(plain(password="bad").encode())
        events = s.credentials_result(CREDS)
        assert isinstance(events[0], ev.AuthFailed) and events[0].condition is SaslCondition.NOT_AUTHORIZED
    assert isinstance(events[-1], ev.StreamClosed) and events[-1].error is StreamErrorCondition.POLICY_VIOLATION


def test_authzid_of_someone_else_is_refused():
    s = C2SStream(StreamConfig("example.com", require_tls=False))
    s.receive_data(HEADER.encode())
    out(s)
    events = s.receive_data(plain(authzid="admin@example.com").encode())
    events += s.credentials_result(CREDS) if events and isinstance(events[0], ev.CredentialsNeeded) else []
    assert any(isinstance(e, ev.AuthFailed) and e.condition is SaslCondition.INVALID_AUTHZID for e in events)
    assert "<invalid-authzid/>" in out(s)


def test_invalid_base64_is_incorrect_encoding():
    s = C2SStream(StreamConfig("example.com", require_tls=False))
    s.receive_data(HEADER.encode())
    out(s)
    s.receive_data(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!notbase64</auth>")
    assert "<incorrect-encoding/>" in out(s)


def test_unoffered_mechanism_is_invalid_mechanism():
    s = C2SStream(StreamConfig("example.com", require_tls=False))
    s.receive_data(HEADER.encode())
    out(s)
    s.receive_data(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>=</auth>")
    assert "<invalid-mechanism/>" in out(s)


def test_stanzas_are_stamped_with_the_full_jid():
    s = established()
    [e] = s.receive_data(b"<message to='bob@example.com' from='eve@example.com/x'><body>hi</body></message>")
    assert isinstance(e, ev.StanzaReceived) and e.kind == "message"
    assert e.element.get("from") == "alice@example.com/r"
    assert e.to == JID.parse("bob@example.com")


def test_malformed_to_is_jid_malformed_error():
    s = established()
    [e] = s.receive_data(b"<message to='a@b@c' id='m1'><body>x</body></message>")
    assert isinstance(e, ev.StanzaRejected) and e.condition == Condition.JID_MALFORMED.value
    reply = out(s)
    assert "jid-malformed" in reply and "id=\"m1\"" in reply


def test_iq_without_id_is_bad_request():
    s = established()
    [e] = s.receive_data(b"<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert isinstance(e, ev.StanzaRejected)
    assert "bad-request" in out(s)


def test_unknown_top_level_element_is_unsupported_stanza_type():
    s = established()
    events = s.receive_data(b"<foo/>")
    assert events[-1].error is StreamErrorCondition.UNSUPPORTED_STANZA_TYPE


def test_legacy_session_is_answered_by_the_core():
    s = established()
    events = s.receive_data(b"<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    assert events == []
    assert "type=\"result\"" in out(s)


def test_bind_error_lets_the_client_retry():
    s = C2SStream(StreamConfig("example.com", require_tls=False))
    s.receive_data(HEADER.encode())
    s.receive_data(plain().encode())
    s.credentials_result(CREDS)
    s.receive_data(HEADER.encode())
    out(s)
    s.receive_data(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    s.bind_error(Condition.RESOURCE_CONSTRAINT, "resource-limit-exceeded: at most 1")
    assert "resource-constraint" in out(s)
    [again] = s.receive_data(b"<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert isinstance(again, ev.BindRequested) and again.iq_id == "b2"


def test_parse_error_becomes_stream_error():
    s = established()
    events = s.receive_data(b"<message><!-- comment --></message>")
    assert events[-1].error is StreamErrorCondition.RESTRICTED_XML


def test_closing_tag_closes_cleanly():
    s = established()
    events = s.receive_data(b"</stream:stream>")
    assert isinstance(events[-1], ev.StreamClosed) and events[-1].by_peer and events[-1].error is None
    assert out(s).endswith("</stream:stream>")


def test_websocket_framing_drives_the_same_machine():
    s = C2SStream(StreamConfig("example.com", require_tls=False, websocket=True))
    [opened] = s.receive_message("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>")
    assert isinstance(opened, ev.StreamOpened)
    units = s.data_to_send()
    assert units[0].startswith(b"<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\"")
    assert b"mechanisms" in units[1]
    [need] = s.receive_message(plain())
    s.credentials_result(CREDS)
    assert s.state is State.WAIT_STREAM
    s.data_to_send()
    events = s.receive_message("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
    assert isinstance(events[-1], ev.StreamClosed)


def test_protocol_core_imports_no_io():
    code = (
        "import sys; import xmppd.protocol.c2s, xmppd.protocol.sasl, xmppd.xml.parser;"
        "bad = {'asyncio','socket','sqlalchemy','aiohttp'} & set(sys.modules); print(sorted(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
