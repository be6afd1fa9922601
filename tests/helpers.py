"""Shared test helpers: a real server on free ports, and real clients (slixmpp, aioxmpp, raw)."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from xmppd.app import Server
from xmppd.config import Config, build
from xmppd.core.feature import Clock
from xmppd.core.loader import discover

PASSWORD = "correct horse battery"
CONF = Path(__file__).resolve().parent.parent / "conf" / "xmppd.toml"


_PORT_BLOCK = 1500
_port_turn = itertools.count()


def _port_block() -> int:
    """First port of this test process's block: below the kernel's ephemeral range (where
    neither ``bind(port 0)`` nor an outgoing connection takes a port), one block per
    pytest-xdist worker (``PYTEST_XDIST_WORKER`` = gw0, gw1, ...)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    index = int(worker) % 8 if worker.isdigit() else 0
    return max(1024, low - 8 * _PORT_BLOCK) + index * _PORT_BLOCK


def free_port() -> int:
    """A free loopback TCP port for a server that binds it later (another process, a listener
    made after its address is written into a configuration). Taken in turn from this worker's
    block, never from the kernel's ephemeral range: asking the kernel for port 0 and binding it
    later races with every other test process's port-0 requests and client connections (under
    4 workers a cluster node once found its port taken)."""
    start = _port_block()
    for _ in range(_PORT_BLOCK):
        port = start + next(_port_turn) % _PORT_BLOCK
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {start}-{start + _PORT_BLOCK - 1}")


def start_xmppd(data_dir: Path, *sets: str) -> tuple[subprocess.Popen[bytes], int]:
    """The ``xmppd`` command as a process of its own (for tests that kill or measure it): the
    repository's configuration, plaintext c2s on a free port, no TLS or HTTP listener, then each
    of ``sets`` as ``--set``. Returns the process and its c2s port once it listens; its stderr
    keeps being drained so that it never blocks on a full pipe. Call from a running event loop."""
    args = [str(Path(sys.executable).parent / "xmppd"), "--config", str(CONF), "--set", f"server.data_dir={data_dir.as_posix()}",
            "--set", "listen.c2s=127.0.0.1:0", "--set", "listen.c2s_tls=", "--set", "listen.http=",
            "--set", "c2s.require_tls=false"]
    for option in sets:
        args += ["--set", option]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=data_dir)
    assert proc.stderr is not None
    lines = []
    while True:
        line = proc.stderr.readline().decode()
        lines.append(line)
        if not line:
            raise RuntimeError("xmppd exited: " + "".join(lines[-20:]))
        m = re.search(r"listening for c2s on 127\.0\.0\.1:(\d+)", line)
        if m:
            asyncio.get_running_loop().run_in_executor(None, proc.stderr.read)
            return proc, int(m.group(1))


def make_config(data_dir: Path, *overrides: str, domain: str = "localhost") -> Config:
    classes = discover()
    base = [
        f"server.domain={domain}",
        f"server.data_dir={data_dir.as_posix()}",
        "listen.c2s=127.0.0.1:0",
        "listen.c2s_tls=127.0.0.1:0",
        "listen.http=",
        "c2s.auth_failures_per_ip=1000",
    ]
    return build({}, {n: c.Options for n, c in classes.items()}, [*base, *overrides], source="<test>")


class FakeClock(Clock):
    """Wall time that moves only when a test says so."""

    def __init__(self) -> None:
        self.t = time.time()

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@contextlib.asynccontextmanager
async def running_server(data_dir: Path, *overrides: str, **kw: Any) -> AsyncIterator[Server]:
    server = Server(make_config(data_dir, *overrides, **kw))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def add_user(server: Server, username: str, password: str = PASSWORD) -> str:
    await server.account_service.create(username, password)
    return f"{username}@{server.domain}"


def cert_path(server: Server) -> Path:
    """The self-signed certificate the server generated on first start."""
    return server.config.data_dir / f"{server.domain}.crt"


def client_ssl_context(server: Server) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert_path(server)))
    ctx.check_hostname = True
    return ctx


# ---------------------------------------------------------------------------------- slixmpp


async def slix(server: Server, jid: str, password: str = PASSWORD, *, mode: str = "starttls", plugins: tuple[str, ...] = (), mech: str | None = None, timeout: float = 10, lang: str = "en") -> Any:
    """A logged-in slixmpp client (session started), or raise with the reason."""
    import slixmpp

    kwargs = {"sasl_mech": mech} if mech else {}
    client = slixmpp.ClientXMPP(jid, password, lang=lang, **kwargs)  # lang: the stream's xml:lang
    client.ssl_context = client_ssl_context(server)
    client.enable_direct_tls = mode == "direct"
    client.enable_starttls = mode == "starttls"
    client.enable_plaintext = mode == "plain"
    for p in plugins:
        client.register_plugin(p)
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ok(_event: Any) -> None:
        if not started.done():
            started.set_result(None)

    def fail(event: Any) -> None:
        if not started.done():
            started.set_exception(ConnectionError(f"login failed: {event}"))

    client.add_event_handler("session_start", ok)
    client.add_event_handler("failed_all_auth", fail)
    client.add_event_handler("stream_error", fail)
    port = server.ports["c2s_tls" if mode == "direct" else "c2s"]
    client.connect("127.0.0.1", port)
    try:
        await asyncio.wait_for(started, timeout)
    except BaseException:
        client.disconnect(wait=False)
        client.abort()
        raise
    return client


async def slix_guest(server: Server, domain: str, *, timeout: float = 10) -> Any:
    """A slixmpp client logged in with SASL ANONYMOUS on the anonymous host ``domain`` (after
    STARTTLS), session started. The certificate's chain is checked, not its name: the generated
    one names *.localhost, which TLS refuses to match under a one-label domain."""
    import slixmpp

    client = slixmpp.ClientXMPP(domain, "", sasl_mech="ANONYMOUS")
    ctx = ssl.create_default_context(cafile=str(cert_path(server)))
    ctx.check_hostname = False
    client.ssl_context = ctx
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done(event: Any, error: bool = False) -> None:
        if not started.done():
            if error:
                started.set_exception(ConnectionError(f"anonymous login failed: {event}"))
            else:
                started.set_result(None)

    client.add_event_handler("session_start", done)
    client.add_event_handler("failed_all_auth", lambda e: done(e, True))
    client.add_event_handler("stream_error", lambda e: done(e, True))
    client.connect("127.0.0.1", server.ports["c2s"])
    try:
        await asyncio.wait_for(started, timeout)
    except BaseException:
        client.abort()
        raise
    return client


@contextlib.asynccontextmanager
async def slix_component(port: int, domain: str, secret: str, plugins: tuple[str, ...] = ("xep_0030",)) -> AsyncIterator[Any]:
    """A slixmpp XEP-0114 component for ``domain`` connected to the component listener on
    ``port`` (handshake done), disconnected on exit."""
    import slixmpp

    comp = slixmpp.ComponentXMPP(domain, secret, "127.0.0.1", port)
    for p in plugins:
        comp.register_plugin(p)
    started = asyncio.get_running_loop().create_future()
    comp.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    comp.connect()
    await asyncio.wait_for(started, 10)
    try:
        yield comp
    finally:
        comp.disconnect()
        await asyncio.sleep(0.1)


async def slix_close(client: Any) -> None:
    with contextlib.suppress(Exception):
        await client.disconnect(wait=2)


# ---------------------------------------------------------------------------------- raw


class RawClient:
    """A bare TCP client for hostile-input tests: write bytes, read what the server says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def connect(cls, server: Server, port_name: str = "c2s", *, source: str | None = None) -> "RawClient":
        """``source``: the local address to connect from (any of 127.0.0.0/8 reaches the server)."""
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports[port_name], local_addr=local)
        return cls(reader, writer)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def read_until(self, needle: bytes, timeout: float = 5) -> bytes:
        async def go() -> bytes:
            while needle not in self.buffer:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError(f"closed before {needle!r}; got {self.buffer!r}")
                self.buffer += chunk
            return self.buffer

        return await asyncio.wait_for(go(), timeout)

    async def sasl_answer(self, timeout: float = 10) -> bytes:
        """What was read until the SASL exchange under way ended: its <success/> or </failure>."""

        async def go() -> bytes:
            while b"</failure>" not in self.buffer and b"<success" not in self.buffer:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError(f"closed without an answer: {self.buffer!r}")
                self.buffer += chunk
            return self.buffer

        return await asyncio.wait_for(go(), timeout)

    async def read_all(self, timeout: float = 5) -> bytes:
        """Everything until the server closes the connection."""

        async def go() -> bytes:
            while True:
                try:
                    chunk = await self.reader.read(65536)
                except ConnectionResetError:
                    return self.buffer
                if not chunk:
                    return self.buffer
                self.buffer += chunk

        return await asyncio.wait_for(go(), timeout)

    async def plain_login(self, user: str, password: str = PASSWORD, *, resource: str | None = None) -> None:
        """Log in with SASL PLAIN and bind, on a plaintext stream (``c2s.require_tls=false``)."""
        await self.open_stream()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        await self.read_until(b"<success")
        self.buffer = b""
        await self.open_stream()
        res = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>")
        await self.read_until(b"</iq>")
        self.buffer = b""

    async def open_stream(self, domain: str = "localhost") -> bytes:
        await self.send(
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        )
        return await self.read_until(b"</stream:features>")

    def close(self) -> None:
        self.writer.close()
