"""RFC 6120 §5 / XEP-0368: TLS for client streams.

A self-signed bootstrap certificate for a fresh install, the server :class:`ssl.SSLContext`
(used both by STARTTLS and by direct TLS), and the RFC 5929 ``tls-server-end-point`` channel
binding data that SCRAM-*-PLUS needs (computed once from our own certificate).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

#: XEP-0368 ALPN protocol id for client-to-server XMPP over direct TLS.
ALPN_XMPP_CLIENT: Final = "xmpp-client"

#: Validity of the self-signed certificate. 825 days is the longest that Apple platforms
#: accept for a TLS server certificate, even one the user trusts by hand.
SELF_SIGNED_VALIDITY: Final = dt.timedelta(days=825)
#: A self-signed certificate that expires within this is replaced by ensure_certificate.
RENEW_BEFORE: Final = dt.timedelta(days=30)

# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all fine and fixed).
_TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN_RE: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class CertificateError(Exception):
    """A certificate or key file is missing, unreadable, invalid, or they don't match.

    The message names the file; :attr:`path` is that file (None if not file-specific).
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


# --------------------------------------------------------------------------- files


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {what} file {path}: {exc.strerror or exc}", path) from None


def _load_certificates(path: Path) -> list[x509.Certificate]:
    """The certificates in ``path`` (PEM, leaf first; or a single DER certificate)."""
    data = _read(path, "certificate")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CertificateError(f"{path} is not a valid X.509 certificate file: {exc}", path) from None
    if not certs:
        raise CertificateError(f"{path} contains no certificate", path)
    return certs


def _load_private_key(path: Path) -> PrivateKeyTypes:
    data = _read(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(f"{path}: encrypted private keys are not supported", path) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{path} is not a valid PEM private key: {exc}", path) from None


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _check_pair(cert_path: Path, key_path: Path) -> x509.Certificate:
    leaf = _load_certificates(cert_path)[0]
    key = _load_private_key(key_path)
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise CertificateError(f"private key {key_path} does not match certificate {cert_path}", key_path)
    return leaf


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- self-signed


def _ascii_domain(domain: str) -> str:
    try:
        d = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"not a valid domain name: {domain!r}") from None
    if not _DOMAIN_RE.fullmatch(d) or len(d) > 253:
        raise ValueError(f"not a valid domain name: {domain!r}")
    return d


def _generate(domain: str, now: dt.datetime) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xmppd self-signed")]
    if len(domain) <= 64:  # the X.520 upper bound of a common name
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, domain))
    name = x509.Name(attrs)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # tolerate clients' clock skew
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_certificate(data_dir: Path, domain: str, *, now: dt.datetime | None = None) -> tuple[Path, Path]:
    """The certificate and key files for ``domain`` in ``data_dir``: ``<domain>.crt``, ``<domain>.key``.

    On first use, generates a self-signed certificate (EC P-256, ECDSA-SHA256, SAN DNS
    ``domain`` and ``*.domain`` for the service subdomains, 825 days) and its key (PKCS#8
    PEM, mode 0600). Later calls reuse the files as they are, byte for byte, unless the
    certificate is self-signed and expires within :data:`RENEW_BEFORE`: then both are
    replaced. Files placed there by the operator (a CA-issued certificate) are never
    replaced. Raises :class:`CertificateError` when only one of the two files exists or
    they are invalid or don't match, :class:`ValueError` for a domain that is not a DNS name.
    """
    ascii_domain = _ascii_domain(domain)
    now = now or dt.datetime.now(dt.UTC)
    cert_path = data_dir / f"{ascii_domain}.crt"
    key_path = data_dir / f"{ascii_domain}.key"
    cert_exists, key_exists = cert_path.exists(), key_path.exists()
    if cert_exists != key_exists:
        missing, present = (key_path, cert_path) if cert_exists else (cert_path, key_path)
        raise CertificateError(f"{missing} is missing but {present} exists; provide both or remove both", missing)
    if cert_exists:
        leaf = _check_pair(cert_path, key_path)
        self_signed = leaf.issuer == leaf.subject
        if not (self_signed and leaf.not_valid_after_utc - RENEW_BEFORE <= now):
            return cert_path, key_path
    data_dir.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = _generate(ascii_domain, now)
    _write_atomically(key_path, key_pem, 0o600)
    _write_atomically(cert_path, cert_pem, 0o644)
    log.info("generated a self-signed certificate for %s: %s (key %s)", ascii_domain, cert_path, key_path)
    return cert_path, key_path


def certificate_summary(cert: Path) -> str:
    """One line for the start-up log: the file, whether it is self-signed, its expiry and
    SHA-256 fingerprint (what a user compares before accepting a self-signed certificate)."""
    leaf = _load_certificates(cert)[0]
    fingerprint = leaf.fingerprint(hashes.SHA256()).hex(":").upper()
    kind = "self-signed, clients must accept it" if leaf.issuer == leaf.subject else "issued by " + leaf.issuer.rfc4514_string()
    return f"{cert} ({kind}; expires {leaf.not_valid_after_utc:%Y-%m-%d}) SHA-256 fingerprint {fingerprint}"


# --------------------------------------------------------------------------- context


def make_server_context(
    cert: Path, key: Path, *, alpn_protocols: Sequence[str] = (ALPN_XMPP_CLIENT,)
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, forward-secret AEAD suites, no compression, no
    renegotiation, ALPN ``xmpp-client`` (XEP-0368; pass ``("http/1.1",)`` for WebSocket).

    Raises :class:`CertificateError`, naming the file, when a file can't be read or
    parsed, or when the key does not belong to the certificate.
    """
    _check_pair(cert, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(_TLS12_CIPHERS)
    if alpn_protocols:
        ctx.set_alpn_protocols(list(alpn_protocols))
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateError(f"cannot load certificate {cert} with key {key}: {exc}", cert) from None
    return ctx


# --------------------------------------------------------------------------- channel binding


def load_certificate_der(cert: Path) -> bytes:
    """The DER encoding of the first (leaf) certificate in ``cert``."""
    return _load_certificates(cert)[0].public_bytes(serialization.Encoding.DER)


def tls_server_end_point(cert_der: bytes) -> bytes:
    """RFC 5929 §4.1 channel binding data: the hash of the server certificate.

    The hash is that of the certificate's signature algorithm, except MD5 and SHA-1, which
    become SHA-256. For signature algorithms without a separate hash (Ed25519, Ed448) the
    binding is undefined: :class:`CertificateError`, and -PLUS must not be offered.
    """
    try:
        certificate = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise CertificateError(f"not a DER X.509 certificate: {exc}") from None
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise CertificateError(f"unsupported certificate signature algorithm: {exc}") from None
    if algorithm is None:
        raise CertificateError(
            "tls-server-end-point is undefined for a certificate signed without a hash function (RFC 5929 §4.1)"
        )
    if isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert_der)
    return digest.finalize()
