"""Test support shared by every service's suite: one migrated database per test, on SQLite or
Postgres (``ANVIL_TEST_DATABASE``), and a snapshot of every table to prove nothing was written.

Not imported by production code.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import create_engine

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "backend",
    "postgres_url",
    "TestDatabase",
    "TemplateDatabase",
    "snapshot_tables",
]

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
Migrate = Callable[[str, str | None], Awaitable[None]]


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
            engine = create_engine(postgres_url())
            try:
                async with engine.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE'))
            finally:
                await engine.dispose()


async def _table_names(conn: Any) -> list[str]:
    def _names(sync_conn: Any) -> list[str]:
        meta = MetaData()
        meta.reflect(sync_conn)
        return sorted(meta.tables)

    names: list[str] = await conn.run_sync(_names)
    return names


async def snapshot_tables(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (version tables included), in a comparable form."""
    async with engine.connect() as conn:
        tables = await _table_names(conn)
        result: dict[str, list[dict[str, Any]]] = {}
        for table in tables:
            query = f'SELECT * FROM "{table}"'  # noqa: S608 - reflected names
            rows = (await conn.execute(text(query))).mappings().all()
            result[table] = sorted((dict(r) for r in rows), key=repr)
    return result
