from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from anvil_wire.prompts import SLUG_PATTERN

from ..auth import Importer
from ..bundles.endpoints import MEDIA_TYPE
from ..deps import Session, State
from ..jobs.schemas import JobPublic
from ..jobs.service import idempotency_key
from . import service
from .schemas import Strategy, parse_overrides

__all__ = ["router"]

router = APIRouter(tags=["imports"])

_BODY = {
    "required": True,
    "description": "The bundle file (docs/bundle-format.md), at most max_bundle_bytes.",
    "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}


@router.post(
    "/imports",
    status_code=202,
    operation_id="create_import",
    openapi_extra={"requestBody": _BODY},
)
async def create_import(
    request: Request,
    session: Session,
    state: State,
    principal: Importer,
    response: Response,
    organisation: Annotated[str, Query(pattern=f"^{SLUG_PATTERN}$", description="The target organisation.")],
    strategy: Annotated[Strategy, Query(description="What to do with conflicts.")] = "fail",
    override: Annotated[
        list[str],
        Query(description="Per-prompt strategy, `project/name=strategy`; repeat for several."),
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Same key and upload: the same job (1-200 characters)."),
    ] = None,
) -> JobPublic:
    """Upload a bundle to import: queue its validation and planning; poll the job for the plan."""
    checked_key = idempotency_key(key)
    overrides = parse_overrides(override)
    principal.ensure_org(organisation)
    principal.ensure_project_wide("import bundles")
    # Checked before the body is read: an unauthorised or oversized upload is refused unread.
    data = await service.read_upload(
        request.stream(),
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
        max_bytes=state.settings.max_bundle_bytes,
    )
    job, created = await service.create_import(
        session,
        principal,
        state=state,
        organisation=organisation,
        strategy=strategy,
        overrides=overrides,
        data=data,
        idempotency_key=checked_key,
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobPublic.of(job)
