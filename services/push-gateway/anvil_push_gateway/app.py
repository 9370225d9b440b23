"""The push gateway: ``create_app(settings)`` builds its HTTP API (FastAPI) and, in the app's
lifespan, starts ``/v1/stream`` (stream.py), the event-feed follower, the fleet writer and the
rollout monitor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from alembic.config import Config
from fastapi import FastAPI

from anvil_common.db import Database, create_engine
from anvil_common.http import BodyGuardMiddleware
from anvil_common.migrations import alembic_config, is_at_head, upgrade
from anvil_common.observability import RequestContextMiddleware, health_router, metrics_route
from anvil_common.problems import PROBLEM_RESPONSES, install_problem_handlers
from anvil_common.registry_http import RegistryError

from . import __version__
from .config.endpoints import router as config_router
from .feed import FeedFollower, Revocations
from .fleet.endpoints import router as fleet_router
from .fleet.recorder import FleetWriter
from .hub import Hub
from .keys import RegistryKeys
from .metrics import GatewayMetrics
from .registry_client import RegistryClient, TokenSource
from .rollout.endpoints import router as rollout_router
from .rollout.monitor import RolloutMonitor
from .settings import GatewaySettings
from .state import GatewayState
from .stream import StreamServer

__all__ = ["create_app", "build_state", "migrate_database", "gateway_alembic_config", "VERSION_TABLE"]

log = logging.getLogger("anvil.push_gateway")
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_push_gateway"


def gateway_alembic_config() -> Config:
    return alembic_config(MIGRATIONS, version_table=VERSION_TABLE)


async def migrate_database(url: str, schema: str | None) -> None:
    """Apply the gateway's migrations to the database at ``url`` (creating its schema)."""
    engine = create_engine(url, schema=schema)
    try:
        await upgrade(engine, gateway_alembic_config(), schema=schema)
    finally:
        await engine.dispose()


def build_state(settings: GatewaySettings) -> GatewayState:
    token = TokenSource(
        settings.registry_token.get_secret_value() if settings.registry_token else None,
        settings.registry_token_file,
    )
    registry = RegistryClient(settings.registry_url, token=token, timeout=settings.registry_timeout_seconds)
    metrics = GatewayMetrics()
    keys = RegistryKeys(registry, issuer=settings.issuer, refresh_seconds=settings.keys_refresh_seconds)
    hub = Hub(registry, keys, metrics, history=settings.delta_history)
    revocations = Revocations()
    db = Database(
        settings.resolved_database_url(),
        schema=settings.resolved_schema(),
        application_name="anvil-push-gateway",
    )
    replica = settings.replica or f"{socket.gethostname()}:{settings.port}"
    fleet = FleetWriter(db, replica=replica, settings=settings)
    return GatewayState(
        settings=settings,
        db=db,
        registry=registry,
        keys=keys,
        hub=hub,
        revocations=revocations,
        feed=FeedFollower(
            registry,
            hub,
            revocations,
            metrics,
            wait_seconds=settings.feed_wait_seconds,
            retry_max_seconds=settings.feed_retry_max_seconds,
        ),
        fleet=fleet,
        stream=StreamServer(settings, hub, keys, revocations, fleet, metrics),
        metrics=metrics,
        alembic=gateway_alembic_config(),
        replica=replica,
    )


async def _load_keys(state: GatewayState) -> None:
    """The registry's JWKS, retried until it answers (the gateway starts before the registry may)."""
    delay = 0.25
    while True:
        try:
            await state.keys.load()
            return
        except (RegistryError, ValueError) as exc:
            log.warning("cannot load the registry's keys yet (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, state.settings.feed_retry_max_seconds)


async def _run(state: GatewayState) -> None:
    await _load_keys(state)
    await state.feed.run()


@contextlib.asynccontextmanager
async def _running(state: GatewayState) -> AsyncIterator[None]:
    state.stream.start()
    rollout = state.extras["rollout"] = RolloutMonitor(
        state.db, state.hub, state.registry, state.metrics, interval=state.settings.rollout_check_seconds
    )
    tasks = [
        asyncio.create_task(_run(state), name="anvil-feed"),
        asyncio.create_task(state.fleet.run(), name="anvil-fleet"),
        asyncio.create_task(rollout.run(), name="anvil-rollout"),
    ]
    try:
        yield
    finally:
        # uvicorn drained the sessions (transport.py) before the lifespan ends; what is left
        # (an app served without uvicorn's shutdown) is closed here.
        await state.stream.aclose()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await state.feed.aclose()
        await state.fleet.aclose()
        await state.registry.aclose()
        await state.db.dispose()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the push gateway. Settings default to the environment (ANVIL_PUSH_GATEWAY_*)."""
    settings = settings or GatewaySettings()
    state = build_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running(state):
            yield

    app = FastAPI(
        title="Anvil push gateway",
        version=__version__,
        description="Signed config revisions for client apps: WebSocket `/v1/stream` "
        "(docs/push-protocol.md) and its HTTP fallback, the fleet view. Errors are RFC 9457 "
        "application/problem+json. See docs/api.md.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    app.state.push_gateway = state
    install_problem_handlers(app)
    app.add_middleware(BodyGuardMiddleware, max_bytes=settings.max_body_bytes, raw_prefixes=())
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)

    async def ready() -> str | None:
        if state.stream.draining:
            return "draining"
        if not state.keys.loaded:
            return "the registry's keys are not loaded yet"
        if state.feed.cursor is None:
            return "the registry's event feed has not been reached yet"
        if not await is_at_head(state.db.engine, state.alembic):
            return "database schema is not at the migrations' head; run `anvil-push-gateway migrate`"
        return None

    app.include_router(health_router(ready))
    metrics_route(app, state.metrics)
    app.include_router(config_router, prefix="/v1")
    app.include_router(fleet_router, prefix="/v1")
    app.include_router(rollout_router, prefix="/v1")
    return app
