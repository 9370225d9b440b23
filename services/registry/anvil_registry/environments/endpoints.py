from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from sqlalchemy import select

from anvil_common.pagination import Page, PageParams, page_params, paginate

from ..auth import Principal, require
from ..conditional import check_if_match
from ..deps import Session
from ..lookup import get_environment, get_project
from ..models import Environment
from . import service
from .schemas import EnvironmentCreate, EnvironmentPublic

router = APIRouter(tags=["environments"])
BASE = "/orgs/{org}/projects/{project}/environments"


@router.post(BASE, status_code=201, operation_id="create_environment")
async def create_environment(
    org: str,
    project: str,
    data: EnvironmentCreate,
    session: Session,
    response: Response,
    principal: Annotated[Principal, Depends(require("projects:write"))],
) -> EnvironmentPublic:
    """Create an environment (dev, staging, prod or custom)."""
    principal.ensure_project_wide("create environments")
    proj = await get_project(session, principal, org, project)
    env = await service.create_environment(session, principal, project=proj, data=data)
    response.headers["Location"] = f"/v1/orgs/{org}/projects/{project}/environments/{env.name}"
    response.headers["ETag"] = service.environment_etag(env)
    return service.to_public(env)


@router.get(BASE, operation_id="list_environments")
async def list_environments(
    org: str,
    project: str,
    session: Session,
    principal: Annotated[Principal, Depends(require("projects:read"))],
    page: Annotated[PageParams, Depends(page_params)],
    include_archived: bool = False,
) -> Page[EnvironmentPublic]:
    """List a project's environments."""
    proj = await get_project(session, principal, org, project)
    stmt = select(Environment).where(Environment.project_id == proj.id)
    if principal.claims.environment is not None:
        stmt = stmt.where(Environment.name == principal.claims.environment)
    if not include_archived:
        stmt = stmt.where(Environment.archived_at.is_(None))
    rows, token = await paginate(session, stmt, Environment.name, page)
    return Page(items=[service.to_public(r) for r in rows], next_page_token=token)


@router.get(BASE + "/{environment}", operation_id="get_environment")
async def get_environment_endpoint(
    org: str,
    project: str,
    environment: str,
    session: Session,
    response: Response,
    principal: Annotated[Principal, Depends(require("projects:read"))],
) -> EnvironmentPublic:
    """Get an environment; its ETag names its latest revision."""
    _, env = await get_environment(session, principal, org, project, environment)
    response.headers["ETag"] = service.environment_etag(env)
    return service.to_public(env)


@router.delete(BASE + "/{environment}", operation_id="archive_environment")
async def archive_environment(
    org: str,
    project: str,
    environment: str,
    session: Session,
    response: Response,
    principal: Annotated[Principal, Depends(require("projects:write"))],
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> EnvironmentPublic:
    """Archive an environment: it stops serving; its revisions are kept."""
    proj, env = await get_environment(session, principal, org, project, environment, for_update=True)
    check_if_match(if_match, service.environment_etag(env))
    env = await service.archive_environment(session, principal, project=proj, environment=env)
    response.headers["ETag"] = service.environment_etag(env)
    return service.to_public(env)
