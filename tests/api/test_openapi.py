"""The OpenAPI document: what the server serves is what it routes (both come from the same
operations), docs/openapi.json is that document for the default features, and a schemathesis
run against the live server finds every answer documented (status, content type, schema) and
no server error, with bounded examples per operation."""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from xmppd.api.openapi import dumps

from .support import ADMIN, api_server

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


async def test_served_document_is_the_routes_and_the_file_in_the_repository(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        status, served = await api.call("GET", "/api/v1/openapi.json", token=None)
        assert status == 200 and served["openapi"] == "3.1.0"
        routed = {(op.method.lower(), "/api/v1" + op.path) for op in api.server.api.operations()}
        documented = {(m, p) for p, methods in served["paths"].items() for m in methods}
        assert routed == documented
        ids = [e["operationId"] for methods in served["paths"].values() for e in methods.values()]
        assert len(ids) == len(set(ids))
        assert dumps(served) == DOC.read_text(), (
            "docs/openapi.json differs from the served document: run `python -m xmppd.api.openapi > docs/openapi.json`"
        )


async def test_a_read_token_sees_only_get_operations_as_read() -> None:
    doc = json.loads(DOC.read_text())
    for path, methods in doc["paths"].items():
        for method, entry in methods.items():
            assert entry["x-scope"] == ("read" if method == "get" else "admin"), (method, path)
            assert "401" in entry["responses"] and "403" in entry["responses"]


# ------------------------------------------------------------------ schemathesis


@contextlib.contextmanager
def server_thread(tmp_path: Path) -> Iterator[str]:
    """A server with the default features in a thread of its own (schemathesis calls are
    synchronous); yields its base URL."""
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        async with api_server(tmp_path) as api:
            from tests.helpers import add_user

            for name in ("alice", "bob"):
                await add_user(api.server, name)
            ready["url"] = api.base
            started.set()
            await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to the test below
            ready["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="xmppd-schemathesis", daemon=True)
    thread.start()
    started.wait(60)
    if "error" in ready:
        raise ready["error"]
    try:
        yield ready["url"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_thread(tmp_path_factory.mktemp("schemathesis")) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(live: str) -> Any:
    schema = schemathesis.openapi.from_dict(json.loads(DOC.read_text()))
    schema.config.update(base_url=live)
    return schema


# Up to 20 requests for each of the 65 operations in one test: it grows with the API and went past
# the default 120 s on a loaded 2-core machine (pytest-timeout then fires inside one operation's
# run, which Hypothesis reports as "unreliable results" of whichever operation was running).
@pytest.mark.timeout(300)
def test_every_operation_answers_as_documented(api_schema: Any, live: str) -> None:
    """Every operation, up to 20 generated requests each (valid and invalid ones), with an
    admin token: no 5xx, every status and body as the document says."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def run(case: Any) -> None:
            # positive_data_acceptance is left out: some rules are the services' own, beyond
            # what a JSON Schema says (a JID's RFC 7622 preparation, the configured password
            # length, an account that must exist), and they answer 400/404/422 with their code.
            case.call_and_validate(base_url=live, headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
