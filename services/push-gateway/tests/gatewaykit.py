"""A real registry and a real push gateway on loopback, as pytest fixtures for more than one suite.

Both the push gateway's conftest (``services/push-gateway/tests/conftest.py``) and the runtime
SDK's (``clients/python-runtime/tests/conftest.py``) import their fixtures from this module (this
directory is on pytest's pythonpath): pytest registers the fixture functions imported into a
conftest's namespace, so a conftest names the ones it uses in an explicit import list.

What they provide: a real registry (uvicorn on loopback, its own migrated database, see
``live_registry``), a gateway app with its lifespan served by uvicorn with /v1/stream on its own
loopback port, a migrated gateway database per test (SQLite or Postgres, by ANVIL_TEST_DATABASE),
tokens signed like the registry's, and a seeder that publishes through the registry's API.

Fixtures: ``template_db``, ``registry_template``, ``keyset``, ``keyset_file`` (session);
``issuer``, ``make_token``, ``database``, ``live_registry``, ``seed``, ``acme``,
``client_token``, ``gateway_token``, ``settings_overrides``, ``settings``, ``gateway``.
``Gateway`` is what the ``gateway`` fixture yields; ``ISSUER`` is the registry's public URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from live_registry import LiveRegistry, Seeder, registry_template_db, start_live_registry

from anvil_common.jwt import TokenIssuer
from anvil_common.scopes import KIND_SCOPES
from anvil_common.testing import (
    Snapshot,
    TemplateDatabase,
    TestDatabase,
    TokenFactory,
    migrated_template,
    serve,
    snapshotter,
    token_factory,
)
from anvil_push_gateway.app import create_app, migrate_database
from anvil_push_gateway.settings import GatewaySettings
from anvil_push_gateway.state import GatewayState
from anvil_wire import KeySet

__all__ = [
    "GATEWAY_SCOPES",
    "ISSUER",
    "Gateway",
    "acme",
    "client_token",
    "database",
    "gateway",
    "gateway_token",
    "issuer",
    "keyset",
    "keyset_file",
    "live_registry",
    "make_token",
    "registry_template",
    "seed",
    "settings",
    "settings_overrides",
    "template_db",
]

ISSUER = "http://registry.test"  # the registry's public URL: iss of every token
GATEWAY_SCOPES = ["config:read", "events:read", "projects:read", "revisions:publish", "revisions:read"]


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabase]:
    with migrated_template(migrate_database, tmp_path_factory.mktemp("gateway-db"), prefix="gateway") as t:
        yield t


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabase]:
    with registry_template_db(tmp_path_factory.mktemp("registry-db")) as template:
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
def issuer(keyset: KeySet) -> TokenIssuer:
    """Signs like the registry: the instance's active key, the registry's issuer."""
    return TokenIssuer(keyset.active, issuer=ISSUER)


@pytest.fixture
def make_token(issuer: TokenIssuer) -> TokenFactory:
    """``make_token(kind="client", scopes=None, org="acme", project=..., environment=..., audience=...)``."""
    return token_factory(issuer, KIND_SCOPES, audience="anvil-push-gateway", subject="tester")


@pytest.fixture
async def database(template_db: TemplateDatabase) -> TestDatabase:
    return await template_db.fresh()


@pytest.fixture
async def live_registry(
    registry_template: TemplateDatabase, keyset_file: Path, tmp_path: Path
) -> AsyncIterator[LiveRegistry]:
    async with start_live_registry(
        registry_template, keyset_file, tmp_path / "registry-data", issuer=ISSUER
    ) as registry:
        yield registry


@pytest.fixture
def seed(live_registry: LiveRegistry, make_token: TokenFactory) -> Seeder:
    token = make_token(org=None, kind="operator", audience="anvil-registry", subject="operator:seeder")
    return Seeder(live_registry, token)


@pytest.fixture
async def acme(seed: Seeder) -> Seeder:
    """acme/web with prompt greeting (one version) and environments prod (serving it at
    revision 1) and staging (nothing published). Modules that need more define their own."""
    await seed.org("acme", "web")
    await seed.version("acme", "web", "greeting", "Hello {{name}}")
    await seed.environment("acme", "web", "prod")
    await seed.environment("acme", "web", "staging")
    await seed.publish("acme", "web", "prod", {"greeting": 1})
    return seed


@pytest.fixture
def client_token(make_token: TokenFactory) -> str:
    """A client token of acme/web/prod."""
    return make_token("client", org="acme", project="web", environment="prod")


@pytest.fixture
def gateway_token(issuer: TokenIssuer) -> str:
    """The gateway's own registry token (a service token without organisation)."""
    token, _ = issuer.issue(
        subject="service:push-gateway",
        kind="service",
        audience="anvil-registry",
        scopes=GATEWAY_SCOPES,
        ttl_seconds=3600,
    )
    return token


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Module-level override point for gateway settings."""
    return {}


@pytest.fixture
def settings(
    database: TestDatabase,
    live_registry: LiveRegistry,
    gateway_token: str,
    tmp_path: Path,
    settings_overrides: dict[str, Any],
) -> GatewaySettings:
    values: dict[str, Any] = {
        "database_url": database.url,
        "database_schema": database.schema,
        "data_dir": tmp_path / "gateway-data",
        "registry_url": live_registry.url,
        "registry_public_url": ISSUER,
        "registry_token": gateway_token,
        "replica": "test-replica",
        "feed_wait_seconds": 0.25,  # a long-poll in flight holds the registry's shutdown that long
        "feed_retry_max_seconds": 0.5,
        "hello_timeout_seconds": 2.0,
        "drain_seconds": 0.0,
        "fleet_flush_seconds": 0.05,
        "log_json": False,
    }
    return GatewaySettings(**(values | settings_overrides))


@dataclass
class Gateway:
    url: str
    app: FastAPI
    client: httpx.AsyncClient
    snapshot: Snapshot

    @property
    def state(self) -> GatewayState:
        state: GatewayState = self.app.state.push_gateway
        return state

    @property
    def stream_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/stream"

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds (checked every 10 ms); fail after ``timeout``."""
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - a condition on several objects, polled
                await asyncio.sleep(0.01)

    async def ready(self) -> None:
        await self.until(lambda: self.state.keys.loaded and self.state.feed.cursor is not None)


@pytest.fixture
async def gateway(settings: GatewaySettings, database: TestDatabase) -> AsyncIterator[Gateway]:
    """The gateway served by uvicorn on loopback, its feed following the live registry."""
    application = create_app(settings)
    async with (
        application.router.lifespan_context(application),
        serve(application, ws=application.state.push_gateway.stream.protocol_factory) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        gateway = Gateway(url, application, http, snapshotter(database))
        await gateway.ready()
        yield gateway
