"""Reading jobs, with the caller's tenancy; queueing them is queue.py."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.problems import BadRequest, Forbidden

from ..auth import Principal
from ..models import Job
from .errors import JobNotFound

__all__ = ["get_job", "idempotency_key", "SCOPE_OF_KIND", "MAX_IDEMPOTENCY_KEY"]

SCOPE_OF_KIND = {"export": "bundles:export", "import": "bundles:import"}
MAX_IDEMPOTENCY_KEY = 200


async def get_job(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> Job:
    """A job the caller may see: its organisation (and project limit), then its kind's scope."""
    job = await session.scalar(select(Job).where(Job.id == job_id))
    if job is None or not principal.can_see(job.organisation, job.project):
        raise JobNotFound(f"job {job_id} not found")
    scope = SCOPE_OF_KIND.get(job.kind, "bundles:import")
    if not principal.claims.has(scope):
        raise Forbidden(f"token lacks the {scope!r} scope", required_scope=scope)
    return job


def idempotency_key(value: str | None) -> str | None:
    """The Idempotency-Key header, checked (1 to 200 characters, else 400)."""
    if value is not None and (not value.strip() or len(value) > MAX_IDEMPOTENCY_KEY):
        raise BadRequest(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters")
    return value
