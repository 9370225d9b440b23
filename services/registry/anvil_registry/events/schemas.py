from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EventPublic", "EventPage"]


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int = Field(description="Gap-free and in commit order.")
    kind: str = Field(description="What happened, e.g. 'revision.created', 'token.revoked'.")
    organisation_id: uuid.UUID | None = Field(description="None for instance-wide events.")
    project_id: uuid.UUID | None
    environment_id: uuid.UUID | None
    payload: dict[str, Any]
    created_at: datetime


class EventPage(BaseModel):
    events: list[EventPublic] = Field(description="In id order; empty when a long-poll timed out.")
    next_after: int = Field(
        description="Pass as `after` next time: the highest id scanned, including events this "
        "token may not see, so a filtered consumer still advances."
    )
    head: int = Field(description="The newest event id of this registry.")
