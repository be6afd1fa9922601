"""The scenario registry, the target description and the context every scenario runs with."""
from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import os
import resource
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .client import Client, XmppError

PASSWORD = "bench-password-1"
_resources = itertools.count()


class NotAvailable(Exception):
    """The server lacks what the scenario needs (a feature, a mechanism, a transport)."""


class BadParams(Exception):
    """The scenario cannot run with these parameters (reported, not run)."""


@dataclasses.dataclass
class Target:
    """Where to connect: any XMPP server on loopback."""

    name: str
    host: str
    port: int  # c2s (plain / STARTTLS)
    domain: str
    ws_url: str | None = None
    muc_domain: str | None = None
    pid: int | None = None  # for memory and CPU figures (its whole process tree)
    provisioned: int = 0  # accounts bench0..bench{n-1} known to exist
    # How accounts are made: None = in-band registration (XEP-0077); else an xmppctl command
    # prefix (e.g. ["xmppctl", "--config", "/etc/xmppd.toml"]) run as PREFIX user add JID --password P.
    provision: list[str] | None = None

    def __post_init__(self) -> None:
        if not (self.host.startswith("127.") or self.host in ("localhost", "::1")):
            raise ValueError("the load generator only targets loopback addresses")


@dataclasses.dataclass
class Scenario:
    name: str
    fn: Callable[..., Awaitable[dict[str, Any]]]
    params: dict[str, Any]
    max_seconds: float
    doc: str


REGISTRY: dict[str, Scenario] = {}


def scenario(name: str, *, max_seconds: float = 60.0) -> Callable[[Callable[..., Awaitable[dict[str, Any]]]], Callable[..., Awaitable[dict[str, Any]]]]:
    """Register ``async def fn(ctx, **params) -> dict``; its keyword defaults are its parameters."""

    def deco(fn: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Awaitable[dict[str, Any]]]:
        sig = inspect.signature(fn)
        params = {k: p.default for k, p in list(sig.parameters.items())[1:]}
        REGISTRY[name] = Scenario(name, fn, params, max_seconds, (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return deco


def insecure_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ------------------------------------------------------------------------------ process figures


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (ejabberd runs beam under a shell)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def rss_bytes(pid: int) -> int:
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            pass
    return total


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Meter:
    """Wall time plus the CPU used by the load generator and by the server over one phase."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.t0 = time.perf_counter()
        self.c0 = own_cpu()
        self.s0 = cpu_seconds(target.pid) if target.pid else None
        self.t1 = self.t0

    def stop(self, at: float | None = None, ops: int | None = None) -> dict[str, Any]:
        """CPU as a share of the phase's wall time; with *ops*, also the server's CPU seconds per
        1,000 operations (``server_cpu_s_per_1000``: the figure to compare on a loaded machine,
        where wall-clock throughput measures the neighbours)."""
        now = time.perf_counter()
        self.t1 = at if at is not None else now
        wall = max(now - self.t0, 1e-9)
        gen = own_cpu() - self.c0
        out: dict[str, Any] = {"loadgen_cpu": round(gen / wall, 3)}
        if self.s0 is not None and self.target.pid:
            used = cpu_seconds(self.target.pid) - self.s0
            out["server_cpu"] = round(used / wall, 3)
            if ops:
                out["server_cpu_s_per_1000"] = round(used / ops * 1000, 3)
        if ops:
            out["loadgen_cpu_s_per_1000"] = round(gen / ops * 1000, 3)
        return out

    @property
    def elapsed(self) -> float:
        return max(self.t1 - self.t0, 1e-9)


async def xmppctl_add(prefix: list[str], jid: str) -> None:
    """``PREFIX user add JID --password PASSWORD``; an account that already exists is fine."""
    proc = await asyncio.create_subprocess_exec(
        *prefix, "user", "add", jid, "--password", PASSWORD, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0 and b"already exists" not in err:
        raise XmppError(f"{' '.join(prefix)} user add {jid} failed ({proc.returncode}): {(err or out).decode(errors='replace').strip()[:300]}")


# ------------------------------------------------------------------------------ context


class Context:
    """What a scenario gets: the target, accounts, and login helpers."""

    def __init__(self, target: Target, *, timeout: float = 15.0) -> None:
        self.target = target
        self.timeout = timeout
        self.clients: list[Client] = []

    def user(self, i: int) -> str:
        return f"bench{i}"

    async def accounts(self, n: int, concurrency: int = 50) -> list[str]:
        """Usernames bench0..bench{n-1}, made when not yet known: registered in-band (XEP-0077),
        or with ``xmppctl user add`` when the target has a ``provision`` command."""
        t = self.target
        if t.provisioned < n:
            # xmppctl: one process per account (each opens the database), a few at a time.
            sem = asyncio.Semaphore(concurrency if t.provision is None else min(concurrency, 4))

            async def reg(i: int) -> None:
                async with sem:
                    if t.provision is not None:
                        await xmppctl_add(t.provision, f"{self.user(i)}@{t.domain}")
                        return
                    c = Client(t.domain, timeout=self.timeout)
                    try:
                        await c.connect_tcp(t.host, t.port)
                        await c.register(self.user(i), PASSWORD)
                    finally:
                        c.close()

            await gather_all([reg(i) for i in range(t.provisioned, n)])
            t.provisioned = n
        return [self.user(i) for i in range(n)]

    def new_client(self) -> Client:
        c = Client(self.target.domain, timeout=self.timeout)
        self.clients.append(c)
        return c

    async def login(self, username: str, *, ws: bool = False, mechanism: str = "SCRAM-SHA-1", tls: bool = False, presence: bool = False, wait_echo: bool = False, resource: str | None = None) -> Client:
        t = self.target
        c = self.new_client()
        if ws:
            if not t.ws_url:
                raise NotAvailable("no WebSocket endpoint")
            await c.connect_ws(t.ws_url)
        else:
            await c.connect_tcp(t.host, t.port)
        try:
            await c.login(username, PASSWORD, mechanism=mechanism, starttls=insecure_tls() if tls else None, presence=presence, wait_echo=wait_echo, resource=resource or f"b{next(_resources)}")
        except XmppError as exc:
            if "not offered" in str(exc) or "no STARTTLS" in str(exc):
                raise NotAvailable(str(exc)) from None
            raise
        return c

    async def login_many(self, users: list[str], concurrency: int = 50, **kw: Any) -> list[Client]:
        sem = asyncio.Semaphore(concurrency)

        async def one(u: str) -> Client:
            async with sem:
                return await self.login(u, **kw)

        return await gather_all([one(u) for u in users])

    def close_all(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()


async def gather_all(coros: list[Awaitable[Any]]) -> list[Any]:
    """Like gather, but cancels the rest when one fails (no stray tasks)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def run_scenario(target: Target, name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one registered scenario, bounded by its max duration; always returns a result dict."""
    sc = REGISTRY[name]
    params = {**sc.params, **(overrides or {})}
    ctx = Context(target)
    result: dict[str, Any] = {"scenario": name, "server": target.name, "params": params}
    try:
        figures = await asyncio.wait_for(sc.fn(ctx, **params), sc.max_seconds)
        result.update(figures)
        result["status"] = "ok"
    except NotAvailable as exc:
        result["status"] = f"n/a ({exc})"
    except BadParams as exc:
        result["status"] = f"error: bad parameters: {exc}"
    except TimeoutError:
        result["status"] = f"timeout after {sc.max_seconds:.0f}s"
    except (XmppError, OSError) as exc:
        result["status"] = f"error: {exc}"
    finally:
        ctx.close_all()
        await asyncio.sleep(0.2)  # let the server process the closes before the next scenario
    return result
