from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ..models import Job

__all__ = ["JobPublic"]


class JobPublic(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="export or import")
    organisation: str
    status: str = Field(description="queued, running, succeeded or failed")
    attempts: int
    max_attempts: int
    result: dict[str, Any] | None = Field(
        description="export: {bundle, size}; import: {plan}. Set once the job succeeded."
    )
    error: dict[str, Any] | None = Field(
        description="The problem (RFC 9457) of the last failed attempt; final when status is failed."
    )
    run_after: datetime
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    created_by: str

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls(
            id=job.id,
            kind=job.kind,
            organisation=job.organisation,
            status=job.status,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            result=job.result,
            error=job.error,
            run_after=job.run_after,
            created_at=job.created_at,
            updated_at=job.updated_at,
            finished_at=job.finished_at,
            created_by=job.created_by,
        )
