"""The seal ``signature.jws`` (section 5): a JWS over the bundle digest, bound to its issuer."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from ..jws import TYP_BUNDLE_MANIFEST, JWSError, UnknownKey, sign_document, verify
from ..keys import SigningKey
from .errors import BundleError, BundleSignatureInvalid, BundleUntrustedKey
from .fastjson import parse_canonical
from .spec import SEAL_FORMAT, SEAL_VERSION, check_members, reader_is_strict

__all__ = ["Seal", "TrustedKeys", "make_seal", "verify_seal"]

TrustedKeys = Callable[[str, str], EllipticCurvePublicKey | None]
"""``(issuer, kid) -> public key``, or None when that key is not trusted for that issuer."""

_MEMBERS = ("format", "version", "bundle", "issuer", "created_at")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_MAX_SEAL = 16 * 1024


@dataclass(frozen=True)
class Seal:
    """A verified seal: who sealed which bundle, with which key, when."""

    issuer: str
    kid: str
    created_at: datetime
    bundle: str


def make_seal(digest: str, issuer: str, key: SigningKey, created_at: datetime) -> bytes:
    """The ``signature.jws`` entry for a bundle digest, as ASCII bytes."""
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    payload = {
        "format": SEAL_FORMAT,
        "version": SEAL_VERSION,
        "bundle": digest,
        "issuer": issuer,
        "created_at": created_at.astimezone(UTC).strftime(_TIME_FORMAT),
    }
    return sign_document(payload, key, typ=TYP_BUNDLE_MANIFEST).encode("ascii")


def _invalid(message: str) -> BundleSignatureInvalid:
    return BundleSignatureInvalid(f"the bundle's seal is invalid: {message}")


def _payload(raw: bytes) -> dict[str, object]:
    try:
        payload = parse_canonical(raw, "the seal's payload")
        strict = reader_is_strict(
            payload.get("version") if isinstance(payload, dict) else None, "seal version", kind="seal format"
        )
        check_members(payload, _MEMBERS, "the seal's payload", strict=strict)
    except BundleError as exc:
        raise _invalid(str(exc)) from None
    if payload["format"] != SEAL_FORMAT:
        raise _invalid(f"its format is {payload['format']!r}, not {SEAL_FORMAT!r}")
    return payload  # type: ignore[no-any-return]


def verify_seal(token: bytes, *, digest: str, issuer: str, trust: TrustedKeys | None) -> Seal:
    """Verify a seal against the digest the reader computed and the manifest's issuer."""
    if len(token) > _MAX_SEAL or not token.isascii():
        raise _invalid("it is not a compact JWS")
    try:
        verified = verify(
            token.decode("ascii"),
            (lambda kid: trust(issuer, kid)) if trust is not None else (lambda kid: None),
            typ=TYP_BUNDLE_MANIFEST,
        )
    except UnknownKey as exc:
        raise BundleUntrustedKey(
            f"the bundle is sealed with key {exc.kid!r}, which is not a trusted key of {issuer}"
        ) from None
    except JWSError as exc:
        raise _invalid(str(exc)) from None
    payload = _payload(verified.payload)
    if payload["bundle"] != digest:
        raise _invalid(
            f"it seals bundle {payload['bundle']}, but this bundle's manifest hashes to {digest} "
            "(the manifest was changed after sealing, or the seal was taken from another bundle)"
        )
    if payload["issuer"] != issuer:
        raise _invalid(f"it was issued by {payload['issuer']!r}, but the manifest's exporter is {issuer!r}")
    created_at = payload["created_at"]
    if not isinstance(created_at, str) or not _TIME_RE.fullmatch(created_at):
        raise _invalid("created_at is not a UTC time YYYY-MM-DDTHH:MM:SSZ")
    try:
        when = datetime.strptime(created_at, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _invalid(f"created_at {created_at!r} is not a real time") from None
    return Seal(issuer=issuer, kid=verified.kid, created_at=when, bundle=digest)
