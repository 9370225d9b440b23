"""The bundle worker's Alembic history: one head, dated files, its own version table, a migrated
schema equal to the models, and deterministic constraint names — on SQLite and on Postgres."""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    CheckConstraint,
    ForeignKeyConstraint,
    PrimaryKeyConstraint,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from anvil_bundle_worker.app import VERSION_TABLE, worker_alembic_config
from anvil_bundle_worker.models import metadata
from anvil_common.db import NAMING_CONVENTION, create_engine
from anvil_common.migrations import current_heads, heads, is_at_head, upgrade
from anvil_common.testing import TestDatabase, backend, postgres_url

VERSIONS = Path(worker_alembic_config().get_main_option("script_location") or "") / "versions"
DATED = re.compile(r"^(?P<date>\d{4}_\d{2}_\d{2})_(?P<rev>[0-9a-z]+)_(?P<slug>[a-z0-9_]+)\.py$")


@pytest.fixture
async def engine(database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database.url, schema=database.schema)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def empty_database(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, str | None]]:
    """A database nobody migrated yet (its own file, or its own Postgres schema)."""
    if backend() == "sqlite":
        url, schema = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", None
    else:
        url, schema = postgres_url(), f"bundle_worker_empty_{uuid.uuid4().hex[:10]}"
    eng = create_engine(url, schema=schema)
    try:
        yield eng, schema
    finally:
        await eng.dispose()
        if schema is not None:
            admin = create_engine(url)
            try:
                async with admin.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            finally:
                await admin.dispose()


# -- the history ---------------------------------------------------------------------------------


def test_history_has_exactly_one_head():
    script = ScriptDirectory.from_config(worker_alembic_config())
    assert len(script.get_heads()) == 1
    assert heads(worker_alembic_config()) == set(script.get_heads())


def test_history_is_linear_from_one_base():
    script = ScriptDirectory.from_config(worker_alembic_config())
    revisions = list(script.walk_revisions())
    assert len(script.get_bases()) == 1
    for revision in revisions:
        assert not isinstance(revision.down_revision, tuple | list), f"{revision.revision} is a merge"
        assert not revision.branch_labels
    assert len({r.revision for r in revisions}) == len(revisions)


def test_migration_files_are_dated():
    files = sorted(p.name for p in VERSIONS.glob("*.py"))
    assert files, f"no migrations in {VERSIONS}"
    script = ScriptDirectory.from_config(worker_alembic_config())
    revisions = {Path(r.path).name: r.revision for r in script.walk_revisions()}
    assert set(files) == set(revisions), "every file in versions/ is a revision, and the other way round"
    for name in files:
        match = DATED.match(name)
        assert match, f"{name} is not named YYYY_MM_DD_<rev>_<slug>.py"
        datetime.datetime.strptime(match["date"], "%Y_%m_%d")  # a real date
        assert match["rev"] == revisions[name]
    # New files get the same shape.
    assert (
        worker_alembic_config()
        .get_main_option("file_template", "")
        .startswith("%(year)d_%(month).2d_%(day).2d")
    )


def test_version_table_is_the_bundle_workers_own():
    assert VERSION_TABLE == "alembic_version_bundle_worker"
    assert worker_alembic_config().attributes["version_table"] == VERSION_TABLE


async def test_migrated_database_records_its_head_in_its_own_version_table(engine):
    config = worker_alembic_config()

    def tables(sync: Connection) -> set[str]:
        return set(inspect(sync).get_table_names())

    async with engine.connect() as conn:
        names = await conn.run_sync(tables)
        rows = (
            (await conn.execute(text("SELECT version_num FROM alembic_version_bundle_worker")))
            .scalars()
            .all()
        )
    assert VERSION_TABLE in names
    assert "alembic_version" not in names
    assert set(rows) == heads(config)
    assert await current_heads(engine, config) == heads(config)
    assert await is_at_head(engine, config)


# -- the schema ------------------------------------------------------------------------------------


def _diff(sync: Connection) -> list[Any]:
    context = MigrationContext.configure(
        sync,
        opts={
            "version_table": VERSION_TABLE,
            "compare_type": True,
            "compare_server_default": True,
            "target_metadata": metadata,
        },
    )
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_models(engine, database):
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == [], f"models and migrations disagree on {database.dialect}: {diff}"


def test_every_model_constraint_and_index_has_a_convention_name():
    unnamed: list[str] = []
    for table in metadata.sorted_tables:
        items = [*table.constraints, *table.indexes]
        for item in items:
            name = item.name
            if name is None or not isinstance(name, str):
                unnamed.append(f"{table.name}: {item!r}")
    assert not unnamed, unnamed
    assert NAMING_CONVENTION.items() <= metadata.naming_convention.items()


def _expected_names(table: Any) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {"pk": set(), "fk": set(), "uq": set(), "ck": set(), "ix": set()}
    for constraint in table.constraints:
        if isinstance(constraint, PrimaryKeyConstraint):
            kinds["pk"].add(str(constraint.name))
        elif isinstance(constraint, ForeignKeyConstraint):
            kinds["fk"].add(str(constraint.name))
        elif isinstance(constraint, UniqueConstraint):
            kinds["uq"].add(str(constraint.name))
        elif isinstance(constraint, CheckConstraint):
            kinds["ck"].add(str(constraint.name))
    kinds["ix"] = {str(i.name) for i in table.indexes}
    return kinds


def _reflected_names(sync: Connection) -> dict[str, dict[str, set[str | None]]]:
    inspector = inspect(sync)
    result: dict[str, dict[str, set[str | None]]] = {}
    for table in metadata.sorted_tables:
        name = table.name
        indexes = inspector.get_indexes(name)
        result[name] = {
            "pk": {inspector.get_pk_constraint(name).get("name")},
            "fk": {fk.get("name") for fk in inspector.get_foreign_keys(name)},
            "uq": {uq.get("name") for uq in inspector.get_unique_constraints(name)},
            "ck": {ck.get("name") for ck in inspector.get_check_constraints(name)},
            # Postgres reports a unique constraint's backing index as an index too.
            "ix": {i.get("name") for i in indexes if not i.get("duplicates_constraint")},
        }
    return result


async def test_migrated_constraints_carry_the_convention_names(engine):
    """No unnamed (or database-named) constraint reached the database, on either dialect."""
    async with engine.connect() as conn:
        reflected = await conn.run_sync(_reflected_names)
    prefixes = {"pk": "pk_", "fk": "fk_", "uq": "uq_", "ck": "ck_", "ix": "ix_"}
    for table in metadata.sorted_tables:
        expected = _expected_names(table)
        for kind, prefix in prefixes.items():
            found = reflected[table.name][kind]
            assert found == expected[kind], f"{table.name} {kind}: {found} != {expected[kind]}"
            assert all(n and n.startswith(f"{prefix}{table.name}") for n in found), (table.name, kind, found)


async def test_migrating_an_empty_database_reaches_head_and_downgrade_round_trips(empty_database):
    empty_engine, schema = empty_database
    config = worker_alembic_config()
    await upgrade(empty_engine, config, schema=schema)
    assert await is_at_head(empty_engine, config)

    def run(revision: str, direction: str) -> Any:
        def _run(sync: Connection) -> None:
            config.attributes["connection"] = sync
            getattr(command, direction)(config, revision)

        return _run

    async with empty_engine.begin() as conn:
        await conn.run_sync(run("base", "downgrade"))

    def leftover(sync: Connection) -> set[str]:
        return set(inspect(sync).get_table_names()) - {VERSION_TABLE}

    async with empty_engine.connect() as conn:
        assert await conn.run_sync(leftover) == set()
    assert await current_heads(empty_engine, config) == set()
    await upgrade(empty_engine, config, schema=schema)
    assert await is_at_head(empty_engine, config)
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
