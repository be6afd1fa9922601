"""Real ``xmppd`` processes for the cluster tests: started by the console script on free ports,
their stderr collected so that a test can wait for a log line."""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..helpers import free_port

BIN = Path(sys.executable).parent
SHARED_REDIS = os.environ.get("XMPPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")  # scripts/check_services.py
# Fast heartbeats so that the tests take seconds: a dead node is known within 2 s.
# node_timeout 4 s: short for tests, yet with margin for a loaded machine that stalls a process for
# a second or two (a spurious "down" would fail the tests that count NODE_DOWN events).
FAST = ("--set", "cluster.heartbeat=0.5", "--set", "cluster.node_timeout=4")
# Seconds a node may take to start (an interpreter, the imports, the schema) on a machine busy
# with other work: a bound against a hang, not a measure.
STARTUP = 60.0


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def cluster_args(redis_url: str, prefix: str) -> list[str]:
    return ["--set", f"cluster.redis_url={redis_url}", "--set", f"cluster.prefix={prefix}", *FAST]


class Proc:
    """An ``xmppd`` process; ``log`` is everything it wrote to stderr so far."""

    def __init__(self, proc: asyncio.subprocess.Process, data_dir: Path, port: int) -> None:
        self.proc = proc
        self.data_dir = data_dir
        self.port = port
        self.log = ""
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log += line.decode(errors="replace")
            self._changed.set()

    async def wait_log(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """The first match of ``pattern`` in the log, waiting for it to appear."""
        async def go() -> re.Match[str]:
            while True:
                m = re.search(pattern, self.log)
                if m:
                    return m
                if self._reader.done():
                    raise AssertionError(f"xmppd exited ({self.proc.returncode}) before logging {pattern!r}:\n{self.log}")
                self._changed.clear()
                await self._changed.wait()
        try:
            return await asyncio.wait_for(go(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} in the log within {timeout} s:\n{self.log}") from None

    async def wait(self, timeout: float = 30) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._reader
        return code

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()  # a supervisor's workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
            await self.proc.wait()
        try:
            await asyncio.wait_for(self._reader, 30)  # EOF once every process holding stderr is gone
        except TimeoutError:
            raise AssertionError(f"processes of xmppd {self.pid} still hold its stderr 30 s after it ended:\n{self.log}") from None

    def as_server(self) -> Any:
        """What tests/helpers.slix needs of a server: its port and its certificate."""
        return SimpleNamespace(domain="localhost", ports={"c2s": self.port}, config=SimpleNamespace(data_dir=self.data_dir))


async def start_xmppd(data_dir: Path, *args: str, port: int | None = None) -> Proc:
    port = port or free_port()
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "xmppd"),
        "--set", f"server.data_dir={data_dir}",
        "--set", f"listen.c2s=127.0.0.1:{port}",
        "--set", "listen.c2s_tls=",
        "--set", "listen.http=",
        "--set", "c2s.auth_failures_per_ip=1000",
        *args,
        stderr=asyncio.subprocess.PIPE,
        cwd=data_dir.parent,
    )
    return Proc(proc, data_dir, port)


def xmppctl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "xmppctl"), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def status_rows(out: str) -> dict[str, dict[str, str]]:
    """``xmppctl cluster status`` as {node: {column: value}}."""
    lines = out.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("NODE"))
    header = lines[header_at]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = {}
    for line in lines[header_at + 1:]:
        if line.startswith("("):
            continue
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def redis_client(url: str = SHARED_REDIS) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True)


def shared_storage(tmp: Path) -> list[str]:
    """The nodes' one SQLite file (several processes: the database serialises them)."""
    return ["--set", f"storage.url=sqlite+aiosqlite:///{(tmp / 'shared.db').as_posix()}", "--set", "storage.auto_upgrade=true"]


async def ctl_in_process(storage: list[str], tmp: Path, commands: Iterable[list[str]]) -> None:
    """``xmppctl`` commands run in this process (one thread, one after the other): the same code
    as the command line without an interpreter's start per command, which costs seconds on a
    loaded machine, for each account of each cluster test."""
    from xmppd.cli import xmppctl_main

    base = [*storage, "--set", f"server.data_dir={tmp / 'ctl'}"]

    def go() -> None:
        for command in commands:
            code = xmppctl_main([*base, *command])
            assert code == 0, f"xmppctl {' '.join(command)}: exit {code}"

    await asyncio.to_thread(go)


async def add_users(storage: list[str], tmp: Path, users: Iterable[str], password: str) -> None:
    """Accounts ``<user>@localhost`` with ``password``."""
    await ctl_in_process(storage, tmp, [["user", "add", f"{u}@localhost", "--password", password] for u in users])


class Two:
    """Nodes alpha and beta (and more through ``start``) of one cluster: one SQLite file, the
    Redis at ``redis_url`` under ``prefix``; ``args`` are every node's settings."""

    def __init__(self, tmp: Path, prefix: str, redis_url: str = SHARED_REDIS) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.redis_url = redis_url
        self.storage = shared_storage(tmp)
        self.args = [*cluster_args(redis_url, prefix), *self.storage]
        self.nodes: dict[str, Proc] = {}
        self.users: list[str] = ["alice", "bob"]  # accounts made before the nodes start
        self.ctl: list[list[str]] = []  # more xmppctl commands run then (a wallet's top-up ...)
        self.node_args: dict[str, list[str]] = {}  # a node's own settings, after the shared ones
        self.api = False  # each node also serves the REST API (listen.http, the test tokens) ...
        self.http: dict[str, int] = {}  # ... on this port
        self.startup = STARTUP  # seconds a node may take to join

    async def start(self, name: str) -> Proc:
        api: list[str] = []
        if self.api:
            from ..api.support import TOKENS

            port = self.http[name] = free_port()
            api = ["--set", f"listen.http=127.0.0.1:{port}", "--set", TOKENS]
        proc = await start_xmppd(self.tmp / name, *self.args, *self.node_args.get(name, ()), "--set", f"cluster.node={name}", *api)
        self.nodes[name] = proc
        await proc.wait_log("joined the cluster", timeout=self.startup)
        return proc

    async def call(self, node: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        """One REST API request to ``node`` as the admin (``api`` on): (status, JSON or None)."""
        from ..api.support import call_once

        return await call_once(self.http[node], method, path, **kw)

    async def login(self, node: str, jid: str, *, available: bool = True, plugins: tuple[str, ...] = ()) -> Any:
        from ..helpers import slix

        client = await slix(self.nodes[node].as_server(), jid, plugins=plugins)
        if available:
            client.send_presence()
            await self.wait_entry(client.boundjid.bare, client.boundjid.resource, f"{node}|", available=True)
        return client

    async def wait_entry(self, bare: str, resource: str, start: str | None, *, available: bool = False,
                         priority: int | None = None, timeout: float = 15) -> None:
        """Until the registry says ``bare/resource`` is on that node (``start`` None: nowhere),
        available and with that priority when asked."""
        r = redis_client(self.redis_url)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    value = r.hget(f"{self.prefix}:sess:{bare}", resource)
                    if start is None and value is None:
                        return
                    if start is not None and value is not None and value.startswith(start) and (not available or value.endswith("|1")) \
                            and (priority is None or value.split("|")[2] == str(priority)):
                        return
                    await asyncio.sleep(0.05)
        finally:
            r.close()


@contextlib.asynccontextmanager
async def two_nodes(t: Two) -> AsyncIterator[Two]:
    """``t.users`` and ``t.ctl`` made, alpha and beta started and seeing each other; every node
    (also those a test started) stopped after, and none may have logged a traceback."""
    from ..helpers import PASSWORD

    await add_users(t.storage, t.tmp, t.users, PASSWORD)
    if t.ctl:
        await ctl_in_process(t.storage, t.tmp, t.ctl)
    try:
        await t.start("alpha")
        await t.start("beta")
        await t.nodes["alpha"].wait_log("node beta is up")
        yield t
    finally:
        for proc in t.nodes.values():
            await proc.close()
    for proc in t.nodes.values():
        assert "Traceback" not in proc.log, proc.log
