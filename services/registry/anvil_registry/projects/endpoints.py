from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from sqlalchemy import select

from anvil_common.pagination import Page, PageParams, page_params, paginate

from ..auth import Principal, require
from ..conditional import check_if_match
from ..deps import Session
from ..lookup import get_org, get_project
from ..models import Project
from . import service
from .schemas import ProjectCreate, ProjectPublic, ProjectUpdate

router = APIRouter(tags=["projects"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


@router.post("/orgs/{org}/projects", status_code=201, operation_id="create_project")
async def create_project(
    org: str,
    data: ProjectCreate,
    session: Session,
    response: Response,
    principal: Annotated[Principal, Depends(require("projects:write"))],
) -> ProjectPublic:
    """Create a project."""
    organisation = await get_org(session, principal, org)
    principal.ensure_org_wide("create projects")
    project = await service.create_project(session, principal, org=organisation, data=data)
    response.headers["Location"] = f"/v1/orgs/{org}/projects/{project.slug}"
    response.headers["ETag"] = service.project_etag(project)
    return ProjectPublic.model_validate(project)


@router.get("/orgs/{org}/projects", operation_id="list_projects")
async def list_projects(
    org: str,
    session: Session,
    principal: Annotated[Principal, Depends(require("projects:read"))],
    page: Annotated[PageParams, Depends(page_params)],
    include_archived: bool = False,
) -> Page[ProjectPublic]:
    """List an organisation's projects."""
    organisation = await get_org(session, principal, org)
    stmt = select(Project).where(Project.organisation_id == organisation.id)
    if principal.claims.project is not None:
        stmt = stmt.where(Project.slug == principal.claims.project)
    if not include_archived:
        stmt = stmt.where(Project.archived_at.is_(None))
    rows, token = await paginate(session, stmt, Project.slug, page)
    return Page(items=[ProjectPublic.model_validate(r) for r in rows], next_page_token=token)


@router.get("/orgs/{org}/projects/{project}", operation_id="get_project")
async def get_project_endpoint(
    org: str,
    project: str,
    session: Session,
    response: Response,
    principal: Annotated[Principal, Depends(require("projects:read"))],
) -> ProjectPublic:
    """Get one project (with its ETag)."""
    row = await get_project(session, principal, org, project)
    response.headers["ETag"] = service.project_etag(row)
    return ProjectPublic.model_validate(row)


@router.patch("/orgs/{org}/projects/{project}", operation_id="update_project")
async def update_project(
    org: str,
    project: str,
    data: ProjectUpdate,
    session: Session,
    response: Response,
    principal: Annotated[Principal, Depends(require("projects:write"))],
    if_match: IfMatch = None,
) -> ProjectPublic:
    """Update a project's name or description (If-Match honoured)."""
    principal.ensure_project_wide("change the project")
    row = await get_project(session, principal, org, project, for_update=True)
    check_if_match(if_match, service.project_etag(row))
    row = await service.update_project(session, principal, project=row, data=data)
    response.headers["ETag"] = service.project_etag(row)
    return ProjectPublic.model_validate(row)


@router.delete("/orgs/{org}/projects/{project}", operation_id="archive_project")
async def archive_project(
    org: str,
    project: str,
    session: Session,
    response: Response,
    principal: Annotated[Principal, Depends(require("projects:write"))],
    if_match: IfMatch = None,
) -> ProjectPublic:
    """Archive a project: read-only from now on, its environments stop serving."""
    principal.ensure_project_wide("archive the project")
    row = await get_project(session, principal, org, project, for_update=True)
    check_if_match(if_match, service.project_etag(row))
    row = await service.archive_project(session, principal, project=row)
    response.headers["ETag"] = service.project_etag(row)
    return ProjectPublic.model_validate(row)
