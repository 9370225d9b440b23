"""Signed documents: compact JWS with ES256 only and a ``typ`` per purpose.

A document signed for one purpose (say a revision manifest) can never be accepted as
another (a bundle manifest, a JWT), because verification requires the exact ``typ``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .b64 import b64url_decode, b64url_encode
from .canonical import canonical_json
from .keys import ALGORITHM, SigningKey

__all__ = [
    "TYP_REVISION_MANIFEST",
    "TYP_BUNDLE_MANIFEST",
    "JWSError",
    "MalformedJWS",
    "WrongType",
    "UnknownKey",
    "BadSignature",
    "Verified",
    "KeyLookup",
    "sign",
    "verify",
    "sign_document",
    "verify_document",
]

TYP_REVISION_MANIFEST = "anvil-revision-manifest+jws"
TYP_BUNDLE_MANIFEST = "anvil-bundle-manifest+jws"

# Header members that would let a token choose its own verification key: always refused.
_FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
MAX_JWS_LENGTH = 16 * 1024 * 1024

KeyLookup = Mapping[str, ec.EllipticCurvePublicKey] | Callable[[str], ec.EllipticCurvePublicKey | None]


class JWSError(ValueError):
    """A signed document that must not be trusted."""


class MalformedJWS(JWSError):
    pass


class WrongType(JWSError):
    pass


class UnknownKey(JWSError):
    def __init__(self, kid: str) -> None:
        super().__init__(f"signed with unknown key id {kid!r}")
        self.kid = kid


class BadSignature(JWSError):
    pass


@dataclass(frozen=True)
class Verified:
    header: dict[str, Any]
    payload: bytes

    @property
    def kid(self) -> str:
        return str(self.header["kid"])


def _b64json(data: dict[str, Any]) -> str:
    return b64url_encode(canonical_json(data))


def sign(payload: bytes, key: SigningKey, *, typ: str) -> str:
    """Sign ``payload`` as a compact JWS (ES256) with header ``{alg, kid, typ}``."""
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": typ}
    signing_input = f"{_b64json(header)}.{b64url_encode(payload)}".encode("ascii")
    der = key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input.decode("ascii") + "." + b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _lookup(keys: KeyLookup, kid: str) -> ec.EllipticCurvePublicKey | None:
    if isinstance(keys, Mapping):
        return keys.get(kid)
    return keys(kid)


def verify(token: str, keys: KeyLookup, *, typ: str) -> Verified:
    """Verify a compact JWS: ES256 only, exact ``typ``, known ``kid``; return header and payload."""
    if not isinstance(token, str) or len(token) > MAX_JWS_LENGTH:
        raise MalformedJWS("signature must be a compact JWS string")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedJWS("compact JWS must have three parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
    except ValueError as exc:
        raise MalformedJWS("JWS parts are not base64url JSON") from exc
    if not isinstance(header, dict):
        raise MalformedJWS("JWS header must be a JSON object")
    if header.get("alg") != ALGORITHM:
        raise MalformedJWS(f"algorithm {header.get('alg')!r} refused; only {ALGORITHM} is accepted")
    forbidden = _FORBIDDEN_HEADERS & header.keys()
    if forbidden:
        raise MalformedJWS(f"JWS header members refused: {', '.join(sorted(forbidden))}")
    if header.get("typ") != typ:
        raise WrongType(f"expected a {typ!r} document, got {header.get('typ')!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise MalformedJWS("JWS header has no 'kid'")
    public = _lookup(keys, kid)
    if public is None:
        raise UnknownKey(kid)
    if len(signature) != 64:
        raise BadSignature("ES256 signature must be 64 bytes")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise BadSignature("signature does not verify") from exc
    return Verified(header=header, payload=payload)


def sign_document(document: Mapping[str, Any], key: SigningKey, *, typ: str) -> str:
    """Sign the canonical JSON of a JSON object."""
    return sign(canonical_json(dict(document)), key, typ=typ)


def verify_document(token: str, keys: KeyLookup, *, typ: str) -> dict[str, Any]:
    """Verify a signed JSON document and return the object it carries."""
    verified = verify(token, keys, typ=typ)
    try:
        document = json.loads(verified.payload)
    except ValueError as exc:
        raise MalformedJWS("signed payload is not JSON") from exc
    if not isinstance(document, dict):
        raise MalformedJWS("signed payload must be a JSON object")
    return document
