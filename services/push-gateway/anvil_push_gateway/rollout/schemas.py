"""Rollout policy bodies: ``PUT`` takes :class:`RolloutPolicyUpdate`, both answer
:class:`RolloutPolicyPublic`."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from ..models import RolloutPolicy

__all__ = ["RolloutPolicyUpdate", "RolloutPolicyPublic", "MAX_MIN_REPORTS"]

MAX_MIN_REPORTS = 1_000_000


class RolloutPolicyUpdate(BaseModel):
    """The whole policy (members left out take their defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    max_nack_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A revision fails when more than this share of the clients that reported on it "
        "nacked it (exactly this share passes); 1 never fails.",
    )
    min_reports: int = Field(
        default=5,
        ge=1,
        le=MAX_MIN_REPORTS,
        description="How many clients must have acked or nacked a revision before it is judged.",
    )
    auto_rollback: bool = Field(
        default=True,
        description="Roll a failing revision back to the last revision that met the policy.",
    )


class RolloutPolicyPublic(BaseModel):
    organisation: str
    project: str
    environment: str
    environment_id: uuid.UUID
    max_nack_ratio: float
    min_reports: int
    auto_rollback: bool
    updated_at: datetime
    updated_by: str = Field(description="The `sub` of the token that set the policy.")

    @classmethod
    def of(cls, row: RolloutPolicy) -> RolloutPolicyPublic:
        return cls(
            organisation=row.organisation,
            project=row.project,
            environment=row.environment,
            environment_id=row.environment_id,
            max_nack_ratio=row.max_nack_ratio,
            min_reports=row.min_reports,
            auto_rollback=row.auto_rollback,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
        )
