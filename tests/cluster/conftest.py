"""Fixtures of the cluster tests: the shared Redis under a private key prefix, a private Redis."""
from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from .procs import SHARED_REDIS, free_port, wait_port


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis (127.0.0.1:6379); its keys are removed after."""
    import redis

    client = redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        # Never a skip: the cluster is part of the product (scripts/check_services.py says so too).
        pytest.fail(f"Redis is not reachable at {SHARED_REDIS} ({exc}): the cluster tests need it")
    name = f"xt{uuid.uuid4().hex[:10]}"
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


class PrivateRedis:
    """A ``redis-server`` of this test's own, on a free port, without persistence: a restart loses
    everything, as a crashed or replaced Redis does."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: the Redis-restart tests start their own")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    r = PrivateRedis()
    r.start()
    try:
        yield r
    finally:
        r.stop()
