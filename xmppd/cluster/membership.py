"""This node's membership: keep its registry entry alive, notice the others come and go.

One task. Every ``cluster.heartbeat`` seconds it renews this node's entry (TTL: ``node_timeout``
minus one heartbeat, so that a dead node's entry is gone, and noticed by the next look, within
``node_timeout``) and reads the registry: a node seen before whose entry is gone is down, and
``NODE_DOWN`` runs on the server's hook chains (the failover of its rooms and queues hangs there).

Redis unreachable: local service goes on untouched; the first failure is logged once, then the
loop retries with a doubling delay, at most a third of ``node_timeout``, and re-registers when
Redis answers again. Just after such a reconnection nobody is declared down until a whole
``node_timeout`` has passed, because a Redis that restarted empty lost every entry, and the
other nodes need that long (at most one retry delay) to put theirs back.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core import hooks as H
from ..core.hooks import HookChains, NodeEvent
from ..core.tasks import stop_tasks
from .connection import connect, describe, unreachable_errors
from .keys import Keys
from .registry import NodeRegistry

log = logging.getLogger(__name__)


class ClusterStartError(Exception):
    """This node cannot join: the reason, in one line (``xmppd: cannot start: ...``)."""


class NodeNameTaken(ClusterStartError):
    """Another live process holds this ``cluster.node``."""


class Membership:
    def __init__(
        self,
        *,
        url: str,
        name: str,
        prefix: str,
        heartbeat: float,
        node_timeout: float,
        hooks: HookChains,
        describe_node: Callable[[], dict[str, Any]],
    ) -> None:
        self.url = url
        self.name = name
        self.heartbeat = heartbeat
        self.node_timeout = node_timeout
        self.hooks = hooks
        self.describe_node = describe_node
        self.incarnation = secrets.token_hex(8)
        self.redis = connect(url, timeout=heartbeat)
        self.registry = NodeRegistry(self.redis, Keys(prefix))
        self.peers: dict[str, str] = {}  # live nodes seen, other than this one: name -> incarnation
        self.reachable = False
        self._started = time.time()
        self._grace_until = 0.0  # monotonic: declare nobody down before this
        self._failures = 0
        self._joined = False
        self._lost_at = 0.0
        self._task: asyncio.Task[None] | None = None
        # Run after every heartbeat, with whether Redis answered (the leases' renewal).
        self.after_beat: list[Callable[[bool], Awaitable[None]]] = []

    @property
    def ttl(self) -> float:
        return self.node_timeout - self.heartbeat

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Register now when Redis answers (refusing a name another process holds), then loop."""
        try:
            await self._beat()
        except NodeNameTaken:
            await self.redis.aclose()
            raise
        except unreachable_errors() as exc:
            self._lost(exc)
        except Exception as exc:  # Redis answered with an error (a wrong database, no scripting ...)
            await self.redis.aclose()
            raise ClusterStartError(f"cluster.redis_url {describe(self.url)} refused this node: {exc}") from None
        self._task = asyncio.create_task(self._run(), name=f"cluster membership {self.name}")

    async def stop(self) -> None:
        """Graceful: stop the loop and remove this node's entry, so the others know at once."""
        await stop_tasks(self._task)
        self._task = None
        try:
            if await self.registry.leave(self.name, self.incarnation, self.node_timeout):
                log.info("left the cluster: node %s removed from the registry", self.name)
        except unreachable_errors() as exc:
            log.warning("could not remove node %s from the registry (%s): its entry expires within %ss", self.name, exc, self.ttl)
        finally:
            await self.redis.aclose()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._delay())
            try:
                await self._beat()
            except unreachable_errors() as exc:
                self._lost(exc)
            except NodeNameTaken as exc:
                log.error("%s; retrying", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster heartbeat of node %s failed", self.name)
            for after in list(self.after_beat):
                try:
                    await after(self.reachable)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("a task after the heartbeat of node %s failed", self.name)

    def _delay(self) -> float:
        if not self._failures:
            return self.heartbeat
        return min(self.heartbeat * 2 ** (self._failures - 1), max(self.heartbeat, self.node_timeout / 3))

    def _lost(self, exc: BaseException) -> None:
        self._failures += 1
        if self.reachable or self._failures == 1:
            self._lost_at = time.monotonic()
            log.warning(
                "Redis at %s is unreachable (%s): node %s keeps serving its own users and retries",
                describe(self.url), exc or type(exc).__name__, self.name,
            )
        self.reachable = False

    async def _beat(self) -> None:
        fields = {"node": self.name, "pid": os.getpid(), "host": socket.gethostname(), "started": int(self._started * 1000)}
        fields.update(self.describe_node())
        status, holder = await self.registry.register(self.name, self.incarnation, self.ttl, fields)
        if status == "taken":
            raise NodeNameTaken(await self._taken_text(holder))
        if not self.reachable:
            if self._failures and self._joined:
                log.info(
                    "Redis at %s answers again after %.1f s: node %s %s",
                    describe(self.url), time.monotonic() - self._lost_at, self.name,
                    "re-registered (its entry was lost)" if status == "created" else "renewed its entry",
                )
                # The others may be re-registering after the same outage: give them node_timeout.
                self._grace_until = time.monotonic() + self.node_timeout
            else:
                log.info("joined the cluster on %s as node %s", describe(self.url), self.name)
            self._joined = True
            self.reachable = True
            self._failures = 0
        elif status == "created":
            log.warning("node %s re-registered: its entry had vanished (Redis restarted, flushed or failed over)", self.name)
            self._grace_until = time.monotonic() + self.node_timeout
        await self._look()

    async def _taken_text(self, holder: str) -> str:
        who = ""
        for info in await self.registry.nodes():
            if info.name == self.name and info.alive:
                age = info.age()
                who = f" by pid {info.fields.get('pid')} on {info.fields.get('host')}" + (f", last heartbeat {age:.1f} s ago" if age is not None else "")
        return (
            f"cluster.node {self.name!r} is in use{who}: give this node another cluster.node, "
            f"or wait up to {self.node_timeout:g} s (cluster.node_timeout) if that process has died"
        )

    async def _look(self) -> None:
        """Compare the registry with the peers seen before: joins, restarts and losses."""
        live = {info.name: info.incarnation or "" for info in await self.registry.nodes() if info.alive and info.name != self.name}
        for name, incarnation in live.items():
            known = self.peers.get(name)
            if known is None:
                log.info("node %s is up", name)
            elif known != incarnation:
                await self._down(name, known, restarted=True)
                log.info("node %s is up again", name)
            if known != incarnation:
                await self._run_hook(H.NODE_UP, NodeEvent(name, incarnation))
        grace = time.monotonic() < self._grace_until
        for name, incarnation in list(self.peers.items()):
            if name in live:
                continue
            if grace:
                live[name] = incarnation  # not yet: it may be re-registering after the outage
                continue
            await self._down(name, incarnation)
            await self.registry.forget(name)
        self.peers = live

    async def _down(self, name: str, incarnation: str, *, restarted: bool = False) -> None:
        graceful = not restarted and await self.registry.left_gracefully(name, incarnation)
        if graceful:
            log.info("node %s left the cluster", name)
        elif restarted:
            log.warning("node %s restarted: its previous process is down", name)
        else:
            log.warning("node %s is down: no heartbeat for %g s (cluster.node_timeout)", name, self.node_timeout)
        await self._run_hook(H.NODE_DOWN, NodeEvent(name, incarnation, graceful))

    async def _run_hook(self, hook: H.Hook[NodeEvent], event: NodeEvent) -> None:
        try:
            await self.hooks.run(hook, event)
        except Exception:
            log.exception("a %s handler failed for node %s", hook.name, event.node)
