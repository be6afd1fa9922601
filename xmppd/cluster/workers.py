"""``server.workers = N``: the ``xmppd`` command as a supervisor of N worker processes.

Each worker is a whole xmppd node (``python -m xmppd.cli ... --worker``) named
``<cluster.node>-<i>``; they bind the same listeners with SO_REUSEPORT, so the kernel spreads the
incoming connections over them, and they find each other through ``cluster.redis_url``. The
supervisor serves nothing itself. It restarts a worker that exits on its own (after a doubling
delay, reset once the worker has run for a while), never one that refused its configuration
(exit 2: restarting cannot help), forwards SIGTERM/SIGINT to the workers, and exits 0 when every
worker stopped cleanly on that signal, 1 otherwise.

What the workers would otherwise race for is done here, once, before they start: the embedded
database's schema upgrade (when storage.auto_upgrade applies) and the self-signed certificate.

A listener on port 0 gets its port chosen here, once, by binding (not listening) a reserved
SO_REUSEPORT socket, kept until the end, so that every worker, and every restart, shares it.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from ..config import Config, parse_hostport
from ..core.feature import Feature
from .node import default_node_name

log = logging.getLogger("xmppd.workers")

EXIT_CONFIG = 2
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 30.0  # a worker that ran this long restarts with the first delay again
STOP_TIMEOUT = 30.0  # then SIGKILL


@dataclass
class _Worker:
    index: int
    name: str
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY
    history: list[int] = field(default_factory=list)


def _die_with_supervisor() -> None:
    """In the worker, before exec: SIGTERM when the supervisor dies, even by SIGKILL (Linux), so
    that no orphaned worker keeps serving, unsupervised, on the shared port."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _reserve(host: str) -> tuple[socket.socket, int]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock, sock.getsockname()[1]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def prepare(cfg: Config, classes: dict[str, type[Feature]]) -> None:
    """What every worker would do at start and must not do at the same time as its siblings."""
    from ..app import feature_migration_locations
    from ..storage import migrations
    from ..storage.engine import Database
    from ..transport import tls

    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.tls.cert:
        tls.ensure_certificate(cfg.data_dir, cfg.server.domain)
    auto = cfg.storage.auto_upgrade
    if auto is None:
        auto = cfg.is_embedded_storage
    if auto:
        db = Database.from_url(cfg.storage_url)
        try:
            applied = await migrations.upgrade(db, feature_migration_locations(classes.values()))
            if applied:
                log.info("applied %d schema migrations before starting the workers", len(applied))
        finally:
            await db.dispose()


class Supervisor:
    def __init__(self, cfg: Config, argv: list[str], count: int) -> None:
        self.cfg = cfg
        self.argv = argv
        self.count = count
        self.reserved: list[socket.socket] = []
        self.listen_overrides: list[str] = []
        self.stopping = False
        self.workers: list[_Worker] = []

    def _resolve_listeners(self) -> int | None:
        first: int | None = None
        for key in ("c2s", "c2s_tls", "http"):
            addr = parse_hostport(getattr(self.cfg.listen, key), f"listen.{key}")
            if addr is None:
                continue
            host, port = addr
            if port == 0:
                sock, port = _reserve(host)
                self.reserved.append(sock)
                self.listen_overrides += ["--set", f"listen.{key}={_hostport(host, port)}"]
            first = first or port
        return first

    def _command(self, w: _Worker) -> list[str]:
        return [
            sys.executable, "-m", "xmppd.cli", *self.argv, *self.listen_overrides,
            "--set", f"cluster.node={w.name}", "--worker",
        ]

    async def _spawn(self, w: _Worker) -> None:
        preexec = _die_with_supervisor if sys.platform.startswith("linux") else None
        w.proc = await asyncio.create_subprocess_exec(*self._command(w), preexec_fn=preexec)
        w.started = time.monotonic()
        log.info("worker %d (node %s) started: pid %d", w.index, w.name, w.proc.pid)

    async def _watch(self, w: _Worker) -> int:
        """Keep worker ``w`` running until the stop; its last exit code."""
        while True:
            assert w.proc is not None
            code = await w.proc.wait()
            w.history.append(code)
            if self.stopping:
                return code
            if code == EXIT_CONFIG:
                log.error("worker %d (pid %d) refused the configuration (exit 2): stopping all workers", w.index, w.proc.pid)
                return code
            if time.monotonic() - w.started >= STABLE_AFTER:
                w.delay = RESTART_DELAY
            log.error("worker %d (pid %d) exited with code %d; restarting it in %.0f s", w.index, w.proc.pid, code, w.delay)
            try:
                await asyncio.wait_for(self._stop_event.wait(), w.delay)
                return code  # the stop came while waiting
            except TimeoutError:
                pass
            w.delay = min(w.delay * 2, RESTART_DELAY_MAX)
            await self._spawn(w)

    async def run(self) -> int:
        self._stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_event.set)
        port = self._resolve_listeners()
        base = self.cfg.cluster.node or default_node_name(port)
        self.workers = [_Worker(i, f"{base}-{i}") for i in range(1, self.count + 1)]
        log.info("xmppd supervising %d worker processes (server.workers = %d)", self.count, self.cfg.server.workers)
        try:
            for w in self.workers:
                await self._spawn(w)
            watchers = [asyncio.create_task(self._watch(w)) for w in self.workers]
            stop = asyncio.create_task(self._stop_event.wait())
            done, _ = await asyncio.wait([stop, *watchers], return_when=asyncio.FIRST_COMPLETED)
            config_refused = any(t is not stop and t.result() == EXIT_CONFIG for t in done)
            if stop in done:
                log.info("signal received: stopping %d workers", self.count)
            self.stopping = True
            self._stop_event.set()
            await self._terminate()
            codes = await asyncio.gather(*watchers)
            if config_refused:
                return EXIT_CONFIG
            if stop not in done:
                return 1
            clean = all(c == 0 for c in codes)
            log.info("all workers stopped%s", "" if clean else f" (exit codes {codes})")
            return 0 if clean else 1
        finally:
            for sock in self.reserved:
                sock.close()

    async def _terminate(self) -> None:
        live = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for p in live:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        if not live:
            return
        _, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in live], timeout=STOP_TIMEOUT)
        if pending:
            log.error("%d workers did not stop within %.0f s: killing them", len(pending), STOP_TIMEOUT)
            for p in live:
                if p.returncode is None:
                    p.kill()
            await asyncio.wait(pending)


async def supervise(cfg: Config, classes: dict[str, type[Feature]], argv: list[str], count: int) -> int:
    try:
        await prepare(cfg, classes)
    except Exception as exc:
        log.error("cannot start the workers: %s", exc)
        return 1
    return await Supervisor(cfg, argv, count).run()
