"""XEP-0114: Jabber Component Protocol — external components (gateways, bots, a push app server)
attach to the server on ``[component] listen`` and serve a domain of their own.

``[[component.components]]`` names each domain and its shared secret. Once a component has
shaken hands (``xmppd/protocol/component.py``), its domain is a service of the router like the
MUC: every stanza addressed to the domain or a JID at it goes to the component, and what the
component sends enters the router as the server's own stanzas do (``Router.send``), after the
check that its ``from`` is at the component's domain. A second connection for a domain that is
already attached is refused with ``conflict`` (the first keeps serving, as in Prosody).

In a cluster (docs/cluster.md §5) a component attaches to one node and serves its domain for
every node: the node it attached to takes the lease ``comp:<domain>`` (renewed with the node's
heartbeat, released when the component leaves; a second component for the domain on another
node is closed with ``conflict``), and every other node forwards the stanzas for the domain to
the lease holder's bus (envelope tag ``comp``), where the component gets them. A domain whose
component is connected nowhere answers ``remote-server-not-found``, as on one node.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from ...config import AtLeast, AtMost, Positive, parse_hostport
from ...core.feature import Feature
from ...core.hooks import Routed
from ...errors import Condition, StanzaError, StreamErrorCondition
from ...jid import JID, JIDError
from ...transport.component import ComponentConnection

_C = StreamErrorCondition
KIND = "comp"  # the lease of an attached component's domain, cluster-wide
TAG = "comp"  # stanzas other nodes forward to the node holding the component
MAX_HOPS = 3


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
        self._cluster: Any = None  # the ClusterPort, in a cluster
        self._doors: dict[str, Callable[[], None]] = {}  # domain -> remover of its forwarding service
        # In a cluster: domain -> the node its component is attached to, as its lease said; kept
        # until that node is no longer live or a node publishes that the lease changed (the
        # ``component`` invalidation, after every acquisition and release), so that forwarding
        # costs no Redis read per stanza. ``_gen``: a read racing with an invalidation keeps nothing.
        self._holders: dict[str, str] = {}
        self._gen = 0
        self._inval = self.ctx.invalidation("component", self._holder_changed, self._holders_flush)
        self.secrets = {c.domain: c.secret for c in self.options.components}
        addr = parse_hostport(self.options.listen, "component.listen")
        if addr is None or not self.options.components:
            return
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
        door = self._doors.pop(domain, None)
        if door is not None:
            door()
        try:
            conn.detach = self.ctx.router.add_service(domain, conn)
        except ValueError:
            return f"{domain} is already served by this server"
        self.attached[domain] = conn
        self.log.info("component %s attached from %s", domain, conn.peer)
        if self._cluster is not None:
            self.ctx.spawn(self._take(domain, conn), name=f"component-lease {domain}")
        return None

    def detached(self, conn: "ComponentConnection") -> None:
        self._connections.discard(conn)
        domain = conn.stream.domain
        if domain is not None and self.attached.get(domain) is conn:
            del self.attached[domain]
            conn.detach()
            self.log.info("component %s detached (%s)", domain, conn.reason or "closed")
            if self._cluster is not None:
                self._open_door(domain)
                self.ctx.spawn(self._release(self._cluster, domain), name=f"component-release {domain}")

    # -- in a cluster (docs/cluster.md §5)
    async def join_cluster(self, port: Any) -> Callable[[], Awaitable[None]]:
        """Serve every configured component domain on this node: through the component when it
        is attached here, else by forwarding to the node that holds it."""
        self._cluster = port
        removers = [port.serve(TAG, self._from_bus), port.leases.on_lost(KIND, self._lost)]
        for domain in self.secrets:
            if domain not in self.attached:
                self._open_door(domain)
        for domain, conn in list(self.attached.items()):
            self.ctx.spawn(self._take(domain, conn), name=f"component-lease {domain}")

        async def leave() -> None:
            for remove in removers:
                remove()
            for domain in list(self._doors):
                self._doors.pop(domain)()
            for domain in list(self.attached):
                await self._release(port, domain)
            self._cluster = None
            self._holders_flush()

        return leave

    def _open_door(self, domain: str) -> None:
        if domain in self._doors:
            return
        try:
            self._doors[domain] = self.ctx.router.add_service(domain, _Door(self))
        except ValueError:
            self.log.warning("component domain %s is served by another feature here: not forwarded to other nodes", domain)

    async def _take(self, domain: str, conn: ComponentConnection) -> None:
        """Hold the domain's lease for ``conn``; another node's component has it: ``conflict``."""
        port = self._cluster
        if port is None or self.attached.get(domain) is not conn:
            return
        try:
            lease = await port.leases.acquire(KIND, domain)
        except Exception as exc:  # Redis unreachable: served here; taken when the lease is lost/renewed
            self.log.warning("component %s: its domain could not be published to the cluster (%s)", domain, exc)
            return
        if lease is not None and lease.node == port.name:
            self._inval.publish(domain)  # the other nodes forget where it was
        if lease is not None and lease.node != port.name and self.attached.get(domain) is conn:
            conn.close(_C.CONFLICT, f"a component for {domain} is connected to another node ({lease.node})")

    async def _release(self, port: Any, domain: str) -> None:
        await port.leases.release(KIND, domain)
        self._inval.publish(domain)

    def _holder_changed(self, domain: str) -> None:
        self._gen += 1
        self._holders.pop(domain, None)

    def _holders_flush(self) -> None:
        self._gen += 1
        self._holders.clear()

    async def _holder(self, port: Any, domain: str) -> str | None:
        """The live node the component of ``domain`` is attached to (remembered; see setup)."""
        node = self._holders.get(domain)
        if node is not None:
            if port.is_live(node):
                return node
            self._holders.pop(domain, None)
        gen = self._gen
        lease = await port.leases.owner(KIND, domain)
        if lease is None or lease.node == port.name or not port.is_live(lease.node):
            return None
        if gen == self._gen:
            self._holders[domain] = lease.node
        return lease.node

    async def _lost(self, domain: str, token: int) -> None:
        conn = self.attached.get(domain)
        if conn is not None:  # Redis restarted empty, or a split: publish it again
            await self._take(domain, conn)

    async def to_component(self, r: Routed, hops: int = 0) -> None:
        """A stanza for a component's domain: to the component here, or to the node holding it."""
        to = r.to
        assert to is not None
        conn = self.attached.get(to.domain)
        if conn is not None:
            await conn.receive(r)
            return
        port = self._cluster
        node = None
        if port is not None and hops < MAX_HOPS:
            try:
                node = await self._holder(port, to.domain)
            except Exception as exc:
                self.log.warning("component %s: the cluster cannot be asked where it is (%s)", to.domain, exc)
        if node is None:
            self._unavailable(r)
            return
        port.forward(node, TAG, r, hops, self._not_taken)

    async def _from_bus(self, r: Routed, hops: int, origin: str) -> None:
        await self.to_component(r, hops)

    async def _not_taken(self, r: Routed) -> None:
        if r.to is not None:
            self._holder_changed(r.to.domain)  # that node is gone (or Redis failed): ask again next time
        self._unavailable(r)

    def _unavailable(self, r: Routed) -> None:
        domain = r.to.domain if r.to is not None else ""
        self.ctx.router.bounce(r, StanzaError(Condition.REMOTE_SERVER_NOT_FOUND, f"the component {domain} is not connected"))


class _Door:
    """The router's service for a component domain attached to no connection on this node."""

    def __init__(self, feature: Components) -> None:
        self.feature = feature

    async def receive(self, routed: Routed) -> None:
        await self.feature.to_component(routed)
