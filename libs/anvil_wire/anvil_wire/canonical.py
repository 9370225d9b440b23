"""Canonical JSON: one byte string per value, so that hashes and signatures are stable."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "sha256_digest", "digest_of", "is_digest"]

_DIGEST_PREFIX = "sha256:"


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON (docs/prompt-format.md, "Canonical JSON").

    Object keys sorted by code point, no insignificant whitespace, UTF-8 without escaping
    non-ASCII, integers as integers, floats in their shortest round-trip form; NaN and
    infinities are refused because JSON cannot carry them.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    """Return ``sha256:<hex>`` of raw bytes."""
    return _DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def digest_of(value: Any) -> str:
    """Return the ``sha256:<hex>`` digest of a value's canonical JSON."""
    return sha256_digest(canonical_json(value))


def is_digest(value: object) -> bool:
    """True when ``value`` looks like ``sha256:`` followed by 64 lowercase hex digits."""
    if not isinstance(value, str) or not value.startswith(_DIGEST_PREFIX):
        return False
    hexpart = value[len(_DIGEST_PREFIX) :]
    return len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)
