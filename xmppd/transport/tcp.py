"""RFC 6120 client streams over TCP: STARTTLS with ``loop.start_tls``, or direct TLS (XEP-0368)."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..core.session import Session

if TYPE_CHECKING:
    from ..app import Server

log = logging.getLogger(__name__)
wire = logging.getLogger("xmppd.wire")


class C2SProtocol(asyncio.Protocol):
    """``data_received`` only feeds the session; the session decides everything else."""

    __slots__ = ("server", "direct_tls", "transport", "session", "_wire", "_limit", "_out", "_loop")

    def __init__(self, server: "Server", *, direct_tls: bool) -> None:
        self.server = server
        self.direct_tls = direct_tls
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self._wire = server.config.log.wire and wire.isEnabledFor(logging.DEBUG)
        self._limit = server.config.c2s.write_buffer_limit
        # Output of one event-loop turn, sent in one write at the end of the turn (None: no
        # flush scheduled). Many stanzas for one client in one turn cost one send syscall.
        self._out: list[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        # Over the limit, pause_writing: the client does not read its stream.
        transport.set_write_buffer_limits(high=self._limit)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) else "local"
        stream = self.server.new_stream(direct_tls=self.direct_tls)
        self.session = Session(self.server, stream, self, ip)
        self.server.connection_opened(self.session)

    def data_received(self, data: bytes) -> None:
        if self._wire:
            wire.debug("[%s] IN %s", self.session.sid, data.decode("utf-8", "replace"))  # type: ignore[union-attr]
        self.session.data_received(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._out = None
        if self.session is not None:
            self.session.connection_lost()

    def pause_writing(self) -> None:
        """The transport holds more than ``c2s.write_buffer_limit`` unsent bytes."""
        # A client that does not read its stream cannot hold the server's memory hostage.
        log.info("[%s] write buffer over %d bytes: closing", self.session.sid if self.session else "-", self._limit)
        self._out = None
        if self.transport is not None:
            self.transport.abort()

    def resume_writing(self) -> None:
        pass  # never paused for long: pause_writing aborts

    # -- the Transport interface the session uses
    def write(self, units: list[bytes]) -> None:
        out = self._out
        if out is not None:
            out += units
            return
        t = self.transport
        if t is None or t.is_closing():
            return
        self._out = list(units)
        self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    def _flush(self) -> None:
        out = self._out
        if out is None:
            return
        self._out = None
        t = self.transport
        if t is None or t.is_closing():
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        if self._wire:
            wire.debug("[%s] OUT %s", self.session.sid, data.decode("utf-8", "replace"))  # type: ignore[union-attr]
        t.write(data)  # over the limit: pause_writing aborts

    def close(self) -> None:
        self._flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self._flush()
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    async def start_tls(self) -> tuple[str, bytes] | None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None and self.server.ssl_context is not None
        self._flush()  # the <proceed/> goes out in the clear, before the handshake
        new = await loop.start_tls(self.transport, self, self.server.ssl_context, server_side=True)
        if new is None:
            raise ConnectionError("connection closed during the TLS handshake")
        self.transport = new  # type: ignore[assignment]
        new.set_write_buffer_limits(high=self._limit)
        return self.server.channel_binding
