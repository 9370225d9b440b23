from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEntryPublic(BaseModel):
    id: int = Field(description="Grows with time; the list is newest first.")
    at: datetime
    actor: str = Field(description="The subject of the token that acted ('system' for the instance).")
    actor_token: str | None = Field(description="The jti of that token.")
    action: str = Field(description="What happened, e.g. token.issue, token.revoke, project.create.")
    organisation_id: uuid.UUID | None
    org: str | None = Field(description="The organisation's slug (null for instance-wide entries).")
    target: str
    details: dict[str, Any]
    request_id: str | None
