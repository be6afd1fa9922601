"""The outbox's batch script (xmppd/cluster/bus.py ``_BATCH``) against a real Redis, the shared
one under a key prefix of the test's own: every kind of envelope as one op, in order, with the
results the outbox settles by."""
from __future__ import annotations

from typing import Any

import pytest

from xmppd.cluster.bus import Bus, op_fan, op_full, op_live, op_node, pack, unpack
from xmppd.cluster.connection import connect
from xmppd.cluster.keys import Keys

from .procs import SHARED_REDIS


@pytest.fixture
async def redis(prefix: str) -> Any:
    client = connect(SHARED_REDIS, timeout=5)
    yield client
    await client.aclose()


async def test_one_script_appends_every_kind_of_envelope_in_order(redis, prefix):
    keys = Keys(prefix)
    bus = Bus(redis, SHARED_REDIS, keys, "alpha", 1000, 2.0)
    bob, carol = keys.sess("bob@x"), keys.sess("carol@x")
    await redis.hset(bob, mapping={"phone": "beta|i1|0|1", "tab": "gamma|i2|5|1", "desk": "alpha|i0|0|1"})
    await redis.hset(carol, mapping={"pc": "beta|i3|0|1", "away": "gamma|i4|0|0"})

    def env(n: int) -> str:
        return pack({"k": "message", "f": "alice@x/r", "x": f"<message id='{n}'/>"})["env"]

    ops = [
        op_full(bob, "phone", env(1)),  # beta
        op_full(bob, "desk", env(2)),  # here: not appended
        op_full(bob, "gone", env(3)),  # bound nowhere
        op_node("gamma", env(4)),
        op_fan(env(5), [(bob, "tab", "bob@x/tab", ""), (carol, "", "carol@x", ""), (bob, "", "bob@x", "phone")]),
        op_full(bob, "phone", env(6)),
    ]
    assert await bus.publish_batch(ops) == ["beta", "alpha", "", 1, 2, "beta"]

    async def read(node: str) -> list[dict[str, str]]:
        return [unpack(f) for _, f in await redis.xrange(keys.bus(node))]

    beta, gamma = await read("beta"), await read("gamma")
    assert [e["x"] for e in beta] == ["<message id='1'/>", "<message id='5'/>", "<message id='6'/>"]  # in order
    # The fan-out: one envelope per node holding any; beta has carol (available) and bob's
    # phone is the resource not counted; gamma has bob's tab (full) and bob (bare, tab).
    assert (beta[1]["r"], beta[1]["b"]) == ("", "carol@x")
    assert [e["x"] for e in gamma] == ["<message id='4'/>", "<message id='5'/>"]
    assert (gamma[1]["r"], gamma[1]["b"]) == ("bob@x/tab", "bob@x")
    assert await redis.exists(keys.bus("alpha")) == 0
    # An envelope that cannot be an op goes by its own script, grouped the same way.
    assert await bus.publish_fan([(bob, "tab", "bob@x/tab", ""), (carol, "", "carol@x", "")], {"k": "presence", "x": "<presence/>"}) == 2
    assert [(e["x"], e["r"], e["b"]) for e in (await read("gamma"))[2:]] == [("<presence/>", "bob@x/tab", "")]
    assert [(e["x"], e["r"], e["b"]) for e in (await read("beta"))[3:]] == [("<presence/>", "", "carol@x")]


async def test_an_envelope_for_a_lease_owner_is_appended_only_while_that_node_is_registered(redis, prefix):
    """Op ``L`` (a room's or a queue's owner, ``RemoteSessions.to_owner``): a node that left has
    had its stream drained once by a survivor and nobody reads it, so nothing is appended there
    and the result 0 sends the stanza to its fallback (the owner located again)."""
    keys = Keys(prefix)
    bus = Bus(redis, SHARED_REDIS, keys, "alpha", 1000, 2.0)
    await redis.hset(keys.node("beta"), mapping={"at": "1"})
    env = pack({"k": "iq", "f": "alice@x/r", "x": "<iq id='1'/>", "s": "room"})["env"]
    ops = [op_live(keys.node("beta"), "beta", env), op_live(keys.node("gamma"), "gamma", env)]
    assert await bus.publish_batch(ops) == [1, 0]
    assert await redis.xlen(keys.bus("beta")) == 1
    assert await redis.exists(keys.bus("gamma")) == 0
    # The same through the script for an envelope that cannot be an op.
    assert await bus.publish_to_live("gamma", {"k": "iq", "x": "<iq/>", "s": "room"}) is None
    assert await bus.publish_to_live("beta", {"k": "iq", "x": "<iq/>", "s": "room"}) is not None
