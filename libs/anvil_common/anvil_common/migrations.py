"""Alembic glue shared by every service that owns tables.

Each service keeps its own history and its own version table (``alembic_version_<service>``)
so histories never collide, even when two services share one Postgres schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["alembic_config", "upgrade", "heads", "current_heads", "is_at_head", "run_env"]


def alembic_config(script_location: Path, *, version_table: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # Dated file names: new migrations sort by creation date in the versions folder.
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["version_table"] = version_table
    return config


def heads(config: Config) -> set[str]:
    return set(ScriptDirectory.from_config(config).get_heads())


async def upgrade(engine: AsyncEngine, config: Config, *, schema: str | None, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` (creating the service's Postgres schema first)."""
    if schema and engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))

    def _run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def current_heads(engine: AsyncEngine, config: Config) -> set[str]:
    def _read(connection: Connection) -> set[str]:
        ctx = MigrationContext.configure(
            connection, opts={"version_table": config.attributes["version_table"]}
        )
        return set(ctx.get_current_heads())

    async with engine.connect() as conn:
        return await conn.run_sync(_read)


async def is_at_head(engine: AsyncEngine, config: Config) -> bool:
    """Whether this code can serve the database's schema: at its head, or AHEAD of it.

    Migrations follow expand/contract (deploy/README.md): a release's migrations only add what
    the previous release's code can ignore, so during a rolling upgrade the old pods stay ready
    on the new schema. A schema revision this code does not know is a newer one; a known
    revision that is not a head is behind (the migrations have not run): not ready.
    """
    current = await current_heads(engine, config)
    if not current:
        return False
    if current == heads(config):
        return True
    script = ScriptDirectory.from_config(config)
    return not any(_known(script, revision) for revision in current)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except (CommandError, ResolutionError):
        return False


def run_env(metadata: MetaData, **options: Any) -> None:
    """Body of a service's ``migrations/env.py``: run against the connection we were handed."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `python -m <service> migrate`, which passes a connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=config.attributes["version_table"],
        render_as_batch=True,
        compare_type=True,
        **options,
    )
    with context.begin_transaction():
        context.run_migrations()
