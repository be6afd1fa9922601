"""RFC 6120: the client-to-server stream as a sans-I/O state machine.

Bytes (TCP) or messages (RFC 7395 WebSocket) go in; typed events (``events.py``) and output
units come out. Every side effect is a question the driver answers: ``TlsRequested`` ->
``tls_established()``, ``CredentialsNeeded`` -> ``credentials_result()``, ``BindRequested`` ->
``bind_result()``/``bind_error()``. The states and what each accepts live in one table
(``_ACCEPTS``); anything else gets the stream error the table names.
"""
from __future__ import annotations

import base64
import binascii
import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from .. import tokens
from ..errors import Condition, SaslCondition, SaslFailure, StanzaError, StreamErrorCondition
from ..jid import JID, JIDError, prepare_username
from ..xml import ns
from ..xml.builder import error_reply, stanza, stream_error
from ..xml.parser import ParseError, StanzaElement, StreamEnd, StreamOpen, StreamParser, WebSocketFramer
from . import events as ev
from .sasl import Challenge, Failure, NeedCredentials, NeedGuest, NeedVerification, SaslServer, Success, offered_mechanisms

_T = etree.tostring
_AUTH = f"{{{ns.SASL}}}auth"
_RESPONSE = f"{{{ns.SASL}}}response"
_ABORT = f"{{{ns.SASL}}}abort"
_STARTTLS = f"{{{ns.TLS}}}starttls"
_BIND = f"{{{ns.BIND}}}bind"
_SESSION = f"{{{ns.SESSION}}}session"
_STREAM_ERROR = f"{{{ns.STREAM}}}error"


class State(enum.Enum):
    WAIT_STREAM = "wait-stream"  # no header yet (also after each restart)
    WAIT_STARTTLS = "wait-starttls"  # TLS is required and not done
    TLS_NEGOTIATING = "tls-negotiating"
    WAIT_SASL = "wait-sasl"
    SASL = "sasl"  # an exchange is in progress
    WAIT_BIND = "wait-bind"
    BINDING = "binding"
    ESTABLISHED = "established"
    CLOSED = "closed"


# What each state accepts, by element; everything else closes the stream with the condition
# named in the last column (RFC 6120 §5.3.1, §6.4, §7.x: before auth -> not-authorized).
_ACCEPTS: dict[State, tuple[frozenset[str], StreamErrorCondition]] = {
    State.WAIT_STARTTLS: (frozenset({_STARTTLS, _AUTH, ns.IQ}), StreamErrorCondition.POLICY_VIOLATION),
    State.TLS_NEGOTIATING: (frozenset(), StreamErrorCondition.POLICY_VIOLATION),
    State.WAIT_SASL: (frozenset({_STARTTLS, _AUTH, ns.IQ}), StreamErrorCondition.NOT_AUTHORIZED),
    State.SASL: (frozenset({_RESPONSE, _ABORT, _AUTH}), StreamErrorCondition.NOT_AUTHORIZED),
    State.WAIT_BIND: (frozenset({ns.IQ}), StreamErrorCondition.NOT_AUTHORIZED),
    State.BINDING: (frozenset({ns.IQ}), StreamErrorCondition.NOT_AUTHORIZED),
    State.ESTABLISHED: (ns.STANZA_TAGS, StreamErrorCondition.UNSUPPORTED_STANZA_TYPE),
}


@dataclass(slots=True)
class StreamConfig:
    domain: str
    require_tls: bool = True
    tls_available: bool = False
    direct_tls: bool = False  # the connection started with TLS (XEP-0368)
    max_stanza_size: int = 262144
    max_depth: int = 64
    max_auth_attempts: int = 3
    registration: bool = False
    # Features contribute post-auth stream features (SM, CSI, roster versioning ...).
    extra_features: Callable[[bool], list[etree._Element]] = field(default=lambda authenticated: [])
    # Top-level namespaces of nonzas that features handle (e.g. XEP-0198 in any state after auth).
    nonza_namespaces: frozenset[str] = frozenset()
    websocket: bool = False
    # Key of the fake SCRAM answers for unknown users (sasl.fake_credentials). The server passes
    # its persistent secret (storage.secrets), the same on every node and after restarts; the
    # default, random per config, is for drivers that persist nothing (tests, tools).
    fake_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # Which logins the server can check (docs/auth.md): SCRAM needs keys stored here (off when
    # password logins are off or the app's auth callback holds the passwords); PLAIN is checked
    # by the driver (``VerificationNeeded``) when ``external_plain``; OAUTHBEARER when JWT is set.
    scram: bool = True
    plain: bool = True
    external_plain: bool = False
    oauthbearer: bool = False
    # The anonymous host (docs/auth.md): on this config ANONYMOUS is the only mechanism.
    anonymous: bool = False
    # The config of the anonymous host, when there is one: a stream whose header names its
    # domain (``to``) switches to it before anything is sent. None: one host.
    guest: "StreamConfig | None" = None
    # <stream:features/> as sent, and the state it leads to, by (authenticated, TLS, channel
    # binding): built once per configuration. A driver that shares one config between streams
    # makes a new config (or clears this) when what ``extra_features`` returns changes.
    features_cache: dict[tuple[bool, bool, bool], tuple[bytes, State]] = field(default_factory=dict)


class C2SStream:
    """One client stream. Feed it with ``receive_data`` (TCP) or ``receive_message`` (WebSocket)."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.state = State.WAIT_STREAM
        self.tls = config.direct_tls
        self.channel_binding: tuple[str, bytes] | None = None
        self.authenticated_as: str | None = None
        self.jid: JID | None = None
        self.lang = "en"
        self.client_lang: str | None = None  # the xml:lang the client's stream header gave, if any
        self.stream_id = ""
        self._header_sent = False
        self._restart = False
        self._sasl: SaslServer | None = None
        self._sasl_mechanism = ""
        self._auth_failures = 0
        self._bind_iq_id: str | None = None
        self.error: StreamErrorCondition | None = None  # the stream error we closed with
        self._out: list[bytes] = []
        # Once the stream is closed, the output ends at our closing tag (RFC 6120 §4.4, RFC 7395
        # §3.6): its index in _out, then 0 once handed out; None while the stream is open.
        self._end_at: int | None = None
        self._events: list[object] = []
        if config.websocket:
            self._framer: WebSocketFramer | None = WebSocketFramer(max_stanza_size=config.max_stanza_size, max_depth=config.max_depth)
            self._parser: StreamParser | None = None
        else:
            self._parser = StreamParser(max_stanza_size=config.max_stanza_size, max_depth=config.max_depth)
            self._framer = None

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> list[object]:
        """Feed TCP bytes; returns the events, in order."""
        assert self._parser is not None
        if self.state is State.CLOSED:
            return []
        for item in self._parser.feed(data):
            self._handle_parsed(item)
            if self.state is State.CLOSED:
                break
        return self._take_events()

    def receive_message(self, message: str | bytes) -> list[object]:
        """Feed one RFC 7395 WebSocket text message."""
        assert self._framer is not None
        if self.state is State.CLOSED:
            return []
        for item in self._framer.feed_message(message):
            self._handle_parsed(item)
            if self.state is State.CLOSED:
                break
        return self._take_events()

    def connection_lost(self) -> list[object]:
        # Free the parser's document and name dictionary now, not when the collector gets to
        # this session (xmppd.xml.names).
        if self._parser is not None:
            self._parser.close()
        if self._framer is not None:
            self._framer.close()
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._end_at = 0  # nobody to write to
            self._events.append(ev.StreamClosed(None, "connection lost", by_peer=True, lost=True))
        return self._take_events()

    def data_to_send(self) -> list[bytes]:
        """Output units: for TCP join them; for WebSocket each is one message.

        After the stream's close, nothing: whatever a late answer (a bind result, a pre-auth
        iq reply) queued behind the closing tag is dropped here, in one place."""
        out, self._out = self._out, []
        end = self._end_at
        if end is not None:
            self._end_at = 0
            return out[:end]
        return out

    def _take_events(self) -> list[object]:
        out, self._events = self._events, []
        return out

    def _handle_parsed(self, item: object) -> None:
        if type(item) is StanzaElement:
            self._handle_element(item.element)
        elif type(item) is StreamOpen:
            self._handle_open(item)
        elif type(item) is StreamEnd:
            self._close_by_peer()
        elif type(item) is ParseError:
            self._close(item.condition, item.text)

    # ---------------------------------------------------------------- stream header

    def _handle_open(self, item: StreamOpen) -> None:
        if self.state is not State.WAIT_STREAM:
            self._close(StreamErrorCondition.BAD_FORMAT, "unexpected stream header")
            return
        attrs = item.attrs
        lang = attrs.get("xml:lang")
        if lang:
            self.lang = self.client_lang = lang[:35]
        self.stream_id = tokens.token_urlsafe(12)
        to = attrs.get("to")
        unknown = False
        if to is not None:
            try:
                domain = JID.parse(to).domain
            except JIDError:
                domain = None
            if domain != self.config.domain:
                guest = self.config.guest
                if guest is not None and domain == guest.domain and self.authenticated_as is None:
                    self.config = guest  # the anonymous host: its header, features and SASL
                else:
                    unknown = True
        self._send_header()
        if not self.config.websocket and item.default_ns != ns.CLIENT:
            self._close(StreamErrorCondition.INVALID_NAMESPACE, "the stream's default namespace must be jabber:client")
            return
        if unknown:
            self._close(StreamErrorCondition.HOST_UNKNOWN, f"this server serves {self.config.domain}")
            return
        version = attrs.get("version")
        if version is None or not version.startswith("1."):
            self._close(StreamErrorCondition.UNSUPPORTED_VERSION, "version 1.0 is required")
            return
        restart = self._restart
        self._restart = False
        key = (self.authenticated_as is not None, self.tls, self.channel_binding is not None)
        cache = self.config.features_cache
        built = cache.get(key)
        if built is None:
            built = cache[key] = self._build_features(key[0])
        data, state = built
        if state is State.CLOSED:
            # No way to authenticate on this stream: say so, never empty features and silence.
            text = data.decode()
            self._events.append(ev.StreamOpened(to, self.lang, restart))
            self._events.append(ev.AuthUnavailable(text))
            self._close(StreamErrorCondition.POLICY_VIOLATION, text)
            return
        self.state = state
        self._out.append(data)
        self._events.append(ev.StreamOpened(to, self.lang, restart))

    def _build_features(self, authenticated: bool) -> tuple[bytes, State]:
        """<stream:features/> for this stream's situation, and the state that follows it;
        or, when the client could not authenticate at all, the reason and ``State.CLOSED``."""
        features = etree.Element(f"{{{ns.STREAM}}}features", nsmap={"stream": ns.STREAM})
        if not authenticated and self.config.require_tls and not self.tls and not self.config.tls_available:
            # RFC 6120 §5.3.1: TLS is mandatory-to-negotiate here and cannot be negotiated
            # on this connection (WebSocket has no STARTTLS, RFC 7395 §3.8).
            if self.config.websocket:
                return b"TLS is required to log in: connect with wss:// (this plain ws:// connection does not count as secure)", State.CLOSED
            return b"TLS is required to log in and this listener offers no STARTTLS: use direct TLS", State.CLOSED
        if not authenticated:
            if not self.tls and self.config.tls_available:
                st = etree.SubElement(features, _STARTTLS, nsmap={None: ns.TLS})
                if self.config.require_tls:
                    etree.SubElement(st, f"{{{ns.TLS}}}required")
            if self.config.require_tls and not self.tls:
                state = State.WAIT_STARTTLS
            else:
                offered = self._mechanisms()
                if not offered:
                    return b"no SASL mechanism is available on this connection", State.CLOSED
                mechs = etree.SubElement(features, f"{{{ns.SASL}}}mechanisms", nsmap={None: ns.SASL})
                for m in offered:
                    etree.SubElement(mechs, f"{{{ns.SASL}}}mechanism").text = m
                if self.config.registration:
                    etree.SubElement(features, f"{{{ns.REGISTER_FEATURE}}}register", nsmap={None: ns.REGISTER_FEATURE})
                state = State.WAIT_SASL
        else:
            etree.SubElement(features, _BIND, nsmap={None: ns.BIND})
            sess = etree.SubElement(features, _SESSION, nsmap={None: ns.SESSION})
            etree.SubElement(sess, f"{{{ns.SESSION}}}optional")
            state = State.WAIT_BIND
        for extra in self.config.extra_features(authenticated):
            features.append(extra)
        return _T(features), state

    def _mechanisms(self) -> list[str]:
        return offered_mechanisms(
            tls=self.tls,
            channel_binding_available=self.channel_binding is not None,
            allow_plain_without_tls=not self.config.require_tls,
            scram=self.config.scram,
            plain=self.config.plain,
            oauthbearer=self.config.oauthbearer,
            anonymous=self.config.anonymous,
        )

    def _send_header(self) -> None:
        if self._header_sent:
            return
        self._header_sent = True
        d = self.config.domain
        if self.config.websocket:
            self._out.append(
                f'<open xmlns="{ns.FRAMING}" from="{d}" id="{self.stream_id}" version="1.0" xml:lang="en"/>'.encode()
            )
        else:
            self._out.append(
                (
                    "<?xml version='1.0'?>"
                    f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}' from='{d}' "
                    f"id='{self.stream_id}' version='1.0' xml:lang='en'>"
                ).encode()
            )

    def _restart_stream(self) -> None:
        self._restart = True
        self._header_sent = False
        self.state = State.WAIT_STREAM
        if self._parser is not None:
            self._parser.reset()
        elif self._framer is not None:
            self._framer.reset()

    # ---------------------------------------------------------------- elements

    def _handle_element(self, el: etree._Element) -> None:
        state = self.state
        tag = el.tag
        if state is State.ESTABLISHED and tag in ns.STANZA_TAGS:
            self._stanza(el, tag)
            return
        if tag == _STREAM_ERROR:
            self._close_by_peer()
            return
        if state is not State.WAIT_STREAM and self.authenticated_as is not None and isinstance(tag, str):
            nsuri = tag[1 : tag.find("}")] if tag[:1] == "{" else ""
            if nsuri in self.config.nonza_namespaces:
                self._events.append(ev.NonzaReceived(el))
                return
        accepted = _ACCEPTS.get(state)
        if accepted is None:  # WAIT_STREAM: an element before the header cannot reach us
            self._close(StreamErrorCondition.BAD_FORMAT, "element before stream header")
            return
        allowed, condition = accepted
        if tag not in allowed:
            if tag in ns.STANZA_TAGS or not isinstance(tag, str) or not tag.startswith("{"):
                if state is State.ESTABLISHED:
                    self._close(condition, "unknown top-level element")
                else:
                    self._close(condition, "authenticate and bind a resource first")
            elif state is State.ESTABLISHED:
                self._close(condition, f"unsupported top-level element {tag}")
            else:
                self._close(condition, f"{etree.QName(tag).localname} is not allowed now")
            return
        if tag == _STARTTLS:
            self._starttls()
        elif tag == _AUTH:
            self._auth(el)
        elif tag == _RESPONSE:
            self._sasl_response(el)
        elif tag == _ABORT:
            self._sasl_step_out(self._sasl.abort() if self._sasl else Failure(SaslCondition.ABORTED, ""))
        elif tag == ns.IQ:
            self._pre_session_iq(el)

    def _stanza(self, el: etree._Element, tag: str) -> None:
        assert self.jid is not None
        kind = "message" if tag == ns.MESSAGE else "presence" if tag == ns.PRESENCE else "iq"
        el.set("from", str(self.jid))
        to_s = el.get("to")
        to: JID | None = None
        if to_s is not None:
            try:
                to = JID.parse(to_s)
            except JIDError as exc:
                self._reject(el, kind, StanzaError(Condition.JID_MALFORMED, f"invalid 'to' address: {exc}"))
                return
        if kind == "iq":
            typ = el.get("type")
            if typ not in ("get", "set", "result", "error") or el.get("id") is None:
                self._reject(el, kind, StanzaError(Condition.BAD_REQUEST, "an iq needs an id and a type of get, set, result or error"))
                return
            if typ in ("get", "set") and len(el) != 1:
                self._reject(el, kind, StanzaError(Condition.BAD_REQUEST, "an iq get/set has exactly one payload"))
                return
            if to is None and typ == "set" and el[0].tag == _SESSION:  # RFC 3921 legacy session
                self._out.append(_T(stanza("iq", type="result", id=el.get("id"))))
                return
        self._events.append(ev.StanzaReceived(el, kind, to))

    def _reject(self, el: etree._Element, kind: str, err: StanzaError) -> None:
        if el.get("type") in ("error", "result") or (kind == "presence"):
            self._events.append(ev.StanzaRejected(err.condition.value))
            return
        reply = error_reply(el, err)
        reply.attrib.pop("from", None)
        self._out.append(_T(reply))
        self._events.append(ev.StanzaRejected(err.condition.value, replied=True))

    def send_element(self, el: etree._Element) -> None:
        """Queue an element for the client (pre-auth iq answers, SM nonzas ...)."""
        self._out.append(_T(el))

    # ---------------------------------------------------------------- TLS

    def _starttls(self) -> None:
        if self.tls or not self.config.tls_available:
            self._out.append(_T(etree.Element(f"{{{ns.TLS}}}failure", nsmap={None: ns.TLS})))
            self._close(None)
            return
        self._out.append(_T(etree.Element(f"{{{ns.TLS}}}proceed", nsmap={None: ns.TLS})))
        self.state = State.TLS_NEGOTIATING
        self._events.append(ev.TlsRequested())

    def tls_established(self, channel_binding: tuple[str, bytes] | None) -> None:
        """The driver finished the TLS handshake; a new stream begins."""
        if self.state is State.CLOSED:
            return  # closed meanwhile (shutdown, lost): a closed stream stays closed
        self.tls = True
        self.channel_binding = channel_binding
        self._restart_stream()

    def set_direct_tls(self, channel_binding: tuple[str, bytes] | None) -> None:
        self.tls = True
        self.channel_binding = channel_binding

    # ---------------------------------------------------------------- SASL

    def _auth(self, el: etree._Element) -> None:
        if self.state is State.WAIT_STARTTLS:
            # RFC 6120 §5.3.1, §6.5.3: STARTTLS is mandatory-to-negotiate here and the client
            # went on without it. It learns why, and the stream ends instead of idling.
            self._sasl_failure(SaslCondition.ENCRYPTION_REQUIRED, "use STARTTLS first", None)
            if self.state is not State.CLOSED:
                text = "TLS is required to log in: negotiate STARTTLS before authenticating"
                self._events.append(ev.AuthUnavailable(text))
                self._close(StreamErrorCondition.POLICY_VIOLATION, text)
            return
        mech = el.get("mechanism") or ""
        if self.state is State.SASL or mech not in self._mechanisms():
            self.state = State.WAIT_SASL
            self._sasl = None
            self._sasl_failure(SaslCondition.INVALID_MECHANISM, f"mechanism {mech!r} is not offered", None)
            return
        try:
            initial = self._b64(el.text)
        except ValueError:
            self._sasl_failure(SaslCondition.INCORRECT_ENCODING, "invalid base64", None)
            return
        try:
            self._sasl = SaslServer(
                mech,
                domain=self.config.domain,
                channel_binding=self.channel_binding,
                tls=self.tls,
                allow_plain_without_tls=not self.config.require_tls,
                fake_key=self.config.fake_key,
                external_plain=self.config.external_plain,
            )
        except SaslFailure as exc:
            self._sasl_failure(exc.condition, exc.text or "", None)
            return
        self._sasl_mechanism = mech
        self.state = State.SASL
        self._sasl_step_out(self._sasl.start(initial))

    @staticmethod
    def _b64(text: str | None) -> bytes | None:
        if text is None or not text.strip():
            return None
        text = text.strip()
        if text == "=":
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("bad base64") from None

    def _sasl_response(self, el: etree._Element) -> None:
        if self._sasl is None:
            self._close(StreamErrorCondition.NOT_AUTHORIZED, "no SASL exchange in progress")
            return
        try:
            data = self._b64(el.text) or b""
        except ValueError:
            self._sasl_failure(SaslCondition.INCORRECT_ENCODING, "invalid base64", self._sasl.authcid)
            return
        self._sasl_step_out(self._sasl.respond(data))

    def credentials_result(self, credentials: object, failure: SaslCondition | None = None) -> list[object]:
        """Answer to ``CredentialsNeeded``: the stored credentials, or None for no such account."""
        if self._sasl is None or self.state is not State.SASL:
            return self._take_events()
        self._sasl_step_out(self._sasl.credentials_result(credentials, failure=failure))  # type: ignore[arg-type]
        return self._take_events()

    def verification_result(self, username: str | None, failure: SaslCondition | None = None) -> list[object]:
        """Answer to ``VerificationNeeded``: the prepared account the secret proved, or None
        and why (not-authorized by default; temporary-auth-failure when the authority is down)."""
        if self._sasl is None or self.state is not State.SASL:
            return self._take_events()
        self._sasl_step_out(self._sasl.verification_result(username, failure))
        return self._take_events()

    def _sasl_step_out(self, step: object) -> None:
        if type(step) is NeedCredentials:
            username = self._prepare_username(step.username)
            if username is None:  # cannot name an account: fails like a wrong password
                self._sasl_step_out(self._sasl.credentials_result(None))  # type: ignore[union-attr]
                return
            self._events.append(ev.CredentialsNeeded(username, step.hash_name, self._sasl_mechanism))
        elif type(step) is NeedVerification:
            named = None
            if step.username is not None:
                named = self._prepare_username(step.username)
                if named is None:  # cannot name an account: fails like a wrong password
                    self._sasl_step_out(self._sasl.verification_result(None))  # type: ignore[union-attr]
                    return
            self._events.append(ev.VerificationNeeded(named, step.secret, self._sasl_mechanism))
        elif type(step) is Challenge:
            c = etree.Element(f"{{{ns.SASL}}}challenge", nsmap={None: ns.SASL})
            c.text = base64.b64encode(step.data).decode() if step.data else "="
            self._out.append(_T(c))
        elif type(step) is Success:
            s = etree.Element(f"{{{ns.SASL}}}success", nsmap={None: ns.SASL})
            if step.additional_data:
                s.text = base64.b64encode(step.additional_data).decode()
            self._out.append(_T(s))
            self.authenticated_as = self._prepare_username(step.username)
            self._sasl = None
            self._events.append(ev.Authenticated(self.authenticated_as or step.username, self._sasl_mechanism))
            self._restart_stream()
        elif type(step) is Failure:
            user = self._sasl.authcid if self._sasl else None
            self._sasl = None
            self.state = State.WAIT_SASL
            self._sasl_failure(step.condition, step.text, user)
        elif type(step) is NeedGuest:
            self._events.append(ev.AnonymousLogin(step.trace))

    def _prepare_username(self, username: str) -> str | None:
        """The account name for a SASL authcid: the prepared localpart (RFC 7622)."""
        try:
            return prepare_username(username, self.config.domain)
        except JIDError:
            return None

    def _sasl_failure(self, condition: SaslCondition, text: str, username: str | None) -> None:
        f = etree.Element(f"{{{ns.SASL}}}failure", nsmap={None: ns.SASL})
        etree.SubElement(f, f"{{{ns.SASL}}}{condition.value}")
        if text:
            t = etree.SubElement(f, f"{{{ns.SASL}}}text")
            t.set(ns.XML_LANG, "en")
            t.text = text
        self._out.append(_T(f))
        if condition is SaslCondition.ABORTED:
            return
        # Limits are keyed by the account the name prepares to (Carol and carol are one).
        self._events.append(ev.AuthFailed(self._prepare_username(username) if username else None, condition))
        self._auth_failures += 1
        if self._auth_failures >= self.config.max_auth_attempts:
            self._close(StreamErrorCondition.POLICY_VIOLATION, "too many failed authentication attempts")

    # ---------------------------------------------------------------- iq before the session

    def _pre_session_iq(self, el: etree._Element) -> None:
        typ = el.get("type")
        payload = el[0] if len(el) == 1 else None
        if self.authenticated_as is None:
            if self.state is State.WAIT_SASL and payload is not None and payload.tag == f"{{{ns.REGISTER}}}query":
                self._events.append(ev.PreAuthIq(el))
                return
            self._close(StreamErrorCondition.NOT_AUTHORIZED, "authenticate first")
            return
        if self.state is State.WAIT_BIND and typ == "set" and payload is not None and payload.tag == _BIND:
            resource_el = payload.find(f"{{{ns.BIND}}}resource")
            resource = (resource_el.text or "").strip() if resource_el is not None else ""
            self._bind_iq_id = el.get("id") or ""
            self.state = State.BINDING
            self._events.append(ev.BindRequested(self._bind_iq_id, resource or None))
            return
        if typ in ("get", "set"):
            err = StanzaError(Condition.NOT_AUTHORIZED if self.state is State.WAIT_BIND else Condition.UNEXPECTED_REQUEST, "bind a resource first")
            reply = error_reply(el, err)
            reply.attrib.pop("from", None)
            self._out.append(_T(reply))

    def bind_result(self, jid: JID) -> list[object]:
        """The driver bound ``jid``: the session is established."""
        if self.state is State.CLOSED:
            return self._take_events()
        self.jid = jid
        reply = stanza("iq", type="result", id=self._bind_iq_id)
        b = etree.SubElement(reply, _BIND, nsmap={None: ns.BIND})
        etree.SubElement(b, f"{{{ns.BIND}}}jid").text = str(jid)
        self._out.append(_T(reply))
        self.state = State.ESTABLISHED
        return self._take_events()

    def resumed(self, jid: JID) -> None:
        """XEP-0198: the driver resumed a previous session as ``jid`` (no bind reply is sent)."""
        if self.state is State.WAIT_BIND:
            self.jid = jid
            self.state = State.ESTABLISHED

    def bind_error(self, condition: Condition, text: str, app: etree._Element | None = None) -> list[object]:
        if self.state is State.CLOSED:
            return self._take_events()
        iq = stanza("iq", type="set", id=self._bind_iq_id)
        etree.SubElement(iq, _BIND, nsmap={None: ns.BIND})
        reply = error_reply(iq, StanzaError(condition, text, app=app))
        self._out.append(_T(reply))
        self.state = State.WAIT_BIND
        return self._take_events()

    # ---------------------------------------------------------------- closing

    def close(self, condition: StreamErrorCondition | None, text: str | None = None, app: etree._Element | None = None,
              *, detail: str | None = None) -> list[object]:
        """Close the stream, with a stream error when ``condition`` is given (``detail``: the
        condition element's content, e.g. see-other-host's address)."""
        self._close(condition, text, app, detail)
        return self._take_events()

    def _close(self, condition: StreamErrorCondition | None, text: str | None = None, app: etree._Element | None = None,
               detail: str | None = None) -> None:
        if self.state is State.CLOSED:
            return
        self._send_header()
        if condition is not None:
            self.error = condition
            self._out.append(_T(stream_error(condition, text, app, detail)))
        self._out.append(self._closing_tag())
        self._end_at = len(self._out)
        self.state = State.CLOSED
        self._events.append(ev.StreamClosed(condition, text))

    def _closing_tag(self) -> bytes:
        if self.config.websocket:
            return f'<close xmlns="{ns.FRAMING}"/>'.encode()
        return b"</stream:stream>"

    def _close_by_peer(self) -> None:
        if self.state is State.CLOSED:
            return
        self._send_header()
        self._out.append(self._closing_tag())
        self._end_at = len(self._out)
        self.state = State.CLOSED
        self._events.append(ev.StreamClosed(None, None, by_peer=True))
