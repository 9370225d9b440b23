"""Canonical JSON for bundles: the encoder (``anvil_wire.canonical``, which has the fast path) under
the names the bundle code uses, and a strict canonical parser."""

from __future__ import annotations

import json
from typing import Any

from ..canonical import canonical_json as canonical_bytes
from ..canonical import plain_canonical_json as plain_bytes
from .errors import BundleMalformed

__all__ = ["canonical_bytes", "plain_bytes", "parse_canonical"]


def parse_canonical(data: bytes, what: str) -> Any:
    """Parse ``data``, refusing anything that is not the canonical JSON of what it parses to."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BundleMalformed(f"{what} is not JSON ({exc})") from exc
    try:
        again = canonical_bytes(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BundleMalformed(f"{what} is not canonical JSON ({exc})") from exc
    if again != data:
        raise BundleMalformed(
            f"{what} is not canonical JSON (RFC 8785): keys must be sorted, without whitespace "
            "or duplicate keys, numbers in their shortest form"
        )
    return value
