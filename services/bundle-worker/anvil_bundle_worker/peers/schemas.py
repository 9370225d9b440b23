"""Peer requests and responses. A peer's token is write-only: no response ever carries it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from anvil_common.problems import ValidationFailed
from anvil_wire.prompts import SLUG_PATTERN

from ..exports.schemas import SelectionIn
from ..imports.schemas import Strategy, parse_overrides
from ..models import Peer

__all__ = ["PeerCreate", "PeerUpdate", "PeerPublic", "PeerTransfer", "MAX_TOKEN_CHARS", "peer_url"]

_SLUG = f"^{SLUG_PATTERN}$"
MAX_URL_CHARS = 500
MAX_TOKEN_CHARS = 8192


def peer_url(value: str) -> str:
    """An absolute http(s) URL without credentials, query or fragment, without a trailing slash.
    (Whether http is allowed is a setting: the service checks it.)"""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute https:// URL")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValueError(f"{value!r} must not carry credentials, a query or a fragment")
    normal = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    if len(normal) > MAX_URL_CHARS:
        raise ValueError(f"a peer URL is at most {MAX_URL_CHARS} characters")
    return normal


def _clean_token(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    secret = value.get_secret_value().strip()
    if not secret or len(secret) > MAX_TOKEN_CHARS or any(c.isspace() for c in secret):
        raise ValueError(f"the token must be 1-{MAX_TOKEN_CHARS} characters without spaces")
    return SecretStr(secret)


class _PeerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else peer_url(value)

    @field_validator("token", check_fields=False)
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        return _clean_token(value)


class PeerCreate(_PeerFields):
    organisation: str = Field(pattern=_SLUG, description="The local organisation that trusts the peer.")
    name: str = Field(pattern=_SLUG, description="The peer's name, unique in the organisation.")
    issuer: str = Field(
        description="The peer registry's public URL: the `iss` of its tokens, the exporter of its bundles."
    )
    url: str | None = Field(default=None, description="The peer's bundle-worker URL (to push and pull).")
    remote_organisation: str | None = Field(
        default=None, pattern=_SLUG, description="The organisation on the peer (default: the same slug)."
    )
    jwks: dict[str, Any] | None = Field(
        default=None,
        description="The peer's public keys (EC P-256, ES256). Default: fetched from "
        "`<issuer>/.well-known/jwks.json`.",
    )
    token: SecretStr | None = Field(
        default=None, description="The bearer token the peer's registry issued to us (write-only)."
    )
    auto_apply: bool = Field(
        default=False, description="Apply this peer's applicable imports without approval."
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return peer_url(value)


class PeerUpdate(_PeerFields):
    """Only the members sent change; ``url`` or ``token`` null removes it."""

    url: str | None = None
    remote_organisation: str | None = Field(default=None, pattern=_SLUG)
    jwks: dict[str, Any] | None = Field(default=None, description="New public keys (replaces them).")
    token: SecretStr | None = Field(default=None, description="A new token (write-only); null removes it.")
    auto_apply: bool | None = None


class PeerPublic(BaseModel):
    id: uuid.UUID
    organisation: str
    name: str
    issuer: str
    url: str | None
    remote_organisation: str
    jwks: dict[str, Any] = Field(description="The peer's public keys.")
    kids: list[str] = Field(description="Their key ids.")
    keys_fetched_at: datetime | None = Field(description="When the keys were fetched (null: given).")
    has_token: bool = Field(description="Whether a token is stored (it is never shown).")
    auto_apply: bool
    created_at: datetime
    created_by: str
    updated_at: datetime

    @classmethod
    def of(cls, row: Peer) -> PeerPublic:
        keys = row.jwks.get("keys") or []
        return cls(
            id=row.id,
            organisation=row.organisation,
            name=row.name,
            issuer=row.issuer,
            url=row.url,
            remote_organisation=row.remote_organisation,
            jwks=row.jwks,
            kids=[str(k.get("kid")) for k in keys if isinstance(k, dict)],
            keys_fetched_at=row.keys_fetched_at,
            has_token=row.token is not None,
            auto_apply=row.auto_apply,
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
        )


class PeerTransfer(BaseModel):
    """A push (export here, import there) or a pull (export there, import here)."""

    model_config = ConfigDict(extra="forbid")

    selection: SelectionIn
    history: Literal["latest", "full"] = "latest"
    environments: bool = False
    strategy: Strategy = Field(default="fail", description="What the importing side does with conflicts.")
    overrides: dict[str, str] = Field(
        default_factory=dict, description='Per-prompt strategies: `{"project/name": strategy}`.'
    )

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            return parse_overrides([f"{key}={strategy}" for key, strategy in value.items()])
        except ValidationFailed as exc:
            raise ValueError(exc.detail.partition(": ")[2] or exc.detail) from None
