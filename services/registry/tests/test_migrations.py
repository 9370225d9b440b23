"""The registry's Alembic history: one head, dated files, its own version table, a migrated
schema equal to the models, and deterministic constraint names — on SQLite and on Postgres
(the suite is anvil_common.testing_migrations; this file declares what is the registry's)."""

from __future__ import annotations

from anvil_common.testing_migrations import MigrationSuite, MigrationTarget
from anvil_registry.app import registry_alembic_config
from anvil_registry.models import metadata

TABLES = {
    "audit_entries",
    "config_revisions",
    "environments",
    "event_sequence",
    "events",
    "idempotency_keys",
    "imports",
    "organisations",
    "projects",
    "prompt_sets",
    "prompt_versions",
    "prompts",
    "revision_entries",
    "tokens",
}


class TestMigrations(MigrationSuite):
    target = MigrationTarget(
        config=registry_alembic_config,
        metadata=metadata,
        version_table="alembic_version_registry",
        head="0002",
        tables=frozenset(TABLES),
        schema_prefix="registry_empty",
    )
