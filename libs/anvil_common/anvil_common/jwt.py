"""JWTs through python-jose, hardened (docs/api.md, "Tokens").

* one algorithm pinned per ``kid`` (ES256 for instance keys); the token's ``alg`` must equal it;
* keys are python-jose key objects built from JWKs, never raw bytes or PEM strings, so an HS256
  token "signed" with the public key can never verify;
* ``exp``, ``iat``, ``aud``, ``iss``, ``jti`` required; ``jku``/``x5u``/``jwk``/``x5c``/``crit``
  headers refused; ``typ`` must be ``JWT`` (so a signed document can never pass for a token);
* each part must be strict, canonical base64url (python-jose alone would accept padding and
  other spellings of the same bytes);
* every failure, including malformed claims, raises :class:`TokenInvalid` (a 401 problem).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError

from anvil_wire import KeySet, SigningKey
from anvil_wire.b64 import b64url_decode
from anvil_wire.keys import ALGORITHM, public_jwk, public_key_from_jwk

from .problems import Unauthorized

__all__ = [
    "TOKEN_KINDS",
    "TokenInvalid",
    "TokenExpired",
    "Claims",
    "TokenVerifier",
    "TokenIssuer",
]

TOKEN_KINDS = ("operator", "service", "client", "peer")
_FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
MAX_TOKEN_LENGTH = 8192


class TokenInvalid(Unauthorized):
    code, title = "invalid-token", "Invalid token"


class TokenExpired(TokenInvalid):
    code, title = "token-expired", "Token expired"


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token, typed."""

    jti: str
    subject: str
    kind: str
    issuer: str
    audience: tuple[str, ...]
    expires_at: int
    issued_at: int
    scopes: frozenset[str]
    org: str | None = None  # organisation slug; None only for instance-wide admin tokens
    project: str | None = None
    environment: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def has(self, scope: str) -> bool:
        return scope in self.scopes


def _str_or_none(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TokenInvalid(f"claim {name!r} must be a non-empty string")
    return value


def _parse_claims(raw: Mapping[str, Any]) -> Claims:
    for name in ("jti", "sub", "kind"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise TokenInvalid(f"claim {name!r} is required")
    if raw["kind"] not in TOKEN_KINDS:
        raise TokenInvalid(f"unknown token kind {raw['kind']!r}")
    scopes = raw.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise TokenInvalid("claim 'scopes' must be a list of strings")
    for name in ("exp", "iat"):
        if not isinstance(raw.get(name), int) or isinstance(raw[name], bool):
            raise TokenInvalid(f"claim {name!r} must be an integer")
    aud = raw.get("aud")
    audience = (aud,) if isinstance(aud, str) else tuple(aud or ())
    return Claims(
        jti=raw["jti"],
        subject=raw["sub"],
        kind=raw["kind"],
        issuer=str(raw.get("iss")),
        audience=audience,
        expires_at=raw["exp"],
        issued_at=raw["iat"],
        scopes=frozenset(scopes),
        org=_str_or_none(raw, "org"),
        project=_str_or_none(raw, "project"),
        environment=_str_or_none(raw, "environment"),
        raw=dict(raw),
    )


class TokenVerifier:
    """Verify JWTs against a key set (kid → pinned algorithm + key), issuer and audience."""

    def __init__(
        self,
        public_jwks: Mapping[str, Any],
        *,
        issuer: str,
        audience: str,
        leeway: int = 30,
        cache_size: int = 4096,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._keys: dict[str, tuple[str, Any]] = {}
        for entry in public_jwks.get("keys", []):
            kid = entry.get("kid")
            if not isinstance(kid, str) or not kid:
                raise ValueError("every verification key needs a 'kid'")
            # Validated by anvil_wire (EC P-256, alg ES256 if present, point on the curve), so a
            # key of another type can never be handed to python-jose.
            public = public_jwk(public_key_from_jwk(entry))
            self._keys[kid] = (ALGORITHM, jwk.construct(public, algorithm=ALGORITHM))
        self._cache: dict[str, Claims] = {}
        self._cache_size = cache_size

    @classmethod
    def for_keyset(cls, keyset: KeySet, *, issuer: str, audience: str) -> TokenVerifier:
        return cls(keyset.public_jwks(), issuer=issuer, audience=audience)

    def verify(self, token: Any) -> Claims:
        """Return the verified claims, or raise TokenInvalid / TokenExpired."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid("token must be a non-empty compact JWT")
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self.leeway < time.time():
                self._cache.pop(token, None)
                raise TokenExpired("token has expired")
            return cached
        claims = self._verify_uncached(token)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = claims
        return claims

    def _verify_uncached(self, token: str) -> Claims:
        parts = token.split(".")
        try:
            if len(parts) != 3 or not all(parts):
                raise ValueError("a compact JWT has three non-empty parts")
            for part in parts:
                b64url_decode(part)
            header = jwt.get_unverified_header(token)
        except Exception as exc:
            raise TokenInvalid("token is not a well-formed JWT") from exc
        if not isinstance(header, dict):
            raise TokenInvalid("token header must be an object")
        if _FORBIDDEN_HEADERS & header.keys():
            raise TokenInvalid(
                f"token header members refused: {', '.join(sorted(_FORBIDDEN_HEADERS & header.keys()))}"
            )
        if header.get("typ") != "JWT":
            raise TokenInvalid(f"a {header.get('typ')!r} document is not a token")
        kid = header.get("kid")
        pinned = self._keys.get(kid) if isinstance(kid, str) else None
        if pinned is None:
            raise TokenInvalid("token is signed by an unknown key")
        alg, key = pinned
        if header.get("alg") != alg:
            raise TokenInvalid(f"algorithm {header.get('alg')!r} is not allowed for this key")
        try:
            raw = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require_exp": True,
                    "require_iat": True,
                    "require_aud": True,
                    "require_iss": True,
                    "require_jti": True,
                    "require_sub": True,
                    "leeway": self.leeway,
                },
            )
        except ExpiredSignatureError as exc:
            raise TokenExpired("token has expired") from exc
        except Exception as exc:
            raise TokenInvalid(f"token rejected: {_reason(exc)}") from exc
        if not isinstance(raw, dict):
            raise TokenInvalid("token claims must be an object")
        return _parse_claims(raw)


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


class TokenIssuer:
    """Sign tokens with the instance's active key."""

    def __init__(self, key: SigningKey, *, issuer: str) -> None:
        self.issuer = issuer
        self._kid = key.kid
        from cryptography.hazmat.primitives import serialization

        self._pem = key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def issue(
        self,
        *,
        subject: str,
        kind: str,
        audience: str | Iterable[str],
        scopes: Iterable[str],
        ttl_seconds: int,
        org: str | None = None,
        project: str | None = None,
        environment: str | None = None,
        jti: str | None = None,
        now: int | None = None,
    ) -> tuple[str, Claims]:
        if kind not in TOKEN_KINDS:
            raise ValueError(f"unknown token kind {kind!r}")
        if ttl_seconds <= 0:
            raise ValueError("every token expires: ttl_seconds must be positive")
        issued = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience if isinstance(audience, str) else sorted(audience),
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
            "jti": jti or str(uuid.uuid4()),
            "kind": kind,
            "scopes": sorted(set(scopes)),
        }
        for name, value in (("org", org), ("project", project), ("environment", environment)):
            if value is not None:
                claims[name] = value
        token = jwt.encode(claims, self._pem, algorithm=ALGORITHM, headers={"kid": self._kid, "typ": "JWT"})
        return token, _parse_claims(claims)
