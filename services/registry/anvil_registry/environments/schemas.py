from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from ..orgs.schemas import SlugField


class EnvironmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = SlugField
    description: str = Field(default="", max_length=10_000)


class EnvironmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID = Field(description="Made by this instance; clients keep their anti-rollback floor per id.")
    name: str
    description: str
    current_revision: int | None = Field(
        description="The revision this environment serves (null before the first)."
    )
    created_at: datetime
    archived_at: datetime | None
