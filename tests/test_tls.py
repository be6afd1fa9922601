"""TLS: self-signed bootstrap certificate, server context, RFC 5929 tls-server-end-point."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from xmppd.transport.tls import (
    CertificateError,
    ensure_certificate,
    load_certificate_der,
    make_server_context,
    tls_server_end_point,
)

DOMAIN = "example.test"


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return ensure_certificate(tmp_path, DOMAIN)


def load(cert: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.read_bytes())


def make_cert(key, sign_key, algorithm, *, issuer: str = "test", subject: str = "test") -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    return builder.sign(sign_key, algorithm).public_bytes(serialization.Encoding.DER)


# ------------------------------------------------------------------ ensure_certificate


def test_ensure_certificate_generates_then_reuses(tmp_path):
    cert, key = ensure_certificate(tmp_path, DOMAIN)
    assert cert.parent == key.parent == tmp_path
    first = cert.read_bytes(), key.read_bytes()
    assert first[0].startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in first[1]
    assert ensure_certificate(tmp_path, DOMAIN) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == first


def test_key_file_is_private(pair):
    cert, key = pair
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644


def test_certificate_names_the_domain_and_its_subdomains(pair):
    certificate = load(pair[0])
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [DOMAIN, f"*.{DOMAIN}"]
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    assert certificate.public_key().curve.name == "secp256r1"
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA256)
    assert certificate.issuer == certificate.subject
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert dt.timedelta(days=365) < lifetime <= dt.timedelta(days=826)


def test_internationalised_domain_is_stored_in_ascii(tmp_path):
    cert, _ = ensure_certificate(tmp_path, "bücher.example")
    assert cert.name == "xn--bcher-kva.example.crt"
    san = load(cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "xn--bcher-kva.example" in san.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("domain", ["../etc", "a/b", "", ".", "exa mple.com", "-bad.example"])
def test_domains_that_are_not_dns_names_are_refused(tmp_path, domain):
    with pytest.raises(ValueError):
        ensure_certificate(tmp_path, domain)


def test_expiring_self_signed_certificate_is_replaced(tmp_path):
    cert, key = ensure_certificate(tmp_path, DOMAIN)
    old = cert.read_bytes()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=820)
    assert ensure_certificate(tmp_path, DOMAIN, now=later) == (cert, key)
    assert cert.read_bytes() != old
    assert load(cert).not_valid_after_utc > later + dt.timedelta(days=800)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_operator_certificate_is_never_replaced(tmp_path):
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    der = make_cert(leaf_key, ca_key, hashes.SHA256(), issuer="Some CA", subject=DOMAIN)
    cert, key = tmp_path / f"{DOMAIN}.crt", tmp_path / f"{DOMAIN}.key"
    cert.write_bytes(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    before = cert.read_bytes()
    years_later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    assert ensure_certificate(tmp_path, DOMAIN, now=years_later) == (cert, key)
    assert cert.read_bytes() == before


def test_half_a_pair_is_an_error_naming_the_missing_file(tmp_path):
    cert, key = ensure_certificate(tmp_path, DOMAIN)
    key.unlink()
    with pytest.raises(CertificateError) as info:
        ensure_certificate(tmp_path, DOMAIN)
    assert str(key) in str(info.value)
    assert info.value.path == key


def test_garbage_in_existing_files_is_reported_not_overwritten(tmp_path):
    cert, key = ensure_certificate(tmp_path, DOMAIN)
    cert.write_bytes(b"garbage")
    with pytest.raises(CertificateError) as info:
        ensure_certificate(tmp_path, DOMAIN)
    assert str(cert) in str(info.value)
    assert cert.read_bytes() == b"garbage"


# ------------------------------------------------------------------ make_server_context


def test_make_server_context(pair):
    ctx = make_server_context(*pair)
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    suites = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert suites and all(c["aead"] and c["kea"] == "kx-ecdhe" for c in suites)


@pytest.mark.parametrize("which", ["cert", "key"])
def test_garbage_file_is_a_certificate_error_naming_it(pair, which):
    cert, key = pair
    bad = cert if which == "cert" else key
    bad.write_bytes(b"-----BEGIN GARBAGE-----\nnot base64 at all\n-----END GARBAGE-----\n")
    with pytest.raises(CertificateError) as info:
        make_server_context(cert, key)
    assert str(bad) in str(info.value)
    assert info.value.path == bad


@pytest.mark.parametrize("which", ["cert", "key"])
def test_missing_file_is_a_certificate_error_naming_it(pair, which):
    cert, key = pair
    missing = cert.with_name("nope.crt") if which == "cert" else key.with_name("nope.key")
    args = (missing, key) if which == "cert" else (cert, missing)
    with pytest.raises(CertificateError) as info:
        make_server_context(*args)
    assert str(missing) in str(info.value)


def test_key_of_another_certificate_is_refused(tmp_path):
    cert, _ = ensure_certificate(tmp_path / "a", DOMAIN)
    _, other_key = ensure_certificate(tmp_path / "b", DOMAIN)
    with pytest.raises(CertificateError) as info:
        make_server_context(cert, other_key)
    assert str(other_key) in str(info.value) and "does not match" in str(info.value)


def test_encrypted_key_is_refused_with_a_clear_message(pair):
    cert, key = pair
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertificateError, match="encrypted"):
        make_server_context(cert, key)


# ------------------------------------------------------------------ channel binding


def test_load_certificate_der(pair):
    assert load_certificate_der(pair[0]) == ssl.PEM_cert_to_DER_cert(pair[0].read_text())


def test_tls_server_end_point_of_ecdsa_sha256_certificate_is_its_sha256(pair):
    der = load_certificate_der(pair[0])
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()


def test_tls_server_end_point_agrees_with_scramp(pair):
    from scramp.core import CBindData

    der = load_certificate_der(pair[0])
    assert tls_server_end_point(der) == bytes(CBindData.from_der(der))


def test_tls_server_end_point_uses_the_signature_hash():
    key = ec.generate_private_key(ec.SECP384R1())
    der = make_cert(key, key, hashes.SHA384())
    assert tls_server_end_point(der) == hashlib.sha384(der).digest()


@pytest.mark.parametrize(("oid_last_byte", "hash_cls"), [(0x05, hashes.SHA1), (0x04, hashes.MD5)])
def test_tls_server_end_point_upgrades_sha1_and_md5_to_sha256(oid_last_byte, hash_cls):
    # cryptography no longer signs with SHA-1 or MD5: take an RSA-SHA256 certificate and
    # rewrite its sha256WithRSAEncryption OIDs (1.2.840.113549.1.1.11) into
    # sha1WithRSAEncryption (…1.5) or md5WithRSAEncryption (…1.4), of the same length.
    # The signature no longer verifies, which does not matter for hashing.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
    der = make_cert(key, key, hashes.SHA256())
    assert der.count(sha256_rsa) == 2
    der = der.replace(sha256_rsa, sha256_rsa[:-1] + bytes([oid_last_byte]))
    assert isinstance(x509.load_der_x509_certificate(der).signature_hash_algorithm, hash_cls)
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()


def test_tls_server_end_point_is_undefined_for_ed25519():
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(CertificateError):
        tls_server_end_point(make_cert(key, key, None))


def test_tls_server_end_point_of_garbage():
    with pytest.raises(CertificateError):
        tls_server_end_point(b"\x30\x03garbage")


# ------------------------------------------------------------------ a real handshake


def test_loopback_handshake_and_scram_plus(pair):
    """A real TLS connection: the client's view of tls-server-end-point matches ours, and a
    SCRAM-SHA-256-PLUS exchange bound to the channel succeeds."""
    from scramp import ScramClient

    from xmppd.protocol.sasl import Challenge, NeedCredentials, SaslServer, Success, make_credentials

    cert, key = pair
    server_cb = tls_server_end_point(load_certificate_der(cert))
    creds = make_credentials("pencil", "SHA-256")
    server_view: dict[str, object] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        server_view.update(alpn=ssl_object.selected_alpn_protocol(), compression=ssl_object.compression())
        sasl = SaslServer(
            "SCRAM-SHA-256-PLUS", domain=DOMAIN, channel_binding=("tls-server-end-point", server_cb), tls=True,
            fake_key=b"k" * 32,
        )
        step = sasl.start(base64.b64decode(await reader.readline()))
        while True:
            if isinstance(step, NeedCredentials):
                step = sasl.credentials_result(creds)
                continue
            if isinstance(step, Challenge):
                writer.write(b"C " + base64.b64encode(step.data) + b"\n")
                await writer.drain()
                step = sasl.respond(base64.b64decode(await reader.readline()))
                continue
            break
        if isinstance(step, Success):
            writer.write(b"S " + base64.b64encode(step.additional_data or b"") + b"\n")
        else:
            writer.write(f"F {step.condition.value}\n".encode())
        await writer.drain()
        writer.close()

    async def main() -> dict[str, object]:
        listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=make_server_context(cert, key))
        port = listener.sockets[0].getsockname()[1]
        client_ctx = ssl.create_default_context(cafile=str(cert))
        client_ctx.set_alpn_protocols(["xmpp-client"])
        result: dict[str, object] = {}
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname=DOMAIN), 10
            )
            ssl_object = writer.get_extra_info("ssl_object")
            result["version"] = ssl_object.version()
            result["alpn"] = ssl_object.selected_alpn_protocol()
            result["client_cb"] = tls_server_end_point(ssl_object.getpeercert(binary_form=True))

            scram = ScramClient(
                ["SCRAM-SHA-256-PLUS"], "user", "pencil", channel_binding=("tls-server-end-point", ssl_object)
            )
            writer.write(base64.b64encode(scram.get_client_first().encode()) + b"\n")
            line = await asyncio.wait_for(reader.readline(), 10)
            assert line.startswith(b"C "), line
            scram.set_server_first(base64.b64decode(line[2:]).decode())
            writer.write(base64.b64encode(scram.get_client_final().encode()) + b"\n")
            line = await asyncio.wait_for(reader.readline(), 10)
            assert line.startswith(b"S "), line
            scram.set_server_final(base64.b64decode(line[2:]).decode())
            result["sasl"] = "success"
            writer.close()
        finally:
            listener.close()
            await listener.wait_closed()
        return result

    result = asyncio.run(main())
    assert result["version"] in ("TLSv1.2", "TLSv1.3")
    assert result["alpn"] == server_view["alpn"] == "xmpp-client"
    assert server_view["compression"] is None
    assert result["client_cb"] == server_cb
    assert result["sasl"] == "success"


@pytest.mark.parametrize("hostname", [DOMAIN, f"muc.{DOMAIN}"])
def test_tls12_client_and_subdomains_are_accepted(pair, hostname):
    cert, key = pair

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> tuple[str, tuple]:
        listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=make_server_context(cert, key))
        port = listener.sockets[0].getsockname()[1]
        client_ctx = ssl.create_default_context(cafile=str(cert))
        client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname=hostname), 10
            )
            ssl_object = writer.get_extra_info("ssl_object")
            info = ssl_object.version(), ssl_object.cipher()
            writer.close()
        finally:
            listener.close()
            await listener.wait_closed()
        return info

    version, cipher = asyncio.run(main())
    assert version == "TLSv1.2"
    assert cipher[0].startswith("ECDHE-ECDSA-")


def test_wrong_hostname_is_refused_by_the_client(pair):
    cert, key = pair

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> None:
        listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=make_server_context(cert, key))
        port = listener.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.wait_for(
                    asyncio.open_connection(
                        "127.0.0.1",
                        port,
                        ssl=ssl.create_default_context(cafile=str(cert)),
                        server_hostname="other.example",
                    ),
                    10,
                )
        finally:
            listener.close()
            await listener.wait_closed()

    asyncio.run(main())


async def test_xmppd_logs_the_certificate_path_and_the_fingerprint_it_presents(tmp_path):
    """A new user accepts a self-signed certificate by comparing its SHA-256 fingerprint: the
    real ``xmppd`` logs the file and the fingerprint at start, and they are those of the
    certificate a client receives on the direct-TLS port."""
    import re
    import sys

    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "xmppd"),
        "--set", f"server.data_dir={data}",
        "--set", "listen.c2s=127.0.0.1:0",
        "--set", "listen.c2s_tls=127.0.0.1:0",
        "--set", "listen.http=",
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    log = ""
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, log
            log += line
            m = re.search(r"listening for c2s_tls on 127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        presented = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
    finally:
        proc.terminate()
        await proc.wait()
    fingerprint = hashlib.sha256(presented).hexdigest().upper()
    fingerprint = ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2))
    [line] = [ln for ln in log.splitlines() if "SHA-256 fingerprint" in ln]
    assert str(data / "localhost.crt") in line and "self-signed" in line
    assert line.endswith(fingerprint)
    assert "generated a self-signed certificate" in log
