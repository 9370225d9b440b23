"""Registry settings: environment variables prefixed ``ANVIL_REGISTRY_`` (see README)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from anvil_common.settings import ServiceSettings

__all__ = ["RegistrySettings"]


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ANVIL_REGISTRY_", frozen=True, extra="ignore")
    service_name: ClassVar[str] = "registry"

    port: int = 8000
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where clients reach this registry; also the JWT issuer and the manifests' issuer.",
    )
    keys_file: Path | None = Field(
        default=None,
        description="Instance key set (JSON, private JWKs). Default <data_dir>/keys/instance.json, "
        "generated on first run; in production a mounted Secret.",
    )
    generate_keys: bool = Field(default=True, description="Generate the key set if the file is missing.")
    auto_migrate: bool = Field(default=False, description="Migrate at startup (embedded mode only).")
    event_retention_days: int = Field(default=30, ge=1)
    audit_retention_days: int = Field(default=365, ge=1)
    idempotency_retention_hours: int = Field(default=24, ge=1)
    revocation_refresh_seconds: float = Field(default=5.0, gt=0)
    long_poll_max_seconds: float = Field(default=60.0, gt=0)
    max_prompt_bytes: int = Field(default=256 * 1024, ge=1024)
    max_import_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Body limit of apply_import (POST /v1/orgs/{org}/imports), which carries every "
        "imported prompt version; every other path keeps max_body_bytes.",
    )

    def resolved_keys_file(self) -> Path:
        return self.keys_file or self.data_dir / "keys" / "instance.json"

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")
