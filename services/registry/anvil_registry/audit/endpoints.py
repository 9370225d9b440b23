from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from anvil_common.pagination import Page, PageParams, page_params, paginate
from anvil_common.problems import ValidationFailed

from ..auth import Principal, require
from ..deps import Session
from ..models import AuditEntry
from . import service
from .schemas import AuditEntryPublic

router = APIRouter(tags=["audit"])


@router.get("/audit", operation_id="list_audit_entries")
async def list_audit_entries(
    session: Session,
    principal: Annotated[Principal, Depends(require("audit:read"))],
    page: Annotated[PageParams, Depends(page_params)],
    action: Annotated[str | None, Query(max_length=60, description="Exact action, e.g. token.issue.")] = None,
    target: Annotated[str | None, Query(max_length=500, description="Exact target.")] = None,
    actor: Annotated[str | None, Query(max_length=200, description="Exact actor (token subject).")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Only entries at or after this time (with a UTC offset).")
    ] = None,
) -> Page[AuditEntryPublic]:
    """Read the audit log, newest first (organisation-limited tokens see their organisation's)."""
    if since is not None:
        try:
            since = since.astimezone(UTC)
        except OverflowError:
            raise ValidationFailed("since is outside the range of UTC datetimes") from None
    stmt = await service.audit_entries(
        session, principal, action=action, target=target, actor=actor, since=since
    )
    rows, token = await paginate(session, stmt, AuditEntry.id, page, descending=True)
    slugs = await service.org_slugs(session, (r.organisation_id for r in rows))
    items = [
        AuditEntryPublic(
            id=r.id,
            at=r.at,
            actor=r.actor,
            actor_token=r.actor_token,
            action=r.action,
            organisation_id=r.organisation_id,
            org=slugs.get(r.organisation_id) if r.organisation_id else None,
            target=r.target,
            details=r.details,
            request_id=r.request_id,
        )
        for r in rows
    ]
    return Page(items=items, next_page_token=token)
