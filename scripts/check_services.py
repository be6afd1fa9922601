"""Fail loudly when a service the test suite needs is not reachable."""
from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

url = os.environ.get("XMPPD_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")
parts = urlsplit(url.replace("mysql+aiomysql", "mysql"))
host, port = parts.hostname or "127.0.0.1", parts.port or 3306
try:
    socket.create_connection((host, port), timeout=5).close()
except OSError as exc:
    sys.exit(
        f"MariaDB/MySQL is not reachable at {host}:{port} ({exc}). The storage tests need it.\n"
        "Start it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd\n"
        "or point XMPPD_TEST_MYSQL_URL at another server."
    )
print(f"MariaDB reachable at {host}:{port}")

# The cluster tests (tests/cluster) use the Redis at 127.0.0.1:6379 under a key prefix per test.
redis_url = os.environ.get("XMPPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
parts = urlsplit(redis_url)
host, port = parts.hostname or "127.0.0.1", parts.port or 6379
try:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        reply = sock.recv(64)
except OSError as exc:
    reply = str(exc).encode()
if not reply.startswith(b"+PONG"):
    sys.exit(
        f"Redis is not reachable at {host}:{port} ({reply.decode(errors='replace').strip()}). The cluster tests need it.\n"
        "Start it with: redis-server --daemonize yes --save ''\n"
        "or point XMPPD_TEST_REDIS_URL at another server."
    )
print(f"Redis reachable at {host}:{port}")
