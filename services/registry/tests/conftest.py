"""Registry test fixtures: a migrated database per test (SQLite or Postgres, by
ANVIL_TEST_DATABASE), the app with its lifespan, an in-process client, token factories."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from anvil_common.db import create_engine
from anvil_common.testing import TemplateDatabase, TestDatabase, snapshot_tables
from anvil_registry.app import create_app, migrate_database
from anvil_registry.auth import KIND_SCOPES
from anvil_registry.settings import RegistrySettings
from anvil_registry.state import RegistryState
from anvil_wire import KeySet

PUBLIC_URL = "http://testserver"


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabase]:
    template = TemplateDatabase(migrate_database, tmp_path_factory.mktemp("registry-db"), prefix="registry")
    asyncio.run(template.setup())
    yield template
    asyncio.run(template.teardown())


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
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
        yield c


@pytest.fixture
async def raw(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, but an unhandled error comes back as the app's 500 instead of raising."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
        yield c


TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(state: RegistryState) -> TokenFactory:
    """``make_token(kind="operator", scopes=None (all of the kind), org=..., ...)``."""

    def factory(
        kind: str = "operator",
        *,
        scopes: list[str] | None = None,
        org: str | None = "acme",
        project: str | None = None,
        environment: str | None = None,
        ttl: int = 3600,
        audience: str = "anvil-registry",
        subject: str = "tester",
    ) -> str:
        token, _ = state.issuer.issue(
            subject=subject,
            kind=kind,
            audience=audience,
            scopes=KIND_SCOPES[kind] if scopes is None else scopes,
            ttl_seconds=ttl,
            org=org,
            project=project,
            environment=environment,
        )
        return token

    return factory


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


Snapshot = Callable[[], Awaitable[dict[str, list[dict[str, Any]]]]]


@pytest.fixture
def snapshot(database: TestDatabase) -> Snapshot:
    """``before = await snapshot()`` ... ``assert await snapshot() == before``: every table, every row."""

    async def take() -> dict[str, list[dict[str, Any]]]:
        engine = create_engine(database.url, schema=database.schema)
        try:
            return await snapshot_tables(engine)
        finally:
            await engine.dispose()

    return take


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """The same app served by a real uvicorn on a loopback port (for long-polls and timing)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_config=None, ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
