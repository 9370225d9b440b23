"""The bundle worker's Alembic history: one head, dated files, its own version table, a migrated
schema equal to the models, and deterministic constraint names — on SQLite and on Postgres
(the suite is anvil_common.testing_migrations; this file declares what is the worker's)."""

from __future__ import annotations

from anvil_bundle_worker.app import worker_alembic_config
from anvil_bundle_worker.models import metadata
from anvil_common.testing_migrations import MigrationSuite, MigrationTarget


class TestMigrations(MigrationSuite):
    target = MigrationTarget(
        config=worker_alembic_config,
        metadata=metadata,
        version_table="alembic_version_bundle_worker",
        head="0002",
        tables=frozenset({"bundles", "jobs", "peers", "plans"}),
        schema_prefix="bundle_worker_empty",
    )
