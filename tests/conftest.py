"""Fixtures shared by every test tier."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

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
