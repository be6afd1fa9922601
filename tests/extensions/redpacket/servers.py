"""A test server with red packets and only the features they use (others are disabled, so a
feature under construction elsewhere cannot break these tests)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from xmppd.app import Server
from xmppd.core.loader import discover

from ...helpers import running_server

NEEDED = {"adhoc", "disco", "redpacket", "ping", "presence", "roster"}


def disabled_option(keep: set[str] = frozenset()) -> str:
    names = sorted(n for n in discover() if n not in NEEDED | set(keep))
    return f"features.disabled={json.dumps(names)}"


@contextlib.asynccontextmanager
async def rp_running_server(data_dir: Path, *overrides: str, muc: bool = False, keep: frozenset[str] = frozenset(),
                            **kw: Any) -> AsyncIterator[Server]:
    async with running_server(data_dir, disabled_option(({"muc"} if muc else set()) | keep), *overrides, **kw) as srv:
        yield srv


#: Tests of other rules send one-to-one packets between users who are not contacts; the
#: contacts-only rule (redpacket.contacts_only, on by default) has its own tests.
STRANGERS = "redpacket.contacts_only=false"
