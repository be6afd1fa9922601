"""XEP-0114: Jabber Component Protocol, the accepting (server) side, sans I/O.

A component (a gateway, a bot, a push app server) connects over TCP, opens a stream in the
``jabber:component:accept`` namespace ``to`` the domain it wants to serve, and proves it knows
that domain's shared secret with ``<handshake>`` = hex SHA-1 of the stream id followed by the
secret (§3). From then on it sends and receives stanzas with explicit ``from`` and ``to``; every
``from`` must be the component's domain or a JID at it.

:class:`AcceptStream` turns bytes into :class:`Authenticated`, :class:`Received` and
:class:`Closed` events and builds every byte it sends; the transport
(``xmppd/features/component``) does the rest. Stanzas cross the boundary in the server's own
``jabber:client`` namespace (:func:`retag` both ways), so nothing else in the server knows
that a stanza came from a component.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from ..errors import StreamErrorCondition
from ..jid import JID, JIDError
from ..tokens import token_urlsafe
from ..xml import ns
from ..xml.builder import stream_error, sub
from ..xml.parser import ParseError, StanzaElement, StreamEnd, StreamOpen, StreamParser

NS = "jabber:component:accept"
_HANDSHAKE = f"{{{NS}}}handshake"
_STANZAS = {f"{{{NS}}}{k}": k for k in ("message", "presence", "iq")}
_C = StreamErrorCondition


@dataclass(frozen=True, slots=True)
class Authenticated:
    domain: str


@dataclass(frozen=True, slots=True)
class Received:
    stanza: etree._Element  # in jabber:client, ``from`` checked, ``to`` present
    kind: str


@dataclass(frozen=True, slots=True)
class Closed:
    error: str | None  # None: the component closed its stream


Event = Authenticated | Received | Closed


class State(enum.Enum):
    WAIT_HEADER = 1
    WAIT_HANDSHAKE = 2
    READY = 3
    CLOSED = 4


def retag(el: etree._Element, src: str, dst: str) -> etree._Element:
    """A copy of ``el`` with every element of namespace ``src`` moved to ``dst`` (other
    namespaces, attributes, text kept), declared as default namespaces where they change."""
    prefix = f"{{{src}}}"

    def tag_of(e: etree._Element) -> str:
        t = e.tag
        return f"{{{dst}}}{t[len(prefix):]}" if t.startswith(prefix) else t

    root = etree.Element(tag_of(el), dict(el.attrib), nsmap={None: etree.QName(tag_of(el)).namespace})
    root.text = el.text

    def copy(src_parent: etree._Element, dst_parent: etree._Element) -> None:
        for child in src_parent:
            if not isinstance(child.tag, str):
                continue  # the parser admits no comments or processing instructions anyway
            new = sub(dst_parent, tag_of(child), dict(child.attrib))
            new.text, new.tail = child.text, child.tail
            copy(child, new)

    copy(el, root)
    return root


def handshake_digest(stream_id: str, secret: str) -> str:
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


class AcceptStream:
    """One component connection. ``feed`` returns the events its bytes complete; ``take_output``
    what to write. After :class:`Closed` nothing more is accepted."""

    def __init__(self, secrets: Mapping[str, str], *, max_stanza_size: int) -> None:
        self._secrets = secrets
        self._parser = StreamParser(max_stanza_size=max_stanza_size)
        self.stream_id = token_urlsafe(16)
        self.state = State.WAIT_HEADER
        self.domain: str | None = None  # asked in the header; served once authenticated
        self._out: list[bytes] = []

    def take_output(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def feed(self, data: bytes) -> list[Event]:
        """Events completed by ``data``; after :class:`Authenticated` the caller answers with
        :meth:`accept` or :meth:`fail` before feeding more."""
        if self.state is State.CLOSED:
            return []
        events: list[Event] = []
        for ev in self._parser.feed(data):
            if isinstance(ev, StreamOpen):
                err = self._on_header(ev)
                if err is not None:
                    return [err]
            elif isinstance(ev, StanzaElement):
                out = self._on_element(ev.element)
                if out is not None:
                    events.append(out)
                    if isinstance(out, Closed):
                        return events
            elif isinstance(ev, StreamEnd):
                self.state = State.CLOSED
                self._out.append(b"</stream:stream>")
                events.append(Closed(None))
                return events
            elif isinstance(ev, ParseError):
                events.append(self.fail(ev.condition, ev.text))
                return events
        return events

    def fail(self, condition: StreamErrorCondition, text: str) -> Closed:
        """Send a stream error and close (also the transport's door: conflict, timeout,
        shutdown)."""
        if self.state is State.CLOSED:
            return Closed(text)
        if self.state is State.WAIT_HEADER:
            self._header(self.domain or "")
        self._out.append(etree.tostring(stream_error(condition, text)) + b"</stream:stream>")
        self.state = State.CLOSED
        return Closed(f"{condition.value}: {text}")

    def _header(self, domain: str) -> None:
        self._out.append(
            f"<?xml version='1.0'?><stream:stream xmlns:stream='{ns.STREAM}' xmlns='{NS}' "
            f"from='{domain}' id='{self.stream_id}'>".encode()
        )

    def _on_header(self, ev: StreamOpen) -> Closed | None:
        if self.state is not State.WAIT_HEADER:
            return self.fail(_C.UNSUPPORTED_STANZA_TYPE, "the stream was already opened")
        to = ev.attrs.get("to", "")
        self.domain = to if to in self._secrets else None
        if ev.default_ns != NS:
            return self.fail(_C.INVALID_NAMESPACE, f"components speak {NS}")
        if self.domain is None:
            return self.fail(_C.HOST_UNKNOWN, f"no component is configured for {to!r}")
        self._header(self.domain)
        self.state = State.WAIT_HANDSHAKE
        return None

    def _on_element(self, el: etree._Element) -> Event | None:
        if self.state is State.WAIT_HANDSHAKE:
            assert self.domain is not None
            if el.tag != _HANDSHAKE:
                return self.fail(_C.NOT_AUTHORIZED, "send the handshake first")
            given = (el.text or "").strip().lower().encode()
            expected = handshake_digest(self.stream_id, self._secrets[self.domain]).encode()
            if not hmac.compare_digest(given, expected):
                return self.fail(_C.NOT_AUTHORIZED, "wrong handshake (the secret differs)")
            self.state = State.READY
            return Authenticated(self.domain)
        kind = _STANZAS.get(el.tag)
        if kind is None:
            return self.fail(_C.UNSUPPORTED_STANZA_TYPE, f"{el.tag} is not a stanza")
        frm, to = el.get("from"), el.get("to")
        if not to:
            return self.fail(_C.IMPROPER_ADDRESSING, "a component's stanza needs a 'to'")
        try:
            JID.parse(to)
        except JIDError as exc:
            return self.fail(_C.IMPROPER_ADDRESSING, f"'to' is not a JID: {exc}")
        try:
            sender = JID.parse(frm or "")
        except JIDError as exc:
            return self.fail(_C.INVALID_FROM, f"a component's stanza needs a valid 'from': {exc}")
        if sender.domain != self.domain:
            return self.fail(_C.INVALID_FROM, f"this component speaks for {self.domain} only, not {sender.domain}")
        return Received(retag(el, NS, ns.CLIENT), kind)

    def accept(self) -> None:
        """Confirm the handshake (after :class:`Authenticated`, once the domain is attached;
        otherwise :meth:`fail` with ``conflict``)."""
        self._out.append(f"<handshake xmlns='{NS}'/>".encode())

    def send(self, stanza: etree._Element) -> None:
        """Queue a server stanza (``jabber:client``) for the component."""
        if self.state is State.READY:
            self._out.append(etree.tostring(retag(stanza, ns.CLIENT, NS)))

    def close(self, condition: StreamErrorCondition | None, text: str = "") -> None:
        if condition is not None:
            self.fail(condition, text)
        elif self.state is not State.CLOSED:
            self._out.append(b"</stream:stream>")
            self.state = State.CLOSED
