"""The revocations that still matter: tokens revoked and not yet expired.

One query for every reader: the registry's own RevocationCache (auth.py) and ``GET
/v1/revocations``, which the other services (the bundle worker) load their caches from. The
module imports nothing of the registry but its models, so auth.py can import it without a cycle.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Select, select

from anvil_common.db import utcnow

from ..models import Token

__all__ = ["unexpired_revocations"]


def unexpired_revocations(*where: ColumnElement[bool]) -> Select[str, datetime]:
    """``(jti, expires_at)`` of every revoked token that has not expired (and matches ``where``),
    ordered by jti. An expired token is refused anyway, so its revocation can be forgotten."""
    return (
        select(Token.id, Token.expires_at)
        .where(Token.revoked_at.is_not(None), Token.expires_at > utcnow(), *where)
        .order_by(Token.id)
    )
