"""fleet

Revision ID: 0001
Revises:
Create Date: 2026-12-01 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_clients",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("organisation", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("prompt_set", sa.String(length=200), nullable=True),
        sa.Column("sdk_name", sa.String(length=64), nullable=False),
        sa.Column("sdk_version", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("replica", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("transport", sa.String(length=10), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=True),
        sa.Column("manifest_digest", sa.String(length=71), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nack_revision", sa.BigInteger(), nullable=True),
        sa.Column("nack_code", sa.String(length=40), nullable=True),
        sa.Column("nack_detail", sa.Text(), nullable=True),
        sa.Column("nacked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("transport IN ('websocket', 'http')", name=op.f("ck_fleet_clients_transport")),
        sa.PrimaryKeyConstraint("client_id", "environment_id", name=op.f("pk_fleet_clients")),
    )
    with op.batch_alter_table("fleet_clients", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fleet_clients_listing",
            ["organisation", "project", "environment", "environment_id", "client_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_fleet_clients_environment_id_revision"),
            ["environment_id", "revision"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_fleet_clients_environment_id_nack_revision"),
            ["environment_id", "nack_revision"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_fleet_clients_last_seen_at"), ["last_seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fleet_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fleet_clients_last_seen_at"))
        batch_op.drop_index(batch_op.f("ix_fleet_clients_environment_id_nack_revision"))
        batch_op.drop_index(batch_op.f("ix_fleet_clients_environment_id_revision"))
        batch_op.drop_index("ix_fleet_clients_listing")
    op.drop_table("fleet_clients")
