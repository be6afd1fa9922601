"""RFC 7395 and XEP-0156 over HTTP: the aiohttp listener for XMPP over WebSocket and host-meta,
and the doors for the app's backend: the REST API (``/api/v1``, xmppd/api), ``/metrics`` and
``/health``.

``listen.http`` serves ``/xmpp-websocket`` (subprotocol ``xmpp``) and the XEP-0156 discovery
files ``/.well-known/host-meta`` (XRD) and ``/.well-known/host-meta.json``. ``[http]`` in the
configuration sets TLS (wss://), the reverse proxies whose ``X-Forwarded-*`` headers count,
the Origins allowed, WebSocket pings and the message size limit.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

from aiohttp import web

from ..errors import StreamErrorCondition
from .websocket import SUBPROTOCOL, WebSocketConnection

if TYPE_CHECKING:
    from ..app import Server

log = logging.getLogger(__name__)

WS_PATH = "/xmpp-websocket"
ALT_WEBSOCKET = "urn:xmpp:alt-connections:websocket"  # XEP-0156 link relation
XRD_NS = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?$")
# Headers a reverse proxy adds: a request carrying one came through a proxy, whatever its address.
_PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-IP")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_API_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class HttpFront:
    """What every request needs: who the client is, whether it used TLS, which Origins pass."""

    def __init__(self, server: "Server") -> None:
        self.server = server
        h = server.config.http
        self.tls = h.tls
        self.proxies: tuple[_Network, ...] = tuple(ipaddress.ip_network(p, strict=False) for p in h.trusted_proxies)
        self.any_origin = "*" in h.cors_origins
        self.origins = frozenset(o.rstrip("/").lower() for o in h.cors_origins if o != "*")
        self.max_message_size = h.max_message_size or server.config.c2s.max_stanza_size
        self.connections: set[WebSocketConnection] = set()
        self.metrics_allow: tuple[_Network, ...] = tuple(ipaddress.ip_network(p, strict=False) for p in server.config.metrics.allow)

    def _trusted(self, ip: str) -> bool:
        if not self.proxies:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.proxies)

    def client(self, request: web.BaseRequest) -> tuple[str, bool, bool]:
        """(client address, the client used TLS, the request came through a trusted proxy).

        ``X-Forwarded-For`` is read from the right, skipping trusted proxies: the first address
        that is not one of ours is the client (what earlier hops wrote could be forged).
        """
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        ip = peer[0] if isinstance(peer, tuple) else "local"
        if not self._trusted(ip):
            return ip, self.tls, False
        client = ip
        for hop in reversed([h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]):
            try:
                hop = str(ipaddress.ip_address(hop.strip("[]")))
            except ValueError:
                break  # a malformed entry: trust nothing beyond it
            client = hop
            if not self._trusted(hop):
                break
        proto = [p.strip().lower() for v in request.headers.getall("X-Forwarded-Proto", []) for p in v.split(",")]
        secure = self.tls or (bool(proto) and proto[-1] == "https")
        return client, secure, True

    def websocket_secure(self, request: web.BaseRequest) -> tuple[str, bool, str]:
        """(client address, whether this WebSocket counts as secure for ``c2s.require_tls``, why).

        Secure: TLS on this listener (``http.tls``); a trusted proxy that says the client used
        https; a client on this machine talking to it directly (loopback peer, no proxy
        headers, a loopback Host and Origin: nothing crosses a network, as browsers reason
        for http://localhost); or ``http.consider_websocket_secure``. A remote client on
        ws:// never is.
        """
        ip, tls, via_proxy = self.client(request)
        if tls:
            return ip, True, "https at a trusted proxy" if via_proxy and not self.tls else "TLS"
        why = self._not_local(request, ip, via_proxy)
        if why is None:
            return ip, True, "a client on this machine, directly"
        if self.server.config.http.consider_websocket_secure:
            return ip, True, "http.consider_websocket_secure"
        return ip, False, why

    @staticmethod
    def _not_local(request: web.BaseRequest, ip: str, via_proxy: bool) -> str | None:
        """Why this plain request is not a client on this machine talking to us directly."""
        if via_proxy:
            return "it came through a trusted proxy that did not say X-Forwarded-Proto: https"
        if not _is_loopback(ip):
            return "plain ws:// from another machine"
        proxied = [h for h in _PROXY_HEADERS if h in request.headers]
        if proxied:
            return f"it carries {proxied[0]} (a proxy not listed in http.trusted_proxies?)"
        host = request.headers.get("Host", "")
        if not _loopback_host(_host_of(host)):
            return f"its Host {host[:100]!r} is not 127.0.0.1, [::1] or localhost"
        origin = request.headers.get("Origin")
        if origin is not None and origin != "null" and not _loopback_host(_host_of(origin.partition("://")[2])):
            return f"its page's Origin {origin[:100]!r} is not on this machine"
        return None

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None or self.any_origin:
            return True
        return origin.rstrip("/").lower() in self.origins

    def cors_headers(self, request: web.BaseRequest) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if self.any_origin:
            return {"Access-Control-Allow-Origin": "*"}
        if origin is not None and self.origin_allowed(origin):
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {"Vary": "Origin"}

    def websocket_url(self, request: web.BaseRequest) -> str:
        public = self.server.config.http.public_url
        if public:
            return public
        _, secure, via_proxy = self.client(request)
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() if via_proxy else ""
        host = host or request.headers.get("Host", "")
        if not _HOST_RE.match(host):
            host = self.server.domain
        return f"{'wss' if secure else 'ws'}://{host}{WS_PATH}"

    # ------------------------------------------------------------------ handlers

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """RFC 7395 §3.1: the handshake needs the ``xmpp`` subprotocol; then one session."""
        if not self.origin_allowed(request.headers.get("Origin")):
            return web.Response(status=403, text="this Origin may not open XMPP WebSocket connections here\n")
        offered = [p.strip() for v in request.headers.getall("Sec-WebSocket-Protocol", []) for p in v.split(",")]
        if SUBPROTOCOL not in offered:
            return web.Response(status=400, text="the 'xmpp' WebSocket subprotocol is required (RFC 7395)\n")
        cfg = self.server.config.http
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            heartbeat=cfg.ws_ping_interval,
            timeout=cfg.ws_ping_timeout,  # how long a close waits for the client's close frame
            max_msg_size=2 * self.max_message_size,  # over this aiohttp refuses unread (1009)
            compress=False,  # no permessage-deflate: websocket.py frames its messages itself
        )
        # aiohttp waits heartbeat/2 for the pong; http.ws_ping_timeout says how long.
        if hasattr(ws, "_pong_heartbeat"):
            ws._pong_heartbeat = cfg.ws_ping_timeout
        ip, secure, why = self.websocket_secure(request)
        await ws.prepare(request)
        conn = WebSocketConnection(self.server, ws, request, ip, secure=secure, max_message_size=self.max_message_size)
        conn.security = why
        log.debug("WebSocket from %s is %s: %s", ip, "secure" if secure else "not secure", why)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
        return ws

    async def host_meta(self, request: web.Request) -> web.Response:
        """XEP-0156 §3: the WebSocket endpoint in an XRD document."""
        url = self.websocket_url(request)
        body = (
            "<?xml version='1.0' encoding='utf-8'?>\n"
            f"<XRD xmlns='{XRD_NS}'>\n"
            f"  <Link rel='{ALT_WEBSOCKET}' href={quoteattr(url)}/>\n"
            "</XRD>\n"
        )
        return web.Response(text=body, content_type="application/xrd+xml", headers=self.cors_headers(request))

    async def host_meta_json(self, request: web.Request) -> web.Response:
        """XEP-0156 §3: the same in JSON (RFC 6415 JRD)."""
        body = json.dumps({"links": [{"rel": ALT_WEBSOCKET, "href": self.websocket_url(request)}]})
        return web.Response(text=body, content_type="application/json", headers=self.cors_headers(request))

    # ------------------------------------------------------------------ doors for the backend

    async def api(self, request: web.Request) -> web.StreamResponse:
        """``/api/v1/...``: xmppd/api (tokens, validation, the resources' handlers)."""
        response = await self.server.api.handle(request)
        counts = self.server.metrics.api_requests
        key = (request.method if request.method in _API_METHODS else "other", response.status)
        counts[key] = counts.get(key, 0) + 1
        return response

    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI 3.1 document of the operations this server serves (no token needed)."""
        from ..api.openapi import document

        return web.json_response(document(self.server.api.operations()))

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format, for the addresses of ``metrics.allow`` only."""
        ip, _, _ = self.client(request)
        if not self._metrics_allowed(ip):
            return web.Response(status=403, text="this address may not read /metrics (metrics.allow)\n")
        from ..metrics import CONTENT_TYPE

        return web.Response(body=self.server.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    def _metrics_allowed(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.metrics_allow)

    async def health(self, request: web.Request) -> web.Response:
        """200 when this node serves and its storage answers a cheap query in time, else 503."""
        server = self.server
        timeout = server.config.metrics.health_timeout
        checks: dict[str, str] = {}
        ok = server.started.is_set() and not server.stopping
        checks["node"] = "serving" if ok else ("stopping" if server.stopping else "starting")
        try:
            await asyncio.wait_for(server.db.ping(), timeout)
            checks["storage"] = "ok"
        except TimeoutError:
            checks["storage"] = f"no answer within {timeout:g} s"
            ok = False
        except Exception as exc:  # any storage failure is the answer "not ready"
            checks["storage"] = f"failed: {type(exc).__name__}"
            ok = False
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return web.json_response(body, status=200 if ok else 503, headers={"Cache-Control": "no-store"})

    async def preflight(self, request: web.Request) -> web.Response:
        headers = self.cors_headers(request)
        headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
        return web.Response(status=204, headers=headers)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _host_of(authority: str) -> str:
    """The host of ``host[:port]`` or ``[v6]:port`` (an Origin's or a Host header's)."""
    authority = authority.strip().rstrip("/")
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else ""
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _loopback_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost") or _is_loopback(host)


def _ssl_context(server: "Server") -> ssl.SSLContext:
    from . import tls as tlsmod

    cfg = server.config
    if cfg.tls.cert:
        cert, key = Path(cfg.tls.cert), Path(cfg.tls.key)
    else:
        cert, key = tlsmod.ensure_certificate(cfg.data_dir, server.domain)
    return tlsmod.make_server_context(cert, key, alpn_protocols=("http/1.1",))


def _while_registered(server: "Server", route: tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A feature's route, answering 404 once the feature removed it (aiohttp cannot unmount)."""
    handler = route[2]

    async def serve(request: web.Request) -> web.StreamResponse:
        if route not in server.http_routes:
            raise web.HTTPNotFound()
        return await handler(request)

    return serve


async def start_http(server: "Server", host: str, port: int, *, reuse_port: bool = False) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Serve ``listen.http``; returns the bound port and the graceful stop."""
    front = HttpFront(server)
    app = web.Application(client_max_size=max(64 * 1024, server.config.api.max_body))
    app.router.add_get("/api/v1/openapi.json", front.openapi)
    app.router.add_route("*", "/api/v1/{tail:.*}", front.api)
    app.router.add_get("/metrics", front.metrics)
    app.router.add_get("/health", front.health)
    app.router.add_get(WS_PATH, front.websocket)
    app.router.add_get("/.well-known/host-meta", front.host_meta)
    app.router.add_get("/.well-known/host-meta.json", front.host_meta_json)
    app.router.add_route("OPTIONS", "/.well-known/host-meta", front.preflight)
    app.router.add_route("OPTIONS", "/.well-known/host-meta.json", front.preflight)
    for method, path, handler in list(server.http_routes):
        app.router.add_route(method, path, _while_registered(server, (method, path, handler)))
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(
        runner, host, port, ssl_context=_ssl_context(server) if front.tls else None, backlog=511, reuse_address=True,
        reuse_port=reuse_port or None,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]

    async def stop() -> None:
        """Close every WebSocket session with system-shutdown and <close/>, then the listener."""
        conns = list(front.connections)
        for conn in conns:
            if conn.session is not None:
                conn.session.close(StreamErrorCondition.SYSTEM_SHUTDOWN, "the server is shutting down")
        waits = [asyncio.ensure_future(c.session.closed_event.wait()) for c in conns if c.session is not None]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=10)
            for w in pending:
                w.cancel()
        await runner.cleanup()

    return bound, stop
