"""Requests and answers between nodes over the bus (docs/cluster.md §4): control envelopes.

A node asks another one something that is not a stanza (XEP-0198: "close this session and hand
me what it held") by appending a *request* to that node's stream; the node asked reads it in
order with its stanzas, lets the feature that registered the kind (``ctx.add_control``,
``xmppd/core/control.py``) serve it, and appends the *answer* to the asking node's stream -- with
one Lua script that can move a registry entry to the asking node in the same step, so that every
stanza another node routes to that resource afterwards is behind the answer in the asking node's
stream. The asking node's reader hands the answer to the waiting request and waits until the
requester took what it carried (or gave up) before it reads on: the stanzas behind the answer
then find the session in place.

An answer nobody waits for any more (the request timed out, the requester's client left, or the
asking node died and a survivor drains its stream) goes to the kind's ``orphan`` handler, and
the registry entry it moved is removed again, so what it carried is never dropped.

Envelope fields (beside the stanza envelopes' ``k``): ``k`` = ``ctl``, ``c`` the kind, ``s``
``req`` or ``ans``, ``q`` the request's id, ``n``/``i`` the sending node and its incarnation,
``p`` the payload (JSON).
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

from ..core.control import Answer, ControlFailed
from .connection import unreachable_errors

if TYPE_CHECKING:
    from ..core.router import Router
    from .bus import Bus
    from .sessions import ClusterSessions

log = logging.getLogger(__name__)

CONTROL = "ctl"

# KEYS: the moved resource's sess hash, the asking node's nsess set, this node's nsess set (all
# three the answer's stream key when nothing moves). ARGV: "1" to move, resource, the entry's new
# value, bare JID, "<this node>|", the asking node's bus key, maxlen, then the envelope's
# field/value pairs. The move and the answer are one step: whoever reads the entry after it
# appends behind the answer.
_ANSWER = """
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[4])
  local keep = false
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    if string.sub(v, 1, #ARGV[5]) == ARGV[5] then keep = true end
  end
  if not keep then redis.call('SREM', KEYS[3], ARGV[4]) end
end
return redis.call('XADD', ARGV[6], 'MAXLEN', '~', ARGV[7], '*', unpack(ARGV, 8))
"""


class Reply:
    """An answer handed to its requester. ``done(taken)``: the requester installed what it
    carried (True) or gave up (False: the orphan handler takes it). ``expired``: the reader
    stopped waiting; the requester must not take it any more."""

    __slots__ = ("payload", "finished", "taken", "expired")

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.finished = asyncio.Event()
        self.taken = False
        self.expired = False

    def done(self, taken: bool) -> None:
        if not self.finished.is_set():
            self.taken = taken and not self.expired
            self.finished.set()


class Control:
    def __init__(self, router: "Router", sessions: "ClusterSessions", bus: "Bus", wait: float) -> None:
        self.router = router
        self.sessions = sessions
        self.bus = bus
        self.node = sessions.node
        self.incarnation = sessions.incarnation
        self.wait = wait  # how long a reader waits for a requester to take an answer
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._answer = bus.redis.register_script(_ANSWER)

    # ------------------------------------------------------------------ asking

    async def request(self, node: str, kind: str, payload: dict[str, Any], timeout: float) -> Reply:
        """Ask ``node``; the answer, which the caller must end with ``done``. Raises
        ``ControlFailed`` when Redis fails or no answer comes within ``timeout`` seconds."""
        q = secrets.token_hex(8)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[q] = fut
        fields = {"k": CONTROL, "c": kind, "s": "req", "q": q, "n": self.node, "i": self.incarnation, "p": json.dumps(payload)}
        try:
            await self.bus.redis.xadd(self.bus.keys.bus(node), fields, maxlen=self.bus.bus_max, approximate=True)
            return await asyncio.wait_for(fut, timeout)
        except unreachable_errors() as exc:
            raise ControlFailed(f"Redis: {exc or type(exc).__name__}") from None
        except TimeoutError:
            raise ControlFailed(f"node {node} did not answer within {timeout:g} s") from None
        finally:
            self._waiting.pop(q, None)

    # ------------------------------------------------------------------ the reader's side

    async def receive(self, fields: dict[str, str]) -> None:
        """A control envelope read from a bus (this node's, or a dead node's being drained)."""
        try:
            payload = json.loads(fields.get("p") or "{}")
        except ValueError:
            log.warning("a control envelope from %s carried no valid payload", fields.get("n"))
            return
        if fields.get("s") == "req":
            await self._serve(fields, payload)
        else:
            await self._answered(fields, payload)

    async def _serve(self, fields: dict[str, str], payload: dict[str, Any]) -> None:
        name = fields.get("c", "")
        asker, incarnation = fields.get("n", ""), fields.get("i", "")
        kind = self.router.controls.get(name)
        answer: Answer
        if kind is None:
            answer = Answer({"error": f"no control kind {name} here"})
        else:
            try:
                answer = await kind.serve(payload, asker)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("serving the control request %s of node %s failed", name, asker)
                answer = Answer({"error": "internal error"})
        keys = self.bus.keys
        stream = keys.bus(asker)
        move = answer.move
        body = dict(answer.payload)
        if move is not None:
            body["moved"] = {"bare": move.bare, "resource": move.resource}
        env = {"k": CONTROL, "c": name, "s": "ans", "q": fields.get("q", ""), "n": self.node, "i": self.incarnation, "p": json.dumps(body)}
        flat = [x for kv in env.items() for x in kv]
        if move is not None:
            value = f"{asker}|{incarnation}|{move.priority}|{int(move.available)}"
            k = [keys.sess(move.bare), keys.nsess(asker), keys.nsess(self.node)]
            a = ["1", move.resource, value, move.bare, f"{self.node}|"]
        else:
            k, a = [stream, stream, stream], ["0", "", "", "", ""]
        ok = True
        try:
            await self._answer(keys=k, args=[*a, stream, self.bus.bus_max, *flat])
        except Exception as exc:  # unreachable, or a script error: the server keeps what it had
            log.warning("could not answer the control request %s of node %s (Redis: %s)", name, asker, exc or type(exc).__name__)
            ok = False
        if answer.sent is not None:
            await answer.sent(ok)

    async def _answered(self, fields: dict[str, str], payload: dict[str, Any]) -> None:
        fut = self._waiting.pop(fields.get("q", ""), None)
        reply = Reply(payload)
        if fut is not None and not fut.done():
            fut.set_result(reply)
            try:
                await asyncio.wait_for(reply.finished.wait(), self.wait)
            except TimeoutError:
                reply.expired = True
            if reply.taken:
                return
        await self._orphan(fields.get("c", ""), payload)

    async def _orphan(self, name: str, payload: dict[str, Any]) -> None:
        """Nobody takes this answer: undo the registry move it made, then let its kind keep what
        it carried (a dead asking node's entries are removed by its cleanup anyway)."""
        moved = payload.get("moved")
        if isinstance(moved, dict):
            try:
                await self.sessions.drop_entry(str(moved.get("bare")), str(moved.get("resource")), self.node, self.incarnation)
            except unreachable_errors() as exc:
                log.warning("could not remove a moved session's entry (Redis: %s)", exc or type(exc).__name__)
        kind = self.router.controls.get(name)
        if kind is not None and kind.orphan is not None:
            try:
                await kind.orphan(payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling an answer to control request %s that nobody waited for failed", name)

    def cancel_all(self) -> None:
        for fut in self._waiting.values():
            fut.cancel()
        self._waiting.clear()
