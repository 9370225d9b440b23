"""Test support shared by every suite: one migrated database per test, on SQLite or Postgres
(``ANVIL_TEST_DATABASE``), a snapshot of every table to prove nothing was written, an app served
by a real uvicorn on a loopback port, in-process clients and a token factory.

Not imported by production code (it needs the ``testing`` extra: httpx, uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from .db import create_engine
from .jwt import TokenIssuer

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "backend",
    "postgres_url",
    "TestDatabase",
    "TemplateDatabase",
    "migrated_template",
    "drop_schema",
    "snapshot_tables",
    "snapshot_database",
    "Tables",
    "Snapshot",
    "snapshotter",
    "free_port",
    "serve",
    "asgi_client",
    "TokenFactory",
    "token_factory",
]

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
Migrate = Callable[[str, str | None], Awaitable[None]]
Tables = dict[str, list[dict[str, Any]]]
Snapshot = Callable[[], Awaitable[Tables]]
TokenFactory = Callable[..., str]


def backend() -> str:
    value = os.environ.get("ANVIL_TEST_DATABASE", "sqlite")
    if value not in ("sqlite", "postgres"):
        raise RuntimeError(f"ANVIL_TEST_DATABASE must be sqlite or postgres, not {value!r}")
    return value


def postgres_url() -> str:
    return os.environ.get("ANVIL_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@dataclass(frozen=True)
class TestDatabase:
    """What a test gets: a URL (and Postgres schema) holding a freshly migrated database."""

    __test__ = False
    url: str
    schema: str | None

    @property
    def dialect(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"


class TemplateDatabase:
    """Migrate once per session; hand every test a pristine copy.

    SQLite: the migrated file is copied per test. Postgres: one schema per session, emptied
    per test (TRUNCATE, then the rows the migrations wrote are put back).
    """

    def __init__(self, migrate: Migrate, workdir: Path, *, prefix: str) -> None:
        self.migrate = migrate
        self.workdir = workdir
        self.prefix = prefix
        self.backend = backend()
        self._template: Path | None = None
        self._schema: str | None = None
        self._seed: dict[str, list[dict[str, Any]]] = {}
        self._counter = 0

    async def setup(self) -> None:
        if self.backend == "sqlite":
            self._template = self.workdir / f"{self.prefix}-template.db"
            await self.migrate(f"sqlite+aiosqlite:///{self._template}", None)
            return
        self._schema = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        await self.migrate(postgres_url(), self._schema)
        engine = create_engine(postgres_url(), schema=self._schema)
        try:
            self._seed = await snapshot_tables(engine)
        finally:
            await engine.dispose()

    async def fresh(self) -> TestDatabase:
        if self.backend == "sqlite":
            assert self._template is not None
            self._counter += 1
            path = self.workdir / f"{self.prefix}-{self._counter}.db"
            shutil.copyfile(self._template, path)
            return TestDatabase(f"sqlite+aiosqlite:///{path}", None)
        assert self._schema is not None
        engine = create_engine(postgres_url(), schema=self._schema)
        try:
            async with engine.begin() as conn:
                tables = await _table_names(conn)
                if tables:
                    quoted = ", ".join(f'"{t}"' for t in tables)
                    await conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
                for table, rows in self._seed.items():
                    for row in rows:
                        cols = ", ".join(f'"{c}"' for c in row)
                        params = ", ".join(f":{c}" for c in row)
                        insert = f'INSERT INTO "{table}" ({cols}) VALUES ({params})'  # noqa: S608 - reflected names
                        await conn.execute(text(insert), row)
        finally:
            await engine.dispose()
        return TestDatabase(postgres_url(), self._schema)

    async def teardown(self) -> None:
        if self._schema:
            await drop_schema(postgres_url(), self._schema)


async def drop_schema(url: str, schema: str) -> None:
    """Drop a Postgres schema a test made, and everything in it."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@contextlib.contextmanager
def migrated_template(migrate: Migrate, workdir: Path, *, prefix: str) -> Iterator[TemplateDatabase]:
    """A :class:`TemplateDatabase` set up on entry and dropped on exit (a session fixture's body)."""
    template = TemplateDatabase(migrate, workdir, prefix=prefix)
    asyncio.run(template.setup())
    try:
        yield template
    finally:
        asyncio.run(template.teardown())


async def _table_names(conn: Any) -> list[str]:
    def _names(sync_conn: Any) -> list[str]:
        meta = MetaData()
        meta.reflect(sync_conn)
        return sorted(meta.tables)

    names: list[str] = await conn.run_sync(_names)
    return names


async def snapshot_tables(engine: AsyncEngine) -> Tables:
    """Every row of every table (version tables included), in a comparable form."""
    async with engine.connect() as conn:
        tables = await _table_names(conn)
        result: Tables = {}
        for table in tables:
            query = f'SELECT * FROM "{table}"'  # noqa: S608 - reflected names
            rows = (await conn.execute(text(query))).mappings().all()
            result[table] = sorted((dict(r) for r in rows), key=repr)
    return result


async def snapshot_database(database: TestDatabase) -> Tables:
    """:func:`snapshot_tables` of ``database``, through an engine of its own."""
    engine = create_engine(database.url, schema=database.schema)
    try:
        return await snapshot_tables(engine)
    finally:
        await engine.dispose()


def snapshotter(database: TestDatabase) -> Snapshot:
    """``before = await snapshot()`` ... ``assert await snapshot() == before``: every table, every row."""

    async def take() -> Tables:
        return await snapshot_database(database)

    return take


def free_port() -> int:
    """A loopback port nothing listens on right now (for a server in another process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, *, ws: Any = "none") -> AsyncIterator[str]:
    """``app`` served by a real uvicorn on a loopback port of its own, until the exit; its URL.

    The app's lifespan is the caller's (uvicorn runs it with ``lifespan="off"``); ``ws`` serves
    WebSocket upgrades (uvicorn's ``Config(ws=...)``).
    """
    # The socket is bound here, not by uvicorn, so the port is known before the server starts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None, ws=ws))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # uvicorn exposes only a flag
            if task.done():  # failed to start: its exception, not an endless wait
                await task
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


@contextlib.asynccontextmanager
async def asgi_client(
    app: ASGIApp, base_url: str, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling ``app`` in process; with ``raise_app_exceptions=False`` an
    unhandled error comes back as the app's 500 instead of raising."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


def token_factory(
    issuer: TokenIssuer,
    kind_scopes: Mapping[str, Collection[str]],
    *,
    audience: str | list[str],
    subject: str,
    org: str | None = "acme",
) -> TokenFactory:
    """``make_token(kind="operator", scopes=None (all of the kind), org=..., ...)`` signing with
    ``issuer``; the keyword defaults are this function's."""
    default_audience, default_subject, default_org = audience, subject, org

    def make_token(
        kind: str = "operator",
        *,
        scopes: Collection[str] | None = None,
        org: str | None = default_org,
        project: str | None = None,
        environment: str | None = None,
        ttl: int = 3600,
        audience: str | list[str] = default_audience,
        subject: str = default_subject,
    ) -> str:
        token, _ = issuer.issue(
            subject=subject,
            kind=kind,
            audience=audience,
            scopes=kind_scopes[kind] if scopes is None else scopes,
            ttl_seconds=ttl,
            org=org,
            project=project,
            environment=environment,
        )
        return token

    return make_token
