"""The OpenAPI 3.1 document of the REST API.

``python -m xmppd.api.openapi`` prints the document of a server with the default configuration
and every installed feature loaded (no listener is opened; storage is a throw-away SQLite
file): that is ``docs/openapi.json``, which ``tests/api/test_openapi.py`` compares with what a
running server serves and routes.
"""
from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Iterable
from typing import Any

from .framework import Operation, openapi_document


def document(operations: Iterable[Operation]) -> dict[str, Any]:
    from .. import __version__

    return openapi_document(operations, version=__version__)


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


async def _default_document() -> dict[str, Any]:
    from ..app import Server
    from ..config import build
    from ..core.loader import discover

    with tempfile.TemporaryDirectory() as tmp:
        sections = {name: cls.Options for name, cls in discover().items()}
        cfg = build(
            {},
            sections,
            [f"server.data_dir={json.dumps(tmp)}", "listen.c2s=", "listen.c2s_tls=", "listen.http="],
        )
        server = Server(cfg)
        await server.start()
        try:
            return document(server.api.operations())
        finally:
            await server.stop()


def main() -> None:
    sys.stdout.write(dumps(asyncio.run(_default_document())))


if __name__ == "__main__":
    main()
