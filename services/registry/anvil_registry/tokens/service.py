"""Tokens: every token this instance issues is recorded (for listing, audit and revocation)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ..audit.service import record
from ..auth import AUDIENCE, KIND_SCOPES
from ..models import Token
from ..state import RegistryState

__all__ = ["issue_bootstrap_admin"]


async def issue_bootstrap_admin(session: AsyncSession, state: RegistryState, *, ttl_seconds: int) -> str:
    """Issue an instance-administrator token (operator, every scope, no organisation limit)."""
    scopes = sorted(KIND_SCOPES["operator"])
    token, claims = state.issuer.issue(
        subject="bootstrap-admin", kind="operator", audience=AUDIENCE, scopes=scopes, ttl_seconds=ttl_seconds
    )
    session.add(
        Token(
            id=claims.jti,
            kind="operator",
            name="bootstrap admin",
            subject=claims.subject,
            organisation_id=None,
            scopes=scopes,
            audience=[AUDIENCE],
            created_by="system",
            expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
        )
    )
    record(
        session,
        None,
        action="token.issue",
        target=claims.jti,
        organisation_id=None,
        details={"kind": "operator"},
    )
    return token
