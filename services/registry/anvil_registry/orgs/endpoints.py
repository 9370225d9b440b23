from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select

from anvil_common.pagination import Page, PageParams, page_params, paginate

from ..auth import Principal, authenticate, require
from ..deps import Session
from ..lookup import get_org
from ..models import Organisation
from . import service
from .schemas import OrganisationCreate, OrganisationPublic

router = APIRouter(tags=["organisations"])


@router.post("/orgs", status_code=201, operation_id="create_organisation")
async def create_organisation(
    data: OrganisationCreate,
    session: Session,
    response: Response,
    principal: Annotated[Principal, Depends(require("orgs:admin"))],
) -> OrganisationPublic:
    """Create an organisation (instance administrators only)."""
    org = await service.create_organisation(session, principal, data=data)
    response.headers["Location"] = f"/v1/orgs/{org.slug}"
    return OrganisationPublic.model_validate(org)


@router.get("/orgs", operation_id="list_organisations")
async def list_organisations(
    session: Session,
    principal: Annotated[Principal, Depends(authenticate)],
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[OrganisationPublic]:
    """List the organisations this token can see."""
    stmt = select(Organisation)
    if not principal.is_instance_admin:
        stmt = stmt.where(Organisation.slug == principal.claims.org)
    rows, token = await paginate(session, stmt, Organisation.slug, page)
    return Page(items=[OrganisationPublic.model_validate(r) for r in rows], next_page_token=token)


@router.get("/orgs/{org}", operation_id="get_organisation")
async def get_organisation(
    org: str, session: Session, principal: Annotated[Principal, Depends(authenticate)]
) -> OrganisationPublic:
    """Get one organisation."""
    return OrganisationPublic.model_validate(await get_org(session, principal, org))
