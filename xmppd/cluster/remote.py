"""What the router asks when a recipient has no session here (docs/cluster.md §3).

``Router.remote`` is one of these when ``cluster.redis_url`` is set, None otherwise. It finds a
JID's sessions on the other nodes (``ClusterSessions``) and publishes the stanza to their nodes'
streams (``Bus``), serialised once per node; on the receiving node ``receive`` writes it to the
sessions named in the envelope through the router's last step (``Router.deliver``: the DELIVER
hooks run there), without the sender-side hooks and checks, which ran on the sender's node.

Publishing never makes the sender's session wait for Redis: ``to_full`` and ``to_entries``
queue the envelope in one outbox, and one writer task sends what is queued in one pipeline (one
round trip for many stanzas) in queue order, so one sender's stanzas keep their order. What no
node took (the full JID is bound nowhere else, or Redis failed) comes back to the router's
fallback, in the writer task: the path of a recipient without a session.

Redis unreachable: lookups answer "none" and publications fail into that fallback, so the router
goes on as for a recipient without a session (a message to the account's other resources or to offline storage,
an iq answered ``service-unavailable``), so nothing is dropped silently and local delivery never
waits for Redis.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lxml import etree

from ..core.hooks import Routed
from ..errors import Condition, StreamErrorCondition
from ..i18n import core_error
from ..jid import JID
from .bus import ENV, Bus, op_fan, op_full, op_live, op_node, pack
from .connection import unreachable_errors
from .control import CONTROL, Control, Request
from .sessions import ClusterSessions, Entry

if TYPE_CHECKING:
    from ..core.router import Router
    from ..core.session import Session

log = logging.getLogger(__name__)

Fallback = Callable[[Routed], Awaitable[None]]
MAX_HOPS = 2
BATCH = 200  # a stanza re-sent by nodes that no longer held its recipient, at most this often
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class RemoteSessions:
    def __init__(self, router: "Router", sessions: ClusterSessions, bus: Bus, handover_timeout: float = 5.0) -> None:
        self.router = router
        self.sessions = sessions
        self.bus = bus
        self.node = sessions.node
        self.handover_timeout = handover_timeout
        self._warned = False
        self._outbox: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # the outbox is empty and nothing it sent is unsettled
        self._idle.set()
        # Full JIDs whose session is being moved here (XEP-0198 resumption of a session another
        # node held): what arrives for them waits, in order, until the session is in place.
        self.moving: dict[JID, list[tuple[str, Any]]] = {}
        # Requests between nodes that are not stanzas (XEP-0198 resumption elsewhere): control.py.
        self.control = Control(self)
        self._writer = asyncio.create_task(self._write(), name=f"cluster outbox {self.node}")
        # Envelopes for a service's owner node rather than for sessions (field ``s``: the tag,
        # e.g. "muc"): tag -> handler(routed, hops, origin node). See ``to_owner``.
        self.owners: dict[str, Callable[[Routed, int, str], Awaitable[None]]] = {}

    # ------------------------------------------------------------------ sending side

    def to_full(self, r: Routed, full: JID, fallback: Fallback, hops: int = 0) -> bool:
        """Queue ``r`` for the node holding ``full``, if another one does; the writer runs
        ``fallback(r)`` when none does or Redis fails. False: not queued (too many hops)."""
        if hops >= MAX_HOPS:
            return False
        fields = self._envelope(r, [full], hops)
        self._queue(_Item(r, fallback, None, fields, (self.sessions.keys.sess(str(full.bare)), full.resource or "")))
        return True

    async def others(self, bare: JID, hops: int = 0) -> list[Entry]:
        """``bare``'s sessions on the other nodes, and those moving here from another node
        (held back until they are in place); [] when Redis cannot be reached."""
        if hops >= MAX_HOPS:
            return []
        try:
            return [e for e in await self.sessions.of(bare) if e.node != self.node or e.full in self.moving]
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return []

    async def holder(self, full: JID) -> tuple[str, str] | None:
        """``(node, incarnation)`` of the live node holding ``full``, or None (bound nowhere, its
        node is dead or not cleaned up yet, or Redis cannot be reached)."""
        try:
            found = await self.sessions.holder(full)
            if found is None:
                return None
            if found[0] != self.node and await self.bus.redis.hget(self.bus.keys.node(found[0]), "incarnation") != found[1]:
                return None
            return found
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return None

    async def drop_own(self, full: JID) -> None:
        """Remove ``full``'s entry if this node holds it (a session handed over elsewhere)."""
        try:
            await self.sessions.drop_entry(str(full.bare), full.resource or "", self.node, self.sessions.incarnation)
        except unreachable_errors() as exc:
            self._unreachable(exc)

    def to_entries(self, r: Routed, entries: list[Entry], hops: int, fallback: Fallback | None) -> None:
        """Queue ``r`` once per node of ``entries``; ``fallback(r)`` runs if no node took it."""
        by_node: dict[str, list[JID]] = defaultdict(list)
        for e in entries:
            by_node[e.node].append(e.full)
        group = _Group(len(by_node))
        data = etree.tostring(r.stanza, encoding="unicode")
        for node, fulls in by_node.items():
            # One resource on that node: looked up again as it is published (one script), so
            # that a session that moved meanwhile (XEP-0198 resumption elsewhere) is followed.
            full = (self.sessions.keys.sess(str(fulls[0].bare)), fulls[0].resource or "") if len(fulls) == 1 else None
            self._queue(_Item(r, fallback, node, self._envelope(r, fulls, hops, data), full, group))

    def to_owner(self, node: str, tag: str, r: Routed, hops: int, fallback: Fallback | None) -> None:
        """Queue ``r`` for ``node``, where the handler registered under ``tag`` takes it (a room's
        owner node: docs/cluster.md §5); appended only while ``node`` is registered (``_TO_LIVE``
        in bus.py: a node that left is read by nobody); ``fallback(r)`` runs if it was not."""
        fields = self._envelope(r, [], hops)
        fields["s"] = tag
        self._queue(_Item(r, fallback, node, fields, None))

    def fan(self, el: etree._Element, kind: str, targets: list[JID], wire: Any = None, *, with_to: bool = False,
            check: str | None = None) -> None:
        """``Router.fan_out``'s recipients without a session here (full JIDs, and bare JIDs for
        their available resources on other nodes), or ``deliver_to``'s (``with_to``: ``el``
        keeps its ``to``): one envelope per node holding any, ``el`` serialised once, queued in
        the outbox (one script: the look-ups and the appends). Nobody anywhere: nothing.
        ``check`` (``Router.fan_out_elsewhere``): the bare JIDs' available sessions there that the
        stanza check of that name accepts, each with its full JID as ``to``."""
        if wire is not None:  # el serialised already, without "to": head + tail, unspliced
            data = (wire.head[:-5] + wire.tail[1:]).decode()
        else:
            data = etree.tostring(el, encoding="unicode")
        sess = self.sessions.keys.sess
        fields = {"k": kind, "f": el.get("from") or self.router.domain, "t": "", "h": "0", "o": self.node,
                  "m": "to" if with_to else "fan", "x": data}
        if check:
            fields["c"] = check
        self._queue(_Item(None, None, None, fields, None, fan=[(sess(str(t.bare)), t.resource or "", str(t), "") for t in targets]))

    async def elsewhere(self, bares: list[JID]) -> dict[JID, list[Entry]]:
        """Each account's sessions on the other nodes, one pipeline ({} if Redis fails)."""
        if not bares:
            return {}
        try:
            found = await self.sessions.of_many(bares)
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return {}
        return {b: [e for e in es if e.node != self.node] for b, es in found.items()}

    async def bind_elsewhere(self, bare: JID, resource: str | None) -> int:
        """See ``Router.bind_elsewhere``: a control envelope (``m`` ``close``) asks the node
        holding ``bare/resource`` to close it, then the registry is watched until that entry is
        no longer that session's (its node removes it as the session ends)."""
        try:
            entries = [e for e in await self.sessions.of(bare) if e.node != self.node]
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return 0
        same = [e for e in entries if resource is not None and e.full.resource == resource]
        for e in same:
            log.info("%s is bound on node %s: asking it to close that session (conflict)", e.full, e.node)
        if not await self._close(same, StreamErrorCondition.CONFLICT, "", 10):
            log.warning("another node did not close %s/%s within 10 s: bound here all the same", bare, resource)
        return len(entries) - len(same)

    async def end_elsewhere(self, jid: JID, condition: StreamErrorCondition, text: str) -> int:
        """See ``Router.end_elsewhere``: the sessions of ``jid`` (bare: every one) on the other
        nodes are closed there with ``condition`` and ``text`` (control envelopes ``m`` ``close``),
        waited for at most 5 s; returns how many were asked to end."""
        try:
            entries = [e for e in await self.sessions.of(jid.bare) if e.node != self.node]
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return 0
        if jid.resource is not None:
            entries = [e for e in entries if e.full.resource == jid.resource]
        for e in entries:
            log.info("%s is bound on node %s: asking it to end that session (%s)", e.full, e.node, condition)
        if not await self._close(entries, condition, text, 5):
            log.warning("another node did not end a session of %s within 5 s", jid)
        return len(entries)

    async def _close(self, entries: list[Entry], condition: StreamErrorCondition, text: str, timeout: float) -> bool:
        """Ask each entry's node to close that session (``m`` ``close``: the full JID, the
        incarnation that holds it, the stream error's condition ``c`` and text ``x``), then watch
        the registry until no entry is still that session's (its node removes it as the session
        ends, after its unavailable presence went out); False if one outlived ``timeout``."""
        for e in entries:
            fields = {"k": "close", "f": "", "t": "", "r": str(e.full), "h": "0", "o": self.node, "m": "close",
                      "i": e.incarnation, "c": str(condition), "x": text}
            self._queue(_Item(None, None, e.node, fields, None))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for e in entries:
            key = self.sessions.keys.sess(str(e.full.bare))
            held = f"{e.node}|{e.incarnation}|"
            try:
                while loop.time() < deadline:
                    value = await self.bus.redis.hget(key, e.full.resource)
                    if value is None or not value.startswith(held):
                        break
                    await asyncio.sleep(0.05)
                else:
                    return False
            except unreachable_errors() as exc:
                self._unreachable(exc)
        return True

    async def online_accounts(self) -> set[JID]:
        """The accounts with a session on any node: the union of the nodes' ``P:nsess`` sets."""
        try:
            return {JID.parse(b) for b in await self.sessions.accounts()}
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return set()

    def relay(self, r: Routed, node: str, fallback: Fallback | None = None) -> None:
        """``r`` for ``node``, to be routed there (``Routed.relayed``); ``fallback(r)`` here if
        Redis fails."""
        fields = self._envelope(r, [], 0)
        fields["m"] = "route"
        self._queue(_Item(r, fallback, node, fields, None))

    def each(self, bare: JID, el: "etree._Element | str", kind: str, exclude: JID | None, check: str | None) -> None:
        """``el`` (no ``to``; or serialised) for every resource of ``bare`` on the other nodes,
        ``to`` set there. (``f``, the ``from``, only names it in logs there: "" when serialised.)"""
        if isinstance(el, str):
            frm, data = "", el
        else:
            frm, data = el.get("from") or self.router.domain, etree.tostring(el, encoding="unicode")
        fields = {"k": kind, "f": frm, "t": "", "h": "0", "o": self.node,
                  "m": "each", "e": str(exclude) if exclude is not None else "", "c": check or "", "x": data}
        skip = exclude.resource or "" if exclude is not None and exclude.bare == bare.bare else ""
        self._queue(_Item(None, None, None, fields, None, fan=[(self.sessions.keys.sess(str(bare.bare)), "", str(bare.bare), skip)]))

    def _envelope(self, r: Routed, fulls: list[JID], hops: int, data: str | None = None) -> dict[str, str]:
        if data is None:
            data = etree.tostring(r.stanza, encoding="unicode")
        return {
            "k": r.kind, "f": str(r.from_jid), "t": str(r.to) if r.to is not None else "",
            "r": " ".join(str(f) for f in fulls), "h": str(hops), "o": self.node, "x": data,
        }

    # ------------------------------------------------------------------ the outbox

    def _queue(self, item: "_Item") -> None:
        self._outbox.append(item)
        self._idle.clear()
        self._wake.set()

    def queue_request(self, req: Request) -> None:
        """A control request (control.py), sent in order with the stanzas queued before it."""
        self._queue(_Item(None, None, req.node, req.fields, None, None, ctl=req))

    @property
    def idle(self) -> bool:
        return self._idle.is_set() and not self._outbox

    async def quiesce(self) -> None:
        """Until everything queued so far was sent and settled."""
        await self._idle.wait()

    async def _write(self) -> None:
        outbox = self._outbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while outbox:
                batch = [outbox.popleft() for _ in range(min(BATCH, len(outbox)))]
                batch = [i for i in batch if i.ctl is None or not i.ctl.sent.done()]  # (a request given up: not sent)
                if not batch:
                    continue
                results: list[Any] = []
                # Every envelope is one op of one script (``Bus.publish_batch``): each command's
                # arguments cost CPU to pack, per argument. A control request (its own script)
                # or an envelope that cannot be an op (SOH in it) cuts the run, so the queue's
                # order is the order of the appends.
                calls: list[tuple[list[_Item], bool]] = []  # (items, batched)
                try:
                    run: list[tuple[_Item, str]] = []
                    for item in batch:
                        op = self._op(item)
                        if op is not None:
                            run.append((item, op))
                        else:
                            calls.append(([item], False))
                    if len(run) == len(batch):  # the usual case: one command, no pipeline
                        calls = [([i for i, _ in run], True)]
                        raw = [await self.bus.publish_batch([op for _, op in run])]
                    else:
                        calls, raw = await self._pipelined(batch)
                except unreachable_errors() as exc:
                    self._unreachable(exc)
                    results = [exc] * len(batch)
                except Exception as exc:  # a bug must not end the outbox: this batch fails
                    log.exception("publishing %d stanzas on the cluster bus failed", len(batch))
                    results = [exc] * len(batch)
                else:
                    for (items, batched), res in zip(calls, raw, strict=True):
                        if batched and not isinstance(res, Exception):
                            results += res
                        else:
                            results += [res] * len(items)
                    batch = [i for items, _ in calls for i in items]
                    if any(not isinstance(x, Exception) for x in results):
                        self._warned = False
                for item, result in zip(batch, results, strict=True):
                    if item.ctl is not None:
                        if not item.ctl.sent.done():
                            item.ctl.sent.set_result(result)
                        continue
                    if item.full is not None and result == self.node:
                        await self._settle(item, await self._here(item))
                        continue
                    ok = bool(result) and not isinstance(result, Exception)
                    if isinstance(result, Exception) and not isinstance(result, unreachable_errors()):
                        log.error("publishing a stanza on the cluster bus failed: %s", result)
                    await self._settle(item, ok)
            if not outbox:
                self._idle.set()

    async def _here(self, item: "_Item") -> bool:
        """The registry says this node holds the recipient: a session moving here (held back
        until it is in place), or bound here since the sender looked; False: neither."""
        assert item.routed is not None
        full = JID.parse(item.fields["r"])
        held = self.moving.get(full)
        if held is not None:
            held.append(("here", item))
            return True
        session = self.router.sessions.get(full)
        if session is None:
            return False
        await self.router.deliver(session, item.routed.stanza, item.routed.kind)
        return True

    def _op(self, item: "_Item") -> str | None:
        """``item`` as one op of the batch script (bus.py), or None: a control request, or a
        part holding SOH (sent by its own command then)."""
        if item.ctl is not None:
            return None
        env = pack(item.fields).get(ENV)
        if env is None:
            return None
        if item.fan is not None:
            return op_fan(env, item.fan)
        if item.full is not None:
            return op_full(item.full[0], item.full[1], env)
        if "s" in item.fields:  # for an owner by lease: only while that node is registered
            return op_live(self.bus.keys.node(item.node or ""), item.node or "", env)
        return op_node(item.node or "", env)

    async def _pipelined(self, batch: list["_Item"]) -> tuple[list[tuple[list["_Item"], bool]], list[Any]]:
        """``batch`` with control requests (or envelopes that are no op) in it: one pipeline,
        runs of ops as one script call each, the others as their own commands, in order."""
        calls: list[tuple[list[_Item], bool]] = []
        async with self.bus.redis.pipeline(transaction=False) as pipe:
            run: list[tuple[_Item, str]] = []
            for item in batch:
                op = self._op(item)
                if op is not None:
                    run.append((item, op))
                    continue
                await self._flush_run(run, calls, pipe)
                calls.append(([item], False))
                if item.ctl is not None:
                    await self.control.script(item.ctl, pipe)
                elif item.fan is not None:
                    await self.bus.publish_fan(item.fan, item.fields, client=pipe)
                elif item.full is not None:
                    await self.bus.publish_to_full(item.full[0], item.full[1], item.fields, client=pipe)
                elif "s" in item.fields:  # for an owner by lease: only while that node is registered
                    await self.bus.publish_to_live(item.node or "", item.fields, client=pipe)
                else:
                    pipe.xadd(self.bus.keys.bus(item.node or ""), pack(item.fields), maxlen=self.bus.bus_max, approximate=True)
            await self._flush_run(run, calls, pipe)
            return calls, await pipe.execute(raise_on_error=False)

    async def _flush_run(self, run: list[tuple["_Item", str]], calls: list[tuple[list["_Item"], bool]], pipe: Any) -> None:
        """The run of ops collected so far, as one script call."""
        if run:
            calls.append(([i for i, _ in run], True))
            await self.bus.publish_batch([op for _, op in run], client=pipe)
            run.clear()

    async def _settle(self, item: "_Item", ok: bool) -> None:
        if item.routed is None:
            return
        group = item.group
        if group is not None:
            group.pending -= 1
            group.ok = group.ok or ok
            if group.pending or group.ok:
                return
        elif ok:
            return
        if item.fallback is not None and item.routed is not None:
            try:
                await item.fallback(item.routed)
            except Exception:
                log.exception("the fallback of a stanza for another node failed (to %s)", item.routed.to)

    def send_soon(self, stanza: etree._Element, to: JID) -> None:
        """An error reply for a session on another node, from a synchronous path (``bounce``)."""
        r = Routed(stanza, etree.QName(stanza).localname, JID.parse(stanza.get("from") or self.router.domain), to, None)
        self.to_full(r, to, _drop)

    def _unreachable(self, exc: BaseException) -> None:
        if not self._warned:
            log.warning("Redis unreachable (%s): stanzas for other nodes' sessions go to offline storage or are answered with errors", exc or type(exc).__name__)
            self._warned = True

    # ------------------------------------------------------------------ receiving side

    async def receive(self, fields: dict[str, str]) -> None:
        """An envelope from the bus (or from a dead node's stream): deliver it to the sessions it
        names; what finds none of them goes on as for a resource that is gone (RFC 6121 §8.5.3.2)."""
        if fields.get("k") == CONTROL:
            await self.control.receive(fields)
            return
        router = self.router
        mode = fields.get("m")
        if mode == "close":  # a control envelope: the same full JID was bound on another node
            self._close_replaced(fields)
            return
        if mode is None and not fields.get("s"):
            # The usual envelope: one stanza for one session here. Its bytes go to the socket as
            # they came, parsed only if a DELIVER hook looks at the element.
            to_s = fields.get("r", "")
            if to_s and " " not in to_s:
                full = JID.parse(to_s)
                if full not in self.moving:
                    session = router.sessions.get(full)
                    if session is not None:
                        await router.deliver_serialised(session, fields["x"].encode(), fields["k"], _parse)
                        return
        stanza = _parse(fields["x"].encode())
        kind = fields["k"]
        if mode == "route":  # relayed: routed here as if made here, for this node's sessions
            to_s = fields.get("t")
            await router.route(Routed(stanza, kind, JID.parse(fields["f"]), JID.parse(to_s) if to_s else None, None, relayed=True))
            return
        if mode is not None:  # a fan-out: this node's sessions only; nothing for one gone
            fulls = [JID.parse(t) for t in fields.get("r", "").split()]
            bares = [JID.parse(b) for b in fields.get("b", "").split()]
            if mode == "fan":
                if fields.get("c"):  # only the sessions that the named stanza check accepts here
                    test = router.stanza_checks.get(fields["c"])
                    if test is None:
                        return  # the feature that asked is not loaded here
                    fulls += [s.jid for b in bares for s in router.sessions.of(b)
                              if s.available and s.jid is not None and not s.is_closed and test(s, stanza)]
                    bares = []
                await router.fan_out(stanza, [*fulls, *bares], kind, here_only=True)
                return
            if mode == "each":
                await self._each(stanza, kind, bares, fields)
                return
            found = [s for s in (router.sessions.get(t) for t in fulls) if s is not None]
            found += [s for b in bares for s in router.sessions.of(b) if s.available]
            for i, s in enumerate(found):
                await router.deliver(s, stanza if i == len(found) - 1 else _copy(stanza), kind)
            return
        to_s = fields.get("t")
        r = Routed(stanza, kind, JID.parse(fields["f"]), JID.parse(to_s) if to_s else None, None)
        hops = int(fields.get("h") or 0) + 1
        tag = fields.get("s")
        if tag:
            handler = self.owners.get(tag)
            if handler is not None:
                await handler(r, hops, fields.get("o") or "")
            return
        targets = [JID.parse(t) for t in fields.get("r", "").split()]
        if len(targets) == 1 and targets[0] in self.moving:
            self.moving[targets[0]].append(("bus", fields))  # delivered once the session is here
            return
        sessions = [s for s in (router.sessions.get(t) for t in targets) if s is not None]
        for i, s in enumerate(sessions):
            await router.deliver(s, stanza if i == len(sessions) - 1 else _copy(stanza), kind)
        if sessions or not targets:
            return
        if len(targets) == 1 and targets[0].resource is not None and hops < MAX_HOPS:
            # The session may have moved to another node (XEP-0198 resumption there) after the
            # sender looked it up: the registry says where; if nowhere else, it is gone.
            full = targets[0]

            async def gone(r: Routed) -> None:
                await self._gone(r, [full], hops)

            self.to_full(r, full, gone, hops)
            return
        await self._gone(r, targets, hops)

    async def _gone(self, r: Routed, targets: list[JID], hops: int) -> None:
        """What was for ``targets``, bound nowhere now: as for a resource that is gone."""
        router = self.router
        stanza, kind = r.stanza, r.kind
        typ = stanza.get("type")
        if kind == "message" and typ in (None, "normal", "chat"):
            r.to = targets[0].bare
            await router.deliver_message_to_bare(r, hops)
        elif kind == "iq" and typ in ("get", "set"):
            router.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "recipient_unavailable"))
        # other messages, presence and iq answers to a session that is gone: dropped, as locally

    # ------------------------------------------------------------------ a session moving here

    def begin_move(self, full: JID) -> None:
        self.moving.setdefault(full, [])

    def take_moved(self, full: JID) -> list[tuple[str, Any]]:
        """What was held back for ``full`` so far, oldest first (the hold goes on)."""
        held = self.moving.get(full)
        if not held:
            return []
        self.moving[full] = []
        return held

    async def deliver_moved(self, session: "Session", items: list[tuple[str, Any]]) -> None:
        """Deliver what was held back to the session that moved here (not bound here yet)."""
        for how, x in items:
            if how == "bus":
                stanza = _parse(x["x"].encode())
                await self.router.deliver(session, stanza, x["k"])
            else:
                await self.router.deliver(session, x.routed.stanza, x.routed.kind)
                await self._settle(x, True)

    async def end_move(self, full: JID, session: "Session | None") -> None:
        """The hold ends: what is left goes to ``session`` (bound here now), or, when the move
        failed (its entry went back, or away), on as if it had never been held."""
        items = self.moving.pop(full, None) or []
        if session is not None:
            await self.deliver_moved(session, items)
            return
        for how, x in items:
            if how == "bus":
                await _handle_safely(self.receive, x)
            else:
                self._queue(x)  # published again: the registry says where it is now

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until what is queued now has been sent: a graceful
        stop's last words (a room's occupants told to join again) before the writer stops."""
        if self._idle.is_set() or self._writer.done():
            return
        idle = asyncio.ensure_future(self._idle.wait())
        try:
            await asyncio.wait({idle, self._writer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()

    def _close_replaced(self, fields: dict[str, str]) -> None:
        """RFC 6120 §7.7.2.2: a new session for this full JID on node ``o``: ours ends with
        ``conflict`` (its unavailable presence goes out as for any end). With another condition
        ``c`` (an administrator's kick, a disabled or deleted account on node ``o``): ours ends
        with that condition and the text ``x``."""
        session = self.router.sessions.get(JID.parse(fields["r"]))
        if session is None or fields.get("i") != self.sessions.incarnation:
            return  # gone already, or meant for an earlier life of this node
        try:
            condition = StreamErrorCondition(fields.get("c") or StreamErrorCondition.CONFLICT)
        except ValueError:
            condition = StreamErrorCondition.POLICY_VIOLATION
        if condition == StreamErrorCondition.CONFLICT:
            session.log.info("replaced by a new session for the same resource on node %s", fields.get("o"))
            session.close(condition, "replaced by a new connection for the same resource")
            return
        session.log.info("ended from node %s (%s)", fields.get("o"), condition)
        session.close(condition, fields.get("x") or None)

    async def _each(self, el: etree._Element, kind: str, bares: list[JID], fields: dict[str, str]) -> None:
        router = self.router
        exclude = fields.get("e") or None
        check = router.checks.get(fields["c"]) if fields.get("c") else None
        if fields.get("c") and check is None:
            return  # the feature that asked is not loaded here
        for bare in bares:
            for s in router.sessions.of(bare):
                if s.jid is None or s.is_closed or str(s.jid) == exclude or (check is not None and not check(s)):
                    continue
                out = _copy(el)
                out.set("to", str(s.jid))
                await router.deliver(s, out, kind)

    async def stop(self) -> None:
        """Stop the writer; what is still queued takes its fallback (offline storage, errors)."""
        self.control.cancel_all()
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass
        while self._outbox:
            await self._settle(self._outbox.popleft(), False)


def _parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, _PARSER)


def _copy(el: etree._Element) -> etree._Element:
    import copy

    return copy.deepcopy(el)


async def _handle_safely(handle: Callable[[dict[str, str]], Awaitable[None]], fields: dict[str, str]) -> None:
    try:
        await handle(fields)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("a stanza held for a moving session could not be handled (to %s)", fields.get("t"))


async def _drop(r: Routed) -> None:
    """An error reply whose recipient is gone everywhere: dropped (no error about an error)."""


class _Group:
    __slots__ = ("pending", "ok")

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.ok = False


class _Item:
    """A queued envelope: for the node holding ``full`` (``(sess key, resource)``), ``node``, or
    the nodes holding any of ``fan``; or a control request (``ctl``)."""

    __slots__ = ("routed", "fallback", "node", "fields", "full", "group", "fan", "ctl")

    def __init__(self, routed: Routed | None, fallback: Fallback | None, node: str | None, fields: dict[str, str],
                 full: tuple[str, str] | None, group: _Group | None = None,
                 fan: list[tuple[str, str, str, str]] | None = None, ctl: Request | None = None) -> None:
        self.ctl = ctl
        self.routed = routed
        self.fallback = fallback
        self.node = node
        self.fields = fields
        self.full = full
        self.group = group
        self.fan = fan  # (sess key, resource or "", JID, resource skipped): recipients, looked up in the script
