"""The push gateway's Alembic history: one head, dated files, its own version table, a migrated
schema equal to the models, and deterministic constraint names — on SQLite and on Postgres
(the suite is anvil_common.testing_migrations; this file declares what is the gateway's)."""

from __future__ import annotations

from anvil_common.testing_migrations import MigrationSuite, MigrationTarget
from anvil_push_gateway.app import gateway_alembic_config
from anvil_push_gateway.models import metadata


class TestMigrations(MigrationSuite):
    target = MigrationTarget(
        config=gateway_alembic_config,
        metadata=metadata,
        version_table="alembic_version_push_gateway",
        head="0002",
        tables=frozenset({"fleet_clients", "rollout_policies", "revision_health"}),
        schema_prefix="push_gateway_empty",
    )
