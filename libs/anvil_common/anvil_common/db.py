"""Async engines and sessions for SQLite (embedded default) and Postgres (production).

SQLite: WAL, a busy timeout, foreign keys on, and ``BEGIN IMMEDIATE`` for write sessions so
two writers queue on the database lock instead of failing at commit. Read sessions use a
plain deferred ``BEGIN`` so readers never wait for each other.
Postgres (asyncpg): each service lives in its own schema, selected through ``search_path``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

__all__ = [
    "NAMING_CONVENTION",
    "Database",
    "make_metadata",
    "create_engine",
    "is_sqlite",
    "after_commit",
    "UTCDateTime",
    "utcnow",
]

log = logging.getLogger("anvil.db")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_HOOKS_KEY = "anvil_after_commit"


def make_metadata() -> MetaData:
    """A MetaData with deterministic constraint names (same on SQLite and Postgres)."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, schema: str | None = None, application_name: str = "anvil") -> AsyncEngine:
    """Create an async engine configured for its dialect (see module docstring)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite+aiosqlite or postgresql+asyncpg"
        )
    if schema is not None and not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    settings: dict[str, str] = {"application_name": application_name}
    if schema:
        settings["search_path"] = schema
    return create_async_engine(
        parsed, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args={"server_settings": settings}
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN is ours to issue.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def after_commit(session: AsyncSession, hook: Callable[[], Any]) -> None:
    """Run ``hook`` once the session's transaction has committed (not on rollback)."""
    session.info.setdefault(_HOOKS_KEY, []).append(hook)


class Database:
    """One engine, with write and read session factories for one service."""

    def __init__(self, url: str, *, schema: str | None = None, application_name: str = "anvil") -> None:
        self.url = url
        self.schema = schema
        self.engine = create_engine(url, schema=schema, application_name=application_name)
        self.dialect = self.engine.dialect.name
        self._write = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        reader = (
            self.engine.execution_options(sqlite_begin="DEFERRED")
            if self.dialect == "sqlite"
            else self.engine
        )
        self._read = async_sessionmaker(reader, expire_on_commit=False, autoflush=False)
        # Copied into every session's ``info`` (e.g. the service state its hooks need).
        self.default_info: dict[str, Any] = {}

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One transaction: committed on success (then after-commit hooks run), rolled back on error."""
        factory = self._write if write else self._read
        async with factory() as session:
            session.info.update(self.default_info)
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            hooks = session.info.pop(_HOOKS_KEY, [])
        for hook in hooks:
            try:
                result = hook()
                if hasattr(result, "__await__"):
                    await result
            except Exception:
                log.exception("after-commit hook failed")

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused; use datetime.now(UTC)")
        return (
            value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)
        )

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
