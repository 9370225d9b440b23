from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from anvil_wire.prompts import SLUG_PATTERN

from ..auth import SCOPES

TokenKind = Literal["operator", "service", "client", "peer"]
_SLUG = f"^{SLUG_PATTERN}$"


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: TokenKind
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="What the token is for (letters, digits, '.', '_', '-'); the token's subject is "
        "'<kind>:<name>', so logs and the audit log show it.",
    )
    org: str | None = Field(
        default=None, pattern=_SLUG, description="Organisation limit; omit only for instance-wide tokens."
    )
    project: str | None = Field(default=None, pattern=_SLUG, description="Project limit (needs org).")
    environment: str | None = Field(
        default=None, pattern=_SLUG, description="Environment limit (needs org and project)."
    )
    scopes: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=len(SCOPES),
        json_schema_extra={"items": {"type": "string", "enum": list(SCOPES)}},
        description="Default: every scope of the kind that the caller holds (client: config:read).",
    )
    ttl_seconds: int | None = Field(
        default=None, ge=1, description="Lifetime; default and maximum depend on the kind."
    )
    audience: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="Services that accept the token; default and allowed values depend on the kind.",
    )


class TokenPublic(BaseModel):
    id: str = Field(description="The token's jti.")
    kind: str
    name: str
    subject: str
    org: str | None
    project: str | None
    environment: str | None
    scopes: list[str]
    audience: list[str]
    expires_at: datetime
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None


class TokenIssued(TokenPublic):
    token: str = Field(description="The bearer token. Shown only in this response; it is never stored.")


class Revocation(BaseModel):
    jti: str = Field(description="The revoked token's id.")
    expires_at: datetime = Field(description="When the token expires anyway: forget the jti after it.")


class RevocationList(BaseModel):
    revoked: list[Revocation] = Field(
        description="Every revoked token that has not expired and is within the caller's limits, by jti."
    )
