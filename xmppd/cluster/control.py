"""Requests and answers between nodes over the bus (docs/cluster.md §4): control envelopes.

A node asks another one something that is not a stanza (XEP-0198: "close this session and hand
me what it held") by appending a *request* to that node's stream. The request goes through the
node's one outbox, behind what this node's senders published before it, and one Lua script may
move a registry entry to the asking node in the same step as the append (``Move``): from then on
every node routes that resource's stanzas to the asking node, which holds them back (the
``moving`` buffer of ``RemoteSessions``) until the session is in place; everything routed before
is in the asked node's stream before the request, so the asked node has delivered it to the
session it hands over. The asked node reads the request in order with its stanzas, lets the
feature that registered the kind (``ctx.add_control``, ``xmppd/core/control.py``) serve it, and
appends the *answer* to the asking node's stream.

An answer nobody waits for any more (the request timed out, or the asking node died and a
survivor drains its stream) goes to the kind's ``orphan`` handler, and the entry it moved is
removed, so what it carried is never dropped. A request that fails puts the moved entry back.

Envelope fields (beside the stanza envelopes' ``k``): ``k`` = ``ctl``, ``c`` the kind, ``s``
``req`` or ``ans``, ``q`` the request's id, ``n``/``i`` the sending node and its incarnation,
``j`` the full JID whose entry the request moved (echoed in the answer), ``p`` the payload (JSON).
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

from ..core.control import Answer, ControlFailed, Move
from ..jid import JID, JIDError
from .connection import unreachable_errors

if TYPE_CHECKING:
    from .remote import RemoteSessions

log = logging.getLogger(__name__)

CONTROL = "ctl"

# KEYS: the sess hash of the moved resource, the asking node's nsess set, the holder's nsess set,
# the asked node's bus (the first three are the bus key when nothing moves). ARGV: "1" to move,
# resource, the expected holder "<node>|<incarnation>|", the asking node's "<node>|<inc>|", bare
# JID, the holder's "<node>|", maxlen, then the envelope's field/value pairs. Returns false (the
# entry is not the holder's: nothing sent), the entry's previous value, or 1 (nothing moved).
_REQUEST = """
local cur = false
if ARGV[1] == '1' then
  cur = redis.call('HGET', KEYS[1], ARGV[2])
  if not cur or string.sub(cur, 1, #ARGV[3]) ~= ARGV[3] then return false end
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[4] .. string.sub(cur, #ARGV[3] + 1))
  redis.call('SADD', KEYS[2], ARGV[5])
  local keep = false
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    if string.sub(v, 1, #ARGV[6]) == ARGV[6] then keep = true end
  end
  if not keep then redis.call('SREM', KEYS[3], ARGV[5]) end
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', unpack(ARGV, 8))
if cur then return cur end
return 1
"""

# KEYS: sess hash, this node's nsess set, the holder's nsess set, the holder's node hash. ARGV:
# resource, this node's "<node>|<inc>|", the previous value, bare JID, this node's "<node>|", the
# holder's incarnation. A failed move is undone: the entry goes back to its holder if it is still
# ours and the holder still lives; if the holder died meanwhile (its cleanup may be over), it goes.
_RESTORE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2]) == ARGV[2] then
  if redis.call('HGET', KEYS[4], 'incarnation') == ARGV[6] then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
    redis.call('SADD', KEYS[3], ARGV[4])
  else
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
end
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  if string.sub(v, 1, #ARGV[5]) == ARGV[5] then return 1 end
end
redis.call('SREM', KEYS[2], ARGV[4])
return 1
"""


class Request:
    """A request waiting in the outbox; ``sent`` gets the script's result (or an exception)."""

    __slots__ = ("node", "fields", "move", "sent")

    def __init__(self, node: str, fields: dict[str, str], move: Move | None) -> None:
        self.node = node
        self.fields = fields
        self.move = move
        self.sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class Reply:
    """An answer; ``previous``: the moved entry's value before the request moved it."""

    __slots__ = ("payload", "previous")

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.previous: str | None = None


class Control:
    def __init__(self, remote: "RemoteSessions") -> None:
        self.remote = remote
        self.sessions = remote.sessions
        self.bus = remote.bus
        self.node = remote.node
        self.incarnation = remote.sessions.incarnation
        self.owner = f"{self.node}|{self.incarnation}|"
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        redis = self.bus.redis
        self._request = redis.register_script(_REQUEST)
        self._restore = redis.register_script(_RESTORE)

    # ------------------------------------------------------------------ asking

    async def request(self, node: str, kind: str, payload: dict[str, Any], timeout: float, move: Move | None = None) -> Reply:
        """Ask ``node``, moving ``move``'s entry here as the request is sent. Raises
        ``ControlFailed`` when Redis fails, the entry is not the holder's, or no answer comes
        within ``timeout`` seconds; a move made is then undone (``restore``) by the caller."""
        q = secrets.token_hex(8)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[q] = fut
        fields = {"k": CONTROL, "c": kind, "s": "req", "q": q, "n": self.node, "i": self.incarnation, "p": json.dumps(payload)}
        if move is not None:
            fields["j"] = f"{move.bare}/{move.resource}"
        req = Request(node, fields, move)
        self.remote.queue_request(req)
        previous: str | None = None
        try:
            async with asyncio.timeout(timeout):
                result = await req.sent
                if isinstance(result, BaseException):
                    raise ControlFailed(f"Redis: {result or type(result).__name__}")
                if not result:
                    raise ControlFailed(f"node {node} does not hold that session any more")
                if isinstance(result, str):
                    previous = result
                reply = await fut
                reply.previous = previous
                return reply
        except TimeoutError:
            raise ControlFailed(f"node {node} did not answer within {timeout:g} s", previous) from None
        finally:
            self._waiting.pop(q, None)
            if not req.sent.done():
                req.sent.cancel()  # still in the outbox: it will not be sent

    def script(self, req: Request, pipe: Any) -> Any:
        """Queue ``req``'s script in the outbox's pipeline."""
        keys = self.bus.keys
        stream = keys.bus(req.node)
        move = req.move
        if move is not None:
            holder_node = move.holder.split("|", 1)[0]
            k = [keys.sess(move.bare), keys.nsess(self.node), keys.nsess(holder_node), stream]
            a = ["1", move.resource, move.holder, self.owner, move.bare, f"{holder_node}|"]
        else:
            k, a = [stream, stream, stream, stream], ["0", "", "", "", "", ""]
        flat = [x for kv in req.fields.items() for x in kv]
        return self._request(keys=k, args=[*a, self.bus.bus_max, *flat], client=pipe)

    async def restore(self, move: Move, previous: str) -> None:
        """Undo a move that led nowhere: the entry goes back to its holder if it is still ours."""
        holder_node, holder_inc = move.holder.split("|")[:2]
        keys = self.bus.keys
        try:
            await self._restore(
                keys=[keys.sess(move.bare), keys.nsess(self.node), keys.nsess(holder_node), keys.node(holder_node)],
                args=[move.resource, self.owner, previous, move.bare, f"{self.node}|", holder_inc],
            )
        except unreachable_errors() as exc:
            log.warning("could not give %s/%s back to its node (Redis: %s)", move.bare, move.resource, exc or type(exc).__name__)

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
            return
        fut = self._waiting.pop(fields.get("q", ""), None)
        if fut is not None and not fut.done():
            fut.set_result(Reply(payload))
            return
        await self.orphan(fields.get("c", ""), payload, fields.get("j"))

    async def _serve(self, fields: dict[str, str], payload: dict[str, Any]) -> None:
        name = fields.get("c", "")
        asker = fields.get("n", "")
        kind = self.remote.router.controls.get(name)
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
        env = {"k": CONTROL, "c": name, "s": "ans", "q": fields.get("q", ""), "n": self.node, "i": self.incarnation,
               "p": json.dumps(answer.payload)}
        if fields.get("j"):
            env["j"] = fields["j"]
        ok = True
        try:
            await self.bus.redis.xadd(self.bus.keys.bus(asker), env, maxlen=self.bus.bus_max, approximate=True)
        except Exception as exc:  # unreachable, or refused: the server keeps what it had
            log.warning("could not answer the control request %s of node %s (Redis: %s)", name, asker, exc or type(exc).__name__)
            ok = False
        if answer.sent is not None:
            await answer.sent(ok)

    async def orphan(self, name: str, payload: dict[str, Any], moved: str | None) -> None:
        """Nobody takes this answer: the entry its request moved here is removed (if still ours),
        what was held back for it goes on as for a gone resource, and its kind keeps what it
        carried (a dead asking node's entries are removed by its cleanup anyway)."""
        full = None
        if moved:
            try:
                full = JID.parse(moved)
            except JIDError:
                full = None
        if full is not None:
            try:
                await self.sessions.drop_entry(str(full.bare), full.resource or "", self.node, self.incarnation)
            except unreachable_errors() as exc:
                log.warning("could not remove a moved session's entry (Redis: %s)", exc or type(exc).__name__)
        kind = self.remote.router.controls.get(name)
        if kind is not None and kind.orphan is not None:
            try:
                await kind.orphan(payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling an answer to control request %s that nobody waited for failed", name)
        if full is not None:
            await self.remote.end_move(full, None)

    def cancel_all(self) -> None:
        for fut in self._waiting.values():
            fut.cancel()
        self._waiting.clear()
