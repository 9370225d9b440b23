"""Tokens: every token this instance issues is recorded (for listing, audit and revocation).

The token string itself is never stored or logged: only its jti (the row id) and its claims.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import after_commit, utcnow

from ..audit.service import record
from ..auth import KIND_SCOPES, Principal
from ..events.service import append_event
from ..lookup import ensure_active, get_environment, get_org, get_project
from ..models import Environment, Organisation, Project, Token
from ..state import RegistryState
from .errors import TokenNotFound
from .policy import TOKEN_POLICY, Grant, decide_grant
from .revocations import unexpired_revocations
from .schemas import TokenCreate

__all__ = [
    "issue_bootstrap_admin",
    "issue_token",
    "visible_tokens",
    "get_token",
    "revoke_token",
    "visible_revocations",
]


async def issue_bootstrap_admin(session: AsyncSession, state: RegistryState, *, ttl_seconds: int) -> str:
    """Issue an instance-administrator token (operator, every scope, no organisation limit,
    accepted by every service, so one token drives the whole stack and the CLI)."""
    scopes = sorted(KIND_SCOPES["operator"])
    audience = sorted(TOKEN_POLICY["operator"].audiences)
    token, claims = state.issuer.issue(
        subject="bootstrap-admin", kind="operator", audience=audience, scopes=scopes, ttl_seconds=ttl_seconds
    )
    session.add(
        Token(
            id=claims.jti,
            kind="operator",
            name="bootstrap admin",
            subject=claims.subject,
            organisation_id=None,
            scopes=scopes,
            audience=audience,
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


async def issue_token(
    session: AsyncSession, principal: Principal, *, state: RegistryState, data: TokenCreate
) -> tuple[str, Token]:
    """Issue a scoped, expiring token (never more than the caller holds) and record it."""
    grant = decide_grant(principal, data)
    organisation = await _resolve_limits(session, principal, grant)
    token, claims = state.issuer.issue(
        subject=grant.subject,
        kind=grant.kind,
        audience=grant.audience,
        scopes=grant.scopes,
        ttl_seconds=grant.ttl_seconds,
        org=grant.org,
        project=grant.project,
        environment=grant.environment,
    )
    row = Token(
        id=claims.jti,
        kind=grant.kind,
        name=data.name,
        subject=grant.subject,
        organisation_id=organisation.id if organisation else None,
        project=grant.project,
        environment=grant.environment,
        scopes=list(grant.scopes),
        audience=list(grant.audience),
        created_at=datetime.fromtimestamp(claims.issued_at, UTC),
        created_by=principal.actor,
        expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
    )
    session.add(row)
    record(
        session,
        principal,
        action="token.issue",
        target=claims.jti,
        organisation_id=row.organisation_id,
        details={
            "kind": grant.kind,
            "name": data.name,
            "scopes": list(grant.scopes),
            "audience": list(grant.audience),
            "project": grant.project,
            "environment": grant.environment,
            "expires_at": row.expires_at.isoformat(),
        },
    )
    await session.flush()
    return token, row


async def _resolve_limits(session: AsyncSession, principal: Principal, grant: Grant) -> Organisation | None:
    """The organisation, project and environment a token is limited to must exist (404)."""
    if grant.org is None:
        return None
    organisation = await get_org(session, principal, grant.org)
    rows: list[tuple[Organisation | Project | Environment, str]] = [
        (organisation, f"organisation {grant.org!r}")
    ]
    if grant.project is not None:
        name = f"{grant.org}/{grant.project}"
        if grant.environment is not None:
            project, environment = await get_environment(
                session, principal, grant.org, grant.project, grant.environment
            )
            rows += [(project, f"project {name}"), (environment, f"environment {name}/{grant.environment}")]
        else:
            project = await get_project(session, principal, grant.org, grant.project)
            rows.append((project, f"project {name}"))
    # A client token is only good for serving config: refuse one that could never work.
    if grant.kind == "client":
        for row, what in rows:
            ensure_active(row, what)
    return organisation


async def _visibility(
    session: AsyncSession, principal: Principal, *, instance_wide_sees_all: bool = False
) -> list[ColumnElement[bool]]:
    """Filters: a caller sees only tokens within its own organisation/project/environment limits.

    Only an instance administrator sees every token, unless ``instance_wide_sees_all``: then any
    token without an organisation limit does (a service reading the revocations).
    """
    if principal.is_instance_admin or (instance_wide_sees_all and principal.claims.org is None):
        return []
    claims = principal.claims
    if claims.org is None:
        return [false()]
    org_id = await session.scalar(select(Organisation.id).where(Organisation.slug == claims.org))
    if org_id is None:
        return [false()]
    where: list[ColumnElement[bool]] = [Token.organisation_id == org_id]
    if claims.project is not None:
        where.append(Token.project == claims.project)
    if claims.environment is not None:
        where.append(Token.environment == claims.environment)
    return where


async def visible_tokens(
    session: AsyncSession, principal: Principal, *, include_revoked: bool, include_expired: bool
) -> Select[Token]:
    """The statement listing the tokens this caller may see (for pagination)."""
    stmt = select(Token).where(*await _visibility(session, principal))
    if not include_revoked:
        stmt = stmt.where(Token.revoked_at.is_(None))
    if not include_expired:
        stmt = stmt.where(Token.expires_at > utcnow())
    return stmt


async def visible_revocations(session: AsyncSession, principal: Principal) -> list[tuple[str, datetime]]:
    """``(jti, expires_at)`` of the revoked, unexpired tokens within the caller's limits, by jti:
    an instance-wide token (a service such as the bundle worker) gets every one."""
    where = await _visibility(session, principal, instance_wide_sees_all=True)
    rows = await session.execute(unexpired_revocations(*where))
    return [(jti, expires_at) for jti, expires_at in rows]


async def get_token(
    session: AsyncSession, principal: Principal, token_id: str, *, for_update: bool = False
) -> Token:
    """One token this caller may see; another organisation's tokens do not exist for it (404)."""
    stmt = select(Token).where(Token.id == token_id, *await _visibility(session, principal))
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise TokenNotFound(f"token {token_id!r} not found")
    return row


async def revoke_token(
    session: AsyncSession, principal: Principal, *, state: RegistryState, token: Token
) -> Token:
    """Revoke a token (idempotent); the feed announces it so gateways close its sockets.

    The event payload is ``{"jti", "expires_at"}`` (ISO 8601): consumers can forget the jti
    once it has expired anyway.
    """
    if token.revoked_at is not None:
        return token
    token.revoked_at = utcnow()
    token.revoked_by = principal.actor
    record(
        session,
        principal,
        action="token.revoke",
        target=token.id,
        organisation_id=token.organisation_id,
        details={"kind": token.kind, "name": token.name},
    )
    await session.flush()
    # Last write of the transaction: append_event holds the feed's lock until commit.
    await append_event(
        session,
        kind="token.revoked",
        payload={"jti": token.id, "expires_at": token.expires_at.isoformat()},
        organisation_id=token.organisation_id,
    )
    jti = token.id
    # This replica refuses the token as soon as the revocation is committed; the others
    # within revocation_refresh_seconds (their cache reloads from the table).
    after_commit(session, lambda: state.revocations.revoked.add(jti))
    return token
