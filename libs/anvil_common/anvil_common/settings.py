"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["ServiceSettings", "SHARED_FIELDS"]

# Settings a whole stack may set once with ANVIL_<NAME>; a service's own prefix wins.
SHARED_FIELDS = frozenset({"data_dir", "database_url", "log_level", "log_json"})


class _SharedEnvSource(EnvSettingsSource):
    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if k in SHARED_FIELDS}


class ServiceSettings(BaseSettings):
    """Base settings; a subclass sets ``model_config`` (env prefix) and ``service_name``."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")
    service_name: ClassVar[str] = "anvil"

    data_dir: Path = Field(default=Path(".anvil"), description="Embedded-mode data directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default sqlite+aiosqlite at <data_dir>/<service>.db.",
    )
    database_schema: str | None = Field(
        default=None, description="Postgres schema this service owns; default its service name."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared = _SharedEnvSource(settings_cls, env_prefix="ANVIL_")
        return (init_settings, env_settings, shared, dotenv_settings, file_secret_settings)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{self.service_name}.db').as_posix()}"

    def resolved_schema(self) -> str | None:
        if not self.resolved_database_url().startswith("postgresql"):
            return None
        return self.database_schema or self.service_name.replace("-", "_")
