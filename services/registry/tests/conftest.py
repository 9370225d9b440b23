"""Registry test fixtures: a migrated database per test (SQLite or Postgres, by
ANVIL_TEST_DATABASE), the app with its lifespan, an in-process client, token factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from anvil_common.testing import (
    Snapshot,
    TemplateDatabase,
    TestDatabase,
    TokenFactory,
    asgi_client,
    migrated_template,
    serve,
    snapshotter,
    token_factory,
)
from anvil_registry.app import create_app, migrate_database
from anvil_registry.auth import KIND_SCOPES
from anvil_registry.settings import RegistrySettings
from anvil_registry.state import RegistryState
from anvil_wire import KeySet

PUBLIC_URL = "http://testserver"


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabase]:
    with migrated_template(migrate_database, tmp_path_factory.mktemp("registry-db"), prefix="registry") as t:
        yield t


@pytest.fixture(scope="session")
def keyset_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "instance.json"
    KeySet.generate().save(path)
    return path


@pytest.fixture
async def database(template_db: TemplateDatabase) -> TestDatabase:
    return await template_db.fresh()


@pytest.fixture
def settings(database: TestDatabase, tmp_path: Path, keyset_file: Path) -> RegistrySettings:
    return RegistrySettings(
        database_url=database.url,
        database_schema=database.schema,
        data_dir=tmp_path / "data",
        keys_file=keyset_file,
        public_url=PUBLIC_URL,
        log_json=False,
    )


@pytest.fixture
async def app(settings: RegistrySettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def state(app: FastAPI) -> RegistryState:
    registry_state: RegistryState = app.state.registry
    return registry_state


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app, PUBLIC_URL) as c:
        yield c


@pytest.fixture
async def raw(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, but an unhandled error comes back as the app's 500 instead of raising."""
    async with asgi_client(app, PUBLIC_URL, raise_app_exceptions=False) as c:
        yield c


@pytest.fixture
def make_token(state: RegistryState) -> TokenFactory:
    """``make_token(kind="operator", scopes=None (all of the kind), org="acme", ...)``."""
    return token_factory(state.issuer, KIND_SCOPES, audience="anvil-registry", subject="tester")


@pytest.fixture
def admin_headers(make_token: TokenFactory) -> dict[str, str]:
    """An instance administrator (no organisation limit)."""
    return {"Authorization": f"Bearer {make_token(org=None)}"}


@pytest.fixture
def acme_headers(make_token: TokenFactory) -> dict[str, str]:
    """An operator of organisation 'acme' (all operator scopes except instance-wide admin)."""
    scopes = sorted(KIND_SCOPES["operator"] - {"orgs:admin"})
    return {"Authorization": f"Bearer {make_token(scopes=scopes)}"}


@pytest.fixture
async def acme(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    """Organisation 'acme' with project 'web'."""
    r = await client.post("/v1/orgs", json={"slug": "acme", "name": "Acme"}, headers=admin_headers)
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/orgs/acme/projects", json={"slug": "web", "name": "Web"}, headers=admin_headers
    )
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def snapshot(database: TestDatabase) -> Snapshot:
    """``before = await snapshot()`` ... ``assert await snapshot() == before``: every table, every row."""
    return snapshotter(database)


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """The same app served by a real uvicorn on a loopback port (for long-polls and timing)."""
    async with serve(app) as url:
        yield url
