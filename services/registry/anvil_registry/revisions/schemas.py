from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from anvil_wire.prompts import SLUG_PATTERN


class RevisionCreate(BaseModel):
    """Publish: set prompts (exact version or "latest"), optionally remove some or replace all."""

    model_config = ConfigDict(extra="forbid")
    prompts: dict[str, int | Literal["latest"]] = Field(
        default_factory=dict, description='Prompt name -> version number, or "latest".'
    )
    remove: list[str] = Field(default_factory=list, description="Prompts to stop serving.")
    replace: bool = Field(
        default=False, description="Serve exactly `prompts` instead of merging into the current revision."
    )
    message: str = Field(default="", max_length=2000)


class PromotionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_environment: str = Field(pattern=f"^{SLUG_PATTERN}$")
    revision: int | None = Field(
        default=None, ge=1, description="Default: the source environment's current revision."
    )
    message: str = Field(default="", max_length=2000)


class RollbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_revision: int = Field(ge=1)
    message: str = Field(default="", max_length=2000)


class EntryPublic(BaseModel):
    version: int
    digest: str
    partials: dict[str, str] = Field(default_factory=dict)
    project: str | None = None
    name: str | None = None


class RevisionPublic(BaseModel):
    environment_id: str
    environment: str
    number: int
    kind: Literal["publish", "promote", "rollback"]
    rollback_of: int | None
    promoted_from: dict[str, Any] | None
    message: str
    manifest_digest: str = Field(description="sha256 of the signed manifest (the compact JWS text).")
    created_at: datetime
    created_by: str
    prompts: dict[str, EntryPublic]
    dependencies: dict[str, EntryPublic]


class RevisionSummary(BaseModel):
    number: int
    kind: str
    rollback_of: int | None
    promoted_from: dict[str, Any] | None
    message: str
    manifest_digest: str
    created_at: datetime
    created_by: str


class EntryChange(BaseModel):
    before: EntryPublic
    after: EntryPublic


class RevisionDiff(BaseModel):
    from_revision: int
    to_revision: int
    added: dict[str, EntryPublic]
    removed: dict[str, EntryPublic]
    changed: dict[str, EntryChange]
    unchanged: list[str]
    dependencies_added: dict[str, EntryPublic]
    dependencies_removed: dict[str, EntryPublic]
