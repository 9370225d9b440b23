from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from anvil_wire.prompts import SLUG_PATTERN

SlugField = Field(
    pattern=f"^{SLUG_PATTERN}$", description="Lowercase letters, digits and '-'; starts with a letter."
)


class OrganisationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = SlugField
    name: str = Field(min_length=1, max_length=200)


class OrganisationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    slug: str
    name: str
    created_at: datetime
    archived_at: datetime | None
