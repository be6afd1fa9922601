"""RFC 7395: XMPP over WebSocket, one aiohttp WebSocket per client stream.

Every text message goes to the same session and state machine as a TCP stream
(``Session.message_received``); every output unit of the core is one text message. The
session decides everything; this module only moves messages and keeps the socket alive
(WebSocket pings, XEP-0198-free liveness) and honest (binary frames, oversized messages).

aiohttp reads the messages, answers pings and runs the closing handshake. Our text messages
are framed here (RFC 6455 §5.2: a server's frames are unmasked, and the endpoint negotiates no
extension, so a frame is a 2-, 4- or 10-byte header and the UTF-8 payload) and all of one
event-loop turn's go out in one write, as on TCP: a login's nine messages cost four writes
instead of nine, and no task per write.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from ..core.session import Session
from ..errors import StreamErrorCondition

if TYPE_CHECKING:
    from ..app import Server

log = logging.getLogger(__name__)
wire = logging.getLogger("xmppd.wire")

SUBPROTOCOL = "xmpp"  # RFC 7395 §3.1, registered with IANA

# The WebSocket close code (RFC 6455 §7.4) that goes with the stream error we closed with;
# any other stream error, or none, is a normal close (the reason travelled as XML).
_CLOSE_CODES: dict[StreamErrorCondition, int] = {
    StreamErrorCondition.SYSTEM_SHUTDOWN: WSCloseCode.GOING_AWAY,
    StreamErrorCondition.POLICY_VIOLATION: WSCloseCode.POLICY_VIOLATION,
    StreamErrorCondition.INTERNAL_SERVER_ERROR: WSCloseCode.INTERNAL_ERROR,
    StreamErrorCondition.RESOURCE_CONSTRAINT: WSCloseCode.TRY_AGAIN_LATER,
}


_PACK_LEN2 = struct.Struct("!BBH").pack
_PACK_LEN3 = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """RFC 6455 §5.2: ``payload`` (UTF-8) as one unfragmented, unmasked text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return _PACK_LEN2(0x81, 126, n) + payload
    return _PACK_LEN3(0x81, 127, n) + payload


class WebSocketConnection:
    """The ``Transport`` of one RFC 7395 session; ``run`` is the request handler's body."""

    __slots__ = (
        "server", "ws", "request", "peer", "secure", "session", "max_message_size",
        "close_code", "_out", "_closer", "_closing", "_resume", "_wire", "_limit", "_loop", "security",
    )

    def __init__(self, server: "Server", ws: web.WebSocketResponse, request: web.BaseRequest, peer: str, *, secure: bool, max_message_size: int) -> None:
        self.server = server
        self.ws = ws
        self.request = request
        self.peer = peer
        self.secure = secure
        self.max_message_size = max_message_size
        self.session: Session | None = None
        self.close_code: int | None = None  # set when the transport itself knows better
        self.security = ""  # why it counts as secure for c2s.require_tls, or why not (logged)
        # Messages of this event-loop turn, written together at its end (None: no flush due).
        self._out: list[bytes] | None = None
        self._closer: asyncio.Task[None] | None = None  # the closing handshake
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._resume: asyncio.Event | None = None  # set while reading is paused
        self._wire = server.config.log.wire and wire.isEnabledFor(logging.DEBUG)
        self._limit = server.config.c2s.write_buffer_limit

    async def run(self) -> None:
        server = self.server
        stream = server.new_stream(direct_tls=False, websocket=True, tls=self.secure)
        session = self.session = Session(server, stream, self, self.peer, websocket=True)
        try:
            if server.connection_opened(session):
                await self._read(session)
        finally:
            session.connection_lost()  # no-op when the stream is already closed
        try:
            # The session's cleanup (SESSION_CLOSED hooks) and our last writes finish here, so
            # that nothing of this connection outlives the request handler.
            await asyncio.wait_for(session.closed_event.wait(), 10)
        except TimeoutError:
            session.log.warning("session cleanup took longer than 10 s")
        self.close()
        closer = self._closer
        if closer is not None:
            await asyncio.wait({closer}, timeout=self.server.config.http.ws_ping_timeout + 1)
            if not closer.done():
                closer.cancel()
        if not self.ws.closed:
            self.abort()

    async def _read(self, session: Session) -> None:
        ws = self.ws
        while True:
            if self._resume is not None:
                await self._resume.wait()
            msg = await ws.receive()
            t = msg.type
            if t is WSMsgType.TEXT:
                data: str = msg.data
                if self._wire:
                    wire.debug("[%s] IN %s", session.sid, data)
                size = len(data)
                if size * 4 > self.max_message_size:  # UTF-8 is at most 4 bytes a character
                    size = len(data.encode("utf-8", "surrogatepass"))
                if size > self.max_message_size:
                    self.close_code = WSCloseCode.MESSAGE_TOO_BIG
                    session.close(StreamErrorCondition.POLICY_VIOLATION, f"WebSocket message over {self.max_message_size} bytes")
                    continue
                session.message_received(data, size)
            elif t is WSMsgType.BINARY:
                # RFC 7395 §3.3.3: XMPP travels in UTF-8 text messages only.
                self.close_code = WSCloseCode.UNSUPPORTED_DATA
                session.close(StreamErrorCondition.UNSUPPORTED_ENCODING, "binary WebSocket messages are not allowed: send XML as text (RFC 7395)")
            elif t is WSMsgType.ERROR:
                session.log.info("WebSocket closed: %s", msg.data)
                return
            else:  # CLOSE, CLOSING, CLOSED: the connection is over
                return

    # -- the Transport interface the session uses
    def write(self, units: list[bytes]) -> None:
        if self._closing or self.ws.closed:
            return
        out = self._out
        if out is not None:
            out += units
            return
        self._out = list(units)
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, None
        if not out:
            return
        t = self.request.transport
        if t is None or t.is_closing() or self.ws.closed:
            return
        if self._wire:
            for unit in out:
                wire.debug("[%s] OUT %s", self.session.sid if self.session else "-", unit.decode("utf-8", "replace"))
        t.write(b"".join([text_frame(unit) for unit in out]))
        if t.get_write_buffer_size() > self._limit:
            # A client that does not read cannot hold the server's memory hostage.
            log.info("[%s] write backlog over %d bytes: closing", self.session.sid if self.session else "-", self._limit)
            self.abort()

    async def _close_handshake(self) -> None:
        try:
            if not self.ws.closed:
                await self.ws.close(code=self._code())
        except (ConnectionError, RuntimeError) as exc:  # the peer went away under us
            log.debug("WebSocket close failed: %s", exc)
            self.abort()

    def _code(self) -> int:
        if self.close_code is not None:
            return self.close_code
        err = self.session.stream.error if self.session is not None else None
        return _CLOSE_CODES.get(err, WSCloseCode.OK) if err is not None else WSCloseCode.OK

    def close(self) -> None:
        """Send what is queued (the ``<close/>``), then close the WebSocket."""
        if self._closing:
            return
        self._closing = True
        if self._resume is not None:
            self._resume.set()
        self._flush()
        if self._closer is None and not self.ws.closed:
            self._closer = self._loop.create_task(self._close_handshake())

    def abort(self) -> None:
        self._closing = True
        self._out = None
        if self._resume is not None:
            self._resume.set()
        t = self.request.transport
        if t is not None:
            t.abort()

    def pause_reading(self) -> None:
        # Stop taking messages; aiohttp's queue fills and pauses the socket itself.
        if self._resume is None and not self._closing:
            self._resume = asyncio.Event()

    def resume_reading(self) -> None:
        if self._resume is not None:
            self._resume.set()
            self._resume = None

    async def start_tls(self) -> tuple[str, bytes] | None:
        raise ConnectionError("STARTTLS is not available over WebSocket (RFC 7395 §3.8): use wss://")
