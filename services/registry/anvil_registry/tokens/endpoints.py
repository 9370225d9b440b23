from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.pagination import Page, PageParams, page_params, paginate

from ..audit.service import org_slugs
from ..auth import Principal, require
from ..deps import Session, State
from ..models import Token
from . import service
from .schemas import Revocation, RevocationList, TokenCreate, TokenIssued, TokenPublic

router = APIRouter(tags=["tokens"])
TokenId = Annotated[str, Path(max_length=64, description="The token's jti.")]
TokensAdmin = Annotated[Principal, Depends(require("tokens:admin"))]
# The revocation list tells no more than the event feed's token.revoked events already do.
EventsReader = Annotated[Principal, Depends(require("events:read"))]


def _public(row: Token, slugs: dict[uuid.UUID, str]) -> TokenPublic:
    return TokenPublic(
        id=row.id,
        kind=row.kind,
        name=row.name,
        subject=row.subject,
        org=slugs.get(row.organisation_id) if row.organisation_id else None,
        project=row.project,
        environment=row.environment,
        scopes=list(row.scopes),
        audience=list(row.audience),
        expires_at=row.expires_at,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )


async def _one(session: AsyncSession, row: Token) -> TokenPublic:
    return _public(row, await org_slugs(session, [row.organisation_id]))


@router.post("/tokens", status_code=201, operation_id="issue_token")
async def issue_token(
    data: TokenCreate, session: Session, state: State, response: Response, principal: TokensAdmin
) -> TokenIssued:
    """Issue a scoped, expiring token: at most the caller's own scopes and limits.

    Default / maximum lifetime per kind: operator 12 h / 90 d; service 30 d / 365 d;
    client 90 d / 365 d; peer 30 d / 365 d. Default audience (also the allowed values):
    operator and service: anvil-registry, anvil-bundle-worker, anvil-push-gateway; client:
    anvil-push-gateway, anvil-registry; peer: anvil-bundle-worker, anvil-registry. Default
    scopes: every scope of the kind that the caller holds (orgs:admin only without an org).
    A client token is for one existing, active environment with exactly config:read. Only
    an instance administrator issues tokens without an organisation (operator or service).
    The token string is in this response only; it is never stored.
    """
    token, row = await service.issue_token(session, principal, state=state, data=data)
    response.headers["Location"] = f"/v1/tokens/{row.id}"
    public = await _one(session, row)
    return TokenIssued(**public.model_dump(), token=token)


@router.get("/tokens", operation_id="list_tokens")
async def list_tokens(
    session: Session,
    principal: TokensAdmin,
    page: Annotated[PageParams, Depends(page_params)],
    include_revoked: bool = False,
    include_expired: bool = False,
) -> Page[TokenPublic]:
    """List the tokens this caller may see (never the token strings), ordered by id."""
    stmt = await service.visible_tokens(
        session, principal, include_revoked=include_revoked, include_expired=include_expired
    )
    rows, next_token = await paginate(session, stmt, Token.id, page)
    slugs = await org_slugs(session, (r.organisation_id for r in rows))
    return Page(items=[_public(r, slugs) for r in rows], next_page_token=next_token)


@router.get("/tokens/{token_id}", operation_id="get_token")
async def get_token(token_id: TokenId, session: Session, principal: TokensAdmin) -> TokenPublic:
    """Get one token's record (never the token string)."""
    return await _one(session, await service.get_token(session, principal, token_id))


@router.delete("/tokens/{token_id}", operation_id="revoke_token")
async def revoke_token(
    token_id: TokenId, session: Session, state: State, principal: TokensAdmin
) -> TokenPublic:
    """Revoke a token at once on this replica, within seconds on the others (idempotent)."""
    row = await service.get_token(session, principal, token_id, for_update=True)
    row = await service.revoke_token(session, principal, state=state, token=row)
    return await _one(session, row)


@router.get("/revocations", operation_id="list_revocations")
async def list_revocations(session: Session, principal: EventsReader) -> RevocationList:
    """The revoked tokens that have not expired yet, whole (not paginated), ordered by jti.

    Other services (the bundle worker) load their revocation caches from it every few seconds.
    An instance-wide token gets every revocation; a limited token those within its limits.
    """
    rows = await service.visible_revocations(session, principal)
    return RevocationList(revoked=[Revocation(jti=jti, expires_at=expires_at) for jti, expires_at in rows])
