"""Verify the app backend's JSON Web Tokens with PyJWT (never by hand).

The accepted algorithm is pinned by the configuration, never read from the token: HS256 when
``auth.jwt_secret`` is set; RS256 or ES256 (whichever the key's type is) when
``auth.jwt_public_key`` is set. ``exp`` is required; ``nbf`` is checked when present; ``iss``
and ``aud`` when configured. A token, a secret or a key is never logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..config import AuthOptions
from ..jid import JID, JIDError

#: Seconds of clock difference between the backend and this server that are forgiven.
LEEWAY: Final = 30.0
#: Three base64url parts: what a compact JWS looks like (a password rarely does).
_COMPACT_JWS: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class TokenRefused(Exception):
    """Why a token does not log in (safe to log: never contains the token)."""


def looks_like_jwt(secret: str) -> bool:
    return secret.startswith("eyJ") and _COMPACT_JWS.fullmatch(secret) is not None


@dataclass(frozen=True, slots=True)
class JwtVerifier:
    key: Any
    algorithm: str
    claim: str
    issuer: str
    audience: str
    domain: str

    @classmethod
    def from_options(cls, opts: AuthOptions, domain: str) -> JwtVerifier | None:
        """None when JWT is not configured; raises ValueError for an unusable key file."""
        if opts.jwt_secret:
            return cls(opts.jwt_secret.encode(), "HS256", opts.jwt_jid_claim, opts.jwt_issuer, opts.jwt_audience, domain)
        if not opts.jwt_public_key:
            return None
        try:
            key = load_pem_public_key(Path(opts.jwt_public_key).read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"auth.jwt_public_key {opts.jwt_public_key!r}: cannot read a PEM public key: {exc}") from None
        if isinstance(key, rsa.RSAPublicKey):
            algorithm = "RS256"
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
            algorithm = "ES256"
        else:
            raise ValueError(f"auth.jwt_public_key {opts.jwt_public_key!r}: an RSA or P-256 key is needed (RS256, ES256)")
        return cls(key, algorithm, opts.jwt_jid_claim, opts.jwt_issuer, opts.jwt_audience, domain)

    def verify(self, token: str) -> str:
        """The prepared local part the token names; raises :class:`TokenRefused`."""
        required = ["exp"]
        if self.issuer:
            required.append("iss")
        if self.audience:
            required.append("aud")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience or None,
                issuer=self.issuer or None,
                leeway=LEEWAY,
                options={"require": required, "verify_aud": bool(self.audience)},
            )
        except jwt.PyJWTError as exc:
            # PyJWT's messages name the check that failed, never the token's content.
            raise TokenRefused(f"{type(exc).__name__}: {exc}") from None
        name = claims.get(self.claim)
        if not isinstance(name, str) or not name:
            raise TokenRefused(f"claim {self.claim!r} missing or not a string")
        return self._local(name)

    def _local(self, name: str) -> str:
        try:
            jid = JID.parse(name if "@" in name else f"{name}@{self.domain}")
        except JIDError:
            raise TokenRefused(f"claim {self.claim!r} is not a valid address") from None
        if jid.local is None or not jid.is_bare or jid.domain != self.domain:
            raise TokenRefused(f"claim {self.claim!r} does not name an account of {self.domain}")
        return jid.local
