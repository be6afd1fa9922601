"""Logins with the app's identity (docs/auth.md): JWT over SASL PLAIN and OAUTHBEARER
(RFC 7628), refusals, password logins beside them, and the app's HTTP auth callback."""
from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..helpers import PASSWORD, add_user, running_server, slix, slix_close
from .test_sasl_plus import HEADER, _connect, _read_until

pytestmark = pytest.mark.interop
SECRET = "s3cret-shared-with-the-backend-32bytes!"


def token(key=SECRET, alg="HS256", **claims) -> str:
    now = int(time.time())
    body = {"jid": "alice", "exp": now + 600, "iat": now, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg)


async def plain(server, user: str, secret: str, mode: str = "starttls") -> bytes:
    """One SASL PLAIN attempt over TLS; the server's answer (<success/> or <failure/>)."""
    return await _sasl(server, mode, "PLAIN", f"\0{user}\0{secret}".encode())


async def oauthbearer(server, tok: str, mode: str = "starttls", authzid: str = "") -> bytes:
    gs2 = f"n,a={authzid}," if authzid else "n,,"
    return await _sasl(server, mode, "OAUTHBEARER", f"{gs2}\x01host=localhost\x01auth=Bearer {tok}\x01\x01".encode())


async def _sasl(server, mode: str, mech: str, initial: bytes) -> bytes:
    reader, writer, buf = await _connect(server, mode)
    try:
        writer.write(HEADER.encode())
        features = await _read_until(reader, b"</stream:features>", buf)
        if f"<mechanism>{mech}</mechanism>".encode() not in features:
            return b"not offered: " + features
        writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{base64.b64encode(initial).decode()}</auth>".encode())
        while True:
            while not any(t in buf for t in (b"</success>", b"<success", b"</failure>", b"</challenge>")):
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                if not chunk:
                    raise EOFError(bytes(buf))
                buf += chunk
            data = bytes(buf)
            buf.clear()
            if b"<challenge" in data:
                # RFC 7628 §3.2.3: acknowledge the error with %x01; the failure follows.
                assert mech == "OAUTHBEARER"
                status = base64.b64decode(data.split(b"<challenge", 1)[1].split(b">", 1)[1].split(b"<", 1)[0])
                assert b'"status"' in status
                writer.write(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AQ==</response>")
                continue
            if b"<success" in data:
                writer.write(HEADER.encode())
                await _read_until(reader, b"</stream:features>", buf)
                writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
                return data + await _read_until(reader, b"</iq>", buf)
            return data
    finally:
        writer.close()


def _no_token_logged(caplog, *secrets: str) -> None:
    text = "\n".join(r.getMessage() for r in caplog.records)
    for s in secrets:
        assert s not in text
        sig = s.split(".")[-1]
        assert len(sig) < 16 or sig not in text  # not even the signature part


# ------------------------------------------------------------------------------ JWT, HS256


async def test_hs256_token_as_plain_password_creates_the_account_then_logs_into_it(tmp_path: Path) -> None:
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}") as server:
        assert await server.accounts.get("alice", "localhost") is None
        tok = token()
        c = await slix(server, "alice@localhost", tok, mech="PLAIN")
        assert str(c.boundjid.bare) == "alice@localhost"
        await slix_close(c)
        account = await server.accounts.get("alice", "localhost")
        assert account is not None
        c = await slix(server, "alice@localhost", token(), mech="PLAIN")
        assert str(c.boundjid.bare) == "alice@localhost"
        await slix_close(c)
        assert (await server.accounts.get("alice", "localhost")).id == account.id  # the same account


async def test_token_for_a_bare_jid_claim_and_direct_tls(tmp_path: Path) -> None:
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}") as server:
        c = await slix(server, "bob@localhost", token(jid="bob@localhost"), mech="PLAIN", mode="direct")
        assert str(c.boundjid.bare) == "bob@localhost"
        await slix_close(c)


async def test_token_naming_someone_else_is_refused(tmp_path: Path) -> None:
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}") as server:
        answer = await plain(server, "mallory", token(jid="alice"))
        assert b"<not-authorized/>" in answer


async def test_jwt_create_accounts_off_refuses_unknown_users(tmp_path: Path) -> None:
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}", "auth.jwt_create_accounts=false") as server:
        assert b"<not-authorized/>" in await plain(server, "alice", token())
        await add_user(server, "alice")
        assert b"<success" in await plain(server, "alice", token())


async def test_reserved_name_in_a_token_creates_no_account(tmp_path: Path) -> None:
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}") as server:
        assert b"<not-authorized/>" in await plain(server, "admin", token(jid="admin"))
        assert await server.accounts.get("admin", "localhost") is None


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "why, make",
    [
        ("expired", lambda: token(exp=int(time.time()) - 3600)),
        ("not yet valid", lambda: token(nbf=int(time.time()) + 3600)),
        ("wrong audience", lambda: token(aud="another-app", iss="https://app.example")),
        ("wrong issuer", lambda: token(aud="chat", iss="https://evil.example")),
        ("no expiry", lambda: token(exp=None)),
        ("tampered", lambda: (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"))(token(aud="chat", iss="https://app.example"))),
        ("alg none", lambda: jwt.encode({"jid": "alice", "exp": int(time.time()) + 600, "aud": "chat", "iss": "https://app.example"}, None, algorithm="none") + "x"),
        ("other key", lambda: token(key="another-secret-of-at-least-32-bytes!!", aud="chat", iss="https://app.example")),
    ],
)
async def test_bad_tokens_are_refused_with_not_authorized_and_logged_without_the_token(tmp_path: Path, caplog, why, make) -> None:
    caplog.set_level(logging.INFO, logger="xmppd")
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}", "auth.jwt_audience=chat", "auth.jwt_issuer=https://app.example") as server:
        assert b"<success" in await plain(server, "alice", token(aud="chat", iss="https://app.example"))  # the good one works
        bad = make()
        assert b"<not-authorized/>" in await plain(server, "alice", bad), why
        assert b"<not-authorized/>" in await oauthbearer(server, bad), why
        assert any(r.name == "xmppd.auth" and "token refused" in r.getMessage() for r in caplog.records)
        _no_token_logged(caplog, bad)


async def test_alg_none_unsigned_token_is_refused(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="xmppd")
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}") as server:
        bad = jwt.encode({"jid": "alice", "exp": int(time.time()) + 600}, None, algorithm="none")
        # An unsigned compact JWS ends with "."; PLAIN carries it as it is.
        assert b"<not-authorized/>" in await plain(server, "alice", bad)
        assert b"<not-authorized/>" in await oauthbearer(server, bad)
        assert any("token refused" in r.getMessage() for r in caplog.records)


def _keypair(kind: str, tmp_path: Path):
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS256" else ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / f"{kind}.pub.pem"
    pem = priv.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub.write_bytes(pem)
    return priv, pub, pem


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_public_key_tokens_log_in_with_plain_and_oauthbearer(tmp_path: Path, alg: str) -> None:
    priv, pub, _ = _keypair(alg, tmp_path)
    async with running_server(tmp_path, f"auth.jwt_public_key={pub.as_posix()}") as server:
        c = await slix(server, "alice@localhost", token(key=priv, alg=alg), mech="PLAIN")
        assert str(c.boundjid.bare) == "alice@localhost"
        await slix_close(c)
        for mode in ("starttls", "direct"):
            answer = await oauthbearer(server, token(key=priv, alg=alg, jid="carol"), mode)
            assert b"<success" in answer and b"carol@localhost/" in answer
            answer = await oauthbearer(server, token(key=priv, alg=alg, jid="carol"), mode, authzid="carol@localhost")
            assert b"<success" in answer


async def test_hs256_token_signed_with_the_public_key_is_refused(tmp_path: Path, caplog) -> None:
    """Algorithm confusion: the public key (which everyone may know) used as an HMAC secret."""
    caplog.set_level(logging.INFO, logger="xmppd")
    priv, pub, pem = _keypair("RS256", tmp_path)
    async with running_server(tmp_path, f"auth.jwt_public_key={pub.as_posix()}") as server:
        import hashlib
        import hmac
        import json

        def b64(b: bytes) -> str:
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

        head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64(json.dumps({"jid": "alice", "exp": int(time.time()) + 600}).encode())
        sig = b64(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
        forged = f"{head}.{body}.{sig}"
        assert b"<not-authorized/>" in await plain(server, "alice", forged)
        assert b"<not-authorized/>" in await oauthbearer(server, forged)
        assert b"<not-authorized/>" in await plain(server, "alice", token(key=SECRET))
        _no_token_logged(caplog, forged)


async def test_oauthbearer_is_offered_only_with_jwt_and_only_over_tls(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        assert b"not offered" in await oauthbearer(server, token())
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}", "c2s.require_tls=false") as server:
        from ..helpers import RawClient

        raw = await RawClient.connect(server)
        features = await raw.open_stream()
        assert b"<mechanism>PLAIN</mechanism>" in features and b"OAUTHBEARER" not in features
        initial = base64.b64encode(f"n,,\x01auth=Bearer {token()}\x01\x01".encode()).decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='OAUTHBEARER'>{initial}</auth>")
        assert b"<invalid-mechanism/>" in await raw.read_until(b"</failure>")
        raw.close()


async def test_failed_token_logins_count_in_the_auth_throttle(tmp_path: Path) -> None:
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}", "c2s.auth_failures_per_account=2") as server:
        expired = token(exp=int(time.time()) - 3600)
        assert b"<not-authorized/>" in await plain(server, "alice", expired)
        assert b"<not-authorized/>" in await plain(server, "alice", expired)
        # Blocked for this account from this address, even with a good token now.
        assert b"<temporary-auth-failure/>" in await plain(server, "alice", token())


# ------------------------------------------------------------------------------ passwords beside


async def test_password_login_keeps_working_beside_jwt(tmp_path: Path) -> None:
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}") as server:
        await add_user(server, "dave")
        for mech in ("PLAIN", "SCRAM-SHA-256"):
            c = await slix(server, "dave@localhost", PASSWORD, mech=mech)
            await slix_close(c)
        assert b"<not-authorized/>" in await plain(server, "dave", "wrong password")
        assert b"<not-authorized/>" in await plain(server, "nobody", "wrong password")


async def test_password_login_off_refuses_passwords_and_keeps_tokens(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="xmppd")
    async with running_server(tmp_path, f"auth.jwt_secret={SECRET}", "auth.password_login=false") as server:
        await add_user(server, "dave")
        answer = await _sasl(server, "starttls", "SCRAM-SHA-256", b"n,,n=dave,r=abcdefgh")
        assert answer.startswith(b"not offered") and b"SCRAM" not in answer
        assert b"<not-authorized/>" in await plain(server, "dave", PASSWORD)
        assert b"<success" in await plain(server, "dave", token(jid="dave"))
        _no_token_logged(caplog, PASSWORD)


# ------------------------------------------------------------------------------ the auth callback


class App:
    """The app's auth endpoint: valid pairs, a request log, optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list[dict] = []
        self.delay = delay

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        ok = body == {"user": "erin", "server": "localhost", "password": "app-password"}
        return web.json_response({"ok": ok})


async def _serve(app: App) -> tuple[web.AppRunner, str]:
    web_app = web.Application()
    web_app.router.add_post("/auth", app.handle)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/auth"


async def test_auth_callback_decides_and_valid_answers_are_cached(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="xmppd")
    app = App()
    runner, url = await _serve(app)
    try:
        async with running_server(tmp_path, f"auth.http_url={url}") as server:
            c = await slix(server, "erin@localhost", "app-password", mech="PLAIN")
            assert str(c.boundjid.bare) == "erin@localhost"
            await slix_close(c)
            assert len(app.requests) == 1
            assert b"<success" in await plain(server, "erin", "app-password")
            assert len(app.requests) == 1  # answered from the cache
            assert b"<not-authorized/>" in await plain(server, "erin", "wrong")
            assert len(app.requests) == 2
            # SCRAM needs keys stored here: only PLAIN is offered when the app holds passwords.
            answer = await _sasl(server, "starttls", "SCRAM-SHA-256", b"n,,n=erin,r=abcdefgh")
            assert answer.startswith(b"not offered")
            _no_token_logged(caplog, "app-password")
    finally:
        await runner.cleanup()


async def test_auth_callback_down_fails_closed_with_temporary_auth_failure(tmp_path: Path) -> None:
    app = App()
    runner, url = await _serve(app)
    await runner.cleanup()  # nothing listens there now
    async with running_server(tmp_path, f"auth.http_url={url}", "auth.http_retries=2") as server:
        assert b"<temporary-auth-failure/>" in await plain(server, "erin", "app-password")
        assert await server.accounts.get("erin", "localhost") is None


async def test_slow_auth_callback_times_out_with_temporary_auth_failure(tmp_path: Path) -> None:
    app = App(delay=5)
    runner, url = await _serve(app)
    try:
        async with running_server(tmp_path, f"auth.http_url={url}", "auth.http_timeout=1", "auth.http_retries=1") as server:
            assert b"<temporary-auth-failure/>" in await plain(server, "erin", "app-password")
            assert len(app.requests) == 2  # one try and one retry, then no more
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "sets, words",
    [
        ((f"auth.jwt_secret={SECRET}", "auth.jwt_public_key=/x.pem"), "exclude each other"),
        (("auth.jwt_secret=short",), "at least 32 bytes"),
        (("auth.http_url=ftp://app",), "http://"),
        (("auth.http_timeout=0",), "more than 0"),
        (("auth.http_retries=50",), "at most 5"),
        (("auth.password_login=false",), "nobody can log in"),
    ],
)
def test_bad_auth_settings_are_refused_with_the_key_named(tmp_path: Path, sets, words) -> None:
    from xmppd.config import ConfigError

    from ..helpers import make_config

    with pytest.raises(ConfigError, match=words):
        make_config(tmp_path, *sets)


async def test_unreadable_public_key_stops_the_start_with_the_key_named(tmp_path: Path) -> None:
    from xmppd.config import ConfigError

    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    with pytest.raises(ConfigError, match="auth.jwt_public_key"):
        async with running_server(tmp_path, f"auth.jwt_public_key={bad.as_posix()}"):
            pass


def test_the_secret_is_not_in_the_configs_repr(tmp_path: Path) -> None:
    from ..helpers import make_config

    assert SECRET not in repr(make_config(tmp_path, f"auth.jwt_secret={SECRET}"))


# ------------------------------------------------------------------------------ xmpp.js


async def test_xmppjs_logs_in_with_a_token_over_websocket(tmp_path: Path) -> None:
    """With only tokens accepted, PLAIN is the one mechanism offered and xmpp.js sends the token."""
    from .jsclients import NodeClient

    async with running_server(tmp_path, "listen.http=127.0.0.1:0", f"auth.jwt_secret={SECRET}", "auth.password_login=false") as server:
        url = f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket"
        js = await NodeClient.start("xmppjs_client.mjs", url, "frank@localhost", token(jid="frank"))
        try:
            online = await js.expect("online")
            assert online["jid"].startswith("frank@localhost/")
            assert await server.accounts.get("frank", "localhost") is not None
        finally:
            assert await js.quit() == 0, js.events
