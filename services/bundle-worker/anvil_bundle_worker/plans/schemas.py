from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ..models import Plan

__all__ = ["PlanPublic", "effective_status"]


def effective_status(plan: Plan, now: datetime) -> str:
    """The status a reader sees: a planned plan past its time is expired, whether or not
    retention has written that down yet."""
    if plan.status == "planned" and plan.expires_at <= now:
        return "expired"
    return plan.status


class PlanPublic(BaseModel):
    id: uuid.UUID
    job: uuid.UUID = Field(description="The import job that made this plan.")
    organisation: str
    bundle: str = Field(description="The bundle digest.")
    exporter: str = Field(description="The instance that exported (and sealed) the bundle.")
    strategy: str
    overrides: dict[str, str]
    status: str = Field(description="planned, applied, rejected, expired, stale or failed")
    applicable: bool = Field(description="False: `plan.reasons` lists what blocks the apply.")
    changes: bool = Field(description="False: applying changes nothing (a re-import).")
    expires_at: datetime = Field(description="A planned plan cannot be applied after this time.")
    created_at: datetime
    created_by: str
    updated_at: datetime
    applied_at: datetime | None
    applied_by: str | None
    result: dict[str, Any] | None = Field(description="The registry's import record, once applied.")
    error: dict[str, Any] | None = Field(description="Why the plan went stale or failed (a problem).")
    plan: dict[str, Any] = Field(description="The plan: per object new/identical/fast-forward/conflict.")

    @classmethod
    def of(cls, row: Plan, *, now: datetime) -> PlanPublic:
        return cls(
            id=row.id,
            job=row.job_id,
            organisation=row.organisation,
            bundle=row.bundle_digest,
            exporter=row.origin,
            strategy=row.strategy,
            overrides=row.overrides,
            status=effective_status(row, now),
            applicable=bool(row.plan.get("applicable")),
            changes=bool(row.plan.get("changes")),
            expires_at=row.expires_at,
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
            applied_at=row.applied_at,
            applied_by=row.applied_by,
            result=row.result,
            error=row.error,
            plan=row.plan,
        )
