"""Fixtures shared by every test tier."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from xmppd.app import Server

from .helpers import running_server

pytest_plugins = ["tests.storage_fixtures"]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A server on free ports with TLS required (the default)."""
    async with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture
async def open_server(tmp_path: Path) -> AsyncIterator[Server]:
    """A server with in-band registration open."""
    async with running_server(tmp_path, "registration.open=true") as srv:
        yield srv


@pytest.fixture
def mariadb_url(mariadb_server) -> Iterator[str]:
    """A fresh, empty MariaDB database for a whole server (dropped afterwards)."""
    url = mariadb_server.create_database()
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        mariadb_server.drop_database(url)


@pytest.fixture(params=["sqlite", "mariadb"])
def storage_overrides(request, tmp_path) -> list[str]:
    """Config overrides running a server on SQLite (embedded default) or MariaDB."""
    if request.param == "sqlite":
        return []
    url = request.getfixturevalue("mariadb_url")
    return [f"storage.url={url}", "storage.auto_upgrade=true"]


@pytest.fixture
async def storage_server(tmp_path: Path, storage_overrides: list[str]) -> AsyncIterator[Server]:
    """A server (TLS required) on SQLite and, in a second run, on MariaDB."""
    async with running_server(tmp_path, *storage_overrides) as srv:
        yield srv
