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
