"""Sans-I/O XMPP stream parser: RFC 6120 §4 (streams) and §11 (restricted XML), RFC 7395 framing.

Bytes go in, typed events come out: :class:`StreamOpen`, :class:`StanzaElement`, :class:`StreamEnd`
and, once, :class:`ParseError` (after which the parser stays silent). :class:`StreamParser` frames
a TCP stream (one XML document per stream, restarted after STARTTLS and SASL), and
:class:`WebSocketFramer` frames RFC 7395 messages (one document per message); both give the same
events, so the state machine cannot tell the transports apart.

This module never does I/O and imports no asyncio, socket, ssl or sqlalchemy.

lxml/libxml2 behaviour worked around here (each one is pinned by a test in tests/xml/test_parser.py):

1. ``resolve_entities=False`` is unsafe with the feed interface: lxml's ``feed()`` swallows the
   fatal "undeclared entity" error, after which libxml2 silently restarts a new document (the next
   stanza comes out without its namespace). We use ``resolve_entities='internal'``, so an undeclared
   entity raises; with no DTD ever reaching libxml2 there is nothing to expand, and lxml's
   'internal' mode also refuses external entities and parameter entities.
2. libxml2 reports no event for a DOCTYPE, and parses an internal subset (entity declarations
   included) before the root element. Everything before the stream header is therefore checked
   here, before libxml2 sees a byte. A DOCTYPE after the header is a libxml2 syntax error, which we
   report as restricted-xml.
3. ``feed()`` raises only fatal errors: namespace errors (undeclared prefix, ``xmlns:p=""``, a
   namespaced attribute given twice) only show up in ``feed_error_log``, and the element keeps a
   literal ``foo:bar`` name that would be re-serialised without a declaration. The log is checked
   after every chunk, before its stanzas are released.
4. Detaching an element with ``parent.remove(el)`` re-declares a default namespace inherited from
   the stream header under a generated prefix (``<ns0:message xmlns:ns0="jabber:client">``). We
   emit a copy instead (libxml2's copy re-declares the inherited namespaces with their original
   prefixes, and only those the element uses), drop the copy's tail, and delete the originals in
   bulk, which is cheaper than ``remove`` because nothing references them any more.
5. libxml2 appends character data to the parent's last text node using a length cached in the
   parser context. After deleting elements we also clear the root's text, so the root's last
   child is never a text node that the cache does not describe.
6. A declared encoding is honoured by libxml2 (Latin-1 bytes would be accepted); with
   ``encoding='utf-8'`` forced it is silently ignored instead. We force UTF-8 and check the
   declaration ourselves (unsupported-encoding). A UTF-8 byte order mark is silently skipped by
   libxml2; RFC 6120 §11.6 says U+FEFF is a character there, so we reject it.
7. libxml2 interns element and attribute names in a dictionary that never shrinks, and lxml 5-6
   share one per thread: every distinct name a peer sent stayed in memory for good. Each TCP
   stream document is therefore parsed with a dictionary of its own (``names.PrivateTable``,
   freed with the parser: every ``feed`` goes through ``_feed``), and the copies we emit, like
   WebSocket messages, go into the thread's current *generation* (``names.charge`` starts a new
   one every 16 KiB of input), freed with its last element. See :mod:`xmppd.xml.names`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from lxml import etree

from xmppd.errors import StreamErrorCondition
from xmppd.xml import names

__all__ = [
    "NS_FRAMING",
    "NS_STREAM",
    "Event",
    "ParseError",
    "StanzaElement",
    "StreamEnd",
    "StreamOpen",
    "StreamParser",
    "WebSocketFramer",
]

NS_STREAM = "http://etherx.jabber.org/streams"
NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"  # RFC 7395
NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_CLIENT = "jabber:client"


@dataclass(frozen=True, slots=True)
class StreamOpen:
    """The ``<stream:stream>`` header (TCP) or ``<open/>`` (WebSocket)."""

    attrs: dict[str, str]  # 'to', 'from', 'version', 'id', 'xml:lang', ...
    default_ns: str | None  # declared on the TCP header ("jabber:client"); None for WebSocket


@dataclass(frozen=True, slots=True)
class StanzaElement:
    """A completed top-level element (stanza or nonza), detached from the stream."""

    element: etree._Element


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """``</stream:stream>`` or the WebSocket ``<close/>``."""


@dataclass(frozen=True, slots=True)
class ParseError:
    """Fatal: the caller sends this stream error and closes the stream."""

    condition: StreamErrorCondition
    text: str


Event: TypeAlias = StreamOpen | StanzaElement | StreamEnd | ParseError

_C = StreamErrorCondition
_STREAM_TAG = f"{{{NS_STREAM}}}stream"
_OPEN_TAG = f"{{{NS_FRAMING}}}open"
_CLOSE_TAG = f"{{{NS_FRAMING}}}close"
_XML_LANG = f"{{{NS_XML}}}lang"

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_SPACE_RE = re.compile(rb"[ \t\r\n]*")
_ENCODING_RE = re.compile(rb"""[ \t\r\n]encoding[ \t\r\n]*=[ \t\r\n]*(?:"([^"]*)"|'([^']*)')""")
# A start tag: quoted attribute values may hold '>', nothing else may. Unambiguous, so linear.
_START_TAG_RE = re.compile(rb"""<[^>'"]*(?:(?:'[^']*'|"[^"]*")[^>'"]*)*>""")
# "<!" not followed by "--" (comment) or "[" (CDATA): DOCTYPE, ENTITY, ELEMENT, ATTLIST, NOTATION.
_MARKUP_DECL_RE = re.compile(rb"<![^-\[]")
# After a leading '<': what makes _scan_prolog look closer ('!', '?', or UTF-16's NUL).
_NOT_A_NAME = frozenset(b"!?\x00")

# libxml2 error codes (lxml.etree.ErrorTypes)
_ENTITY_ERRORS = frozenset({
    26,  # ERR_UNDECLARED_ENTITY
    27,  # WAR_UNDECLARED_ENTITY
    28,  # ERR_UNPARSED_ENTITY
    29,  # ERR_ENTITY_IS_EXTERNAL
    30,  # ERR_ENTITY_IS_PARAMETER
    82,  # ERR_EXT_ENTITY_STANDALONE (lxml: "external entity resolution is disabled")
    104,  # ERR_ENTITY_PROCESSING
})
_NS_ERR_UNDEFINED_NAMESPACE = 201
_ERR_LEVEL_ERROR = 2  # xmlErrorLevel.XML_ERR_ERROR

_RESTRICTED_ENTITY = (
    "entity references other than &lt; &gt; &amp; &quot; &apos; and character references "
    "are not allowed (RFC 6120 §11.1)"
)
_RESTRICTED_DTD = "DOCTYPE and markup declarations are not allowed (RFC 6120 §11.1)"
_RESTRICTED_COMMENT = "comments are not allowed (RFC 6120 §11.1)"
_RESTRICTED_PI = "processing instructions are not allowed (RFC 6120 §11.1)"

# Wraps each WebSocket message so that elements without a namespace get jabber:client, exactly
# as inside a TCP stream; an element that declares its namespace (as RFC 7395 asks) keeps it.
_WS_WRAP_OPEN = b"<xmppd-ws-message xmlns='jabber:client'>"
_WS_WRAP_CLOSE = b"</xmppd-ws-message>"
_WS_STREAM_HEADER = f"use <open xmlns='{NS_FRAMING}'/> to open a WebSocket stream (RFC 7395)"


def _new_pull_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end", "comment", "pi"),
        resolve_entities="internal",  # see note 1 in the module docstring; never False
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        collect_ids=False,  # no per-document xml:id table (it grows, and repeats are errors)
        remove_comments=False,
        remove_pis=False,
        encoding="utf-8",
    )


def _scan_prolog(buf: bytes) -> tuple[int, int] | ParseError | None:
    """Check what precedes the root start tag, before libxml2 sees any of it.

    Returns ``(end of the XML declaration or 0, index of the root's '<')``, ``None`` when more
    bytes are needed to decide, or the :class:`ParseError`.
    """
    n = len(buf)
    if n > 1 and buf[0] == 0x3C and buf[1] not in _NOT_A_NAME:
        return 0, 0  # the root's start tag right away (every WebSocket message): nothing to check
    if not n:
        return None
    first = buf[0]
    if first in (0x00, 0xFE, 0xFF) or (n > 1 and buf[1] == 0):
        return ParseError(_C.UNSUPPORTED_ENCODING, "only UTF-8 is supported (RFC 6120 §11.6)")
    if first == 0xEF:
        if n < 3 and _BOM.startswith(buf):
            return None
        if buf.startswith(_BOM):
            return ParseError(
                _C.NOT_WELL_FORMED, "U+FEFF (byte order mark) before the root element (RFC 6120 §11.6)"
            )
    i = 0
    if buf.startswith(b"<?xml"):
        if n < 6:
            return None
        if buf[5] in _WHITESPACE:  # the XML declaration, allowed at the very start only
            end = buf.find(b"?>", 6)
            if end < 0:
                return None
            i = end + 2
            m = _ENCODING_RE.search(buf, 5, i)
            if m is not None:
                enc = m.group(1) if m.group(1) is not None else m.group(2)
                if enc.lower() != b"utf-8":
                    name = enc.decode("ascii", "replace")[:40]
                    return ParseError(_C.UNSUPPORTED_ENCODING, f"encoding {name!r} is not supported; use UTF-8")
    elif n < 5 and b"<?xml".startswith(buf):
        return None
    decl_end = i
    i = _SPACE_RE.match(buf, i).end()  # type: ignore[union-attr]  # always matches
    if i >= n:
        return None
    if buf[i] != 0x3C:  # '<'
        return ParseError(_C.NOT_WELL_FORMED, "character data before the root element")
    if i + 1 >= n:
        return None
    nxt = buf[i + 1]
    if nxt == 0x21:  # '!'
        if i + 2 >= n:
            return None
        return ParseError(_C.RESTRICTED_XML, _RESTRICTED_COMMENT if buf[i + 2] == 0x2D else _RESTRICTED_DTD)
    if nxt == 0x3F:  # '?'
        if buf.startswith(b"<?xml", i) or (n - i < 5 and b"<?xml".startswith(buf[i:])):
            if n - i < 6:
                return None
            if buf[i + 5] in _WHITESPACE:
                return ParseError(_C.NOT_WELL_FORMED, "the XML declaration is only allowed at the very start")
        return ParseError(_C.RESTRICTED_XML, _RESTRICTED_PI)
    return decl_end, i


def _classify(exc: etree.XMLSyntaxError, markup_decl: bool) -> ParseError:
    """Map a libxml2 error; ``markup_decl``: the input held "<!DOCTYPE" or the like."""
    code = exc.code
    if code in _ENTITY_ERRORS:
        return ParseError(_C.RESTRICTED_XML, _RESTRICTED_ENTITY)
    if markup_decl:
        return ParseError(_C.RESTRICTED_XML, _RESTRICTED_DTD)
    message = " ".join(str(exc.msg).split())
    if code == _NS_ERR_UNDEFINED_NAMESPACE:
        return ParseError(_C.BAD_NAMESPACE_PREFIX, message)
    return ParseError(_C.NOT_WELL_FORMED, message)


def _log_error(entry: etree._LogEntry) -> ParseError:
    message = " ".join(str(entry.message).split())
    if entry.type == _NS_ERR_UNDEFINED_NAMESPACE:
        return ParseError(_C.BAD_NAMESPACE_PREFIX, message)
    if entry.type in _ENTITY_ERRORS:
        return ParseError(_C.RESTRICTED_XML, _RESTRICTED_ENTITY)
    return ParseError(_C.NOT_WELL_FORMED, message)


def _header_attrs(el: etree._Element) -> dict[str, str]:
    return {("xml:lang" if k == _XML_LANG else k): v for k, v in el.attrib.items()}


def _detach(el: etree._Element) -> etree._Element:
    copy = el.__copy__()  # deep copy into its own document; see note 4
    copy.tail = None
    return copy


def _check_limits(max_stanza_size: int, max_depth: int, max_attrs: int) -> None:
    if max_stanza_size < 1 or max_depth < 1 or max_attrs < 0:
        raise ValueError("limits must be positive")


class StreamParser:
    """TCP framing: one XML document per stream; ``reset()`` starts the next one.

    ``feed(data)`` returns the events completed by ``data``, in order. A :class:`ParseError` is
    the last event ever returned: afterwards ``feed`` returns ``[]`` (until ``reset()``), and so it
    does after :class:`StreamEnd`. When an event triggers a stream restart (``<starttls/>``,
    SASL success), the caller discards the events after it and calls ``reset()``; bytes that
    arrived after it are dropped with the old document, as RFC 6120 §5.3.3 requires for STARTTLS.

    Limits (all violations are ``policy-violation``):

    * ``max_stanza_size``: raw bytes from the end of the previous stanza (or of the header) to the
      end of this one, whitespace included. Checked as bytes stream in, so an endless stanza fails
      as soon as it passes the limit. Exact except that, in a chunk where one stanza ends and the
      next begins, the count for the new one starts at its start tag (whitespace between the two,
      and any earlier start tag with the same name nested inside it in that chunk, is not counted).
    * ``max_depth``: element nesting; the stanza itself is depth 1.
    * ``max_attrs``: attributes on one element (namespace declarations are not attributes).
    * ``max_header_size``: bytes before and including the stream header's start tag.
    """

    __slots__ = (
        "max_stanza_size",
        "max_depth",
        "max_attrs",
        "max_header_size",
        "_parser",
        "_names",
        "_root",
        "_prolog",
        "_depth",
        "_count",
        "_open",
        "_recent",
        "_markup_decl",
        "_log_seen",
        "_done",
    )

    def __init__(
        self,
        *,
        max_stanza_size: int = 262144,
        max_depth: int = 64,
        max_attrs: int = 100,
        max_header_size: int = 4096,
    ) -> None:
        _check_limits(max_stanza_size, max_depth, max_attrs)
        if max_header_size < 1:
            raise ValueError("limits must be positive")
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.max_attrs = max_attrs
        self.max_header_size = max_header_size
        self.reset()

    def reset(self) -> None:
        """Start a new XML document on the same connection (after STARTTLS or SASL success)."""
        old = getattr(self, "_parser", None)
        if old is not None:
            self._names.release(old)  # the previous document and its names go now (note 7)
        self._parser = _new_pull_parser()
        self._names = names.PrivateTable()  # the parser's own name dictionary (note 7)
        self._root: etree._Element | None = None  # the stream header, once parsed
        self._prolog = b""  # bytes of this document held back until the header is complete
        self._depth = 0  # 0 between stanzas, 1 inside a stanza's top element, ...
        self._count = 0  # bytes since the previous stanza ended (see the class docstring)
        self._open: etree._Element | None = None  # the stanza being received, if any
        self._recent = b""  # the last two bytes fed, to recognise "<!D" split across chunks
        self._markup_decl = False  # "<!D", "<!E"... seen: libxml2's coming error is restricted-xml
        self._log_seen = 0  # entries of the parser's feed_error_log already looked at
        self._done = False  # after StreamEnd or ParseError

    @property
    def in_stanza(self) -> bool:
        """A stanza's start tag has been read and its end tag not yet (c2s.stanza_timeout)."""
        return self._depth > 0

    def close(self) -> None:
        """The connection is gone: free the document and its name dictionary now (note 7).

        Neither may wait for the cyclic collector, nor live as long as a stanza the peer sent
        (see ``names.PrivateTable.release``). ``feed`` returns ``[]`` afterwards.
        """
        self._done = True
        self._root = self._open = None
        self._prolog = b""
        self._names.release(self._parser)

    def feed(self, data: bytes) -> list[Event]:
        if self._done or not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        names.charge(len(data))
        out: list[Event] = []
        if self._root is None:
            self._feed_prolog(data, out)
        else:
            self._feed_body(data, out)
        return out

    # -- the stream header ------------------------------------------------------------------

    def _feed_prolog(self, data: bytes, out: list[Event]) -> None:
        buf = self._prolog + data
        self._prolog = buf
        scanned = _scan_prolog(buf)
        if isinstance(scanned, ParseError):
            self._fail(out, scanned.condition, scanned.text)
            return
        match = None if scanned is None else _START_TAG_RE.match(buf, scanned[1])
        if match is None:
            if len(buf) > self.max_header_size:
                self._fail(out, _C.POLICY_VIOLATION, f"stream header exceeds {self.max_header_size} bytes")
            return
        end = match.end()
        if end > self.max_header_size:
            self._fail(out, _C.POLICY_VIOLATION, f"stream header exceeds {self.max_header_size} bytes")
            return
        self._prolog = b""
        if self._open_stream(buf[:end], out) and end < len(buf):
            self._feed_body(buf[end:], out)

    def _feed(self, data: bytes) -> None:
        """``parser.feed`` under the parser's own name dictionary (note 7), errors included."""
        table = self._names
        prev = table.enter()
        try:
            self._parser.feed(data)
        finally:
            table.leave(prev)

    def _open_stream(self, header: bytes, out: list[Event]) -> bool:
        parser = self._parser
        try:
            self._feed(header)
        except etree.XMLSyntaxError as exc:
            err = _classify(exc, False)
            self._fail(out, err.condition, err.text)
            return False
        events = list(parser.read_events())
        if not events or events[0][0] != "start":
            self._fail(out, _C.NOT_WELL_FORMED, "malformed stream header")
            return False
        root = events[0][1]
        if root.tag != _STREAM_TAG:
            self._fail(out, _C.INVALID_NAMESPACE, f"expected <stream xmlns='{NS_STREAM}'>, got {root.tag!r}")
            return False
        if len(root.attrib) > self.max_attrs:
            self._fail(out, _C.POLICY_VIOLATION, f"more than {self.max_attrs} attributes on the stream header")
            return False
        if not self._check_log(out):
            return False
        out.append(StreamOpen(_header_attrs(root), root.nsmap.get(None)))
        self._root = root
        self._recent = header[-2:]
        if len(events) > 1:  # a self-closing header: an empty stream
            out.append(StreamEnd())
            self._done = True
            return False
        return True

    # -- stanzas ----------------------------------------------------------------------------

    def _feed_body(self, data: bytes, out: list[Event]) -> None:
        n = len(data)
        count = self._count
        limit = self.max_stanza_size
        if count + n <= limit:
            # Fast path: nothing in this chunk can pass the limit; one feed for the whole chunk.
            ended = self._run(data, out)
            if ended < 0:
                return
            if ended:
                # A stanza ended in this chunk: count what follows it (a lower bound, see the
                # class docstring). The next stanza's start tag is the last occurrence of its
                # name, or, between stanzas, everything after the last '>' is new.
                self._count = n - self._open_start(data) if self._depth else n - 1 - data.rfind(b">")
            else:
                self._count = count + n
            return
        # Slow path (a big stanza, or a big chunk): feed up to each '>' so that every stanza end
        # is seen at an exact byte offset; a tag can only complete at a '>'.
        find = data.find
        pos = 0
        while pos < n:
            gt = find(b">", pos)
            end = n if gt < 0 else gt + 1
            ended = self._run(data[pos:end], out)
            if ended < 0:
                return
            count += end - pos
            if count > limit:
                if ended:
                    out.pop()  # the stanza that just completed is the one over the limit
                self._fail(out, _C.POLICY_VIOLATION, f"stanza exceeds {limit} bytes")
                return
            if ended:
                count = 0
            pos = end
        self._count = count

    def _open_start(self, data: bytes) -> int:
        """Offset in ``data`` at or after the start tag of the stanza being received."""
        el = self._open
        assert el is not None
        tag = el.tag
        local = tag[tag.rfind("}") + 1 :]
        prefix = el.prefix
        name = (f"{prefix}:{local}" if prefix else local).encode()
        pos = data.rfind(b"<" + name)
        return pos if pos >= 0 else data.rfind(b"<")

    def _run(self, data: bytes, out: list[Event]) -> int:
        """Feed libxml2 and turn its events into ours: -1 failed or ended, 1 a stanza ended, else 0."""
        before = self._recent
        self._recent = data[-2:] if len(data) >= 2 else (before + data)[-2:]
        # libxml2 reports "<!DOCTYPE" inside the stream only as a bad start tag, and only once it
        # has seen enough of it; remember that one was sent. Cheap: a substring test per chunk.
        # '!' first: one memchr, where "<!" stops at every '<' of the chunk.
        if (b"!" in data and b"<!" in data and _MARKUP_DECL_RE.search(data)) or (
            b"<" in before and _MARKUP_DECL_RE.search(before + data[:2])
        ):
            self._markup_decl = True
        try:
            self._feed(data)
        except etree.XMLSyntaxError as exc:
            # Stanzas completed before the error are still delivered, unless libxml2 also logged
            # a namespace error (then one of them may carry an undeclared prefix).
            if self._check_log(out, fatal=exc.code):
                self._pump(out)
            err = _classify(exc, self._markup_decl)
            return self._fail(out, err.condition, err.text)
        if not self._check_log(out):
            return -1
        ended = self._pump(out)
        if ended > 0:
            # Delete the originals (they were copied): all top-level children but the stanza
            # still open, if any, and the root's text (note 5).
            root = self._root
            assert root is not None
            if self._depth:
                del root[:-1]
            else:
                del root[:]
            root.text = None
        return ended

    def _pump(self, out: list[Event]) -> int:
        depth = self._depth
        max_depth = self.max_depth
        max_attrs = self.max_attrs
        ended = 0
        for ev, el in self._parser.read_events():
            if ev == "start":
                depth += 1
                if depth == 1:
                    self._open = el
                if depth > max_depth:
                    self._depth = depth
                    return self._fail(out, _C.POLICY_VIOLATION, f"elements nested deeper than {max_depth}")
                if len(el.attrib) > max_attrs:
                    self._depth = depth
                    return self._fail(out, _C.POLICY_VIOLATION, f"more than {max_attrs} attributes on an element")
            elif ev == "end":
                depth -= 1
                if depth == 0:
                    copy = el.__copy__()  # _detach(), inlined: this is the hot path
                    copy.tail = None
                    out.append(StanzaElement(copy))
                    self._open = None
                    ended = 1
                elif depth < 0:
                    out.append(StreamEnd())
                    self._done = True
                    self._depth = 0
                    return -1
            else:
                self._depth = depth
                return self._fail(out, _C.RESTRICTED_XML, _RESTRICTED_COMMENT if ev == "comment" else _RESTRICTED_PI)
        self._depth = depth
        return ended

    def _check_log(self, out: list[Event], fatal: int | None = None) -> bool:
        """Fail on errors libxml2 logged without raising (note 3).

        ``fatal`` is the code of the error being raised, which the caller reports itself.
        Warnings (a relative namespace URI, say) are ignored; libxml2 keeps at most 100 of them
        per document and counts errors separately, so the log stays small and an error after
        many warnings is still logged.
        """
        log = self._parser.feed_error_log
        if len(log) == self._log_seen:
            return True
        entries = list(log)[self._log_seen :]
        self._log_seen += len(entries)
        for entry in entries:
            if entry.level >= _ERR_LEVEL_ERROR and entry.type != fatal:
                err = _log_error(entry)
                self._fail(out, err.condition, err.text)
                return False
        return True

    def _fail(self, out: list[Event], condition: StreamErrorCondition, text: str) -> int:
        if not self._done:
            self._done = True
            out.append(ParseError(condition, text))
        return -1


class WebSocketFramer:
    """RFC 7395 framing: each text message is one complete XML document holding one element.

    ``<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`` gives :class:`StreamOpen` (with
    ``default_ns=None``: the content namespace is jabber:client), ``<close/>`` gives
    :class:`StreamEnd`, anything else a :class:`StanzaElement`. An element without a namespace
    is put in jabber:client, as inside a TCP stream. Limits as for :class:`StreamParser`; the
    size limit applies to the whole message.
    """

    __slots__ = ("max_stanza_size", "max_depth", "max_attrs", "_parser", "_done", "_dirty")

    def __init__(self, *, max_stanza_size: int = 262144, max_depth: int = 64, max_attrs: int = 100) -> None:
        _check_limits(max_stanza_size, max_depth, max_attrs)
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.max_attrs = max_attrs
        self._parser = _new_pull_parser()
        self._done = False
        self._dirty = False  # a message failed: the parser may be mid-document

    def close(self) -> None:
        """The connection is gone: the parser lets go of the last message's names now (note 7)."""
        self._done = True
        names.release_to_scratch(self._parser)

    def reset(self) -> None:
        # Every message is a document of its own, closed once parsed: the parser is ready for
        # the next one, and only one that failed half-way is replaced.
        if self._dirty:
            names.release_to_scratch(self._parser)
            self._parser = _new_pull_parser()
            self._dirty = False
        self._done = False

    def feed_message(self, text: str | bytes) -> list[Event]:
        if self._done:
            return []
        if isinstance(text, str):
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                return self._fail(_C.NOT_WELL_FORMED, "unpaired surrogate in the message")
        else:
            data = bytes(text)
        if len(data) > self.max_stanza_size:
            return self._fail(_C.POLICY_VIOLATION, f"message exceeds {self.max_stanza_size} bytes")
        names.charge(len(data))  # before feeding: the whole message is parsed in one generation
        scanned = _scan_prolog(data)
        if scanned is None:
            return self._fail(_C.NOT_WELL_FORMED, "the message is not a complete XML element")
        if isinstance(scanned, ParseError):
            return self._fail(scanned.condition, scanned.text)
        decl_end = scanned[0]
        parser = self._parser
        try:
            if decl_end:
                parser.feed(data[:decl_end] + _WS_WRAP_OPEN + data[decl_end:] + _WS_WRAP_CLOSE)
            else:
                parser.feed(_WS_WRAP_OPEN + data + _WS_WRAP_CLOSE)
            wrapper = parser.close()
        except etree.XMLSyntaxError as exc:
            first = next((el for ev, el in parser.read_events() if ev == "start" and el.getparent() is not None), None)
            if first is not None and first.tag == _STREAM_TAG:  # a TCP-style header, left open
                return self._fail(_C.INVALID_NAMESPACE, _WS_STREAM_HEADER)
            err = _classify(exc, _MARKUP_DECL_RE.search(data) is not None)
            if "xmppd-ws-message" in err.text:  # the error names our wrapper: the message is cut short
                err = ParseError(err.condition, "the message is not a single complete XML element")
            return self._fail(err.condition, err.text)
        return self._element(parser, wrapper)

    def _element(self, parser: etree.XMLPullParser, wrapper: etree._Element) -> list[Event]:
        max_depth = self.max_depth
        max_attrs = self.max_attrs
        depth = -1  # the wrapper is depth 0, the message's element depth 1
        found = []
        for ev, el in parser.read_events():
            if ev == "start":
                depth += 1
                if depth > max_depth:
                    return self._fail(_C.POLICY_VIOLATION, f"elements nested deeper than {max_depth}")
                if len(el.attrib) > max_attrs:
                    return self._fail(_C.POLICY_VIOLATION, f"more than {max_attrs} attributes on an element")
            elif ev == "end":
                if depth == 1:
                    found.append(el)
                depth -= 1
            else:
                return self._fail(_C.RESTRICTED_XML, _RESTRICTED_COMMENT if ev == "comment" else _RESTRICTED_PI)
        if len(found) != 1:
            return self._fail(_C.NOT_WELL_FORMED, "a WebSocket message must hold exactly one element (RFC 7395)")
        el = found[0]
        if (wrapper.text and wrapper.text.strip(" \t\r\n")) or (el.tail and el.tail.strip(" \t\r\n")):
            return self._fail(_C.NOT_WELL_FORMED, "character data outside the element")
        tag = el.tag
        if tag == _OPEN_TAG:
            return [StreamOpen(_header_attrs(el), None)]
        if tag == _CLOSE_TAG:
            self._done = True
            return [StreamEnd()]
        if tag == _STREAM_TAG:
            return self._fail(_C.INVALID_NAMESPACE, _WS_STREAM_HEADER)
        if tag in (f"{{{NS_CLIENT}}}open", f"{{{NS_CLIENT}}}close"):
            return self._fail(_C.INVALID_NAMESPACE, f"<open/> and <close/> belong to {NS_FRAMING} (RFC 7395)")
        return [StanzaElement(_detach(el))]

    def _fail(self, condition: StreamErrorCondition, text: str) -> list[Event]:
        self._done = True
        self._dirty = True
        return [ParseError(condition, text)]
