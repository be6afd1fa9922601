"""XEP-0114 component connections: the transport of one external component.

Bytes go to the sans-I/O :class:`~xmppd.protocol.component.AcceptStream`; the component's
stanzas are routed in order by one task (``Router.send``); the router hands stanzas for the
component's domain to :meth:`ComponentConnection.receive` (it is the domain's router
``Service``), which writes them. The feature (``xmppd/features/component``) owns the listener,
the configuration and which domain is attached to which connection.
"""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..core.hooks import Routed
from ..errors import StreamErrorCondition
from ..protocol.component import AcceptStream, Authenticated, Closed, Received

if TYPE_CHECKING:
    from ..core.feature import FeatureContext

_C = StreamErrorCondition


class ComponentHost(Protocol):
    """What a connection needs of the component feature."""

    ctx: "FeatureContext"
    log: Any

    @property
    def handshake_timeout(self) -> float: ...
    @property
    def max_pending(self) -> int: ...
    def opened(self, conn: "ComponentConnection") -> None: ...
    def attach(self, domain: str, conn: "ComponentConnection") -> str | None: ...
    def detached(self, conn: "ComponentConnection") -> None: ...


class ComponentConnection(asyncio.Protocol):
    """The transport of one component: bytes to :class:`AcceptStream`, its stanzas routed in
    order by one task, the router's stanzas for its domain written back."""

    def __init__(self, host: "ComponentHost", secrets: Mapping[str, str], max_stanza_size: int) -> None:
        self.feature = host
        self.stream = AcceptStream(secrets, max_stanza_size=max_stanza_size)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.reason: str | None = None
        self.detach: Any = lambda: None
        self._queue: collections.deque[Received] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "local"
        self.feature.opened(self)
        self._timer = asyncio.get_running_loop().call_later(
            self.feature.handshake_timeout, self.close, _C.CONNECTION_TIMEOUT, "no handshake in time")

    def data_received(self, data: bytes) -> None:
        for ev in self.stream.feed(data):
            if isinstance(ev, Authenticated):
                self._cancel_timer()
                why = self.feature.attach(ev.domain, self)
                if why is not None:
                    self.stream.fail(_C.CONFLICT, why)
                    self._closed(why)
                    break
                self.stream.accept()
                self._task = self.feature.ctx.spawn(self._route_in_order(), f"component-{ev.domain}")
            elif isinstance(ev, Received):
                self._queue.append(ev)
                self._wake.set()
                if len(self._queue) >= self.feature.max_pending and not self._paused:
                    self._paused = True
                    self.transport.pause_reading()  # type: ignore[union-attr]
            elif isinstance(ev, Closed):
                self._closed(ev.error)
        self._flush()

    async def _route_in_order(self) -> None:
        router = self.feature.ctx.router
        while True:
            while self._queue:
                item = self._queue.popleft()
                try:
                    await router.send(item.stanza, kind=item.kind)
                except Exception:
                    self.feature.log.exception("component %s: a stanza failed to route", self.stream.domain)
                if self._paused and len(self._queue) < self.feature.max_pending // 2:
                    self._paused = False
                    if self.transport is not None and not self.transport.is_closing():
                        self.transport.resume_reading()
            self._wake.clear()
            await self._wake.wait()

    # -- the router's Service
    async def receive(self, routed: Routed) -> None:
        self.stream.send(routed.stanza)
        self._flush()

    def _flush(self) -> None:
        out = self.stream.take_output()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def close(self, condition: StreamErrorCondition, text: str) -> None:
        self.stream.close(condition, text)
        self._closed(f"{condition.value}: {text}")
        self._flush()

    def _closed(self, reason: str | None) -> None:
        self.reason = self.reason or reason
        self._cancel_timer()
        self.feature.detached(self)
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(self.reason or (str(exc) if exc else "connection lost"))
        if self._task is not None:
            self._task.cancel()
        self.transport = None

