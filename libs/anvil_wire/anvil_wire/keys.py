"""Instance key sets: EC P-256 signing keys with RFC 7638 key ids, and their public JWKS."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .b64 import b64url_decode, b64url_encode
from .canonical import canonical_json, sha256_digest

__all__ = [
    "ALGORITHM",
    "KeyError_",
    "SigningKey",
    "KeySet",
    "public_key_from_jwk",
    "public_jwk",
    "jwk_thumbprint",
    "public_keys_from_jwks",
]

ALGORITHM = "ES256"
_COORD = 32


class KeyError_(ValueError):  # noqa: N801 - avoid shadowing the builtin KeyError
    """A key or key set that cannot be used."""


def _int_to_b64(value: int) -> str:
    return b64url_encode(value.to_bytes(_COORD, "big"))


def _b64_to_int(text: Any, field: str) -> int:
    if not isinstance(text, str):
        raise KeyError_(f"JWK member {field!r} must be a string")
    try:
        raw = b64url_decode(text)
    except ValueError as exc:
        raise KeyError_(f"JWK member {field!r} is not base64url") from exc
    if len(raw) != _COORD:
        raise KeyError_(f"JWK member {field!r} must be {_COORD} bytes for P-256")
    return int.from_bytes(raw, "big")


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK members (kty, crv, x, y) of a P-256 key."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise KeyError_("only P-256 keys are supported")
    numbers = key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _int_to_b64(numbers.x), "y": _int_to_b64(numbers.y)}


def jwk_thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) used as the key id."""
    digest = sha256_digest(canonical_json(public_jwk(key))).removeprefix("sha256:")
    return b64url_encode(bytes.fromhex(digest))


def public_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """Build a P-256 public key from a JWK, refusing any other key type or algorithm."""
    if not isinstance(jwk, Mapping):
        raise KeyError_("a JWK must be a JSON object")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise KeyError_("only EC P-256 keys (ES256) are accepted")
    if jwk.get("alg", ALGORITHM) != ALGORITHM:
        raise KeyError_(f"key algorithm must be {ALGORITHM}")
    x, y = _b64_to_int(jwk.get("x"), "x"), _b64_to_int(jwk.get("y"), "y")
    try:
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError as exc:
        raise KeyError_("JWK point is not on the P-256 curve") from exc


def public_keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, ec.EllipticCurvePublicKey]:
    """Map ``kid`` to public key for every key of a JWKS document; the kid must be present."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise KeyError_("a JWKS must be an object with a 'keys' array")
    result: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in keys:
        kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
        if not isinstance(kid, str) or not kid:
            raise KeyError_("every JWKS key needs a 'kid'")
        result[kid] = public_key_from_jwk(jwk)
    return result


@dataclass(frozen=True)
class SigningKey:
    """One private signing key with its id and lifecycle state."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey
    created_at: str
    status: str = "active"  # "active" signs; "retired" is only published for verification

    @classmethod
    def generate(cls) -> SigningKey:
        private = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return cls(kid=jwk_thumbprint(private.public_key()), private_key=private, created_at=now)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def private_jwk(self) -> dict[str, str]:
        d = self.private_key.private_numbers().private_value
        return {
            **self.public_jwk(),
            "d": _int_to_b64(d),
            "anvil_created_at": self.created_at,
            "anvil_status": self.status,
        }

    @classmethod
    def from_private_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        public = public_key_from_jwk(jwk)
        d = _b64_to_int(jwk.get("d"), "d")
        try:
            private = ec.derive_private_key(d, ec.SECP256R1())
        except ValueError as exc:
            raise KeyError_("JWK private value is invalid") from exc
        if public_jwk(private.public_key()) != public_jwk(public):
            raise KeyError_("JWK private value does not match its public point")
        kid = jwk.get("kid") or jwk_thumbprint(public)
        status = jwk.get("anvil_status", "active")
        if status not in ("active", "retired"):
            raise KeyError_(f"unknown key status {status!r}")
        return cls(
            kid=str(kid), private_key=private, created_at=str(jwk.get("anvil_created_at", "")), status=status
        )


@dataclass(frozen=True)
class KeySet:
    """The instance key set: exactly one active key signs; retired keys stay published."""

    keys: tuple[SigningKey, ...]

    def __post_init__(self) -> None:
        active = [k for k in self.keys if k.status == "active"]
        if len(active) != 1:
            raise KeyError_(f"a key set needs exactly one active key, found {len(active)}")
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise KeyError_("duplicate kid in key set")

    @classmethod
    def generate(cls) -> KeySet:
        return cls(keys=(SigningKey.generate(),))

    @property
    def active(self) -> SigningKey:
        return next(k for k in self.keys if k.status == "active")

    def rotate(self) -> KeySet:
        """A new key set whose new key signs and whose old keys are kept as retired."""
        retired = tuple(SigningKey(k.kid, k.private_key, k.created_at, "retired") for k in self.keys)
        return KeySet(keys=(SigningKey.generate(), *retired))

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {k.kid: k.public_key for k in self.keys}

    def to_json(self) -> bytes:
        return json.dumps({"keys": [k.private_jwk() for k in self.keys]}, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> KeySet:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise KeyError_("key set file is not JSON") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
            raise KeyError_("key set must be an object with a non-empty 'keys' array")
        return cls(keys=tuple(SigningKey.from_private_jwk(k) for k in doc["keys"]))

    @classmethod
    def load(cls, path: Path) -> KeySet:
        try:
            return cls.from_json(path.read_bytes())
        except OSError as exc:
            raise KeyError_(f"cannot read key set {path}: {exc.strerror}") from exc

    @classmethod
    def load_or_generate(cls, path: Path) -> KeySet:
        """Load the key set at ``path``, creating it (mode 0600) on first run."""
        if path.exists():
            return cls.load(path)
        keyset = cls.generate()
        keyset.save(path)
        return keyset

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600 (write, fsync, rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
