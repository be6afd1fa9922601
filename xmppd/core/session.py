"""The asyncio driver of one client stream: answers the core's questions, feeds the router.

Transports (TCP, TLS, WebSocket) call ``data_received``/``message_received`` and
``connection_lost``; everything else happens here, in one drain task per session so that a
session's stanzas are processed strictly in order. Reading pauses while the backlog is long.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from lxml import etree

from .. import tokens
from ..errors import Condition, SaslCondition, StreamErrorCondition
from ..jid import JID, JIDError
from ..protocol import events as ev
from ..protocol.c2s import C2SStream, State
from ..protocol.sasl import ScramCredentials
from . import durability
from .hooks import SESSION_BOUND, SESSION_CLOSED, SessionEvent
from .sessions import ResourceLimitExceeded

if TYPE_CHECKING:
    from ..app import Server

log = logging.getLogger(__name__)
_tostring = etree.tostring
_BACKLOG_PAUSE = 64
# Events handled without awaiting anything (Session._handle_now).
_SYNC_EVENTS = frozenset({ev.StreamOpened, ev.AuthFailed, ev.Authenticated, ev.StanzaRejected})


class Transport(Protocol):
    def write(self, units: list[bytes]) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    async def start_tls(self) -> tuple[str, bytes] | None: ...


class SessionObserver(Protocol):
    """Per-session stream bookkeeping (XEP-0198): sees every stanza in and out, may keep a
    session whose connection was lost (``keep`` returns True: the session hibernates)."""

    def stanza_in(self) -> None: ...
    def stanza_out(self, data: bytes) -> None: ...  # b"": written by the stream core, not kept
    def keep(self, session: "Session") -> bool: ...
    def hold(self, barrier: Any) -> None: ...  # the stanza just counted is stored behind (.durability)


class _Detached:
    """The transport of a hibernating session: its connection is gone, writes go nowhere."""

    def write(self, units: list[bytes]) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    async def start_tls(self) -> tuple[str, bytes] | None:
        raise ConnectionError("the session has no connection")


_DETACHED = _Detached()


class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['sid']}] {msg}", kwargs  # type: ignore[index]


class Session:
    """A client stream from connection to close; bound to a full JID once established."""

    __slots__ = (
        "server", "stream", "transport", "peer", "sid", "log", "jid", "available", "priority",
        "presence", "interested", "data", "last_active", "connected_at", "_queue", "_drain",
        "_auth_timer", "_closed", "_paused", "websocket", "closed_event", "observer", "_held", "__weakref__",
    )

    def __init__(self, server: "Server", stream: C2SStream, transport: Transport, peer: str, *, websocket: bool = False) -> None:
        self.server = server
        self.stream = stream
        self.transport = transport
        self.peer = peer
        self.sid = tokens.token_hex(4)
        self.log = SessionLog(log, {"sid": self.sid})
        self.jid: JID | None = None
        self.available = False  # sent initial presence (RFC 6121 "available resource")
        self.priority = 0
        self.presence: etree._Element | None = None  # last broadcast presence
        self.interested = False  # requested the roster (RFC 6121 "interested resource")
        self.data: dict[str, Any] = {}  # per-feature state, keyed by feature name
        self.last_active = time.monotonic()
        self.connected_at = self.last_active
        self.websocket = websocket
        self._queue: collections.deque[object] = collections.deque()
        self._drain: asyncio.Task[None] | None = None
        self._closed = False
        self._paused = False
        self.closed_event = asyncio.Event()
        self.observer: SessionObserver | None = None  # stream management, when enabled
        self._held: collections.deque[tuple[durability.Barrier | None, bytes]] | None = None  # see _write
        loop = asyncio.get_running_loop()
        self._auth_timer: asyncio.TimerHandle | None = loop.call_later(
            server.config.c2s.auth_timeout, self._auth_deadline
        )

    # ---------------------------------------------------------------- from the transport

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.stream.state is State.TLS_NEGOTIATING:
            # The handshake finished and the client spoke before our drain task saw it: hold
            # the bytes for the restarted stream.
            self.data.setdefault("_early", []).append(data)
            return
        try:
            events = self.stream.receive_data(data)
        except Exception:  # the parser must never take the server down
            self.log.exception("stream core failed")
            events = self.stream.close(StreamErrorCondition.INTERNAL_SERVER_ERROR)
        self._flush()
        if events:
            if self.stream.state is State.TLS_NEGOTIATING:
                # Nothing may reach the XML parser before the handshake: the next bytes are
                # the client's TLS hello. start_tls resumes reading once it owns the socket.
                self.transport.pause_reading()
            self._enqueue(events)

    def message_received(self, message: str | bytes) -> None:
        self.last_active = time.monotonic()
        try:
            events = self.stream.receive_message(message)
        except Exception:
            self.log.exception("stream core failed")
            events = self.stream.close(StreamErrorCondition.INTERNAL_SERVER_ERROR)
        self._flush()
        if events:
            self._enqueue(events)

    def connection_lost(self) -> None:
        events = self.stream.connection_lost()
        if events:
            self._enqueue(events)
        elif not self._closed and self._drain is None:
            self._enqueue([ev.StreamClosed(None, "connection lost", by_peer=True)])

    # ---------------------------------------------------------------- output

    def _flush(self) -> None:
        out = self.stream.data_to_send()
        if out:
            self.transport.write(out)

    def send(self, stanza: etree._Element) -> None:
        """Write a stanza (the router has already run the delivery hooks): now, or once the
        stanza being processed is stored (see ``_write``)."""
        if not self._closed:
            self._write(_tostring(stanza))

    def send_bytes(self, data: bytes) -> None:
        if not self._closed:
            self._write(data)

    def _write(self, data: bytes) -> None:
        # Durable before delivered (core.durability): while the stanza being processed has
        # writes not committed, what it sends here is held -- and so is everything after it,
        # so this session's output keeps its order.
        held = self._held
        barrier = durability.pending()
        if barrier is None and not held:
            self.transport.write([data])
            if self.observer is not None:
                self.observer.stanza_out(data)  # (after: an ack request it sends follows the stanza)
            return
        if held is None:
            held = self._held = collections.deque()
        held.append((barrier, data))
        if len(held) == 1:
            self._release()

    def _release(self) -> None:
        """Write the held stanzas whose stores committed, in order, up to one still waiting."""
        held = self._held
        while held:
            barrier, data = held[0]
            if barrier is not None and not barrier.settled:
                barrier.when_settled(self._release)
                return
            held.popleft()
            if self._closed or (barrier is not None and barrier.failed):
                continue  # not stored: not delivered either
            self.transport.write([data])
            if self.observer is not None:
                self.observer.stanza_out(data)

    def send_nonza(self, el: etree._Element) -> None:
        """Write a top-level element that is not a stanza (XEP-0198 acks, ...): never counted."""
        if not self._closed:
            self.transport.write([_tostring(el)])

    def close(self, condition: StreamErrorCondition | None = None, text: str | None = None) -> None:
        """Close the stream (with a stream error); cleanup follows through StreamClosed."""
        events = self.stream.close(condition, text)
        self._flush()
        if events:
            self._enqueue(events)
        elif not self._closed and self.transport is _DETACHED:  # hibernating: end it now
            self._enqueue([ev.StreamClosed(condition, text)])

    @property
    def hibernating(self) -> bool:
        """XEP-0198: bound, connection lost, waiting to be resumed."""
        return self.transport is _DETACHED and not self._closed

    @property
    def is_closed(self) -> bool:
        return self._closed

    # ---------------------------------------------------------------- processing in order

    def _enqueue(self, events: list[object]) -> None:
        if self._drain is None and not self._queue:
            # Nothing is pending: the events that need no await are handled right here, in
            # order, without a drain task (a stream header, the end of SASL ...).
            i, n = 0, len(events)
            while i < n and type(events[i]) in _SYNC_EVENTS:
                try:
                    self._handle_now(events[i])
                except Exception:
                    self.log.exception("failed to handle %s", type(events[i]).__name__)
                    self.close(StreamErrorCondition.INTERNAL_SERVER_ERROR, "internal error")
                    return
                i += 1
            if i == n:
                return
            if i:
                events = events[i:]
        self._queue.extend(events)
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._run())
        if not self._paused and len(self._queue) > _BACKLOG_PAUSE:
            self._paused = True
            self.transport.pause_reading()

    async def _run(self) -> None:
        queue = self._queue
        try:
            while queue:
                event = queue.popleft()
                try:
                    await self._handle(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.log.exception("failed to handle %s", type(event).__name__)
                    if type(event) is ev.StreamClosed:
                        continue
                    self.close(StreamErrorCondition.INTERNAL_SERVER_ERROR, "internal error")
                if self._paused and len(queue) < _BACKLOG_PAUSE // 2 and not self._closed:
                    self._paused = False
                    self.transport.resume_reading()
        except asyncio.CancelledError:
            await asyncio.shield(self._cleanup("server shutdown"))
            raise
        finally:
            self._drain = None

    async def _handle(self, event: object) -> None:
        t = type(event)
        if t is ev.StanzaReceived:
            if self.observer is not None:
                self.observer.stanza_in()
            await self.server.router.from_client(self, event.element, event.kind, event.to)  # type: ignore[attr-defined]
        elif t is ev.NonzaReceived:
            await self.server.handle_nonza(self, event.element)  # type: ignore[attr-defined]
        elif t is ev.CredentialsNeeded:
            await self._credentials(event)  # type: ignore[arg-type]
        elif t is ev.BindRequested:
            await self._bind(event)  # type: ignore[arg-type]
        elif t is ev.TlsRequested:
            await self._starttls()
        elif t is ev.PreAuthIq:
            await self.server.handle_preauth_iq(self, event.element)  # type: ignore[attr-defined]
            self._flush()
        elif t is ev.StreamClosed:
            if event.lost and self.observer is not None and self.jid is not None and self.observer.keep(self):  # type: ignore[attr-defined]
                self._hibernate()
                return
            await self._cleanup(event.text or (event.error.value if event.error else None))  # type: ignore[attr-defined]
        elif t in _SYNC_EVENTS:
            self._handle_now(event)

    def _handle_now(self, event: object) -> None:
        """The events whose handling never awaits (``_SYNC_EVENTS``)."""
        t = type(event)
        if t is ev.AuthFailed:
            self.server.auth_throttle.failure(self.peer, event.username)  # type: ignore[attr-defined]
            self.log.info("authentication failed: %s", event.condition.value)  # type: ignore[attr-defined]
        elif t is ev.Authenticated:
            self.server.auth_throttle.success(self.peer, event.username)  # type: ignore[attr-defined]
            self.stream_parser_limits(authenticated=True)
            self.log.info("authenticated as %s with %s", event.username, event.mechanism)  # type: ignore[attr-defined]
        elif t is ev.StanzaRejected:
            if self.observer is not None:
                self.observer.stanza_in()
                if event.replied:  # type: ignore[attr-defined]
                    self.observer.stanza_out(b"")  # the core's error reply: counted, not kept
        # ev.StreamOpened: nothing to do

    def stream_parser_limits(self, *, authenticated: bool) -> None:
        parser = getattr(self.stream, "_parser", None) or getattr(self.stream, "_framer", None)
        if parser is not None and hasattr(parser, "max_stanza_size"):
            cfg = self.server.config.c2s
            parser.max_stanza_size = cfg.max_stanza_size if authenticated else min(cfg.preauth_max_stanza_size, cfg.max_stanza_size)

    async def _credentials(self, event: ev.CredentialsNeeded) -> None:
        server = self.server
        if server.auth_throttle.blocked(self.peer, event.username):
            self.stream.credentials_result(None, failure=SaslCondition.TEMPORARY_AUTH_FAILURE)
            self._flush_and_enqueue()
            return
        found = await server.accounts.get_credentials(event.username, server.domain, f"SCRAM-{event.hash_name}")
        if found is None:
            result = self.stream.credentials_result(None)
        else:
            account, stored = found
            # Kept for resource binding, which needs no second read unless an account was
            # disabled or deleted in between (AccountService.generation).
            self.data["_account"] = (account, server.account_service.generation)
            creds = ScramCredentials(stored.salt, stored.iterations, stored.stored_key, stored.server_key)
            if account.disabled:
                result = self.stream.credentials_result(creds, failure=SaslCondition.ACCOUNT_DISABLED)
            else:
                result = self.stream.credentials_result(creds)
        self._flush()
        if result:
            self._queue.extendleft(reversed(result))

    def _flush_and_enqueue(self) -> None:
        events = self.stream._take_events()
        self._flush()
        if events:
            self._queue.extendleft(reversed(events))

    async def _starttls(self) -> None:
        try:
            cb = await asyncio.wait_for(self.transport.start_tls(), self.server.config.c2s.tls_handshake_timeout)
        except (TimeoutError, OSError, ConnectionError) as exc:
            self.log.info("TLS handshake failed: %s", exc)
            self.transport.abort()
            self.connection_lost()
            return
        self.stream.tls_established(cb)
        early = self.data.pop("_early", None)
        if early:
            self.data_received(b"".join(early))

    async def _bind(self, event: ev.BindRequested) -> None:
        server = self.server
        username = self.stream.authenticated_as
        assert username is not None
        kept = self.data.pop("_account", None)
        if kept is not None and kept[1] == server.account_service.generation and kept[0].username == username:
            account = kept[0]
        else:
            account = await server.accounts.get(username, server.domain)
        if account is None or account.disabled:
            self.close(StreamErrorCondition.NOT_AUTHORIZED, "the account is gone or disabled")
            return
        bare = JID(username, server.domain)
        resource = event.resource
        if resource is not None:
            try:
                resource = JID.parse(f"{username}@{server.domain}/{resource}").resource
            except JIDError:
                self.stream.bind_error(Condition.BAD_REQUEST, "invalid resource")
                self._flush()
                return
            existing = server.sessions.get(bare.with_resource(resource))
            if existing is not None and existing is not self:
                # RFC 6120 §7.7.2.2: the old session ends with <conflict/> before this one
                # takes its place, so its unavailable presence goes out first.
                existing.log.info("replaced by a new session for the same resource")
                existing.close(StreamErrorCondition.CONFLICT, "replaced by a new connection for the same resource")
                try:
                    await asyncio.wait_for(existing.closed_event.wait(), 10)
                except TimeoutError:
                    server.sessions.unbind(existing)
        try:
            full, replaced = server.sessions.bind(self, bare, resource)
        except ResourceLimitExceeded as exc:
            self.stream.bind_error(Condition.RESOURCE_CONSTRAINT, f"resource-limit-exceeded: {exc}")
            self._flush()
            return
        if replaced is not None:  # only when the old session did not go in time
            replaced.close(StreamErrorCondition.CONFLICT, "replaced by a new connection for the same resource")
        self.jid = full
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.stream.bind_result(full)
        self._flush()
        self.log.info("bound %s from %s", full, self.peer)
        await server.hooks.run(SESSION_BOUND, SessionEvent(self))

    # ---------------------------------------------------------------- XEP-0198 resumption

    def _hibernate(self) -> None:
        """The connection is gone but the session stays bound (stream management keeps it):
        deliveries reach the observer's queue until ``adopt`` resumes it or ``close`` ends it."""
        self.transport = _DETACHED
        server = self.server
        server.connection_closed(self)  # the connection's per-address slot is free
        server.live.add(self)  # the session itself lives on (shutdown ends it)
        # The connection's end is signalled (transports wait for it); a fresh event stands
        # for the end of the session.
        ended, self.closed_event = self.closed_event, asyncio.Event()
        ended.set()
        self.log.info("connection of %s lost: hibernating", self.jid)

    def adopt(self, old: "Session") -> None:
        """XEP-0198 resumption: this new stream (authenticated as the same account) takes
        over ``old``: its full JID, presence, roster interest and per-feature data. ``old``
        ends without cleanup (no unavailable presence, no SESSION_CLOSED): it lives on here.
        The caller moves the observer and re-sends what was not acknowledged."""
        assert old.jid is not None and not old._closed
        server = self.server
        old._closed = True
        old.observer = None
        old._queue.clear()
        if old._auth_timer is not None:
            old._auth_timer.cancel()
            old._auth_timer = None
        old.transport.abort()  # a connection the client left behind ends now
        if old._held:  # waiting for their stores: written here after the stream is resumed
            self._held, old._held = old._held, None
            asyncio.get_running_loop().call_soon(self._release)
        server.connection_closed(old)
        data = old.data
        data.pop("_counted", None)
        if self.data.get("_counted"):
            data["_counted"] = True
        self.data = data
        self.jid = old.jid
        self.available = old.available
        self.priority = old.priority
        self.presence = old.presence
        self.interested = old.interested
        server.sessions.bind(self, old.jid.bare, old.jid.resource)  # replaces old in place
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.stream.resumed(old.jid)
        old.closed_event.set()
        self.log.info("resumed %s (was session %s) from %s", old.jid, old.sid, self.peer)

    def _auth_deadline(self) -> None:
        self._auth_timer = None
        if self.jid is None and not self._closed:
            self.log.info("no session established within %ss", self.server.config.c2s.auth_timeout)
            self.close(StreamErrorCondition.CONNECTION_TIMEOUT, "authenticate and bind sooner")

    async def _cleanup(self, reason: str | None) -> None:
        if self._closed:
            return
        held = self._held
        if held and self.observer is not None:
            for _, data in held:  # never written: stream management re-routes them
                self.observer.stanza_out(data)
            held.clear()
        self._closed = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        server = self.server
        try:
            if self.jid is not None:
                was_bound = server.sessions.unbind(self)
                try:
                    await server.hooks.run(SESSION_CLOSED, SessionEvent(self, reason))
                except Exception:
                    self.log.exception("session-closed hooks failed")
                if was_bound:
                    self.log.info("session of %s ended: %s", self.jid, reason)
        finally:
            self._queue.clear()
            self.transport.close()
            server.connection_closed(self)
            self.closed_event.set()
