"""Bundle-worker test fixtures: a migrated worker database per test (SQLite or Postgres, by
ANVIL_TEST_DATABASE), the app with its lifespan, in-process clients, token factories, and —
for end-to-end tests — a real registry served by uvicorn on a loopback port with its own
migrated database, sharing the instance key set with the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from live_registry import LiveRegistry, Seeder, registry_template_db, start_live_registry

from anvil_bundle_worker.app import create_app, migrate_database
from anvil_bundle_worker.auth import AUDIENCE, KIND_SCOPES
from anvil_bundle_worker.settings import WorkerSettings
from anvil_bundle_worker.state import WorkerState
from anvil_common.jwt import TokenIssuer
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
from anvil_wire import KeySet

ISSUER = "http://registry.test"  # the registry's public URL: iss of every token
WORKER_URL = "http://worker.test"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabase]:
    workdir = tmp_path_factory.mktemp("worker-db")
    with migrated_template(migrate_database, workdir, prefix="bundle_worker") as template:
        yield template


@pytest.fixture(scope="session")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    return KeySet.generate()


@pytest.fixture(scope="session")
def keyset_file(tmp_path_factory: pytest.TempPathFactory, keyset: KeySet) -> Path:
    path = tmp_path_factory.mktemp("keys") / "instance.json"
    keyset.save(path)
    return path


@pytest.fixture
async def database(template_db: TemplateDatabase) -> TestDatabase:
    return await template_db.fresh()


@pytest.fixture
def registry_url() -> str:
    """Where the worker reaches the registry; end-to-end modules override it with a live one."""
    return UNREACHABLE


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Extra WorkerSettings for a module (override the fixture)."""
    return {}


@pytest.fixture
def settings(
    database: TestDatabase,
    tmp_path: Path,
    keyset_file: Path,
    registry_url: str,
    settings_overrides: dict[str, Any],
) -> WorkerSettings:
    values: dict[str, Any] = {
        "database_url": database.url,
        "database_schema": database.schema,
        "data_dir": tmp_path / "data",
        "keys_file": keyset_file,
        "registry_url": registry_url,
        "registry_public_url": ISSUER,
        "public_url": WORKER_URL,
        "log_json": False,
        "registry_timeout_seconds": 10.0,
        **settings_overrides,
    }
    return WorkerSettings(**values)


@pytest.fixture
async def app(settings: WorkerSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings, retention=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def state(app: FastAPI) -> WorkerState:
    worker_state: WorkerState = app.state.bundle_worker
    return worker_state


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app, WORKER_URL) as c:
        yield c


@pytest.fixture
async def raw(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, but an unhandled error comes back as the app's 500 instead of raising."""
    async with asgi_client(app, WORKER_URL, raise_app_exceptions=False) as c:
        yield c


@pytest.fixture
def issuer(keyset: KeySet) -> TokenIssuer:
    """Signs like the registry: the instance's active key, the registry's issuer."""
    return TokenIssuer(keyset.active, issuer=ISSUER)


@pytest.fixture
def make_token(issuer: TokenIssuer) -> TokenFactory:
    """``make_token(kind="operator", scopes=None (all of the kind), org="acme", ...)``."""
    return token_factory(issuer, KIND_SCOPES, audience=AUDIENCE, subject="operator:tester")


@pytest.fixture
def acme_headers(make_token: TokenFactory) -> dict[str, str]:
    """An operator of organisation 'acme' with both bundle scopes."""
    return {"Authorization": f"Bearer {make_token(scopes=['bundles:export', 'bundles:import'])}"}


@pytest.fixture
def snapshot(database: TestDatabase) -> Snapshot:
    """``before = await snapshot()`` ... ``assert await snapshot() == before``: every worker table."""
    return snapshotter(database)


@pytest.fixture
async def live_worker(app: FastAPI) -> AsyncIterator[str]:
    """The worker API served by a real uvicorn (streamed uploads, real HTTP)."""
    async with serve(app) as url:
        yield url


# -- a real registry, for end-to-end tests (services/registry/tests/live_registry.py) --------------


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabase]:
    with registry_template_db(tmp_path_factory.mktemp("registry-db")) as template:
        yield template


@pytest.fixture
async def live_registry(
    registry_template: TemplateDatabase, keyset_file: Path, tmp_path: Path
) -> AsyncIterator[LiveRegistry]:
    """A real registry (its own migrated database) on a loopback port, sharing the key set."""
    async with start_live_registry(
        registry_template, keyset_file, tmp_path / "registry-data", issuer=ISSUER
    ) as registry:
        yield registry


@pytest.fixture
def seed(live_registry: LiveRegistry, make_token: TokenFactory) -> Seeder:
    token = make_token(org=None, audience="anvil-registry", subject="operator:seeder")
    return Seeder(live_registry, token)


async def run_jobs(state: WorkerState, *, limit: int = 20) -> int:
    """Run queued jobs with one in-process worker loop until none is runnable; how many ran."""
    from anvil_bundle_worker.worker import Worker

    worker = Worker(state, worker_id="test-worker")
    ran = 0
    while ran < limit and await worker.run_once():
        ran += 1
    return ran


@pytest.fixture
def work(state: WorkerState) -> Callable[[], Awaitable[int]]:
    """``await work()``: run every runnable job now (a real worker loop, in process)."""
    return lambda: run_jobs(state)
