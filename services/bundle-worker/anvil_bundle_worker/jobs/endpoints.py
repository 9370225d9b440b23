from __future__ import annotations

import uuid

from fastapi import APIRouter

from ..auth import Authenticated
from ..deps import Session
from . import service
from .schemas import JobPublic

router = APIRouter(tags=["jobs"])


@router.get("/jobs/{job_id}", operation_id="get_job")
async def get_job(job_id: uuid.UUID, session: Session, principal: Authenticated) -> JobPublic:
    """A job's status, attempts, result or error (scope of its kind: bundles:export or bundles:import)."""
    return JobPublic.of(await service.get_job(session, principal, job_id))
