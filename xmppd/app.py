"""The composition root: ``Server`` builds every part, starts listeners, and stops cleanly."""
from __future__ import annotations

import asyncio
import logging
import random
import secrets
import ssl
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from lxml import etree

from .accounts import AccountService
from .config import Config, ConfigError, parse_hostport
from .core import hooks as H
from .core import server_owned
from .core.dispatch import IqTable, IqTracker
from .core.feature import Clock, Feature, FeatureContext
from .core.guests import Guests
from .core.hooks import Flow, HookChains, SessionEvent
from .core.invalidation import Invalidations
from .core.known_accounts import KnownAccounts
from .core.limits import AuthThrottle, ConnectionCounter
from .core.loader import discover, order
from .core.router import Router
from .core.session import Session
from .core.sessions import SessionRegistry
from .errors import Condition, StanzaError, StreamErrorCondition
from .i18n import Languages
from .jid import JID
from .protocol.c2s import C2SStream, StreamConfig
from .storage import migrations
from .storage.accounts import AccountRepository, SqlAccountRepository
from .storage.engine import Database
from .storage.secrets import server_secret
from .transport import tls as tlsmod
from .usernames import UsernamePolicy
from .webhooks.outbox import DISABLED as NO_OUTBOX
from .webhooks.outbox import Outbox
from .xml.builder import error_reply

log = logging.getLogger(__name__)

#: The server secret keying the SCRAM answers for unknown users (protocol.sasl.fake_credentials).
FAKE_SCRAM_SECRET = "scram-unknown-users"


class SchemaNotCurrent(Exception):
    """Storage needs ``xmppctl db upgrade`` before the server can use it."""


class Server:
    """One xmppd node."""

    def __init__(
        self,
        config: Config,
        *,
        feature_classes: dict[str, type[Feature]] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.domain = config.server.domain
        self.clock = clock or Clock()
        self.rng = rng or secrets.SystemRandom()
        self.hooks = HookChains()
        self.iq_table = IqTable()
        self.tracker = IqTracker()
        self.sessions = SessionRegistry(config.c2s.max_sessions_per_account)
        self.router = Router(self.domain, self.sessions, self.hooks, self.iq_table, self.tracker)
        self.languages = Languages(self.sessions, config.server.default_lang)
        # The REST API's operations (xmppd/api): the core's resources, then each feature's.
        from .api.framework import ApiRoutes
        from .metrics import Metrics

        self.api = ApiRoutes(config.api, signature_key=config.webhooks.secret)
        self.metrics = Metrics(self)
        self.router.metrics = self.metrics
        self.router.languages = self.languages
        self.hooks.add(H.SESSION_BOUND, self._remember_language)
        # Elements only this server may author (XEP-0359 §4, XEP-0203 §3): a client's copy that
        # claims to be ours is removed before routing, so nobody forges ids or offline stamps.
        # Features add theirs through their ``server_owned`` declaration.
        for owned in server_owned.CORE:
            self.router.add_server_only(owned.qname, owned.check())
        c2s = config.c2s
        self.auth_throttle = AuthThrottle(
            c2s.auth_failures_per_ip, c2s.auth_failures_per_account, c2s.auth_failure_window,
            delay_max=c2s.auth_delay_max, clock=self.clock.monotonic,
        )
        self.connections = ConnectionCounter(config.c2s.max_connections_per_ip)
        self.admins = frozenset(JID.parse(a) for a in config.server.admins)
        self._feature_classes = feature_classes
        self.features: dict[str, Feature] = {}
        self.installed_features: dict[str, type[Feature]] = {}  # loaded or disabled
        self._contexts: list[FeatureContext] = []
        self._stream_features: list[Callable[[bool], list[etree._Element]]] = []
        # Features' own HTTP routes on listen.http (upload slots ...): (method, path, handler).
        self.http_routes: list[tuple[str, str, Callable[[Any], Awaitable[Any]]]] = []
        # One StreamConfig per kind of connection, shared by its streams (with their prebuilt
        # <stream:features/>); dropped whenever what goes into it changes.
        self._stream_configs: dict[tuple[bool, bool], StreamConfig] = {}
        self._nonza_handlers: dict[str, Callable[[Session, etree._Element], Awaitable[None]]] = {}
        self._preauth_handlers: dict[str, Callable[[Session, etree._Element], Awaitable[None]]] = {}
        self._servers: list[Any] = []
        self._stoppers: list[Callable[[], Awaitable[None]]] = []
        self.live: set[Session] = set()
        self.ports: dict[str, int] = {}
        self.db: Database = None  # type: ignore[assignment]
        self.accounts: AccountRepository = None  # type: ignore[assignment]
        # Webhooks (docs/webhooks.md): the one door for writing events, and this node's delivery.
        self.outbox: Outbox = NO_OUTBOX
        self.webhooks: Any = None  # webhooks.delivery.DeliveryWorker when webhooks.url is set
        self._stop_webhook_metrics: Callable[[], None] = lambda: None
        self.account_service: AccountService = None  # type: ignore[assignment]
        self.fake_scram_key = b""  # read from storage at start (storage.secrets)
        self.login_authority: Any = None  # auth.authority.LoginAuthority, made at start
        self.ssl_context: ssl.SSLContext | None = None
        self.channel_binding: tuple[str, bytes] | None = None
        self.started = asyncio.Event()
        self._stopping = False
        # Cluster membership (xmppd/cluster) when cluster.redis_url is set; a worker process of
        # server.workers binds its listeners with SO_REUSEPORT beside its siblings.
        self.cluster: Any = None
        self.reuse_port = False
        # Caches another node can make stale (xmppd/core/invalidation.py): a cluster node
        # attaches its transport; with one node publishing does nothing.
        self.invalidations = Invalidations()
        self.known_accounts: KnownAccounts = None  # type: ignore[assignment]
        # The anonymous host (core/guests.py), only when anonymous.domain is set.
        self.guests: Guests | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self._setup_tls()
        installed = self._feature_classes if self._feature_classes is not None else discover()
        classes = order(installed, cfg.features.disabled)
        self.installed_features = dict(installed)
        self.db = Database.from_url(cfg.storage_url)
        self.db.timing = self.metrics.storage.observe
        try:
            auto = cfg.storage.auto_upgrade
            if auto is None:
                auto = cfg.is_embedded_storage
            # Every installed feature's schema, disabled ones too: their history is in the database.
            locations = feature_migration_locations(installed.values())
            if auto:
                applied = await migrations.upgrade(self.db, locations)
                if applied:
                    log.info("applied %d schema migrations", len(applied))
            else:
                missing = await migrations.pending(self.db, locations)
                if missing:
                    raise SchemaNotCurrent(
                        f"the database schema is not up to date ({len(missing)} migrations pending): run `xmppctl db upgrade`"
                    )
            # Shared by every node through the database, kept across restarts (issue 15 #12).
            self.fake_scram_key = await server_secret(self.db, FAKE_SCRAM_SECRET)
            self.outbox = Outbox.from_config(cfg)
            self.accounts = SqlAccountRepository(self.db, outbox=self.outbox)
            self.known_accounts = KnownAccounts(self.accounts, self.sessions, self.invalidations, self.hooks)
            self.account_service = AccountService(
                self.accounts, self.domain, self, min_password_length=cfg.registration.min_password_length,
                policy=UsernamePolicy.from_config(cfg, classes, domains=lambda: (self.domain, *self.router.services)),
            )
            from .auth.authority import LoginAuthority

            try:
                self.login_authority = LoginAuthority(self)
            except ValueError as exc:  # an unreadable auth.jwt_public_key
                raise ConfigError(str(exc)) from None
            from .api import core_operations

            self._api_undo = self.api.add(core_operations(self))
            for cls in classes:
                ctx = FeatureContext(self, cls.name)
                feature = cls(ctx, cfg.sections.get(cls.name, cls.Options()))
                self.features[cls.name] = feature
                self._contexts.append(ctx)
                ctx.bind_declared(feature)
                await feature.setup()
            if cfg.anonymous.domain:
                self.guests = Guests(cfg.anonymous, self.router, self.clock.monotonic)
                try:
                    self._guests_undo = self.guests.start(getattr(self.features.get("cs"), "domain", None))
                except ValueError:  # a feature's service domain (rooms, upload, cs ...)
                    raise ConfigError(f"anonymous.domain {self.guests.domain} is already served by a feature: choose another name") from None
            self.refresh_stream_features()
            if cfg.webhooks.url:
                from .webhooks.delivery import DeliveryWorker

                self.webhooks = DeliveryWorker(self.db, cfg.webhooks, rng=self.rng)
                self.webhooks.start()
                self._stop_webhook_metrics = self.metrics.add(self.webhooks.collect)
            await self._listen()
            if cfg.cluster.redis_url:
                from .cluster.node import join

                self.cluster = await join(self)
        except BaseException:
            await self.stop()
            raise
        self.started.set()
        log.info("xmppd serving %s: %s", self.domain, ", ".join(f"{k} on port {v}" for k, v in self.ports.items()))

    def _setup_tls(self) -> None:
        cfg = self.config
        if cfg.tls.cert:
            cert, key = Path(cfg.tls.cert), Path(cfg.tls.key)
        else:
            cert, key = tlsmod.ensure_certificate(cfg.data_dir, self.domain)
        self.ssl_context = tlsmod.make_server_context(cert, key)
        log.info("TLS certificate %s", tlsmod.certificate_summary(cert))
        try:
            self.channel_binding = ("tls-server-end-point", tlsmod.tls_server_end_point(tlsmod.load_certificate_der(cert)))
        except tlsmod.CertificateError as exc:  # e.g. Ed25519: RFC 5929 defines no binding
            log.warning("no channel binding with this certificate (%s): -PLUS mechanisms are off", exc)
            self.channel_binding = None

    async def _listen(self) -> None:
        from .transport.tcp import C2SProtocol

        loop = asyncio.get_running_loop()
        cfg = self.config
        for key, direct in (("c2s", False), ("c2s_tls", True)):
            addr = parse_hostport(getattr(cfg.listen, key), f"listen.{key}")
            if addr is None:
                continue
            srv = await loop.create_server(
                lambda direct=direct: C2SProtocol(self, direct_tls=direct),
                addr[0],
                addr[1],
                ssl=self.ssl_context if direct else None,
                ssl_handshake_timeout=cfg.c2s.tls_handshake_timeout if direct else None,
                backlog=511,
                reuse_address=True,
                reuse_port=self.reuse_port or None,
            )
            self._servers.append(srv)
            self.ports[key] = srv.sockets[0].getsockname()[1]
            log.info("listening for %s on %s:%d", key, addr[0], self.ports[key])
        addr = parse_hostport(cfg.listen.http, "listen.http")
        if addr is not None:
            from .transport.http import start_http

            port, stop = await start_http(self, addr[0], addr[1], reuse_port=self.reuse_port)
            self.ports["http"] = port
            self._stoppers.append(stop)
            log.info("listening for http on %s:%d", addr[0], port)

    async def stop(self, reason: str = "the server is shutting down") -> None:
        """Graceful: stop listening, close every stream properly, tear features down, close storage."""
        if self._stopping:
            return
        self._stopping = True
        for srv in self._servers:
            srv.close()
        for stop in self._stoppers:
            try:
                await stop()
            except Exception:
                log.exception("stopping a listener failed")
        # In a cluster, clients are sent to another live node (RFC 6120 §4.9.3.19 see-other-host;
        # a WebSocket client gets system-shutdown: its reconnection goes through its own URL).
        other = None
        if self.cluster is not None:
            try:
                other = await asyncio.wait_for(self.cluster.other_host(), 2)
            except Exception:
                log.exception("looking for another node to send the clients to failed")
        if other:
            log.info("leaving the cluster: clients are sent to %s (see-other-host)", other)
        sessions = list(self.live)
        for s in sessions:
            if other and not s.websocket:
                s.close(StreamErrorCondition.SEE_OTHER_HOST, "this node is leaving the cluster: connect to the other one", detail=other)
            else:
                s.close(StreamErrorCondition.SYSTEM_SHUTDOWN, reason)
        if sessions:
            await asyncio.wait([asyncio.ensure_future(s.closed_event.wait()) for s in sessions], timeout=10)
        if self.cluster is not None:
            await self._hand_over()
            await _bounded(self.cluster.stop(), "leaving the cluster")
            self.cluster = None
        for srv in self._servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 2)
            except (TimeoutError, Exception):
                pass
        self.tracker.cancel_all()
        if self.webhooks is not None:
            self._stop_webhook_metrics()
            # In-flight requests are cancelled; their claims lapse and are delivered again later.
            await _bounded(self.webhooks.stop(), "stopping webhook delivery")
            self.webhooks = None
        # Every step is bounded: a feature that never finishes must not keep the process alive.
        for name in reversed(list(self.features)):
            await _bounded(self.features[name].teardown(), f"teardown of {name}")
        for ctx in reversed(self._contexts):
            await _bounded(ctx.close(), f"closing the context of {ctx.name}")
        self.features.clear()
        self._contexts.clear()
        if self.known_accounts is not None:
            self.known_accounts.close()
            self.known_accounts = None  # type: ignore[assignment]
        if self.login_authority is not None:
            await _bounded(self.login_authority.close(), "closing the auth callback's client")
        if isinstance(self.accounts, SqlAccountRepository):
            self.accounts.close()
        if self.db is not None:
            await _bounded(self.db.dispose(), "closing storage")
        log.info("xmppd stopped")

    async def _hand_over(self) -> None:
        """A node leaving the cluster keeps its stream-management sessions for up to
        ``cluster.handover_timeout`` so that their clients resume them on another node (which
        asks this one over the bus); those not taken over then end here (their unacknowledged
        messages go to offline storage)."""
        kept = [s for s in self.live if s.hibernating]
        if not kept:
            return
        grace = self.config.cluster.handover_timeout
        log.info("leaving the cluster: %d stream-management sessions may be resumed on another node within %g s", len(kept), grace)
        # closed_event: set when a session is handed over (Session.retire) or ends
        waits = [asyncio.ensure_future(s.closed_event.wait()) for s in kept]
        _, pending = await asyncio.wait(waits, timeout=grace)
        for w in pending:
            w.cancel()
        kept = [s for s in self.live if s.hibernating]
        for s in kept:
            s.close(StreamErrorCondition.SYSTEM_SHUTDOWN, "the server is shutting down")
        if kept:
            await asyncio.wait([asyncio.ensure_future(s.closed_event.wait()) for s in kept], timeout=10)

    # ---------------------------------------------------------------- connections

    def new_stream(self, *, direct_tls: bool, websocket: bool = False, tls: bool = False) -> C2SStream:
        key = (direct_tls, websocket)
        config = self._stream_configs.get(key)
        if config is None:
            cfg = self.config
            config = self._stream_configs[key] = StreamConfig(
                domain=self.domain,
                require_tls=cfg.c2s.require_tls,
                tls_available=self.ssl_context is not None and not websocket,
                direct_tls=direct_tls,
                max_stanza_size=min(cfg.c2s.preauth_max_stanza_size, cfg.c2s.max_stanza_size),
                max_depth=cfg.c2s.max_depth,
                max_auth_attempts=cfg.c2s.max_auth_attempts,
                registration="register" in self.features and cfg.registration.open,
                extra_features=self._extra_features,
                nonza_namespaces=frozenset(self._nonza_handlers),
                websocket=websocket,
                fake_key=self.fake_scram_key,
                **self._login_mechanisms(),
            )
            if self.guests is not None:
                config.guest = self._guest_stream_config(config)
        stream = C2SStream(config)
        if direct_tls or tls:
            stream.set_direct_tls(self.channel_binding if direct_tls else None)
        return stream

    def _guest_stream_config(self, main: StreamConfig) -> StreamConfig:
        """The anonymous host's streams: the same transport rules as ``main``, SASL ANONYMOUS
        only, no registration and no stream features of the account features (no stream
        management: a guest's session dies with its connection)."""
        assert self.guests is not None
        return StreamConfig(
            domain=self.guests.domain, require_tls=main.require_tls, tls_available=main.tls_available,
            direct_tls=main.direct_tls, max_stanza_size=main.max_stanza_size, max_depth=main.max_depth,
            max_auth_attempts=main.max_auth_attempts, websocket=main.websocket, fake_key=main.fake_key,
            scram=False, plain=False, external_plain=False, oauthbearer=False, anonymous=True,
        )

    def _login_mechanisms(self) -> dict[str, bool]:
        """Which logins the streams offer (auth.authority.LoginAuthority; docs/auth.md)."""
        la = self.login_authority
        if la is None:
            return {}
        return {"scram": la.scram, "plain": la.plain, "external_plain": la.external_plain, "oauthbearer": la.oauthbearer}

    def connection_opened(self, session: Session) -> bool:
        """Admit a new connection (XEP-0205: connections per address)."""
        if self._stopping:
            session.close(StreamErrorCondition.SYSTEM_SHUTDOWN, "the server is shutting down")
            return False
        if not self.connections.acquire(session.peer):
            session.log.info("refused: too many connections from %s", session.peer)
            session.close(StreamErrorCondition.POLICY_VIOLATION, "too many connections from your address")
            return False
        session.data["_counted"] = True
        self.live.add(session)
        return True

    def connection_closed(self, session: Session) -> None:
        if session.data.pop("_counted", False):
            self.connections.release(session.peer)
        if self.guests is not None:
            self.guests.release(session)
        self.live.discard(session)

    def _extra_features(self, authenticated: bool) -> list[etree._Element]:
        out: list[etree._Element] = []
        for make in self._stream_features:
            out.extend(make(authenticated))
        return out

    def add_http_route(self, method: str, path: str, handler: Callable[[Any], Awaitable[Any]]) -> Callable[[], None]:
        """Serve ``method path`` (aiohttp route syntax) on ``listen.http`` with ``handler``.
        Routes are mounted when the listener starts (after every feature's setup); a removed
        route answers 404."""
        route = (method, path, handler)
        self.http_routes.append(route)

        def remove() -> None:
            if route in self.http_routes:
                self.http_routes.remove(route)

        return remove

    def http_base_url(self) -> str | None:
        """``http.public_url``'s origin, or the URL of ``listen.http`` on ``server.domain`` (its
        bound port); None when the listener is off."""
        from urllib.parse import urlsplit

        public = self.config.http.public_url
        if public:
            parts = urlsplit(public)
            return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
        port = self.ports.get("http")
        if port is None:
            return None
        return f"{'https' if self.config.http.tls else 'http'}://{self.domain}:{port}"

    def add_stream_feature(self, make: Callable[[bool], list[etree._Element]]) -> Callable[[], None]:
        """``make(authenticated)`` gives stream features to offer; it is called when the server
        builds its features (once, then again after ``refresh_stream_features``), not per stream."""
        self._stream_features.append(make)
        self.refresh_stream_features()

        def remove() -> None:
            self._stream_features.remove(make)
            self.refresh_stream_features()

        return remove

    def refresh_stream_features(self) -> None:
        """What a stream-feature maker returns has changed: rebuild for the next streams."""
        self._stream_configs.clear()

    def add_nonza_handler(self, namespace: str, handler: Callable[[Session, etree._Element], Awaitable[None]]) -> Callable[[], None]:
        if namespace in self._nonza_handlers:
            raise ValueError(f"two handlers for nonzas in {namespace}")
        self._nonza_handlers[namespace] = handler
        self.refresh_stream_features()

        def remove() -> None:
            self._nonza_handlers.pop(namespace, None)
            self.refresh_stream_features()

        return remove

    def add_preauth_iq_handler(self, qname: str, handler: Callable[[Session, etree._Element], Awaitable[None]]) -> Callable[[], None]:
        if qname in self._preauth_handlers:
            raise ValueError(f"two pre-auth handlers for {qname}")
        self._preauth_handlers[qname] = handler
        return lambda: self._preauth_handlers.pop(qname, None)  # type: ignore[func-returns-value]

    async def handle_nonza(self, session: Session, el: etree._Element) -> None:
        tag = el.tag
        nsuri = tag[1 : tag.find("}")] if isinstance(tag, str) and tag.startswith("{") else ""
        handler = self._nonza_handlers.get(nsuri)
        if handler is None:
            session.close(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"unsupported element {tag}")
            return
        await handler(session, el)

    async def handle_preauth_iq(self, session: Session, el: etree._Element) -> None:
        payload = el[0] if len(el) else None
        handler = self._preauth_handlers.get(payload.tag) if payload is not None else None
        if handler is None:
            reply = error_reply(el, StanzaError(Condition.SERVICE_UNAVAILABLE, "not available before authentication"))
            session.stream.send_element(reply)
            return
        await handler(session, el)

    # ---------------------------------------------------------------- helpers for features

    async def _remember_language(self, ev: SessionEvent) -> Flow:
        """An account's latest stream language, for texts it gets while offline (xmppd/i18n.py)."""
        if ev.session.jid is not None:
            self.languages.remember(ev.session.jid.bare, Languages.of_session(ev.session))
        return Flow.CONTINUE

    def is_admin(self, jid: JID) -> bool:
        return jid.bare in self.admins

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` began: sessions closing now are not users leaving."""
        return self._stopping

    async def send_iq(self, stanza: etree._Element, timeout: float) -> etree._Element:
        iq_id = stanza.get("id") or self.tracker.new_id()
        stanza.set("id", iq_id)
        stanza.set("from", stanza.get("from") or self.domain)
        fut = self.tracker.expect(iq_id, stanza.get("to") or self.domain)
        await self.router.send(stanza)
        return await asyncio.wait_for(fut, timeout)

    async def kick(self, jid: JID, condition: StreamErrorCondition, text: str, *, spare: Session | None = None) -> int:
        """End the sessions of ``jid`` (bare: all of them, but ``spare``) on every node of the
        cluster; returns how many."""
        targets = self.sessions.of(jid) if jid.resource is None else [s for s in [self.sessions.get(jid)] if s]
        targets = [s for s in targets if s is not spare]
        for s in targets:
            s.close(condition, text)
        elsewhere = asyncio.ensure_future(self.router.end_elsewhere(jid, condition, text))
        for s in targets:
            try:
                await asyncio.wait_for(s.closed_event.wait(), 5)
            except TimeoutError:
                pass
        return len(targets) + await elsewhere


_STOP_STEP_TIMEOUT = 15.0


async def _bounded(step: Awaitable[None], what: str) -> None:
    try:
        await asyncio.wait_for(step, _STOP_STEP_TIMEOUT)
    except TimeoutError:
        log.error("%s did not finish within %ss; going on with the shutdown", what, _STOP_STEP_TIMEOUT)
    except Exception:
        log.exception("%s failed", what)


def feature_migration_locations(classes: Iterable[type[Feature]]) -> list[str]:
    return [c.migrations for c in classes if c.migrations]
