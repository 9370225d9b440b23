"""Prompt set routes; set names follow the prompt name grammar, so they are ``{name:path}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from sqlalchemy import select

from anvil_common.pagination import Page, PageParams, page_params, paginate

from .. import lookup
from ..auth import Principal, require
from ..conditional import check_if_match
from ..deps import Session
from ..models import PromptSet
from . import service
from .schemas import PromptSetCreate, PromptSetPublic, PromptSetUpdate

router = APIRouter(tags=["prompt sets"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]
Reader = Annotated[Principal, Depends(require("projects:read"))]
Writer = Annotated[Principal, Depends(require("projects:write"))]
BASE = "/orgs/{org}/projects/{project}/prompt-sets"


@router.post(BASE, status_code=201, operation_id="create_prompt_set")
async def create_prompt_set(
    org: str, project: str, data: PromptSetCreate, session: Session, response: Response, principal: Writer
) -> PromptSetPublic:
    """Create a prompt set; every listed prompt must exist and be active."""
    principal.ensure_project_wide("change prompt sets")
    proj = await lookup.get_project(session, principal, org, project)
    row = await service.create_prompt_set(session, principal, project=proj, data=data)
    response.headers["Location"] = f"/v1/orgs/{org}/projects/{project}/prompt-sets/{row.name}"
    response.headers["ETag"] = service.prompt_set_etag(row)
    return PromptSetPublic.model_validate(row)


@router.get(BASE, operation_id="list_prompt_sets")
async def list_prompt_sets(
    org: str,
    project: str,
    session: Session,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
    include_archived: bool = False,
) -> Page[PromptSetPublic]:
    """List a project's prompt sets by name."""
    proj = await lookup.get_project(session, principal, org, project)
    stmt = select(PromptSet).where(PromptSet.project_id == proj.id)
    if not include_archived:
        stmt = stmt.where(PromptSet.archived_at.is_(None))
    rows, token = await paginate(session, stmt, PromptSet.name, page)
    return Page(items=[PromptSetPublic.model_validate(r) for r in rows], next_page_token=token)


@router.get(BASE + "/{name:path}", operation_id="get_prompt_set")
async def get_prompt_set(
    org: str, project: str, name: str, session: Session, response: Response, principal: Reader
) -> PromptSetPublic:
    """Get one prompt set (with its ETag)."""
    proj = await lookup.get_project(session, principal, org, project)
    row = await service.get_prompt_set(session, project=proj, name=name)
    response.headers["ETag"] = service.prompt_set_etag(row)
    return PromptSetPublic.model_validate(row)


@router.patch(BASE + "/{name:path}", operation_id="update_prompt_set")
async def update_prompt_set(
    org: str,
    project: str,
    name: str,
    data: PromptSetUpdate,
    session: Session,
    response: Response,
    principal: Writer,
    if_match: IfMatch = None,
) -> PromptSetPublic:
    """Change a prompt set's description or members (If-Match honoured)."""
    principal.ensure_project_wide("change prompt sets")
    proj = await lookup.get_project(session, principal, org, project)
    row = await service.get_prompt_set(session, project=proj, name=name, for_update=True)
    check_if_match(if_match, service.prompt_set_etag(row))
    row = await service.update_prompt_set(session, principal, project=proj, prompt_set=row, data=data)
    response.headers["ETag"] = service.prompt_set_etag(row)
    return PromptSetPublic.model_validate(row)


@router.delete(BASE + "/{name:path}", operation_id="archive_prompt_set")
async def archive_prompt_set(
    org: str,
    project: str,
    name: str,
    session: Session,
    response: Response,
    principal: Writer,
    if_match: IfMatch = None,
) -> PromptSetPublic:
    """Archive a prompt set (If-Match honoured)."""
    principal.ensure_project_wide("change prompt sets")
    proj = await lookup.get_project(session, principal, org, project)
    row = await service.get_prompt_set(session, project=proj, name=name, for_update=True)
    check_if_match(if_match, service.prompt_set_etag(row))
    row = await service.archive_prompt_set(session, principal, project=proj, prompt_set=row)
    response.headers["ETag"] = service.prompt_set_etag(row)
    return PromptSetPublic.model_validate(row)
