from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from anvil_wire.prompts import MAX_NAME_LENGTH, NAME_PATTERN

__all__ = ["SetName", "PromptSetCreate", "PromptSetUpdate", "PromptSetPublic", "MAX_SET_PROMPTS"]

MAX_SET_PROMPTS = 1000

# Set names and member names both follow the prompt name grammar (docs/prompt-format.md).
SetName = Annotated[str, Field(pattern=f"^{NAME_PATTERN}$", max_length=MAX_NAME_LENGTH)]
Members = Annotated[
    list[SetName],
    Field(max_length=MAX_SET_PROMPTS, description="Prompt names; stored sorted and de-duplicated."),
]


class PromptSetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SetName
    description: str = Field(default="", max_length=10_000)
    prompts: Members = Field(default_factory=list)


class PromptSetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=10_000)
    prompts: Members | None = None


class PromptSetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    description: str
    prompts: list[str]
    created_at: datetime
    archived_at: datetime | None
