"""Password guessing over real sockets: limits keyed by the prepared account, and no stranger
can lock an owner out (core/limits.AuthThrottle, docs/security.md "Logins")."""
from __future__ import annotations

import asyncio
import base64

import pytest

from ..helpers import PASSWORD, RawClient, add_user, running_server

pytestmark = pytest.mark.interop

OWNER = "127.0.0.1"
STRANGER = "127.0.0.2"
# The account delay is kept short here: its length is not what these tests are about.
FAST = ("c2s.require_tls=false", "c2s.auth_failures_per_ip=10", "c2s.auth_delay_max=0.05")


async def plain_attempt(srv, user: str, password: str, *, source: str = OWNER) -> str:
    """One SASL PLAIN attempt on a fresh connection from ``source``: "success" or the
    <failure/> condition."""
    raw = await RawClient.connect(srv, source=source)
    try:
        await raw.open_stream()
        raw.buffer = b""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        data = await raw.sasl_answer()
    finally:
        raw.close()
    if b"<success" in data:
        return "success"
    for condition in ("temporary-auth-failure", "not-authorized", "account-disabled", "malformed-request"):
        if f"<{condition}".encode() in data:
            return condition
    raise AssertionError(f"unexpected answer {data!r}")


async def test_case_variants_of_a_username_count_against_one_account(tmp_path):
    async with running_server(tmp_path, *FAST, "c2s.auth_failures_per_account=3") as srv:
        await add_user(srv, "carol")
        for name in ("Carol", "CAROL", "cArOl"):  # one account, three spellings
            assert await plain_attempt(srv, name, "wrong") == "not-authorized"
        # The address has used up its guesses at carol, however it spelled her name.
        assert await plain_attempt(srv, "carol", PASSWORD) == "temporary-auth-failure"
        assert await plain_attempt(srv, "Carol", PASSWORD) == "temporary-auth-failure"


async def test_a_strangers_failures_do_not_lock_the_owner_out(tmp_path):
    async with running_server(tmp_path, *FAST) as srv:  # 5 failures per account and address
        await add_user(srv, "carol")
        outcomes = [await plain_attempt(srv, "carol", f"guess{i}", source=STRANGER) for i in range(8)]
        assert outcomes == ["not-authorized"] * 5 + ["temporary-auth-failure"] * 3
        # The stranger is stopped, even with the right password ...
        assert await plain_attempt(srv, "carol", PASSWORD, source=STRANGER) == "temporary-auth-failure"
        # ... and the owner, from an address that has not failed, still gets in.
        assert await plain_attempt(srv, "carol", PASSWORD, source=OWNER) == "success"
        assert await plain_attempt(srv, "Carol", PASSWORD, source=OWNER) == "success"


async def test_an_address_that_failed_too_often_is_refused_for_every_account(tmp_path):
    async with running_server(tmp_path, *FAST, "c2s.auth_failures_per_ip=4") as srv:
        await add_user(srv, "carol")
        for user in ("u1", "u2", "u3", "u4"):
            assert await plain_attempt(srv, user, "x", source=STRANGER) == "not-authorized"
        assert await plain_attempt(srv, "carol", PASSWORD, source=STRANGER) == "temporary-auth-failure"
        assert await plain_attempt(srv, "carol", PASSWORD, source=OWNER) == "success"


async def scram_attempt(srv, user: str, password: str) -> str:
    """One SCRAM-SHA-256 exchange (scramp as the client): "success" or the <failure/> condition."""
    from scramp import ScramClient

    client = ScramClient(["SCRAM-SHA-256"], user, password)
    raw = await RawClient.connect(srv)
    try:
        await raw.open_stream()
        raw.buffer = b""
        first = base64.b64encode(client.get_client_first().encode()).decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>")
        while b"</challenge>" not in raw.buffer and b"</failure>" not in raw.buffer:
            raw.buffer += await asyncio.wait_for(raw.reader.read(65536), 10)
        data = raw.buffer
        if b"</failure>" in data:
            return "temporary-auth-failure" if b"<temporary-auth-failure" in data else data.decode()
        challenge = data.split(b"<challenge", 1)[1].split(b">", 1)[1].split(b"</challenge>", 1)[0]
        client.set_server_first(base64.b64decode(challenge).decode())
        raw.buffer = b""
        final = base64.b64encode(client.get_client_final().encode()).decode()
        await raw.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>")
        while b"</failure>" not in raw.buffer and b"<success" not in raw.buffer:
            raw.buffer += await asyncio.wait_for(raw.reader.read(65536), 10)
        data = raw.buffer
    finally:
        raw.close()
    if b"<success" in data:
        return "success"
    return "not-authorized" if b"<not-authorized" in data else data.decode()


async def test_scram_failures_under_case_variants_count_against_one_account(tmp_path):
    async with running_server(tmp_path, *FAST, "c2s.auth_failures_per_account=2") as srv:
        await add_user(srv, "carol")
        assert await scram_attempt(srv, "Carol", "wrong") == "not-authorized"
        assert await scram_attempt(srv, "CAROL", "wrong") == "not-authorized"
        assert await scram_attempt(srv, "carol", PASSWORD) == "temporary-auth-failure"
