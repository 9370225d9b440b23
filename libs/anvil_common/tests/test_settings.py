"""Service settings: a prefix per service, a few stack-wide ANVIL_* settings, frozen values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from anvil_common.settings import SHARED_FIELDS, ServiceSettings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ANVIL_DEMOSVC_", frozen=True, extra="ignore")
    service_name: ClassVar[str] = "demo-svc"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("ANVIL_") and not name.startswith("ANVIL_TEST_"):
            monkeypatch.delenv(name)


def test_defaults_use_embedded_sqlite_in_the_data_directory(tmp_path):
    settings = DemoSettings(data_dir=tmp_path)
    assert settings.resolved_database_url() == f"sqlite+aiosqlite:///{tmp_path.as_posix()}/demo-svc.db"
    assert settings.resolved_schema() is None
    assert DemoSettings().data_dir == Path(".anvil")


def test_service_prefix_sets_fields(monkeypatch):
    monkeypatch.setenv("ANVIL_DEMOSVC_PORT", "9001")
    monkeypatch.setenv("ANVIL_DEMOSVC_LOG_JSON", "false")
    settings = DemoSettings()
    assert settings.port == 9001
    assert settings.log_json is False


def test_shared_settings_apply_to_every_service(monkeypatch):
    monkeypatch.setenv("ANVIL_DATABASE_URL", "postgresql+asyncpg://db/anvil")
    monkeypatch.setenv("ANVIL_LOG_LEVEL", "DEBUG")
    settings = DemoSettings()
    assert settings.database_url == "postgresql+asyncpg://db/anvil"
    assert settings.log_level == "DEBUG"


def test_the_service_prefix_wins_over_the_shared_setting(monkeypatch):
    monkeypatch.setenv("ANVIL_DATABASE_URL", "postgresql+asyncpg://db/shared")
    monkeypatch.setenv("ANVIL_DEMOSVC_DATABASE_URL", "postgresql+asyncpg://db/own")
    assert DemoSettings().database_url == "postgresql+asyncpg://db/own"


def test_only_listed_settings_are_shared(monkeypatch):
    monkeypatch.setenv("ANVIL_PORT", "1234")
    monkeypatch.setenv("ANVIL_MAX_BODY_BYTES", "2048")
    settings = DemoSettings()
    assert settings.port == 8000
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert {"port", "max_body_bytes"}.isdisjoint(SHARED_FIELDS)


def test_explicit_arguments_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("ANVIL_DEMOSVC_PORT", "9001")
    assert DemoSettings(port=7000).port == 7000


def test_postgres_schema_defaults_to_the_service_name():
    settings = DemoSettings(database_url="postgresql+asyncpg://db/anvil")
    assert settings.resolved_schema() == "demo_svc"
    assert (
        DemoSettings(database_url="postgresql+asyncpg://db/anvil", database_schema="own").resolved_schema()
        == "own"
    )
    assert (
        DemoSettings(database_url="sqlite+aiosqlite:///x.db", database_schema="own").resolved_schema() is None
    )


def test_settings_are_frozen():
    settings = DemoSettings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_invalid_values_are_refused(monkeypatch):
    with pytest.raises(ValidationError):
        DemoSettings(max_body_bytes=10)
    monkeypatch.setenv("ANVIL_DEMOSVC_PORT", "eighty")
    with pytest.raises(ValidationError):
        DemoSettings()
