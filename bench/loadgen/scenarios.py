"""The benchmark scenarios (RFC 6120/6121, XEP-0045, RFC 7395), each a registered async function.

Add one with ``@scenario("name", max_seconds=...)`` on ``async def fn(ctx, **params) -> dict``;
its keyword defaults are its parameters (overridable with ``--param name.key=value``). Every
scenario is bounded: by a count of stanzas or logins, and by ``max_seconds`` (the run stops and
reports what it measured, or a timeout).
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from lxml import etree

from .client import NS_CLIENT, Client, XmppError, esc
from .core import BadParams, Context, Meter, NotAvailable, gather_all, rss_bytes, scenario

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_ROSTER = "jabber:iq:roster"
_PRESENCE = f"{{{NS_CLIENT}}}presence"
_MESSAGE = f"{{{NS_CLIENT}}}message"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ------------------------------------------------------------------------------ logins


async def _logins(ctx: Context, users: int, concurrency: int, *, ws: bool = False, mechanism: str = "SCRAM-SHA-1", tls: bool = False, full: bool = True) -> dict[str, Any]:
    """*full*: what clients do -- session when advertised as required, initial presence, and
    wait for its echo (the login is complete when the server has handled the presence);
    otherwise stop after binding (the ``*_bind`` rows)."""
    names = await ctx.accounts(users)
    kw: dict[str, Any] = {"ws": ws, "mechanism": mechanism, "tls": tls, "presence": full, "wait_echo": full}
    # Untimed pass: fills the client's SCRAM key cache (the client never runs PBKDF2 when timed).
    for c in await ctx.login_many(names, concurrency, **kw):
        c.close()
    ctx.clients.clear()
    await asyncio.sleep(0.3)
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(u: str) -> None:
        nonlocal done
        async with sem:
            c = await ctx.login(u, **kw)
            done += 1
            c.close()

    m = Meter(ctx.target)
    await gather_all([one(u) for u in names])
    cpu = m.stop(ops=done)
    return {"logins": done, "seconds": round(m.elapsed, 3), "value": round(done / m.elapsed, 1), "unit": "logins/s", **cpu}


@scenario("logins", max_seconds=120)
async def logins(ctx: Context, users: int = 1000, concurrency: int = 50) -> dict[str, Any]:
    """Logins over TCP without TLS, SCRAM-SHA-1, as clients log in: connect, SASL, bind,
    session (when advertised), initial presence and its echo, close."""
    return await _logins(ctx, users, concurrency)


@scenario("logins_bind", max_seconds=120)
async def logins_bind(ctx: Context, users: int = 1000, concurrency: int = 50) -> dict[str, Any]:
    """Logins that stop after binding (no session, no presence): connect, SASL, bind, close."""
    return await _logins(ctx, users, concurrency, full=False)


@scenario("logins_tls", max_seconds=120)
async def logins_tls(ctx: Context, users: int = 1000, concurrency: int = 50) -> dict[str, Any]:
    """Full logins (as ``logins``) with STARTTLS, SCRAM-SHA-1."""
    return await _logins(ctx, users, concurrency, tls=True)


@scenario("logins_sha256", max_seconds=120)
async def logins_sha256(ctx: Context, users: int = 1000, concurrency: int = 50) -> dict[str, Any]:
    """Full logins (as ``logins``) over TCP without TLS, SCRAM-SHA-256."""
    return await _logins(ctx, users, concurrency, mechanism="SCRAM-SHA-256")


@scenario("ws_logins", max_seconds=120)
async def ws_logins(ctx: Context, users: int = 1000, concurrency: int = 50) -> dict[str, Any]:
    """Full logins (as ``logins``) over RFC 7395 WebSocket (ws://, no TLS), SCRAM-SHA-1."""
    return await _logins(ctx, users, concurrency, ws=True)


@scenario("ws_logins_bind", max_seconds=120)
async def ws_logins_bind(ctx: Context, users: int = 1000, concurrency: int = 50) -> dict[str, Any]:
    """WebSocket logins that stop after binding."""
    return await _logins(ctx, users, concurrency, ws=True, full=False)


# ------------------------------------------------------------------------------ idle memory


@scenario("idle_memory", max_seconds=120)
async def idle_memory(ctx: Context, connections: int = 1000, concurrency: int = 50, settle: float = 1.0) -> dict[str, Any]:
    """Server RSS per idle authenticated connection (bound, initial presence sent)."""
    pid = ctx.target.pid
    if not pid:
        raise NotAvailable("the server's process id is unknown")
    names = await ctx.accounts(connections)
    await asyncio.sleep(settle)
    before = rss_bytes(pid)
    clients = await ctx.login_many(names, concurrency, presence=True)
    await asyncio.sleep(settle)
    after = rss_bytes(pid)
    per = (after - before) / max(1, len(clients))
    return {"connections": len(clients), "rss_before_kib": before // 1024, "rss_after_kib": after // 1024, "value": round(per / 1024, 1), "unit": "KiB/conn"}


# ------------------------------------------------------------------------------ one-to-one


async def _one2one(ctx: Context, pairs: int, window: int, messages: int, seconds: float, ws: bool) -> dict[str, Any]:
    names = await ctx.accounts(2 * pairs)
    senders = await ctx.login_many(names[:pairs], ws=ws)
    receivers = await ctx.login_many(names[pairs:], ws=ws)
    per_pair = max(1, messages // pairs)
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    latencies: list[float] = []
    state = {"received": 0, "last": 0.0, "stop": False, "pairs_done": 0}
    now = time.perf_counter
    xmlns = " xmlns='jabber:client'" if ws else ""

    class Pair:
        __slots__ = ("sender", "prefix", "sent", "received", "times")

        def __init__(self, sender: Client, receiver: Client) -> None:
            self.sender = sender
            self.prefix = f"<message{xmlns} to='{esc(receiver.jid)}' type='chat' id='".encode()
            self.sent = 0
            self.received = 0
            self.times: list[float] = []

        def pump(self) -> None:
            while self.sent < per_pair and self.sent - self.received < window and not state["stop"]:
                self.sent += 1
                self.times.append(now())
                self.sender.send(self.prefix + b"%d'><body>Benchmark message number %d, some ordinary chat text.</body></message>" % (self.sent, self.sent))

    by_receiver: dict[Client, Pair] = {}
    plist = []
    for s, r in zip(senders, receivers, strict=True):
        p = Pair(s, r)
        by_receiver[r] = p
        plist.append(p)

    def on_count(c: Client, n: int) -> None:
        p = by_receiver[c]
        t = now()
        base = p.received
        for i in range(base, min(base + n, len(p.times))):
            latencies.append(t - p.times[i])
        p.received += n
        state["received"] += n
        state["last"] = t
        if p.received >= per_pair:
            state["pairs_done"] += 1
            if state["pairs_done"] == len(plist) and not finished.done():
                finished.set_result(None)
        else:
            p.pump()

    for c in receivers:
        c.start_counting(on_count)
    for c in senders:
        c.start_counting()
    await asyncio.sleep(0.2)
    m = Meter(ctx.target)
    for p in plist:
        p.pump()
    try:
        await asyncio.wait_for(asyncio.shield(finished), seconds)
    except TimeoutError:
        state["stop"] = True
        await asyncio.sleep(0.5)  # what is in flight may still land
    cpu = m.stop(at=state["last"] or None, ops=state["received"])
    rate = state["received"] / m.elapsed
    return {
        "messages": state["received"],
        "sent": sum(p.sent for p in plist),
        "seconds": round(m.elapsed, 3),
        "value": round(rate, 1),
        "unit": "msg/s",
        "p50_ms": round(_pct(latencies, 0.5) * 1000, 3),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 3),
        **cpu,
    }


@scenario("one2one", max_seconds=90)
async def one2one(ctx: Context, pairs: int = 100, window: int = 10, messages: int = 200_000, seconds: float = 20.0) -> dict[str, Any]:
    """One-to-one chat over TCP: ``pairs`` sender->receiver pairs, ``window`` messages in flight each."""
    return await _one2one(ctx, pairs, window, messages, seconds, ws=False)


@scenario("one2one_latency", max_seconds=90)
async def one2one_latency(ctx: Context, pairs: int = 10, window: int = 1, messages: int = 50_000, seconds: float = 15.0) -> dict[str, Any]:
    """One-to-one chat over TCP with one message in flight per pair: rate and p50 latency."""
    return await _one2one(ctx, pairs, window, messages, seconds, ws=False)


@scenario("ws_one2one", max_seconds=90)
async def ws_one2one(ctx: Context, pairs: int = 100, window: int = 10, messages: int = 150_000, seconds: float = 20.0) -> dict[str, Any]:
    """One-to-one chat over WebSocket, as ``one2one``."""
    if not ctx.target.ws_url:
        raise NotAvailable("no WebSocket endpoint")
    return await _one2one(ctx, pairs, window, messages, seconds, ws=True)


# ------------------------------------------------------------------------------ MUC fan-out


async def _muc_service(ctx: Context, probe: Client) -> str:
    muc = ctx.target.muc_domain or f"conference.{ctx.target.domain}"
    try:
        info = await probe.iq(f"<query xmlns='{NS_DISCO_INFO}'/>", to=muc, timeout=5)
    except XmppError as exc:
        raise NotAvailable(f"feature missing: no MUC service at {muc} ({exc})") from None
    if info.find(f".//{{{NS_DISCO_INFO}}}feature[@var='{NS_MUC}']") is None:
        raise NotAvailable(f"feature missing: {muc} is not a MUC service")
    return muc


async def _join(c: Client, room: str, nick: str, *, owner: bool) -> None:
    c.send(f"<presence{c.xmlns()} to='{room}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>".encode())

    def self_presence(el: etree._Element) -> bool:
        if el.tag != _PRESENCE or el.get("from") != f"{room}/{nick}":
            return False
        if el.get("type") == "error":
            raise XmppError(f"join refused: {etree.tostring(el)[:300]!r}")
        return True

    pres = await c.recv_until(self_presence)
    codes = {s.get("code") for s in pres.iterfind(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}status")}
    if owner and "201" in codes:  # a new, locked room: accept the default configuration
        await c.iq(f"<query xmlns='{NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>", type="set", to=room)
    # The subject comes last in the join sequence (XEP-0045 §7.2.15); give it a moment.
    try:
        await c.recv_until(lambda el: el.tag == _MESSAGE and el.find(f"{{{NS_CLIENT}}}subject") is not None, timeout=2)
    except XmppError:
        pass


@scenario("muc_fanout", max_seconds=150)
async def muc_fanout(ctx: Context, occupants: int = 100, senders: int = 10, window: int = 5, messages: int = 5_000, seconds: float = 15.0) -> dict[str, Any]:
    """XEP-0045 room fan-out: ``senders`` of ``occupants`` send groupchat; stanzas delivered per second."""
    names = await ctx.accounts(occupants)
    owner = await ctx.login(names[0])
    muc = await _muc_service(ctx, owner)
    room = f"bench-{uuid.uuid4().hex[:8]}@{muc}"
    await _join(owner, room, "u0", owner=True)
    others = await ctx.login_many(names[1:])
    sem = asyncio.Semaphore(50)

    async def join(i: int, c: Client) -> None:
        async with sem:
            await _join(c, room, f"u{i}", owner=False)

    await gather_all([join(i + 1, c) for i, c in enumerate(others)])
    everyone = [owner, *others]
    await asyncio.sleep(0.5)  # join presences settle
    speakers = everyone[:senders]
    n = len(everyone)
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    state = {"sent": 0, "delivered": 0, "last": 0.0, "stop": False, "rr": 0}
    now = time.perf_counter
    prefix = [f"<message{c.xmlns()} to='{room}' type='groupchat' id='".encode() for c in speakers]
    expected = messages * n

    def pump() -> None:
        while state["sent"] < messages and state["sent"] * n - state["delivered"] < window * senders * n and not state["stop"]:
            i = state["rr"] = (state["rr"] + 1) % len(speakers)
            state["sent"] += 1
            speakers[i].send(prefix[i] + b"%d'><body>Room message %d to everyone here.</body></message>" % (state["sent"], state["sent"]))

    def on_count(c: Client, k: int) -> None:
        state["delivered"] += k
        state["last"] = now()
        if state["delivered"] >= expected:
            if not finished.done():
                finished.set_result(None)
        else:
            pump()

    for c in everyone:
        c.start_counting(on_count)
    m = Meter(ctx.target)
    pump()
    try:
        await asyncio.wait_for(asyncio.shield(finished), seconds)
    except TimeoutError:
        state["stop"] = True
        await asyncio.sleep(0.5)
    cpu = m.stop(at=state["last"] or None, ops=state["delivered"])
    return {
        "occupants": n,
        "sent": state["sent"],
        "delivered": state["delivered"],
        "seconds": round(m.elapsed, 3),
        "value": round(state["delivered"] / m.elapsed, 1),
        "unit": "stanzas/s",
        **cpu,
    }


@scenario("muc_fanout_500", max_seconds=240)
async def muc_fanout_500(ctx: Context, occupants: int = 500, senders: int = 10, window: int = 2, messages: int = 2_000, seconds: float = 15.0) -> dict[str, Any]:
    """XEP-0045 room fan-out with 500 occupants."""
    return await muc_fanout(ctx, occupants=occupants, senders=senders, window=window, messages=messages, seconds=seconds)


# ------------------------------------------------------------------------------ presence


def _contacts(i: int, users: int, contacts: int) -> list[int]:
    half = contacts // 2
    return [(i + d) % users for d in range(-half, half + 1) if d != 0]


async def _ensure_rosters(ctx: Context, names: list[str], contacts: int, stall: float = 30.0) -> None:
    """Mutual subscriptions (RFC 6121 §3) between each user and its ``contacts`` neighbours."""
    n = len(names)
    probe = await ctx.login(names[0])
    try:
        roster = await probe.iq(f"<query xmlns='{NS_ROSTER}'/>", timeout=5)
    except XmppError as exc:
        raise NotAvailable(f"feature missing: roster ({exc})") from None
    have = [it for it in roster.iter(f"{{{NS_ROSTER}}}item") if it.get("subscription") == "both"]
    probe.close()
    ctx.clients.remove(probe)
    if len(have) >= contacts:
        return  # provisioned by an earlier run against this server
    # Available and interested resources (RFC 6121 §3.1.3): they get the requests at once.
    clients = await ctx.login_many(names)
    for c in clients:
        await c.iq(f"<query xmlns='{NS_ROSTER}'/>")
        c.send(b"<presence/>")
    domain = ctx.target.domain
    # Progress is read from the roster pushes (RFC 6121 §2.1.6: one per subscription state change),
    # never from roster queries: a query queues behind the client's own pending handshakes and
    # times out while the server is still working through them.
    both: dict[Client, set[str]] = {c: set() for c in clients}
    complete: set[Client] = set()
    done = 0
    progress = [time.monotonic()]
    all_done = asyncio.get_running_loop().create_future()

    def auto_accept(c: Client, el: etree._Element) -> None:
        nonlocal done
        if el.tag == _PRESENCE and el.get("type") == "subscribe":
            c.send(f"<presence to='{esc(el.get('from', '').split('/')[0])}' type='subscribed'/>".encode())
        elif el.tag == f"{{{NS_CLIENT}}}iq" and el.get("type") == "set":  # roster push: acknowledge
            c.send(f"<iq type='result' id='{esc(el.get('id', ''))}'/>".encode())
            progress[0] = time.monotonic()  # any push is progress
            s = both[c]
            for it in el.iter(f"{{{NS_ROSTER}}}item"):
                jid = it.get("jid", "")
                if it.get("subscription") == "both":
                    if jid not in s:
                        s.add(jid)
                        if len(s) == contacts and c not in complete:
                            complete.add(c)
                            done += 1
                            if done == n and not all_done.done():
                                all_done.set_result(None)
                else:
                    s.discard(jid)
        elif el.tag == f"{{{NS_CLIENT}}}iq":
            c._queue.append(el)  # our roster queries' answers
            c._wake()

    for c in clients:
        c.on_element = auto_accept
    for i, c in enumerate(clients):
        c.send_many([f"<presence to='{names[j]}@{domain}' type='subscribe'/>".encode() for j in _contacts(i, n, contacts)])
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    # No fixed deadline (20,000 handshakes take what the server needs): fail only on a stall.
    while not all_done.done():
        await asyncio.wait([all_done], timeout=1.0)
        if not all_done.done() and time.monotonic() - progress[0] > stall:
            raise XmppError(f"subscriptions stalled: {done}/{n} users have {contacts} mutual contacts")
    for c in clients:  # the backlog is drained now: check what the server stored
        roster = await c.iq(f"<query xmlns='{NS_ROSTER}'/>", timeout=30)
        got = sum(1 for it in roster.iter(f"{{{NS_ROSTER}}}item") if it.get("subscription") == "both")
        if got < contacts:
            raise XmppError(f"subscriptions incomplete: {c.bare} has {got}/{contacts} mutual contacts")
    ctx.close_all()
    await asyncio.sleep(1.0)


@scenario("presence", max_seconds=1800)  # includes the one-time subscription set-up
async def presence(ctx: Context, users: int = 1000, contacts: int = 20, concurrency: int = 50, updates: int = 20_000, window: int = 100, seconds: float = 15.0) -> dict[str, Any]:
    """RFC 6121 presence: a login wave of ``users`` with ``contacts`` each, then presence updates."""
    if contacts % 2 or not 0 < contacts < users:
        # (each user's contacts are its neighbours on both sides of a ring: mutual, so even)
        raise BadParams(f"contacts must be even and between 2 and users - 1, not {contacts} (users={users})")
    names = await ctx.accounts(users)
    # Warm the SCRAM cache, then make sure the rosters exist.
    for c in await ctx.login_many(names, concurrency):
        c.close()
    ctx.clients.clear()
    await _ensure_rosters(ctx, names, contacts)
    own = {f"{u}@{ctx.target.domain}" for u in names}
    seen: dict[Client, set[str]] = {}
    complete = 0
    loop = asyncio.get_running_loop()
    wave_done = loop.create_future()
    last = [0.0]

    def on_wave(c: Client, el: etree._Element) -> None:
        nonlocal complete
        if el.tag != _PRESENCE or el.get("type") is not None:
            return
        frm = (el.get("from") or "").split("/")[0]
        if frm == c.bare or frm not in own:
            return
        s = seen[c]
        if frm not in s:
            s.add(frm)
            if len(s) == contacts:
                complete += 1
                last[0] = time.perf_counter()
                if complete == users and not wave_done.done():
                    wave_done.set_result(None)

    sem = asyncio.Semaphore(concurrency)
    xmlns = ""

    async def arrive(u: str) -> Client:
        async with sem:
            c = await ctx.login(u)
            seen[c] = set()
            c.on_element = on_wave
            c.send(f"<iq type='get' id='r1'><query xmlns='{NS_ROSTER}'/></iq><presence{xmlns}/>".encode())
            return c

    m = Meter(ctx.target)
    clients = await gather_all([arrive(u) for u in names])
    try:
        await asyncio.wait_for(asyncio.shield(wave_done), 60)
    except TimeoutError:
        raise XmppError(f"presence wave incomplete: {complete}/{users} users saw all contacts") from None
    wave_cpu = m.stop(at=last[0])
    wave_seconds = m.elapsed
    await asyncio.sleep(0.5)

    # Presence updates: each one goes to the sender's ``contacts`` subscribers.
    state = {"sent": 0, "delivered": 0, "last": 0.0, "stop": False, "rr": 0}
    now = time.perf_counter
    finished = loop.create_future()
    expected = updates * contacts

    def pump() -> None:
        while state["sent"] < updates and state["sent"] * contacts - state["delivered"] < window * contacts and not state["stop"]:
            i = state["rr"] = (state["rr"] + 1) % users
            state["sent"] += 1
            clients[i].send(b"<presence><status>busy %d</status></presence>" % state["sent"])

    def on_update(c: Client, el: etree._Element) -> None:
        if el.tag != _PRESENCE or el.get("type") is not None:
            return
        if (el.get("from") or "").split("/")[0] == c.bare:
            return
        state["delivered"] += 1
        state["last"] = now()
        if state["delivered"] >= expected:
            if not finished.done():
                finished.set_result(None)
        else:
            pump()

    for c in clients:
        c.on_element = on_update
    m2 = Meter(ctx.target)
    pump()
    try:
        await asyncio.wait_for(asyncio.shield(finished), seconds)
    except TimeoutError:
        state["stop"] = True
        await asyncio.sleep(0.5)
    upd_cpu = m2.stop(at=state["last"] or None)
    return {
        "users": users,
        "contacts": contacts,
        "value": round(wave_seconds, 3),
        "unit": "s (wave)",
        "wave_seconds": round(wave_seconds, 3),
        "wave_cpu": wave_cpu,
        "updates_sent": state["sent"],
        "updates_delivered": state["delivered"],
        "updates_per_s": round(state["delivered"] / m2.elapsed, 1),
        **upd_cpu,
    }

