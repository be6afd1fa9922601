"""RFC 5802 / RFC 7677: a minimal SCRAM client (SHA-1, SHA-256; no channel binding) for the load generator.

The expensive step, PBKDF2 (``SaltedPassword``), is cached per (hash, password, salt, iterations):
a benchmark measures the server's login path, not the client's key stretching. Servers salt each
account differently, so the first login of each account pays once (the scenarios warm the cache
with an untimed pass).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_CACHE: dict[tuple[str, str, bytes, int], tuple[bytes, bytes]] = {}
_HASHES = {"SHA-1": "sha1", "SHA-256": "sha256"}


def keys(hash_name: str, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(ClientKey, ServerKey) for these parameters, computed once."""
    k = (hash_name, password, salt, iterations)
    found = _CACHE.get(k)
    if found is None:
        h = _HASHES[hash_name]
        salted = hashlib.pbkdf2_hmac(h, password.encode(), salt, iterations)
        found = (
            hmac.new(salted, b"Client Key", h).digest(),
            hmac.new(salted, b"Server Key", h).digest(),
        )
        _CACHE[k] = found
    return found


def cache_size() -> int:
    return len(_CACHE)


class ScramError(Exception):
    pass


class ScramClient:
    """One exchange: ``first()`` -> server-first -> ``final(server_first)`` -> ``verify(server_final)``."""

    __slots__ = ("hash_name", "_h", "username", "password", "nonce", "_first_bare", "_server_sig")

    def __init__(self, mechanism: str, username: str, password: str) -> None:
        if not mechanism.startswith("SCRAM-") or mechanism.endswith("-PLUS"):
            raise ValueError(f"unsupported mechanism {mechanism}")
        self.hash_name = mechanism[6:]
        self._h = _HASHES[self.hash_name]
        self.username = username.replace("=", "=3D").replace(",", "=2C")
        self.password = password
        self.nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self._first_bare = f"n={self.username},r={self.nonce}"
        self._server_sig = b""

    def first(self) -> bytes:
        return ("n,," + self._first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(part.split("=", 1) for part in text.split(","))
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce):
            raise ScramError("server nonce does not extend ours")
        client_key, server_key = keys(self.hash_name, self.password, salt, iterations)
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        h = self._h
        stored_key = hashlib.new(h, client_key).digest()
        signature = hmac.new(stored_key, auth_message, h).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_sig = hmac.new(server_key, auth_message, h).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode()
        if not text.startswith("v=") or base64.b64decode(text[2:].split(",")[0]) != self._server_sig:
            raise ScramError(f"bad server signature: {text!r}")
