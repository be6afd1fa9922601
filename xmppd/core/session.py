"""The asyncio driver of one client stream: answers the core's questions, feeds the router.

Transports (TCP, TLS, WebSocket) call ``data_received``/``message_received`` and
``connection_lost``; everything else happens here, in one drain task per session so that a
session's stanzas are processed strictly in order. Reading pauses while the backlog is long.

Inbound shaping (docs/security.md, "Traffic"): two token buckets per session, stricter before
authentication. Bytes: what the bucket does not cover is held back, reading pauses, and the
rest is fed when the bucket has refilled (Prosody's mod_limits, ejabberd's shapers). Top-level
elements: the drain task waits for a token before handling each one, so a flood is slowed to
the rate while reading stays paused behind the backlog. Sustained abuse ends the stream with
``policy-violation``: slowed down without a break for more than ``c2s.flood_grace`` seconds, or a
backlog that would take longer than that at the rate (beyond the burst). A stanza begun and not
finished within ``c2s.stanza_timeout`` ends the stream with ``connection-timeout``.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from lxml import etree

from .. import tokens
from ..errors import Condition, SaslCondition, StreamErrorCondition
from ..jid import JID, JIDError
from ..protocol import events as ev
from ..protocol.c2s import C2SStream, State
from ..protocol.sasl import ScramCredentials
from . import durability
from .hooks import SESSION_BOUND, SESSION_CLOSED, Routed, SessionEvent
from .limits import TokenBucket
from .sessions import ResourceLimitExceeded
from .tasks import start_eagerly

if TYPE_CHECKING:
    from .interfaces import SessionHost

log = logging.getLogger(__name__)
_tostring = etree.tostring
_BACKLOG_PAUSE = 64
# Why reading is paused (a bit each; reading resumes when none is left).
_PAUSE_BACKLOG = 1  # more than _BACKLOG_PAUSE events wait for the drain task
_PAUSE_SHAPER = 2  # over the byte rate: bytes are held until the bucket has refilled
# Top-level elements that cost a token of the stanza bucket.
_COUNTED = frozenset({ev.StanzaReceived, ev.NonzaReceived, ev.PreAuthIq})
# Events handled without awaiting anything (Session._handle_now).
_SYNC_EVENTS = frozenset({ev.StreamOpened, ev.AuthFailed, ev.Authenticated, ev.StanzaRejected, ev.AuthUnavailable})
# Session._drain while an eager drain runs its first step.
_STARTING: Any = object()


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


def _remedy(session: "Session") -> str:
    """Why a stream could offer no authentication, and what the operator can change."""
    if session.websocket:
        why = getattr(session.transport, "security", "")
        return (
            f"c2s.require_tls is on and this WebSocket is not secure ({why or 'plain ws://'}): serve wss:// (http.tls = true), "
            "or put a TLS proxy listed in http.trusted_proxies that sends X-Forwarded-Proto: https in front; "
            "a client on this machine counts as secure when it connects to 127.0.0.1 or localhost directly; "
            "http.consider_websocket_secure = true (development only) or c2s.require_tls = false lift it"
        )
    if session.stream.config.tls_available:
        return "c2s.require_tls is on and the client tried to log in without STARTTLS: the client must use STARTTLS or direct TLS (listen.c2s_tls)"
    return "c2s.require_tls is on and this listener has no TLS to offer: use listen.c2s_tls, or set c2s.require_tls = false"


class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['sid']}] {msg}", kwargs  # type: ignore[index]


class Session:
    """A client stream from connection to close; bound to a full JID once established."""

    __slots__ = (
        "host", "stream", "transport", "peer", "sid", "log", "jid", "available", "priority",
        "presence", "interested", "data", "last_active", "connected_at", "_queue", "_drain",
        "_auth_timer", "_closed", "_pauses", "websocket", "closed_event", "observer", "__weakref__",
        "_bytes", "_stanzas", "_held", "_shaper_timer", "_stanza_timer", "_tail_open", "_waiting",
        "_throttled", "_ended", "_was_bound", "_held_out", "inbound", "_loop",
    )

    def __init__(self, host: "SessionHost", stream: C2SStream, transport: Transport, peer: str, *, websocket: bool = False) -> None:
        self.host = host  # the narrow view of the server this session runs in (core/interfaces.py)
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
        # Where this session's stanzas go instead of the STANZA_IN chain and routing: set only
        # for a guest of the anonymous host (core/guests.py, ``Guests.admit``).
        self.inbound: Callable[[Routed], Awaitable[None]] | None = None
        self.last_active = time.monotonic()
        self.connected_at = self.last_active
        self.websocket = websocket
        self._queue: collections.deque[object] = collections.deque()
        self._drain: asyncio.Task[None] | None = None  # handling the queue (or _STARTING)
        self._closed = False
        self._pauses = 0
        cfg = host.config.c2s
        self._bytes = TokenBucket(cfg.preauth_rate_bytes, cfg.preauth_burst_bytes)
        self._stanzas = TokenBucket(cfg.preauth_rate_stanzas, cfg.preauth_burst_stanzas)
        self._held: bytes | None = None  # bytes received, not yet fed (over the byte rate)
        self._shaper_timer: asyncio.TimerHandle | None = None
        self._stanza_timer: asyncio.TimerHandle | None = None  # c2s.stanza_timeout
        self._tail_open = False  # bytes after the last '>' fed that are not whitespace
        self._waiting = 0  # counted elements in the queue
        self._throttled: float | None = None  # since when each element has waited for its token
        # The stream's close went out (ours, or our answer to the client's): from then on the
        # output gate lets nothing through, and deliveries no longer find this session.
        self._ended = False
        self._was_bound: bool | None = None  # what leaving the session registry found
        self.closed_event = asyncio.Event()
        self.observer: SessionObserver | None = None  # stream management, when enabled
        self._held_out: collections.deque[tuple[durability.Barrier | None, bytes]] | None = None  # see _write
        loop = self._loop = asyncio.get_running_loop()
        self._auth_timer: asyncio.TimerHandle | None = loop.call_later(
            host.config.c2s.auth_timeout, self._auth_deadline
        )

    # ---------------------------------------------------------------- from the transport

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.stream.state is State.TLS_NEGOTIATING:
            # The handshake finished and the client spoke before our drain task saw it: hold
            # the bytes for the restarted stream.
            self.data.setdefault("_early", []).append(data)
            return
        if self._held is not None:  # already over the byte rate: wait in line
            self._held += data
            return
        bucket = self._bytes
        n = bucket.allowance(len(data))
        if n < len(data):
            self._hold(data[n:])
            data = data[:n]
            if not data:
                return
        bucket.take(len(data))
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            events = self.stream.receive_data(data)
        except Exception:  # the parser must never take the server down
            self.log.exception("stream core failed")
            events = self.stream.close(StreamErrorCondition.INTERNAL_SERVER_ERROR)
        self._flush()
        self._watch_stanza(data, bool(events))
        if events:
            if self.stream.state is State.TLS_NEGOTIATING:
                # Nothing may reach the XML parser before the handshake: the next bytes are
                # the client's TLS hello. start_tls resumes reading once it owns the socket.
                self.transport.pause_reading()
            self._enqueue(events, eager=True)

    # ---------------------------------------------------------------- inbound shaping

    def _pause(self, reason: int) -> None:
        if not self._pauses:
            self.transport.pause_reading()
        self._pauses |= reason

    def _unpause(self, reason: int) -> None:
        if self._pauses & reason:
            self._pauses &= ~reason
            if not self._pauses and not self._closed:
                self.transport.resume_reading()

    def _hold(self, rest: bytes) -> None:
        """Over the byte rate: keep ``rest``, stop reading, feed it when the bucket allows."""
        self._held = rest
        self._pause(_PAUSE_SHAPER)
        self._schedule_release()

    def _schedule_release(self) -> None:
        held = self._held
        assert held is not None
        delay = self._bytes.wait(min(len(held), max(1, int(self._bytes.burst))))
        self._shaper_timer = self._loop.call_later(delay, self._release)

    def _release(self) -> None:
        self._shaper_timer = None
        held = self._held
        if held is None or self._closed or self.stream.state is State.CLOSED:
            self._held = None
            return
        if self._pauses & _PAUSE_BACKLOG:
            return  # the drain task calls again once the backlog has gone down
        self._held = None
        bucket = self._bytes
        n = bucket.allowance(len(held))
        if n < len(held):
            self._held = held[n:]
            self._schedule_release()
        else:
            self._unpause(_PAUSE_SHAPER)
        if n:
            bucket.take(n)
            self.last_active = time.monotonic()
            self._feed(held[:n])

    def _shape_message(self, size: int) -> None:
        """WebSocket: a message is fed whole; its bytes put the bucket in debt, and reading
        pauses until the debt is paid."""
        delay = self._bytes.take(size)
        if delay > 0 and self._shaper_timer is None:
            self._pause(_PAUSE_SHAPER)
            self._shaper_timer = self._loop.call_later(delay, self._end_debt)

    def _end_debt(self) -> None:
        self._shaper_timer = None
        self._unpause(_PAUSE_SHAPER)

    def _shape_authenticated(self) -> None:
        """After SASL success the stricter pre-authentication buckets give way to the others."""
        cfg = self.host.config.c2s
        self._bytes = TokenBucket(cfg.rate_bytes, cfg.burst_bytes)
        self._stanzas = TokenBucket(cfg.rate_stanzas, cfg.burst_stanzas)

    def _watch_stanza(self, data: bytes, completed: bool) -> None:
        """``c2s.stanza_timeout``: a stanza begun must end in time. The clock starts when one
        is begun and restarts whenever one completes."""
        gt = data.rfind(b">")
        if gt < 0:
            self._tail_open = self._tail_open or bool(data.strip())
        else:
            self._tail_open = bool(data[gt + 1 :].strip())
        parser = self.stream._parser
        begun = self._tail_open or (parser is not None and parser.in_stanza)
        timer = self._stanza_timer
        if timer is not None and (completed or not begun):
            timer.cancel()
            timer = self._stanza_timer = None
        if begun and timer is None and not self._closed:
            self._stanza_timer = self._loop.call_later(self.host.config.c2s.stanza_timeout, self._stanza_deadline)

    def _stanza_deadline(self) -> None:
        self._stanza_timer = None
        if self._closed or self.stream.state is State.CLOSED:
            return
        if self._pauses:  # we are the ones not reading: the client is not to blame
            self._stanza_timer = self._loop.call_later(self.host.config.c2s.stanza_timeout, self._stanza_deadline)
            return
        timeout = self.host.config.c2s.stanza_timeout
        self.log.info("stanza not completed within %ss: closing", timeout)
        self.close(StreamErrorCondition.CONNECTION_TIMEOUT, f"a stanza was begun and not completed within {timeout:g} seconds")

    def message_received(self, message: str | bytes, size: int | None = None) -> None:
        """One WebSocket message (RFC 7395); ``size`` its length in bytes when known."""
        self.last_active = time.monotonic()
        self._shape_message(len(message) if size is None else size)
        try:
            events = self.stream.receive_message(message)
        except Exception:
            self.log.exception("stream core failed")
            events = self.stream.close(StreamErrorCondition.INTERNAL_SERVER_ERROR)
        self._flush()
        if events:
            self._enqueue(events)

    def connection_lost(self) -> None:
        if self.hibernating:
            return  # the connection we closed with see-other-host: the session waits to be resumed
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
            if self.stream.state is State.CLOSED and not self._ended:
                self._end_output()  # that was the closing tag (the core stops output there)

    def _end_output(self) -> None:
        """The output gate: after the stream's close (RFC 6120 §4.4, RFC 7395 §3.6) nothing
        more is written, and the session leaves the registry at once, so that what is still
        addressed to it goes where it goes for an unavailable resource (another resource,
        offline storage) instead of behind the close. Cleanup (SESSION_CLOSED) follows in order."""
        self._ended = True
        self._leave_registry()

    def _leave_registry(self) -> bool:
        """Unbind (once); True when this session was the one bound to its JID."""
        if self._was_bound is None and self.jid is not None:
            self._was_bound = self.host.sessions.unbind(self)
        return bool(self._was_bound)

    def _late(self, data: bytes) -> None:
        """A stanza reached the session after its close (a delivery already under way): never
        written. Stream management re-routes what it has not seen acknowledged (XEP-0198 §5)."""
        if self.observer is not None:
            self.observer.stanza_out(data)
        self.log.debug("dropped a stanza that arrived after the stream's close")

    def send(self, stanza: etree._Element) -> None:
        """Write a stanza (the router has already run the delivery hooks): now, or once the
        stanza being processed is stored (see ``_write``)."""
        if not self._closed:
            self._write(_tostring(stanza))

    def send_bytes(self, data: bytes) -> None:
        if not self._closed:
            self._write(data)

    def _write(self, data: bytes) -> None:
        # After the stream's close nothing but the close itself is written (RFC 7395 §3.6).
        # Durable before delivered (core.durability): while the stanza being processed has
        # writes not committed, what it sends here is held -- and so is everything after it,
        # so this session's output keeps its order.
        if self._ended:
            self._late(data)
            return
        held = self._held_out
        barrier = durability.pending()
        if barrier is None and not held:
            self.transport.write([data])
            if self.observer is not None:
                self.observer.stanza_out(data)  # (after: an ack request it sends follows the stanza)
            return
        if held is None:
            held = self._held_out = collections.deque()
        held.append((barrier, data))
        if len(held) == 1:  # (so barrier is the pending one: what _release_out would find)
            barrier.when_settled(self._release_out)  # type: ignore[union-attr]

    def _release_out(self) -> None:
        """Write the held stanzas whose stores committed, in order, up to one still waiting."""
        held = self._held_out
        while held:
            barrier, data = held[0]
            if barrier is not None and not barrier.settled:
                barrier.when_settled(self._release_out)
                return
            held.popleft()
            if self._closed or (barrier is not None and barrier.failed):
                continue  # not stored: not delivered either
            if self._ended:
                self._late(data)
                continue
            self.transport.write([data])
            if self.observer is not None:
                self.observer.stanza_out(data)

    def send_nonza(self, el: etree._Element) -> None:
        """Write a top-level element that is not a stanza (XEP-0198 acks, ...): never counted."""
        if not self._closed and not self._ended:
            self.transport.write([_tostring(el)])

    def close(self, condition: StreamErrorCondition | None = None, text: str | None = None, *, detail: str | None = None) -> None:
        """Close the stream (with a stream error); cleanup follows through StreamClosed.
        ``detail``: the condition element's content (``see-other-host``'s address)."""
        # What the client sent before is still handled, but without waiting for stanza tokens:
        # the close takes effect now (a replaced session must not linger behind its backlog).
        self._stanzas = TokenBucket(0, 0)
        events = self.stream.close(condition, text, detail=detail)
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
        """The stream is over or closing: nothing more reaches this client."""
        return self._closed or self._ended

    # ---------------------------------------------------------------- processing in order

    def _enqueue(self, events: list[object], *, eager: bool = False) -> None:
        """Handle ``events`` in order, after those still waiting. ``eager`` (only from the
        input paths, the transport's callbacks, where nothing of ours is half-done): the drain
        starts at once and costs a task only if it has to wait (``tasks.start_eagerly``)."""
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
        counted = 0
        for e in events:
            if type(e) in _COUNTED:
                counted += 1
        if counted:
            self._waiting += counted
            bucket = self._stanzas
            grace = self.host.config.c2s.flood_grace
            if not bucket.unlimited and self._waiting > bucket.burst + bucket.rate * grace and not self._closed:
                self._cut_flood()
                return
        if self._drain is None:
            if eager:
                self._drain = _STARTING  # what is enqueued meanwhile waits for this drain
                self._drain = start_eagerly(self._run(), self._loop)  # (None: it has finished)
            else:
                self._drain = self._loop.create_task(self._run())
        if not self._pauses & _PAUSE_BACKLOG and len(self._queue) > _BACKLOG_PAUSE:
            self._pause(_PAUSE_BACKLOG)

    def _cut_flood(self) -> None:
        """Sustained abuse of the stanza rate: the elements still waiting are dropped (none is
        half-handled) and the stream ends with policy-violation."""
        queue = self._queue
        kept = [e for e in queue if type(e) not in _COUNTED]
        queue.clear()
        queue.extend(kept)
        self._waiting = 0
        rate = self._stanzas.rate
        self.log.info("stanza flood (over %g a second): closing", rate)
        self.close(StreamErrorCondition.POLICY_VIOLATION, f"too many stanzas: the limit is {rate:g} a second")
        if self._drain is None and self._queue:
            self._drain = self._loop.create_task(self._run())

    async def _run(self) -> None:
        queue = self._queue
        try:
            while queue:
                event = queue.popleft()
                if type(event) in _COUNTED:
                    self._waiting -= 1
                    delay = self._stanzas.take(1)
                    if delay > 0:
                        now = time.monotonic()
                        if self._throttled is None:
                            self._throttled = now
                        elif now - self._throttled > self.host.config.c2s.flood_grace and not self._closed:
                            self._cut_flood()
                            continue
                        await asyncio.sleep(delay)
                        if self._closed:
                            break
                    else:
                        self._throttled = None
                try:
                    await self._handle(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.log.exception("failed to handle %s", type(event).__name__)
                    if type(event) is ev.StreamClosed:
                        continue
                    self.close(StreamErrorCondition.INTERNAL_SERVER_ERROR, "internal error")
                if self._pauses & _PAUSE_BACKLOG and len(queue) < _BACKLOG_PAUSE // 2 and not self._closed:
                    self._unpause(_PAUSE_BACKLOG)
                    if self._held is not None and self._shaper_timer is None:
                        self._schedule_release()
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
            await self.host.router.from_client(self, event.element, event.kind, event.to)  # type: ignore[attr-defined]
        elif t is ev.NonzaReceived:
            await self.host.handle_nonza(self, event.element)  # type: ignore[attr-defined]
        elif t is ev.CredentialsNeeded:
            await self._credentials(event)  # type: ignore[arg-type]
        elif t is ev.VerificationNeeded:
            await self._verification(event)  # type: ignore[arg-type]
        elif t is ev.BindRequested:
            await self._bind(event)  # type: ignore[arg-type]
        elif t is ev.TlsRequested:
            await self._starttls()
        elif t is ev.PreAuthIq:
            await self.host.handle_preauth_iq(self, event.element)  # type: ignore[attr-defined]
            self._flush()
        elif t is ev.AnonymousLogin:
            self._anonymous()
        elif t is ev.StreamClosed:
            # A connection lost, or sent to another node (see-other-host: a node leaving the
            # cluster), may be resumed (XEP-0198) if stream management keeps the session.
            resumable = event.lost or event.error is StreamErrorCondition.SEE_OTHER_HOST  # type: ignore[attr-defined]
            if resumable and self.observer is not None and self.jid is not None and self.observer.keep(self):
                self._hibernate(close=not event.lost)  # type: ignore[attr-defined]
                return
            await self._cleanup(event.text or (event.error.value if event.error else None))  # type: ignore[attr-defined]
        elif t in _SYNC_EVENTS:
            self._handle_now(event)

    def _handle_now(self, event: object) -> None:
        """The events whose handling never awaits (``_SYNC_EVENTS``)."""
        t = type(event)
        if t is ev.AuthFailed:
            condition = event.condition  # type: ignore[attr-defined]
            # A refusal by the throttle itself is not a guess (counting it would renew the
            # block forever); only a wrong password counts against the account it named.
            if condition is not SaslCondition.TEMPORARY_AUTH_FAILURE:
                guessed = event.username if condition is SaslCondition.NOT_AUTHORIZED else None  # type: ignore[attr-defined]
                self.host.auth_throttle.failure(self.peer, guessed)  # type: ignore[attr-defined]
            self.log.info("authentication failed: %s", event.condition.value)  # type: ignore[attr-defined]
            metrics = getattr(self.host, "metrics", None)
            if metrics is not None:
                metrics.auth_failure(condition.value)
        elif t is ev.Authenticated:
            if not self.stream.config.anonymous:  # a guest's random name is nobody's to trust
                self.host.auth_throttle.success(self.peer, event.username)  # type: ignore[attr-defined]
            self._shape_authenticated()
            self.stream_parser_limits(authenticated=True)
            self.log.info("authenticated as %s with %s", event.username, event.mechanism)  # type: ignore[attr-defined]
        elif t is ev.AuthUnavailable:
            self.log.info("%s from %s: %s; closed with policy-violation", "WebSocket" if self.websocket else "stream", self.peer, _remedy(self))
        elif t is ev.StanzaRejected:
            if self.observer is not None:
                self.observer.stanza_in()
                if event.replied:  # type: ignore[attr-defined]
                    self.observer.stanza_out(b"")  # the core's error reply: counted, not kept
        # ev.StreamOpened: nothing to do

    def stream_parser_limits(self, *, authenticated: bool) -> None:
        parser = getattr(self.stream, "_parser", None) or getattr(self.stream, "_framer", None)
        if parser is not None and hasattr(parser, "max_stanza_size"):
            cfg = self.host.config.c2s
            parser.max_stanza_size = cfg.max_stanza_size if authenticated else min(cfg.preauth_max_stanza_size, cfg.max_stanza_size)

    async def _credentials(self, event: ev.CredentialsNeeded) -> None:
        host = self.host
        verdict = host.auth_throttle.check(self.peer, event.username)
        if verdict.blocked:
            self.stream.credentials_result(None, failure=SaslCondition.TEMPORARY_AUTH_FAILURE)
            self._flush_and_enqueue()
            return
        if verdict.delay:
            # The account is being guessed at from elsewhere: wait before checking, whatever
            # the answer will be (limits.AuthThrottle).
            await asyncio.sleep(verdict.delay)
            if self.stream.state is not State.SASL:  # closed or aborted meanwhile
                return
        found = await host.accounts.get_credentials(event.username, host.domain, f"SCRAM-{event.hash_name}")
        if found is None:
            result = self.stream.credentials_result(None)
        else:
            account, stored = found
            # Kept for resource binding, which needs no second read unless an account was
            # disabled or deleted in between (AccountService.generation).
            self.data["_account"] = (account, host.account_service.generation)
            creds = ScramCredentials(stored.salt, stored.iterations, stored.stored_key, stored.server_key)
            if account.disabled:
                result = self.stream.credentials_result(creds, failure=SaslCondition.ACCOUNT_DISABLED)
            else:
                result = self.stream.credentials_result(creds)
        self._flush()
        if result:
            self._queue.extendleft(reversed(result))

    async def _verification(self, event: ev.VerificationNeeded) -> None:
        """A PLAIN secret or an OAUTHBEARER token, checked by the server's login authority
        (auth.authority: JWT, the app's callback, stored keys); throttled like any password."""
        host = self.host
        verdict = host.auth_throttle.check(self.peer, event.username)
        if verdict.blocked:
            self.stream.verification_result(None, SaslCondition.TEMPORARY_AUTH_FAILURE)
            self._flush_and_enqueue()
            return
        if verdict.delay:
            await asyncio.sleep(verdict.delay)
            if self.stream.state is not State.SASL:
                return
        found = await host.login_authority.verify(event.username, event.secret, event.mechanism, self.peer)
        if self.stream.state is not State.SASL:  # closed or aborted meanwhile
            return
        if found.account is not None:
            self.data["_account"] = (found.account, host.account_service.generation)
        if found.username is not None and event.username is None:
            # OAUTHBEARER named nobody: the account the token proved may be throttled too.
            if host.auth_throttle.check(self.peer, found.username).blocked:
                found = type(found)(None, SaslCondition.TEMPORARY_AUTH_FAILURE)
        result = self.stream.verification_result(found.username, found.failure)
        self._flush()
        if result:
            self._queue.extendleft(reversed(result))

    def _anonymous(self) -> None:
        """SASL ANONYMOUS on the anonymous host: admitted (a fresh random node) or refused with
        temporary-auth-failure by its limits (core/guests.py)."""
        guests = self.host.guests  # type: ignore[attr-defined]
        node = guests.admit(self) if guests is not None else None
        if node is None:
            result = self.stream.verification_result(None, SaslCondition.TEMPORARY_AUTH_FAILURE)
        else:
            result = self.stream.verification_result(node)
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
            cb = await asyncio.wait_for(self.transport.start_tls(), self.host.config.c2s.tls_handshake_timeout)
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
        host = self.host
        username = self.stream.authenticated_as
        assert username is not None
        if self.stream.config.anonymous:
            await self._bind_guest(username, event.resource)
            return
        kept = self.data.pop("_account", None)
        if kept is not None and kept[1] == host.account_service.generation and kept[0].username == username:
            account = kept[0]
        else:
            account = await host.accounts.get(username, host.domain)
        if account is None or account.disabled:
            self.close(StreamErrorCondition.NOT_AUTHORIZED, "the account is gone or disabled")
            return
        bare = JID(username, host.domain)
        ok, resource = self._resource(bare, event.resource)
        if not ok:
            return
        if resource is not None:
            existing = host.sessions.get(bare.with_resource(resource))
            if existing is not None and existing is not self:
                # RFC 6120 §7.7.2.2: the old session ends with <conflict/> before this one
                # takes its place, so its unavailable presence goes out first.
                existing.log.info("replaced by a new session for the same resource")
                existing.close(StreamErrorCondition.CONFLICT, "replaced by a new connection for the same resource")
                try:
                    await asyncio.wait_for(existing.closed_event.wait(), 10)
                except TimeoutError:
                    host.sessions.unbind(existing)
        elsewhere = 0
        if host.router.clustered:  # type: ignore[attr-defined]
            # The same full JID on another node ends there first (conflict, as above); the
            # account's other sessions there count in the per-account limit.
            elsewhere = await host.router.bind_elsewhere(bare, resource)  # type: ignore[attr-defined]
        if self._ended or self._closed:
            return  # the stream closed while we looked: nothing to bind
        try:
            full, replaced = host.sessions.bind(self, bare, resource, elsewhere)
        except ResourceLimitExceeded as exc:
            self.stream.bind_error(Condition.RESOURCE_CONSTRAINT, f"resource-limit-exceeded: {exc}")
            self._flush()
            return
        if replaced is not None:  # only when the old session did not go in time
            replaced.close(StreamErrorCondition.CONFLICT, "replaced by a new connection for the same resource")
        await self._established(full)

    def _resource(self, bare: JID, resource: str | None) -> tuple[bool, str | None]:
        """The resource the client asked for, prepared (RFC 7622); False once answered
        bad-request for one that is not valid."""
        if resource is None:
            return True, None
        try:
            return True, JID.parse(f"{bare}/{resource}").resource
        except JIDError:
            self.stream.bind_error(Condition.BAD_REQUEST, "invalid resource")
            self._flush()
            return False, None

    async def _established(self, full: JID) -> None:
        self.jid = full
        self._cancel_auth_timer()
        self.stream.bind_result(full)
        self._flush()
        self.log.info("bound %s from %s", full, self.peer)
        await self.host.hooks.run(SESSION_BOUND, SessionEvent(self))

    async def _bind_guest(self, node: str, resource: str | None) -> None:
        """A guest of the anonymous host (core/guests.py): its random node, no account to read;
        the one session of that address."""
        bare = JID(node, self.stream.config.domain)
        ok, resource = self._resource(bare, resource)
        if not ok or self._ended or self._closed:
            return
        full, _ = self.host.sessions.bind(self, bare, resource)
        await self._established(full)

    # ---------------------------------------------------------------- XEP-0198 resumption

    def _hibernate(self, *, close: bool = False) -> None:
        """The connection is gone (or ``close``: we closed the stream, see-other-host) but the
        session stays (stream management keeps it): deliveries reach the observer's queue until
        ``adopt`` resumes it, another node takes it over (``retire``) or ``close`` ends it."""
        if close:
            self.transport.close()
            if self._was_bound and self.jid is not None and self.host.sessions.get(self.jid) is None:
                # The close left the registry (_end_output); hibernating, it takes deliveries
                # again: they wait in the stream-management queue (_late) like a lost one's.
                try:
                    self.host.sessions.bind(self, self.jid.bare, self.jid.resource)
                    self._was_bound = None
                except ResourceLimitExceeded:
                    pass
        self.transport = _DETACHED
        self._stop_shaping()
        host = self.host
        host.connection_closed(self)  # the connection's per-address slot is free
        host.live.add(self)  # the session itself lives on (shutdown ends it)
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
        host = self.host
        old._lives_on_elsewhere()
        if old._held_out:  # waiting for their stores: written here after the stream is resumed
            self._held_out, old._held_out = old._held_out, None
            self._loop.call_soon(self._release_out)
        host.connection_closed(old)
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
        self.inbound = old.inbound
        host.sessions.bind(self, old.jid.bare, old.jid.resource)  # replaces old in place
        self._cancel_auth_timer()
        self.stream.resumed(old.jid)
        old.closed_event.set()
        self.log.info("resumed %s (was session %s) from %s", old.jid, old.sid, self.peer)

    def _lives_on_elsewhere(self) -> None:
        """(``adopt``, ``retire``.) Another stream took this session over: it ends without
        cleanup, and the connection the client left behind ends now."""
        self._closed = True
        self.observer = None
        self._queue.clear()
        self._stop_shaping()
        self._cancel_auth_timer()
        self.transport.abort()

    def _cancel_auth_timer(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    def retire(self) -> list[bytes]:
        """XEP-0198 resumption on another node took this session over (docs/cluster.md §4): it
        ends here without cleanup -- no unavailable presence, no SESSION_CLOSED, it lives on
        there -- and leaves this node's registry. Returns what was still held back waiting for
        its stores (``_write``), in order, never written here: the caller forwards it."""
        held = [data for barrier, data in (self._held_out or ()) if barrier is None or not barrier.failed]
        self._held_out = None
        self._lives_on_elsewhere()
        self._leave_registry()
        self.host.connection_closed(self)
        self.closed_event.set()
        self.log.info("session of %s moved to another node", self.jid)
        return held

    def resume_moved(self, jid: JID, *, available: bool, priority: int, presence: etree._Element | None,
                     interested: bool, data: dict[str, Any]) -> None:
        """XEP-0198 resumption of a session that lived on another node: this new stream (its
        account is ``jid``'s) takes the identity and state the old node handed over (docs/cluster.md
        §4). It is bound here by ``bind_moved`` once what was held back for it is delivered."""
        if self.data.get("_counted"):
            data["_counted"] = True
        self.data = data
        self.jid = jid
        self.available = available
        self.priority = priority
        self.presence = presence
        self.interested = interested
        self._cancel_auth_timer()
        self.stream.resumed(jid)
        self.log.info("resumed %s (moved from another node) from %s", jid, self.peer)

    def bind_moved(self) -> None:
        """Bind the session ``resume_moved`` took over (raises ``ResourceLimitExceeded``)."""
        jid = self.jid
        assert jid is not None
        _, replaced = self.host.sessions.bind(self, jid.bare, jid.resource)
        if replaced is not None and replaced is not self:
            replaced.close(StreamErrorCondition.CONFLICT, "replaced by a new connection for the same resource")

    def _stop_shaping(self) -> None:
        for timer in (self._shaper_timer, self._stanza_timer):
            if timer is not None:
                timer.cancel()
        self._shaper_timer = self._stanza_timer = None
        self._held = None

    def _auth_deadline(self) -> None:
        self._auth_timer = None
        if self.jid is None and not self._closed:
            self.log.info("no session established within %ss", self.host.config.c2s.auth_timeout)
            if self.stream.state is State.WAIT_STARTTLS:  # a client that cannot do TLS waits for nothing
                self.close(StreamErrorCondition.CONNECTION_TIMEOUT, "TLS is required to log in: negotiate STARTTLS (or use direct TLS)")
            else:
                self.close(StreamErrorCondition.CONNECTION_TIMEOUT, "authenticate and bind sooner")

    async def _cleanup(self, reason: str | None) -> None:
        if self._closed:
            return
        held = self._held_out
        if held and self.observer is not None:
            for _, data in held:  # never written: stream management re-routes them
                self.observer.stanza_out(data)
            held.clear()
        self._closed = True
        self._cancel_auth_timer()
        self._stop_shaping()
        host = self.host
        try:
            if self.jid is not None:
                was_bound = self._leave_registry()
                try:
                    await host.hooks.run(SESSION_CLOSED, SessionEvent(self, reason))
                except Exception:
                    self.log.exception("session-closed hooks failed")
                if was_bound:
                    self.log.info("session of %s ended: %s", self.jid, reason)
        finally:
            self._queue.clear()
            self.transport.close()
            host.connection_closed(self)
            self.closed_event.set()
