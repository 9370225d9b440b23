"""Prompt routes. Names contain '/', so they are ``{name:path}``; the routes ending in
``/versions`` are registered first, and no name may contain a ``versions`` segment."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from sqlalchemy import select

from anvil_common.pagination import Page, PageParams, page_params, paginate

from .. import lookup
from ..auth import Principal, require
from ..conditional import check_if_match
from ..deps import Session, State
from ..models import Prompt, PromptVersion
from . import service
from .errors import PromptVersionNotFound
from .schemas import Origin, PromptCreate, PromptPublic, PromptVersionCreate, PromptVersionPublic

router = APIRouter(tags=["prompts"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]
Reader = Annotated[Principal, Depends(require("prompts:read"))]
Writer = Annotated[Principal, Depends(require("prompts:write"))]
BASE = "/orgs/{org}/projects/{project}/prompts"


def _version_public(name: str, version: PromptVersion, parents: dict[uuid.UUID, int]) -> PromptVersionPublic:
    origin = None
    if version.origin_instance is not None and version.origin_digest is not None:
        origin = Origin(instance=version.origin_instance, digest=version.origin_digest)
    return PromptVersionPublic(
        prompt=name,
        number=version.number,
        content_hash=version.content_hash,
        content=version.content,
        parent=parents.get(version.parent_id) if version.parent_id else None,
        origin=origin,
        message=version.message,
        created_at=version.created_at,
        created_by=version.created_by,
    )


@router.post(BASE, status_code=201, operation_id="create_prompt")
async def create_prompt(
    org: str, project: str, data: PromptCreate, session: Session, response: Response, principal: Writer
) -> PromptPublic:
    """Create a prompt (it has no versions until the first is added)."""
    proj = await lookup.get_project(session, principal, org, project)
    prompt = await service.create_prompt(session, principal, project=proj, data=data)
    response.headers["Location"] = f"/v1/orgs/{org}/projects/{project}/prompts/{prompt.name}"
    response.headers["ETag"] = service.prompt_etag(prompt)
    return PromptPublic.model_validate(prompt)


@router.get(BASE, operation_id="list_prompts")
async def list_prompts(
    org: str,
    project: str,
    session: Session,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
    include_archived: bool = False,
) -> Page[PromptPublic]:
    """List a project's prompts by name."""
    proj = await lookup.get_project(session, principal, org, project)
    stmt = select(Prompt).where(Prompt.project_id == proj.id)
    if not include_archived:
        stmt = stmt.where(Prompt.archived_at.is_(None))
    rows, token = await paginate(session, stmt, Prompt.name, page)
    return Page(items=[PromptPublic.model_validate(r) for r in rows], next_page_token=token)


@router.get(BASE + "/{name:path}/versions/{number}", operation_id="get_prompt_version")
async def get_prompt_version(
    org: str, project: str, name: str, number: int, session: Session, principal: Reader
) -> PromptVersionPublic:
    """Get one version of a prompt."""
    proj = await lookup.get_project(session, principal, org, project)
    prompt = await lookup.get_prompt(session, proj, name)
    version = await session.scalar(
        select(PromptVersion).where(PromptVersion.prompt_id == prompt.id, PromptVersion.number == number)
    )
    if version is None:
        raise PromptVersionNotFound(f"prompt {name!r} has no version {number}")
    return _version_public(name, version, await service.parent_numbers(session, [version]))


@router.get(BASE + "/{name:path}/versions", operation_id="list_prompt_versions")
async def list_prompt_versions(
    org: str,
    project: str,
    name: str,
    session: Session,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[PromptVersionPublic]:
    """List a prompt's versions, newest first."""
    proj = await lookup.get_project(session, principal, org, project)
    prompt = await lookup.get_prompt(session, proj, name)
    stmt = select(PromptVersion).where(PromptVersion.prompt_id == prompt.id)
    rows, token = await paginate(session, stmt, PromptVersion.number, page, descending=True)
    parents = await service.parent_numbers(session, rows)
    return Page(items=[_version_public(name, v, parents) for v in rows], next_page_token=token)


@router.post(
    BASE + "/{name:path}/versions",
    status_code=201,
    operation_id="create_prompt_version",
    responses={
        200: {"description": "Identical to the latest version: nothing written, that version returned."}
    },
)
async def create_prompt_version(
    org: str,
    project: str,
    name: str,
    data: PromptVersionCreate,
    session: Session,
    state: State,
    response: Response,
    principal: Writer,
    if_match: IfMatch = None,
) -> PromptVersionPublic:
    """Add a version (creates the prompt if missing); content equal to the latest is a no-op (200)."""
    found = await lookup.get_prompt_for_update(session, principal, org, project, name)
    locked = None
    if found is not None:
        proj, locked = found[0], (found[1], found[2])
    else:  # a new prompt, or a 404 worded by the slow path
        proj = await lookup.get_project(session, principal, org, project)
    prompt, version, created = await service.create_version(
        session,
        principal,
        project=proj,
        name=name,
        content=data.content,
        message=data.message,
        if_match=if_match,
        max_bytes=state.settings.max_prompt_bytes,
        locked=locked,
    )
    if not created:
        response.status_code = 200
    response.headers["Location"] = (
        f"/v1/orgs/{org}/projects/{project}/prompts/{name}/versions/{version.number}"
    )
    response.headers["ETag"] = service.prompt_etag(prompt)
    if created and version.parent_id is not None:
        parents = {version.parent_id: version.number - 1}  # a new version's parent is the previous latest
    else:
        parents = await service.parent_numbers(session, [version])
    return _version_public(name, version, parents)


@router.get(BASE + "/{name:path}", operation_id="get_prompt")
async def get_prompt(
    org: str, project: str, name: str, session: Session, response: Response, principal: Reader
) -> PromptPublic:
    """Get one prompt (with its ETag)."""
    proj = await lookup.get_project(session, principal, org, project)
    prompt = await lookup.get_prompt(session, proj, name)
    response.headers["ETag"] = service.prompt_etag(prompt)
    return PromptPublic.model_validate(prompt)


@router.delete(
    BASE + "/{name:path}",
    operation_id="archive_prompt",
    response_model=PromptPublic,
    responses={204: {"description": "Purged: the prompt and its versions are deleted."}},
)
async def archive_prompt(
    org: str,
    project: str,
    name: str,
    session: Session,
    response: Response,
    principal: Writer,
    if_match: IfMatch = None,
    purge: bool = False,
) -> PromptPublic | Response:
    """Archive a prompt (revisions keep serving it); ``purge=true`` deletes it if nothing uses it."""
    principal.ensure_project_wide("archive or purge prompts")
    proj = await lookup.get_project(session, principal, org, project)
    prompt = await lookup.get_prompt(session, proj, name, for_update=True)
    check_if_match(if_match, service.prompt_etag(prompt))
    if purge:
        await service.purge_prompt(session, principal, project=proj, prompt=prompt)
        return Response(status_code=204)
    prompt = await service.archive_prompt(session, principal, project=proj, prompt=prompt)
    response.headers["ETag"] = service.prompt_etag(prompt)
    return PromptPublic.model_validate(prompt)
