"""The migration tests every service with tables runs, on SQLite and on Postgres: one linear
history with one head, dated file names, the service's own version table, a migrated schema equal
to the models, convention names on every constraint, and an empty database migrated up, down to
base and up again.

A service's ``tests/test_migrations.py`` declares only what is its own::

    class TestMigrations(MigrationSuite):
        target = MigrationTarget(config=registry_alembic_config, metadata=metadata, ...)

The suite's fixtures need the service's ``database`` fixture (a freshly migrated
:class:`~anvil_common.testing.TestDatabase`). Not imported by production code.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    CheckConstraint,
    Constraint,
    ForeignKeyConstraint,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import NAMING_CONVENTION, create_engine
from .migrations import current_heads, heads, is_at_head, upgrade
from .testing import TestDatabase, backend, drop_schema, postgres_url

__all__ = ["MigrationTarget", "MigrationSuite"]

DATED = re.compile(r"^(?P<date>\d{4}_\d{2}_\d{2})_(?P<rev>[0-9a-z]+)_(?P<slug>[a-z0-9_]+)\.py$")
_PREFIXES = {"pk": "pk_", "fk": "fk_", "uq": "uq_", "ck": "ck_", "ix": "ix_"}


@dataclass(frozen=True)
class MigrationTarget:
    """One service's Alembic history, as its migration tests expect it to be."""

    config: Callable[[], Config]
    metadata: MetaData
    version_table: str
    head: str  # the newest revision: a new migration updates it on purpose
    tables: frozenset[str]  # every table the history creates (version table aside)
    schema_prefix: str  # for the Postgres schema of the not-yet-migrated database


def _diff(sync: Connection, target: MigrationTarget) -> list[Any]:
    context = MigrationContext.configure(
        sync,
        opts={
            "version_table": target.version_table,
            "compare_type": True,
            "compare_server_default": True,
            "target_metadata": target.metadata,
        },
    )
    return list(compare_metadata(context, target.metadata))


def _table_names(sync: Connection) -> set[str]:
    return set(inspect(sync).get_table_names())


def _expected_names(table: Table) -> dict[str, set[str]]:
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


def _reflected_names(sync: Connection, metadata: MetaData) -> dict[str, dict[str, set[str | None]]]:
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


def _run_command(config: Config, direction: str, revision: str) -> Callable[[Connection], None]:
    def run(sync: Connection) -> None:
        config.attributes["connection"] = sync
        getattr(command, direction)(config, revision)

    return run


class MigrationSuite:
    """Subclass as ``TestMigrations`` and set ``target``; pytest collects the inherited tests."""

    target: ClassVar[MigrationTarget]

    @pytest.fixture
    async def engine(self, database: TestDatabase) -> AsyncIterator[AsyncEngine]:
        eng = create_engine(database.url, schema=database.schema)
        try:
            yield eng
        finally:
            await eng.dispose()

    @pytest.fixture
    async def empty_database(self, tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, str | None]]:
        """A database nobody migrated yet (its own file, or its own Postgres schema)."""
        if backend() == "sqlite":
            url, schema = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", None
        else:
            url, schema = postgres_url(), f"{self.target.schema_prefix}_{uuid.uuid4().hex[:10]}"
        eng = create_engine(url, schema=schema)
        try:
            yield eng, schema
        finally:
            await eng.dispose()
            if schema is not None:
                await drop_schema(url, schema)

    # -- the history -------------------------------------------------------------------------

    def test_history_has_exactly_one_head_the_declared_one(self) -> None:
        script = ScriptDirectory.from_config(self.target.config())
        assert script.get_heads() == [self.target.head]
        assert heads(self.target.config()) == {self.target.head}

    def test_history_is_linear_from_one_base(self) -> None:
        script = ScriptDirectory.from_config(self.target.config())
        revisions = list(script.walk_revisions())
        assert len(script.get_bases()) == 1
        for revision in revisions:
            assert not isinstance(revision.down_revision, tuple | list), f"{revision.revision} is a merge"
            assert not revision.branch_labels
        assert len({r.revision for r in revisions}) == len(revisions)

    def test_migration_files_are_dated(self) -> None:
        config = self.target.config()
        versions = Path(config.get_main_option("script_location") or "") / "versions"
        files = sorted(p.name for p in versions.glob("*.py"))
        assert files, f"no migrations in {versions}"
        script = ScriptDirectory.from_config(config)
        revisions = {Path(str(r.path)).name: r.revision for r in script.walk_revisions()}
        assert set(files) == set(revisions), "every file in versions/ is a revision, and the other way round"
        for name in files:
            match = DATED.match(name)
            assert match, f"{name} is not named YYYY_MM_DD_<rev>_<slug>.py"
            datetime.datetime.strptime(match["date"], "%Y_%m_%d")  # a real date
            assert match["rev"] == revisions[name]
        # New files get the same shape.
        assert (config.get_main_option("file_template") or "").startswith("%(year)d_%(month).2d_%(day).2d")

    def test_version_table_is_the_services_own(self) -> None:
        assert self.target.version_table != "alembic_version"
        assert self.target.config().attributes["version_table"] == self.target.version_table

    async def test_migrated_database_records_its_head_in_its_own_version_table(
        self, engine: AsyncEngine
    ) -> None:
        config, version_table = self.target.config(), self.target.version_table
        async with engine.connect() as conn:
            names = await conn.run_sync(_table_names)
            query = text(f'SELECT version_num FROM "{version_table}"')  # noqa: S608 - a constant
            rows = (await conn.execute(query)).scalars().all()
        assert names == set(self.target.tables) | {version_table}
        assert "alembic_version" not in names
        assert set(rows) == {self.target.head}
        assert await current_heads(engine, config) == {self.target.head}
        assert await is_at_head(engine, config)

    async def test_readiness_accepts_a_newer_schema_and_refuses_an_older_one(
        self, empty_database: tuple[AsyncEngine, str | None]
    ) -> None:
        """Expand/contract: old code stays ready on a schema migrated by a newer release (a
        revision it does not know); code whose migrations have not run is not ready."""
        empty_engine, schema = empty_database
        config, version_table = self.target.config(), self.target.version_table
        assert not await is_at_head(empty_engine, config)  # nothing migrated
        await upgrade(empty_engine, config, schema=schema)

        async def stamp(revision: str) -> None:
            async with empty_engine.begin() as conn:
                update = text(f'UPDATE "{version_table}" SET version_num = :revision')  # noqa: S608
                await conn.execute(update, {"revision": revision})

        await stamp("f0f0f0f0f0f0")  # a revision of a later release
        assert await is_at_head(empty_engine, config)
        base = ScriptDirectory.from_config(config).get_base()
        if base is not None and base != self.target.head:
            await stamp(base)  # behind this code's head
            assert not await is_at_head(empty_engine, config)

    # -- the schema --------------------------------------------------------------------------

    async def test_migrated_schema_matches_the_models(
        self, engine: AsyncEngine, database: TestDatabase
    ) -> None:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff, self.target)
        assert diff == [], f"models and migrations disagree on {database.dialect}: {diff}"

    def test_models_declare_exactly_the_tables(self) -> None:
        assert set(self.target.metadata.tables) == set(self.target.tables)

    def test_every_model_constraint_and_index_has_a_convention_name(self) -> None:
        metadata = self.target.metadata
        unnamed: list[str] = []
        for table in metadata.sorted_tables:
            items: list[Constraint | Index] = [*table.constraints, *table.indexes]
            unnamed += [f"{table.name}: {item!r}" for item in items if not isinstance(item.name, str)]
        assert not unnamed, unnamed
        assert NAMING_CONVENTION.items() <= metadata.naming_convention.items()

    async def test_migrated_constraints_carry_the_convention_names(self, engine: AsyncEngine) -> None:
        """No unnamed (or database-named) constraint reached the database, on either dialect."""
        metadata = self.target.metadata
        async with engine.connect() as conn:
            reflected = await conn.run_sync(_reflected_names, metadata)
        for table in metadata.sorted_tables:
            expected = _expected_names(table)
            for kind, prefix in _PREFIXES.items():
                found = reflected[table.name][kind]
                assert found == expected[kind], f"{table.name} {kind}: {found} != {expected[kind]}"
                assert all(n and n.startswith(f"{prefix}{table.name}") for n in found), (table.name, kind)

    async def test_migrating_an_empty_database_reaches_head_and_downgrade_round_trips(
        self, empty_database: tuple[AsyncEngine, str | None]
    ) -> None:
        empty_engine, schema = empty_database
        config = self.target.config()
        await upgrade(empty_engine, config, schema=schema)
        assert await is_at_head(empty_engine, config)

        async with empty_engine.begin() as conn:
            await conn.run_sync(_run_command(config, "downgrade", "base"))
        async with empty_engine.connect() as conn:
            assert await conn.run_sync(_table_names) - {self.target.version_table} == set()
        assert await current_heads(empty_engine, config) == set()

        await upgrade(empty_engine, config, schema=schema)
        assert await is_at_head(empty_engine, config)
        async with empty_engine.connect() as conn:
            assert await conn.run_sync(_diff, self.target) == []
