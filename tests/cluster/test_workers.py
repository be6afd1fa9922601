"""``server.workers = N``: N processes share the listeners and are each a cluster node (issue 17)."""
from __future__ import annotations

import os
import re
import signal
import subprocess

from ..helpers import PASSWORD, slix, slix_close
from .procs import BIN, SHARED_REDIS, cluster_args, start_xmppd, status_rows, xmppctl

MAX_LOGINS = 40  # the kernel spreads connections by their addresses: 2 ** -39 to miss a worker


async def test_two_workers_share_the_port_serve_logins_and_stop_together_on_sigterm(tmp_path, prefix):
    args = cluster_args(SHARED_REDIS, prefix)
    data = tmp_path / "data"
    assert xmppctl("--set", f"server.data_dir={data}", "user", "add", "alice@localhost", "--password", PASSWORD, cwd=tmp_path).returncode == 0
    sup = await start_xmppd(data, *args, "--set", "server.workers=2", "--set", "cluster.node=w")
    try:
        for i in (1, 2):
            # (two cold starts side by side: on a loaded 2-core CI host each import took ~10 s)
            await sup.wait_log(rf"\[w-{i}\] xmppd\.app: xmppd serving localhost: c2s on port {sup.port}", timeout=60)
        await sup.wait_log(r"\[w-1\] xmppd\.cluster\.membership: node w-2 is up")
        await sup.wait_log(r"\[w-2\] xmppd\.cluster\.membership: node w-1 is up")
        r = xmppctl(*args, "cluster", "status", cwd=tmp_path)
        rows = status_rows(r.stdout)
        assert set(rows) == {"w-1", "w-2"}, r.stdout
        pids = {rows[n]["PID"] for n in rows}
        started = {m.group(1): m.group(2) for m in re.finditer(r"worker \d \(node (w-\d)\) started: pid (\d+)", sup.log)}
        assert started == {n: rows[n]["PID"] for n in rows} and str(sup.pid) not in pids

        # Logins through the one shared port land on both worker processes.
        served: set[str] = set()
        for i in range(MAX_LOGINS):
            client = await slix(sup.as_server(), f"alice@localhost/r{i}")
            await slix_close(client)
            m = await sup.wait_log(rf"\[(w-\d)\] \S+: .*bound alice@localhost/r{i} from")
            served.add(m.group(1))
            if served == {"w-1", "w-2"}:
                break
        assert served == {"w-1", "w-2"}

        sup.proc.send_signal(signal.SIGTERM)
        assert await sup.wait() == 0
        for name in ("w-1", "w-2"):
            assert f"[{name}] xmppd.app: xmppd stopped" in sup.log
        assert "all workers stopped" in sup.log
        r = xmppctl(*args, "cluster", "status", cwd=tmp_path)
        assert status_rows(r.stdout) == {}, r.stdout  # both left the registry on the way out
    finally:
        await sup.close()
    assert "Traceback" not in sup.log


async def test_a_crashed_worker_is_restarted(tmp_path, prefix):
    args = cluster_args(SHARED_REDIS, prefix)
    sup = await start_xmppd(tmp_path / "data", *args, "--set", "server.workers=2", "--set", "cluster.node=w")
    try:
        first = await sup.wait_log(r"worker 1 \(node w-1\) started: pid (\d+)")
        await sup.wait_log(r"\[w-1\] xmppd\.app: xmppd serving")
        os.kill(int(first.group(1)), signal.SIGKILL)
        await sup.wait_log(rf"worker 1 \(pid {first.group(1)}\) exited with code -9; restarting it in 1 s")
        # The same name comes back in a new process (once the killed one's entry has expired).
        await sup.wait_log(r"(?s)(\[w-1\] xmppd\.app: xmppd serving.*){2}", timeout=30)
        sup.proc.send_signal(signal.SIGINT)
        assert await sup.wait() == 0
    finally:
        await sup.close()


def test_several_workers_without_redis_url_is_a_configuration_error_naming_the_keys(tmp_path):
    for cmd in (["xmppd", "--set", "server.workers=2"], ["xmppctl", "--set", "server.workers=2", "check"]):
        r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert r.stderr == (
            f"{cmd[0]}: configuration error: server.workers = 2 (2 processes) needs cluster.redis_url: "
            "processes serving the same users must be one cluster\n"
        )
    assert not (tmp_path / "data").exists()
