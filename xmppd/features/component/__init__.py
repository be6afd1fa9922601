"""XEP-0114: Jabber Component Protocol — external components (gateways, bots, a push app server)
attach to the server on ``[component] listen`` and serve a domain of their own.

``[[component.components]]`` names each domain and its shared secret. Once a component has
shaken hands (``xmppd/protocol/component.py``), its domain is a service of the router like the
MUC: every stanza addressed to the domain or a JID at it goes to the component, and what the
component sends enters the router as the server's own stanzas do (``Router.send``), after the
check that its ``from`` is at the component's domain. A second connection for a domain that is
already attached is refused with ``conflict`` (the first keeps serving, as in Prosody).

In a cluster a component attaches to one node and its domain is served there; connect one per
node (or route through the node it attached to) until the domain is published cluster-wide.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from ...config import AtLeast, AtMost, Positive, parse_hostport
from ...core.feature import Feature
from ...errors import StreamErrorCondition
from ...jid import JID, JIDError
from ...transport.component import ComponentConnection

_C = StreamErrorCondition


@dataclass(frozen=True, slots=True)
class ComponentOptions:
    domain: str = ""  # the domain the component serves (e.g. "push.example.com")
    secret: str = ""  # the shared secret of its handshake

    def __post_init__(self) -> None:
        try:
            d = JID.parse(self.domain)
        except JIDError as exc:
            raise ValueError(f"a component's domain {self.domain!r} is not a domain: {exc}") from None
        if not d.is_domain:
            raise ValueError(f"a component's domain {self.domain!r} must be a bare domain")
        if len(self.secret) < 16:
            raise ValueError(f"the secret of component {self.domain} must have at least 16 characters")


@dataclass(frozen=True, slots=True)
class ComponentsOptions:
    # Where components connect (XEP-0114), e.g. "127.0.0.1:5347"; "" (the default): nowhere.
    # Components are trusted with their domains: keep the address off the public network.
    listen: str = ""
    # [[component.components]] tables: { domain = "…", secret = "…" (16 characters or more) }.
    components: list[ComponentOptions] = field(default_factory=list)
    # Largest stanza a component may send, bytes (gateways relay whole messages).
    max_stanza_size: Annotated[int, AtLeast(4096), AtMost(16 * 1024 * 1024)] = 1048576
    # Seconds a connection may take to open its stream and shake hands.
    handshake_timeout: Positive = 30.0
    # Stanzas read from one component and not yet routed before its reading pauses.
    max_pending: Annotated[int, AtLeast(1), AtMost(100000)] = 1000

    def __post_init__(self) -> None:
        parse_hostport(self.listen, "component.listen")
        seen = set()
        for c in self.components:
            if c.domain in seen:
                raise ValueError(f"component.components: {c.domain} is listed twice")
            seen.add(c.domain)


class Components(Feature):
    name = "component"
    implements = ("XEP-0114",)
    Options = ComponentsOptions

    async def setup(self) -> None:
        self.port: int | None = None
        self.attached: dict[str, ComponentConnection] = {}
        self._connections: set[ComponentConnection] = set()
        self._server: asyncio.AbstractServer | None = None
        addr = parse_hostport(self.options.listen, "component.listen")
        if addr is None or not self.options.components:
            return
        self.secrets = {c.domain: c.secret for c in self.options.components}
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ComponentConnection(self, self.secrets, self.options.max_stanza_size), addr[0], addr[1], reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self.log.info("listening for components (%s) on %s:%d", ", ".join(sorted(self.secrets)), addr[0], self.port)

    async def teardown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close(_C.SYSTEM_SHUTDOWN, "the server is shutting down")
        if self._server is not None:
            await self._server.wait_closed()

    # -- called by the connections (xmppd/transport/component.py)
    @property
    def handshake_timeout(self) -> float:
        return self.options.handshake_timeout

    @property
    def max_pending(self) -> int:
        return self.options.max_pending

    def opened(self, conn: ComponentConnection) -> None:
        self._connections.add(conn)

    def attach(self, domain: str, conn: "ComponentConnection") -> str | None:
        """Serve ``domain`` through ``conn``; the reason when it cannot."""
        if domain in self.attached:
            return f"a component for {domain} is already connected"
        try:
            conn.detach = self.ctx.router.add_service(domain, conn)
        except ValueError:
            return f"{domain} is already served by this server"
        self.attached[domain] = conn
        self.log.info("component %s attached from %s", domain, conn.peer)
        return None

    def detached(self, conn: "ComponentConnection") -> None:
        self._connections.discard(conn)
        domain = conn.stream.domain
        if domain is not None and self.attached.get(domain) is conn:
            del self.attached[domain]
            conn.detach()
            self.log.info("component %s detached (%s)", domain, conn.reason or "closed")
