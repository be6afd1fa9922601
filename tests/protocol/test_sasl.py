"""SASL server (RFC 6120 §6): SCRAM-SHA-1/256(-PLUS) and PLAIN, driven by scramp's client side."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest
from scramp import ScramClient

import xmppd.protocol.sasl as sasl_module
from xmppd.errors import SaslCondition, SaslFailure
from xmppd.protocol.sasl import (
    DEFAULT_ITERATIONS,
    Challenge,
    Failure,
    NeedCredentials,
    SaslServer,
    SaslStep,
    ScramCredentials,
    Success,
    make_credentials,
    offered_mechanisms,
    verify_plain,
)

DOMAIN = "example.com"
FAKE_KEY = b"k" * 32  # the server's persistent secret in production (storage.secrets)


def new_server(*args, **kwargs) -> SaslServer:
    return SaslServer(*args, fake_key=FAKE_KEY, **kwargs)
PASSWORD = "pencil"
CB_DATA = hashlib.sha256(b"the server certificate").digest()
SERVER_CB = ("tls-server-end-point", CB_DATA)
SCRAM_MECHS = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1"]
PLUS_MECHS = [m for m in SCRAM_MECHS if m.endswith("-PLUS")]
NON_PLUS_MECHS = [m for m in SCRAM_MECHS if not m.endswith("-PLUS")]

_CREDS = {h: make_credentials(PASSWORD, h) for h in ("SHA-1", "SHA-256")}  # type: ignore[arg-type]


def hash_of(mech: str) -> str:
    return "SHA-256" if "SHA-256" in mech else "SHA-1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kind(step: SaslStep) -> str:
    return type(step).__name__


# ------------------------------------------------------------------ helpers


def run_scram(
    mech: str,
    *,
    password: str = PASSWORD,
    username: str = "user",
    known: bool = True,
    server_cb: tuple[str, bytes] | None = SERVER_CB,
    client_cb: tuple[str, bytes] | None | str = "auto",
    failure: SaslCondition | None = None,
    pass_creds_with_failure: bool = True,
) -> tuple[list[str], SaslStep, SaslServer]:
    """A full exchange with scramp's ScramClient; returns the kinds of steps and the last one.

    By default the client has channel-binding data only for -PLUS mechanisms (a client
    without channel-binding support, sending the 'n' flag, for the others).
    """
    if client_cb == "auto":
        client_cb = SERVER_CB if mech.endswith("-PLUS") else None
    client = ScramClient([mech], username, password, channel_binding=client_cb)
    server = new_server(mech, domain=DOMAIN, channel_binding=server_cb, tls=True)
    trace: list[str] = []
    step = server.start(client.get_client_first().encode())
    trace.append(kind(step))
    if not isinstance(step, NeedCredentials):
        return trace, step, server
    assert step.username == username
    assert step.hash_name == hash_of(mech)
    creds = _CREDS[hash_of(mech)] if known else None
    if failure is not None and not pass_creds_with_failure:
        creds = None
    step = server.credentials_result(creds, failure=failure)
    trace.append(kind(step))
    if not isinstance(step, Challenge):
        return trace, step, server
    client.set_server_first(step.data.decode())
    step = server.respond(client.get_client_final().encode())
    trace.append(kind(step))
    if isinstance(step, Success):
        assert step.additional_data is not None
        client.set_server_final(step.additional_data.decode())  # verifies the server signature
    return trace, step, server


class RawScramClient:
    """A minimal SCRAM client written here from RFC 5802, to send what scramp's client won't
    (an authzid in the gs2-header, wrong nonces, odd flags)."""

    def __init__(
        self, mech: str, gs2_header: str, username: str = "user", password: str = PASSWORD, cb_data: bytes = b""
    ) -> None:
        self.algo = "sha256" if "SHA-256" in mech else "sha1"
        self.gs2_header = gs2_header
        self.cb_data = cb_data
        self.password = password
        self.bare = f"n={username},r=rawClientNonce42"
        self.expected_final = ""

    def first(self) -> bytes:
        return (self.gs2_header + self.bare).encode()

    def final(self, server_first: bytes, *, nonce: str | None = None) -> bytes:
        sf = server_first.decode()
        attrs = dict(p.split("=", 1) for p in sf.split(","))
        salted = hashlib.pbkdf2_hmac(self.algo, self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", self.algo).digest()
        stored_key = hashlib.new(self.algo, client_key).digest()
        server_key = hmac.new(salted, b"Server Key", self.algo).digest()
        without_proof = f"c={b64(self.gs2_header.encode() + self.cb_data)},r={nonce or attrs['r']}"
        auth = f"{self.bare},{sf},{without_proof}".encode()
        signature = hmac.new(stored_key, auth, self.algo).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.expected_final = "v=" + b64(hmac.new(server_key, auth, self.algo).digest())
        return f"{without_proof},p={b64(proof)}".encode()


def raw_exchange(mech: str, client: RawScramClient, *, server_cb=SERVER_CB, nonce: str | None = None) -> SaslStep:
    server = new_server(mech, domain=DOMAIN, channel_binding=server_cb, tls=True)
    step = server.start(client.first())
    if not isinstance(step, NeedCredentials):
        return step
    step = server.credentials_result(_CREDS[hash_of(mech)])
    assert isinstance(step, Challenge), step
    return server.respond(client.final(step.data, nonce=nonce))


def scram_until_final(mech: str) -> tuple[SaslServer, ScramClient, Challenge]:
    client_cb = SERVER_CB if mech.endswith("-PLUS") else None
    client = ScramClient([mech], "user", PASSWORD, channel_binding=client_cb)
    server = new_server(mech, domain=DOMAIN, channel_binding=SERVER_CB, tls=True)
    assert isinstance(server.start(client.get_client_first().encode()), NeedCredentials)
    challenge = server.credentials_result(_CREDS[hash_of(mech)])
    assert isinstance(challenge, Challenge)
    client.set_server_first(challenge.data.decode())
    return server, client, challenge


def plain(
    data: bytes, creds: ScramCredentials | None = _CREDS["SHA-256"], *, failure: SaslCondition | None = None
) -> tuple[list[str], SaslStep]:
    server = new_server("PLAIN", domain=DOMAIN, channel_binding=SERVER_CB, tls=True)
    trace = []
    step = server.start(data)
    trace.append(kind(step))
    if isinstance(step, NeedCredentials):
        assert step.hash_name == "SHA-256"
        step = server.credentials_result(creds, failure=failure)
        trace.append(kind(step))
    return trace, step


# ------------------------------------------------------------------ purity


def test_sasl_module_imports_no_io_modules():
    code = (
        "import sys, xmppd.protocol.sasl; "
        "print(','.join(m for m in ('asyncio', 'socket', 'ssl', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------ credentials


@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-256"])
def test_make_credentials_and_verify_plain_round_trip(hash_name):
    creds = make_credentials("correct horse", hash_name)
    assert creds.iterations == DEFAULT_ITERATIONS
    assert len(creds.stored_key) == len(creds.server_key) == hashlib.new(hash_name.replace("-", "").lower()).digest_size
    assert verify_plain("correct horse", creds, hash_name)
    assert not verify_plain("correct horsE", creds, hash_name)
    assert not verify_plain("", creds, hash_name)


def test_make_credentials_is_deterministic_given_salt_and_matches_scramp():
    from scramp import ScramMechanism

    salt = b"0123456789abcdef"
    creds = make_credentials("pw", "SHA-256", iterations=5000, salt=salt)
    assert creds == make_credentials("pw", "SHA-256", iterations=5000, salt=salt)
    assert (creds.salt, creds.stored_key, creds.server_key, creds.iterations) == ScramMechanism(
        "SCRAM-SHA-256"
    ).make_auth_info("pw", iteration_count=5000, salt=salt)
    assert creds != make_credentials("pw", "SHA-256", iterations=5000)  # random salt by default


def test_credentials_repr_hides_keys():
    creds = _CREDS["SHA-256"]
    assert creds.stored_key.hex() not in repr(creds)
    assert "stored_key" not in repr(creds)


def test_passwords_are_prepared_with_saslprep():
    # RFC 4013 §3: soft hyphen maps to nothing; U+2168 (ROMAN NUMERAL NINE) NFKC-folds to "IX".
    creds = make_credentials("I\u00adX", "SHA-256")
    assert verify_plain("IX", creds, "SHA-256")
    assert verify_plain("\u2168", creds, "SHA-256")
    assert not verify_plain("ix", creds, "SHA-256")


def test_make_credentials_rejects_bad_parameters():
    with pytest.raises(ValueError):
        make_credentials("pw", "SHA-256", iterations=100)
    with pytest.raises(ValueError):
        make_credentials("pw", "SHA-256", salt=b"short")
    with pytest.raises(ValueError):
        make_credentials("pw", "MD5")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make_credentials("bad\u0007control", "SHA-256")  # prohibited by SASLprep


def test_verify_plain_never_raises_on_prohibited_input():
    assert not verify_plain("bad\u0007control", _CREDS["SHA-256"], "SHA-256")


# ------------------------------------------------------------------ offered mechanisms


@pytest.mark.parametrize(
    ("tls", "cb", "allow_plain", "expected"),
    [
        (True, True, False, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]),
        (True, False, False, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]),
        (False, False, False, ["SCRAM-SHA-256", "SCRAM-SHA-1"]),
        (False, False, True, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]),
        (False, True, False, ["SCRAM-SHA-256", "SCRAM-SHA-1"]),  # no channel binding without TLS
        (True, True, True, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]),
    ],
)
def test_offered_mechanisms(tls, cb, allow_plain, expected):
    assert offered_mechanisms(tls=tls, channel_binding_available=cb, allow_plain_without_tls=allow_plain) == expected


def test_constructor_rejects_unknown_mechanisms():
    for mech in ["DIGEST-MD5", "scram-sha-256", "SCRAM-SHA-512", "EXTERNAL", ""]:
        with pytest.raises(SaslFailure) as info:
            new_server(mech, domain=DOMAIN, channel_binding=SERVER_CB, tls=True)
        assert info.value.condition is SaslCondition.INVALID_MECHANISM


def test_constructor_rejects_plus_without_channel_binding():
    with pytest.raises(SaslFailure) as info:
        new_server("SCRAM-SHA-256-PLUS", domain=DOMAIN, channel_binding=None, tls=True)
    assert info.value.condition is SaslCondition.INVALID_MECHANISM


def test_plain_without_tls_needs_explicit_permission():
    with pytest.raises(SaslFailure) as info:
        new_server("PLAIN", domain=DOMAIN, channel_binding=None, tls=False)
    assert info.value.condition is SaslCondition.ENCRYPTION_REQUIRED
    server = new_server("PLAIN", domain=DOMAIN, channel_binding=None, tls=False, allow_plain_without_tls=True)
    assert isinstance(server.start(b"\0user\0pencil"), NeedCredentials)


# ------------------------------------------------------------------ SCRAM


@pytest.mark.parametrize("mech", SCRAM_MECHS)
def test_scram_success(mech):
    trace, step, server = run_scram(mech)
    assert trace == ["NeedCredentials", "Challenge", "Success"]
    assert step == Success("user", step.additional_data)
    assert step.additional_data.startswith(b"v=")
    assert server.authcid == "user"
    assert server.done


@pytest.mark.parametrize("mech", NON_PLUS_MECHS)
def test_scram_without_tls_success(mech):
    trace, step, _ = run_scram(mech, server_cb=None, client_cb=None)
    assert trace == ["NeedCredentials", "Challenge", "Success"]


@pytest.mark.parametrize("mech", SCRAM_MECHS)
def test_scram_wrong_password_is_not_authorized(mech):
    trace, step, _ = run_scram(mech, password="pencil2")
    assert trace == ["NeedCredentials", "Challenge", "Failure"]
    assert step == Failure(SaslCondition.NOT_AUTHORIZED, "authentication failed")


@pytest.mark.parametrize("mech", SCRAM_MECHS)
def test_scram_unknown_user_fails_like_a_wrong_password(mech):
    wrong = run_scram(mech, password="pencil2")
    unknown = run_scram(mech, username="nobody", known=False)
    unknown_right_password = run_scram(mech, username="nobody", password=PASSWORD, known=False)
    assert wrong[0] == unknown[0] == unknown_right_password[0] == ["NeedCredentials", "Challenge", "Failure"]
    assert wrong[1] == unknown[1] == unknown_right_password[1]


@pytest.mark.parametrize("mech", NON_PLUS_MECHS)
def test_unknown_user_server_first_looks_like_a_real_one(mech):
    def server_first(username: str, known: bool) -> dict[str, str]:
        client = ScramClient([mech], username, PASSWORD)
        server = new_server(mech, domain=DOMAIN, channel_binding=None, tls=True)
        server.start(client.get_client_first().encode())
        step = server.credentials_result(_CREDS[hash_of(mech)] if known else None)
        assert isinstance(step, Challenge)
        return dict(p.split("=", 1) for p in step.data.decode().split(","))

    real, fake = server_first("user", True), server_first("nobody", False)
    assert fake.keys() == real.keys()
    assert fake["i"] == real["i"]
    assert len(base64.b64decode(fake["s"])) == len(base64.b64decode(real["s"]))
    # The same unknown user always sees the same salt (a real user's salt does not change),
    # whatever the case of the name, and different unknown users see different salts.
    assert server_first("nobody", False)["s"] == fake["s"]
    assert server_first("NoBody", False)["s"] == fake["s"]
    assert server_first("somebody", False)["s"] != fake["s"]


@pytest.mark.parametrize("mech", PLUS_MECHS)
def test_plus_with_mismatching_channel_binding_is_refused(mech):
    other = ("tls-server-end-point", hashlib.sha256(b"a MITM certificate").digest())
    trace, step, _ = run_scram(mech, client_cb=other)
    assert trace == ["NeedCredentials", "Challenge", "Failure"]
    assert step.condition is SaslCondition.NOT_AUTHORIZED


@pytest.mark.parametrize("mech", PLUS_MECHS)
def test_plus_with_other_channel_binding_type_is_refused(mech):
    client = RawScramClient(mech, "p=tls-unique,,", cb_data=b"x" * 12)
    step = raw_exchange(mech, client)
    assert step.condition is SaslCondition.NOT_AUTHORIZED


@pytest.mark.parametrize("mech", PLUS_MECHS)
@pytest.mark.parametrize("flag", ["n", "y"])
def test_plus_without_channel_binding_flag_is_refused(mech, flag):
    step = raw_exchange(mech, RawScramClient(mech, f"{flag},,"))
    assert step.condition is SaslCondition.NOT_AUTHORIZED


@pytest.mark.parametrize("mech", NON_PLUS_MECHS)
def test_y_flag_is_a_downgrade_when_plus_was_offered(mech):
    # scramp's client sends 'y' when it has channel-binding data but the chosen mechanism
    # is not -PLUS: what a client does when a MITM stripped the -PLUS mechanisms.
    trace, step, _ = run_scram(mech, server_cb=SERVER_CB, client_cb=SERVER_CB)
    assert trace == ["Failure"]
    assert step.condition is SaslCondition.NOT_AUTHORIZED
    assert "downgrade" in step.text


@pytest.mark.parametrize("mech", NON_PLUS_MECHS)
def test_y_flag_is_fine_when_plus_was_not_offered(mech):
    trace, step, _ = run_scram(mech, server_cb=None, client_cb=SERVER_CB)
    assert trace == ["NeedCredentials", "Challenge", "Success"]


@pytest.mark.parametrize("mech", NON_PLUS_MECHS)
def test_p_flag_with_non_plus_mechanism_is_refused(mech):
    step = raw_exchange(mech, RawScramClient(mech, "p=tls-server-end-point,,", cb_data=CB_DATA))
    assert step.condition is SaslCondition.NOT_AUTHORIZED


@pytest.mark.parametrize("mech", SCRAM_MECHS)
@pytest.mark.parametrize(
    "authzid",
    ["mallory@example.com", "mallory", "user@evil.example", "user@example.com/res", "@example.com", "example.com"],
)
def test_scram_authzid_mismatch_is_invalid_authzid(mech, authzid):
    plus = mech.endswith("-PLUS")
    escaped = authzid.replace("=", "=3D").replace(",", "=2C")
    flag = "p=tls-server-end-point" if plus else "n"
    step = raw_exchange(mech, RawScramClient(mech, f"{flag},a={escaped},", cb_data=CB_DATA if plus else b""))
    assert step == Failure(SaslCondition.INVALID_AUTHZID, step.text)


@pytest.mark.parametrize("mech", SCRAM_MECHS)
@pytest.mark.parametrize("authzid", ["user", "user@example.com", "USER@Example.COM"])
def test_scram_authzid_naming_the_user_is_accepted(mech, authzid):
    plus = mech.endswith("-PLUS")
    flag = "p=tls-server-end-point" if plus else "n"
    client = RawScramClient(mech, f"{flag},a={authzid},", cb_data=CB_DATA if plus else b"")
    step = raw_exchange(mech, client)
    assert step == Success("user", client.expected_final.encode())


def test_scram_authzid_does_not_weaken_channel_binding_check():
    mech = "SCRAM-SHA-256-PLUS"
    client = RawScramClient(mech, "p=tls-server-end-point,a=user@example.com,", cb_data=b"\x00" * 32)
    step = raw_exchange(mech, client)
    assert step.condition is SaslCondition.NOT_AUTHORIZED


def test_scram_authzid_gs2_header_must_match_the_one_sent():
    # The client-first carried an authzid; a client-final whose c= claims a header without
    # it must fail the channel-binding check.
    mech = "SCRAM-SHA-256"
    server = new_server(mech, domain=DOMAIN, channel_binding=None, tls=True)
    client = RawScramClient(mech, "n,a=user,")
    assert isinstance(server.start(client.first()), NeedCredentials)
    challenge = server.credentials_result(_CREDS["SHA-256"])
    client.gs2_header = "n,,"
    step = server.respond(client.final(challenge.data))
    assert step.condition is SaslCondition.NOT_AUTHORIZED


def test_scram_username_saslname_is_decoded():
    trace, step, server = run_scram("SCRAM-SHA-256", username="we,ird=name", known=False)
    assert server.authcid == "we,ird=name"
    assert trace == ["NeedCredentials", "Challenge", "Failure"]


@pytest.mark.parametrize(
    "first",
    [
        b"",
        b"garbage",
        b"n,,",
        b"n,,n=user",
        b"x,,n=user,r=abc",
        b"p=,,n=user,r=abc",
        b"p=bad name,,n=user,r=abc",
        b"n,b=x,n=user,r=abc",
        b"n,a=,n=user,r=abc",
        b"n,a=bad=xyname,n=user,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=us=2,r=abc",
        b"n,,r=abc,n=user",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user,r=a\x7fb",
        b"n,,n=user,r=abc,bad",
        b"n,,n=user,r=abc,=x",
        b"n,,n=user,r=abc,r=def",  # a SCRAM attribute again, as an extension
        b"n,,n=user,r=abc,c=biws",
        b"n,,n=user,r=abc,x=1,x=2",  # the same extension twice
        b"n,,n=user\x00,r=abc",
        b"n,,n=\xff\xfe,r=abc",
        b"\xff\xfe\xfd",
        b"n,,n=bad\x07ctl,r=abc",
        b"n,,n=" + b"u" * 1024 + b",r=abc",
    ],
)
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1-PLUS"])
def test_malformed_client_first_is_malformed_request(mech, first):
    server = new_server(mech, domain=DOMAIN, channel_binding=SERVER_CB, tls=True)
    if mech.endswith("-PLUS") and first.startswith(b"n,,"):
        first = b"p=tls-server-end-point,," + first[3:]
    step = server.start(first)
    assert isinstance(step, Failure)
    assert step.condition is SaslCondition.MALFORMED_REQUEST
    assert server.done


@pytest.mark.parametrize(
    "final",
    [
        b"garbage",
        b"c=biws",
        b"r=x,c=biws,p=AAAA",
        b"c=biws,r=x",
        b"c=!!!,r={nonce},p=AAAA",
        b"c=biws,r={nonce},p=!!!",
        b"c=biws,r={nonce},p=",
        b"c=biws,r={nonce},m=ext,p=AAAA",
        b"c=biws,r={nonce},p=AAAA,x=extra",
        b"c=biws,r={nonce},c=biws,p=AAAA",
        b"c=biws,r={nonce},x=1,x=2,p=AAAA",
        b"\xff\xfe",
        b"c=biws,r={nonce},p=AAAA",  # well formed, proof of the wrong length
    ],
)
def test_malformed_client_final_is_malformed_request(final):
    server, _, challenge = scram_until_final("SCRAM-SHA-256")
    nonce = challenge.data.decode().split(",")[0][2:].encode()
    step = server.respond(final.replace(b"{nonce}", nonce))
    assert isinstance(step, Failure)
    assert step.condition is SaslCondition.MALFORMED_REQUEST


@pytest.mark.parametrize("mech", SCRAM_MECHS)
def test_wrong_nonce_is_not_authorized(mech):
    plus = mech.endswith("-PLUS")
    client = RawScramClient(mech, "p=tls-server-end-point,," if plus else "n,,", cb_data=CB_DATA if plus else b"")
    step = raw_exchange(mech, client, nonce="rawClientNonce42forged")
    assert step.condition is SaslCondition.NOT_AUTHORIZED


def test_raw_client_agrees_with_scramp_server():
    # Sanity check of the test's own SCRAM client: without an authzid it succeeds.
    client = RawScramClient("SCRAM-SHA-1", "n,,")
    assert raw_exchange("SCRAM-SHA-1", client, server_cb=None) == Success("user", client.expected_final.encode())


@pytest.mark.parametrize(
    ("mech", "hash_name", "cnonce", "snonce", "salt", "proof", "verifier"),
    [
        # RFC 5802 §5
        (
            "SCRAM-SHA-1",
            "SHA-1",
            "fyko+d2lbbFgONRv9qkxdawL",
            "3rfcNHYJY1ZVvWVs7j",
            "QSXCR+Q6sek8bf92",
            "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ),
        # RFC 7677 §3
        (
            "SCRAM-SHA-256",
            "SHA-256",
            "rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ),
    ],
)
def test_rfc_test_vectors(monkeypatch, mech, hash_name, cnonce, snonce, salt, proof, verifier):
    monkeypatch.setattr(sasl_module, "_server_nonce", lambda: snonce)
    creds = make_credentials("pencil", hash_name, 4096, base64.b64decode(salt))
    server = new_server(mech, domain=DOMAIN, channel_binding=None, tls=False)
    assert server.start(f"n,,n=user,r={cnonce}".encode()) == NeedCredentials("user", hash_name)
    nonce = cnonce + snonce
    assert server.credentials_result(creds) == Challenge(f"r={nonce},s={salt},i=4096".encode())
    step = server.respond(f"c=biws,r={nonce},p={proof}".encode())
    assert step == Success("user", f"v={verifier}".encode())


def test_no_initial_response_gets_an_empty_challenge():
    client = ScramClient(["SCRAM-SHA-256"], "user", PASSWORD)
    server = new_server("SCRAM-SHA-256", domain=DOMAIN, channel_binding=None, tls=True)
    assert server.start(None) == Challenge(b"")
    assert server.respond(client.get_client_first().encode()) == NeedCredentials("user", "SHA-256")
    step = server.credentials_result(_CREDS["SHA-256"])
    client.set_server_first(step.data.decode())
    assert isinstance(server.respond(client.get_client_final().encode()), Success)


def test_abort_ends_the_exchange():
    server, client, _ = scram_until_final("SCRAM-SHA-256-PLUS")
    assert server.abort() == Failure(SaslCondition.ABORTED, "aborted by the client")
    assert server.done
    step = server.respond(client.get_client_final().encode())
    assert isinstance(step, Failure) and step.condition is SaslCondition.MALFORMED_REQUEST


def test_response_while_waiting_for_credentials_does_not_raise():
    server = new_server("SCRAM-SHA-256", domain=DOMAIN, channel_binding=None, tls=True)
    assert isinstance(server.start(b"n,,n=user,r=abc"), NeedCredentials)
    step = server.respond(b"c=biws,r=abc,p=AAAA")
    assert step.condition is SaslCondition.MALFORMED_REQUEST
    # The lookup that was in flight completes after the failure: still no exception.
    assert isinstance(server.credentials_result(_CREDS["SHA-256"]), Failure)


def test_second_auth_is_refused():
    trace, _, server = run_scram("SCRAM-SHA-256")
    assert trace[-1] == "Success"
    assert isinstance(server.start(b"n,,n=user,r=abc"), Failure)


@pytest.mark.parametrize("mech", SCRAM_MECHS)
def test_account_disabled_without_creds_is_reported_immediately(mech):
    trace, step, _ = run_scram(mech, failure=SaslCondition.ACCOUNT_DISABLED, pass_creds_with_failure=False)
    assert trace == ["NeedCredentials", "Failure"]
    assert step.condition is SaslCondition.ACCOUNT_DISABLED


@pytest.mark.parametrize("mech", SCRAM_MECHS)
def test_account_disabled_with_creds_is_reported_after_the_proof(mech):
    trace, step, _ = run_scram(mech, failure=SaslCondition.ACCOUNT_DISABLED)
    assert trace == ["NeedCredentials", "Challenge", "Failure"]
    assert step.condition is SaslCondition.ACCOUNT_DISABLED
    # Without the password, a disabled account looks like any other failure.
    trace, step, _ = run_scram(mech, password="guess", failure=SaslCondition.ACCOUNT_DISABLED)
    assert step == Failure(SaslCondition.NOT_AUTHORIZED, "authentication failed")


def test_temporary_auth_failure_is_immediate():
    trace, step, _ = run_scram(
        "SCRAM-SHA-256", failure=SaslCondition.TEMPORARY_AUTH_FAILURE, pass_creds_with_failure=False
    )
    assert trace == ["NeedCredentials", "Failure"]
    assert step.condition is SaslCondition.TEMPORARY_AUTH_FAILURE


def test_unusable_stored_credentials_are_a_temporary_failure():
    server = new_server("SCRAM-SHA-256", domain=DOMAIN, channel_binding=None, tls=True)
    server.start(b"n,,n=user,r=abc")
    bad = ScramCredentials(salt=b"s", iterations=1, stored_key=b"", server_key=b"")
    assert server.credentials_result(bad).condition is SaslCondition.TEMPORARY_AUTH_FAILURE


def test_sha1_credentials_given_to_sha256_exchange_fail_cleanly():
    server = new_server("SCRAM-SHA-256", domain=DOMAIN, channel_binding=None, tls=True)
    server.start(b"n,,n=user,r=abc")
    assert isinstance(server.credentials_result(_CREDS["SHA-1"]), Failure)


# ------------------------------------------------------------------ PLAIN


def test_plain_success():
    trace, step = plain(b"\0user\0pencil")
    assert trace == ["NeedCredentials", "Success"]
    assert step == Success("user", None)


def test_plain_wrong_password_and_unknown_user_fail_the_same_way():
    wrong = plain(b"\0user\0pencil2")
    unknown = plain(b"\0nobody\0pencil", None)
    expected = Failure(SaslCondition.NOT_AUTHORIZED, "authentication failed")
    assert wrong == unknown == (["NeedCredentials", "Failure"], expected)


def test_plain_unicode_password():
    creds = make_credentials("пароль\u00a0秘密", "SHA-256")
    assert plain("\0user\0пароль 秘密".encode(), creds)[1] == Success("user", None)  # NBSP maps to space


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"userpencil",
        b"\0user",
        b"user\0pencil",
        b"\0\0pencil",
        b"\0user\0",
        b"\0user\0pen\0cil",
        b"\0us\xffer\0pencil",
        b"\0user\0\xff",
        b"\0" + b"u" * 1024 + b"\0pencil",
    ],
)
def test_plain_malformed(data):
    trace, step = plain(data)
    assert trace == ["Failure"]
    assert step.condition is SaslCondition.MALFORMED_REQUEST


@pytest.mark.parametrize("authzid", ["user", "user@example.com", "User@EXAMPLE.com"])
def test_plain_authzid_naming_the_user_is_accepted(authzid):
    assert plain(f"{authzid}\0user\0pencil".encode())[1] == Success("user", None)


@pytest.mark.parametrize(
    "authzid", ["admin", "admin@example.com", "user@other.example", "user@example.com/res", "example.com", "@@"]
)
def test_plain_authzid_mismatch_is_invalid_authzid(authzid):
    # ejabberd 26.07 fixed PLAIN authenticating as one user and opening a session as another.
    trace, step = plain(f"{authzid}\0user\0pencil".encode())
    assert trace == ["Failure"]
    assert step.condition is SaslCondition.INVALID_AUTHZID


def test_plain_account_disabled():
    assert plain(b"\0user\0pencil", None, failure=SaslCondition.ACCOUNT_DISABLED)[1].condition is (
        SaslCondition.ACCOUNT_DISABLED
    )
    assert plain(b"\0user\0pencil", failure=SaslCondition.ACCOUNT_DISABLED)[1].condition is (
        SaslCondition.ACCOUNT_DISABLED
    )
    assert plain(b"\0user\0wrong", failure=SaslCondition.ACCOUNT_DISABLED)[1].condition is (
        SaslCondition.NOT_AUTHORIZED
    )


def test_plain_with_no_initial_response():
    server = new_server("PLAIN", domain=DOMAIN, channel_binding=None, tls=True)
    assert server.start(None) == Challenge(b"")
    assert server.respond(b"\0user\0pencil") == NeedCredentials("user", "SHA-256")
    assert server.credentials_result(_CREDS["SHA-256"]) == Success("user", None)


def test_plain_forgets_the_password():
    server = new_server("PLAIN", domain=DOMAIN, channel_binding=None, tls=True)
    server.start(b"\0user\0pencil")
    server.credentials_result(_CREDS["SHA-256"])
    assert server._password is None


# ------------------------------------------------------------------ robustness


@pytest.mark.parametrize("mech", [*SCRAM_MECHS, "PLAIN"])
def test_mutated_input_never_raises(mech):
    import random

    rng = random.Random(5802)
    alphabet = b"npy=,aArcmsv0123456789+/\x00\xff\xc3-"

    def mutate(data: bytes) -> bytes:
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            pos = rng.randrange(len(b) + 1)
            if op == 0 and b:
                del b[min(pos, len(b) - 1)]
            elif op == 1:
                b.insert(pos, rng.choice(alphabet))
            elif b:
                b[min(pos, len(b) - 1)] = rng.choice(alphabet)
        return bytes(b)

    for _ in range(300):
        server = new_server(mech, domain=DOMAIN, channel_binding=SERVER_CB, tls=True)
        if mech == "PLAIN":
            step = server.start(mutate(b"\0user\0pencil"))
            if isinstance(step, NeedCredentials):
                step = server.credentials_result(rng.choice([_CREDS["SHA-256"], None]))
            assert isinstance(step, (Success, Failure))
            continue
        client_cb = SERVER_CB if mech.endswith("-PLUS") else None
        client = ScramClient([mech], "user", PASSWORD, channel_binding=client_cb)
        first = client.get_client_first().encode()
        step = server.start(mutate(first) if rng.random() < 0.5 else first)
        if isinstance(step, NeedCredentials):
            step = server.credentials_result(rng.choice([_CREDS[hash_of(mech)], None]))
        if isinstance(step, Challenge):
            try:
                client.set_server_first(step.data.decode())
                final = client.get_client_final().encode()
            except Exception:  # scramp's client refusing our (valid) reply to a mutated first message
                final = b"c=biws,r=x,p=AAAA"
            step = server.respond(mutate(final))
        assert isinstance(step, (Success, Failure))
        assert server.done


# ------------------------------------------------------------------ same cost (no clocks: count the work)


def test_plain_unknown_user_costs_one_full_key_derivation(monkeypatch):
    calls: list[tuple[str, int]] = []
    real = hashlib.pbkdf2_hmac

    def counting(name, password, salt, iterations, *args):
        calls.append((name, iterations))
        return real(name, password, salt, iterations, *args)

    monkeypatch.setattr(sasl_module.hashlib, "pbkdf2_hmac", counting)
    plain(b"\0user\0wrong")
    wrong_password = list(calls)
    calls.clear()
    plain(b"\0nobody\0wrong", None)
    assert calls == wrong_password == [("sha256", DEFAULT_ITERATIONS)]


@pytest.mark.parametrize("mech", SCRAM_MECHS)
def test_scram_unknown_user_does_the_same_work_as_a_wrong_password(monkeypatch, mech):
    calls: list[str] = []
    real = sasl_module._hmac

    def counting(key, msg, algo):
        calls.append(algo)
        return real(key, msg, algo)

    monkeypatch.setattr(sasl_module, "_hmac", counting)  # the server's HMACs
    run_scram(mech, password="wrong")
    wrong_password = list(calls)
    calls.clear()
    run_scram(mech, username="nobody", password="wrong", known=False)
    assert calls == wrong_password
    assert calls  # the server did verify a proof in both cases


def test_saslprep_ascii_fast_path_agrees_with_scramp():
    from scramp import ScramException
    from scramp.utils import saslprep as full

    for text in ["user", "bench12", "We Ird~!", "", " ", *(f"a{chr(c)}b" for c in range(128))]:
        try:
            expected: str | None = full(text)
        except ScramException:
            expected = None
        try:
            got: str | None = sasl_module.saslprep(text)
        except ValueError:
            got = None
        assert got == expected, text
    assert sasl_module.saslprep("I\u00adX") == "IX"  # non-ASCII: the full preparation
    with pytest.raises(ValueError):
        sasl_module.saslprep("a\u0007b")


# ------------------------------------------------------------------ ANONYMOUS (RFC 4505)


def test_anonymous_is_offered_alone_on_the_anonymous_host_and_never_elsewhere():
    assert offered_mechanisms(tls=True, channel_binding_available=True, anonymous=True) == ["ANONYMOUS"]
    assert "ANONYMOUS" not in offered_mechanisms(tls=True, channel_binding_available=True, oauthbearer=True)


@pytest.mark.parametrize("initial", [None, b"", "visitor from the pricing page ✓".encode()])
def test_anonymous_asks_the_driver_then_succeeds_as_the_node_it_made(initial):
    server = new_server("ANONYMOUS", domain=DOMAIN, channel_binding=None, tls=False)
    step = server.start(initial)
    assert kind(step) == "NeedGuest" and step.trace == (initial or b"").decode()
    assert server.verification_result("0f" * 16) == Success("0f" * 16, None)


def test_anonymous_refused_by_a_limit_is_a_temporary_failure():
    server = new_server("ANONYMOUS", domain=DOMAIN, channel_binding=None, tls=True)
    assert kind(server.start(b"")) == "NeedGuest"
    step = server.verification_result(None, SaslCondition.TEMPORARY_AUTH_FAILURE)
    assert isinstance(step, Failure) and step.condition is SaslCondition.TEMPORARY_AUTH_FAILURE


@pytest.mark.parametrize("trace", [b"x" * 256, b"\xff\xfe", b"line\nbreak"])
def test_anonymous_trace_must_be_short_printable_utf8(trace):
    server = new_server("ANONYMOUS", domain=DOMAIN, channel_binding=None, tls=True)
    step = server.start(trace)
    assert isinstance(step, Failure) and step.condition is SaslCondition.MALFORMED_REQUEST
