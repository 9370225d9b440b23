from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from anvil_wire.prompts import MAX_NAME_LENGTH, NAME_PATTERN

__all__ = [
    "RESERVED_SEGMENT",
    "PromptName",
    "PromptCreate",
    "PromptPublic",
    "PromptVersionCreate",
    "PromptVersionPublic",
    "Origin",
    "has_reserved_segment",
]

# Routes put /versions after a prompt name that may itself contain '/': no name may have a
# segment called "versions", or /prompts/a/versions/1 could mean two things.
RESERVED_SEGMENT = "versions"


def has_reserved_segment(name: str) -> bool:
    return RESERVED_SEGMENT in name.split("/")


def _not_reserved(name: str) -> str:
    if has_reserved_segment(name):
        raise ValueError(f"a name segment may not be {RESERVED_SEGMENT!r}")
    return name


PromptName = Annotated[
    str,
    Field(
        pattern=f"^{NAME_PATTERN}$",
        max_length=MAX_NAME_LENGTH,
        description="Segments of lowercase letters, digits, '.', '_' and '-' separated by '/' "
        "(docs/prompt-format.md); no segment may be 'versions'.",
        examples=["support/greeting"],
    ),
    AfterValidator(_not_reserved),
]


class PromptCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PromptName
    description: str = Field(default="", max_length=10_000)


class PromptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    description: str
    latest_version: int = Field(description="Number of the newest version; 0 before the first one.")
    created_at: datetime
    archived_at: datetime | None


class PromptVersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: dict[str, Any] = Field(
        description="template (text or chat messages), variables, model, metadata (docs/prompt-format.md)."
    )
    message: str = Field(default="", max_length=10_000, description="What changed, like a commit message.")


class Origin(BaseModel):
    instance: str
    digest: str


class PromptVersionPublic(BaseModel):
    prompt: str
    number: int
    content_hash: str
    content: dict[str, Any] = Field(description="The normalized content (the form that is hashed).")
    parent: int | None = Field(description="Number of the version this one was made from.")
    origin: Origin | None = Field(description="Where an imported version came from; null if made here.")
    message: str
    created_at: datetime
    created_by: str
