"""The bundle-worker API: ``create_app(settings)`` builds it; nothing happens at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from alembic.config import Config
from fastapi import FastAPI

from anvil_common.db import Database, create_engine
from anvil_common.http import BodyGuardMiddleware
from anvil_common.jwt import TokenIssuer, TokenVerifier
from anvil_common.migrations import alembic_config, is_at_head, upgrade
from anvil_common.observability import Metrics, RequestContextMiddleware, health_router, metrics_route
from anvil_common.problems import PROBLEM_RESPONSES, install_problem_handlers
from anvil_wire import KeySet

from . import __version__
from .auth import AUDIENCE
from .registry_client import RegistryClient
from .revocations import RevocationCache
from .routers import RAW_BODY_PREFIXES, ROUTERS
from .settings import WorkerSettings
from .state import WorkerState
from .storage import DatabaseBundleStore
from .trust import own_trust

__all__ = [
    "create_app",
    "build_state",
    "close_state",
    "load_keyset",
    "migrate_database",
    "worker_alembic_config",
    "VERSION_TABLE",
]

log = logging.getLogger("anvil.bundle_worker")
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_bundle_worker"


def worker_alembic_config() -> Config:
    return alembic_config(MIGRATIONS, version_table=VERSION_TABLE)


async def migrate_database(url: str, schema: str | None) -> None:
    """Apply the bundle worker's migrations to the database at ``url`` (creating its schema)."""
    engine = create_engine(url, schema=schema)
    try:
        await upgrade(engine, worker_alembic_config(), schema=schema)
    finally:
        await engine.dispose()


def load_keyset(settings: WorkerSettings) -> KeySet:
    """The instance key set the registry also loads; the worker never generates one."""
    return KeySet.load(settings.resolved_keys_file())


def build_state(settings: WorkerSettings) -> WorkerState:
    keyset = load_keyset(settings)
    issuer = TokenIssuer(keyset.active, issuer=settings.issuer)
    return WorkerState(
        settings=settings,
        db=Database(
            settings.resolved_database_url(),
            schema=settings.resolved_schema(),
            application_name="anvil-bundle-worker",
        ),
        keyset=keyset,
        verifier=TokenVerifier(keyset.public_jwks(), issuer=settings.issuer, audience=AUDIENCE),
        registry=RegistryClient(
            settings.registry_url,
            issuer=issuer,
            token_seconds=settings.service_token_seconds,
            timeout=settings.registry_timeout_seconds,
        ),
        store=DatabaseBundleStore(max_bytes=settings.max_bundle_bytes),
        trust=own_trust(keyset, settings.issuer),
        metrics=Metrics("bundle-worker"),
        alembic=worker_alembic_config(),
        revocations=RevocationCache(
            settings.registry_url,
            issuer=issuer,
            refresh_seconds=settings.revocation_refresh_seconds,
            token_seconds=settings.service_token_seconds,
            timeout=settings.registry_timeout_seconds,
        ),
    )


async def close_state(state: WorkerState) -> None:
    await state.revocations.aclose()
    await state.registry.aclose()
    await state.db.dispose()


def create_app(settings: WorkerSettings | None = None, *, retention: bool = True) -> FastAPI:
    """Build the bundle-worker API. Settings default to the environment (ANVIL_BUNDLE_WORKER_*)."""
    settings = settings or WorkerSettings()
    state = build_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from .maintenance import run_retention_loop

        task = asyncio.create_task(run_retention_loop(state), name="anvil-retention") if retention else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close_state(state)

    app = FastAPI(
        title="Anvil bundle worker",
        version=__version__,
        description="Exports and imports of bundles (docs/bundle-format.md): jobs, bundle downloads, "
        "import plans. Errors are RFC 9457 application/problem+json. See docs/api.md.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    app.state.bundle_worker = state
    install_problem_handlers(app)
    # Uploads are bundle files, not JSON: their endpoint streams and limits them itself.
    app.add_middleware(BodyGuardMiddleware, max_bytes=settings.max_body_bytes, raw_prefixes=RAW_BODY_PREFIXES)
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)

    async def ready() -> str | None:
        if not await is_at_head(state.db.engine, state.alembic):
            return "database schema is not at the migrations' head; run `anvil-bundle-worker migrate`"
        return None

    app.include_router(health_router(ready))
    metrics_route(app, state.metrics)
    for router in ROUTERS:
        app.include_router(router, prefix="/v1")
    return app
