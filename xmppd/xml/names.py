"""Name tables: the XML names a peer sends leave memory with what uses them (lxml/libxml2 xmlDict).

libxml2 interns every element and attribute name in a dictionary (``xmlDict``) that never
shrinks; a dictionary is freed when the last document or parser referencing it is. lxml 5 and 6
give each thread one dictionary for all its parsers and all the documents it creates (new
elements, copies, parses), so on the server's thread every distinct name any peer ever sent
stayed in memory until the process exited (1,000,000 distinct names: +67 MB, never returned).

The design: no name from a peer goes into a dictionary that outlives the elements using it.

* :class:`PrivateTable` — a TCP stream document is parsed with a dictionary of its own. It never
  becomes the thread's dictionary, so nothing else the server does lands in it, and nothing from
  it is pinned by another connection. When the connection is lost or the stream restarts,
  :meth:`PrivateTable.release` frees it at once: lxml's pull parser is a reference cycle (it
  would wait for the cyclic collector) and every element copied out of it keeps it alive.
* Generations — everything else the thread does with lxml (the detached copies the parser
  emits, WebSocket messages, every ``deepcopy``, builder and re-parse in the features) interns
  into the thread's current dictionary, and :func:`charge` starts a new one after
  :data:`GENERATION_BYTES` bytes of peer input. A document keeps a reference to the dictionary
  it was made in, so a generation is freed once its last element is; stanzas live for
  milliseconds (routed, serialised, dropped), so old generations go almost at once. A
  long-lived element (a room's history, a session's last presence) keeps only its own
  generation: the names of at most ``GENERATION_BYTES`` (+ one read) of input.
* New dictionaries are children of the main thread's first one (``xmlDictCreateSub``): names
  interned at start-up (the whole XMPP vocabulary the server builds) are looked up there and
  never copied, so an idle generation costs a few hundred bytes.

Why this and not another parser: a parser whose table dies with the connection is not enough —
the stanzas it produces are lxml elements, and every copy or re-parse the server makes of them
(carbons, MUC broadcast, presence fan-out, error replies, offline delivery) interns their names
again in the thread's dictionary. Parsing with expat and building lxml trees has the same
problem. Parser threads recycled every N names have it too (the main thread still copies), and
make every ``feed()`` a thread hand-off. Rejecting names outside a bounded set breaks XMPP's
extensibility. Only a thread dictionary that is itself replaced closes the class.

How: lxml keeps the current thread's dictionary in a context object stored under
``"_ParserDictionaryContext"`` in the thread-state dictionary (``PyThreadState_GetDict``,
reached through ctypes). When the key is absent, lxml makes a fresh context with a fresh
dictionary at its next use; removing the key therefore starts a generation, and putting a saved
context back makes its dictionary current again. lxml's one rule, which this module keeps: a
parser's document is fed, closed and failed under the dictionary it started with (lxml's
``initDocDict`` otherwise swaps the document's dictionary while its names still live in the old
one). So the TCP parser feeds only under its :class:`PrivateTable`, the WebSocket framer feeds and
closes each message within one call, and generations change only between calls.

lxml 7 gives each parser its own dictionary and new documents none; there this module does
nothing (:data:`ACTIVE` is false). Names are interned only by the thread that calls in: a thread
other than the server's that parses peer data must call :func:`charge` too.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any

from lxml import etree

__all__ = ["ACTIVE", "GENERATION_BYTES", "PrivateTable", "charge", "enter_scratch", "leave", "new_generation"]

ACTIVE = etree.LXML_VERSION < (7,)

# Peer bytes per generation. Small enough that a long-lived element pins little (the names of
# 16 KiB of input at worst, ~0.1 MB when all of it is distinct names), large enough that
# starting a generation (~2 µs) costs nothing per stanza.
GENERATION_BYTES = 16384

_KEY = "_ParserDictionaryContext"  # lxml's key in the thread-state dict (parser.pxi)
# Interned in the thread's first dictionary before its first generation: the element that
# gives each new generation its dictionary at once (otherwise lxml would adopt the dictionary
# of whatever it meets first, say a parser still holding the previous generation).
_PRIME = "xmppd-name-generation"

_thread_state_dict = ctypes.pythonapi.PyThreadState_GetDict
_thread_state_dict.restype = ctypes.c_void_p  # a borrowed reference: not py_object, which steals
_thread_state_dict.argtypes = ()


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.tsd: dict[str, Any] = ctypes.cast(_thread_state_dict(), ctypes.py_object).value
        self.fed = 0
        self.primer: Any = None  # an element in the thread's first dictionary, copied to prime


_state = _ThreadState()


def new_generation() -> None:
    """Make the current thread intern names in a fresh dictionary from now on."""
    if not ACTIVE:
        return
    st = _state
    if st.primer is None:
        st.primer = etree.Element(_PRIME)  # in the thread's first dictionary, parent of the next
    st.tsd.pop(_KEY, None)
    # lxml makes the new context and its child dictionary now. A copy, not etree.Element(): a
    # new element would also give the context a copy of the default parser.
    st.primer.__copy__()
    st.fed = 0


def charge(nbytes: int) -> None:
    """Count ``nbytes`` of peer input; start a generation when this one has had its share.

    Call before parsing them, outside any :class:`PrivateTable`.
    """
    st = _state
    fed = st.fed + nbytes
    if fed >= GENERATION_BYTES:
        new_generation()
    else:
        st.fed = fed


def enter_scratch() -> object | None:
    """Make a fresh, empty dictionary current, for parsing nothing worth keeping.

    Returns the token for :func:`leave`. A parser fed under it lets go of the dictionary it
    held (lxml moves the parser to the current dictionary when a document starts).
    """
    if not ACTIVE:
        return None
    st = _state
    if st.primer is None:
        st.primer = etree.Element(_PRIME)
    prev = st.tsd.pop(_KEY, None)
    st.primer.__copy__()  # the fresh context gets its own dictionary before the parser's is seen
    return prev


def leave(prev: object | None) -> None:
    """Make the dictionary that was current before :func:`enter_scratch` current again."""
    if not ACTIVE:
        return
    tsd = _state.tsd
    if prev is None:
        tsd.pop(_KEY, None)
    else:
        tsd[_KEY] = prev


class PrivateTable:
    """A dictionary of one parser's own: every call into the parser goes between enter/leave.

    The parser's first ``feed()`` under :meth:`enter` makes lxml adopt the dictionary libxml2
    created for that parser; later calls make it current again. ``leave`` restores the thread's
    dictionary, so the elements copied out of the parser afterwards intern into the generation.
    """

    __slots__ = ("_ctx",)

    def __init__(self) -> None:
        self._ctx: object | None = None

    def enter(self) -> object | None:
        if not ACTIVE:
            return None
        tsd = _state.tsd
        prev = tsd.get(_KEY)
        ctx = self._ctx
        if ctx is None:
            tsd.pop(_KEY, None)
        else:
            tsd[_KEY] = ctx
        return prev

    def leave(self, prev: object | None) -> None:
        if not ACTIVE:
            return
        tsd = _state.tsd
        if self._ctx is None:
            self._ctx = tsd.get(_KEY)  # made by lxml during the parser's first feed, if it was
        if prev is None:
            tsd.pop(_KEY, None)
        else:
            tsd[_KEY] = prev

    def release(self, parser: etree.XMLPullParser) -> None:
        """Make ``parser`` let go of its document and of this dictionary, now.

        lxml's pull parser, its parser context and its current document form a reference cycle,
        and every element copied out of the document keeps the parser alive: left alone, a
        connection's parser (and every name its peer sent) waits for the cyclic collector, or
        lives as long as any stanza the peer sent. Ending the document under this table, then
        parsing an empty one under a scratch dictionary, leaves the parser holding nothing of
        the peer's; it can be dropped or kept at no cost. The table is not used afterwards.
        """
        prev = self.enter()
        try:
            try:
                parser.close()
            except etree.XMLSyntaxError:
                pass  # the document was cut short, or already ended: either way it is over
        finally:
            self.leave(prev)
        self._ctx = None
        release_to_scratch(parser)


def release_to_scratch(parser: etree.XMLPullParser) -> None:
    """Move an idle ``parser`` to a scratch dictionary; see :meth:`PrivateTable.release`.

    Idle: no document under way (lxml ends one at ``close()`` and at a fatal error). A document
    under way would be closed under the wrong dictionary, which lxml does not survive.
    """
    prev = enter_scratch()
    try:
        try:
            parser.feed(b"<x/>")
            parser.close()
        except etree.XMLSyntaxError:  # pragma: no cover - a well-formed empty document
            pass
        for _ in parser.read_events():  # drop the events, which hold elements
            pass
    finally:
        leave(prev)
