"""The registry application: ``create_app(settings)`` builds it; nothing happens at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from alembic.config import Config
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from anvil_common.db import Database, create_engine
from anvil_common.http import BodyGuardMiddleware
from anvil_common.jwt import TokenIssuer, TokenVerifier
from anvil_common.migrations import alembic_config, is_at_head, upgrade
from anvil_common.observability import Metrics, RequestContextMiddleware, health_router, metrics_route
from anvil_common.problems import PROBLEM_RESPONSES, install_problem_handlers
from anvil_wire import KeySet

from . import __version__
from .auth import AUDIENCE
from .bundles.endpoints import IMPORTS_PATH
from .events.hub import EventHub, PostgresListener
from .revisions.endpoints import config_fast_route
from .routers import ROUTERS
from .settings import RegistrySettings
from .state import RegistryState, RevocationCache

__all__ = ["create_app", "load_keyset", "migrate_database", "registry_alembic_config", "VERSION_TABLE"]

log = logging.getLogger("anvil.registry")
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_registry"


def registry_alembic_config() -> Config:
    return alembic_config(MIGRATIONS, version_table=VERSION_TABLE)


async def migrate_database(url: str, schema: str | None) -> None:
    """Apply the registry's migrations to the database at ``url`` (creating its schema)."""
    engine = create_engine(url, schema=schema)
    try:
        await upgrade(engine, registry_alembic_config(), schema=schema)
    finally:
        await engine.dispose()


def load_keyset(settings: RegistrySettings) -> KeySet:
    path = settings.resolved_keys_file()
    if settings.generate_keys:
        return KeySet.load_or_generate(path)
    return KeySet.load(path)


def build_state(settings: RegistrySettings) -> RegistryState:
    keyset = load_keyset(settings)
    hub = EventHub()
    state = RegistryState(
        settings=settings,
        db=Database(
            settings.resolved_database_url(),
            schema=settings.resolved_schema(),
            application_name="anvil-registry",
        ),
        keyset=keyset,
        issuer=TokenIssuer(keyset.active, issuer=settings.issuer),
        verifier=TokenVerifier(keyset.public_jwks(), issuer=settings.issuer, audience=AUDIENCE),
        hub=hub,
        metrics=Metrics("registry"),
        alembic=registry_alembic_config(),
        revocations=RevocationCache(refresh_seconds=settings.revocation_refresh_seconds),
    )
    state.db.default_info["state"] = state
    # Any committed event may change what an environment serves: drop the cached bodies.
    hub.subscribe(state.config_cache.invalidate)
    return state


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    """Build the registry app. Settings default to the environment (ANVIL_REGISTRY_*)."""
    settings = settings or RegistrySettings()
    state = build_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            await upgrade(state.db.engine, state.alembic, schema=state.db.schema)
        listener = None
        if state.db.dialect == "postgresql":
            listener = PostgresListener(state.db.url, state.hub, schema=state.db.schema)
            listener.start()
            state.extras["listener"] = listener
        from .maintenance import run_retention_loop

        retention = asyncio.create_task(run_retention_loop(state), name="anvil-retention")
        try:
            yield
        finally:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            if listener is not None:
                await listener.stop()
            await state.db.dispose()

    app = FastAPI(
        title="Anvil registry",
        version=__version__,
        description="Versioned prompt artefacts, environments, signed config revisions and the event feed. "
        "Errors are RFC 9457 application/problem+json. See docs/api.md.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    app.state.registry = state
    install_problem_handlers(app)
    app.add_middleware(
        BodyGuardMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits={IMPORTS_PATH: settings.max_import_bytes},
    )
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)

    async def ready() -> str | None:
        if not await is_at_head(state.db.engine, state.alembic):
            return "database schema is not at the migrations' head; run `anvil-registry migrate`"
        listener = state.extras.get("listener")
        if listener is not None and not listener.connected.is_set():
            return "event listener is not connected"
        return None

    app.include_router(health_router(ready))
    metrics_route(app, state.metrics)

    @app.get(
        "/.well-known/jwks.json",
        operation_id="get_jwks",
        tags=["keys"],
        summary="The instance's public keys.",
    )
    async def get_jwks() -> JSONResponse:
        return JSONResponse(state.keyset.public_jwks(), headers={"Cache-Control": "public, max-age=300"})

    app.router.routes.insert(0, config_fast_route())
    for router in ROUTERS:
        app.include_router(router, prefix="/v1")
    return app
