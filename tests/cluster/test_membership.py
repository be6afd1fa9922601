"""Nodes find each other through Redis, notice a node's loss, and survive Redis's (issue 17).

Every node here is a real ``xmppd`` process (the console script) on free ports, on the shared
Redis under a key prefix of the test's own, or on a private ``redis-server`` the test restarts.
"""
from __future__ import annotations

import asyncio
import re
import signal

import pytest

from xmppd.core import hooks as H

from ..helpers import PASSWORD, running_server, slix, slix_close
from .procs import SHARED_REDIS, STARTUP, cluster_args, start_xmppd, status_rows, xmppctl


async def test_two_nodes_see_each_other_in_cluster_status_and_a_killed_one_is_marked_down(tmp_path, prefix):
    args = cluster_args(SHARED_REDIS, prefix)
    a = await start_xmppd(tmp_path / "a", *args, "--set", "cluster.node=alpha")
    b = await start_xmppd(tmp_path / "b", *args, "--set", "cluster.node=beta")
    try:
        await a.wait_log(r"node beta is up", timeout=STARTUP)  # both processes just started
        await b.wait_log(r"node alpha is up", timeout=STARTUP)
        r = xmppctl(*args, "cluster", "status", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        rows = status_rows(r.stdout)
        assert set(rows) == {"alpha", "beta"}, r.stdout
        for name, proc in (("alpha", a), ("beta", b)):
            assert rows[name]["STATE"] == "up"
            assert rows[name]["PID"] == str(proc.pid)
            assert rows[name]["PORTS"] == f"c2s={proc.port}"
            assert rows[name]["SESSIONS"] == "0" and rows[name]["ROOMS"] == "0"
            assert rows[name]["HEARTBEAT"].endswith(" s ago")
        assert "2 nodes up" in r.stdout

        # A second process may not take a live node's name: it would serve as "beta" too.
        c = await start_xmppd(tmp_path / "c", *args, "--set", "cluster.node=beta")
        assert await c.wait() == 1
        assert f"cannot start: cluster.node 'beta' is in use by pid {b.pid}" in c.log

        b.proc.send_signal(signal.SIGKILL)
        await b.wait()
        await a.wait_log(r"node beta is down: no heartbeat for 4 s \(cluster\.node_timeout\)", timeout=15)
        rows = status_rows(xmppctl(*args, "cluster", "status", cwd=tmp_path).stdout)
        assert set(rows) == {"alpha"}  # the one that noticed removed it from the index
    finally:
        await a.close()
        await b.close()
    assert "Traceback" not in a.log + b.log


async def test_node_down_runs_the_hook_for_a_killed_node_and_says_graceful_for_a_stopped_one(tmp_path, prefix):
    args = cluster_args(SHARED_REDIS, prefix)
    overrides = [a.split("=", 1)[0] + "=" + a.split("=", 1)[1] for a in args if a != "--set"]
    events: asyncio.Queue[H.NodeEvent] = asyncio.Queue()
    ups: asyncio.Queue[H.NodeEvent] = asyncio.Queue()

    async def on_down(ev: H.NodeEvent) -> H.Flow:
        events.put_nowait(ev)
        return H.Flow.CONTINUE

    async def on_up(ev: H.NodeEvent) -> H.Flow:
        ups.put_nowait(ev)
        return H.Flow.CONTINUE

    async with running_server(tmp_path / "here", *overrides, "cluster.node=here") as server:
        server.hooks.add(H.NODE_DOWN, on_down)
        server.hooks.add(H.NODE_UP, on_up)
        for name, sig, graceful in (("killed", signal.SIGKILL, False), ("stopped", signal.SIGTERM, True)):
            other = await start_xmppd(tmp_path / name, *args, "--set", f"cluster.node={name}")
            try:
                up = await asyncio.wait_for(ups.get(), 30)
                assert (up.node, up.graceful) == (name, False)
                other.proc.send_signal(sig)
                ev = await asyncio.wait_for(events.get(), 30)  # (a kill is noticed after node_timeout=4 s; slack for a loaded host)
                assert (ev.node, ev.graceful) == (name, graceful)
                assert await other.wait() == (0 if graceful else -signal.SIGKILL)
            finally:
                await other.close()
        assert events.empty()  # once per lost node


async def test_a_node_keeps_serving_while_redis_is_down_and_re_registers_when_it_returns(tmp_path, private_redis):
    args = cluster_args(private_redis.url, "xmppd")
    data = tmp_path / "data"
    assert xmppctl("--set", f"server.data_dir={data}", "user", "add", "alice@localhost", "--password", PASSWORD, cwd=tmp_path).returncode == 0
    node = await start_xmppd(data, *args, "--set", "cluster.node=solo")
    try:
        await node.wait_log(f"joined the cluster on redis://127.0.0.1:{private_redis.port}/0 as node solo")
        private_redis.stop()
        await node.wait_log(r"Redis at redis://127\.0\.0\.1:\d+/0 is unreachable .*: node solo keeps serving its own users")
        # Local service does not depend on Redis: a client logs in during the outage.
        client = await slix(node.as_server(), "alice@localhost")
        await slix_close(client)
        private_redis.start()  # empty: the restart lost the registry
        await node.wait_log(r"Redis at \S+ answers again after [\d.]+ s: node solo re-registered \(its entry was lost\)", timeout=15)
        r = xmppctl(*args, "cluster", "status", cwd=tmp_path)
        assert status_rows(r.stdout)["solo"]["STATE"] == "up", r.stdout
        # logged once, however many retries ("Redis unreachable" is the router's line, for a bind)
        assert len(re.findall(r"Redis at \S+ is unreachable", node.log)) == 1
    finally:
        await node.close()
    assert "Traceback" not in node.log


def test_cluster_status_on_one_node_says_so(tmp_path):
    r = xmppctl("cluster", "status", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "one node (cluster.redis_url is empty)\n")
    assert not (tmp_path / "data").exists()


def test_cluster_status_and_check_name_an_unreachable_redis(tmp_path, private_redis):
    url = private_redis.url
    r = xmppctl("--set", f"cluster.redis_url={url}", "check", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    private_redis.stop()
    for verb in (["cluster", "status"], ["check"]):
        r = xmppctl("--set", f"cluster.redis_url={url}", *verb, cwd=tmp_path)
        assert r.returncode == 1
        assert r.stderr.startswith(f"xmppctl: cluster.redis_url {url} cannot be reached: ") and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("key,value,text", [
    ("cluster.node_timeout", "1", "cluster.node_timeout (1) must be at least three cluster.heartbeat (2)"),
    ("cluster.redis_url", "localhost:6379", "cluster.redis_url must start with redis://, rediss:// or unix://"),
    ("cluster.node_timeout", "0", "cluster.node_timeout must be more than 0"),
])
def test_bad_cluster_options_are_refused_naming_the_key(tmp_path, key, value, text):
    r = xmppctl("--set", f"{key}={value}", "check", cwd=tmp_path)
    assert r.returncode == 2 and text in r.stderr and r.stderr.count("\n") == 1, r.stderr


async def test_a_node_starts_without_its_redis_and_joins_when_redis_comes(tmp_path, private_redis):
    private_redis.stop()
    node = await start_xmppd(tmp_path / "data", *cluster_args(private_redis.url, "xmppd"), "--set", "cluster.node=early")
    try:
        await node.wait_log("xmppd serving localhost")  # local service first, whatever Redis does
        assert "is unreachable" in node.log
        private_redis.start()
        await node.wait_log(f"joined the cluster on {private_redis.url} as node early", timeout=15)
        r = xmppctl("--set", f"cluster.redis_url={private_redis.url}", "cluster", "status", cwd=tmp_path)
        assert status_rows(r.stdout)["early"]["STATE"] == "up", r.stdout
    finally:
        await node.close()
    assert "Traceback" not in node.log


async def test_after_a_redis_restart_no_live_node_is_declared_down_while_it_re_registers(tmp_path, private_redis):
    # node_timeout 6 s: the survivors give the others that long after a reconnection.
    args = ["--set", f"cluster.redis_url={private_redis.url}", "--set", "cluster.heartbeat=0.5", "--set", "cluster.node_timeout=6"]
    a = await start_xmppd(tmp_path / "a", *args, "--set", "cluster.node=a")
    b = await start_xmppd(tmp_path / "b", *args, "--set", "cluster.node=b")
    try:
        await a.wait_log("node b is up", timeout=STARTUP)  # both processes just started
        b.proc.send_signal(signal.SIGSTOP)  # b comes back later than a: the registry a finds lacks b
        private_redis.stop()
        private_redis.start()
        await a.wait_log(r"node a re-registered")  # on a reconnection, or on finding its entry gone
        await asyncio.sleep(1.5)  # a reads the registry three times meanwhile: b is not in it
        b.proc.send_signal(signal.SIGCONT)
        await b.wait_log(r"node b re-registered")
        r = xmppctl("--set", f"cluster.redis_url={private_redis.url}", "cluster", "status", cwd=tmp_path)
        assert set(status_rows(r.stdout)) == {"a", "b"}, r.stdout
        assert "node b is down" not in a.log and "node a is down" not in b.log
    finally:
        b.proc.send_signal(signal.SIGCONT)
        await a.close()
        await b.close()
