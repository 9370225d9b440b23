from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from ..auth import Exporter
from ..deps import Session, State
from ..jobs.schemas import JobPublic
from ..jobs.service import idempotency_key
from . import service
from .schemas import ExportCreate

router = APIRouter(tags=["exports"])


@router.post("/exports", status_code=202, operation_id="create_export")
async def create_export(
    data: ExportCreate,
    session: Session,
    state: State,
    principal: Exporter,
    response: Response,
    key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Same key and body: the same job (1-200 characters)."),
    ] = None,
) -> JobPublic:
    """Queue an export of an organisation, a project, a prompt set or chosen prompts; poll the job."""
    job, created = await service.create_export(
        session, principal, state=state, data=data, idempotency_key=idempotency_key(key)
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobPublic.of(job)
