"""The registry's revocation list (``GET /v1/revocations``, docs/api.md section 3.6), parsed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["parse_revocations"]


def parse_revocations(body: Any) -> dict[str, float]:
    """``{"revoked": [{"jti", "expires_at"}...]}`` → jti → expiry (Unix seconds).

    Raises ValueError for anything else: a list is used whole or not at all.
    """
    items = body.get("revoked") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ValueError("a revocation list without 'revoked'")
    revoked: dict[str, float] = {}
    for item in items:
        jti = item.get("jti") if isinstance(item, dict) else None
        expires = item.get("expires_at") if isinstance(item, dict) else None
        if not isinstance(jti, str) or not isinstance(expires, str):
            raise ValueError("a malformed revocation entry")
        try:
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"a malformed expiry {expires!r}") from None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        revoked[jti] = expires_at.timestamp()
    return revoked
