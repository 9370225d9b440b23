from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from anvil_common.http import parse_etags
from anvil_common.pagination import Page, PageParams, page_params, paginate
from anvil_common.problems import Forbidden

from ..auth import Principal, authenticate, require
from ..conditional import check_if_match
from ..deps import Session, State, state_of
from ..environments.service import environment_etag
from ..idempotency import Idempotency
from ..lookup import get_environment
from ..models import ConfigRevision, Environment
from ..state import RegistryState
from . import service
from .cache import CachedConfig
from .diff import diff_revisions
from .errors import EnvironmentArchived, NoRevision
from .schemas import (
    PromotionCreate,
    RevisionCreate,
    RevisionDiff,
    RevisionPublic,
    RevisionSummary,
    RollbackCreate,
)

router = APIRouter(tags=["revisions"])
ENV = "/orgs/{org}/projects/{project}/environments/{environment}"
IfMatch = Annotated[
    str | None, Header(alias="If-Match", description='Required: the environment\'s current ETag ("rev-N").')
]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Replays the first response for the same key and body."),
]
Publisher = Annotated[Principal, Depends(require("revisions:publish"))]
Reader = Annotated[Principal, Depends(require("revisions:read"))]


async def _new_revision(
    session: AsyncSession,
    request: Request,
    principal: Principal,
    data: BaseModel,
    environment: Environment,
    create: Callable[[], Awaitable[service.Created]],
) -> Response:
    """What publish, promote and roll back share: replay by Idempotency-Key, require If-Match
    (checked under the environment's row lock, taken by the caller), create, remember."""
    idem = Idempotency(request, principal, data.model_dump())
    if (replayed := await idem.replay(session)) is not None:
        return replayed
    check_if_match(request.headers.get("if-match"), environment_etag(environment), required=True)
    created = await create()
    body = service.to_public(created.revision, environment, created.manifest)
    status = 201 if created.created else 200
    base = request.url.path.rsplit("/", 1)[0]
    headers = {
        "ETag": environment_etag(environment),
        "Location": f"{base}/revisions/{created.revision.number}",
    }
    idem.remember(session, status_code=status, body=body, headers=headers)
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


@router.post(
    ENV + "/revisions", status_code=201, operation_id="publish_revision", response_model=RevisionPublic
)
async def publish_revision(
    org: str,
    project: str,
    environment: str,
    data: RevisionCreate,
    request: Request,
    session: Session,
    state: State,
    principal: Publisher,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Publish prompt versions as the environment's next revision (200 and no new revision when unchanged)."""
    proj, env = await get_environment(session, principal, org, project, environment, for_update=True)
    return await _new_revision(
        session,
        request,
        principal,
        data,
        env,
        lambda: service.publish_revision(session, state, principal, project=proj, environment=env, data=data),
    )


@router.post(
    ENV + "/promotions", status_code=201, operation_id="promote_revision", response_model=RevisionPublic
)
async def promote_revision(
    org: str,
    project: str,
    environment: str,
    data: PromotionCreate,
    request: Request,
    session: Session,
    state: State,
    principal: Publisher,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Promote: copy a revision of another environment (default its current one) into this one."""
    proj, target = await get_environment(session, principal, org, project, environment, for_update=True)
    _, source = await get_environment(session, principal, org, project, data.from_environment)
    return await _new_revision(
        session,
        request,
        principal,
        data,
        target,
        lambda: service.promote_revision(
            session, state, principal, project=proj, source=source, target=target, data=data
        ),
    )


@router.post(ENV + "/rollbacks", status_code=201, operation_id="roll_back", response_model=RevisionPublic)
async def roll_back(
    org: str,
    project: str,
    environment: str,
    data: RollbackCreate,
    request: Request,
    session: Session,
    state: State,
    principal: Publisher,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Roll back: a new revision N+1 serving revision K's content, recording rollback_of=K."""
    proj, env = await get_environment(session, principal, org, project, environment, for_update=True)
    return await _new_revision(
        session,
        request,
        principal,
        data,
        env,
        lambda: service.roll_back(
            session,
            state,
            principal,
            project=proj,
            environment=env,
            to_revision=data.to_revision,
            message=data.message,
        ),
    )


@router.get(ENV + "/revisions", operation_id="list_revisions")
async def list_revisions(
    org: str,
    project: str,
    environment: str,
    session: Session,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[RevisionSummary]:
    """Revision history, newest first."""
    _, env = await get_environment(session, principal, org, project, environment)
    stmt = select(ConfigRevision).where(ConfigRevision.environment_id == env.id)
    rows, token = await paginate(session, stmt, ConfigRevision.number, page, descending=True)
    items = [RevisionSummary.model_validate(r, from_attributes=True) for r in rows]
    return Page(items=items, next_page_token=token)


@router.get(ENV + "/revisions/{number}", operation_id="get_revision")
async def get_revision(
    org: str, project: str, environment: str, number: int, session: Session, principal: Reader
) -> RevisionPublic:
    """One revision: what it serves, exact versions and digests, partial dependencies."""
    _, env = await get_environment(session, principal, org, project, environment)
    return service.to_public(await service.get_revision(session, env, number), env)


@router.get(ENV + "/revisions/{number}/document", operation_id="get_revision_document")
async def get_revision_document(
    org: str, project: str, environment: str, number: int, session: Session, principal: Reader
) -> Response:
    """The signed revision document (docs/api.md, "Config revisions") of one revision."""
    _, env = await get_environment(session, principal, org, project, environment)
    revision = await service.get_revision(session, env, number)
    return Response(revision.document, media_type="application/json", headers={"ETag": f'"rev-{number}"'})


@router.get(ENV + "/diff", operation_id="diff_revisions")
async def diff(
    org: str,
    project: str,
    environment: str,
    session: Session,
    principal: Reader,
    from_revision: Annotated[int, Query(alias="from", ge=1)],
    to_revision: Annotated[
        int | None, Query(alias="to", ge=1, description="Default: the current revision.")
    ] = None,
) -> RevisionDiff:
    """What changed between two revisions of an environment."""
    _, env = await get_environment(session, principal, org, project, environment)
    before = await service.get_revision(session, env, from_revision)
    after = await service.get_revision(session, env, to_revision or env.last_revision or from_revision)
    return diff_revisions(before, after)


@router.get(ENV + "/config", operation_id="get_config", responses={304: {"description": "Not modified"}})
async def get_config(
    org: str,
    project: str,
    environment: str,
    state: State,
    principal: Annotated[Principal, Depends(require("config:read"))],
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """The environment's current signed revision document; ETag "rev-N", 304 when unchanged."""
    return await _serve_config(state, principal, (org, project, environment), if_none_match)


async def _serve_config(
    state: RegistryState, principal: Principal, key: tuple[str, str, str], if_none_match: str | None
) -> Response:
    principal.ensure_scope_target(*key)
    cached = state.config_cache.get(key)
    if cached is None:
        cached = await _load_config(state, principal, key)
    tags = parse_etags(if_none_match)
    headers = {"ETag": cached.etag, "Cache-Control": "no-cache"}
    if tags is not None and (cached.etag in tags or "*" in tags):
        return Response(status_code=304, headers=headers)
    return Response(cached.body, media_type="application/json", headers=headers)


async def _get_config_fast(request: Request) -> Response:
    # The same checks as get_config (authenticate, then the scope), without FastAPI's per-request
    # dependency solving: this is the path every polling client takes.
    principal = await authenticate(request)
    if not principal.claims.has("config:read"):
        raise Forbidden("token lacks the 'config:read' scope", required_scope="config:read")
    params = request.path_params
    key = (params["org"], params["project"], params["environment"])
    return await _serve_config(state_of(request), principal, key, request.headers.get("if-none-match"))


def config_fast_route() -> Route:
    """A plain route for GET .../config, registered ahead of the routers (OpenAPI documents
    the FastAPI route above, which it shadows)."""
    return Route("/v1" + ENV + "/config", _get_config_fast, methods=["GET"])


async def _load_config(state: RegistryState, principal: Principal, key: tuple[str, str, str]) -> CachedConfig:
    generation = state.config_cache.generation
    async with state.db.session(write=False) as session:
        _, env = await get_environment(session, principal, *key)
        if env.archived_at is not None:
            raise EnvironmentArchived(f"environment {key[2]!r} is archived and serves nothing")
        if env.last_revision == 0:
            raise NoRevision(f"nothing has been published to environment {key[2]!r} yet")
        revision = await service.get_revision(session, env, env.last_revision)
    cached = CachedConfig(etag=f'"rev-{revision.number}"', body=revision.document.encode("utf-8"))
    state.config_cache.put(key, cached, generation=generation)
    return cached
